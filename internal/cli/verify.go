//go:build !node

package cli

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vigil-sec/vigil/internal/admission"
	"github.com/vigil-sec/vigil/internal/server/store"
)

// The objects the Helm chart installs, by the names verify looks for.
const (
	sensorDaemonSet   = "vigil-sensor"
	agentDeployment   = "vigil-agent"
	agentService      = "vigil-agent"
	serverDeployment  = "vigil-server"
	webhookConfigName = "vigil"
	joinSecret        = "vigil-join"
	joinSecretKey     = "credential"
	partOfLabel       = "app.kubernetes.io/part-of"
	componentLabel    = "app.kubernetes.io/component"
)

// The test alerts: the namespace verify creates and removes, the binary
// name rules/runtime/vigil-test-alert.yaml fires on, and the two rules.
const (
	alertTestNamespace = "vigil-alerttest"
	alertTestMarker    = "vigil-alerttest-marker"
	runtimeTestRule    = "runtime.vigil-test-alert"
	auditTestRule      = "audit.vigil-test-alert"
	// kubectlUserAgent is what the control-plane test request says it is:
	// the test stands for `kubectl get pods -n vigil-alerttest`.
	kubectlUserAgent = "kubectl/v1.36.3 (linux/amd64) vigil-verify"
)

// checkStatus is a row's verdict.
type checkStatus string

const (
	checkPass    checkStatus = "pass"
	checkFail    checkStatus = "fail"    // broken: the reason says what
	checkPending checkStatus = "pending" // not there yet (a component still pending, the server not reachable to judge)
	checkSkipped checkStatus = "skipped" // not asked for (--skip-test-alerts)
)

// checkRow is one line of the checklist.
type checkRow struct {
	ID     string      `json:"id"`
	Check  string      `json:"check"`
	Status checkStatus `json:"status"`
	Detail string      `json:"detail,omitempty"`
	// Problems lists what is wrong, one item each (a node, a component).
	Problems []string `json:"problems,omitempty"`
	// LatencySeconds is, for a test alert, how long after the trigger it
	// was visible on the server.
	LatencySeconds float64 `json:"latency_seconds,omitempty"`
}

// verifyReport is the -o json output.
type verifyReport struct {
	Cluster string     `json:"cluster"`
	Started time.Time  `json:"started"`
	Passed  bool       `json:"passed"`
	Checks  []checkRow `json:"checks"`
}

type verifyFlags struct {
	client         clientFlags
	serverCA       string
	cluster        string
	namespace      string
	kubeconfig     string
	timeout        time.Duration
	skipTestAlerts bool
	testImage      string
}

func verifyCmd() *cobra.Command {
	var f verifyFlags
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check that Vigil protects a cluster, end to end, and raise the test alerts",
		Long: `Check an installation the way Defender's verification checklist does, from
the cluster of the current kubeconfig and from the server:

  connected to the server     /healthz, the token, the cluster exists and its
                              last heartbeat is recent
  components installed        sensor DaemonSet ready, agent Deployment and
                              Service, webhook configuration with a caBundle,
                              join Secret; the server's component states
  sensor on every node        a running sensor pod on each node, and each
                              node's sensor heartbeat on the server
  audit events arriving       the server received the API server's audit
                              batches recently
  admission webhook answering a dry-run of an unhealthy pod is denied by
                              validate.vigil.dev or comes back with [vigil]
                              warnings (failure policy Ignore hides a dead
                              webhook; this does not)
  test alerts                 a pod in namespace vigil-alerttest execs a
                              harmless binary named vigil-alerttest-marker
                              (runtime.vigil-test-alert), and a kubectl-like
                              "get pods -n vigil-alerttest" (audit.vigil-test-alert);
                              verify waits for both alerts on the server and
                              prints how long each took

Rows that do not pass are checked again until --timeout. The namespace
vigil-alerttest is created and deleted again, also on failure or Ctrl-C.
The exit status is non-zero unless every row passed (or was skipped).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.client.checkOutput(); err != nil {
				return err
			}
			if f.timeout <= 0 {
				return errors.New("--timeout must be positive")
			}
			token, err := f.client.resolveToken()
			if err != nil {
				return err
			}
			hc := http.DefaultClient
			if f.serverCA != "" {
				pool, err := loadCAPool(f.serverCA)
				if err != nil {
					return err
				}
				hc = &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment,
					TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
			}
			rules := clientcmd.NewDefaultClientConfigLoadingRules()
			rules.ExplicitPath = f.kubeconfig
			rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
			if err != nil {
				return fmt.Errorf("reach the Kubernetes API (no usable kubeconfig): %w", err)
			}
			kube, err := newVerifyKube(rc)
			if err != nil {
				return err
			}
			v := &verifier{kube: kube, server: &verifyClient{base: strings.TrimRight(f.client.server, "/"), token: token, http: hc},
				cluster: f.cluster, namespace: f.namespace, timeout: f.timeout, skipTestAlerts: f.skipTestAlerts,
				testImage: f.testImage, log: logger("warn")}
			rep := v.run(cmd.Context())
			out := cmd.OutOrStdout()
			if f.client.output == "json" {
				if err := f.client.printJSON(out, rep); err != nil {
					return err
				}
			} else if err := printChecks(out, rep.Checks); err != nil {
				return err
			}
			return rep.err()
		},
	}
	f.client.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&f.serverCA, "server-ca", "", "CA bundle (PEM) that verifies the server's certificate (default: the system's)")
	fl.StringVar(&f.cluster, "cluster", "", "the cluster's name on the server (default: the server's only cluster)")
	fl.StringVar(&f.namespace, "namespace", "vigil", "namespace Vigil is installed in")
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig (default: $KUBECONFIG or ~/.kube/config)")
	fl.DurationVar(&f.timeout, "timeout", 2*time.Minute, "how long to wait for every check to pass and for the test alerts")
	fl.BoolVar(&f.skipTestAlerts, "skip-test-alerts", false, "do not raise the test alerts")
	fl.StringVar(&f.testImage, "test-image", "busybox:1.36", "image of the runtime test pod (needs sh, ln and /bin/busybox)")
	return cmd
}

// err is the command's result: nil only when every row passed or was
// skipped.
func (r verifyReport) err() error {
	var failed, pending int
	for _, c := range r.Checks {
		switch c.Status {
		case checkFail:
			failed++
		case checkPending:
			pending++
		}
	}
	if failed+pending == 0 {
		return nil
	}
	return fmt.Errorf("verify: %d of %d checks failed, %d pending", failed, len(r.Checks), pending)
}

func printChecks(w io.Writer, rows []checkRow) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tSTATUS\tDETAIL")
	for _, r := range rows {
		lines := r.Problems
		if r.Detail != "" {
			lines = append([]string{r.Detail}, lines...)
		}
		if len(lines) == 0 {
			lines = []string{""}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Check, r.Status, lines[0])
		for _, l := range lines[1:] {
			fmt.Fprintf(tw, "\t\t%s\n", l)
		}
	}
	return tw.Flush()
}

// verifyKube is what verify needs of the cluster: one identity, two user
// agents, and the warnings the API server sends back.
type verifyKube struct {
	client kubernetes.Interface
	// kubectl is the same identity with kubectl's user agent: the
	// control-plane test request.
	kubectl  kubernetes.Interface
	warnings *warningLog
}

func newVerifyKube(rc *rest.Config) (*verifyKube, error) {
	warn := &warningLog{}
	rc = rest.CopyConfig(rc)
	rc.WarningHandler = warn
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	kc := rest.CopyConfig(rc)
	kc.UserAgent = kubectlUserAgent
	kubectl, err := kubernetes.NewForConfig(kc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return &verifyKube{client: client, kubectl: kubectl, warnings: warn}, nil
}

// warningLog keeps the warnings the API server returns (the admission
// webhook's audit-mode findings come back as "[vigil] ..." warnings); safe
// for concurrent use.
type warningLog struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warningLog) HandleWarningHeader(_ int, _, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

// take returns the warnings since the last take and forgets them.
func (w *warningLog) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.msgs
	w.msgs = nil
	return m
}

// verifyServer is what verify asks the Vigil server.
type verifyServer interface {
	healthz(ctx context.Context) error
	clusters(ctx context.Context) ([]store.Cluster, error)
	// alerts lists alerts matching q (the GET /api/v1/alerts filters).
	alerts(ctx context.Context, q url.Values) ([]verifyAlert, error)
}

// verifyAlert is the part of an alert verify reads.
type verifyAlert struct {
	ID        string    `json:"id"`
	Rule      string    `json:"rule"`
	Namespace string    `json:"namespace"`
	Pod       string    `json:"pod"`
	Node      string    `json:"node"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Count     uint64    `json:"count"`
}

// verifyClient is verifyServer over the REST API with an admin or reader
// token.
type verifyClient struct {
	base, token string
	http        *http.Client
}

func (c *verifyClient) get(ctx context.Context, path string, q url.Values, auth bool, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return fmt.Errorf("--server: %w", err)
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		msg := resp.Status
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg = e.Error + " (" + resp.Status + ")"
		}
		if resp.StatusCode == http.StatusUnauthorized {
			msg += ": pass an admin or reader token with --token"
		}
		return fmt.Errorf("GET %s: %s", path, msg)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

func (c *verifyClient) healthz(ctx context.Context) error {
	var out map[string]any
	return c.get(ctx, "/healthz", nil, false, &out)
}

func (c *verifyClient) clusters(ctx context.Context) ([]store.Cluster, error) {
	var out struct {
		Clusters []store.Cluster `json:"clusters"`
	}
	err := c.get(ctx, "/api/v1/clusters", nil, true, &out)
	return out.Clusters, err
}

func (c *verifyClient) alerts(ctx context.Context, q url.Values) ([]verifyAlert, error) {
	var out struct {
		Alerts []verifyAlert `json:"alerts"`
	}
	err := c.get(ctx, "/api/v1/alerts", q, true, &out)
	return out.Alerts, err
}

// verifier runs the checklist against one cluster and one server.
type verifier struct {
	kube           *verifyKube
	server         verifyServer
	cluster        string // name on the server; "" means the server's only one
	namespace      string
	timeout        time.Duration
	skipTestAlerts bool
	testImage      string
	log            *slog.Logger
	// poll is how often the server is asked for the test alerts (0: 250 ms),
	// recheck how often rows 1-5 are checked again until they pass (0: 2 s).
	poll, recheck time.Duration
}

// testAlert is one raised test alert being waited for.
type testAlert struct {
	rule     string
	query    url.Values
	trigger  time.Time // when the request that raises it was made
	raiseErr error     // the trigger failed
	// before are the matching alerts as they were just before the
	// trigger: an alert from an earlier run (the engine folds repeats of
	// one user's into one alert) counts only once it has moved.
	before map[string]verifyAlert
	found  *verifyAlert
	seen   time.Time // when it was first listed on the server
}

// run checks every row until all pass or the timeout, and returns the
// report. Cancelling ctx ends the wait early; the test namespace is
// removed either way.
func (v *verifier) run(ctx context.Context) verifyReport {
	start := time.Now()
	deadline := start.Add(v.timeout)
	if v.poll == 0 {
		v.poll = 250 * time.Millisecond
	}
	if v.recheck == 0 {
		v.recheck = 2 * time.Second
	}
	rep := verifyReport{Started: start.UTC(), Cluster: v.cluster}

	nsErr := v.ensureTestNamespace(ctx, deadline)
	defer v.cleanup(context.WithoutCancel(ctx))

	var (
		runtimeAlert, auditAlert *testAlert
		testPod                  string
		cl                       *store.Cluster
		rows                     []checkRow // rows 1-5
		checked                  time.Time
	)
	for {
		if passed(rows) < len(rows) || rows == nil {
			if rows == nil || time.Since(checked) >= v.recheck {
				rows = v.checkRows(ctx, rows, &cl, nsErr)
				checked = time.Now()
			}
		}
		if cl != nil {
			rep.Cluster = cl.Name
		}
		if runtimeAlert == nil && !v.skipTestAlerts && cl != nil {
			testPod, runtimeAlert, auditAlert = v.raiseTestAlerts(ctx, cl.Name, nsErr)
		}
		if runtimeAlert != nil {
			v.pollAlert(ctx, runtimeAlert)
			v.pollAlert(ctx, auditAlert)
			// The audit row is decided by the test alert too: it proves
			// audit events arrive whichever way they travel.
			rows[3] = v.checkAuditEvents(cl, auditAlert)
		}
		alertRows := v.testAlertRows(ctx, testPod, runtimeAlert, auditAlert, false)
		if passed(rows)+passed(alertRows) == len(rows)+len(alertRows) || !time.Now().Before(deadline) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(min(v.poll, time.Until(deadline))):
		}
	}
	// Final words for the test alerts that never came.
	rep.Checks = append(rows, v.testAlertRows(ctx, testPod, runtimeAlert, auditAlert, true)...)
	rep.Passed = rep.err() == nil
	return rep
}

// passed counts the rows that passed or were skipped.
func passed(rows []checkRow) int {
	n := 0
	for _, r := range rows {
		if r.Status == checkPass || r.Status == checkSkipped {
			n++
		}
	}
	return n
}

// checkRows runs rows 1-5 again; *cl becomes the cluster as the server now
// sees it. A passing dry-run (row 5) is not repeated: each is an audited
// request.
func (v *verifier) checkRows(ctx context.Context, prev []checkRow, cl **store.Cluster, nsErr error) []checkRow {
	c, serverRow := v.checkServer(ctx)
	*cl = c
	rows := []checkRow{serverRow, v.checkComponents(ctx, c), v.checkSensors(ctx, c), v.checkAuditEvents(c, nil)}
	if len(prev) == 5 && prev[4].Status == checkPass {
		return append(rows, prev[4])
	}
	return append(rows, v.checkAdmission(ctx, nsErr))
}

func row(id, check string) checkRow { return checkRow{ID: id, Check: check, Status: checkPass} }

// problem adds a problem of status s to r: a fail outranks a pending.
func (r *checkRow) problem(s checkStatus, format string, a ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, a...))
	if r.Status != checkFail {
		r.Status = s
	}
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

// checkServer is row 1; it returns the cluster as the server sees it, or
// nil when the server cannot say.
func (v *verifier) checkServer(ctx context.Context) (*store.Cluster, checkRow) {
	r := row("server", "connected to the server")
	if err := v.server.healthz(ctx); err != nil {
		r.Status, r.Detail = checkFail, err.Error()
		return nil, r
	}
	cs, err := v.server.clusters(ctx)
	if err != nil {
		r.Status, r.Detail = checkFail, err.Error()
		return nil, r
	}
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	var cl *store.Cluster
	switch {
	case v.cluster != "":
		i := slices.IndexFunc(cs, func(c store.Cluster) bool { return c.Name == v.cluster })
		if i < 0 {
			r.Status, r.Detail = checkFail, fmt.Sprintf("cluster %q is not on the server (it has: %s); create it with `vigil cluster add`", v.cluster, strings.Join(names, ", "))
			return nil, r
		}
		cl = &cs[i]
	case len(cs) == 1:
		cl = &cs[0]
	case len(cs) == 0:
		r.Status, r.Detail = checkFail, "the server has no clusters; create one with `vigil cluster add`"
		return nil, r
	default:
		r.Status, r.Detail = checkFail, fmt.Sprintf("pass --cluster: the server has %d clusters (%s)", len(cs), strings.Join(names, ", "))
		return nil, r
	}
	switch cl.Connectivity {
	case store.Connected:
		r.Detail = fmt.Sprintf("cluster %s is connected (last heartbeat %s)", cl.Name, ago(cl.LastSeen))
	case store.Pending:
		r.Status, r.Detail = checkPending, fmt.Sprintf("cluster %s has never reported: no sensor or agent has connected with its credential yet", cl.Name)
	default:
		r.Status, r.Detail = checkFail, fmt.Sprintf("cluster %s is %s: last heartbeat %s (connected means within %s)", cl.Name, cl.Connectivity, ago(cl.LastSeen), store.HeartbeatWindow)
	}
	return cl, r
}

// checkComponents is row 2: the chart's objects as the cluster has them,
// and the components' states as the server has them.
func (v *verifier) checkComponents(ctx context.Context, cl *store.Cluster) checkRow {
	r := row("components", "components installed")
	kc, ns := v.kube.client, v.namespace
	var ok []string

	ds, err := kc.AppsV1().DaemonSets(ns).Get(ctx, sensorDaemonSet, metav1.GetOptions{})
	switch {
	case err != nil:
		r.problem(checkFail, "sensor: %s", kubeErr("DaemonSet", ns, sensorDaemonSet, err))
	case ds.Status.DesiredNumberScheduled == 0:
		r.problem(checkFail, "sensor: DaemonSet %s/%s is scheduled on no node", ns, sensorDaemonSet)
	case ds.Status.NumberReady < ds.Status.DesiredNumberScheduled:
		r.problem(checkFail, "sensor: DaemonSet %s/%s has %d of %d pods ready", ns, sensorDaemonSet, ds.Status.NumberReady, ds.Status.DesiredNumberScheduled)
	default:
		ok = append(ok, fmt.Sprintf("sensor %d/%d ready", ds.Status.NumberReady, ds.Status.DesiredNumberScheduled))
	}

	for _, d := range []struct {
		name, what string
		optional   bool
	}{{agentDeployment, "agent", false}, {serverDeployment, "server", true}} {
		dep, err := kc.AppsV1().Deployments(ns).Get(ctx, d.name, metav1.GetOptions{})
		switch {
		case d.optional && apierrors.IsNotFound(err):
		case err != nil:
			r.problem(checkFail, "%s: %s", d.what, kubeErr("Deployment", ns, d.name, err))
		case dep.Status.AvailableReplicas < 1:
			r.problem(checkFail, "%s: Deployment %s/%s has %d of %d replicas available%s", d.what, ns, d.name,
				dep.Status.AvailableReplicas, replicas(dep), conditionMessage(dep))
		default:
			ok = append(ok, fmt.Sprintf("%s %d/%d available", d.what, dep.Status.AvailableReplicas, replicas(dep)))
		}
	}
	if _, err := kc.CoreV1().Services(ns).Get(ctx, agentService, metav1.GetOptions{}); err != nil {
		r.problem(checkFail, "agent: %s (the API server reaches the webhook through it)", kubeErr("Service", ns, agentService, err))
	}

	if msg := v.webhookProblem(ctx); msg != "" {
		r.problem(checkFail, "admission: %s", msg)
	} else {
		ok = append(ok, "webhook "+admission.DefaultWebhookName+" registered")
	}

	sec, err := kc.CoreV1().Secrets(ns).Get(ctx, joinSecret, metav1.GetOptions{})
	switch {
	case err != nil:
		r.problem(checkFail, "join credential: %s", kubeErr("Secret", ns, joinSecret, err))
	case len(sec.Data[joinSecretKey]) == 0:
		r.problem(checkFail, "join credential: Secret %s/%s has no %q", ns, joinSecret, joinSecretKey)
	}

	if cl != nil {
		n := 0
		for _, c := range cl.Components {
			who := c.Component
			if c.Node != "" {
				who += " on " + c.Node
			}
			switch c.State {
			case "failed":
				r.problem(checkFail, "server: %s failed: %s", who, orUnknown(c.Reason))
			case "pending":
				r.problem(checkPending, "server: %s pending%s", who, prefixed(": ", c.Reason))
			default:
				n++
			}
		}
		ok = append(ok, fmt.Sprintf("server: %d components installed", n))
	}
	if r.Status == checkPass {
		r.Detail = strings.Join(ok, ", ")
	}
	return r
}

// webhookProblem says what is wrong with the webhook configuration, or "".
func (v *verifier) webhookProblem(ctx context.Context) string {
	vwc, err := v.kube.client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, webhookConfigName, metav1.GetOptions{})
	if err != nil {
		return kubeErr("ValidatingWebhookConfiguration", "", webhookConfigName, err)
	}
	for _, w := range vwc.Webhooks {
		if w.Name == admission.DefaultWebhookName {
			if len(w.ClientConfig.CABundle) == 0 {
				return fmt.Sprintf("ValidatingWebhookConfiguration %s: webhook %s has an empty caBundle (the agent has not registered its certificate)", webhookConfigName, w.Name)
			}
			return ""
		}
	}
	return fmt.Sprintf("ValidatingWebhookConfiguration %s has no webhook %s", webhookConfigName, admission.DefaultWebhookName)
}

// checkSensors is row 3: node by node, a running sensor pod and its
// heartbeat on the server.
func (v *verifier) checkSensors(ctx context.Context, cl *store.Cluster) checkRow {
	r := row("sensors", "sensor on every node")
	kc, ns := v.kube.client, v.namespace
	nodes, err := kc.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		r.Status, r.Detail = checkFail, fmt.Sprintf("list nodes: %v", err)
		return r
	}
	if len(nodes.Items) == 0 {
		r.Status, r.Detail = checkFail, "the cluster has no nodes"
		return r
	}
	sel := labels.SelectorFromSet(labels.Set{partOfLabel: "vigil", componentLabel: "sensor"})
	if ds, err := kc.AppsV1().DaemonSets(ns).Get(ctx, sensorDaemonSet, metav1.GetOptions{}); err == nil && ds.Spec.Selector != nil {
		if s, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector); err == nil {
			sel = s
		}
	}
	pods, err := kc.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		r.Status, r.Detail = checkFail, fmt.Sprintf("list sensor pods: %v", err)
		return r
	}
	byNode := map[string][]corev1.Pod{}
	for _, p := range pods.Items {
		byNode[p.Spec.NodeName] = append(byNode[p.Spec.NodeName], p)
	}
	heard := map[string]store.Component{}
	if cl != nil {
		for _, c := range cl.Components {
			if c.Component == "sensor" {
				heard[c.Node] = c
			}
		}
	}
	good := 0
	for _, n := range nodes.Items {
		name := n.Name
		running := false
		var notRunning []string
		for _, p := range byNode[name] {
			if podReady(&p) {
				running = true
				break
			}
			notRunning = append(notRunning, fmt.Sprintf("%s is %s", p.Name, podState(&p)))
		}
		switch {
		case running:
		case len(notRunning) > 0:
			r.problem(checkFail, "node %s: sensor pod %s", name, strings.Join(notRunning, ", "))
		default:
			r.problem(checkFail, "node %s: no sensor pod", name)
		}
		reporting := false
		if cl != nil {
			c, ok := heard[name]
			switch {
			case !ok:
				r.problem(checkFail, "node %s: the server hears no sensor heartbeat", name)
			case c.State == "failed":
				r.problem(checkFail, "node %s: the sensor reports failed: %s", name, orUnknown(c.Reason))
			case c.State == "pending":
				r.problem(checkPending, "node %s: the sensor reports pending%s", name, prefixed(": ", c.Reason))
			case time.Since(c.LastSeen) > store.HeartbeatWindow:
				r.problem(checkFail, "node %s: last sensor heartbeat %s", name, ago(c.LastSeen))
			default:
				reporting = true
			}
		}
		if running && reporting {
			good++
		}
	}
	switch {
	case cl == nil:
		r.problem(checkPending, "the server's side (sensor heartbeats) not checked: the server did not answer")
	case r.Status == checkPass:
		r.Detail = fmt.Sprintf("%d of %d nodes run a ready sensor pod that reports to the server", good, len(nodes.Items))
	}
	return r
}

// checkAuditEvents is row 4: the server's last audit batch from the
// cluster, or the control-plane test alert (which proves the same whether
// the batches go to the server, the agent or `vigil audit tail`).
func (v *verifier) checkAuditEvents(cl *store.Cluster, test *testAlert) checkRow {
	r := row("audit-events", "audit events arriving")
	if test != nil && test.found != nil {
		r.Detail = fmt.Sprintf("the control-plane test alert arrived %s after its request", test.seen.Sub(test.trigger).Round(10*time.Millisecond))
		if cl != nil && !cl.LastAudit.IsZero() {
			r.Detail += fmt.Sprintf("; last audit batch %s", ago(cl.LastAudit))
		}
		return r
	}
	if cl == nil {
		r.Status, r.Detail = checkPending, "not checked: the server did not answer"
		return r
	}
	if !cl.LastAudit.IsZero() && time.Since(cl.LastAudit) <= store.HeartbeatWindow {
		r.Detail = fmt.Sprintf("last audit batch from the API server %s", ago(cl.LastAudit))
		return r
	}
	for _, c := range cl.Components {
		if c.Component == "audit" && c.State == "installed" && time.Since(c.LastSeen) <= store.HeartbeatWindow {
			r.Detail = fmt.Sprintf("vigil audit tail on %s reports (last %s)", orUnknown(c.Node), ago(c.LastSeen))
			return r
		}
	}
	r.Status = checkFail
	r.Detail = fmt.Sprintf("the server has received no audit batch from cluster %s recently (last: %s); check the API server's audit policy and --audit-webhook-config-file (`vigil audit enable`)", cl.Name, ago(cl.LastAudit))
	return r
}

// checkAdmission is row 5: a server-side dry run of a pod that breaks
// recommendations in audit mode by default (no limits, root, writable root
// filesystem, privilege escalation allowed) but raises no alert: the webhook
// must deny it or warn.
func (v *verifier) checkAdmission(ctx context.Context, nsErr error) checkRow {
	r := row("admission", "admission webhook answering")
	if nsErr != nil {
		r.Status, r.Detail = checkFail, nsErr.Error()
		return r
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "vigil-alerttest-admission", Namespace: alertTestNamespace, Labels: testLabels()},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "unhealthy", Image: v.testImage,
			Command: []string{"sh", "-c", "true"}}}},
	}
	v.kube.warnings.take()
	_, err := v.kube.client.CoreV1().Pods(alertTestNamespace).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	var vigil []string
	for _, w := range v.kube.warnings.take() {
		if strings.HasPrefix(w, "[vigil]") {
			vigil = append(vigil, w)
		}
	}
	switch {
	case err != nil && strings.Contains(err.Error(), `admission webhook "`+admission.DefaultWebhookName+`" denied`):
		r.Detail = "a dry-run of an unhealthy pod was denied by " + admission.DefaultWebhookName
	case err != nil:
		r.Status, r.Detail = checkFail, fmt.Sprintf("dry-run create of an unhealthy pod: %v", err)
	case len(vigil) > 0:
		r.Detail = fmt.Sprintf("a dry-run of an unhealthy pod came back with %d [vigil] warning(s)", len(vigil))
	default:
		r.Status = checkFail
		r.Detail = "the API server admitted a dry-run of an unhealthy pod with neither a denial nor a [vigil] warning: " +
			"the webhook is not answering (failure policy Ignore admits silently), or every recommendation it breaks is disabled"
		if msg := v.webhookProblem(ctx); msg != "" {
			r.Detail += "; " + msg
		}
	}
	return r
}

// ensureTestNamespace creates the labelled test namespace (waiting out a
// previous run's, still terminating) and its default service account
// (which pods need, and which the controller manager may not have made
// yet).
func (v *verifier) ensureTestNamespace(ctx context.Context, deadline time.Time) error {
	nsc := v.kube.client.CoreV1().Namespaces()
	for {
		ns, err := nsc.Get(ctx, alertTestNamespace, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = nsc.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: alertTestNamespace, Labels: testLabels()}}, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				continue
			}
			if err != nil {
				return fmt.Errorf("create namespace %s: %w", alertTestNamespace, err)
			}
			break
		}
		if err != nil {
			return fmt.Errorf("namespace %s: %w", alertTestNamespace, err)
		}
		if ns.DeletionTimestamp == nil {
			break
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("namespace %s is still terminating (from an earlier run)", alertTestNamespace)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	_, err := v.kube.client.CoreV1().ServiceAccounts(alertTestNamespace).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("service account %s/default: %w", alertTestNamespace, err)
	}
	return nil
}

// cleanup deletes the test namespace (and so the test pod) if verify made
// it: a namespace of that name without Vigil's label is left alone.
func (v *verifier) cleanup(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	nsc := v.kube.client.CoreV1().Namespaces()
	ns, err := nsc.Get(ctx, alertTestNamespace, metav1.GetOptions{})
	if err != nil || ns.Labels[componentLabel] != "verify" {
		return
	}
	if err := nsc.Delete(ctx, alertTestNamespace, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		v.log.Warn("delete the test namespace", "namespace", alertTestNamespace, "err", err)
	}
}

func testLabels() map[string]string {
	return map[string]string{partOfLabel: "vigil", componentLabel: "verify"}
}

// raiseTestAlerts starts the runtime test pod and makes the control-plane
// test request, and returns what to wait for.
func (v *verifier) raiseTestAlerts(ctx context.Context, cluster string, nsErr error) (pod string, runtime, audit *testAlert) {
	pod = alertTestNamespace + "-" + randomSuffix()
	runtime = &testAlert{rule: runtimeTestRule, query: url.Values{"cluster": {cluster}, "rule": {runtimeTestRule}, "resource": {pod}, "limit": {"100"}}}
	audit = &testAlert{rule: auditTestRule, query: url.Values{"cluster": {cluster}, "rule": {auditTestRule}, "limit": {"100"}}}
	for _, a := range []*testAlert{runtime, audit} {
		a.before = map[string]verifyAlert{}
		got, err := v.server.alerts(ctx, a.query)
		if err != nil {
			a.raiseErr = fmt.Errorf("list %s alerts before raising one: %w", a.rule, err)
		}
		for _, x := range got {
			a.before[x.ID] = x
		}
	}
	switch {
	case runtime.raiseErr != nil:
	case nsErr != nil:
		runtime.raiseErr = nsErr
	default:
		runtime.trigger = time.Now()
		if _, err := v.kube.client.CoreV1().Pods(alertTestNamespace).Create(ctx, v.markerPod(pod), metav1.CreateOptions{}); err != nil {
			runtime.raiseErr = fmt.Errorf("create the test pod: %w", err)
		}
	}
	// Like `kubectl get pods -n vigil-alerttest`: the namespace need not
	// exist and a refusal is audited too, so only a transport error counts.
	if audit.raiseErr == nil {
		audit.trigger = time.Now()
		if _, err := v.kube.kubectl.CoreV1().Pods(alertTestNamespace).List(ctx, metav1.ListOptions{}); err != nil && !isAPIStatus(err) {
			audit.raiseErr = fmt.Errorf("list pods in %s: %w", alertTestNamespace, err)
		}
	}
	return pod, runtime, audit
}

func isAPIStatus(err error) bool {
	var s apierrors.APIStatus
	return errors.As(err, &s)
}

// markerPod runs the marker: busybox started under the name
// vigil-alerttest-marker through a symbolic link, so the exec the sensor
// sees is the image's own busybox (no drift) with the marker as argv[0].
// It breaks no recommendation: the test must not raise anything else.
func (v *verifier) markerPod(name string) *corev1.Pod {
	no, yes := false, true
	user := int64(65534)
	deadline, grace := int64(300), int64(0)
	limits := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("16Mi")}
	script := "ln -s /bin/busybox /tmp/" + alertTestMarker + " && /tmp/" + alertTestMarker + "; sleep 5"
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: alertTestNamespace, Labels: testLabels()},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			ActiveDeadlineSeconds:         &deadline,
			TerminationGracePeriodSeconds: &grace,
			AutomountServiceAccountToken:  &no,
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: &yes, RunAsUser: &user,
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{
				Name: "marker", Image: v.testImage, Command: []string{"sh", "-c", script},
				Resources: corev1.ResourceRequirements{Limits: limits, Requests: limits},
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: &yes,
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
				VolumeMounts: []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}},
			}},
			Volumes: []corev1.Volume{{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}
}

// pollAlert looks for a test alert on the server once.
func (v *verifier) pollAlert(ctx context.Context, a *testAlert) {
	if a.found != nil || a.raiseErr != nil {
		return
	}
	got, err := v.server.alerts(ctx, a.query)
	if err != nil {
		v.log.Warn("list alerts", "rule", a.rule, "err", err)
		return
	}
	for i, x := range got {
		if b, ok := a.before[x.ID]; !ok || x.Count > b.Count || x.LastSeen.After(b.LastSeen) {
			a.found, a.seen = &got[i], time.Now()
			return
		}
	}
}

// testAlertRows are rows 6 and 7. final is the last round: what has not
// arrived then failed, and the runtime row says what became of the pod.
func (v *verifier) testAlertRows(ctx context.Context, pod string, runtime, audit *testAlert, final bool) []checkRow {
	rr := row("test-alert-runtime", "test alert: runtime (sensor)")
	ar := row("test-alert-audit", "test alert: control plane (audit)")
	if v.skipTestAlerts {
		rr.Status, ar.Status = checkSkipped, checkSkipped
		return []checkRow{rr, ar}
	}
	if runtime == nil {
		rr.Status, ar.Status = checkPending, checkPending
		rr.Detail, ar.Detail = "not raised: the cluster is not known on the server", "not raised: the cluster is not known on the server"
		if final {
			rr.Status, ar.Status = checkFail, checkFail
		}
		return []checkRow{rr, ar}
	}
	for _, x := range []struct {
		r    *checkRow
		a    *testAlert
		from string
	}{{&rr, runtime, "the test pod " + pod + " was created"}, {&ar, audit, "the kubectl-like request"}} {
		switch {
		case x.a.raiseErr != nil:
			x.r.Status, x.r.Detail = checkFail, x.a.raiseErr.Error()
		case x.a.found != nil:
			lat := x.a.seen.Sub(x.a.trigger)
			x.r.LatencySeconds = lat.Seconds()
			x.r.Detail = fmt.Sprintf("%s (alert %s) on the server %s after %s", x.a.rule, x.a.found.ID, lat.Round(10*time.Millisecond), x.from)
			if _, again := x.a.before[x.a.found.ID]; again {
				x.r.Detail += "; counted into an earlier run's alert, whose new count the server stores every 30 s"
			}
		default:
			x.r.Status = checkPending
			x.r.Detail = fmt.Sprintf("waiting for %s", x.a.rule)
			if final {
				x.r.Status = checkFail
				x.r.Detail = fmt.Sprintf("no %s alert on the server %s after %s", x.a.rule, time.Since(x.a.trigger).Round(time.Second), x.from)
			}
		}
	}
	if final && runtime.found == nil && runtime.raiseErr == nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if p, err := v.kube.client.CoreV1().Pods(alertTestNamespace).Get(ctx, pod, metav1.GetOptions{}); err == nil {
			where := "not scheduled to a node"
			if p.Spec.NodeName != "" {
				where = "on node " + p.Spec.NodeName + " (is its sensor reporting?)"
			}
			rr.Problems = append(rr.Problems, fmt.Sprintf("pod %s is %s, %s", pod, podState(p), where))
		}
	}
	return []checkRow{rr, ar}
}

func randomSuffix() string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	b := make([]byte, 5)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func kubeErr(kind, ns, name string, err error) string {
	full := name
	if ns != "" {
		full = ns + "/" + name
	}
	if apierrors.IsNotFound(err) {
		return fmt.Sprintf("%s %s not found", kind, full)
	}
	return fmt.Sprintf("%s %s: %v", kind, full, err)
}

func replicas(d *appsv1.Deployment) int32 {
	if d.Spec.Replicas == nil {
		return 1
	}
	return *d.Spec.Replicas
}

// conditionMessage is the reason a Deployment gives for being unavailable.
func conditionMessage(d *appsv1.Deployment) string {
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable && c.Status != corev1.ConditionTrue && c.Message != "" {
			return " (" + c.Message + ")"
		}
	}
	return ""
}

func podReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podState is a pod's phase with the most telling container reason, as
// kubectl's STATUS column would show it.
func podState(p *corev1.Pod) string {
	s := string(p.Status.Phase)
	if s == "" {
		s = "Pending"
	}
	for _, cs := range p.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "":
			return s + " (" + cs.State.Waiting.Reason + ")"
		case cs.State.Terminated != nil && cs.State.Terminated.Reason != "":
			return s + " (" + cs.State.Terminated.Reason + ")"
		}
	}
	if p.Status.Phase == corev1.PodRunning {
		return s + " (not ready)"
	}
	return s
}

func orUnknown(s string) string {
	if s == "" {
		return "no reason given"
	}
	return s
}

func prefixed(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}
