package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/server/api"
	"github.com/vigil-sec/vigil/internal/server/store"
	"github.com/vigil-sec/vigil/internal/server/store/pgtest"
	"github.com/vigil-sec/vigil/internal/ship"
)

// env is a real server over a real store, with one token per role.
type env struct {
	t                      *testing.T
	url                    string
	admin, reader          string
	clusterA, clusterB     string
	clusterAID, clusterBID string
	exported               chan event.Alert
}

// forEachDB runs fn against SQLite and PostgreSQL.
func forEachDB(t *testing.T, fn func(t *testing.T, e *env)) {
	forEachDSN(t, func(t *testing.T, dsn string) { fn(t, newEnv(t, dsn)) })
}

// forEachDSN runs fn with a fresh SQLite database and a fresh PostgreSQL
// one.
func forEachDSN(t *testing.T, fn func(t *testing.T, dsn string)) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			var dsn string
			if db == "sqlite" {
				dsn = "sqlite://" + filepath.Join(t.TempDir(), "vigil.db")
			} else {
				dsn = pgtest.New(t)
			}
			fn(t, dsn)
		})
	}
}

func newEnv(t *testing.T, dsn string) *env { return newEnvWith(t, dsn, nil) }

// newEnvWith is newEnv with a hook that completes the API's config.
func newEnvWith(t *testing.T, dsn string, configure func(st *store.Store, cfg *api.Config)) *env {
	ctx := context.Background()
	st, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, exported: make(chan event.Alert, 1000)}
	if e.admin, err = st.CreateToken(ctx, "alice", store.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if e.reader, err = st.CreateToken(ctx, "bob", store.RoleReader); err != nil {
		t.Fatal(err)
	}
	a, secretA, err := st.CreateCluster(ctx, "prod-1")
	if err != nil {
		t.Fatal(err)
	}
	b, secretB, err := st.CreateCluster(ctx, "prod-2")
	if err != nil {
		t.Fatal(err)
	}
	e.clusterA, e.clusterAID, e.clusterB, e.clusterBID = secretA, a.ID, secretB, b.ID
	cfg := api.Config{Store: st, Alerts: func(a event.Alert) { e.exported <- a }}
	if configure != nil {
		configure(st, &cfg)
	}
	srv := httptest.NewServer(api.New(cfg).Handler())
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

// do sends a request and returns the status and the decoded JSON body.
func (e *env) do(method, path, token string, body any) (int, map[string]any) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		e.t.Fatalf("%s %s: Content-Type %q, body %q", method, path, ct, data)
	}
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		e.t.Fatalf("%s %s: %d, body is not a JSON object: %q", method, path, resp.StatusCode, data)
	}
	if resp.StatusCode >= 400 {
		if msg, _ := out["error"].(string); msg == "" {
			e.t.Fatalf("%s %s: %d without an error message: %q", method, path, resp.StatusCode, data)
		}
	}
	return resp.StatusCode, out
}

func testAlert(id, rule string, sev event.Severity, ns string, at time.Time) event.Alert {
	return event.Alert{ID: id, Rule: rule, Title: "title of " + rule, Severity: sev, Status: event.StatusActive,
		FirstSeen: at, LastSeen: at, Count: 1, Node: "node-1", Namespace: ns, Pod: "web-1", Container: "web",
		ContainerID: "c0ffee" + id, Image: "nginx:1.27", Workload: "Deployment/" + ns + "/web",
		Process: &event.Process{Pid: 42, Exe: "/tmp/xmrig", Args: []string{"./xmrig"}}}
}

func batch(id string, alerts ...event.Alert) *ship.Batch {
	return &ship.Batch{BatchID: id, Node: "node-1", Component: "sensor", SentAt: time.Now(), Alerts: alerts}
}

func TestRoles(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		now := time.Now().UTC()
		if code, body := e.do("POST", "/api/v1/ingest", e.clusterA, batch("b1", testAlert("01A", "runtime.x", event.High, "shop", now))); code != 200 {
			t.Fatalf("ingest: %d %v", code, body)
		}
		for _, tc := range []struct {
			name, method, path, token string
			body                      any
			want                      int
		}{
			{"no token", "GET", "/api/v1/alerts", "", nil, 401},
			{"bad token", "GET", "/api/v1/alerts", "vgl_nope", nil, 401},
			{"reader lists", "GET", "/api/v1/alerts", e.reader, nil, 200},
			{"reader reads one", "GET", "/api/v1/alerts/01A", e.reader, nil, 200},
			{"reader may not dismiss", "POST", "/api/v1/alerts/01A/dismiss", e.reader, map[string]string{"reason": "x"}, 403},
			{"reader may not add clusters", "POST", "/api/v1/clusters", e.reader, map[string]string{"name": "x"}, 403},
			{"reader may not ingest", "POST", "/api/v1/ingest", e.reader, batch("b2"), 403},
			{"cluster may not read alerts", "GET", "/api/v1/alerts", e.clusterA, nil, 403},
			{"other cluster may not read alerts", "GET", "/api/v1/alerts/01A", e.clusterB, nil, 403},
			{"cluster may not dismiss", "POST", "/api/v1/alerts/01A/dismiss", e.clusterB, map[string]string{"reason": "x"}, 403},
			{"admin may not ingest as a cluster", "POST", "/api/v1/ingest", e.admin, batch("b3"), 403},
			{"dismiss needs a reason", "POST", "/api/v1/alerts/01A/dismiss", e.admin, map[string]string{"reason": " "}, 400},
			{"unknown alert", "POST", "/api/v1/alerts/nope/dismiss", e.admin, map[string]string{"reason": "x"}, 404},
			{"admin dismisses", "POST", "/api/v1/alerts/01A/dismiss", e.admin, map[string]string{"reason": "test workload"}, 200},
			{"no such route", "GET", "/api/v1/nothing", e.admin, nil, 404},
			{"reader may not see exports", "GET", "/api/v1/exports", e.reader, nil, 403},
			{"admin sees exports", "GET", "/api/v1/exports", e.admin, nil, 200},
		} {
			if code, body := e.do(tc.method, tc.path, tc.token, tc.body); code != tc.want {
				t.Errorf("%s: %s %s = %d %v, want %d", tc.name, tc.method, tc.path, code, body, tc.want)
			}
		}
		_, a := e.do("GET", "/api/v1/alerts/01A", e.reader, nil)
		changes, _ := a["changes"].([]any)
		if a["status"] != "dismissed" || len(changes) != 1 {
			t.Fatalf("after dismiss: status %v, changes %v", a["status"], changes)
		}
		c := changes[0].(map[string]any)
		if c["Actor"] != "alice" && c["actor"] != "alice" {
			t.Fatalf("change does not record who: %v", c)
		}
	})
}

func TestIngestIsIdempotent(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		now := time.Now().UTC().Truncate(time.Millisecond)
		b := batch("01BATCH", testAlert("01X", "runtime.x", event.High, "shop", now), testAlert("01Y", "runtime.y", event.Low, "shop", now))
		for range 2 {
			if code, body := e.do("POST", "/api/v1/ingest", e.clusterA, b); code != 200 {
				t.Fatalf("ingest: %d %v", code, body)
			}
		}
		// The same alert again, aggregated: count 5, later last_seen, in a new batch.
		upd := testAlert("01X", "runtime.x", event.High, "shop", now)
		upd.Count, upd.LastSeen = 5, now.Add(time.Minute)
		e.do("POST", "/api/v1/ingest", e.clusterA, batch("01BATCH2", upd))
		_, page := e.do("GET", "/api/v1/alerts", e.admin, nil)
		alerts := page["alerts"].([]any)
		if len(alerts) != 2 {
			t.Fatalf("%d alerts stored, want 2", len(alerts))
		}
		_, x := e.do("GET", "/api/v1/alerts/01X", e.admin, nil)
		if x["count"] != float64(5) || x["cluster"] != "prod-1" {
			t.Fatalf("aggregated alert: count %v cluster %v", x["count"], x["cluster"])
		}
		// Exported once per (non-duplicate) receipt.
		if n := len(e.exported); n != 3 {
			t.Fatalf("%d alerts handed to the exporters, want 3 (2 + 1 update; the duplicate batch none)", n)
		}
	})
}

func TestBadInput(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		huge := []byte(`{"batch_id":"b","alerts":[` + strings.Repeat(`{"id":"x"},`, 1<<20) + `{"id":"y"}]}`)
		for _, tc := range []struct {
			name string
			body any
			want int
		}{
			{"truncated JSON", `{"batch_id":"b","alerts":[{"severity":`, 400},
			{"not JSON", `hello`, 400},
			{"wrong type", `{"batch_id":"b","alerts":"many"}`, 400},
			{"unknown field", `{"batch_id":"b","alertz":[]}`, 400},
			{"no batch id", `{"alerts":[]}`, 400},
			{"bad severity", `{"batch_id":"b","alerts":[{"id":"a","rule":"r","severity":"critical"}]}`, 400},
			{"two objects", `{"batch_id":"b"}{"batch_id":"c"}`, 400},
			{"oversized", huge, 413},
		} {
			if code, body := e.do("POST", "/api/v1/ingest", e.clusterA, tc.body); code != tc.want {
				t.Errorf("%s: %d %v, want %d", tc.name, code, body, tc.want)
			}
		}
		// Nothing accepted before is lost, and the server still answers.
		now := time.Now().UTC()
		if code, _ := e.do("POST", "/api/v1/ingest", e.clusterA, batch("ok", testAlert("01OK", "runtime.ok", event.Medium, "shop", now))); code != 200 {
			t.Fatal("a good batch after bad ones was refused")
		}
		for _, tc := range []struct{ name, method, path, body string }{
			{"unknown field in dismiss", "POST", "/api/v1/alerts/01OK/dismiss", `{"reason":"x","why":1}`},
			{"bad severity filter", "GET", "/api/v1/alerts?severity=critical", ""},
			{"bad limit", "GET", "/api/v1/alerts?limit=100000", ""},
			{"bad since", "GET", "/api/v1/alerts?since=yesterday", ""},
			{"empty bulk filter", "POST", "/api/v1/alerts/dismiss", `{"reason":"x"}`},
		} {
			var body any
			if tc.body != "" {
				body = tc.body
			}
			if code, out := e.do(tc.method, tc.path, e.admin, body); code != 400 {
				t.Errorf("%s: %d %v, want 400", tc.name, code, out)
			}
		}
		if _, a := e.do("GET", "/api/v1/alerts/01OK", e.admin, nil); a["status"] != "active" {
			t.Fatalf("the good alert: %v", a)
		}
	})
}

func TestFiltersPaginationAndBulk(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		base := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
		var alerts []event.Alert
		for i := range 120 {
			sev := []event.Severity{event.High, event.Medium, event.Low}[i%3]
			ns := []string{"shop", "billing"}[i%2]
			alerts = append(alerts, testAlert(fmt.Sprintf("01P%03d", i), fmt.Sprintf("runtime.r%d", i%4), sev, ns, base.Add(time.Duration(i)*time.Second)))
		}
		if code, body := e.do("POST", "/api/v1/ingest", e.clusterA, batch("bp", alerts...)); code != 200 {
			t.Fatalf("ingest: %d %v", code, body)
		}
		seen := map[string]bool{}
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 20 {
				t.Fatal("pagination does not end")
			}
			path := "/api/v1/alerts?limit=25&severity=high,medium"
			if cursor != "" {
				path += "&cursor=" + cursor
			}
			code, page := e.do("GET", path, e.reader, nil)
			if code != 200 {
				t.Fatalf("%d %v", code, page)
			}
			for _, a := range page["alerts"].([]any) {
				m := a.(map[string]any)
				if seen[m["id"].(string)] {
					t.Fatalf("alert %s on two pages", m["id"])
				}
				if m["severity"] == "low" {
					t.Fatalf("severity filter let through %v", m["id"])
				}
				seen[m["id"].(string)] = true
			}
			cursor, _ = page["next_cursor"].(string)
			if cursor == "" {
				break
			}
		}
		if len(seen) != 80 {
			t.Fatalf("paged through %d high+medium alerts, want 80", len(seen))
		}
		_, ns := e.do("GET", "/api/v1/alerts?namespace=billing&rule=runtime.r1&limit=1000", e.reader, nil)
		for _, a := range ns["alerts"].([]any) {
			m := a.(map[string]any)
			if m["namespace"] != "billing" || m["rule"] != "runtime.r1" {
				t.Fatalf("filter let through %v", m)
			}
		}
		code, out := e.do("POST", "/api/v1/alerts/dismiss", e.admin, map[string]any{"reason": "noisy in billing", "filter": map[string]any{"namespace": "billing"}})
		if code != 200 || out["changed"] != float64(60) {
			t.Fatalf("bulk dismiss: %d %v", code, out)
		}
		_, active := e.do("GET", "/api/v1/alerts?status=active&limit=1000", e.reader, nil)
		if n := len(active["alerts"].([]any)); n != 60 {
			t.Fatalf("%d active alerts after bulk dismiss, want 60", n)
		}
	})
}

// Suppressing an alert makes an engine exception its cluster's sensors
// pull; another cluster does not see it.
func TestSuppressBecomesException(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		now := time.Now().UTC()
		e.do("POST", "/api/v1/ingest", e.clusterA, batch("s1", testAlert("01S", "runtime.package-manager-in-container", event.Low, "shop", now)))
		code, x := e.do("POST", "/api/v1/alerts/01S/suppress", e.admin, map[string]any{"reason": "the shop images install at start", "scope": "workload"})
		if code != 201 || x["workload"] != "Deployment/shop/web" {
			t.Fatalf("suppress: %d %v", code, x)
		}
		_, mine := e.do("GET", "/api/v1/exceptions", e.clusterA, nil)
		_, theirs := e.do("GET", "/api/v1/exceptions", e.clusterB, nil)
		if len(mine["exceptions"].([]any)) != 1 || len(theirs["exceptions"].([]any)) != 0 {
			t.Fatalf("cluster A sees %v, cluster B sees %v", mine, theirs)
		}
		if _, a := e.do("GET", "/api/v1/alerts/01S", e.admin, nil); a["status"] != "dismissed" {
			t.Fatalf("suppressed alert status %v", a["status"])
		}
	})
}

func TestClustersAndTokens(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		code, out := e.do("POST", "/api/v1/clusters", e.admin, map[string]string{"name": "edge-7"})
		cred, _ := out["credential"].(string)
		if code != 201 || cred == "" {
			t.Fatalf("create cluster: %d %v", code, out)
		}
		if code, _ := e.do("POST", "/api/v1/clusters", e.admin, map[string]string{"name": "edge-7"}); code != 409 {
			t.Fatalf("duplicate cluster: %d", code)
		}
		if code, out := e.do("POST", "/api/v1/clusters", e.admin, map[string]string{"name": "Bad Name!"}); code != 400 {
			t.Fatalf("invalid cluster name: %d %v", code, out)
		}
		// The new credential ingests; the list shows it connected, and
		// never shows a credential.
		e.do("POST", "/api/v1/ingest", cred, &ship.Batch{BatchID: "h1", Health: []ship.Health{{Node: "n1", Component: "sensor", State: "installed", At: time.Now()}}})
		_, list := e.do("GET", "/api/v1/clusters", e.reader, nil)
		raw, _ := json.Marshal(list)
		if strings.Contains(string(raw), cred) || strings.Contains(string(raw), e.clusterA) {
			t.Fatal("a credential leaked into the cluster list")
		}
		if !strings.Contains(string(raw), `"edge-7"`) || !strings.Contains(string(raw), "connected") {
			t.Fatalf("cluster list: %s", raw)
		}
		code, tok := e.do("POST", "/api/v1/tokens", e.admin, map[string]string{"name": "ci", "role": "reader"})
		if code != 201 || tok["token"] == "" {
			t.Fatalf("token: %d %v", code, tok)
		}
		if code, _ := e.do("GET", "/api/v1/alerts", tok["token"].(string), nil); code != 200 {
			t.Fatal("the new reader token does not work")
		}
		if code, _ := e.do("POST", "/api/v1/tokens", e.admin, map[string]string{"name": "x", "role": "cluster"}); code != 400 {
			t.Fatal("a cluster token through /tokens was accepted")
		}
	})
}

// TestMain shares one PostgreSQL server among the tests.
func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

// Alerts on one container within the window chain into one incident whose
// timeline tells the attack story in order.
func TestIncidentTimeline(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
		story := []event.Alert{
			testAlert("01I1", "runtime.web-shell", event.High, "shop", t0),
			testAlert("01I2", "runtime.crypto-miner-download", event.Medium, "shop", t0.Add(time.Minute)),
			testAlert("01I3", "runtime.drift-binary-executed", event.High, "shop", t0.Add(2*time.Minute)),
			testAlert("01I4", "runtime.mining-behaviour", event.High, "shop", t0.Add(3*time.Minute)),
		}
		for i := range story {
			story[i].ContainerID = "c-web" // one container
		}
		later := testAlert("01I5", "runtime.web-shell", event.High, "shop", t0.Add(3*time.Hour))
		later.ContainerID = "c-web"
		other := testAlert("01I6", "runtime.recon-burst", event.Low, "billing", t0.Add(time.Minute))
		other.ContainerID, other.Pod, other.Workload = "c-db", "db-0", "StatefulSet/billing/db"
		if code, out := e.do("POST", "/api/v1/ingest", e.clusterA, batch("inc", append(story, later, other)...)); code != 200 {
			t.Fatalf("ingest: %d %v", code, out)
		}
		_, a := e.do("GET", "/api/v1/alerts/01I3", e.reader, nil)
		incID, _ := a["incident_id"].(string)
		if incID == "" {
			t.Fatalf("alert without incident: %v", a)
		}
		code, inc := e.do("GET", "/api/v1/incidents/"+incID, e.reader, nil)
		if code != 200 {
			t.Fatalf("incident: %d %v", code, inc)
		}
		var rules []string
		for _, x := range inc["alerts"].([]any) {
			rules = append(rules, x.(map[string]any)["rule"].(string))
		}
		want := "runtime.web-shell runtime.crypto-miner-download runtime.drift-binary-executed runtime.mining-behaviour"
		if strings.Join(rules, " ") != want || inc["severity"] != "high" {
			t.Fatalf("timeline %v (severity %v), want %s", rules, inc["severity"], want)
		}
		_, list := e.do("GET", "/api/v1/incidents", e.reader, nil)
		if n := len(list["incidents"].([]any)); n != 3 {
			t.Fatalf("%d incidents, want 3 (the story, the web shell 3 hours later, the other pod)", n)
		}
	})
}
