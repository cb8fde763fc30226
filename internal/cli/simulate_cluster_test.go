//go:build !node

package cli

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-sec/vigil/deploy"
	"github.com/vigil-sec/vigil/internal/kubetest"
	"github.com/vigil-sec/vigil/internal/simulate"
)

// `vigil simulate control-plane --kubeconfig` against a real kube-apiserver
// whose audit webhook posts to a real Vigil server with the cluster's
// credential: the scenario's requests (as a system:masters user) raise
// its three rules, found by the objects it touched, with their latency;
// the simulation's namespace is created labelled and deleted, the
// cluster-admin binding is gone; a namespace of that name without the
// labels makes the command fail without touching it.
func TestSimulateControlPlaneKubeAPIServer(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := startServer(ctx, serverFlags{addr: "127.0.0.1:0", db: "sqlite://" + filepath.Join(dir, "v.db"), data: dir},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); srv.wait() }()
	adminToken, err := os.ReadFile(srv.token)
	if err != nil {
		t.Fatal(err)
	}
	_, credential, err := srv.store.CreateCluster(ctx, "sim")
	if err != nil {
		t.Fatal(err)
	}
	// kube-apiserver's audit webhook speaks HTTPS only: a TLS proxy in
	// front of the server.
	target, _ := url.Parse(srv.url)
	tlsProxy := httptest.NewTLSServer(httputil.NewSingleHostReverseProxy(target))
	defer tlsProxy.Close()
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsProxy.Certificate().Raw})

	cluster := kubetest.Start(t, kubetest.Options{AuditPolicy: deploy.AuditPolicy,
		AuditWebhook: &kubetest.AuditWebhook{URL: tlsProxy.URL + "/api/v1/audit", CAData: caPEM, Token: credential, BatchMaxWait: 200 * time.Millisecond}})
	// The namespace controller, so that a deleted namespace goes.
	cluster.StartControllerManager()
	kc := cluster.Clientset(kubetest.Admin)
	kubeconfig := cluster.Kubeconfig("simulator", "system:masters")
	args := []string{"simulate", "control-plane", "--kubeconfig", kubeconfig, "--server", srv.url,
		"--token", strings.TrimSpace(string(adminToken)), "--timeout", "30s", "--warmup", "0s", "-o", "json"}

	start := time.Now()
	out, err := run(t, args...)
	t.Logf("vigil simulate control-plane took %v:\n%s", time.Since(start).Round(time.Millisecond), out)
	if err != nil {
		dbg, _ := run(t, "alerts", "list", "--server", srv.url, "--token", strings.TrimSpace(string(adminToken)), "-o", "json")
		t.Fatalf("vigil simulate control-plane: %v\n%s", err, dbg)
	}
	var results []simulationResult
	if err := json.Unmarshal([]byte(out[strings.Index(out, "["):]), &results); err != nil {
		t.Fatalf("-o json: %v", err)
	}
	if len(results) != 1 || results[0].Scenario != "control-plane" || results[0].Result != simulate.Pass {
		t.Fatalf("results %+v", results)
	}
	r := results[0]
	if r.LatencyMS == nil || *r.LatencyMS <= 0 || *r.LatencyMS > 15000 {
		t.Errorf("latency %v ms", r.LatencyMS)
	}
	for _, rr := range r.Rules {
		if !rr.Seen || rr.LatencyMS == nil || *rr.LatencyMS <= 0 {
			t.Errorf("rule %s: seen %v latency %v", rr.Rule, rr.Seen, rr.LatencyMS)
		}
	}

	// Nothing left: the bindings are gone, the namespace is going.
	crbs, err := kc.RbacV1().ClusterRoleBindings().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, crb := range crbs.Items {
		if strings.HasPrefix(crb.Name, simulate.Prefix) {
			t.Errorf("ClusterRoleBinding %s left", crb.Name)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ns, err := kc.CoreV1().Namespaces().Get(ctx, simulate.Namespace, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ns.DeletionTimestamp == nil {
			t.Fatalf("namespace %s not deleted: %+v", simulate.Namespace, ns.ObjectMeta)
		}
		if time.Now().After(deadline) {
			t.Fatalf("namespace %s still terminating: %+v", simulate.Namespace, ns.Status)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Someone else's namespace of that name: refused, left as it was.
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: simulate.Namespace,
		Labels: map[string]string{"team": "payments"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err = run(t, args...)
	if err == nil || !strings.Contains(err.Error(), "not the simulation's") {
		t.Errorf("simulate over a foreign namespace: %v\n%s", err, out)
	}
	ns, err := kc.CoreV1().Namespaces().Get(ctx, simulate.Namespace, metav1.GetOptions{})
	if err != nil || ns.DeletionTimestamp != nil || ns.Labels["team"] != "payments" {
		t.Errorf("foreign namespace after the run: %v %+v", err, ns.ObjectMeta)
	}
}

func TestAuditObject(t *testing.T) {
	for _, tc := range []struct {
		ev   map[string]any
		want string
	}{
		{map[string]any{"ka.target.resource": "pods", "ka.target.namespace": "ns", "ka.target.name": "p"}, "pods/ns/p"},
		{map[string]any{"ka.target.resource": "clusterrolebindings", "ka.target.name": "b"}, "clusterrolebindings//b"},
		{map[string]any{"ka.target.namespace": "ns", "ka.target.name": "", "ka.uri": "/api/v1/namespaces/ns/events?limit=500"}, "events/ns/"},
		{map[string]any{"ka.target.namespace": "ns", "ka.target.name": "e1", "ka.uri": "/apis/events.k8s.io/v1/namespaces/ns/events/e1"}, "events/ns/e1"},
		{map[string]any{"ka.uri": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/b"}, "clusterrolebindings//b"},
		{map[string]any{}, "//"},
	} {
		if got := auditObject(tc.ev); got != tc.want {
			t.Errorf("auditObject(%v) = %q, want %q", tc.ev, got, tc.want)
		}
	}
}
