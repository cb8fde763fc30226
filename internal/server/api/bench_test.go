package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/server/api"
	"github.com/vigil-sec/vigil/internal/server/store"
	"github.com/vigil-sec/vigil/internal/server/store/pgtest"
	"github.com/vigil-sec/vigil/internal/ship"
)

// BenchmarkIngestHTTP is whole-path ingest: batches of 500 realistic alerts
// (one node's: 30 containers of 10 workloads, 40 rules) POSTed by 4 concurrent senders to the real API over loopback HTTP,
// strictly decoded, authenticated and committed to the database. One op is
// one batch; alerts/s is the figure of issue 4 (target >= 20,000 on SQLite).
func BenchmarkIngestHTTP(b *testing.B) {
	for _, db := range []string{"sqlite", "postgres"} {
		b.Run(db, func(b *testing.B) {
			dsn := "sqlite://" + filepath.Join(b.TempDir(), "v.db")
			if db == "postgres" {
				dsn = pgtest.New(b)
			}
			ctx := context.Background()
			st, err := store.Open(ctx, dsn)
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			_, cred, err := st.CreateCluster(ctx, "bench")
			if err != nil {
				b.Fatal(err)
			}
			srv := httptest.NewServer(api.New(api.Config{Store: st}).Handler())
			defer srv.Close()
			const perBatch = 500
			bodies := make([][]byte, b.N)
			now := time.Now().UTC()
			for i := range bodies {
				bt := ship.Batch{BatchID: fmt.Sprintf("01BENCH%08d", i), Node: "node-1", Component: "sensor", SentAt: now}
				for j := range perBatch {
					a := testAlert(fmt.Sprintf("01B%08d%04d", i, j), fmt.Sprintf("runtime.rule-%d", j%40), []event.Severity{event.High, event.Medium, event.Low}[j%3],
						[]string{"shop", "billing", "data", "ci"}[j%4], now.Add(time.Duration(i*perBatch+j)*time.Millisecond))
					// One node's batch: its ~30 containers of ~10 workloads.
					c := (i + j) % 30
					a.ContainerID = fmt.Sprintf("c0ffee%058d", c)
					a.Pod, a.Workload, a.Image = fmt.Sprintf("web-%d", c), fmt.Sprintf("Deployment/%s/app-%d", a.Namespace, c%10), fmt.Sprintf("registry.example/app-%d:1.%d", c%10, c%3)
					a.Description, a.Remediation = "A process did something a security team wants to know about.", "Look at the process tree."
					a.Evidence = map[string]any{"proc.cmdline": "./xmrig -o stratum+tcp://pool:3333", "parent.cmdline": "sh -c ./xmrig"}
					bt.Alerts = append(bt.Alerts, a)
				}
				if bodies[i], err = json.Marshal(bt); err != nil {
					b.Fatal(err)
				}
			}
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := int(next.Add(1)) - 1
						if i >= len(bodies) {
							return
						}
						req, _ := http.NewRequest("POST", srv.URL+"/api/v1/ingest", bytes.NewReader(bodies[i]))
						req.Header.Set("Authorization", "Bearer "+cred)
						req.Header.Set("Content-Type", "application/json")
						resp, err := http.DefaultClient.Do(req)
						if err != nil {
							b.Error(err)
							return
						}
						resp.Body.Close()
						if resp.StatusCode != 200 {
							b.Errorf("batch %d: %s", i, resp.Status)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N*perBatch)/b.Elapsed().Seconds(), "alerts/s")
		})
	}
}
