//go:build !node

package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/vigil-sec/vigil/internal/kubetest"
	"github.com/vigil-sec/vigil/internal/posture"
	"github.com/vigil-sec/vigil/internal/server/store"
)

// agentRBAC grants the agent's identity what it needs, and nothing more:
// the Helm chart grants the same.
func agentRBAC(t *testing.T, kc kubernetes.Interface, user, ns string) {
	t.Helper()
	ctx := context.Background()
	read := []string{"get", "list", "watch"}
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "vigil-agent"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods", "services", "replicationcontrollers"}, Verbs: read},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments", "replicasets", "statefulsets", "daemonsets"}, Verbs: read},
		{APIGroups: []string{"batch"}, Resources: []string{"jobs", "cronjobs"}, Verbs: read},
		{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"validatingwebhookconfigurations"}, Verbs: []string{"get", "create", "update"}},
	}}
	secrets := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "vigil-agent", Namespace: ns}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "create", "update"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "create", "update"}},
	}}
	subject := []rbacv1.Subject{{Kind: "User", Name: user}}
	if _, err := kc.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "vigil-agent"},
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "vigil-agent"}, Subjects: subject}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.RbacV1().Roles(ns).Create(ctx, secrets, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "vigil-agent", Namespace: ns},
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "vigil-agent"}, Subjects: subject}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// warnings collects the warnings the API server returns to client-go.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(_ int, _, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

func (w *warnings) vigil() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, m := range w.msgs {
		if strings.HasPrefix(m, "[vigil] ") {
			out = append(out, m)
		}
	}
	w.msgs = nil
	return out
}

func seedDeployment(t *testing.T, file string) *appsv1.Deployment {
	t.Helper()
	data, err := os.ReadFile("../posture/testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	var d appsv1.Deployment
	if err := yaml.Unmarshal([]byte(strings.Split(string(data), "\n---\n")[0]), &d); err != nil {
		t.Fatal(err)
	}
	d.Namespace = "shop"
	return &d
}

// TestAgentKubeAPIServer runs `vigil agent` against a real kube-apiserver,
// as the Helm chart will: with only the rights agentRBAC grants, its
// posture configuration from the Vigil server, its own serving certificate
// (a Secret) and its own webhook registration. It checks what a platform
// engineer relies on: deny mode rejects the seed's unhealthy Deployment
// with a readable message; a configuration change on the server switches
// it to audit, which admits with warnings; the posture scanner's results
// reach the server; and with the agent stopped, failure policy Ignore
// keeps the cluster creating pods.
func TestAgentKubeAPIServer(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := testServer(t, dir)
	credFile := clusterCredentialFile(t, srv, "prod", dir)
	const deny = "recommendations:\n  no-privileged: {mode: deny}\n  no-host-pid-ipc: {mode: deny}\n"
	if _, err := srv.store.PutPostureConfig(ctx, "prod", deny, "admin", time.Now()); err != nil {
		t.Fatal(err)
	}

	cluster := kubetest.Start(t, kubetest.Options{})
	warn := &warnings{}
	rc := cluster.RESTConfig(kubetest.Admin)
	rc.WarningHandler = warn
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"vigil", "shop"} {
		if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// No controller-manager here to make it; pods need it.
	if _, err := kc.CoreV1().ServiceAccounts("shop").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const identity = "system:serviceaccount:vigil:vigil-agent"
	agentRBAC(t, kc, identity, "vigil")

	addr := freeAddr(t)
	agentCtx, stopAgent := context.WithCancel(ctx)
	defer stopAgent()
	ag, err := startAgent(agentCtx, agentFlags{addr: addr, cluster: "prod", node: "agent-1",
		ship: shipFlags{server: srv.url, tokenFile: credFile, spool: filepath.Join(dir, "spool")},
		kube: kubeFlags{kubeconfig: cluster.Kubeconfig(identity, "system:serviceaccounts", "system:serviceaccounts:vigil"),
			namespace: "vigil", admission: true, posture: true, webhookURL: "https://" + addr + "/validate",
			webhookConfig: "vigil", failurePolicy: "Ignore", webhookTimeout: 5 * time.Second, tlsSecret: "vigil-agent-tls",
			postureFromSever: true, configPoll: 200 * time.Millisecond}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	agentDone := make(chan error, 1)
	go func() { agentDone <- ag.wait() }()

	// The agent registered itself, trusting its own CA, leaving out its
	// namespace and kube-system.
	var vwc *admissionregistrationv1.ValidatingWebhookConfiguration
	eventuallyOK(t, "webhook registration", func() error {
		vwc, err = kc.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "vigil", metav1.GetOptions{})
		return err
	})
	wh := vwc.Webhooks[0]
	if len(wh.ClientConfig.CABundle) == 0 || *wh.FailurePolicy != admissionregistrationv1.Ignore || *wh.TimeoutSeconds != 5 {
		t.Fatalf("webhook %+v", wh)
	}
	if ex := wh.NamespaceSelector.MatchExpressions[0].Values; !slices.Contains(ex, "vigil") || !slices.Contains(ex, "kube-system") {
		t.Errorf("excluded namespaces %v: want vigil and kube-system", ex)
	}
	if s, err := kc.CoreV1().Secrets("vigil").Get(ctx, "vigil-agent-tls", metav1.GetOptions{}); err != nil || len(s.Data["ca.crt"]) == 0 {
		t.Fatalf("serving certificate Secret: %v", err)
	}

	// Deny mode, from the server's configuration.
	unhealthy, healthy := seedDeployment(t, "unhealthy.yaml"), seedDeployment(t, "healthy.yaml")
	_, err = kc.AppsV1().Deployments("shop").Create(ctx, unhealthy, metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "violates 2 Vigil recommendations in deny mode") ||
		!strings.Contains(err.Error(), "[no-privileged]") || !strings.Contains(err.Error(), "fix: ") {
		t.Fatalf("unhealthy Deployment in deny mode: %v", err)
	}
	if _, err := kc.AppsV1().Deployments("shop").Create(ctx, healthy, metav1.CreateOptions{}); err != nil {
		t.Fatalf("healthy Deployment: %v", err)
	}
	if _, err := kc.AppsV1().Deployments("vigil").Create(ctx, withNamespace(unhealthy, "vigil"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("unhealthy Deployment in the excluded namespace: %v", err)
	}

	// The server's configuration changes to audit: the agent follows.
	if _, err := srv.store.PutPostureConfig(ctx, "prod", "recommendations:\n  no-privileged: {mode: audit}\n", "admin", time.Now()); err != nil {
		t.Fatal(err)
	}
	warn.vigil()
	eventuallyOK(t, "audit mode from the server", func() error {
		_, err := kc.AppsV1().Deployments("shop").Create(ctx, unhealthy, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err
	})
	if _, err := kc.AppsV1().Deployments("shop").Create(ctx, unhealthy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if w := warn.vigil(); !slices.ContainsFunc(w, func(s string) bool { return strings.Contains(s, "no-privileged") }) {
		t.Errorf("audit mode warnings %q: want one about no-privileged", w)
	}

	// The scanner's findings reach the server, named after the Deployment.
	eventuallyOK(t, "posture findings on the server", func() error {
		sums, err := srv.store.SummarizeFindings(ctx, "prod")
		if err != nil {
			return err
		}
		for _, c := range sums {
			if c.Check == posture.NoPrivileged && slices.Contains(c.Resources, "Deployment/shop/nginx-unhealthy-deployment") && c.Healthy >= 1 {
				return nil
			}
		}
		return fmt.Errorf("no no-privileged finding for Deployment/shop/nginx-unhealthy-deployment yet: %+v", sums)
	})

	// The server knows the agent's parts are installed (vigil verify reads it).
	eventuallyOK(t, "component states on the server", func() error {
		c, err := srv.store.GetCluster(ctx, "prod", time.Now())
		if err != nil {
			return err
		}
		installed := map[string]bool{}
		for _, comp := range c.Components {
			installed[comp.Component] = comp.State == "installed"
		}
		if !installed["admission"] || !installed["posture"] {
			return fmt.Errorf("components %+v: want admission and posture installed", c.Components)
		}
		return nil
	})

	// A second replica (posture only) stands by on the scanner's Lease.
	bCtx, stopB := context.WithCancel(ctx)
	defer stopB()
	agB, err := startAgent(bCtx, agentFlags{addr: freeAddr(t), cluster: "prod", node: "agent-2",
		ship: shipFlags{server: srv.url, tokenFile: credFile, spool: filepath.Join(dir, "spool-b")},
		kube: kubeFlags{kubeconfig: cluster.Kubeconfig(identity, "system:serviceaccounts", "system:serviceaccounts:vigil"),
			namespace: "vigil", posture: true, postureFromSever: true, configPoll: 200 * time.Millisecond}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { stopB(); agB.wait() }()
	posture2 := func(want func(store.Component) bool, what string) {
		t.Helper()
		eventuallyOK(t, what, func() error {
			c, err := srv.store.GetCluster(ctx, "prod", time.Now())
			if err != nil {
				return err
			}
			for _, comp := range c.Components {
				if comp.Node == "agent-2" && comp.Component == "posture" && want(comp) {
					return nil
				}
			}
			return fmt.Errorf("components %+v", c.Components)
		})
	}
	posture2(func(c store.Component) bool { return strings.HasPrefix(c.Reason, "standby") }, "second replica on standby")

	// The agent stops: failure policy Ignore keeps the cluster working, and
	// the second replica takes the scanner over (the first released the
	// Lease), its complete scan keeping the findings that still hold.
	stopAgent()
	select {
	case err := <-agentDone:
		if err != nil {
			t.Fatalf("agent: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the agent did not stop")
	}
	posture2(func(c store.Component) bool { return c.State == "installed" && c.Reason == "" }, "second replica leads the scanner")
	sums, err := srv.store.SummarizeFindings(ctx, "prod")
	if err != nil {
		t.Fatal(err)
	}
	kept := false
	for _, c := range sums {
		kept = kept || c.Check == posture.NoPrivileged && slices.Contains(c.Resources, "Deployment/shop/nginx-unhealthy-deployment")
	}
	if !kept {
		t.Errorf("after the takeover the findings are gone: %+v", sums)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "after", Namespace: "shop"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	start := time.Now()
	if _, err := kc.CoreV1().Pods("shop").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("a pod with the agent down: %v", err)
	}
	t.Logf("pod admitted with the agent down in %v", time.Since(start))
}

func withNamespace(d *appsv1.Deployment, ns string) *appsv1.Deployment {
	d = d.DeepCopy()
	d.Namespace = ns
	return d
}

// eventuallyOK polls cond until it returns nil, for up to 20 s, and fails
// with its last error.
func eventuallyOK(t *testing.T, what string, cond func() error) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err = cond(); err == nil {
			return
		}
	}
	t.Fatalf("%s: %v", what, err)
}
