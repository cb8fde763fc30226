package store

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/server/store/pgtest"
	"github.com/vigil-sec/vigil/internal/ship"
)

// Benchmarks. Run them all (as CI does, once each):
//
//	go test -run '^$' -bench . -benchtime 1x ./internal/server/store/
//
// and for the figures in docs/PERFORMANCE.md:
//
//	go test -run '^$' -bench Ingest -benchtime 400x ./internal/server/store/
//	go test -run '^$' -bench ListAlerts1M -benchtime 3x ./internal/server/store/
//
// BenchmarkListAlerts1M stores 1,000,000 alerts once per schema version and
// keeps them under benchCacheDir (the SQLite file and a PostgreSQL data
// directory), so only the first run pays for seeding. PostgreSQL runs with
// its default durability (fsync and synchronous commit on).

// benchCacheDir holds seeded benchmark databases between runs.
const benchCacheDir = "/var/cache/vigil-bench"

// benchAlerts is how many alerts BenchmarkListAlerts1M stores.
const benchAlerts = 1_000_000

// seedVersion changes when the generated data changes.
const seedVersion = "s3"

// benchPG starts the benchmarks' PostgreSQL, whose data directory is
// cached beside the SQLite file, and stops it when b ends.
func benchPG(b *testing.B) *pgtest.Server {
	b.Helper()
	dir := filepath.Join(benchCacheDir, "pg-"+SchemaVersion()+"-"+seedVersion)
	cleanBenchCache(b, filepath.Base(dir))
	srv, err := pgtest.Start(pgtest.Options{Dir: dir, Durable: true, Settings: map[string]string{
		"shared_buffers":       "512MB",
		"effective_cache_size": "8GB",
		"max_wal_size":         "4GB",
		"random_page_cost":     "1.1",
	}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			b.Error(err)
		}
	})
	return srv
}

// cleanBenchCache removes cached databases of other schema or seed
// versions, which would only take disk space.
func cleanBenchCache(b *testing.B, keep ...string) {
	if err := os.MkdirAll(benchCacheDir, 0o755); err != nil {
		b.Fatal(err)
	}
	key := SchemaVersion() + "-" + seedVersion
	entries, _ := os.ReadDir(benchCacheDir)
	for _, e := range entries {
		if !strings.Contains(e.Name(), key) && (strings.HasPrefix(e.Name(), "pg-") || strings.HasPrefix(e.Name(), "alerts-")) {
			os.RemoveAll(filepath.Join(benchCacheDir, e.Name()))
		}
	}
}

// BenchmarkIngest stores batches of 500 alerts, as sensors send them:
// "new" batches hold 500 alerts never seen (each opens or joins an
// incident), "resend" batches repeat the previous batch's alerts with
// higher counts (aggregated alerts being updated).
func BenchmarkIngest(b *testing.B) {
	for _, kind := range []string{"sqlite", "postgres"} {
		b.Run(kind, func(b *testing.B) {
			var dsn string
			switch kind {
			case "sqlite":
				dsn = "sqlite://" + filepath.Join(b.TempDir(), "ingest.db")
			case "postgres":
				srv := benchPG(b)
				name := fmt.Sprintf("ingest_%d", os.Getpid())
				srv.DropDatabase(context.Background(), name)
				var err error
				if dsn, err = srv.CreateDatabase(context.Background(), name); err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { srv.DropDatabase(context.Background(), name) })
			}
			s, err := Open(context.Background(), dsn)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			for _, mode := range []string{"new", "resend"} {
				b.Run(mode, func(b *testing.B) {
					c, _, err := s.CreateCluster(context.Background(), "bench-"+mode)
					if err != nil {
						b.Fatal(err)
					}
					g := newGen(1)
					now := time.Now()
					now = now.Add(-time.Hour)
					prev := g.ingestBatch(c.Name, 500, now)
					mustIngest(b, s, c.ID, prev, now)
					alerts := 0
					for b.Loop() {
						b.StopTimer()
						var bt *ship.Batch
						if mode == "new" {
							now = now.Add(time.Second)
							bt = g.ingestBatch(c.Name, 500, now)
						} else {
							bt = &ship.Batch{BatchID: ulid.Make().String(), Alerts: prev.Alerts}
							for i := range bt.Alerts {
								bt.Alerts[i].Count++
								bt.Alerts[i].LastSeen = bt.Alerts[i].LastSeen.Add(time.Second)
							}
						}
						b.StartTimer()
						r, err := s.Ingest(context.Background(), c.ID, bt, now)
						if err != nil {
							b.Fatal(err)
						}
						alerts += r.Alerts
					}
					b.ReportMetric(float64(alerts)/b.Elapsed().Seconds(), "alerts/s")
				})
			}
		})
	}
}

// BenchmarkListAlerts1M lists alerts from a database of 1,000,000 with the
// filters people use, and reports the latency percentiles over many
// queries of each kind (each loop iteration runs listQueries queries with
// varying values).
func BenchmarkListAlerts1M(b *testing.B) {
	for _, kind := range []string{"sqlite", "postgres"} {
		b.Run(kind, func(b *testing.B) {
			s := openSeeded(b, kind)
			for _, q := range listCases() {
				b.Run(q.name, func(b *testing.B) {
					r := rand.New(rand.NewSource(7))
					var lat []time.Duration
					for b.Loop() {
						// Queries that scan (resource, search) are slow at
						// this size: a time budget keeps the run bounded.
						deadline := time.Now().Add(listBudget)
						for i := 0; i < listQueries && (i < 5 || time.Now().Before(deadline)); i++ {
							f := q.filter(r)
							start := time.Now()
							if q.count {
								if _, err := s.CountAlerts(context.Background(), f); err != nil {
									b.Fatal(err)
								}
							} else {
								// Deep pages: follow the cursor, timing each page.
								for page := 0; page <= q.pages; page++ {
									p, err := s.ListAlerts(context.Background(), f)
									if err != nil {
										b.Fatal(err)
									}
									if page < q.pages {
										lat = append(lat, time.Since(start))
										start = time.Now()
									}
									if p.NextCursor == "" {
										break
									}
									f.Cursor = p.NextCursor
								}
							}
							lat = append(lat, time.Since(start))
						}
					}
					sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
					pct := func(p float64) float64 {
						return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
					}
					b.ReportMetric(float64(len(lat)), "queries")
					b.ReportMetric(pct(0.50), "p50-ms")
					b.ReportMetric(pct(0.99), "p99-ms")
					b.ReportMetric(0, "ns/op") // per-query figures above are what matters
				})
			}
		})
	}
}

// listQueries is how many queries one iteration of a list case runs, at
// most: it stops after listBudget (and at least 5 queries).
const (
	listQueries = 100
	listBudget  = 3 * time.Second
)

type listCase struct {
	name   string
	filter func(r *rand.Rand) AlertFilter
	pages  int  // follow the cursor this many pages
	count  bool // CountAlerts instead of ListAlerts
}

func listCases() []listCase {
	g := newGen(0)
	return []listCase{
		{name: "default", filter: func(*rand.Rand) AlertFilter { return AlertFilter{} }},
		{name: "severity+status+cluster", filter: func(r *rand.Rand) AlertFilter {
			return AlertFilter{Severity: []event.Severity{event.High}, Status: []string{event.StatusActive}, Cluster: g.clusters[r.Intn(len(g.clusters))]}
		}},
		{name: "severities+status", filter: func(r *rand.Rand) AlertFilter {
			return AlertFilter{Severity: []event.Severity{event.Medium, event.High}, Status: []string{event.StatusActive}}
		}},
		{name: "dismissed+cluster", filter: func(r *rand.Rand) AlertFilter {
			return AlertFilter{Status: []string{event.StatusDismissed}, Cluster: g.clusters[r.Intn(len(g.clusters))]}
		}},
		{name: "namespace", filter: func(r *rand.Rand) AlertFilter {
			return AlertFilter{Namespace: g.wlNS[r.Intn(len(g.wlNS))]}
		}},
		{name: "rule", filter: func(r *rand.Rand) AlertFilter {
			return AlertFilter{Rule: g.rules[r.Intn(len(g.rules))].id}
		}},
		{name: "rule+namespace+active", filter: func(r *rand.Rand) AlertFilter {
			return AlertFilter{Rule: g.rules[r.Intn(len(g.rules))].id, Namespace: g.wlNS[r.Intn(len(g.wlNS))], Status: []string{event.StatusActive}}
		}},
		{name: "time-range", filter: func(r *rand.Rand) AlertFilter {
			since := benchStart.Add(time.Duration(r.Int63n(int64(benchSpan))))
			return AlertFilter{Since: since, Until: since.Add(time.Hour)}
		}},
		{name: "since+severity", filter: func(r *rand.Rand) AlertFilter {
			return AlertFilter{Since: benchStart.Add(benchSpan - 24*time.Hour), Severity: []event.Severity{event.High}}
		}},
		{name: "resource-pod", filter: func(r *rand.Rand) AlertFilter {
			return AlertFilter{Resource: g.podName(r.Intn(g.pods))}
		}},
		{name: "resource-rare-pod", filter: func(r *rand.Rand) AlertFilter {
			return AlertFilter{Resource: g.podName(g.pods + r.Intn(g.rarePods))}
		}},
		{name: "resource-ns/pod", filter: func(r *rand.Rand) AlertFilter {
			p := r.Intn(g.pods)
			return AlertFilter{Resource: g.nsOf(p) + "/" + g.podName(p)}
		}},
		{name: "resource-workload", filter: func(r *rand.Rand) AlertFilter {
			return AlertFilter{Resource: g.workloadName(r.Intn(g.workloads))}
		}},
		{name: "resource-workload+active", filter: func(r *rand.Rand) AlertFilter {
			return AlertFilter{Resource: g.workloadName(r.Intn(g.workloads)), Status: []string{event.StatusActive}}
		}},
		{name: "resource-node", filter: func(r *rand.Rand) AlertFilter {
			return AlertFilter{Resource: fmt.Sprintf("node-%02d", r.Intn(50))}
		}},
		{name: "pages-resource-workload", pages: 5, filter: func(r *rand.Rand) AlertFilter {
			return AlertFilter{Resource: g.workloadName(r.Intn(g.workloads))}
		}},
		{name: "count-resource-workload", count: true, filter: func(r *rand.Rand) AlertFilter {
			return AlertFilter{Resource: g.workloadName(r.Intn(g.workloads))}
		}},
		{name: "search", filter: func(r *rand.Rand) AlertFilter {
			return AlertFilter{Search: []string{"miner", "shell", "xmrig", "nope-nothing", "kworker-1a", "variant 65"}[r.Intn(6)]}
		}},
		{name: "sort-severity", filter: func(r *rand.Rand) AlertFilter {
			return AlertFilter{Sort: "severity", Cluster: g.clusters[r.Intn(len(g.clusters))]}
		}},
		{name: "sort-first_seen", filter: func(r *rand.Rand) AlertFilter { return AlertFilter{Sort: "first_seen"} }},
		{name: "pages-cluster", pages: 20, filter: func(r *rand.Rand) AlertFilter {
			return AlertFilter{Cluster: g.clusters[r.Intn(len(g.clusters))], Status: []string{event.StatusActive}}
		}},
		{name: "count-active", count: true, filter: func(*rand.Rand) AlertFilter {
			return AlertFilter{Status: []string{event.StatusActive}}
		}},
		{name: "count-severity+status+cluster", count: true, filter: func(r *rand.Rand) AlertFilter {
			return AlertFilter{Severity: []event.Severity{event.High}, Status: []string{event.StatusActive}, Cluster: g.clusters[r.Intn(len(g.clusters))]}
		}},
	}
}

var (
	benchEnd   = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	benchSpan  = 30 * 24 * time.Hour
	benchStart = benchEnd.Add(-benchSpan)
)

var seedOnce = map[string]*sync.Once{"sqlite": {}, "postgres": {}}

// openSeeded opens the cached 1M-alert database of kind, seeding it first
// when the cache has none for this schema.
func openSeeded(b *testing.B, kind string) *Store {
	b.Helper()
	cleanBenchCache(b)
	var dsn string
	switch kind {
	case "sqlite":
		file := filepath.Join(benchCacheDir, fmt.Sprintf("alerts-%d-%s-%s.db", benchAlerts, SchemaVersion(), seedVersion))
		if _, err := os.Stat(file); err != nil {
			tmp := file + ".seeding"
			for _, f := range []string{tmp, tmp + "-wal", tmp + "-shm"} {
				os.Remove(f)
			}
			start := time.Now()
			seed(b, "sqlite://"+tmp)
			if err := os.Rename(tmp, file); err != nil {
				b.Fatal(err)
			}
			b.Logf("seeded %d alerts into %s in %v", benchAlerts, file, time.Since(start).Round(time.Millisecond))
		}
		dsn = "sqlite://" + file
	case "postgres":
		srv := benchPG(b)
		const name = "alerts1m"
		marker := filepath.Join(srv.Dir(), "seeded")
		if _, err := os.Stat(marker); err != nil {
			if err := srv.DropDatabase(context.Background(), name); err != nil {
				b.Fatal(err)
			}
			d, err := srv.CreateDatabase(context.Background(), name)
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			seed(b, d)
			if err := os.WriteFile(marker, nil, 0o644); err != nil {
				b.Fatal(err)
			}
			b.Logf("seeded %d alerts into PostgreSQL (%s) in %v", benchAlerts, srv.Dir(), time.Since(start).Round(time.Millisecond))
		}
		dsn = srv.DSN(name)
	}
	s, err := Open(context.Background(), dsn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// seed fills an empty database with benchAlerts alerts: the alert indexes
// are dropped, rows go in by multi-row INSERTs in a few large
// transactions, then the indexes are built again and statistics gathered.
func seed(b *testing.B, dsn string) {
	ctx := context.Background()
	s, err := Open(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	exec := func(q string, args ...any) {
		if _, err := s.w.ExecContext(ctx, q, args...); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	// The index definitions come from the schema itself.
	var idxQuery string
	if s.d.sqlite {
		exec("PRAGMA synchronous=OFF")
		idxQuery = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'alerts' AND sql IS NOT NULL"
	} else {
		idxQuery = "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'alerts' AND indexname <> 'alerts_pkey'"
	}
	rows, err := s.w.QueryContext(ctx, idxQuery)
	if err != nil {
		b.Fatal(err)
	}
	var names, defs []string
	for rows.Next() {
		var n, d string
		if err := rows.Scan(&n, &d); err != nil {
			b.Fatal(err)
		}
		names, defs = append(names, n), append(defs, d)
	}
	rows.Close()
	if len(defs) == 0 {
		b.Fatal("no alert indexes found")
	}
	for _, n := range names {
		exec("DROP INDEX " + n)
	}

	g := newGen(0)
	for i, name := range g.clusters {
		exec(s.d.q("INSERT INTO clusters (id, name, created_at, last_seen) VALUES (?, ?, ?, ?)"),
			g.clusterIDs[i], name, ts(benchStart), ts(benchEnd))
	}
	const cols = 22
	const perStmt = 1000
	texts := map[int64]string{}
	const perTx = 100_000
	stmt := s.d.q(`INSERT INTO alerts (id, cluster_id, rule, title, severity, status, first_seen, last_seen, hit_count,
		node, namespace, pod, container_id, workload, image, exe, text_id, incident_id, status_reason, status_by, status_at, doc)
		VALUES ` + placeholders(cols, perStmt))
	args := make([]any, 0, cols*perStmt)
	for txStart := 0; txStart < benchAlerts; txStart += perTx {
		tx, err := s.w.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		ps, err := tx.PrepareContext(ctx, stmt)
		if err != nil {
			b.Fatal(err)
		}
		for i := txStart; i < txStart+perTx; i++ {
			a, clusterID, status := g.seedAlert(i)
			doc, _ := json.Marshal(a)
			var statusBy string
			var statusAt int64
			if status != event.StatusActive {
				statusBy, statusAt = "analyst", ts(a.LastSeen.Add(time.Hour))
			}
			text := searchText(a.Title, a.Rule, a.Process.Exe)
			key := searchKey(text)
			texts[key] = text
			args = append(args, a.ID, clusterID, a.Rule, a.Title, a.Severity.Rank(), status, ts(a.FirstSeen), ts(a.LastSeen),
				int64(a.Count), a.Node, a.Namespace, a.Pod, a.ContainerID, a.Workload, a.Image, a.Process.Exe, key, "", "", statusBy, statusAt, string(doc))
			if len(args) == cap(args) {
				if _, err := ps.ExecContext(ctx, args...); err != nil {
					b.Fatal(err)
				}
				args = args[:0]
			}
		}
		ps.Close()
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	for key, text := range texts {
		exec(s.d.q("INSERT INTO alert_texts (id, text) VALUES (?, ?)"), key, text)
	}
	for _, d := range defs {
		exec(d)
	}
	exec(`INSERT INTO containers (cluster_id, container_id, namespace, pod, workload, image, last_seen)
		SELECT cluster_id, container_id, MAX(namespace), MAX(pod), MAX(workload), MAX(image), MAX(last_seen)
		FROM alerts WHERE container_id <> '' GROUP BY cluster_id, container_id
		ON CONFLICT DO NOTHING`)
	exec("ANALYZE")
	if s.d.sqlite {
		exec("PRAGMA wal_checkpoint(TRUNCATE)")
	} else {
		exec("VACUUM ANALYZE alerts")
		exec("CHECKPOINT")
	}
}

// gen makes realistic alerts deterministically: rules follow a Zipf
// distribution (a few noisy ones, a long tail of rare ones), each rule has
// one severity, 80% of alerts are active, 15% dismissed, 5% resolved.
// Alerts come from 5,000 pods (one container each, ~200 alerts apiece) of
// 200 workloads on 50 nodes, plus 500 rare pods with a few alerts each;
// each workload lives in one namespace (Zipf: a few namespaces hold many
// workloads) and one cluster.
type gen struct {
	r          *rand.Rand
	rules      []benchRule
	ruleZipf   *rand.Zipf
	namespaces []string
	nsZipf     *rand.Zipf
	clusters   []string
	clusterIDs []string
	pods       int
	rarePods   int
	workloads  int
	wlNS       []string // namespace of each workload
	seq        int
}

type benchRule struct {
	id, title, exe string
	sev            event.Severity
}

func newGen(seed int64) *gen {
	r := rand.New(rand.NewSource(seed))
	g := &gen{r: r, pods: 5000, rarePods: 500, workloads: 200}
	words := []string{"crypto-miner", "web-shell", "reverse-shell", "drift-binary-executed", "credential-access",
		"attack-tool", "container-escape", "kernel-module", "ptrace", "memfd-exec", "suspicious-download",
		"shell-spawned"}
	sevs := []event.Severity{event.Informational, event.Low, event.Medium, event.High}
	for i := range 66 {
		w := words[i%len(words)]
		g.rules = append(g.rules, benchRule{
			id:    fmt.Sprintf("runtime.%s-%d", w, i),
			title: fmt.Sprintf("%s detected (variant %d)", strings.ReplaceAll(w, "-", " "), i),
			exe:   []string{"/usr/bin/xmrig", "/bin/sh", "/usr/bin/curl", "/tmp/kworker", "/usr/bin/nc", "/usr/bin/python3"}[i%6],
			sev:   sevs[(i*7+i/5)%4],
		})
	}
	g.ruleZipf = rand.NewZipf(r, 1.3, 2, uint64(len(g.rules)-1))
	for i := range 300 {
		g.namespaces = append(g.namespaces, fmt.Sprintf("team-%03d", i))
	}
	g.nsZipf = rand.NewZipf(r, 1.1, 4, uint64(len(g.namespaces)-1))
	for range g.workloads {
		g.wlNS = append(g.wlNS, g.namespaces[g.nsZipf.Uint64()])
	}
	for i := range 10 {
		g.clusters = append(g.clusters, fmt.Sprintf("bench-%d", i))
		g.clusterIDs = append(g.clusterIDs, fmt.Sprintf("01BENCHCLUSTER%012d", i))
	}
	return g
}

func (g *gen) podName(p int) string { return fmt.Sprintf("app-%d-%05x", p%g.workloads, p) }

func (g *gen) nsOf(p int) string { return g.wlNS[p%g.workloads] }

func (g *gen) workloadName(w int) string { return fmt.Sprintf("Deployment/%s/app-%d", g.wlNS[w], w) }

// alertAt makes an alert at time at about pod p.
func (g *gen) alertAt(at time.Time, p int) event.Alert {
	r := g.r
	rule := g.rules[g.ruleZipf.Uint64()]
	w := p % g.workloads
	ns := g.wlNS[w]
	last := at
	count := uint64(1)
	if r.Intn(10) < 3 {
		last = at.Add(time.Duration(r.Int63n(int64(2 * time.Hour))))
		count = uint64(2 + r.Intn(500))
	}
	pod := g.podName(p)
	g.seq++
	exe := rule.exe
	if strings.HasPrefix(exe, "/tmp/") {
		exe = fmt.Sprintf("%s-%x", exe, p) // dropped binaries have a name per pod
	}
	return event.Alert{
		ID:   ulid.MustNew(ulid.Timestamp(at), r).String(),
		Rule: rule.id, Title: rule.title, Severity: rule.sev, Status: event.StatusActive,
		Tactic: "Execution", Techniques: []string{"T1204"},
		FirstSeen: at, LastSeen: last, Count: count, Source: "runtime",
		Node: fmt.Sprintf("node-%02d", p%50), Namespace: ns, Pod: pod, Container: "main",
		ContainerID: fmt.Sprintf("%016x%016x", uint64(p)*0x9e3779b97f4a7c15, uint64(p)), Image: fmt.Sprintf("registry.example.com/%s/app-%d:1.%d", ns, w, p%13),
		Workload: g.workloadName(w),
		Labels:   map[string]string{"app": fmt.Sprintf("app-%d", w)},
		Process: &event.Process{Pid: uint32(1000 + r.Intn(30000)), Ppid: 1, Exe: exe,
			Args: []string{exe, "-o", "pool.example.net:3333", "--threads", "4"}, Cwd: "/tmp",
			Parent: &event.Lineage{Pid: 1, Exe: "/bin/sh"}},
		Evidence:    map[string]any{"process.exe": exe, "network.dst": "203.0.113.7:3333"},
		Description: "A process ran that matches the behaviour of " + rule.title + "; see the evidence for what matched.",
		Remediation: "Check the workload's image and recent changes; isolate the pod if the activity is not expected.",
	}
}

// seedAlert is the i-th of benchAlerts alerts, spread evenly over
// benchSpan.
func (g *gen) seedAlert(i int) (event.Alert, string, string) {
	at := benchStart.Add(time.Duration(int64(benchSpan) / benchAlerts * int64(i))).Add(time.Duration(g.r.Int63n(int64(time.Second))))
	p := g.r.Intn(g.pods)
	if g.r.Intn(1000) == 0 {
		p = g.pods + g.r.Intn(g.rarePods) // ~2 alerts each
	}
	c := (p % g.workloads) % len(g.clusters)
	a := g.alertAt(at, p)
	a.Cluster = g.clusters[c]
	status := event.StatusActive
	switch x := g.r.Intn(100); {
	case x < 15:
		status = event.StatusDismissed
	case x < 20:
		status = event.StatusResolved
	}
	a.Status = status
	return a, g.clusterIDs[c], status
}

// ingestBatch is a batch of n new alerts from one node's sensor: 50
// containers, so alerts chain into incidents.
func (g *gen) ingestBatch(cluster string, n int, now time.Time) *ship.Batch {
	node := g.r.Intn(50)
	b := &ship.Batch{BatchID: ulid.Make().String(), Node: fmt.Sprintf("node-%02d", node), Component: "sensor", SentAt: now,
		Health: []ship.Health{{Component: "sensor", State: "installed", Health: &event.Health{Mode: "ebpf", EventsTotal: 1e6}}}}
	for i := range n {
		a := g.alertAt(now.Add(-time.Duration(n-i)*time.Millisecond), node*50+g.r.Intn(50))
		a.ID = ulid.Make().String()
		a.LastSeen, a.Count = a.FirstSeen, 1 // new alerts; aggregated updates come as re-sends
		a.Cluster = cluster
		b.Alerts = append(b.Alerts, a)
	}
	return b
}
