//go:build !node

package cli

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/vigil-sec/vigil/internal/admission"
	"github.com/vigil-sec/vigil/internal/install"
	"github.com/vigil-sec/vigil/internal/kubetest"
	"github.com/vigil-sec/vigil/internal/posture"
	"github.com/vigil-sec/vigil/internal/server/store"
)

const (
	installCredential = "cluster-cred-7c1e-SECRET"
	installProxy      = "http://proxyuser:proxy-PASSWORD-9@proxy.example:3128"
)

// protectedFiles writes the credential and the proxy URL to files, as a
// user would hand them to vigil install.
func protectedFiles(t *testing.T) (cred, proxy string) {
	t.Helper()
	dir := t.TempDir()
	cred, proxy = filepath.Join(dir, "credential"), filepath.Join(dir, "proxy")
	os.WriteFile(cred, []byte(installCredential+"\n"), 0o600)
	os.WriteFile(proxy, []byte(installProxy+"\n"), 0o600)
	return cred, proxy
}

func assertNoProtected(t *testing.T, what, out string) {
	t.Helper()
	for _, s := range []string{installCredential, installProxy, "proxy-PASSWORD-9"} {
		if strings.Contains(out, s) || strings.Contains(out, base64.StdEncoding.EncodeToString([]byte(s))) {
			t.Errorf("%s shows a protected setting", what)
		}
	}
}

// TestInstallDryRun is the acceptance check: a client-only rendering,
// no cluster needed, every component there, protected settings redacted.
func TestInstallDryRun(t *testing.T) {
	cred, proxy := protectedFiles(t)
	out, err := run(t, "install", "--dry-run", "--server", "https://vigil.example:443", "--cluster", "bar",
		"--credential-file", cred, "--proxy-file", proxy, "--kubeconfig", filepath.Join(t.TempDir(), "none"))
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"DaemonSet", "Deployment", "ValidatingWebhookConfiguration", "Secret", "Service"} {
		if !regexp.MustCompile(`(?m)^kind: ` + kind + `$`).MatchString(out) {
			t.Errorf("dry run prints no %s", kind)
		}
	}
	assertNoProtected(t, "install --dry-run", out)
	if strings.Count(out, install.Redacted) != 2 {
		t.Errorf("want the credential and the proxy redacted, got %d redactions", strings.Count(out, install.Redacted))
	}

	// Without a credential it still renders (the acceptance command).
	out, err = run(t, "install", "--dry-run", "--server", "https://vigil.example:443", "--cluster", "bar")
	if err != nil || !strings.Contains(out, "kind: DaemonSet") {
		t.Fatalf("dry run without a credential: %v", err)
	}

	// A bad proxy is refused without being echoed.
	bad := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(bad, []byte("proxy-PASSWORD-9"), 0o600)
	_, err = run(t, "install", "--dry-run", "--server", "https://vigil.example:443", "--proxy-file", bad)
	if err == nil || strings.Contains(err.Error(), "proxy-PASSWORD-9") {
		t.Errorf("bad proxy: %v", err)
	}
}

// partOfVigil lists every object in the cluster labelled
// app.kubernetes.io/part-of=vigil, of every resource type the API server
// serves, as "Kind/[namespace/]name".
func partOfVigil(t *testing.T, dc discovery.DiscoveryInterface, dyn dynamic.Interface) []string {
	t.Helper()
	lists, err := dc.ServerPreferredResources()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range l.APIResources {
			if !slices.Contains(r.Verbs, "list") || strings.Contains(r.Name, "/") {
				continue
			}
			items, err := dyn.Resource(gv.WithResource(r.Name)).List(context.Background(), metav1.ListOptions{LabelSelector: install.PartOfLabel})
			if err != nil {
				t.Fatalf("list %s: %v", r.Name, err)
			}
			for _, it := range items.Items {
				name := it.GetName()
				if ns := it.GetNamespace(); ns != "" {
					name = ns + "/" + name
				}
				out = append(out, r.Kind+"/"+name)
			}
		}
	}
	slices.Sort(out)
	return out
}

// agentRegistration is the Registration the agent would keep for the
// installed chart: its flags parsed from the Deployment's args, its
// excluded namespaces from the posture ConfigMap.
func agentRegistration(t *testing.T, kc kubernetes.Interface, ns string) admission.Registration {
	t.Helper()
	ctx := context.Background()
	dep, err := kc.AppsV1().Deployments(ns).Get(ctx, install.AgentName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var kf kubeFlags
	cmd := &cobra.Command{}
	kf.register(cmd)
	cmd.FParseErrWhitelist.UnknownFlags = true
	if err := cmd.ParseFlags(dep.Spec.Template.Spec.Containers[0].Args[1:]); err != nil {
		t.Fatal(err)
	}
	reg, _, _, err := kf.registration(kf.ownNamespace(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cm, err := kc.CoreV1().ConfigMaps(ns).Get(ctx, install.PostureName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := posture.ParseConfig([]byte(cm.Data["posture.yaml"]))
	if err != nil {
		t.Fatal(err)
	}
	reg.ExcludedNamespaces = ignoredNamespaces(cfg, kf.ownNamespace())
	return reg
}

// auditDeletes returns the resources deleted, in order, from the
// kube-apiserver audit log past offset: "resource/name".
func auditDeletes(t *testing.T, path string, offset int64) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(offset, 0); err != nil {
		t.Fatal(err)
	}
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		var ev struct {
			Verb           string
			Stage          string
			ObjectRef      struct{ Resource, Name string }
			ResponseStatus struct{ Code int }
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Stage != "ResponseComplete" || ev.Verb != "delete" || ev.ResponseStatus.Code >= 300 {
			continue
		}
		out = append(out, ev.ObjectRef.Resource+"/"+ev.ObjectRef.Name)
	}
	return out
}

// TestInstallKubeAPIServer installs, upgrades and uninstalls the chart on a
// real kube-apiserver (no kubelet: pods stay pending, and nothing waits for
// them). It checks what `vigil verify` and a platform team rely on: the
// exact set of objects, protected settings only in Secrets, no second
// install without --upgrade, an upgrade that keeps the caBundle the agent
// wrote and the values given before, the exclusion label, and an uninstall
// that deletes the webhook configuration first and leaves nothing.
func TestInstallKubeAPIServer(t *testing.T) {
	cluster := kubetest.Start(t, kubetest.Options{AuditLog: true})
	kubeconfig := cluster.Kubeconfig("vigil-installer", "system:masters")
	rc := cluster.RESTConfig(kubetest.Admin)
	kc := kubernetes.NewForConfigOrDie(rc)
	dyn := dynamic.NewForConfigOrDie(rc)
	dc := discovery.NewDiscoveryClientForConfigOrDie(rc)
	ctx := context.Background()
	const ns = "vigil"
	cred, proxy := protectedFiles(t)

	out, err := run(t, "install", "--kubeconfig", kubeconfig, "--server", "https://vigil.example:443", "--cluster", "bar",
		"--credential-file", cred, "--proxy-file", proxy)
	if err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	assertNoProtected(t, "install's output", out)
	want := []string{
		"ClusterRole/vigil-agent", "ClusterRole/vigil-sensor",
		"ClusterRoleBinding/vigil-agent", "ClusterRoleBinding/vigil-sensor",
		"ConfigMap/vigil/vigil-posture",
		"DaemonSet/vigil/vigil-sensor", "Deployment/vigil/vigil-agent",
		"Role/vigil/vigil-agent", "RoleBinding/vigil/vigil-agent",
		"Secret/vigil/vigil-join", "Secret/vigil/vigil-proxy",
		"Service/vigil/vigil-agent",
		"ServiceAccount/vigil/vigil-agent", "ServiceAccount/vigil/vigil-sensor",
		"ValidatingWebhookConfiguration/vigil",
	}
	if got := partOfVigil(t, dc, dyn); !slices.Equal(got, want) {
		t.Fatalf("objects labelled %s:\n got %v\nwant %v", install.PartOfLabel, got, want)
	}
	s, err := kc.CoreV1().Secrets(ns).Get(ctx, install.JoinSecret, metav1.GetOptions{})
	if err != nil || string(s.Data["credential"]) != installCredential {
		t.Fatalf("Secret vigil-join: %v", err)
	}
	if s, err = kc.CoreV1().Secrets(ns).Get(ctx, install.ProxySecret, metav1.GetOptions{}); err != nil || string(s.Data["proxy"]) != installProxy {
		t.Fatalf("Secret vigil-proxy: %v", err)
	}
	svc, err := kc.CoreV1().Services(ns).Get(ctx, install.AgentName, metav1.GetOptions{})
	if err != nil || svc.Spec.Ports[0].Port != 443 || svc.Spec.Ports[0].TargetPort.IntValue() != 8443 {
		t.Fatalf("Service vigil-agent: %v %+v", err, svc.Spec.Ports)
	}

	// Twice without --upgrade: refused.
	out, err = run(t, "install", "--kubeconfig", kubeconfig, "--server", "https://vigil.example:443", "--credential-file", cred)
	if !errors.Is(err, install.ErrInstalled) {
		t.Fatalf("second install without --upgrade: %v\n%s", err, out)
	}

	// The agent takes over the webhook configuration: what it registers
	// differs from the chart's only by the caBundle (and its label).
	vwcs := kc.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	before, err := vwcs.Get(ctx, install.WebhookName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reg := agentRegistration(t, kc, ns)
	reg.CABundle = []byte("-----BEGIN CERTIFICATE-----\nagent CA\n-----END CERTIFICATE-----\n")
	if err := admission.Register(ctx, kc, reg); err != nil {
		t.Fatal(err)
	}
	after, err := vwcs.Get(ctx, install.WebhookName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stripped := after.DeepCopy()
	for i := range stripped.Webhooks {
		stripped.Webhooks[i].ClientConfig.CABundle = nil
	}
	if !equality.Semantic.DeepEqual(before.Webhooks, stripped.Webhooks) {
		t.Errorf("the agent's registration differs from the chart's beyond caBundle:\nchart %+v\nagent %+v", before.Webhooks, stripped.Webhooks)
	}

	// An upgrade keeps the agent's caBundle and the values given before.
	out, err = run(t, "install", "--kubeconfig", kubeconfig, "--upgrade", "--set", "agent.replicas=2")
	if err != nil {
		t.Fatalf("install --upgrade: %v\n%s", err, out)
	}
	upgraded, err := vwcs.Get(ctx, install.WebhookName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(upgraded.Webhooks[0].ClientConfig.CABundle) != string(reg.CABundle) {
		t.Errorf("the upgrade reverted the caBundle the agent wrote: %q", upgraded.Webhooks[0].ClientConfig.CABundle)
	}
	dep, err := kc.AppsV1().Deployments(ns).Get(ctx, install.AgentName, metav1.GetOptions{})
	if err != nil || *dep.Spec.Replicas != 2 || !slices.Contains(dep.Spec.Template.Spec.Containers[0].Args, "--cluster=bar") {
		t.Errorf("upgrade: replicas %d, args %v (%v)", *dep.Spec.Replicas, dep.Spec.Template.Spec.Containers[0].Args, err)
	}
	if s, err = kc.CoreV1().Secrets(ns).Get(ctx, install.JoinSecret, metav1.GetOptions{}); err != nil || string(s.Data["credential"]) != installCredential {
		t.Errorf("upgrade lost the credential: %v", err)
	}

	// An excluded cluster is refused, upgrade or not.
	label := func(v *string) {
		t.Helper()
		patch := `{"metadata":{"labels":{"vigil.dev/exclude":null}}}`
		if v != nil {
			patch = `{"metadata":{"labels":{"vigil.dev/exclude":"` + *v + `"}}}`
		}
		if _, err := kc.CoreV1().Namespaces().Patch(ctx, "kube-system", "application/merge-patch+json", []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	yes := "true"
	label(&yes)
	if _, err := run(t, "install", "--kubeconfig", kubeconfig, "--upgrade"); !errors.Is(err, install.ErrExcluded) {
		t.Errorf("install into an excluded cluster: %v", err)
	}
	label(nil)

	// The agent's own Secret and Lease, which the chart does not make.
	if _, err := kc.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: install.AgentTLSSecret,
		Labels: map[string]string{admission.ManagedByLabel: admission.ManagedByValue}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.CoordinationV1().Leases(ns).Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: install.ScannerLease}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(cluster.AuditLogPath())
	if err != nil {
		t.Fatal(err)
	}
	out, err = run(t, "uninstall", "--kubeconfig", kubeconfig)
	if err != nil {
		t.Fatalf("uninstall: %v\n%s", err, out)
	}
	if got := partOfVigil(t, dc, dyn); len(got) != 0 {
		t.Errorf("left after uninstall: %v", got)
	}
	if _, err := kc.CoreV1().Secrets(ns).Get(ctx, install.AgentTLSSecret, metav1.GetOptions{}); err == nil {
		t.Error("the agent's serving-certificate Secret is left")
	}
	if _, err := kc.CoordinationV1().Leases(ns).Get(ctx, install.ScannerLease, metav1.GetOptions{}); err == nil {
		t.Error("the posture scanner's Lease is left")
	}
	deletes := auditDeletes(t, cluster.AuditLogPath(), st.Size())
	t.Logf("deletions in order: %v", deletes)
	if len(deletes) < 10 || deletes[0] != "validatingwebhookconfigurations/vigil" {
		t.Errorf("deletions, in order: %v; want the webhook configuration first", deletes)
	}
	for _, kind := range []string{"daemonsets/vigil-sensor", "deployments/vigil-agent", "services/vigil-agent", "clusterroles/vigil-agent"} {
		if !slices.Contains(deletes, kind) {
			t.Errorf("uninstall did not delete %s: %v", kind, deletes)
		}
	}

	// Again: nothing to do, and it says so.
	out, err = run(t, "uninstall", "--kubeconfig", kubeconfig)
	if err != nil || !strings.Contains(out, "no release") {
		t.Errorf("second uninstall: %v\n%s", err, out)
	}
}

// TestInstallServerKeepData runs with the controller manager, so the
// Deployments get ReplicaSets and (pending) pods that uninstall must wait
// for, and the PVC's protection finalizer is removed as in a real cluster:
// --keep-data keeps the server's database, a later plain uninstall removes
// it.
func TestInstallServerKeepData(t *testing.T) {
	cluster := kubetest.Start(t, kubetest.Options{})
	cluster.StartControllerManager()
	kubeconfig := cluster.Kubeconfig("vigil-installer", "system:masters")
	rc := cluster.RESTConfig(kubetest.Admin)
	kc := kubernetes.NewForConfigOrDie(rc)
	ctx := context.Background()
	cred, _ := protectedFiles(t)
	out, err := run(t, "install", "--kubeconfig", kubeconfig, "--credential-file", cred, "--set", "server.enabled=true", "--set", "sensor.enabled=false")
	if err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	for _, want := range []string{"Deployment/vigil/vigil-server", "Service/vigil/vigil-server", "PersistentVolumeClaim/vigil/vigil-server-data", "ServiceAccount/vigil/vigil-server"} {
		if !strings.Contains(out, want) {
			t.Errorf("install does not list %s:\n%s", want, out)
		}
	}
	// The controllers make ReplicaSets and pods, labelled part-of=vigil too.
	deadline := time.Now().Add(30 * time.Second)
	for {
		pods, err := kc.CoreV1().Pods("vigil").List(ctx, metav1.ListOptions{LabelSelector: install.PartOfLabel})
		if err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the controller manager made %d pods", len(pods.Items))
		}
		time.Sleep(200 * time.Millisecond)
	}

	out, err = run(t, "uninstall", "--kubeconfig", kubeconfig, "--keep-data")
	if err != nil {
		t.Fatalf("uninstall --keep-data: %v\n%s", err, out)
	}
	if !strings.Contains(out, "kept PersistentVolumeClaim/vigil-server-data") {
		t.Errorf("uninstall --keep-data does not say it kept the data:\n%s", out)
	}
	pvc, err := kc.CoreV1().PersistentVolumeClaims("vigil").Get(ctx, install.ServerData, metav1.GetOptions{})
	if err != nil || pvc.DeletionTimestamp != nil {
		t.Fatalf("--keep-data did not keep the PVC: %v", err)
	}
	for _, kind := range []string{"Deployment", "ReplicaSet", "Pod"} {
		if strings.Contains(out, kind+"/") {
			t.Errorf("uninstall left a %s:\n%s", kind, out)
		}
	}

	out, err = run(t, "uninstall", "--kubeconfig", kubeconfig)
	if err != nil {
		t.Fatalf("second uninstall: %v\n%s", err, out)
	}
	if _, err := kc.CoreV1().PersistentVolumeClaims("vigil").Get(ctx, install.ServerData, metav1.GetOptions{}); err == nil {
		t.Error("uninstall without --keep-data left the PVC")
	}
}

// TestInstallJoinsTheCluster: with an admin token and no credential,
// `vigil install --server --cluster` creates the cluster on the server and
// keeps its credential in Secret vigil-join, where it authenticates as
// that cluster. One command onboards a cluster.
func TestInstallJoinsTheCluster(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := testServer(t, dir)
	cluster := kubetest.Start(t, kubetest.Options{})
	kubeconfig := cluster.Kubeconfig("vigil-installer", "system:masters")

	admin, err := os.ReadFile(srv.token)
	if err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "install", "--kubeconfig", kubeconfig, "--server", srv.url, "--cluster", "edge-7", "--token", strings.TrimSpace(string(admin)))
	if err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	s, err := cluster.Clientset(kubetest.Admin).CoreV1().Secrets("vigil").Get(ctx, install.JoinSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cred := string(s.Data["credential"])
	if strings.Contains(out, cred) {
		t.Error("install printed the join credential")
	}
	p, err := srv.store.Authenticate(ctx, cred)
	if err != nil || p.Role != store.RoleCluster {
		t.Fatalf("the Secret's credential does not authenticate as a cluster: %+v %v", p, err)
	}
	if c, err := srv.store.GetCluster(ctx, "edge-7", time.Now()); err != nil || c.ID != p.ClusterID {
		t.Fatalf("cluster edge-7: %+v %v (credential for %s)", c, err, p.ClusterID)
	}

	// A wrong token is refused before anything is installed.
	if out, err := run(t, "uninstall", "--kubeconfig", kubeconfig); err != nil {
		t.Fatalf("uninstall: %v\n%s", err, out)
	}
	if _, err := run(t, "install", "--kubeconfig", kubeconfig, "--server", srv.url, "--cluster", "edge-8", "--token", "vgl_wrong"); err == nil {
		t.Fatal("install with a wrong admin token succeeded")
	}
	if _, err := cluster.Clientset(kubetest.Admin).AppsV1().Deployments("vigil").Get(ctx, "vigil-agent", metav1.GetOptions{}); err == nil {
		t.Error("a refused install left the agent behind")
	}
}
