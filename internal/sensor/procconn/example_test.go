package procconn_test

import (
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/vigil-sec/vigil/internal/sensor/procconn"
)

// The sensor's fallback loop: read until Close, count overruns.
func ExampleOpen() {
	c, err := procconn.Open()
	if errors.Is(err, procconn.ErrNamespace) {
		log.Fatalf("run the sensor with the host's network and pid namespaces: %v", err)
	}
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for {
		events, err := c.Read()
		if errors.Is(err, procconn.ErrOverrun) {
			continue // c.Lost() counts it
		}
		if errors.Is(err, os.ErrClosed) {
			return
		}
		if err != nil {
			log.Fatal(err)
		}
		for _, e := range events {
			switch e.Kind {
			case procconn.Fork:
				fmt.Println("fork", e.ParentTgid, "->", e.Tgid)
			case procconn.Exec:
				fmt.Println("exec", e.Tgid)
			case procconn.Exit:
				fmt.Println("exit", e.Tgid, e.ExitCode)
			}
		}
	}
}
