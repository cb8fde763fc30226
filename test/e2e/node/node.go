package node

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/vigil-sec/vigil/internal/kubetest"
	"github.com/vigil-sec/vigil/internal/testproc"
)

// Network ranges of the node. ServiceCIDR is internal/kubetest's.
const (
	PodCIDR     = "10.244.0.0/24"
	ServiceCIDR = "10.0.0.0/24"
	// Bridge is the CNI bridge the pods hang off.
	Bridge  = "cni0"
	cniName = "vigil-e2e"
)

// Options configures Start.
type Options struct {
	// AuditPolicy and AuditWebhook are passed to internal/kubetest: where
	// kube-apiserver sends its audit events (Vigil, in later tests).
	AuditPolicy  []byte
	AuditWebhook *kubetest.AuditWebhook
	// Images are built with BuildImage and imported before the kubelet
	// starts, besides PauseImage and BusyboxImage.
	Images []Image
	// ImageFiles are image tarballs (docker or OCI archives, e.g. those
	// `make images` writes) imported as they are.
	ImageFiles []string
	// BeforeAPIServer, when set, is called once APIServerAddress exists and
	// before kube-apiserver starts, e.g. to start a receiver listening on
	// that address. A non-nil AuditWebhook it returns replaces
	// Options.AuditWebhook. Cleanups it registers run after the node's
	// teardown.
	BeforeAPIServer func(n *Node) (*kubetest.AuditWebhook, error)
}

// Node is a running single-node cluster. Its methods may be called from the
// test's goroutine only.
type Node struct {
	t       testing.TB
	Cluster *kubetest.Cluster
	// Client is a clientset for kubetest.Admin.
	Client *kubernetes.Clientset
	// Name is the Node object's name (the host name); IP its InternalIP.
	Name, IP string
	// EgressIface is the default route's interface.
	EgressIface string

	dir          string // everything of the run; removed at teardown
	logDir       string
	kubeDir      string // internal/kubetest's directory (etcd, apiserver logs)
	artifacts    string // where logs are kept when the test fails
	bins         map[string]string
	sock         string // containerd's socket
	procs        map[string]*testproc.Process
	order        []string // start order of procs
	before       *hostState
	lock         *os.File
	txBefore     uint64
	teardownOnce sync.Once
	proxyHealthz string    // kube-proxy's /healthz: 200 once it has synced rules
	started      time.Time // when the host was snapshot
}

// Start brings up the node and returns once the Node object is Ready and
// the default ServiceAccount exists; a failure names the step. Teardown is
// registered with t.Cleanup before anything is changed on the machine.
func Start(t testing.TB, opts Options) *Node {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("e2e node: must run as root (it runs containerd, a kubelet and kube-proxy)")
	}
	if err := CheckError(); err != nil {
		t.Fatalf("e2e node: step check: %v", err)
	}
	n := &Node{t: t, procs: map[string]*testproc.Process{}, bins: map[string]string{}}
	start := time.Now()
	// Until kube-apiserver runs, nothing needs it to tear down; afterwards
	// the teardown must run before kubetest's Stop (registered by
	// kubetest.Start), so pods can still be deleted: it is registered twice
	// and runs once.
	t.Cleanup(n.teardown)
	if err := n.prepare(); err != nil {
		t.Fatalf("e2e node: step prepare: %v", err)
	}

	step := func(name string, f func() error) {
		t.Helper()
		s := time.Now()
		if err := f(); err != nil {
			t.Fatalf("e2e node: step %s: %v", name, err)
		}
		t.Logf("e2e node: %-20s %6.1fs (total %.1fs)", name, time.Since(s).Seconds(), time.Since(start).Seconds())
	}

	if opts.BeforeAPIServer != nil {
		step("before-apiserver", func() error {
			w, err := opts.BeforeAPIServer(n)
			if w != nil {
				opts.AuditWebhook = w
			}
			return err
		})
	}
	var apiFlags []string
	step("kubelet-client-pki", func() error {
		ca, cert, key, err := kubeletClientPKI()
		if err != nil {
			return err
		}
		for f, b := range map[string][]byte{"kubelet-client-ca.crt": ca, "apiserver-kubelet-client.crt": cert, "apiserver-kubelet-client.key": key} {
			if err := os.WriteFile(n.path(f), b, 0o600); err != nil {
				return err
			}
		}
		apiFlags = []string{
			"--kubelet-client-certificate=" + n.path("apiserver-kubelet-client.crt"),
			"--kubelet-client-key=" + n.path("apiserver-kubelet-client.key"),
			"--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultStorageClass,ResourceQuota,NodeRestriction,MutatingAdmissionWebhook,ValidatingAdmissionPolicy,ValidatingAdmissionWebhook",
			"--service-cluster-ip-range=" + ServiceCIDR,
			// The node's host name resolves to 127.0.0.1 on these machines;
			// the kubelet listens on the InternalIP only.
			"--kubelet-preferred-address-types=InternalIP",
		}
		return nil
	})
	step("kube-apiserver", func() error {
		n.Cluster = kubetest.Start(t, kubetest.Options{
			AuditPolicy:    opts.AuditPolicy,
			AuditWebhook:   opts.AuditWebhook,
			AuditLog:       true,
			APIServerFlags: apiFlags,
			Address:        APIServerAddress,
		})
		n.Client = n.Cluster.Clientset(kubetest.Admin)
		return nil
	})
	// kubetest's Stop was registered above and runs after this, so pods
	// can still be deleted through the API server during teardown.
	t.Cleanup(n.teardown)

	step("network-guard", n.guard)
	step("containerd", n.startContainerd)
	step("images", func() error { return n.importImages(opts.Images, opts.ImageFiles) })
	step("kube-scheduler", n.startScheduler)
	step("kube-proxy", n.startKubeProxy)
	step("kubelet", n.startKubelet)
	step("controller-manager", func() error {
		n.Cluster.StartControllerManager() // waits for the default ServiceAccount
		return nil
	})
	step("node-ready", n.waitNodeReady)
	step("kube-proxy-synced", n.waitKubeProxy)
	return n
}

// prepare takes the machine-wide lock, finds the binaries and makes the
// run's directories.
func (n *Node) prepare() error {
	lock, err := os.OpenFile("/run/vigil-e2e-node.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("open lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return fmt.Errorf("another e2e node runs on this machine (lock /run/vigil-e2e-node.lock held): %w", err)
	}
	n.lock = lock
	for _, b := range []string{"containerd", "ctr", "kube-proxy", "kubelet", "kube-scheduler"} {
		p, err := n.binary(b)
		if err != nil {
			return err
		}
		n.bins[b] = p
	}
	// Leftovers of a run that was killed before its teardown.
	unguardNetwork(ServiceCIDR)
	if c := cleanStale(n.bins["kube-proxy"]); len(c) > 0 {
		n.t.Logf("e2e node: cleaned up after an earlier run that was killed: %v", c)
	}
	restoreSavedSysctls()
	if n.dir, err = os.MkdirTemp("/tmp", "vigil-e2e-"); err != nil {
		return fmt.Errorf("make run directory: %w", err)
	}
	n.logDir = n.path("logs")
	if err := os.MkdirAll(n.logDir, 0o755); err != nil {
		return err
	}
	if n.Name, err = os.Hostname(); err != nil {
		return fmt.Errorf("host name: %w", err)
	}
	n.Name = strings.ToLower(n.Name)
	if n.EgressIface, err = defaultRoute(); err != nil {
		return err
	}
	ip, err := ifaceIPv4(n.EgressIface)
	if err != nil {
		return err
	}
	n.IP = ip.String()
	if n.before, err = snapshotHost(); err != nil {
		return fmt.Errorf("snapshot the host: %w", err)
	}
	n.started = time.Now()
	if err := saveSysctls(n.before.sysctl); err != nil {
		return err
	}
	if err := addAPIInterface(); err != nil {
		return err
	}
	if errs := removeCgroups(); len(errs) > 0 {
		return fmt.Errorf("cgroups of an earlier run: %v", errs)
	}
	if err := makeCgroupRoot(); err != nil {
		return err
	}
	n.artifacts = artifactsDir(n.t.Name())
	return nil
}

// binary finds a kube-* binary in $VIGIL_KUBE_BIN or the cache that
// hack/kube/build.sh fills, and anything else on PATH.
func (n *Node) binary(name string) (string, error) {
	if !strings.HasPrefix(name, "kube") {
		return lookPath(name)
	}
	dir := os.Getenv("VIGIL_KUBE_BIN")
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			return "", err
		}
		out, err := run(filepath.Join(root, "hack/kube/build.sh"), "--print-dir")
		if err != nil {
			return "", err
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		dir = lines[len(lines)-1]
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s not found in %s (run `make kube`, or set VIGIL_KUBE_BIN): %w", name, dir, err)
	}
	return p, nil
}

// repoRoot is the nearest parent of the working directory with hack/kube/build.sh.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if exists(filepath.Join(dir, "hack/kube/build.sh")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("hack/kube/build.sh not found above the working directory; set VIGIL_KUBE_BIN")
		}
		dir = parent
	}
}

// artifactsDir is artifacts/e2e/<test>-<time> in the repository, or under
// the working directory when there is none.
func artifactsDir(test string) string {
	root, err := repoRoot()
	if err != nil {
		root, _ = os.Getwd()
	}
	name := strings.NewReplacer("/", "_", " ", "_").Replace(test) + "-" + time.Now().UTC().Format("20060102T150405Z")
	return filepath.Join(root, "artifacts", "e2e", name)
}

func (n *Node) path(elem ...string) string {
	return filepath.Join(append([]string{n.dir}, elem...)...)
}

func (n *Node) write(name, data string) error {
	p := n.path(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

func (n *Node) start(name string, args ...string) (*testproc.Process, error) {
	p, err := testproc.Start(n.logDir, name, n.bins[name], args...)
	if err != nil {
		return nil, err
	}
	n.procs[name] = p
	n.order = append(n.order, name)
	return p, nil
}

func (n *Node) guard() error {
	var err error
	if n.txBefore, err = ifaceTxPackets(n.EgressIface); err != nil {
		return err
	}
	return guardNetwork(PodCIDR, ServiceCIDR, n.EgressIface)
}

func (n *Node) ctr(args ...string) (string, error) {
	return run(n.bins["ctr"], append([]string{"--address", n.sock, "--namespace", "k8s.io"}, args...)...)
}

func cgroupDriver() string {
	if exists("/run/systemd/system") {
		return "systemd"
	}
	return "cgroupfs"
}

func (n *Node) startContainerd() error {
	n.sock = n.path("containerd", "containerd.sock")
	cni := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %q,
  "plugins": [{
    "type": "bridge",
    "bridge": %q,
    "isGateway": true,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}
  }]
}
`, cniName, Bridge, PodCIDR)
	if err := n.write("cni/net.d/10-vigil-e2e.conflist", cni); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  # These machines drop CAP_SYS_RESOURCE: runc cannot lower oom_score_adj
  # below 0, and every sandbox would fail with "can't get final child's PID
  # from pipe: EOF" (docs/E2E.md).
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # runc keeps its state where it does on any containerd node
        # (/run/containerd/runc/k8s.io/<id>/state.json): Vigil's sensor reads
        # the pod's name, namespace and image there.
        SystemdCgroup = %t
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
    max_conf_num = 1
`, n.path("containerd", "root"), n.path("containerd", "state"), n.sock, n.sock+".ttrpc",
		PauseImage, cgroupDriver() == "systemd", CNIBinDir, n.path("cni", "net.d"))
	if err := n.write("containerd/config.toml", cfg); err != nil {
		return err
	}
	p, err := n.start("containerd", "--config", n.path("containerd", "config.toml"), "--log-level", "info")
	if err != nil {
		return err
	}
	return testproc.Poll(30*time.Second, 200*time.Millisecond, p.ExitedErr, func() error {
		_, err := n.ctr("version")
		return err
	})
}

func (n *Node) importImages(extra []Image, files []string) error {
	for _, f := range files {
		if _, err := n.ctr("images", "import", f); err != nil {
			return fmt.Errorf("import %s: %w", f, err)
		}
	}
	imgs := append([]Image{
		BusyboxImageSpec(PauseImage, "/bin/sleep", "2147483647"),
		BusyboxImageSpec(BusyboxImage, "/bin/sleep", "3600"),
	}, extra...)
	for i, img := range imgs {
		file := n.path("images", strconv.Itoa(i)+".tar")
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			return err
		}
		if err := BuildImage(img, file); err != nil {
			return err
		}
		if _, err := n.ctr("images", "import", file); err != nil {
			return fmt.Errorf("import %s: %w", img.Ref, err)
		}
	}
	out, err := n.ctr("images", "ls", "-q")
	if err != nil {
		return err
	}
	for _, img := range imgs {
		if !strings.Contains(out, img.Ref) {
			return fmt.Errorf("image %s not in containerd after import; images:\n%s", img.Ref, out)
		}
	}
	return nil
}

func (n *Node) startScheduler() error {
	kc := n.Cluster.Kubeconfig("system:kube-scheduler")
	n.kubeDir = filepath.Dir(kc)
	p, err := n.start("kube-scheduler", "--kubeconfig="+kc, "--leader-elect=false",
		"--secure-port=0", "--profiling=false", "--v=1")
	if err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond)
	return p.ExitedErr()
}

func (n *Node) startKubeProxy() error {
	kc := n.Cluster.Kubeconfig("system:kube-proxy", "system:node-proxier")
	healthz, err := testproc.FreePort()
	if err != nil {
		return err
	}
	metrics, err := testproc.FreePort()
	if err != nil {
		return err
	}
	n.proxyHealthz = fmt.Sprintf("http://127.0.0.1:%d/healthz", healthz)
	cfg := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: %s
hostnameOverride: %s
bindAddress: %s
healthzBindAddress: 127.0.0.1:%d
metricsBindAddress: 127.0.0.1:%d
clientConnection:
  kubeconfig: %s
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
iptables:
  localhostNodePorts: false
nodePortAddresses: [%s/32]
`, PodCIDR, n.Name, n.IP, healthz, metrics, kc, n.IP)
	if err := n.write("kube-proxy/config.yaml", cfg); err != nil {
		return err
	}
	p, err := n.start("kube-proxy", "--config="+n.path("kube-proxy", "config.yaml"), "--v=1")
	if err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond)
	return p.ExitedErr()
}

func (n *Node) startKubelet() error {
	kc := n.Cluster.Kubeconfig("system:node:"+n.Name, "system:nodes")
	port, err := testproc.FreePort()
	if err != nil {
		return err
	}
	healthz, err := testproc.FreePort()
	if err != nil {
		return err
	}
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://%s
cgroupDriver: %s
cgroupRoot: %s
failSwapOn: false
failCgroupV1: false
address: %s
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: %s
authorization:
  mode: Webhook
podLogsDir: %s
staticPodPath: %s
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
rotateCertificates: false
serverTLSBootstrap: false
localStorageCapacityIsolation: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 10Mi
maxPods: 30
shutdownGracePeriod: 0s
registerNode: true
`, n.sock, cgroupDriver(), CgroupRoot, n.IP, port, healthz, n.path("kubelet-client-ca.crt"),
		n.path("kubelet", "pod-logs"), n.path("kubelet", "manifests"))
	if err := n.write("kubelet/config.yaml", cfg); err != nil {
		return err
	}
	for _, d := range []string{"kubelet/manifests", "kubelet/pod-logs", "kubelet/root", "kubelet/pki"} {
		if err := os.MkdirAll(n.path(d), 0o755); err != nil {
			return err
		}
	}
	p, err := n.start("kubelet",
		"--config="+n.path("kubelet", "config.yaml"),
		"--kubeconfig="+kc,
		"--root-dir="+n.path("kubelet", "root"),
		"--cert-dir="+n.path("kubelet", "pki"),
		"--hostname-override="+n.Name,
		"--node-ip="+n.IP,
		"--v=2")
	if err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	return p.ExitedErr()
}

func (n *Node) waitNodeReady() error {
	var last string
	stop := func() error {
		for _, name := range n.order {
			if err := n.procs[name].ExitedErr(); err != nil {
				return err
			}
		}
		return nil
	}
	err := testproc.Poll(90*time.Second, 250*time.Millisecond, stop, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		node, err := n.Client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				last = fmt.Sprintf("%s: %s", c.Reason, c.Message)
				if c.Status == corev1.ConditionTrue {
					return nil
				}
			}
		}
		return fmt.Errorf("node %s not Ready (%s)", n.Name, last)
	})
	if err != nil {
		return n.procs["kubelet"].WithLogTail(err, 40)
	}
	return nil
}

// waitKubeProxy waits until kube-proxy is healthy and has programmed the
// service rules at least once.
func (n *Node) waitKubeProxy() error {
	hc := &http.Client{Timeout: 2 * time.Second}
	kp := n.procs["kube-proxy"]
	err := testproc.Poll(60*time.Second, 250*time.Millisecond, kp.ExitedErr, func() error {
		resp, err := hc.Get(n.proxyHealthz)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s: %s", n.proxyHealthz, resp.Status, body)
		}
		return nil
	})
	if err != nil {
		return kp.WithLogTail(err, 30)
	}
	// /healthz answers 200 before the first sync; the service chains show
	// when the rules are in.
	err = testproc.Poll(60*time.Second, 250*time.Millisecond, kp.ExitedErr, func() error {
		out, err := run("iptables-save", "-t", "nat")
		if err != nil {
			return err
		}
		if !strings.Contains(out, ":KUBE-SERVICES") {
			return fmt.Errorf("no KUBE-SERVICES chain in the nat table yet")
		}
		return nil
	})
	if err != nil {
		return kp.WithLogTail(err, 30)
	}
	return nil
}

// EgressPackets returns how many pod-sourced packets left on the default
// route's interface since Start (counted before NAT, by the harness's own
// rule), and how many packets the interface sent in all (anything on the
// machine, for the log).
func (n *Node) EgressPackets() (pod, iface uint64, err error) {
	pod, err = chainCounter(egressChain, "RETURN", "-o "+n.EgressIface)
	if err != nil {
		return 0, 0, err
	}
	tx, err := ifaceTxPackets(n.EgressIface)
	if err != nil {
		return 0, 0, err
	}
	return pod, tx - n.txBefore, nil
}

// DroppedPackets returns how many forwarded pod packets the harness's drop
// rule stopped.
func (n *Node) DroppedPackets() (uint64, error) {
	return chainCounter(fwdChain, "DROP", "-s "+PodCIDR)
}

// LogDir is where every component writes its log.
func (n *Node) LogDir() string { return n.logDir }
