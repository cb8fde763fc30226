package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/server/store"
)

// privilegedRule alerts on any privileged pod spec written, by anyone.
const privilegedRule = `rules:
  - id: test.privileged
    title: Privileged pod spec written
    description: A pod or a workload's pod template asks for a privileged container.
    severity: high
    tactic: Privilege Escalation
    kinds: [k8s.audit]
    condition: ka.stage == "ResponseComplete" && ka.verb in ["create", "update", "patch"] && ka.response.code < 300 && ka.pod.privileged
    evidence: [ka.user.name, ka.origin.workload, ka.origin.user]
    remediation: Run it unprivileged.
`

func newDetector(t *testing.T) (*Detector, *store.Store, store.Cluster) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rule.yaml"), []byte(privilegedRule), 0o644); err != nil {
		t.Fatal(err)
	}
	rules, err := detect.Load(detect.Options{Paths: []string{dir}, NoBuiltin: true})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), "sqlite://"+filepath.Join(dir, "v.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c, _, err := st.CreateCluster(context.Background(), "prod")
	if err != nil {
		t.Fatal(err)
	}
	return New(Config{Rules: rules, Store: st}), st, c
}

// write is an audit event of a successful create of resource/name in
// shop by user, holding obj.
func write(id, user, resource, name string, obj map[string]any) map[string]any {
	return map[string]any{"auditID": id, "stage": "ResponseComplete", "verb": "create",
		"user": map[string]any{"username": user}, "responseStatus": map[string]any{"code": 201},
		"objectRef":     map[string]any{"resource": resource, "namespace": "shop", "name": name},
		"requestObject": obj, "stageTimestamp": time.Now().UTC().Format(time.RFC3339Nano)}
}

func body(t *testing.T, events ...map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"kind": "EventList", "items": events})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var privilegedSpec = map[string]any{"containers": []any{map[string]any{"name": "app", "image": "app:1",
	"securityContext": map[string]any{"privileged": true}}}}

// TestControllerAttribution: alice creates a privileged Deployment; the
// deployment controller makes its ReplicaSet and the replicaset
// controller three pods. That is one alert, alice's, about the
// Deployment, whose count says how often the spec was written.
func TestControllerAttribution(t *testing.T) {
	d, st, c := newDetector(t)
	ctx := context.Background()
	events := []map[string]any{
		write("e1", "alice", "deployments", "web", map[string]any{"kind": "Deployment",
			"metadata": map[string]any{"name": "web", "namespace": "shop"},
			"spec":     map[string]any{"template": map[string]any{"spec": privilegedSpec}}}),
		write("e2", "system:serviceaccount:kube-system:deployment-controller", "replicasets", "web-5d8f", map[string]any{"kind": "ReplicaSet",
			"metadata": map[string]any{"name": "web-5d8f", "namespace": "shop",
				"ownerReferences": []any{map[string]any{"kind": "Deployment", "name": "web", "controller": true}}},
			"spec": map[string]any{"template": map[string]any{"spec": privilegedSpec}}}),
	}
	for i := range 3 {
		pod := fmt.Sprintf("web-5d8f-%d", i)
		events = append(events, write(fmt.Sprintf("p%d", i), "system:serviceaccount:kube-system:replicaset-controller", "pods", pod,
			map[string]any{"kind": "Pod", "metadata": map[string]any{"name": pod, "namespace": "shop",
				"ownerReferences": []any{map[string]any{"kind": "ReplicaSet", "name": "web-5d8f", "controller": true}}},
				"spec": privilegedSpec}))
	}
	res, err := d.Handle(ctx, c.ID, c.Name, body(t, events...))
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 5 || res.Alerts != 1 {
		t.Fatalf("result %+v, want 5 events and 1 alert", res)
	}
	d.flush(ctx)
	page, err := st.ListAlerts(ctx, store.AlertFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Alerts) != 1 {
		t.Fatalf("%d alerts stored, want 1", len(page.Alerts))
	}
	a := page.Alerts[0]
	if a.User == nil || a.User.Name != "alice" || a.Workload != "Deployment/shop/web" || a.Count != 5 {
		t.Fatalf("alert user %+v, workload %q, count %d; want alice, Deployment/shop/web, 5", a.User, a.Workload, a.Count)
	}

	// A pod the replicaset controller makes for a Deployment nobody was
	// seen writing is still the Deployment's, with no person named.
	res, err = d.Handle(ctx, c.ID, c.Name, body(t,
		write("e3", "system:serviceaccount:kube-system:deployment-controller", "replicasets", "db-77", map[string]any{"kind": "ReplicaSet",
			"metadata": map[string]any{"name": "db-77", "namespace": "shop",
				"ownerReferences": []any{map[string]any{"kind": "Deployment", "name": "db", "controller": true}}}}),
		write("p9", "system:serviceaccount:kube-system:replicaset-controller", "pods", "db-77-x", map[string]any{"kind": "Pod",
			"metadata": map[string]any{"name": "db-77-x", "namespace": "shop",
				"ownerReferences": []any{map[string]any{"kind": "ReplicaSet", "name": "db-77", "controller": true}}},
			"spec": privilegedSpec}),
	))
	if err != nil || res.Alerts != 1 {
		t.Fatalf("%+v %v", res, err)
	}
	page, _ = st.ListAlerts(ctx, store.AlertFilter{Resource: "", Rule: "test.privileged"})
	found := false
	for _, a := range page.Alerts {
		if a.Workload == "Deployment/shop/db" && a.User != nil && a.User.Name == "system:serviceaccount:kube-system:replicaset-controller" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no alert for Deployment/shop/db by the controller: %+v", page.Alerts)
	}
}

// TestHandleRetriedBatch: the API server sends a batch again when the
// answer was lost: its alerts are stored once.
func TestHandleRetriedBatch(t *testing.T) {
	d, st, c := newDetector(t)
	ctx := context.Background()
	b := body(t, write("r1", "bob", "pods", "p", map[string]any{"kind": "Pod", "spec": privilegedSpec}))
	for range 2 {
		if _, err := d.Handle(ctx, c.ID, c.Name, b); err != nil {
			t.Fatal(err)
		}
	}
	page, _ := st.ListAlerts(ctx, store.AlertFilter{})
	if len(page.Alerts) != 1 {
		t.Fatalf("%d alerts after a retried batch, want 1", len(page.Alerts))
	}
}

// TestRolloutWithBuiltinRules: with the built-in catalog, a privileged
// Deployment by alice and everything its controllers make from it are one
// audit.privileged-container alert, alice's, about the Deployment.
func TestRolloutWithBuiltinRules(t *testing.T) {
	rules, err := detect.Load(detect.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "v.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, _, err := st.CreateCluster(context.Background(), "prod")
	if err != nil {
		t.Fatal(err)
	}
	d := New(Config{Rules: rules, Store: st})
	ctx := context.Background()
	events := []map[string]any{
		write("d1", "alice", "deployments", "web", map[string]any{"kind": "Deployment",
			"metadata": map[string]any{"name": "web", "namespace": "shop"},
			"spec":     map[string]any{"template": map[string]any{"spec": privilegedSpec}}}),
		write("d2", "system:serviceaccount:kube-system:deployment-controller", "replicasets", "web-5d8f", map[string]any{"kind": "ReplicaSet",
			"metadata": map[string]any{"name": "web-5d8f", "namespace": "shop",
				"ownerReferences": []any{map[string]any{"kind": "Deployment", "name": "web", "controller": true}}},
			"spec": map[string]any{"template": map[string]any{"spec": privilegedSpec}}}),
	}
	for i := range 3 {
		pod := fmt.Sprintf("web-5d8f-%d", i)
		events = append(events, write(fmt.Sprintf("dp%d", i), "system:serviceaccount:kube-system:replicaset-controller", "pods", pod,
			map[string]any{"kind": "Pod", "metadata": map[string]any{"name": pod, "namespace": "shop",
				"ownerReferences": []any{map[string]any{"kind": "ReplicaSet", "name": "web-5d8f", "controller": true}}},
				"spec": privilegedSpec}))
	}
	if _, err := d.Handle(ctx, c.ID, c.Name, body(t, events...)); err != nil {
		t.Fatal(err)
	}
	d.flush(ctx)
	page, err := st.ListAlerts(ctx, store.AlertFilter{Rule: "audit.privileged-container"})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Alerts) != 1 {
		t.Fatalf("%d privileged-container alerts, want 1: %+v", len(page.Alerts), page.Alerts)
	}
	a := page.Alerts[0]
	if a.User == nil || a.User.Name != "alice" || a.Workload != "Deployment/shop/web" || a.Count != 5 {
		t.Fatalf("alert user %+v, workload %q, count %d; want alice, Deployment/shop/web, 5", a.User, a.Workload, a.Count)
	}
}
