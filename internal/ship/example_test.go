package ship_test

import (
	"context"
	"log/slog"
	"os"
	"os/signal"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/ship"
)

// A sensor ships what its engine raises: queue alerts from any goroutine,
// let Run deliver them, Close after Run returned.
func ExampleClient() {
	c, err := ship.Open(ship.Config{
		Server:    "https://vigil.example.com",
		Token:     os.Getenv("VIGIL_TOKEN"),
		Proxy:     "http://vigil:secret@proxy.example.com:3128",
		SpoolDir:  "/var/lib/vigil/spool",
		Node:      "node-1",
		Component: "sensor",
		Log:       slog.Default(),
	})
	if err != nil {
		slog.Error("open shipper", "error", err)
		return
	}
	defer c.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	go func() {
		alerts := make(chan *event.Alert) // fed by the detection engine
		for a := range alerts {
			c.Alert(a)
		}
	}()
	c.Health(ship.Health{State: "installed", Health: &event.Health{Mode: "ebpf"}})
	_ = c.Run(ctx) // returns once ctx is done, with everything spooled
}
