package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/vigil-sec/vigil/deploy"
	"github.com/vigil-sec/vigil/internal/kubetest"
	"github.com/vigil-sec/vigil/internal/simulate"
	"github.com/vigil-sec/vigil/internal/testproc"
	"github.com/vigil-sec/vigil/test/e2e/node"
)

const (
	// clusterName is the cluster's name on the server and in alerts.
	clusterName = "e2e"
	// imageTag tags vigil.dev/vigil in the node's containerd.
	imageTag = "e2e"
	// namespace Vigil is installed in (the chart's default).
	namespace = "vigil"
	partOf    = "app.kubernetes.io/part-of=vigil"
)

// TestVigilOnNode installs Vigil into a real single-node cluster and checks
// it end to end: the sensor as a DaemonSet pod loading its eBPF programs, the
// agent answering admission through its Service, kube-apiserver auditing to
// the server, both test alerts of `vigil verify` (the runtime one seen by
// the sensor in a real container, attributed to its pod, namespace and
// image), then `vigil uninstall` leaving nothing behind.
func TestVigilOnNode(t *testing.T) {
	start := time.Now()
	step := func(name string, f func() error) {
		t.Helper()
		s := time.Now()
		if err := f(); err != nil {
			t.Fatalf("e2e vigil: step %s: %v", name, err)
		}
		t.Logf("e2e vigil: %-18s %6.1fs (total %.1fs)", name, time.Since(s).Seconds(), time.Since(start).Seconds())
	}
	// check is a step whose failure leaves the installation in place, so
	// the test goes on to uninstall it and still checks that.
	check := func(name string, f func() error) {
		t.Helper()
		s := time.Now()
		if err := f(); err != nil {
			t.Errorf("e2e vigil: step %s: %v", name, err)
		}
		t.Logf("e2e vigil: %-18s %6.1fs (total %.1fs)", name, time.Since(s).Seconds(), time.Since(start).Seconds())
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	bin := filepath.Join(work, "vigil")

	// One static binary for the host's CLI and server and for the image
	// (which has no libc), built as hack/images builds it.
	step("build", func() error {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/vigil")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/vigil: %w\n%s", err, out)
		}
		return nil
	})
	imageDir := filepath.Join(work, "images")
	step("image", func() error {
		// The victim image of `vigil simulate` too (-busybox), tagged
		// vigil.dev/victim:<imageTag> (victimImage).
		busybox, err := exec.LookPath("busybox")
		if err != nil {
			return fmt.Errorf("busybox-static is not installed (the victim image is built from it): %w", err)
		}
		cmd := exec.Command("go", "run", "./hack/images", "-out", imageDir, "-arch", "amd64",
			"-bin", "amd64="+bin, "-version", imageTag, "-busybox", busybox)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go run ./hack/images: %w\n%s", err, out)
		}
		return nil
	})

	var srv *server
	n := node.Start(t, node.Options{
		AuditPolicy: deploy.AuditPolicy,
		ImageFiles:  []string{filepath.Join(imageDir, "vigil-amd64.tar"), filepath.Join(imageDir, "victim-amd64.tar")},
		// Before kube-apiserver: it audits to the server from its first
		// request, with the cluster's credential.
		BeforeAPIServer: func(n *node.Node) (*kubetest.AuditWebhook, error) {
			var err error
			if srv, err = startServer(t, bin, filepath.Join(work, "server"), n.LogDir()); err != nil {
				return nil, err
			}
			return &kubetest.AuditWebhook{URL: srv.url + "/api/v1/audit", CAData: srv.ca, Token: srv.credential}, nil
		},
	})
	kubeconfig := n.Cluster.Kubeconfig("vigil-e2e-admin", "system:masters")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	vigil := func(logName string, args ...string) (string, error) {
		return runLogged(ctx, filepath.Join(n.LogDir(), logName), bin, srv.caFile, args...)
	}

	step("install", func() error {
		cred := filepath.Join(work, "credential")
		if err := os.WriteFile(cred, []byte(srv.credential), 0o600); err != nil {
			return err
		}
		_, err := vigil("vigil-install.log", "install", "--kubeconfig", kubeconfig,
			"--server", srv.url, "--cluster", clusterName, "--credential-file", cred,
			"--set-file", "serverCA="+srv.caFile,
			"--set", "image.tag="+imageTag, "--set", "image.pullPolicy=Never")
		return err
	})
	step("pods-ready", func() error { return waitReady(ctx, n.Client) })
	var rep verifyReport
	check("verify", func() error {
		out, err := vigil("vigil-verify.log", "verify", "--kubeconfig", kubeconfig, "--server", srv.url,
			"--token", srv.token, "--server-ca", srv.caFile, "--cluster", clusterName, "-o", "json", "--timeout", "2m",
			"--test-image", node.BusyboxImage)
		if jerr := json.Unmarshal([]byte(jsonPart(out)), &rep); jerr != nil {
			return fmt.Errorf("vigil verify: %v; output is no report (%v):\n%s", err, jerr, out)
		}
		var bad []string
		for _, c := range rep.Checks {
			t.Logf("verify: %-30s %-7s %s %s (%.1fs)", c.Check, c.Status, c.Detail, strings.Join(c.Problems, "; "), c.LatencySeconds)
			if c.Status != "pass" {
				bad = append(bad, fmt.Sprintf("%s: %s %s %s", c.Check, c.Status, c.Detail, strings.Join(c.Problems, "; ")))
			}
		}
		if len(bad) > 0 || err != nil || !rep.Passed {
			return fmt.Errorf("vigil verify: %v; rows not passing:\n  %s", err, strings.Join(bad, "\n  "))
		}
		if len(rep.Checks) < 7 {
			return fmt.Errorf("vigil verify reported %d rows, want every row of the checklist", len(rep.Checks))
		}
		return nil
	})
	check("alert-attribution", func() error { return checkAttribution(ctx, t, srv, n) })
	check("workload-attribution", func() error { return checkWorkloadAttribution(ctx, t, srv, n) })
	// Every scenario of `vigil simulate all` in victim pods of namespace
	// vigil-simulation (victim image + the vigil image as the attacker's
	// relay sidecar), control-plane through the audit webhook.
	check("simulate", func() error {
		out, err := vigil("vigil-simulate.log", "simulate", "all", "--kubeconfig", kubeconfig,
			"--server", srv.url, "--token", srv.token, "--victim-image", victimImage, "--relay-image", relayImage,
			"-o", "json", "-v")
		rs, jerr := parseSimulation(out)
		if jerr != nil {
			return fmt.Errorf("vigil simulate all: %v; output is no report (%v):\n%s", err, jerr, out)
		}
		logSimulation(t, rs)
		cerr := checkSimulation(ctx, t, srv, n, rs)
		if err != nil && cerr == nil {
			cerr = err
		}
		return cerr
	})
	check("simulation-gone", func() error { return waitNamespaceGone(ctx, n.Client, simulate.Namespace, 2*time.Minute) })
	check("network-after-sim", func() error { return checkEgress(t, n) })
	step("uninstall", func() error {
		if _, err := vigil("vigil-uninstall.log", "uninstall", "--kubeconfig", kubeconfig); err != nil {
			return err
		}
		return waitNothingLeft(ctx, n.Client)
	})
	step("network-safety", func() error { return checkEgress(t, n) })
}

// checkEgress asserts that no pod-sourced packet left the machine on the
// default route's interface since the node started.
func checkEgress(t *testing.T, n *node.Node) error {
	pod, iface, err := n.EgressPackets()
	if err != nil {
		return err
	}
	dropped, derr := n.DroppedPackets()
	t.Logf("network: %d pod-sourced packets left on %s (which sent %d in all); %d forwarded pod packets dropped (%v)", pod, n.EgressIface, iface, dropped, derr)
	if pod != 0 {
		return fmt.Errorf("%d pod-sourced packets left the machine on %s", pod, n.EgressIface)
	}
	return nil
}

// server is `vigil server` on the node's APIServerAddress, over HTTPS:
// pods reach it (the sensor and agent ship there), kube-apiserver audits to
// it.
type server struct {
	url        string
	token      string // admin
	credential string // the cluster's
	ca         []byte // PEM CA of its certificate
	caFile     string
	http       *http.Client
}

// startServer runs the server with SQLite under dir, waits for /healthz,
// and creates the cluster. It is stopped by t.Cleanup, after the node's
// teardown.
func startServer(t *testing.T, bin, dir, logDir string) (*server, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", net.JoinHostPort(node.APIServerAddress, "0"))
	if err != nil {
		return nil, fmt.Errorf("find a port on %s: %w", node.APIServerAddress, err)
	}
	addr := l.Addr().String()
	l.Close()
	s := &server{url: "https://" + addr, caFile: filepath.Join(dir, "ca.crt")}
	ca, cert, key, err := serverPKI(node.APIServerAddress)
	if err != nil {
		return nil, err
	}
	s.ca = ca
	for f, b := range map[string][]byte{s.caFile: ca, filepath.Join(dir, "tls.crt"): cert, filepath.Join(dir, "tls.key"): key} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			return nil, err
		}
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	s.http = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	proc, err := testproc.Start(logDir, "vigil-server", bin, "server", "--addr", addr, "--db", "sqlite://"+filepath.Join(dir, "vigil.db"),
		"--data", dir, "--tls-cert", filepath.Join(dir, "tls.crt"), "--tls-key", filepath.Join(dir, "tls.key"), "--log-level", "info")
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { proc.Stop(10 * time.Second) })
	err = testproc.Poll(30*time.Second, 100*time.Millisecond, proc.ExitedErr, func() error {
		resp, err := s.http.Get(s.url + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("healthz: %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		return nil, proc.WithLogTail(fmt.Errorf("vigil server on %s: %w", addr, err), 30)
	}
	tok, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		return nil, fmt.Errorf("admin token: %w", err)
	}
	s.token = strings.TrimSpace(string(tok))
	out, err := runLogged(context.Background(), filepath.Join(logDir, "vigil-cluster-add.log"), bin, s.caFile,
		"cluster", "add", clusterName, "--server", s.url, "--token", s.token, "-o", "json")
	if err != nil {
		return nil, err
	}
	var added struct {
		Credential string `json:"credential"`
	}
	if err := json.Unmarshal([]byte(out), &added); err != nil || added.Credential == "" {
		return nil, fmt.Errorf("vigil cluster add: no credential in its output (%v)", err)
	}
	s.credential = added.Credential
	return s, nil
}

// runLogged runs the vigil CLI trusting the server's CA (SSL_CERT_FILE: the
// client commands have no CA flag), appends its command line and output
// (never tokens: they are redacted) to logPath, and returns its stdout.
func runLogged(ctx context.Context, logPath, bin, caFile string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+caFile)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	s := time.Now()
	err := cmd.Run()
	shown := slices.Clone(args)
	for i := range shown {
		if i > 0 && shown[i-1] == "--token" {
			shown[i] = "<redacted>"
		}
	}
	logText := fmt.Sprintf("# vigil %s (%.1fs, %v)\n%s\n--- stderr ---\n%s\n", strings.Join(shown, " "), time.Since(s).Seconds(), err, stdout.String(), stderr.String())
	if strings.Contains(args[0], "cluster") {
		logText = fmt.Sprintf("# vigil %s (%.1fs, %v): output not kept (it holds the credential)\n--- stderr ---\n%s\n", strings.Join(shown, " "), time.Since(s).Seconds(), err, stderr.String())
	}
	if f, ferr := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); ferr == nil {
		_, _ = io.WriteString(f, logText)
		f.Close()
	}
	if err != nil {
		return stdout.String(), fmt.Errorf("vigil %s: %w\n%s%s", strings.Join(shown, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// jsonPart is out from its first '{' (the report; nothing else is printed
// on stdout, but be lenient).
func jsonPart(out string) string {
	if i := strings.Index(out, "{"); i >= 0 {
		return out[i:]
	}
	return out
}

// verifyReport is the part of `vigil verify -o json` the test reads.
type verifyReport struct {
	Passed bool `json:"passed"`
	Checks []struct {
		ID             string   `json:"id"`
		Check          string   `json:"check"`
		Status         string   `json:"status"`
		Detail         string   `json:"detail"`
		Problems       []string `json:"problems"`
		LatencySeconds float64  `json:"latency_seconds"`
	} `json:"checks"`
}

// waitReady waits until the sensor DaemonSet has a ready pod on the node
// and the agent Deployment is available; on a timeout it says what each
// pod of the namespace is waiting for.
func waitReady(ctx context.Context, cs kubernetes.Interface) error {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var why []string
		ds, err := cs.AppsV1().DaemonSets(namespace).Get(ctx, "vigil-sensor", metav1.GetOptions{})
		switch {
		case err != nil:
			why = append(why, err.Error())
		case ds.Status.DesiredNumberScheduled == 0 || ds.Status.NumberReady < ds.Status.DesiredNumberScheduled:
			why = append(why, fmt.Sprintf("DaemonSet vigil-sensor: %d of %d ready", ds.Status.NumberReady, ds.Status.DesiredNumberScheduled))
		}
		dep, err := cs.AppsV1().Deployments(namespace).Get(ctx, "vigil-agent", metav1.GetOptions{})
		switch {
		case err != nil:
			why = append(why, err.Error())
		case dep.Status.AvailableReplicas < 1:
			why = append(why, fmt.Sprintf("Deployment vigil-agent: %d available", dep.Status.AvailableReplicas))
		}
		if len(why) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after 3m: %s\n%s", strings.Join(why, "; "), podReport(ctx, cs))
		}
		time.Sleep(time.Second)
	}
}

// podReport describes every pod of Vigil's namespace and the tail of its
// containers' logs.
func podReport(ctx context.Context, cs kubernetes.Interface) string {
	pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "pod %s: %s\n", p.Name, p.Status.Phase)
		for _, c := range p.Status.Conditions {
			if c.Status != corev1.ConditionTrue {
				fmt.Fprintf(&b, "  %s=%s %s\n", c.Type, c.Reason, c.Message)
			}
		}
		for _, c := range p.Status.ContainerStatuses {
			fmt.Fprintf(&b, "  container %s ready=%t restarts=%d state=%+v last=%+v\n", c.Name, c.Ready, c.RestartCount, c.State, c.LastTerminationState)
			tail := int64(20)
			logs, _ := cs.CoreV1().Pods(namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: c.Name, TailLines: &tail}).DoRaw(ctx)
			fmt.Fprintf(&b, "  --- log ---\n%s\n", logs)
		}
	}
	evs, _ := cs.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{})
	if evs != nil {
		for _, e := range evs.Items {
			if e.Type != corev1.EventTypeNormal {
				fmt.Fprintf(&b, "event %s/%s %s: %s\n", e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message)
			}
		}
	}
	return b.String()
}

// alert is the part of an alert the attribution check reads.
type alert struct {
	Rule        string            `json:"rule"`
	Cluster     string            `json:"cluster"`
	Node        string            `json:"node"`
	Namespace   string            `json:"namespace"`
	Pod         string            `json:"pod"`
	Container   string            `json:"container"`
	ContainerID string            `json:"container_id"`
	Image       string            `json:"image"`
	Workload    string            `json:"workload"`
	Source      string            `json:"source"`
	Labels      map[string]string `json:"labels"`
	User        *struct {
		Name string `json:"name"`
	} `json:"user"`
	Process *struct {
		Exe  string   `json:"exe"`
		Args []string `json:"args"`
	} `json:"process"`
}

// alerts lists the server's alerts matching q through its API (every
// page, at most 20).
func (s *server) alerts(ctx context.Context, q url.Values) ([]alert, error) {
	q = maps.Clone(q)
	var all []alert
	for range 20 {
		req, err := http.NewRequestWithContext(ctx, "GET", s.url+"/api/v1/alerts?"+q.Encode(), nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+s.token)
		resp, err := s.http.Do(req)
		if err != nil {
			return nil, err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET /api/v1/alerts?%s: %s: %s", q.Encode(), resp.Status, body)
		}
		var page struct {
			Alerts     []alert `json:"alerts"`
			NextCursor string  `json:"next_cursor"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			return nil, fmt.Errorf("GET /api/v1/alerts: %w", err)
		}
		all = append(all, page.Alerts...)
		if page.NextCursor == "" {
			break
		}
		q.Set("cursor", page.NextCursor)
	}
	return all, nil
}

var containerID = regexp.MustCompile(`^[0-9a-f]{64}$`)

// checkAttribution reads the runtime test alert through the API: the real
// sensor must have named the node, the pod verify ran, its namespace,
// container and image, and the containerd container id.
func checkAttribution(ctx context.Context, t *testing.T, s *server, n *node.Node) error {
	alerts, err := s.alerts(ctx, url.Values{"rule": {"runtime.vigil-test-alert"}, "limit": {"10"}})
	if err != nil {
		return err
	}
	if len(alerts) == 0 {
		return fmt.Errorf("no runtime.vigil-test-alert alert on the server")
	}
	a := alerts[0]
	var bad []string
	want := func(field, got string, ok bool) {
		if !ok {
			bad = append(bad, fmt.Sprintf("%s = %q", field, got))
		}
	}
	want("node", a.Node, a.Node == n.Name)
	want("namespace", a.Namespace, a.Namespace == "vigil-alerttest")
	want("pod", a.Pod, strings.HasPrefix(a.Pod, "vigil-alerttest-"))
	want("container", a.Container, a.Container == "marker")
	want("image", a.Image, strings.Contains(a.Image, node.BusyboxImage))
	want("container_id", a.ContainerID, containerID.MatchString(a.ContainerID))
	if a.Process != nil {
		want("process.args[0]", strings.Join(a.Process.Args, " "), len(a.Process.Args) > 0 && strings.HasSuffix(a.Process.Args[0], "vigil-alerttest-marker"))
	}
	b, _ := json.Marshal(a)
	if len(bad) > 0 {
		return fmt.Errorf("runtime test alert is not attributed to verify's pod: %s\nalert: %s", strings.Join(bad, ", "), b)
	}
	t.Logf("e2e vigil: runtime test alert: %s", b)
	return nil
}

// waitNothingLeft waits until no object labelled part-of=vigil is left, in
// any namespace, of any kind the chart or the agent makes (pods included:
// uninstall returns before the kubelet has stopped them), and verify's
// namespace is gone.
func waitNothingLeft(ctx context.Context, cs kubernetes.Interface) error {
	lo := metav1.ListOptions{LabelSelector: partOf}
	lists := map[string]func() ([]metav1.ObjectMeta, error){
		"Pod": func() ([]metav1.ObjectMeta, error) {
			l, err := cs.CoreV1().Pods("").List(ctx, lo)
			return metas(l, err, func(l *corev1.PodList) []metav1.ObjectMeta {
				return each(l.Items, func(o corev1.Pod) metav1.ObjectMeta { return o.ObjectMeta })
			})
		},
		"Service": func() ([]metav1.ObjectMeta, error) {
			l, err := cs.CoreV1().Services("").List(ctx, lo)
			return metas(l, err, func(l *corev1.ServiceList) []metav1.ObjectMeta {
				return each(l.Items, func(o corev1.Service) metav1.ObjectMeta { return o.ObjectMeta })
			})
		},
		"ServiceAccount": func() ([]metav1.ObjectMeta, error) {
			l, err := cs.CoreV1().ServiceAccounts("").List(ctx, lo)
			return metas(l, err, func(l *corev1.ServiceAccountList) []metav1.ObjectMeta {
				return each(l.Items, func(o corev1.ServiceAccount) metav1.ObjectMeta { return o.ObjectMeta })
			})
		},
		"Secret": func() ([]metav1.ObjectMeta, error) {
			l, err := cs.CoreV1().Secrets("").List(ctx, lo)
			return metas(l, err, func(l *corev1.SecretList) []metav1.ObjectMeta {
				return each(l.Items, func(o corev1.Secret) metav1.ObjectMeta { return o.ObjectMeta })
			})
		},
		"ConfigMap": func() ([]metav1.ObjectMeta, error) {
			l, err := cs.CoreV1().ConfigMaps("").List(ctx, lo)
			return metas(l, err, func(l *corev1.ConfigMapList) []metav1.ObjectMeta {
				return each(l.Items, func(o corev1.ConfigMap) metav1.ObjectMeta { return o.ObjectMeta })
			})
		},
		"PersistentVolumeClaim": func() ([]metav1.ObjectMeta, error) {
			l, err := cs.CoreV1().PersistentVolumeClaims("").List(ctx, lo)
			return metas(l, err, func(l *corev1.PersistentVolumeClaimList) []metav1.ObjectMeta {
				return each(l.Items, func(o corev1.PersistentVolumeClaim) metav1.ObjectMeta { return o.ObjectMeta })
			})
		},
		"DaemonSet": func() ([]metav1.ObjectMeta, error) {
			l, err := cs.AppsV1().DaemonSets("").List(ctx, lo)
			return metas(l, err, func(l *appsv1.DaemonSetList) []metav1.ObjectMeta {
				return each(l.Items, func(o appsv1.DaemonSet) metav1.ObjectMeta { return o.ObjectMeta })
			})
		},
		"Deployment": func() ([]metav1.ObjectMeta, error) {
			l, err := cs.AppsV1().Deployments("").List(ctx, lo)
			return metas(l, err, func(l *appsv1.DeploymentList) []metav1.ObjectMeta {
				return each(l.Items, func(o appsv1.Deployment) metav1.ObjectMeta { return o.ObjectMeta })
			})
		},
		"ReplicaSet": func() ([]metav1.ObjectMeta, error) {
			l, err := cs.AppsV1().ReplicaSets("").List(ctx, lo)
			return metas(l, err, func(l *appsv1.ReplicaSetList) []metav1.ObjectMeta {
				return each(l.Items, func(o appsv1.ReplicaSet) metav1.ObjectMeta { return o.ObjectMeta })
			})
		},
		"Role": func() ([]metav1.ObjectMeta, error) {
			l, err := cs.RbacV1().Roles("").List(ctx, lo)
			return metas(l, err, func(l *rbacv1.RoleList) []metav1.ObjectMeta {
				return each(l.Items, func(o rbacv1.Role) metav1.ObjectMeta { return o.ObjectMeta })
			})
		},
		"RoleBinding": func() ([]metav1.ObjectMeta, error) {
			l, err := cs.RbacV1().RoleBindings("").List(ctx, lo)
			return metas(l, err, func(l *rbacv1.RoleBindingList) []metav1.ObjectMeta {
				return each(l.Items, func(o rbacv1.RoleBinding) metav1.ObjectMeta { return o.ObjectMeta })
			})
		},
		"ClusterRole": func() ([]metav1.ObjectMeta, error) {
			l, err := cs.RbacV1().ClusterRoles().List(ctx, lo)
			return metas(l, err, func(l *rbacv1.ClusterRoleList) []metav1.ObjectMeta {
				return each(l.Items, func(o rbacv1.ClusterRole) metav1.ObjectMeta { return o.ObjectMeta })
			})
		},
		"ClusterRoleBinding": func() ([]metav1.ObjectMeta, error) {
			l, err := cs.RbacV1().ClusterRoleBindings().List(ctx, lo)
			return metas(l, err, func(l *rbacv1.ClusterRoleBindingList) []metav1.ObjectMeta {
				return each(l.Items, func(o rbacv1.ClusterRoleBinding) metav1.ObjectMeta { return o.ObjectMeta })
			})
		},
		// By name too: a terminating agent may re-register it unlabelled.
		"ValidatingWebhookConfiguration": func() ([]metav1.ObjectMeta, error) {
			l, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
			ms, err := metas(l, err, func(l *admissionv1.ValidatingWebhookConfigurationList) []metav1.ObjectMeta {
				return each(l.Items, func(o admissionv1.ValidatingWebhookConfiguration) metav1.ObjectMeta { return o.ObjectMeta })
			})
			return slices.DeleteFunc(ms, func(m metav1.ObjectMeta) bool {
				return m.Name != "vigil" && m.Labels["app.kubernetes.io/part-of"] != "vigil"
			}), err
		},
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var left []string
		for kind, list := range lists {
			ms, err := list()
			if err != nil {
				left = append(left, kind+": "+err.Error())
			}
			for _, m := range ms {
				left = append(left, kind+" "+strings.TrimPrefix(m.Namespace+"/"+m.Name, "/"))
			}
		}
		if ns, err := cs.CoreV1().Namespaces().Get(ctx, "vigil-alerttest", metav1.GetOptions{}); err == nil {
			left = append(left, "Namespace vigil-alerttest (verify's, phase "+string(ns.Status.Phase)+")")
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			slices.Sort(left)
			return fmt.Errorf("left after uninstall (2m):\n  %s", strings.Join(left, "\n  "))
		}
		time.Sleep(time.Second)
	}
}

func metas[L any](l L, err error, f func(L) []metav1.ObjectMeta) ([]metav1.ObjectMeta, error) {
	if err != nil {
		return nil, err
	}
	return f(l), nil
}

func each[T any](items []T, meta func(T) metav1.ObjectMeta) []metav1.ObjectMeta {
	ms := make([]metav1.ObjectMeta, 0, len(items))
	for _, it := range items {
		ms = append(ms, meta(it))
	}
	return ms
}

// checkWorkloadAttribution runs the test marker in a pod a Deployment
// made: the alert must name the Deployment (the sensor watches its node's
// pods and follows the ReplicaSet to its owner) and carry the pod's labels.
func checkWorkloadAttribution(ctx context.Context, t *testing.T, s *server, n *node.Node) error {
	const ns, name = "e2e-workload", "marker"
	if _, err := n.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	defer n.Client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	if err := waitServiceAccount(ctx, n, ns); err != nil {
		return err
	}
	one, never := int32(1), corev1.PullNever
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: node.BusyboxImage, ImagePullPolicy: never,
					Command: []string{"/bin/sh", "-c", "sleep 2; ln -s /bin/busybox /tmp/vigil-alerttest-marker; /tmp/vigil-alerttest-marker; sleep 3600"}}}}}}}
	if _, err := n.Client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		return err
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		alerts, err := s.alerts(ctx, url.Values{"rule": {"runtime.vigil-test-alert"}, "namespace": {ns}, "limit": {"10"}})
		if err != nil {
			return err
		}
		if len(alerts) > 0 {
			a := alerts[0]
			b, _ := json.Marshal(a)
			if a.Workload != "Deployment/"+name || a.Labels["app"] != name || !strings.HasPrefix(a.Pod, name+"-") {
				return fmt.Errorf("alert of the Deployment's pod: want workload Deployment/%s, label app=%s and its pod: %s", name, name, b)
			}
			t.Logf("e2e vigil: Deployment pod's alert: %s", b)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no runtime.vigil-test-alert from the Deployment's pod within 90 s")
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitServiceAccount waits for the controller-manager to make namespace
// ns's default service account, which pods need.
func waitServiceAccount(ctx context.Context, n *node.Node, ns string) error {
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := n.Client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("namespace %s has no default service account after 30 s", ns)
		}
	}
}
