package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/server/store/pgtest"
	"github.com/vigil-sec/vigil/internal/ship"
)

// BenchmarkFindings150K reads the posture of a cluster of 10,000 workloads
// under 15 checks (150,000 findings, a third failing) the way the
// Recommendations pages do: the summary of every check, and the first page
// of one check's failing resources. For the figures in docs/PERFORMANCE.md:
//
//	go test -run '^$' -bench Findings150K -benchtime 200x -count 5 ./internal/server/store/
//
// The databases are seeded through Ingest for each run (a few seconds).
func BenchmarkFindings150K(b *testing.B) {
	const workloads, checks = 10_000, 15
	for _, kind := range []string{"sqlite", "postgres"} {
		b.Run(kind, func(b *testing.B) {
			dsn := "sqlite://" + filepath.Join(b.TempDir(), "findings.db")
			if kind == "postgres" {
				dsn = pgtest.New(b)
			}
			s, err := Open(context.Background(), dsn)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			prod, _ := mustCluster(b, s, "prod")
			dev, _ := mustCluster(b, s, "dev")
			now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
			var fs []ship.Finding
			flush := func(cluster string) {
				mustIngest(b, s, cluster, &ship.Batch{BatchID: newID(), Findings: fs}, now)
				fs = fs[:0]
			}
			for w := range workloads {
				ns := fmt.Sprintf("ns-%03d", w%300)
				for c := range checks {
					f := ship.Finding{ID: fmt.Sprintf("%d/%d", w, c), Check: fmt.Sprintf("check-%02d", c),
						Resource: fmt.Sprintf("Deployment/%s/app-%05d", ns, w), Namespace: ns, Status: ship.Healthy, Scan: "01SCAN",
						Details: map[string]any{"mode": []string{"audit", "deny"}[c%2]}}
					if (w+c)%3 == 0 {
						f.Status = ship.Unhealthy
						f.Details["violations"] = []string{"spec.containers[0].securityContext.privileged: true"}
					}
					fs = append(fs, f)
				}
				if len(fs) >= 5000 {
					flush(prod.ID)
				}
			}
			flush(prod.ID)
			// A small second cluster, so that "one cluster" filters.
			for c := range checks {
				fs = append(fs, ship.Finding{ID: fmt.Sprint(c), Check: fmt.Sprintf("check-%02d", c), Resource: "Deployment/dev/tool",
					Status: ship.Unhealthy})
			}
			flush(dev.ID)
			if s.d.sqlite {
				if _, err := s.w.Exec("PRAGMA optimize=0x10002"); err != nil {
					b.Fatal(err)
				}
			} else if _, err := s.w.Exec("VACUUM ANALYZE findings"); err != nil { // as autovacuum would
				b.Fatal(err)
			}

			ctx := context.Background()
			for _, cluster := range []string{"", "prod"} {
				name := "summary/all-clusters"
				if cluster != "" {
					name = "summary/one-cluster"
				}
				b.Run(name, func(b *testing.B) {
					for b.Loop() {
						sums, err := s.SummarizeFindings(ctx, cluster)
						if err != nil || len(sums) != checks || sums[0].Healthy+sums[0].Unhealthy < workloads {
							b.Fatalf("%+v %v", sums, err)
						}
					}
				})
			}
			b.Run("former-summary-read", func(b *testing.B) {
				// What SummarizeFindings read before migration 4: every row,
				// details decoded, summed in Go.
				for b.Loop() {
					if rows, err := s.ListFindings(ctx, "", ""); err != nil || len(rows) < workloads*checks {
						b.Fatal(len(rows), err)
					}
				}
			})
			for _, tc := range []struct {
				name string
				f    FindingFilter
			}{
				{"page/one-cluster-unhealthy", FindingFilter{Cluster: "prod", Check: "check-07", Status: ship.Unhealthy}},
				{"page/all-clusters-unhealthy", FindingFilter{Check: "check-07", Status: ship.Unhealthy}},
				{"page/one-cluster-namespace", FindingFilter{Cluster: "prod", Check: "check-07", Status: ship.Unhealthy, Namespace: "ns-152"}},
				{"page/all-statuses", FindingFilter{Check: "check-07"}},
			} {
				b.Run(tc.name, func(b *testing.B) {
					for b.Loop() {
						page, err := s.ListFindingsPage(ctx, tc.f)
						if err != nil || len(page.Findings) == 0 {
							b.Fatalf("%d %v", len(page.Findings), err)
						}
					}
				})
			}
			b.Run("page/deep", func(b *testing.B) {
				// The 60th page: the keyset starts where the cursor is.
				f := FindingFilter{Cluster: "prod", Check: "check-07", Status: ship.Unhealthy}
				for range 60 {
					page, err := s.ListFindingsPage(ctx, f)
					if err != nil {
						b.Fatal(err)
					}
					f.Cursor = page.NextCursor
				}
				for b.Loop() {
					page, err := s.ListFindingsPage(ctx, f)
					if err != nil || len(page.Findings) == 0 {
						b.Fatalf("%d %v", len(page.Findings), err)
					}
				}
			})
		})
	}
}
