package api_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/audit/audittest"
	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/server/api"
	"github.com/vigil-sec/vigil/internal/server/controlplane"
	"github.com/vigil-sec/vigil/internal/server/store"
)

// BenchmarkAuditWebhook is one API server's audit webhook at 4,000 events
// per second: an EventList of 400 events (the webhook backend's default
// batch size) every 100 ms over loopback HTTP into the real receiver
// (authentication, decoding, every built-in rule, alerts committed to
// SQLite before the answer). It reports the acknowledgement latency; the
// API server's buffer never fills when batches are acknowledged well
// within the 100 ms between them.
//
//	go test -run '^$' -bench AuditWebhook -benchtime 300x ./internal/server/api/
func BenchmarkAuditWebhook(b *testing.B) {
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(b.TempDir(), "v.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	_, cred, err := st.CreateCluster(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	rules, err := detect.Load(detect.Options{})
	if err != nil {
		b.Fatal(err)
	}
	cp := controlplane.New(controlplane.Config{Rules: rules, Store: st})
	srv := httptest.NewServer(api.New(api.Config{Store: st, Audit: cp}).Handler())
	defer srv.Close()
	const perBatch, every = 400, 100 * time.Millisecond
	events := audittest.Mix(perBatch*b.N, 2, time.Now().UTC())
	bodies := make([][]byte, b.N)
	for i := range bodies {
		bodies[i] = audittest.EventList(events[i*perBatch : (i+1)*perBatch])
	}
	lat := make([]time.Duration, 0, b.N)
	tick := time.NewTicker(every)
	defer tick.Stop()
	b.ResetTimer()
	for i := range b.N {
		<-tick.C
		req, _ := http.NewRequest("POST", srv.URL+"/api/v1/audit", bytes.NewReader(bodies[i]))
		req.Header.Set("Authorization", "Bearer "+cred)
		req.Header.Set("Content-Type", "application/json")
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		lat = append(lat, time.Since(start))
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("batch %d: %s", i, resp.Status)
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(perBatch)/every.Seconds(), "events/s")
	b.ReportMetric(0, "ns/op")
}
