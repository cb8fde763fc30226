package export

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

func BenchmarkPayload(b *testing.B) {
	as := make([]event.Alert, 100)
	for i := range as {
		as[i] = alerts()[i%3]
	}
	for _, bc := range []struct {
		name  string
		build func() ([]byte, error)
	}{
		{"webhook", func() ([]byte, error) { return webhookPayload(as) }},
		{"slack", func() ([]byte, error) { return slackPayload(as[:slackMaxAlerts]) }},
		{"splunk", func() ([]byte, error) { return splunkPayload(as, "") }},
		{"elasticsearch", func() ([]byte, error) { return bulkPayload(as, defaultIndex) }},
		{"syslog-json", func() ([]byte, error) { return syslogMessage(as[0], "json", udpMax) }},
		{"syslog-cef", func() ([]byte, error) { return syslogMessage(as[0], "cef", udpMax) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			n := 0
			for b.Loop() {
				p, err := bc.build()
				if err != nil {
					b.Fatal(err)
				}
				n = len(p)
			}
			b.SetBytes(int64(n))
		})
	}
}

// BenchmarkSubmit is the cost the ingest path pays per alert with five
// outputs configured (their queues never fill: nothing drains them, so
// the queue is sized to the run).
func BenchmarkSubmit(b *testing.B) {
	var cfgs []Config
	for i := range 5 {
		cfgs = append(cfgs, Config{Name: fmt.Sprint(i), Type: "webhook", URL: "http://127.0.0.1:1"})
	}
	d, err := NewDispatcher(cfgs, Options{QueueSize: b.N + 1})
	if err != nil {
		b.Fatal(err)
	}
	a := alerts()[0]
	b.ResetTimer()
	for range b.N {
		d.Submit(a)
	}
}

// BenchmarkDispatch measures end-to-end alerts per second through the
// dispatcher to a loopback webhook and a TCP syslog receiver.
func BenchmarkDispatch(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	defer srv.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go io.Copy(io.Discard, c)
		}
	}()
	for _, cfg := range []Config{
		{Name: "hook", Type: "webhook", URL: srv.URL},
		{Name: "syslog", Type: "syslog", Network: "tcp", Address: l.Addr().String(), Format: "cef"},
	} {
		b.Run(cfg.Name, func(b *testing.B) {
			d, err := NewDispatcher([]Config{cfg}, Options{QueueSize: 20000})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			go func() { done <- d.Run(ctx) }()
			a := alerts()[0]
			start := time.Now()
			for i := 0; i < b.N; {
				if d.Health()[0].Queued < 15000 {
					d.Submit(a)
					i++
				} else {
					time.Sleep(100 * time.Microsecond)
				}
			}
			for d.Health()[0].Sent < uint64(b.N) {
				time.Sleep(100 * time.Microsecond)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "alerts/s")
			cancel()
			<-done
		})
	}
}
