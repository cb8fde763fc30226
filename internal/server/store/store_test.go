package store

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/server/store/pgtest"
	"github.com/vigil-sec/vigil/internal/ship"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

// env is one store under test and where it lives.
type env struct {
	*Store
	dsn  string
	file string // the SQLite file, "" on PostgreSQL
}

// eachDB runs fn against a fresh SQLite store and a fresh PostgreSQL store.
func eachDB(t *testing.T, fn func(t *testing.T, e env)) {
	t.Helper()
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			e := openEnv(t, kind)
			fn(t, e)
		})
	}
}

func openEnv(t testing.TB, kind string) env {
	t.Helper()
	var e env
	switch kind {
	case "sqlite":
		e.file = filepath.Join(t.TempDir(), "vigil.db")
		e.dsn = "sqlite://" + e.file
	case "postgres":
		e.dsn = pgtest.New(t)
	}
	s, err := Open(context.Background(), e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	e.Store = s
	if s.Dialect() != kind {
		t.Fatalf("Dialect() = %q, want %q", s.Dialect(), kind)
	}
	return e
}

var (
	ctx = context.Background()
	t0  = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
)

// alert makes a runtime alert in container cid of pod ns/pod.
func alert(id, rule string, sev event.Severity, at time.Time, mods ...func(*event.Alert)) event.Alert {
	a := event.Alert{
		ID: id, Rule: rule, Title: "Title of " + rule, Severity: sev, Status: event.StatusActive,
		FirstSeen: at, LastSeen: at, Count: 1, Cluster: "whatever-the-sensor-says",
		Node: "node-1", Namespace: "shop", Pod: "web-7d9f", Container: "web", ContainerID: "0f3c0000aaaa",
		Image: "nginx:1.27", Workload: "Deployment/shop/web",
		Process:  &event.Process{Pid: 42, Exe: "/usr/bin/" + rule, Args: []string{rule, "-x"}},
		Evidence: map[string]any{"k": "v"},
	}
	for _, m := range mods {
		m(&a)
	}
	return a
}

func inContainer(cid, ns, pod string) func(*event.Alert) {
	return func(a *event.Alert) { a.ContainerID, a.Namespace, a.Pod = cid, ns, pod }
}

func batch(id string, alerts ...event.Alert) *ship.Batch {
	return &ship.Batch{BatchID: id, Node: "node-1", Component: "sensor", SentAt: t0, Alerts: alerts}
}

func mustCluster(t testing.TB, s *Store, name string) (Cluster, string) {
	t.Helper()
	c, secret, err := s.CreateCluster(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return c, secret
}

func mustIngest(t testing.TB, s *Store, cid string, b *ship.Batch, now time.Time) IngestResult {
	t.Helper()
	r, err := s.Ingest(ctx, cid, b, now)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func ids(as []Alert) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.ID
	}
	return out
}

func TestOpenDSN(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		dsn     string
		file    string
		wantErr bool
	}{
		{dsn: "sqlite://" + filepath.Join(dir, "abs.db"), file: filepath.Join(dir, "abs.db")},
		{dsn: "sqlite:" + filepath.Join(dir, "short.db"), file: filepath.Join(dir, "short.db")},
		{dsn: "mysql://x", wantErr: true},
		{dsn: "sqlite://", wantErr: true},
		{dsn: filepath.Join(dir, "plain.db"), wantErr: true},
	} {
		t.Run(tc.dsn, func(t *testing.T) {
			s, err := Open(ctx, tc.dsn)
			if tc.wantErr {
				if err == nil {
					s.Close()
					t.Fatal("want an error")
				}
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("error %v is not ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			if _, err := os.Stat(tc.file); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("relative", func(t *testing.T) {
		t.Chdir(dir)
		s, err := Open(ctx, "sqlite://rel.db")
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		if _, err := os.Stat(filepath.Join(dir, "rel.db")); err != nil {
			t.Fatal(err)
		}
	})
}

func TestMigrations(t *testing.T) {
	eachDB(t, func(t *testing.T, e env) {
		ms, err := migrations()
		if err != nil {
			t.Fatal(err)
		}
		count := func() int {
			var n int
			if err := e.r.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations").Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		if n := count(); n != len(ms) {
			t.Fatalf("schema_migrations has %d rows, want %d", n, len(ms))
		}
		// Opening again applies nothing and keeps the data.
		if _, _, err := e.CreateCluster(ctx, "keep"); err != nil {
			t.Fatal(err)
		}
		s2, err := Open(ctx, e.dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		if n := count(); n != len(ms) {
			t.Fatalf("after reopening: %d rows, want %d", n, len(ms))
		}
		if _, err := s2.GetCluster(ctx, "keep", t0); err != nil {
			t.Fatal(err)
		}
	})
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	if v := SchemaVersion(); !strings.HasPrefix(v, strconv.Itoa(ms[len(ms)-1].version)+"-") {
		t.Errorf("SchemaVersion() = %q, newest migration %s", v, ms[len(ms)-1].name)
	}
}

func TestClusters(t *testing.T) {
	eachDB(t, func(t *testing.T, e env) {
		c, secret, err := e.CreateCluster(ctx, "prod-1")
		if err != nil {
			t.Fatal(err)
		}
		if c.ID == "" || c.Name != "prod-1" || c.Connectivity != Pending || c.CreatedAt.IsZero() {
			t.Fatalf("created %+v", c)
		}
		if !strings.HasPrefix(secret, "vgl_c_") || len(secret) != 49 {
			t.Fatalf("join credential %q", secret)
		}
		if _, _, err := e.CreateCluster(ctx, "prod-1"); !errors.Is(err, ErrConflict) {
			t.Fatalf("same name again: %v, want ErrConflict", err)
		}
		for _, bad := range []string{"", "Prod", "-a", "a-", "a_b", "a.b", strings.Repeat("a", 64), "a b"} {
			if _, _, err := e.CreateCluster(ctx, bad); !errors.Is(err, ErrInvalid) {
				t.Errorf("CreateCluster(%q) = %v, want ErrInvalid", bad, err)
			}
		}
		mustCluster(t, e.Store, "dev")

		// Never heard from: pending. A heartbeat: connected, offline after
		// five minutes.
		got, err := e.GetCluster(ctx, "prod-1", t0)
		if err != nil {
			t.Fatal(err)
		}
		if got.Connectivity != Pending || !got.LastSeen.IsZero() || len(got.Components) != 0 {
			t.Fatalf("before heartbeat: %+v", got)
		}
		b := batch("b1")
		b.Health = []ship.Health{
			{Component: "sensor", State: "installed", Health: &event.Health{Mode: "ebpf", EventsTotal: 7}},
			{Node: "node-2", Component: "sensor", State: "failed", Reason: "no BTF"},
			{Node: "", Component: "agent", State: "pending"},
		}
		if r := mustIngest(t, e.Store, c.ID, b, t0); r.Health != 3 {
			t.Fatalf("Health = %d", r.Health)
		}
		for _, tc := range []struct {
			now  time.Time
			want string
		}{{t0, Connected}, {t0.Add(5 * time.Minute), Connected}, {t0.Add(5*time.Minute + time.Second), Offline}} {
			got, err := e.GetCluster(ctx, c.ID, tc.now)
			if err != nil {
				t.Fatal(err)
			}
			if got.Connectivity != tc.want || !got.LastSeen.Equal(t0) {
				t.Errorf("at %v: connectivity %s last seen %v, want %s", tc.now, got.Connectivity, got.LastSeen, tc.want)
			}
		}
		got, _ = e.GetCluster(ctx, c.ID, t0)
		if len(got.Components) != 3 {
			t.Fatalf("components %+v", got.Components)
		}
		want := []Component{
			{Node: "node-1", Component: "agent", State: "pending", LastSeen: t0},
			{Node: "node-1", Component: "sensor", State: "installed", LastSeen: t0},
			{Node: "node-2", Component: "sensor", State: "failed", Reason: "no BTF", LastSeen: t0},
		}
		for i, w := range want {
			g := got.Components[i]
			if g.Node != w.Node || g.Component != w.Component || g.State != w.State || g.Reason != w.Reason || !g.LastSeen.Equal(w.LastSeen) {
				t.Errorf("component %d = %+v, want %+v", i, g, w)
			}
		}
		if h := got.Components[1].Health; h == nil || h.Mode != "ebpf" || h.EventsTotal != 7 {
			t.Errorf("health %+v", h)
		}
		// A later report replaces the component's state.
		b2 := batch("b2")
		b2.Health = []ship.Health{{Node: "node-2", Component: "sensor", State: "installed"}}
		mustIngest(t, e.Store, c.ID, b2, t0.Add(time.Minute))
		got, _ = e.GetCluster(ctx, "prod-1", t0.Add(time.Minute))
		if g := got.Components[2]; g.State != "installed" || g.Reason != "" || !g.LastSeen.Equal(t0.Add(time.Minute)) {
			t.Errorf("after update: %+v", g)
		}

		list, err := e.ListClusters(ctx, t0)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 || list[0].Name != "dev" || list[1].Name != "prod-1" || list[0].Connectivity != Pending ||
			list[1].Connectivity != Connected || len(list[1].Components) != 3 || list[0].Components == nil {
			t.Fatalf("ListClusters = %+v", list)
		}
		if _, err := e.GetCluster(ctx, "nope", t0); !errors.Is(err, ErrNotFound) {
			t.Fatalf("GetCluster(nope) = %v", err)
		}
		if _, err := e.Ingest(ctx, "nope", batch("x"), t0); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Ingest to unknown cluster = %v", err)
		}
	})
}

func TestAuthenticate(t *testing.T) {
	eachDB(t, func(t *testing.T, e env) {
		admin, err := e.CreateToken(ctx, "alice", RoleAdmin)
		if err != nil {
			t.Fatal(err)
		}
		reader, err := e.CreateToken(ctx, "bob", RoleReader)
		if err != nil {
			t.Fatal(err)
		}
		c, join := mustCluster(t, e.Store, "prod")
		if _, err := e.CreateToken(ctx, "x", RoleCluster); !errors.Is(err, ErrInvalid) {
			t.Errorf("cluster role token: %v", err)
		}
		if _, err := e.CreateToken(ctx, "x", "root"); !errors.Is(err, ErrInvalid) {
			t.Errorf("unknown role: %v", err)
		}
		if _, err := e.CreateToken(ctx, " ", RoleAdmin); !errors.Is(err, ErrInvalid) {
			t.Errorf("empty name: %v", err)
		}
		for _, tc := range []struct {
			secret string
			want   Principal
		}{
			{admin, Principal{Name: "alice", Role: RoleAdmin}},
			{reader, Principal{Name: "bob", Role: RoleReader}},
			{join, Principal{Name: "prod", Role: RoleCluster, ClusterID: c.ID}},
		} {
			p, err := e.Authenticate(ctx, tc.secret)
			if err != nil {
				t.Fatal(err)
			}
			if p.ID == "" || p.Name != tc.want.Name || p.Role != tc.want.Role || p.ClusterID != tc.want.ClusterID {
				t.Errorf("Authenticate(%s...) = %+v, want %+v", tc.secret[:6], p, tc.want)
			}
		}
		for _, bad := range []string{"", "vgl_", admin + "x", admin[:len(admin)-1], strings.ToUpper(admin), "Bearer " + admin, strings.Repeat("vgl_a", 100)} {
			if _, err := e.Authenticate(ctx, bad); !errors.Is(err, ErrUnauthorized) {
				t.Errorf("Authenticate(%q) = %v, want ErrUnauthorized", bad, err)
			}
		}
		if !strings.HasPrefix(admin, "vgl_a_") || !strings.HasPrefix(reader, "vgl_r_") || admin == reader {
			t.Errorf("token formats %q %q", admin, reader)
		}

		// The secrets are nowhere in the database, only their hashes.
		for _, secret := range []string{admin, reader, join} {
			var n int
			if err := e.r.QueryRowContext(ctx, e.d.q("SELECT COUNT(*) FROM credentials WHERE hash = ?"), hashSecret(secret)).Scan(&n); err != nil || n != 1 {
				t.Fatalf("hash of secret stored %d times (%v)", n, err)
			}
		}
		if e.file != "" {
			e.w.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)")
			var all []byte
			for _, f := range []string{e.file, e.file + "-wal"} {
				b, _ := os.ReadFile(f)
				all = append(all, b...)
			}
			if !bytes.Contains(all, []byte(hashSecret(admin))) {
				t.Fatal("the file does not even hold the hash: the grep below proves nothing")
			}
			for _, secret := range []string{admin, reader, join} {
				body := secret[len("vgl_a_"):]
				if bytes.Contains(all, []byte(secret)) || bytes.Contains(all, []byte(body)) {
					t.Errorf("secret %s... found in clear in the SQLite file", secret[:8])
				}
			}
		}
	})
}

func TestIngestIdempotent(t *testing.T) {
	eachDB(t, func(t *testing.T, e env) {
		c, _ := mustCluster(t, e.Store, "prod")
		a1 := alert("A1", "web-shell", event.High, t0)
		a2 := alert("A2", "drift", event.Medium, t0.Add(time.Second))
		b := batch("B1", a1, a2)
		r := mustIngest(t, e.Store, c.ID, b, t0)
		if r != (IngestResult{Alerts: 2, NewAlerts: 2}) {
			t.Fatalf("first ingest: %+v", r)
		}
		// The same batch again: nothing written.
		if r := mustIngest(t, e.Store, c.ID, b, t0); r != (IngestResult{Duplicate: true}) {
			t.Fatalf("second ingest: %+v", r)
		}
		// The same alerts in another batch (a retry after the batch id was
		// forgotten): updates, no new alerts.
		if r := mustIngest(t, e.Store, c.ID, batch("B2", a1, a2), t0); r != (IngestResult{Alerts: 2}) {
			t.Fatalf("third ingest: %+v", r)
		}
		page, err := e.ListAlerts(ctx, AlertFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Alerts) != 2 || page.NextCursor != "" {
			t.Fatalf("alerts %v", ids(page.Alerts))
		}

		// A1 again with a higher count and a later last_seen, and an older
		// copy of it with a lower count and an earlier first_seen, in two
		// batches: count = max, first = min, last = max.
		up := a1
		up.Count, up.LastSeen = 5, t0.Add(10*time.Minute)
		up.Evidence = map[string]any{"k": "newer"}
		old := a1
		old.Count, old.FirstSeen = 3, t0.Add(-time.Minute)
		old.Evidence = map[string]any{"k": "older"}
		mustIngest(t, e.Store, c.ID, batch("B3", up), t0)
		mustIngest(t, e.Store, c.ID, batch("B4", old), t0)
		got, err := e.GetAlert(ctx, "A1")
		if err != nil {
			t.Fatal(err)
		}
		if got.Count != 5 || !got.FirstSeen.Equal(t0.Add(-time.Minute)) || !got.LastSeen.Equal(t0.Add(10*time.Minute)) {
			t.Fatalf("merged alert: count %d first %v last %v", got.Count, got.FirstSeen, got.LastSeen)
		}
		if got.Evidence["k"] != "newer" {
			t.Errorf("document: evidence %v, want the newest copy's", got.Evidence)
		}
		// Repeats of one id inside one batch merge too.
		x1 := alert("A3", "miner", event.High, t0)
		x2 := x1
		x2.Count, x2.LastSeen = 9, t0.Add(time.Hour)
		if r := mustIngest(t, e.Store, c.ID, batch("B5", x1, x2), t0); r.Alerts != 1 || r.NewAlerts != 1 {
			t.Fatalf("batch with a repeated id: %+v", r)
		}
		got, _ = e.GetAlert(ctx, "A3")
		if got.Count != 9 || !got.LastSeen.Equal(t0.Add(time.Hour)) || !got.FirstSeen.Equal(t0) {
			t.Fatalf("repeated id: %+v", got.Alert)
		}

		// The status set on the server survives re-sends, whatever status
		// the sensor's copy carries.
		if _, err := e.SetAlertStatus(ctx, []string{"A2"}, event.StatusDismissed, "noise", "alice", t0); err != nil {
			t.Fatal(err)
		}
		a2b := a2
		a2b.Count = 2
		mustIngest(t, e.Store, c.ID, batch("B6", a2b), t0)
		got, _ = e.GetAlert(ctx, "A2")
		if got.Status != event.StatusDismissed || got.Count != 2 {
			t.Fatalf("status after re-send: %s count %d", got.Status, got.Count)
		}
		// The stored alert names the cluster, not what the sensor said.
		if got.Cluster != "prod" || got.ClusterID != c.ID {
			t.Errorf("cluster %q id %q", got.Cluster, got.ClusterID)
		}
		if got.Process == nil || got.Process.Exe != "/usr/bin/drift" || got.Workload != "Deployment/shop/web" {
			t.Errorf("document lost fields: %+v", got.Alert)
		}

		// Invalid alerts are refused whole.
		bad := alert("", "r", event.High, t0)
		if _, err := e.Ingest(ctx, c.ID, batch("B7", bad), t0); !errors.Is(err, ErrInvalid) {
			t.Errorf("alert without id: %v", err)
		}
		bad = alert("A9", "r", "critical", t0)
		if _, err := e.Ingest(ctx, c.ID, batch("B8", bad), t0); !errors.Is(err, ErrInvalid) {
			t.Errorf("unknown severity: %v", err)
		}
		if _, err := e.GetAlert(ctx, "A9"); !errors.Is(err, ErrNotFound) {
			t.Errorf("an alert of a refused batch was stored: %v", err)
		}
		// A refused batch's id is not remembered: it can be sent again.
		if r := mustIngest(t, e.Store, c.ID, batch("B8", alert("A9", "r", event.High, t0)), t0); r.NewAlerts != 1 {
			t.Errorf("batch id of a refused batch: %+v", r)
		}
		if _, err := e.Ingest(ctx, c.ID, nil, t0); !errors.Is(err, ErrInvalid) {
			t.Errorf("nil batch: %v", err)
		}
	})
}

func TestIngestClusterIsolation(t *testing.T) {
	eachDB(t, func(t *testing.T, e env) {
		a, _ := mustCluster(t, e.Store, "a")
		b, _ := mustCluster(t, e.Store, "b")
		mustIngest(t, e.Store, a.ID, batch("X", alert("ID1", "miner", event.High, t0)), t0)
		// Cluster b sends the same batch id (fine: batch ids are per
		// cluster) carrying an alert with a's alert id and a higher count.
		evil := alert("ID1", "miner", event.High, t0)
		evil.Count, evil.LastSeen, evil.Title = 99, t0.Add(time.Hour), "overwritten"
		r := mustIngest(t, e.Store, b.ID, batch("X", evil, alert("ID2", "drift", event.Low, t0)), t0)
		if r.Duplicate || r.Alerts != 1 || r.NewAlerts != 1 {
			t.Fatalf("ingest into b: %+v", r)
		}
		got, _ := e.GetAlert(ctx, "ID1")
		if got.ClusterID != a.ID || got.Count != 1 || got.Title == "overwritten" || got.Cluster != "a" {
			t.Fatalf("cluster b changed cluster a's alert: %+v", got)
		}
		got, _ = e.GetAlert(ctx, "ID2")
		if got.ClusterID != b.ID || got.Cluster != "b" {
			t.Fatalf("ID2 %+v", got)
		}
	})
}

func TestInventoryAndFindings(t *testing.T) {
	eachDB(t, func(t *testing.T, e env) {
		c, _ := mustCluster(t, e.Store, "prod")
		c2, _ := mustCluster(t, e.Store, "dev")
		b := batch("B1")
		b.Inventory = []ship.InventoryItem{
			{Kind: "workload", Name: "Deployment/shop/web", Namespace: "shop", Attrs: map[string]string{"replicas": "2"}},
			{Kind: "node", Name: "node-1", Attrs: map[string]string{"kernel": "6.1"}},
			{Kind: "node", Name: "node-1", Attrs: map[string]string{"kernel": "6.6"}}, // the later wins
			{Kind: "image", Name: "nginx:1.27", Node: "node-1"},
		}
		b.Findings = []ship.Finding{
			{ID: "f1", Check: "privileged", Resource: "Deployment/shop/web", Namespace: "shop", Status: ship.Unhealthy, Details: map[string]any{"container": "web"}},
			{ID: "f2", Check: "run-as-non-root", Resource: "Deployment/shop/web", Namespace: "shop", Status: ship.Healthy},
		}
		r := mustIngest(t, e.Store, c.ID, b, t0)
		if r.Inventory != 4 || r.Findings != 2 {
			t.Fatalf("%+v", r)
		}
		b2 := batch("B2")
		b2.Inventory = []ship.InventoryItem{{Kind: "workload", Name: "Deployment/shop/web", Namespace: "shop", Attrs: map[string]string{"replicas": "3"}}}
		b2.Findings = []ship.Finding{{ID: "f1", Check: "privileged", Resource: "Deployment/shop/web", Namespace: "shop", Status: ship.Healthy}}
		mustIngest(t, e.Store, c.ID, b2, t0.Add(time.Minute))
		b3 := batch("B3")
		b3.Inventory = []ship.InventoryItem{{Kind: "node", Name: "dev-node"}}
		mustIngest(t, e.Store, c2.ID, b3, t0)

		rows, err := e.ListInventory(ctx, "prod", "")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range rows {
			got = append(got, fmt.Sprintf("%s %s/%s %v %s", r.Kind, r.Namespace, r.Name, r.Attrs, r.LastSeen.Sub(t0)))
		}
		want := []string{
			"image /nginx:1.27 map[] 0s",
			"node /node-1 map[kernel:6.6] 0s",
			"workload shop/Deployment/shop/web map[replicas:3] 1m0s",
		}
		if !slices.Equal(got, want) {
			t.Fatalf("inventory\n got %q\nwant %q", got, want)
		}
		for _, tc := range []struct {
			cluster, kind string
			n             int
		}{{"", "", 4}, {"", "node", 2}, {c2.ID, "", 1}, {"prod", "workload", 1}, {"nope", "", 0}, {"", "pod", 0}} {
			rows, err := e.ListInventory(ctx, tc.cluster, tc.kind)
			if err != nil || len(rows) != tc.n || rows == nil {
				t.Errorf("ListInventory(%q, %q) = %d rows (%v), want %d", tc.cluster, tc.kind, len(rows), err, tc.n)
			}
		}
		fs, err := e.ListFindings(ctx, "prod", "")
		if err != nil {
			t.Fatal(err)
		}
		if len(fs) != 2 || fs[0].ID != "f1" || fs[0].Status != ship.Healthy || fs[1].ID != "f2" || fs[1].ClusterID != c.ID {
			t.Fatalf("findings %+v", fs)
		}
		if fs, _ := e.ListFindings(ctx, "", "run-as-non-root"); len(fs) != 1 {
			t.Fatalf("findings by check: %+v", fs)
		}
	})
}

// seedFilterSet stores alerts that differ in every filterable field.
func seedFilterSet(t *testing.T, s *Store) (prod, dev Cluster) {
	prod, _ = mustCluster(t, s, "prod")
	dev, _ = mustCluster(t, s, "dev")
	mk := func(id, rule string, sev event.Severity, min int, mods ...func(*event.Alert)) event.Alert {
		return alert(id, rule, sev, t0.Add(time.Duration(min)*time.Minute), mods...)
	}
	mustIngest(t, s, prod.ID, batch("p1",
		mk("P1", "web-shell", event.High, 1),
		mk("P2", "crypto-miner", event.High, 2, inContainer("c2", "shop", "api-1")),
		mk("P3", "drift", event.Medium, 3, inContainer("c3", "billing", "pay-1"), func(a *event.Alert) {
			a.Title = "A Drift Binary Was Executed"
			a.Workload = "Deployment/billing/pay"
			a.Image = "pay:2"
		}),
		mk("P4", "shell-spawned", event.Low, 4, func(a *event.Alert) { a.Node = "node-2"; a.Process.Exe = "/bin/bash" }),
		mk("P5", "kernel-module", event.Informational, 5, func(a *event.Alert) {
			a.ContainerID, a.Pod, a.Namespace, a.Workload, a.Image, a.Container = "", "", "", "", "", ""
		}),
	), t0)
	mustIngest(t, s, dev.ID, batch("d1",
		mk("D1", "web-shell", event.High, 6, inContainer("c9", "shop", "web-x")),
		mk("D2", "drift", event.Low, 7),
	), t0)
	if _, err := s.SetAlertStatus(ctx, []string{"P2"}, event.StatusDismissed, "test", "me", t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetAlertStatus(ctx, []string{"P3"}, event.StatusResolved, "test", "me", t0); err != nil {
		t.Fatal(err)
	}
	return prod, dev
}

func TestListAlertsFilters(t *testing.T) {
	eachDB(t, func(t *testing.T, e env) {
		prod, _ := seedFilterSet(t, e.Store)
		for _, tc := range []struct {
			name string
			f    AlertFilter
			want []string // in order
		}{
			{"all, newest first", AlertFilter{}, []string{"D2", "D1", "P5", "P4", "P3", "P2", "P1"}},
			{"severity", AlertFilter{Severity: []event.Severity{event.High}}, []string{"D1", "P2", "P1"}},
			{"severities", AlertFilter{Severity: []event.Severity{event.Low, event.Medium}}, []string{"D2", "P4", "P3"}},
			{"all severities", AlertFilter{Severity: []event.Severity{event.Low, event.Medium, event.High, event.Informational, event.Low}}, []string{"D2", "D1", "P5", "P4", "P3", "P2", "P1"}},
			{"status", AlertFilter{Status: []string{"active"}}, []string{"D2", "D1", "P5", "P4", "P1"}},
			{"statuses", AlertFilter{Status: []string{"dismissed", "resolved"}}, []string{"P3", "P2"}},
			{"cluster by name", AlertFilter{Cluster: "dev"}, []string{"D2", "D1"}},
			{"cluster by id", AlertFilter{Cluster: prod.ID}, []string{"P5", "P4", "P3", "P2", "P1"}},
			{"unknown cluster", AlertFilter{Cluster: "nope"}, []string{}},
			{"severity+status+cluster", AlertFilter{Severity: []event.Severity{event.High}, Status: []string{"active"}, Cluster: "prod"}, []string{"P1"}},
			{"namespace", AlertFilter{Namespace: "shop"}, []string{"D2", "D1", "P4", "P2", "P1"}},
			{"rule", AlertFilter{Rule: "drift"}, []string{"D2", "P3"}},
			{"node", AlertFilter{Node: "node-2"}, []string{"P4"}},
			{"resource pod", AlertFilter{Resource: "api-1"}, []string{"P2"}},
			{"resource ns/pod", AlertFilter{Resource: "billing/pay-1"}, []string{"P3"}},
			{"resource workload", AlertFilter{Resource: "Deployment/billing/pay"}, []string{"P3"}},
			{"resource container", AlertFilter{Resource: "c9"}, []string{"D1"}},
			{"resource node", AlertFilter{Resource: "node-2"}, []string{"P4"}},
			{"resource image", AlertFilter{Resource: "pay:2"}, []string{"P3"}},
			{"search title, any case", AlertFilter{Search: "drift BINARY"}, []string{"P3"}},
			{"search rule", AlertFilter{Search: "miner"}, []string{"P2"}},
			{"search exe", AlertFilter{Search: "/bin/bash"}, []string{"P4"}},
			{"search with LIKE characters", AlertFilter{Search: "%"}, []string{}},
			{"search underscore", AlertFilter{Search: "web_shell"}, []string{}},
			{"type pod", AlertFilter{ResourceType: "pod"}, []string{"D2", "D1", "P4", "P3", "P2", "P1"}},
			{"type node", AlertFilter{ResourceType: "node"}, []string{"P5"}},
			{"type cluster", AlertFilter{ResourceType: "cluster"}, []string{}},
			{"search+cluster", AlertFilter{Search: "SHELL", Cluster: "prod"}, []string{"P4", "P1"}},
			{"search+status", AlertFilter{Search: "shell", Status: []string{"active"}}, []string{"D1", "P4", "P1"}},
			{"since", AlertFilter{Since: t0.Add(5 * time.Minute)}, []string{"D2", "D1", "P5"}},
			{"until", AlertFilter{Until: t0.Add(2 * time.Minute)}, []string{"P2", "P1"}},
			{"range", AlertFilter{Since: t0.Add(2 * time.Minute), Until: t0.Add(4 * time.Minute)}, []string{"P4", "P3", "P2"}},
			{"sort first_seen", AlertFilter{Sort: "first_seen", Limit: 3}, []string{"D2", "D1", "P5"}},
			{"sort severity", AlertFilter{Sort: "severity"}, []string{"D1", "P2", "P1", "P3", "D2", "P4", "P5"}},
			{"limit", AlertFilter{Limit: 2}, []string{"D2", "D1"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				page, err := e.ListAlerts(ctx, tc.f)
				if err != nil {
					t.Fatal(err)
				}
				if got := ids(page.Alerts); !slices.Equal(got, tc.want) {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
				counts, err := e.CountAlerts(ctx, tc.f)
				if err != nil {
					t.Fatal(err)
				}
				if tc.f.Limit == 0 {
					total := 0
					for _, n := range counts {
						total += n
					}
					if total != len(tc.want) || len(counts) != 4 {
						t.Errorf("CountAlerts = %v, want %d in all", counts, len(tc.want))
					}
				}
			})
		}
		counts, _ := e.CountAlerts(ctx, AlertFilter{})
		if want := map[event.Severity]int{event.High: 3, event.Medium: 1, event.Low: 2, event.Informational: 1}; !maps.Equal(counts, want) {
			t.Errorf("CountAlerts = %v, want %v", counts, want)
		}
		for _, f := range []AlertFilter{
			{Severity: []event.Severity{"critical"}}, {Status: []string{"open"}}, {Sort: "title"},
			{Cursor: "garbage"}, {Cursor: cursor{Sort: "first_seen", Keys: []int64{1}, ID: "x"}.encode()},
		} {
			if _, err := e.ListAlerts(ctx, f); !errors.Is(err, ErrInvalid) {
				t.Errorf("ListAlerts(%+v) = %v, want ErrInvalid", f, err)
			}
		}
		if _, err := e.GetAlert(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetAlert(nope) = %v", err)
		}
	})
}

// TestCursorPagination pages through alerts in every sort order while new
// alerts keep arriving: every alert that existed when paging began is seen
// exactly once, in order.
// TestSearchDictionary: search finds alerts through the dictionary whether
// a term names a few texts or more than an IN list holds, and migration
// 3's step indexes the alerts stored before it.
func TestSearchDictionary(t *testing.T) {
	eachDB(t, func(t *testing.T, e env) {
		seedFilterSet(t, e.Store)
		search := func(term string) []string {
			t.Helper()
			page, err := e.ListAlerts(ctx, AlertFilter{Search: term})
			if err != nil {
				t.Fatal(err)
			}
			return ids(page.Alerts)
		}
		if got := search("sh"); !slices.Equal(got, []string{"D1", "P4", "P1"}) {
			t.Fatalf("search sh = %v", got)
		}
		all := []string{"D2", "D1", "P5", "P4", "P3", "P2", "P1"}
		if got := search("/bin/"); !slices.Equal(got, all) {
			t.Fatalf("search /bin/ = %v, want %v", got, all)
		}
		old := maxSearchTexts
		maxSearchTexts = 1 // every term past the IN list: the subquery form
		t.Cleanup(func() { maxSearchTexts = old })
		if got := search("/bin/"); !slices.Equal(got, all) {
			t.Fatalf("subquery search /bin/ = %v, want %v", got, all)
		}
		maxSearchTexts = old

		// Alerts stored before migration 3 had no dictionary entry.
		for _, q := range []string{"UPDATE alerts SET text_id = 0", "DELETE FROM alert_texts"} {
			if _, err := e.w.ExecContext(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		e.texts = knownTexts{}
		if got := search("drift binary"); len(got) != 0 {
			t.Fatalf("without dictionary: %v", got)
		}
		tx, err := e.w.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := backfillAlertTexts(ctx, tx, e.d); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if got := search("drift binary"); !slices.Equal(got, []string{"P3"}) {
			t.Fatalf("after backfill: %v", got)
		}
		if got := search("/bin/"); !slices.Equal(got, all) {
			t.Fatalf("after backfill /bin/: %v, want %v", got, all)
		}
	})
}

func TestCursorPagination(t *testing.T) {
	eachDB(t, func(t *testing.T, e env) {
		c, _ := mustCluster(t, e.Store, "prod")
		sevs := []event.Severity{event.Informational, event.Low, event.Medium, event.High}
		var all []event.Alert
		for i := range 230 {
			// Many alerts share a last_seen, so the id tiebreak matters.
			at := t0.Add(time.Duration(i/3) * time.Second)
			all = append(all, alert(fmt.Sprintf("A%04d", i), "r", sevs[i%4], at))
		}
		for i := 0; i < len(all); i += 100 {
			mustIngest(t, e.Store, c.ID, batch(fmt.Sprintf("seed-%d", i), all[i:min(i+100, len(all))]...), t0)
		}
		for _, sortBy := range []string{"last_seen", "first_seen", "severity"} {
			t.Run(sortBy, func(t *testing.T) {
				seen := map[string]bool{}
				var order []Alert
				cur := ""
				for page := 0; ; page++ {
					p, err := e.ListAlerts(ctx, AlertFilter{Sort: sortBy, Limit: 17, Cursor: cur})
					if err != nil {
						t.Fatal(err)
					}
					for _, a := range p.Alerts {
						if seen[a.ID] {
							t.Fatalf("page %d: %s seen twice", page, a.ID)
						}
						seen[a.ID] = true
						order = append(order, a)
					}
					// New alerts arrive between pages; some sort before,
					// some (late arrivals from a spool) after the cursor
					// in time but with new ids.
					at := t0.Add(time.Hour + time.Duration(page)*time.Second)
					mustIngest(t, e.Store, c.ID, batch(fmt.Sprintf("%s-new-%d", sortBy, page),
						alert(fmt.Sprintf("N-%s-%d", sortBy, page), "r", event.High, at)), t0)
					if p.NextCursor == "" {
						break
					}
					cur = p.NextCursor
				}
				for _, a := range all {
					if !seen[a.ID] {
						t.Fatalf("%s skipped", a.ID)
					}
				}
				less := func(a, b Alert) bool { // a comes strictly after b in the order
					switch sortBy {
					case "first_seen":
						return a.FirstSeen.Before(b.FirstSeen) || a.FirstSeen.Equal(b.FirstSeen) && a.ID < b.ID
					case "severity":
						ra, rb := a.Severity.Rank(), b.Severity.Rank()
						return ra < rb || ra == rb && (a.LastSeen.Before(b.LastSeen) || a.LastSeen.Equal(b.LastSeen) && a.ID < b.ID)
					}
					return a.LastSeen.Before(b.LastSeen) || a.LastSeen.Equal(b.LastSeen) && a.ID < b.ID
				}
				for i := 1; i < len(order); i++ {
					if !less(order[i], order[i-1]) {
						t.Fatalf("out of order at %d: %s after %s", i, order[i].ID, order[i-1].ID)
					}
				}
			})
		}
		// A cursor of one sort is refused by another.
		p, _ := e.ListAlerts(ctx, AlertFilter{Limit: 5})
		if _, err := e.ListAlerts(ctx, AlertFilter{Limit: 5, Sort: "severity", Cursor: p.NextCursor}); !errors.Is(err, ErrInvalid) {
			t.Errorf("cursor of another sort: %v", err)
		}
		// Limits: default 50, at most 1000.
		if p, _ := e.ListAlerts(ctx, AlertFilter{}); len(p.Alerts) != 50 {
			t.Errorf("default limit: %d", len(p.Alerts))
		}
		if p, _ := e.ListAlerts(ctx, AlertFilter{Limit: 5000}); len(p.Alerts) > 1000 || p.NextCursor != "" && len(p.Alerts) != 1000 {
			t.Errorf("limit 5000: %d", len(p.Alerts))
		}
	})
}

func TestAlertStatus(t *testing.T) {
	eachDB(t, func(t *testing.T, e env) {
		c, _ := mustCluster(t, e.Store, "prod")
		mustIngest(t, e.Store, c.ID, batch("b",
			alert("A1", "r1", event.High, t0), alert("A2", "r2", event.Low, t0), alert("A3", "r2", event.Low, t0)), t0)
		t1 := t0.Add(time.Hour)
		n, err := e.SetAlertStatus(ctx, []string{"A1", "A2", "missing"}, event.StatusDismissed, "false positive", "alice", t1)
		if err != nil || n != 2 {
			t.Fatalf("dismiss: %d, %v", n, err)
		}
		// Again: nothing changes, no change rows.
		if n, err := e.SetAlertStatus(ctx, []string{"A1"}, event.StatusDismissed, "again", "bob", t1); err != nil || n != 0 {
			t.Fatalf("dismiss again: %d, %v", n, err)
		}
		t2 := t1.Add(time.Minute)
		if n, err := e.SetAlertStatus(ctx, []string{"A1"}, event.StatusActive, "reopened", "bob", t2); err != nil || n != 1 {
			t.Fatalf("reactivate: %d, %v", n, err)
		}
		a, _ := e.GetAlert(ctx, "A1")
		if a.Status != event.StatusActive || a.StatusReason != "reopened" || a.StatusBy != "bob" || !a.StatusAt.Equal(t2) {
			t.Fatalf("A1 %+v", a)
		}
		ch, err := e.AlertChanges(ctx, "A1")
		if err != nil {
			t.Fatal(err)
		}
		want := []Change{
			{AlertID: "A1", Field: "status", From: "active", To: "dismissed", Reason: "false positive", Actor: "alice", At: t1},
			{AlertID: "A1", Field: "status", From: "dismissed", To: "active", Reason: "reopened", Actor: "bob", At: t2},
		}
		if len(ch) != len(want) {
			t.Fatalf("changes %+v", ch)
		}
		for i := range want {
			if ch[i].At.Equal(want[i].At) {
				ch[i].At = want[i].At
			}
			if ch[i] != want[i] {
				t.Errorf("change %d = %+v, want %+v", i, ch[i], want[i])
			}
		}
		if ch, err := e.AlertChanges(ctx, "A3"); err != nil || len(ch) != 0 || ch == nil {
			t.Errorf("A3 changes %v %v", ch, err)
		}
		if _, err := e.AlertChanges(ctx, "missing"); !errors.Is(err, ErrNotFound) {
			t.Errorf("changes of a missing alert: %v", err)
		}
		if _, err := e.SetAlertStatus(ctx, []string{"missing"}, event.StatusResolved, "", "x", t1); !errors.Is(err, ErrNotFound) {
			t.Errorf("missing alert: %v", err)
		}
		if _, err := e.SetAlertStatus(ctx, []string{"A1"}, "closed", "", "x", t1); !errors.Is(err, ErrInvalid) {
			t.Errorf("bad status: %v", err)
		}
		if n, err := e.SetAlertStatus(ctx, nil, event.StatusResolved, "", "x", t1); n != 0 || err != nil {
			t.Errorf("no ids: %d %v", n, err)
		}
	})
}

func TestSetStatusByFilter(t *testing.T) {
	eachDB(t, func(t *testing.T, e env) {
		seedFilterSet(t, e.Store)
		t1 := t0.Add(time.Hour)
		// Dismiss every alert of rule web-shell in namespace shop: P1, D1.
		n, err := e.SetStatusByFilter(ctx, AlertFilter{Rule: "web-shell", Namespace: "shop", Limit: 1, Cursor: "ignored"},
			event.StatusDismissed, "pentest", "alice", t1)
		if err != nil || n != 2 {
			t.Fatalf("bulk dismiss: %d, %v", n, err)
		}
		p, _ := e.ListAlerts(ctx, AlertFilter{Status: []string{"dismissed"}})
		if got := ids(p.Alerts); !slices.Equal(got, []string{"D1", "P2", "P1"}) {
			t.Fatalf("dismissed: %v", got)
		}
		ch, _ := e.AlertChanges(ctx, "D1")
		if len(ch) != 1 || ch[0].From != "active" || ch[0].To != "dismissed" || ch[0].Actor != "alice" || ch[0].Reason != "pentest" || !ch[0].At.Equal(t1) {
			t.Fatalf("D1 changes %+v", ch)
		}
		// Resolve all high alerts: P2 (dismissed) and D1, P1 change; the
		// count says 3, each gets a change row with its own from value.
		n, err = e.SetStatusByFilter(ctx, AlertFilter{Severity: []event.Severity{event.High}}, event.StatusResolved, "", "bob", t1)
		if err != nil || n != 3 {
			t.Fatalf("bulk resolve: %d, %v", n, err)
		}
		ch, _ = e.AlertChanges(ctx, "P2")
		if len(ch) != 2 || ch[1].From != "dismissed" || ch[1].To != "resolved" {
			t.Fatalf("P2 changes %+v", ch)
		}
		// Nothing left to change.
		if n, err := e.SetStatusByFilter(ctx, AlertFilter{Severity: []event.Severity{event.High}}, event.StatusResolved, "", "bob", t1); n != 0 || err != nil {
			t.Fatalf("again: %d %v", n, err)
		}
		if n, err := e.SetStatusByFilter(ctx, AlertFilter{Cluster: "nope"}, event.StatusResolved, "", "bob", t1); n != 0 || err != nil {
			t.Fatalf("unknown cluster: %d %v", n, err)
		}
		if _, err := e.SetStatusByFilter(ctx, AlertFilter{}, "gone", "", "bob", t1); !errors.Is(err, ErrInvalid) {
			t.Fatalf("bad status: %v", err)
		}
		// An empty filter changes everything.
		if n, err := e.SetStatusByFilter(ctx, AlertFilter{}, event.StatusActive, "", "bob", t1); n != 4 || err != nil {
			t.Fatalf("reactivate all: %d %v", n, err)
		}
	})
}

func TestExceptions(t *testing.T) {
	eachDB(t, func(t *testing.T, e env) {
		prod, _ := mustCluster(t, e.Store, "prod")
		dev, _ := mustCluster(t, e.Store, "dev")
		now := time.Now()
		for _, tc := range []struct {
			cluster string
			x       detect.Exception
		}{
			{"", detect.Exception{ID: "global", Rules: []string{"r1"}, Reason: "everywhere", Namespace: "kube-system"}},
			{prod.ID, detect.Exception{ID: "prod-only", Reason: "ours", Workload: "Deployment/shop/web", Labels: map[string]string{"app": "web"}}},
			{"dev", detect.Exception{ID: "dev-only", Reason: "by name", Image: "debug:*"}},
			{prod.ID, detect.Exception{ID: "expired", Reason: "was temporary", Image: "x", Expires: now.Add(-time.Minute)}},
			{"", detect.Exception{ID: "expiring", Reason: "for a day", Image: "y", Expires: now.Add(24 * time.Hour)}},
		} {
			if err := e.CreateException(ctx, tc.cluster, tc.x, "alice"); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.CreateException(ctx, "", detect.Exception{ID: "global", Reason: "again", Image: "z"}, "a"); !errors.Is(err, ErrConflict) {
			t.Errorf("same id: %v", err)
		}
		if err := e.CreateException(ctx, "", detect.Exception{ID: "noreason", Image: "z"}, "a"); !errors.Is(err, ErrInvalid) {
			t.Errorf("no reason: %v", err)
		}
		if err := e.CreateException(ctx, "nope", detect.Exception{ID: "x", Reason: "r", Image: "z"}, "a"); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown cluster: %v", err)
		}
		if err := e.CreateException(ctx, "", detect.Exception{Reason: "no id given", Image: "z"}, "a"); err != nil {
			t.Errorf("no id: %v", err)
		}
		names := func(cluster string) []string {
			xs, err := e.ListExceptions(ctx, cluster)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, x := range xs {
				if strings.HasPrefix(x.ID, "x-") {
					out = append(out, "x-*")
					continue
				}
				out = append(out, x.ID)
			}
			sort.Strings(out)
			return out
		}
		if got := names(prod.ID); !slices.Equal(got, []string{"expiring", "global", "prod-only", "x-*"}) {
			t.Errorf("prod: %v", got)
		}
		if got := names(dev.ID); !slices.Equal(got, []string{"dev-only", "expiring", "global", "x-*"}) {
			t.Errorf("dev: %v", got)
		}
		if got := names(""); !slices.Equal(got, []string{"expiring", "global", "x-*"}) {
			t.Errorf("global: %v", got)
		}
		xs, _ := e.ListExceptions(ctx, prod.ID)
		for _, x := range xs {
			if x.ID == "prod-only" && (x.Workload != "Deployment/shop/web" || x.Labels["app"] != "web" || x.Reason != "ours") {
				t.Errorf("round trip: %+v", x)
			}
			if x.ID == "expiring" && !x.Expires.Equal(now.Add(24*time.Hour)) {
				t.Errorf("expires %v", x.Expires)
			}
		}
		if err := e.DeleteException(ctx, "global"); err != nil {
			t.Fatal(err)
		}
		if err := e.DeleteException(ctx, "global"); !errors.Is(err, ErrNotFound) {
			t.Errorf("delete twice: %v", err)
		}
		if got := names(""); !slices.Equal(got, []string{"expiring", "x-*"}) {
			t.Errorf("after delete: %v", got)
		}
	})
}

func TestIncidents(t *testing.T) {
	eachDB(t, func(t *testing.T, e env) {
		c, _ := mustCluster(t, e.Store, "prod")
		other, _ := mustCluster(t, e.Store, "other")
		web := inContainer("ctr-web", "shop", "web-1")
		// An attack in one container over 20 minutes, sent in three
		// batches, out of order inside the second.
		mustIngest(t, e.Store, c.ID, batch("b1", alert("S1", "web-shell", event.Medium, t0, web)), t0)
		mustIngest(t, e.Store, c.ID, batch("b2",
			alert("S3", "drift-binary-executed", event.High, t0.Add(10*time.Minute), web),
			alert("S2", "download-tool", event.Low, t0.Add(5*time.Minute), web),
		), t0)
		mustIngest(t, e.Store, c.ID, batch("b3", alert("S4", "crypto-miner", event.High, t0.Add(20*time.Minute), web)), t0)
		// Another container in the same pod spec (different id): its own
		// incident. Another cluster with the same container id: its own.
		mustIngest(t, e.Store, c.ID, batch("b4", alert("O1", "web-shell", event.Low, t0, inContainer("ctr-api", "shop", "api-1"))), t0)
		mustIngest(t, e.Store, other.ID, batch("b5", alert("X1", "web-shell", event.Low, t0, web)), t0)
		// Two hours later in the same container: a new incident.
		later := t0.Add(20*time.Minute + 2*time.Hour)
		mustIngest(t, e.Store, c.ID, batch("b6", alert("L1", "crypto-miner", event.Medium, later, web)), t0)
		// A host alert (no container, no pod): the node is the entity.
		mustIngest(t, e.Store, c.ID, batch("b7", alert("H1", "kernel-module", event.Informational, t0, func(a *event.Alert) {
			a.ContainerID, a.Pod, a.Namespace, a.Workload, a.Container = "", "", "", "", ""
		})), t0)
		// A control-plane alert about a user.
		mustIngest(t, e.Store, c.ID, batch("b8", alert("U1", "cluster-admin-binding", event.High, t0, func(a *event.Alert) {
			a.ContainerID, a.Pod, a.Namespace, a.Workload, a.Container, a.Node = "", "", "", "", "", ""
			a.User = &event.User{Name: "mallory"}
		})), t0)

		s1, _ := e.GetAlert(ctx, "S1")
		inc, err := e.GetIncident(ctx, s1.IncidentID)
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(inc.Alerts); !slices.Equal(got, []string{"S1", "S2", "S3", "S4"}) {
			t.Fatalf("timeline %v", got)
		}
		if inc.AlertCount != 4 || inc.Severity != event.High || inc.EntityKind != EntityContainer || inc.Entity != "ctr-web" ||
			inc.ClusterID != c.ID || !inc.FirstSeen.Equal(t0) || !inc.LastSeen.Equal(t0.Add(20*time.Minute)) {
			t.Fatalf("incident %+v", inc)
		}
		if want := "Title of web-shell on container web of pod shop/web-1"; inc.Title != want {
			t.Errorf("title %q, want %q", inc.Title, want)
		}
		for _, a := range inc.Alerts {
			if a.IncidentID != inc.ID {
				t.Errorf("%s has incident %q", a.ID, a.IncidentID)
			}
		}
		l1, _ := e.GetAlert(ctx, "L1")
		if l1.IncidentID == "" || l1.IncidentID == inc.ID {
			t.Fatalf("two hours later: incident %q (first was %q)", l1.IncidentID, inc.ID)
		}
		incs, err := e.ListIncidents(ctx, "prod", 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, in := range incs {
			got = append(got, fmt.Sprintf("%s:%s:%d:%s", in.EntityKind, in.Entity, in.AlertCount, in.Severity))
		}
		want := []string{ // most recently active first; ties by id (creation order) descending
			"container:ctr-web:1:medium",
			"container:ctr-web:4:high",
			"user:mallory:1:high",
			"node:node-1:1:informational",
			"container:ctr-api:1:low",
		}
		if !slices.Equal(got, want) {
			t.Fatalf("incidents\n got %v\nwant %v", got, want)
		}
		if incs[2].Title != "Title of cluster-admin-binding on user mallory" || incs[3].Title != "Title of kernel-module on node node-1" {
			t.Errorf("titles %q, %q", incs[2].Title, incs[3].Title)
		}
		if all, _ := e.ListIncidents(ctx, "", 2); len(all) != 2 {
			t.Errorf("limit: %d", len(all))
		}
		if all, _ := e.ListIncidents(ctx, "", 0); len(all) != 6 {
			t.Errorf("all clusters: %d", len(all))
		}
		if none, err := e.ListIncidents(ctx, "nope", 0); err != nil || len(none) != 0 || none == nil {
			t.Errorf("unknown cluster: %v %v", none, err)
		}
		if _, err := e.GetIncident(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetIncident(nope) = %v", err)
		}

		// The miner keeps running: the re-sent alert (same id, later
		// last_seen) keeps its incident and pushes the incident's
		// last_seen, so a new alert 40 minutes after the first incident's
		// last alert but 10 after the re-send still joins it.
		s4 := alert("S4", "crypto-miner", event.High, t0.Add(20*time.Minute), web)
		s4.LastSeen, s4.Count = t0.Add(50*time.Minute), 30
		mustIngest(t, e.Store, c.ID, batch("b9", s4, alert("S5", "reverse-shell", event.High, t0.Add(60*time.Minute), web)), t0)
		inc2, _ := e.GetIncident(ctx, inc.ID)
		if inc2.AlertCount != 5 || !inc2.LastSeen.Equal(t0.Add(60*time.Minute)) || len(inc2.Alerts) != 5 {
			t.Fatalf("after the re-send: count %d last %v alerts %v", inc2.AlertCount, inc2.LastSeen, ids(inc2.Alerts))
		}
	})
}

// TestConcurrentIngest ingests from several goroutines and two Stores at
// once (several sensors of several clusters, two server processes): nothing
// is lost, nothing fails with "database is locked", and retries of a batch
// stay no-ops.
func TestConcurrentIngest(t *testing.T) {
	eachDB(t, func(t *testing.T, e env) {
		c1, _ := mustCluster(t, e.Store, "c1")
		c2, _ := mustCluster(t, e.Store, "c2")
		const workers, batches, per = 6, 10, 40
		// A second Store on the same database (another process, e.g. the
		// CLI, in real life): on SQLite its writes wait on busy_timeout.
		other, err := Open(ctx, e.dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		var wg sync.WaitGroup
		errs := make(chan error, workers*batches*2)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cid := c1.ID
				if w%2 == 1 {
					cid = c2.ID
				}
				for b := range batches {
					var as []event.Alert
					for i := range per {
						// Workers of one cluster share half their alert ids
						// (two sensors re-sending the same aggregated
						// alert) and containers (one incident chain).
						id := fmt.Sprintf("w%d-b%d-i%d", w, b, i)
						if i%2 == 0 {
							id = fmt.Sprintf("shared-%d-b%d-i%d", w%2, b, i)
						}
						as = append(as, alert(id, "r", event.High, t0.Add(time.Duration(b)*time.Second),
							inContainer(fmt.Sprintf("ctr-%d", i%5), "ns", "pod")))
					}
					bt := batch(fmt.Sprintf("w%d-b%d", w, b), as...)
					bt.Health = []ship.Health{{Component: "sensor", State: "installed"}}
					for range 2 { // every batch is retried once
						st := e.Store
						if w >= 4 {
							st = other
						}
						if _, err := st.Ingest(ctx, cid, bt, t0); err != nil {
							errs <- err
						}
					}
				}
			}()
		}
		// Readers run meanwhile.
		stop := make(chan struct{})
		var rwg sync.WaitGroup
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := e.ListAlerts(ctx, AlertFilter{Cluster: "c1", Limit: 20}); err != nil {
					errs <- err
					return
				}
			}
		}()
		wg.Wait()
		close(stop)
		rwg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		// Per cluster: 3 workers x 10 batches x (20 own + 20 shared ids),
		// shared ids counted once.
		wantPer := 3*batches*per/2 + batches*per/2
		for _, c := range []string{"c1", "c2"} {
			counts, err := e.CountAlerts(ctx, AlertFilter{Cluster: c})
			if err != nil {
				t.Fatal(err)
			}
			if counts[event.High] != wantPer {
				t.Errorf("cluster %s: %d alerts, want %d", c, counts[event.High], wantPer)
			}
		}
		// Every alert belongs to an incident whose count adds up.
		incs, err := e.ListIncidents(ctx, "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, in := range incs {
			total += in.AlertCount
		}
		if total != 2*wantPer {
			t.Errorf("incidents hold %d alerts, want %d", total, 2*wantPer)
		}
		if len(incs) != 10 { // 5 containers x 2 clusters, all within the window
			t.Errorf("%d incidents, want 10", len(incs))
		}
	})
}

// TestResourceFilter checks the resource filter (pod, namespace/pod,
// workload, image, container id, node) with every sort, other filters,
// pagination, counts and SetStatusByFilter.
func TestResourceFilter(t *testing.T) {
	eachDB(t, func(t *testing.T, e env) {
		prod, _ := mustCluster(t, e.Store, "prod")
		type ctr struct{ id, ns, pod, workload, image, node string }
		ctrs := []ctr{
			{"ca", "shop", "web-1", "Deployment/shop/web", "nginx:1.27", "node-1"},
			{"cb", "shop", "web-2", "Deployment/shop/web", "nginx:1.27", "node-2"},
			{"cc", "billing", "web-1", "Deployment/billing/web", "pay:2", "node-1"},
			{"", "", "", "", "", "node-3"}, // a node-level alert
		}
		sevs := []event.Severity{event.Informational, event.Low, event.Medium, event.High}
		var all []event.Alert
		for i := range 160 {
			c := ctrs[i%len(ctrs)]
			at := t0.Add(time.Duration(i/5) * time.Second) // shared times: the id tiebreak matters
			a := alert(fmt.Sprintf("R%04d", (i*37)%160), "r", sevs[(i/3)%4], at, func(a *event.Alert) {
				a.ContainerID, a.Namespace, a.Pod, a.Workload, a.Image, a.Node = c.id, c.ns, c.pod, c.workload, c.image, c.node
				a.FirstSeen = at.Add(-time.Duration(i%7) * time.Minute)
			})
			all = append(all, a)
		}
		for start := 0; start < len(all); start += 40 {
			mustIngest(t, e.Store, prod.ID, batch(fmt.Sprintf("b%d", start), all[start:start+40]...), t0)
		}
		var dismissed []string
		for i := 0; i < len(all); i += 3 {
			dismissed = append(dismissed, all[i].ID)
		}
		if _, err := e.SetAlertStatus(ctx, dismissed, event.StatusDismissed, "", "me", t0); err != nil {
			t.Fatal(err)
		}
		isDismissed := func(id string) bool { return slices.Contains(dismissed, id) }
		in := func(ids ...string) func(a event.Alert) bool {
			return func(a event.Alert) bool { return slices.Contains(ids, a.ContainerID) }
		}
		onNode := func(n string) func(a event.Alert) bool { return func(a event.Alert) bool { return a.Node == n } }
		for _, tc := range []struct {
			resource string
			match    func(a event.Alert) bool
		}{
			{"web-1", in("ca", "cc")},
			{"shop/web-1", in("ca")},
			{"Deployment/shop/web", in("ca", "cb")},
			{"nginx:1.27", in("ca", "cb")},
			{"pay:2", in("cc")},
			{"cb", in("cb")},
			{"node-1", onNode("node-1")},
			{"node-3", onNode("node-3")},
			{"nope", func(event.Alert) bool { return false }},
		} {
			for _, sortBy := range []string{"last_seen", "first_seen", "severity"} {
				for _, active := range []bool{false, true} {
					t.Run(tc.resource+"/"+sortBy+fmt.Sprint("/active=", active), func(t *testing.T) {
						var want []event.Alert
						for _, a := range all {
							if tc.match(a) && (!active || !isDismissed(a.ID)) {
								want = append(want, a)
							}
						}
						key := func(a event.Alert) []int64 {
							switch sortBy {
							case "first_seen":
								return []int64{ts(a.FirstSeen)}
							case "severity":
								return []int64{int64(a.Severity.Rank()), ts(a.LastSeen)}
							}
							return []int64{ts(a.LastSeen)}
						}
						slices.SortFunc(want, func(x, y event.Alert) int {
							if c := slices.Compare(key(y), key(x)); c != 0 {
								return c
							}
							return strings.Compare(y.ID, x.ID)
						})
						wantIDs := make([]string, len(want))
						for i, a := range want {
							wantIDs[i] = a.ID
						}
						f := AlertFilter{Resource: tc.resource, Sort: sortBy, Limit: 7}
						if active {
							f.Status = []string{event.StatusActive}
						}
						var got []string
						for pages := 0; ; pages++ {
							if pages > 100 {
								t.Fatal("too many pages")
							}
							p, err := e.ListAlerts(ctx, f)
							if err != nil {
								t.Fatal(err)
							}
							got = append(got, ids(p.Alerts)...)
							if p.NextCursor == "" {
								break
							}
							f.Cursor = p.NextCursor
						}
						if !slices.Equal(got, wantIDs) {
							t.Fatalf("got %v\nwant %v", got, wantIDs)
						}
						f.Cursor = ""
						counts, err := e.CountAlerts(ctx, f)
						if err != nil {
							t.Fatal(err)
						}
						total := 0
						for _, n := range counts {
							total += n
						}
						if total != len(want) {
							t.Errorf("CountAlerts = %v, want %d in all", counts, len(want))
						}
					})
				}
			}
		}
		// SetStatusByFilter with a resource changes just its alerts.
		n, err := e.SetStatusByFilter(ctx, AlertFilter{Resource: "shop/web-1"}, event.StatusResolved, "", "me", t0)
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		for _, a := range all {
			if a.ContainerID == "ca" {
				want++
			}
		}
		if n != want {
			t.Errorf("SetStatusByFilter changed %d, want %d", n, want)
		}
		counts, err := e.CountAlerts(ctx, AlertFilter{Status: []string{event.StatusResolved}})
		if err != nil {
			t.Fatal(err)
		}
		if total := counts[event.High] + counts[event.Medium] + counts[event.Low] + counts[event.Informational]; total != want {
			t.Errorf("resolved: %v, want %d", counts, want)
		}
	})
}

// TestSearchTimeout: a search past SearchTimeout fails with an error
// wrapping context.DeadlineExceeded; a caller's own deadline stays its own.
func TestSearchTimeout(t *testing.T) {
	if !errors.Is(ErrSearchTimeout, context.DeadlineExceeded) {
		t.Fatal("ErrSearchTimeout does not wrap context.DeadlineExceeded")
	}
	parent := context.Background()
	sctx, cancel := context.WithTimeout(parent, time.Nanosecond)
	defer cancel()
	<-sctx.Done()
	if err := searchErr(sctx, parent, errors.New("interrupted")); !errors.Is(err, ErrSearchTimeout) {
		t.Errorf("searchErr = %v", err)
	}
	if err := searchErr(parent, parent, nil); err != nil {
		t.Errorf("searchErr(nil) = %v", err)
	}
}

// TestSummarizeFindings: findings sum per check, on both databases: how
// many resources pass and fail, which fail, in which modes.
func TestSummarizeFindings(t *testing.T) {
	eachDB(t, func(t *testing.T, e env) {
		prod, _ := mustCluster(t, e.Store, "prod")
		dev, _ := mustCluster(t, e.Store, "dev")
		f := func(check, resource, status, mode string) ship.Finding {
			return ship.Finding{ID: check + "/" + resource, Check: check, Resource: resource, Status: status, Details: map[string]any{"mode": mode}}
		}
		mustIngest(t, e.Store, prod.ID, &ship.Batch{BatchID: "f1", Findings: []ship.Finding{
			f("no-privileged", "Deployment/shop/web", ship.Unhealthy, "deny"),
			f("no-privileged", "Deployment/shop/api", ship.Healthy, "deny"),
			f("read-only-root-fs", "Deployment/shop/web", ship.Healthy, "audit"),
		}}, t0)
		mustIngest(t, e.Store, dev.ID, &ship.Batch{BatchID: "f2", Findings: []ship.Finding{
			f("no-privileged", "Deployment/dev/tool", ship.Unhealthy, "audit"),
		}}, t0)
		all, err := e.SummarizeFindings(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 2 || all[0].Check != "no-privileged" || all[0].Healthy != 1 || all[0].Unhealthy != 2 ||
			!slices.Equal(all[0].Resources, []string{"Deployment/dev/tool", "Deployment/shop/web"}) && !slices.Equal(all[0].Resources, []string{"Deployment/shop/web", "Deployment/dev/tool"}) ||
			len(all[0].Modes) != 2 || all[1].Check != "read-only-root-fs" || all[1].Healthy != 1 || all[1].Unhealthy != 0 {
			t.Fatalf("all clusters: %+v", all)
		}
		one, err := e.SummarizeFindings(ctx, "prod")
		if err != nil {
			t.Fatal(err)
		}
		if len(one) != 2 || one[0].Unhealthy != 1 || !slices.Equal(one[0].Modes, []string{"deny"}) {
			t.Fatalf("prod: %+v", one)
		}
		if !slices.Equal(all[0].Modes, []string{"audit", "deny"}) || !slices.Equal(all[0].Resources, []string{"Deployment/dev/tool", "Deployment/shop/web"}) {
			t.Fatalf("modes and resources are sorted: %+v", all[0])
		}
		if none, err := e.SummarizeFindings(ctx, "nope"); err != nil || len(none) != 0 {
			t.Fatalf("unknown cluster: %+v %v", none, err)
		}

		// Many failing resources: the first MaxSummaryResources in order;
		// a mode that is not a string counts as none.
		var many []ship.Finding
		for i := range MaxSummaryResources + 20 {
			fi := f("run-as-non-root", fmt.Sprintf("Deployment/shop/w%03d", MaxSummaryResources+20-i), ship.Unhealthy, "audit")
			if i%2 == 0 {
				fi.Details["mode"] = 7
			}
			many = append(many, fi)
		}
		mustIngest(t, e.Store, dev.ID, &ship.Batch{BatchID: "f3", Findings: many}, t0)
		all, err = e.SummarizeFindings(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		rn := all[2]
		if rn.Check != "run-as-non-root" || rn.Unhealthy != MaxSummaryResources+20 || len(rn.Resources) != MaxSummaryResources ||
			rn.Resources[0] != "Deployment/shop/w001" || rn.Resources[MaxSummaryResources-1] != "Deployment/shop/w100" ||
			!slices.Equal(rn.Modes, []string{"audit"}) {
			t.Fatalf("run-as-non-root: %+v", rn)
		}
		if fs, _ := e.ListFindings(ctx, "dev", "run-as-non-root"); len(fs) != MaxSummaryResources+20 || fs[0].Mode != "audit" && fs[0].Mode != "" {
			t.Fatalf("list: %d", len(fs))
		}

		// Rows stored before migration 4 get their mode from the backfill.
		if _, err := e.w.ExecContext(ctx, "UPDATE findings SET mode = ''"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.w.ExecContext(ctx, e.d.q("INSERT INTO findings (cluster_id, id, check_id, status, last_seen) VALUES (?, 'bare', 'no-privileged', 'healthy', 1)"), prod.ID); err != nil {
			t.Fatal(err)
		}
		tx, err := e.w.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := backfillFindingModes(ctx, tx, e.d); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		after, err := e.SummarizeFindings(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(after[0].Modes, []string{"audit", "deny"}) || after[0].Healthy != 2 || !slices.Equal(after[2].Modes, []string{"audit"}) {
			t.Fatalf("after backfill: %+v", after)
		}
	})
}

func TestFindingsLifecycle(t *testing.T) {
	eachDB(t, func(t *testing.T, e env) {
		prod, _ := mustCluster(t, e.Store, "prod")
		dev, _ := mustCluster(t, e.Store, "dev")
		f := func(id, status, scan string) ship.Finding {
			return ship.Finding{ID: id, Check: "no-privileged", Resource: "Deployment/shop/" + id, Status: status, Scan: scan,
				Details: map[string]any{"mode": "audit"}}
		}
		ids := func(cluster string) []string {
			t.Helper()
			fs, err := e.ListFindings(ctx, cluster, "")
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, f := range fs {
				out = append(out, f.ID+"@"+f.Scan)
			}
			return out
		}
		// A manual scan, then a scanner run: later findings of an id win,
		// removed ones delete, in batch order.
		mustIngest(t, e.Store, prod.ID, &ship.Batch{BatchID: "b1", Findings: []ship.Finding{
			f("manual", ship.Unhealthy, ""), f("a", ship.Unhealthy, ""), f("gone", ship.Healthy, ""),
		}}, t0)
		mustIngest(t, e.Store, dev.ID, &ship.Batch{BatchID: "d1", Findings: []ship.Finding{f("a", ship.Unhealthy, "")}}, t0)
		res, err := e.Ingest(ctx, prod.ID, &ship.Batch{BatchID: "b2", Findings: []ship.Finding{
			f("a", ship.Healthy, "S1"),
			{ID: "a", Status: ship.Removed, Scan: "S1"}, // removed after an upsert: deleted
			f("b", ship.Unhealthy, "S1"),
			{ID: "c", Status: ship.Removed},
			f("c", ship.Unhealthy, "S1"), // upsert after removed: re-created
			{ID: "gone", Check: "no-privileged", Status: ship.Removed},
			{ID: "never-stored", Status: ship.Removed},
		}}, t0)
		if err != nil {
			t.Fatal(err)
		}
		if res.Findings != 7 || res.FindingsDeleted != 2 {
			t.Fatalf("result %+v", res)
		}
		if got := ids("prod"); !slices.Equal(got, []string{"b@S1", "c@S1", "manual@"}) {
			t.Fatalf("after b2: %v", got)
		}
		// Completing S1 deletes the cluster's findings of other scans,
		// after the batch's own findings; other clusters keep theirs.
		res, err = e.Ingest(ctx, prod.ID, &ship.Batch{BatchID: "b3", Findings: []ship.Finding{f("d", ship.Healthy, "S1")},
			CompletedScans: []string{"S1"}}, t0)
		if err != nil {
			t.Fatal(err)
		}
		if res.FindingsDeleted != 1 {
			t.Fatalf("result %+v", res)
		}
		if got := ids("prod"); !slices.Equal(got, []string{"b@S1", "c@S1", "d@S1"}) {
			t.Fatalf("after completing S1: %v", got)
		}
		if got := ids("dev"); !slices.Equal(got, []string{"a@"}) {
			t.Fatalf("dev: %v", got)
		}
		// The next run re-reports b only, then completes: c and d are gone.
		mustIngest(t, e.Store, prod.ID, &ship.Batch{BatchID: "b4", Findings: []ship.Finding{f("b", ship.Healthy, "S2")}}, t0)
		mustIngest(t, e.Store, prod.ID, &ship.Batch{BatchID: "b5", CompletedScans: []string{"S2"}}, t0)
		if got := ids("prod"); !slices.Equal(got, []string{"b@S2"}) {
			t.Fatalf("after completing S2: %v", got)
		}
		// A retried batch is skipped whole, its completion included.
		mustIngest(t, e.Store, prod.ID, &ship.Batch{BatchID: "b6", Findings: []ship.Finding{f("e", ship.Healthy, "S3")}}, t0)
		if res, err := e.Ingest(ctx, prod.ID, &ship.Batch{BatchID: "b5", CompletedScans: []string{"S2"}}, t0); err != nil || !res.Duplicate {
			t.Fatalf("retry: %+v %v", res, err)
		}
		if got := ids("prod"); !slices.Equal(got, []string{"b@S2", "e@S3"}) {
			t.Fatalf("after the retry: %v", got)
		}
	})
}

func TestListFindingsPage(t *testing.T) {
	eachDB(t, func(t *testing.T, e env) {
		prod, _ := mustCluster(t, e.Store, "prod")
		dev, _ := mustCluster(t, e.Store, "dev")
		var want []string // every no-privileged finding in list order: resource, cluster, id
		for _, c := range []clusterRef{{prod.ID, "prod"}, {dev.ID, "dev"}} {
			var fs []ship.Finding
			for i := range 45 {
				status := ship.Healthy
				if i%3 == 0 {
					status = ship.Unhealthy
				}
				ns := []string{"shop", "kube-system"}[i%2]
				res := fmt.Sprintf("Deployment/%s/w%02d", ns, i%20) // resources repeat: the id breaks ties
				fs = append(fs, ship.Finding{ID: fmt.Sprintf("f%02d", i), Check: "no-privileged", Resource: res, Namespace: ns,
					Status: status, Details: map[string]any{"mode": "deny", "violations": []any{"privileged: true"}}})
				fs = append(fs, ship.Finding{ID: fmt.Sprintf("g%02d", i), Check: "other", Resource: res, Status: ship.Unhealthy})
			}
			mustIngest(t, e.Store, c.id, &ship.Batch{BatchID: "seed-" + c.name, Findings: fs}, t0)
		}
		all, err := e.ListFindings(ctx, "", "no-privileged")
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(all, func(a, b FindingRow) int {
			return cmp.Or(strings.Compare(a.Resource, b.Resource), strings.Compare(a.ClusterID, b.ClusterID), strings.Compare(a.ID, b.ID))
		})
		key := func(r FindingRow) string { return r.ClusterID + "/" + r.ID }
		for _, r := range all {
			want = append(want, key(r))
		}
		walk := func(f FindingFilter) []string {
			t.Helper()
			var got []string
			for pages := 0; ; pages++ {
				page, err := e.ListFindingsPage(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				if len(page.Findings) > max(f.Limit, 1) || pages > 200 {
					t.Fatalf("page of %d", len(page.Findings))
				}
				for _, r := range page.Findings {
					if r.Check != "no-privileged" || r.Mode != "deny" || r.LastSeen.IsZero() {
						t.Fatalf("row %+v", r)
					}
					got = append(got, key(r))
				}
				if page.NextCursor == "" {
					return got
				}
				f.Cursor = page.NextCursor
			}
		}
		filter := func(keep func(FindingRow) bool) []string {
			var out []string
			for _, r := range all {
				if keep(r) {
					out = append(out, key(r))
				}
			}
			return out
		}
		for _, tc := range []struct {
			f    FindingFilter
			keep func(FindingRow) bool
		}{
			{FindingFilter{Check: "no-privileged", Limit: 7}, func(FindingRow) bool { return true }},
			{FindingFilter{Check: "no-privileged", Limit: 1000}, func(FindingRow) bool { return true }},
			{FindingFilter{Check: "no-privileged", Status: ship.Unhealthy, Limit: 4}, func(r FindingRow) bool { return r.Status == ship.Unhealthy }},
			{FindingFilter{Check: "no-privileged", Status: ship.Healthy, Cluster: "dev", Limit: 5}, func(r FindingRow) bool { return r.Status == ship.Healthy && r.ClusterID == dev.ID }},
			{FindingFilter{Check: "no-privileged", Cluster: prod.ID, Namespace: "shop", Limit: 3}, func(r FindingRow) bool { return r.ClusterID == prod.ID && r.Namespace == "shop" }},
			{FindingFilter{Check: "no-privileged", Status: ship.Unhealthy, Namespace: "kube-system", Limit: 2}, func(r FindingRow) bool { return r.Status == ship.Unhealthy && r.Namespace == "kube-system" }},
		} {
			if got, want := walk(tc.f), filter(tc.keep); !slices.Equal(got, want) {
				t.Errorf("%+v:\n got %v\nwant %v", tc.f, got, want)
			}
		}
		if len(want) != 90 {
			t.Fatalf("%d findings", len(want))
		}
		if page, err := e.ListFindingsPage(ctx, FindingFilter{Check: "no-privileged", Cluster: "nope"}); err != nil || len(page.Findings) != 0 {
			t.Fatalf("unknown cluster: %+v %v", page, err)
		}
		if page, err := e.ListFindingsPage(ctx, FindingFilter{Check: "no-privileged"}); err != nil || len(page.Findings) != 50 || page.NextCursor == "" {
			t.Fatalf("default limit: %d %v", len(page.Findings), err)
		}
		for _, bad := range []FindingFilter{
			{}, {Check: "c", Status: "removed"}, {Check: "c", Limit: -1}, {Check: "c", Limit: MaxFindingsPage + 1},
			{Check: "c", Cursor: "x"}, {Check: "c", Cursor: "e30"},
		} {
			if _, err := e.ListFindingsPage(ctx, bad); !errors.Is(err, ErrInvalid) {
				t.Errorf("%+v: %v, want ErrInvalid", bad, err)
			}
		}
	})
}

// clusterRef is a cluster by id and name.
type clusterRef struct{ id, name string }
