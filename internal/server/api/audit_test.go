package api_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sec/vigil/internal/audit"
	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/server/api"
	"github.com/vigil-sec/vigil/internal/server/controlplane"
	"github.com/vigil-sec/vigil/internal/server/store"
)

// auditEnv is env with control-plane detection on.
type auditEnv struct {
	*env
	det      *controlplane.Detector
	reg      *prometheus.Registry
	exported chan event.Alert // what the detector handed to the exporters
}

func forEachDBAudit(t *testing.T, fn func(t *testing.T, e *auditEnv)) {
	forEachDSN(t, func(t *testing.T, dsn string) { fn(t, newAuditEnv(t, dsn)) })
}

func newAuditEnv(t *testing.T, dsn string) *auditEnv {
	rules, err := detect.Load(detect.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := &auditEnv{reg: prometheus.NewRegistry(), exported: make(chan event.Alert, 100)}
	e.env = newEnvWith(t, dsn, func(st *store.Store, cfg *api.Config) {
		e.det = controlplane.New(controlplane.Config{Rules: rules, Store: st, Alerts: func(a event.Alert) { e.exported <- a }})
		cfg.Audit, cfg.Registerer = e.det, e.reg
	})
	return e
}

// auditEvent is one event as kube-apiserver's webhook backend sends it.
func auditEvent(id, verb, user, uri, objectRef string, code int, extra string) string {
	now := time.Now().UTC()
	return fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":%q,"stage":"ResponseComplete",`+
		`"requestURI":%q,"verb":%q,"user":{"username":%q,"groups":["system:authenticated"]},"sourceIPs":["10.0.0.8"],`+
		`"userAgent":"kubectl/v1.36.3 (linux/amd64)","objectRef":%s,"responseStatus":{"metadata":{},"code":%d}%s,`+
		`"requestReceivedTimestamp":%q,"stageTimestamp":%q,"annotations":{"authorization.k8s.io/decision":"allow"}}`,
		id, uri, verb, user, objectRef, code, extra,
		now.Add(-5*time.Millisecond).Format("2006-01-02T15:04:05.000000Z"), now.Format("2006-01-02T15:04:05.000000Z"))
}

func clusterAdminBinding(id string) string {
	binding := `{"kind":"ClusterRoleBinding","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"backdoor"},` +
		`"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},` +
		`"subjects":[{"kind":"ServiceAccount","name":"helper","namespace":"default"}]}`
	return auditEvent(id, "create", "alice", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
		`{"resource":"clusterrolebindings","name":"backdoor","apiGroup":"rbac.authorization.k8s.io","apiVersion":"v1"}`, 201,
		`,"requestObject":`+binding+`,"responseObject":`+binding)
}

func listPods(id string) string {
	return auditEvent(id, "list", "bob", "/api/v1/namespaces/shop/pods?limit=500",
		`{"resource":"pods","namespace":"shop","apiVersion":"v1"}`, 200, "")
}

func auditBatch(items ...string) string {
	return `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[` + strings.Join(items, ",") + `]}`
}

// auditCounter is vigil_audit_events_total{outcome}.
func (e *auditEnv) auditCounter(outcome string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "vigil_audit_events_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func (e *auditEnv) auditAlerts(cluster string) []map[string]any {
	e.t.Helper()
	code, page := e.do("GET", "/api/v1/alerts?rule=audit.cluster-admin-binding&cluster="+cluster, e.admin, nil)
	if code != 200 {
		e.t.Fatalf("list alerts: %d %v", code, page)
	}
	var out []map[string]any
	for _, a := range page["alerts"].([]any) {
		out = append(out, a.(map[string]any))
	}
	return out
}

func TestAuditWebhook(t *testing.T) {
	forEachDBAudit(t, func(t *testing.T, e *auditEnv) {
		body := auditBatch(clusterAdminBinding("9d1e-01"), listPods("9d1e-02"), `{"auditID":7,"verb":"get"}`)
		code, res := e.do("POST", "/api/v1/audit", e.clusterA, body)
		if code != 200 {
			t.Fatalf("audit: %d %v", code, res)
		}
		if res["events"] != float64(2) || res["malformed"] != float64(1) || res["missing"] != float64(0) || res["alerts"] != float64(1) || res["duplicate"] != nil {
			t.Fatalf("answer %v, want events 2, malformed 1, alerts 1", res)
		}
		// Stored before the answer: listed at once.
		alerts := e.auditAlerts("prod-1")
		if len(alerts) != 1 {
			t.Fatalf("%d alerts stored, want 1: %v", len(alerts), alerts)
		}
		a := alerts[0]
		user, _ := a["user"].(map[string]any)
		if user["name"] != "alice" || a["source"] != "audit" || a["cluster"] != "prod-1" || a["cluster_id"] != e.clusterAID ||
			a["severity"] != "high" || a["count"] != float64(1) || a["status"] != "active" {
			t.Fatalf("alert %v", a)
		}
		id := a["id"].(string)
		if code, one := e.do("GET", "/api/v1/alerts/"+id, e.reader, nil); code != 200 || one["rule"] != "audit.cluster-admin-binding" {
			t.Fatalf("get alert: %d %v", code, one)
		}
		if got := len(e.exported); got != 1 {
			t.Fatalf("%d alerts exported, want 1", got)
		}
		if e.auditCounter("accepted") != 2 || e.auditCounter("malformed") != 1 || e.auditCounter("missing") != 0 {
			t.Fatalf("metrics: accepted %v malformed %v", e.auditCounter("accepted"), e.auditCounter("malformed"))
		}

		// The API server retries the same batch: stored once.
		code, res = e.do("POST", "/api/v1/audit", e.clusterA, body)
		if code != 200 || res["events"] != float64(2) {
			t.Fatalf("retry: %d %v", code, res)
		}
		alerts = e.auditAlerts("prod-1")
		if len(alerts) != 1 || alerts[0]["count"] != float64(1) || alerts[0]["id"] != id {
			t.Fatalf("after the retry: %v", alerts)
		}
		if got := len(e.exported); got != 1 {
			t.Fatalf("%d alerts exported after the retry, want 1", got)
		}

		// The same body from another cluster is that cluster's own.
		if code, res := e.do("POST", "/api/v1/audit", e.clusterB, body); code != 200 || res["alerts"] != float64(1) || res["duplicate"] != nil {
			t.Fatalf("cluster B: %d %v", code, res)
		}
		if b := e.auditAlerts("prod-2"); len(b) != 1 || b[0]["cluster"] != "prod-2" || b[0]["id"] == id {
			t.Fatalf("cluster B's alerts: %v", b)
		}
		if a := e.auditAlerts("prod-1"); len(a) != 1 {
			t.Fatalf("cluster A's alerts after B's batch: %v", a)
		}
	})
}

// A retried batch must not count its events twice once aggregated counts
// are flushed either: the detector knows the batch and skips its events.
func TestAuditRetryCountAfterFlush(t *testing.T) {
	e := newAuditEnv(t, "sqlite://"+filepath.Join(t.TempDir(), "vigil.db"))
	body := auditBatch(clusterAdminBinding("r-01"))
	for range 2 {
		if code, res := e.do("POST", "/api/v1/audit", e.clusterA, body); code != 200 {
			t.Fatalf("audit: %d %v", code, res)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.det.Run(ctx); err != nil { // a cancelled Run flushes once
		t.Fatal(err)
	}
	alerts := e.auditAlerts("prod-1")
	if len(alerts) != 1 {
		t.Fatalf("%d alerts", len(alerts))
	}
	if alerts[0]["count"] != float64(1) {
		t.Errorf("a retried batch counted twice after the flush: count %v", alerts[0]["count"])
	}
}

func TestAuditWebhookRefusals(t *testing.T) {
	forEachDBAudit(t, func(t *testing.T, e *auditEnv) {
		good := auditBatch(listPods("x-1"))
		for _, tc := range []struct {
			name, token string
			body        any
			want        int
		}{
			{"no token", "", good, 401},
			{"bad token", "vgl_nope", good, 401},
			{"reader", e.reader, good, 403},
			{"admin", e.admin, good, 403},
			{"a Pod", e.clusterA, `{"kind":"Pod"}`, 400},
			{"not JSON", e.clusterA, `hello`, 400},
			{"truncated JSON", e.clusterA, `{"kind":"EventList","items":[{"auditID":`, 400},
			{"empty body", e.clusterA, ` `, 400},
			{"null", e.clusterA, `null`, 400},
			{"oversized", e.clusterA, `{"kind":"EventList","items":[` + strings.Repeat(" ", audit.MaxBodyBytes) + `]}`, 413},
		} {
			code, out := e.do("POST", "/api/v1/audit", tc.token, tc.body)
			if code != tc.want {
				t.Errorf("%s: %d %v, want %d", tc.name, code, out, tc.want)
			}
			if tc.want == 400 && !strings.Contains(fmt.Sprint(out["error"]), "not an audit") {
				t.Errorf("%s: error %v", tc.name, out["error"])
			}
		}
		// Empty batches are fine.
		for _, body := range []string{`[]`, auditBatch(), `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{}}`} {
			code, res := e.do("POST", "/api/v1/audit", e.clusterA, body)
			if code != 200 || res["events"] != float64(0) || res["alerts"] != float64(0) {
				t.Errorf("%s: %d %v", body, code, res)
			}
		}
		// A single Event and a JSON array are read too.
		if code, res := e.do("POST", "/api/v1/audit", e.clusterA, listPods("s-1")); code != 200 || res["events"] != float64(1) {
			t.Errorf("single event: %d %v", code, res)
		}
		if code, res := e.do("POST", "/api/v1/audit", e.clusterA, "["+listPods("s-2")+`,{"auditID":"s-3"}]`); code != 200 || res["events"] != float64(1) || res["missing"] != float64(1) {
			t.Errorf("array: %d %v", code, res)
		}
		if e.auditCounter("missing") != 1 {
			t.Errorf("missing counter %v", e.auditCounter("missing"))
		}
		// Nothing refused was stored, and the server still works.
		if a := e.auditAlerts(""); len(a) != 0 {
			t.Fatalf("alerts from refused batches: %v", a)
		}
		if code, res := e.do("POST", "/api/v1/audit", e.clusterA, auditBatch(clusterAdminBinding("ok-1"))); code != 200 || res["alerts"] != float64(1) {
			t.Fatalf("a good batch after bad ones: %d %v", code, res)
		}
	})
}

// Without control-plane detection the endpoint says so.
func TestAuditWebhookOff(t *testing.T) {
	e := newEnv(t, "sqlite://"+filepath.Join(t.TempDir(), "vigil.db"))
	if code, out := e.do("POST", "/api/v1/audit", e.clusterA, auditBatch(listPods("off-1"))); code != 404 {
		t.Fatalf("%d %v, want 404", code, out)
	}
}
