package export_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/server/export"
)

// The server builds one Dispatcher from its configured outputs, runs it for
// its lifetime, submits every stored alert and shows Health in its API.
func ExampleDispatcher() {
	siem := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var alerts []event.Alert
		body, _ := io.ReadAll(r.Body)
		json.Unmarshal(body, &alerts)
		fmt.Println("received", alerts[0].Rule, "with", r.Header.Get("Authorization"))
	}))
	defer siem.Close()

	d, err := export.NewDispatcher([]export.Config{
		{Name: "siem", Type: "webhook", URL: siem.URL, Secret: "t0ken", MinSeverity: event.Medium},
	}, export.Options{})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()

	d.Submit(event.Alert{ID: "01", Rule: "runtime.crypto-miner", Severity: event.High})
	d.Submit(event.Alert{ID: "02", Rule: "runtime.shell-spawned", Severity: event.Low}) // below min_severity
	for d.Health()[0].Sent == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	s := d.Health()[0]
	fmt.Println(s.Name, "healthy:", s.Healthy, "sent:", s.Sent, "dropped:", s.Dropped)
	// Output:
	// received runtime.crypto-miner with Bearer t0ken
	// siem healthy: true sent: 1 dropped: 0
}
