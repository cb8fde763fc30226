//go:build !node

package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/vigil-sec/vigil/deploy"
	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/kubetest"
	"github.com/vigil-sec/vigil/internal/server/store"
	"github.com/vigil-sec/vigil/internal/ship"
)

// TestVerifyKubeAPIServer runs `vigil verify` against a real kube-apiserver
// whose audit webhook goes to a real Vigil server (HTTPS, the cluster's
// credential as the token), over an installation with known holes: no
// kubelet runs, so the objects are made by hand with the statuses they
// would have. Verify must name exactly what is missing, exit non-zero, pass
// the audit rows on the strength of the real audit webhook, and tell a
// webhook that answers from one that is registered but dead.
func TestVerifyKubeAPIServer(t *testing.T) {
	dir := t.TempDir()
	ca, caKey, caCrt, _ := writeCA(t, dir, "ca")
	srvCrt, srvKey := writeServerCert(t, dir, ca, caKey)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := startServer(ctx, serverFlags{addr: "127.0.0.1:0", db: "sqlite://" + filepath.Join(dir, "v.db"), data: dir,
		tlsCert: srvCrt, tlsKey: srvKey}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); srv.wait() }()
	adminToken, err := os.ReadFile(srv.token)
	if err != nil {
		t.Fatal(err)
	}
	prod, credential, err := srv.store.CreateCluster(ctx, "prod")
	if err != nil {
		t.Fatal(err)
	}
	credFile := filepath.Join(dir, "cluster.credential")
	os.WriteFile(credFile, []byte(credential), 0o600)
	caPEM, err := os.ReadFile(caCrt)
	if err != nil {
		t.Fatal(err)
	}

	cluster := kubetest.Start(t, kubetest.Options{AuditPolicy: deploy.AuditPolicy,
		AuditWebhook: &kubetest.AuditWebhook{URL: srv.url + "/api/v1/audit", CAData: caPEM, Token: credential, BatchMaxWait: 200 * time.Millisecond}})
	kc := cluster.Clientset(kubetest.Admin)
	installHalfway(t, kc, credential)

	// The server has heard from node-a's sensor; node-b's failed; node-c's
	// never reported.
	if _, err := srv.store.Ingest(ctx, prod.ID, &ship.Batch{BatchID: "health-1", Health: []ship.Health{
		{Node: "node-a", Component: "sensor", State: "installed"},
		{Node: "node-b", Component: "sensor", State: "failed", Reason: "no BTF for kernel 5.4.0"},
	}}, time.Now()); err != nil {
		t.Fatal(err)
	}

	args := []string{"verify", "--server", srv.url, "--token", strings.TrimSpace(string(adminToken)), "--server-ca", caCrt,
		"--cluster", "prod", "--kubeconfig", cluster.Kubeconfig("verifier", "system:masters")}
	verify := func(extra ...string) (verifyReport, error) {
		t.Helper()
		start := time.Now()
		out, err := run(t, append(slices.Clone(args), append(extra, "-o", "json")...)...)
		var rep verifyReport
		if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil {
			t.Fatalf("verify -o json: %v\n%s", jerr, out)
		}
		t.Logf("verify %v took %v:\n%s", extra, time.Since(start).Round(time.Millisecond), out)
		return rep, err
	}

	// 1. No agent, no webhook configuration.
	rep, err := verify("--timeout", "10s")
	if err == nil || !strings.Contains(err.Error(), "failed") || rep.Passed {
		t.Errorf("verify over a broken installation: err %v, passed %v: want a failure", err, rep.Passed)
	}
	byID := checksByID(t, rep)
	want := func(id string, status checkStatus, problems ...string) {
		t.Helper()
		c := byID[id]
		if c.Status != status {
			t.Errorf("%s: status %s (%s), want %s", id, c.Status, c.Detail, status)
		}
		if problems != nil && !slices.Equal(c.Problems, problems) {
			t.Errorf("%s: problems\n%q\nwant\n%q", id, c.Problems, problems)
		}
	}
	want("server", checkPass)
	want("components", checkFail,
		"sensor: DaemonSet vigil/vigil-sensor has 1 of 3 pods ready",
		"agent: Deployment vigil/vigil-agent has 0 of 1 replicas available",
		"admission: ValidatingWebhookConfiguration vigil not found",
		"server: sensor on node-b failed: no BTF for kernel 5.4.0")
	want("sensors", checkFail,
		"node node-b: sensor pod vigil-sensor-b is Pending",
		"node node-b: the sensor reports failed: no BTF for kernel 5.4.0",
		"node node-c: no sensor pod",
		"node node-c: the server hears no sensor heartbeat")
	want("audit-events", checkPass)
	want("admission", checkFail)
	if d := byID["admission"].Detail; !strings.Contains(d, "neither a denial nor a [vigil] warning") || !strings.Contains(d, "ValidatingWebhookConfiguration vigil not found") {
		t.Errorf("admission detail %q", d)
	}
	// No kubelet: the marker pod never runs, and verify says so.
	want("test-alert-runtime", checkFail)
	if p := byID["test-alert-runtime"].Problems; len(p) != 1 || !strings.HasPrefix(p[0], "pod vigil-alerttest-") || !strings.HasSuffix(p[0], " is Pending, not scheduled to a node") {
		t.Errorf("runtime test alert problems %q", p)
	}
	want("test-alert-audit", checkPass)
	if l := byID["test-alert-audit"].LatencySeconds; l <= 0 || l > 10 {
		t.Errorf("control-plane test alert latency %vs", l)
	}
	if c, err := srv.store.GetCluster(ctx, "prod", time.Now()); err != nil || c.LastAudit.IsZero() {
		t.Errorf("the cluster's last audit batch: %v, %v", c.LastAudit, err)
	}
	// The test namespace went, and verify raised no alert but its own.
	ns, err := kc.CoreV1().Namespaces().Get(ctx, alertTestNamespace, metav1.GetOptions{})
	if err != nil || ns.DeletionTimestamp == nil {
		t.Errorf("the test namespace after verify: %v (deleting: %v)", err, err == nil && ns.DeletionTimestamp != nil)
	}
	page, err := srv.store.ListAlerts(ctx, store.AlertFilter{Cluster: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range page.Alerts {
		if a.Rule != auditTestRule {
			t.Errorf("verify raised %s: %s", a.Rule, a.Title)
		}
	}
	finalizeNamespace(t, kc, alertTestNamespace) // the namespace controller's job; none runs here

	// 2. The agent runs, registers its webhook and answers.
	const identity = "system:serviceaccount:vigil:vigil-agent"
	agentRBAC(t, kc, identity, "vigil")
	addr := freeAddr(t)
	agentCtx, stopAgent := context.WithCancel(ctx)
	defer stopAgent()
	ag, err := startAgent(agentCtx, agentFlags{addr: addr, cluster: "prod", node: "agent-1",
		ship: shipFlags{server: srv.url, tokenFile: credFile, caFile: caCrt, spool: filepath.Join(dir, "spool")},
		kube: kubeFlags{kubeconfig: cluster.Kubeconfig(identity, "system:serviceaccounts", "system:serviceaccounts:vigil"),
			namespace: "vigil", admission: true, webhookURL: "https://" + addr + "/validate", webhookConfig: "vigil",
			failurePolicy: "Ignore", webhookTimeout: 5 * time.Second, tlsSecret: "vigil-agent-tls", configPoll: time.Second}},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	agentDone := make(chan error, 1)
	go func() { agentDone <- ag.wait() }()
	eventuallyOK(t, "webhook registration", func() error {
		_, err := kc.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "vigil", metav1.GetOptions{})
		return err
	})
	dep, err := kc.AppsV1().Deployments("vigil").Get(ctx, agentDeployment, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dep.Status = appsv1.DeploymentStatus{Replicas: 1, ReadyReplicas: 1, AvailableReplicas: 1, UpdatedReplicas: 1}
	if _, err := kc.AppsV1().Deployments("vigil").UpdateStatus(ctx, dep, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	rep, err = verify("--timeout", "4s", "--skip-test-alerts")
	if err == nil {
		t.Error("verify with sensors missing: want a failure")
	}
	byID = checksByID(t, rep)
	want("admission", checkPass)
	if d := byID["admission"].Detail; !strings.Contains(d, "[vigil] warning") {
		t.Errorf("admission detail %q: want the audit-mode warnings", d)
	}
	want("components", checkFail,
		"sensor: DaemonSet vigil/vigil-sensor has 1 of 3 pods ready",
		"server: sensor on node-b failed: no BTF for kernel 5.4.0")
	want("test-alert-runtime", checkSkipped)
	want("test-alert-audit", checkSkipped)
	finalizeNamespace(t, kc, alertTestNamespace)

	// 2b. The rest of the installation comes up, and a stand-in for
	// node-a's sensor runs the real rules over the exec the marker pod
	// makes. Every row passes, both test alerts with their latency, and
	// verify exits 0.
	completeInstall(t, kc)
	if _, err := srv.store.Ingest(ctx, prod.ID, &ship.Batch{BatchID: "health-2", Health: []ship.Health{
		{Node: "node-a", Component: "sensor", State: "installed"},
		{Node: "node-b", Component: "sensor", State: "installed"},
		{Node: "node-c", Component: "sensor", State: "installed"},
	}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	sensorCtx, stopSensor := context.WithCancel(ctx)
	sensorDone := standInSensor(t, sensorCtx, kc, srv.store, prod.ID)
	rep, err = verify("--timeout", "30s")
	stopSensor()
	<-sensorDone
	if err != nil || !rep.Passed {
		t.Fatalf("verify over a complete installation: %v (passed %v)", err, rep.Passed)
	}
	byID = checksByID(t, rep)
	for _, id := range []string{"test-alert-runtime", "test-alert-audit"} {
		if l := byID[id].LatencySeconds; l <= 0 || l > 30 {
			t.Errorf("%s latency %vs", id, l)
		}
	}
	finalizeNamespace(t, kc, alertTestNamespace)

	// 3. The agent stops; its registration stays, failure policy Ignore
	// admits everything silently. Verify is not fooled.
	stopAgent()
	select {
	case err := <-agentDone:
		if err != nil {
			t.Fatalf("agent: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the agent did not stop")
	}
	rep, _ = verify("--timeout", "3s", "--skip-test-alerts")
	byID = checksByID(t, rep)
	want("admission", checkFail)
	if d := byID["admission"].Detail; !strings.Contains(d, "the webhook is not answering") || strings.Contains(d, "not found") {
		t.Errorf("admission detail with the agent down %q", d)
	}
}

// installHalfway makes what the chart would, as a cluster without kubelets
// would show it: three nodes; the sensor DaemonSet with one ready pod
// (node-a), one pending (node-b) and none on node-c; the agent Deployment
// with nothing available; its Service; the join Secret; no webhook
// configuration.
func installHalfway(t *testing.T, kc kubernetes.Interface, credential string) {
	t.Helper()
	ctx := context.Background()
	ns := "vigil"
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	_, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	must("namespace", err)
	_, err = kc.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	must("service account", err)
	for _, n := range []string{"node-a", "node-b", "node-c"} {
		_, err := kc.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{})
		must("node "+n, err)
	}
	sensorLabels := map[string]string{partOfLabel: "vigil", componentLabel: "sensor"}
	container := []corev1.Container{{Name: "vigil", Image: "ghcr.io/vigil-sec/vigil:test"}}
	ds, err := kc.AppsV1().DaemonSets(ns).Create(ctx, &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: sensorDaemonSet, Labels: sensorLabels},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: sensorLabels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: sensorLabels}, Spec: corev1.PodSpec{Containers: container}}},
	}, metav1.CreateOptions{})
	must("DaemonSet", err)
	ds.Status = appsv1.DaemonSetStatus{DesiredNumberScheduled: 3, CurrentNumberScheduled: 2, NumberReady: 1, NumberAvailable: 1, NumberUnavailable: 2}
	_, err = kc.AppsV1().DaemonSets(ns).UpdateStatus(ctx, ds, metav1.UpdateOptions{})
	must("DaemonSet status", err)
	for node, ready := range map[string]bool{"node-a": true, "node-b": false} {
		p, err := kc.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "vigil-sensor-" + strings.TrimPrefix(node, "node-"), Labels: sensorLabels},
			Spec: corev1.PodSpec{NodeName: node, Containers: container}}, metav1.CreateOptions{})
		must("sensor pod", err)
		if ready {
			p.Status = corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
			_, err = kc.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
			must("sensor pod status", err)
		}
	}
	agentLabels := map[string]string{partOfLabel: "vigil", componentLabel: "agent"}
	_, err = kc.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: agentDeployment, Labels: agentLabels},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: agentLabels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: agentLabels}, Spec: corev1.PodSpec{Containers: container}}},
	}, metav1.CreateOptions{})
	must("Deployment", err)
	_, err = kc.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: agentService, Labels: agentLabels},
		Spec: corev1.ServiceSpec{Selector: agentLabels, Ports: []corev1.ServicePort{{Port: 443}}}}, metav1.CreateOptions{})
	must("Service", err)
	_, err = kc.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: joinSecret},
		Data: map[string][]byte{joinSecretKey: []byte(credential)}}, metav1.CreateOptions{})
	must("Secret", err)
}

// completeInstall makes the rest of installHalfway ready: sensor pods on
// node-b and node-c running, the DaemonSet at 3 of 3.
func completeInstall(t *testing.T, kc kubernetes.Interface) {
	t.Helper()
	ctx := context.Background()
	sensorLabels := map[string]string{partOfLabel: "vigil", componentLabel: "sensor"}
	if _, err := kc.CoreV1().Pods("vigil").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "vigil-sensor-c", Labels: sensorLabels},
		Spec: corev1.PodSpec{NodeName: "node-c", Containers: []corev1.Container{{Name: "vigil", Image: "ghcr.io/vigil-sec/vigil:test"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"vigil-sensor-b", "vigil-sensor-c"} {
		p, err := kc.CoreV1().Pods("vigil").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
		if _, err := kc.CoreV1().Pods("vigil").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := kc.AppsV1().DaemonSets("vigil").Get(ctx, sensorDaemonSet, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ds.Status = appsv1.DaemonSetStatus{DesiredNumberScheduled: 3, CurrentNumberScheduled: 3, NumberReady: 3, NumberAvailable: 3, UpdatedNumberScheduled: 3}
	if _, err := kc.AppsV1().DaemonSets("vigil").UpdateStatus(ctx, ds, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// standInSensor plays node-a's kubelet and sensor for verify's marker pod:
// it binds the pod to node-a, runs the built-in rules over the exec the
// pod's command makes (busybox through a link named
// vigil-alerttest-marker), and sends what they raise to the server as the
// sensor would. The returned channel is closed when ctx is done and it has
// stopped.
func standInSensor(t *testing.T, ctx context.Context, kc kubernetes.Interface, st *store.Store, clusterID string) <-chan struct{} {
	t.Helper()
	rules, err := detect.Load(detect.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var raised []event.Alert
	eng := detect.New(detect.Config{Rules: rules, Cluster: "prod", Emit: func(a *event.Alert) { raised = append(raised, *a) }})
	done := make(chan struct{})
	go func() {
		defer close(done)
		// A watch, not a list: listing pods in the test namespace is what
		// raises the control-plane test alert.
		w, err := kc.CoreV1().Pods(alertTestNamespace).Watch(ctx, metav1.ListOptions{LabelSelector: componentLabel + "=verify"})
		if err != nil {
			t.Errorf("watch test pods: %v", err)
			return
		}
		defer w.Stop()
		seen := map[string]bool{}
		for ev := range w.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok {
				if seen[p.Name] || p.DeletionTimestamp != nil {
					continue
				}
				seen[p.Name] = true
				if err := kc.CoreV1().Pods(p.Namespace).Bind(ctx, &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: p.Name},
					Target: corev1.ObjectReference{Kind: "Node", Name: "node-a"}}, metav1.CreateOptions{}); err != nil {
					t.Errorf("bind %s: %v", p.Name, err)
				}
				c := p.Spec.Containers[0]
				link := strings.Fields(c.Command[2])[3] // ln -s /bin/busybox LINK && LINK; ...
				eng.Process(&event.Event{Kind: event.ProcessExec, Time: time.Now(), Node: "node-a",
					Process:   &event.Process{Pid: 20, Ppid: 10, Exe: "/bin/busybox", Args: []string{link}},
					Container: &event.Container{ID: "c-" + p.Name, Image: c.Image, Pod: p.Name, Namespace: p.Namespace}})
				if _, err := st.Ingest(ctx, clusterID, &ship.Batch{BatchID: "sensor-" + p.Name, Node: "node-a", Component: "sensor", Alerts: raised}, time.Now()); err != nil {
					t.Errorf("ingest: %v", err)
				}
				raised = nil
			}
		}
	}()
	return done
}

// finalizeNamespace finishes a namespace deletion the way the namespace
// controller would: its pods go, then its finalizer.
func finalizeNamespace(t *testing.T, kc kubernetes.Interface, name string) {
	t.Helper()
	ctx := context.Background()
	grace := int64(0)
	if err := kc.CoreV1().Pods(name).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &grace}, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	ns, err := kc.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns.Spec.Finalizers = nil
	if _, err := kc.CoreV1().Namespaces().Finalize(ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func checksByID(t *testing.T, rep verifyReport) map[string]checkRow {
	t.Helper()
	m := map[string]checkRow{}
	var ids []string
	for _, c := range rep.Checks {
		m[c.ID] = c
		ids = append(ids, c.ID)
	}
	if want := []string{"server", "components", "sensors", "audit-events", "admission", "test-alert-runtime", "test-alert-audit"}; !slices.Equal(ids, want) {
		t.Fatalf("checks %v, want %v", ids, want)
	}
	return m
}

// TestVerifyTable: the table puts each problem on its own line under its
// check.
func TestVerifyTable(t *testing.T) {
	var b bytes.Buffer
	err := printChecks(&b, []checkRow{
		{ID: "server", Check: "connected to the server", Status: checkPass, Detail: "cluster prod is connected (last heartbeat 2s ago)"},
		{ID: "sensors", Check: "sensor on every node", Status: checkFail, Problems: []string{"node node-b: no sensor pod", "node node-c: no sensor pod"}},
		{ID: "test-alert-audit", Check: "test alert: control plane (audit)", Status: checkSkipped},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `CHECK                              STATUS   DETAIL
connected to the server            pass     cluster prod is connected (last heartbeat 2s ago)
sensor on every node               fail     node node-b: no sensor pod
                                            node node-c: no sensor pod
test alert: control plane (audit)  skipped  
`
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}
