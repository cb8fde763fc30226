package container

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/vigil-sec/vigil/internal/event"
)

// logBuffer collects a logger's lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// count returns how many lines at level contain s.
func (b *logBuffer) count(level, s string) int {
	n := 0
	for l := range strings.Lines(b.String()) {
		if strings.Contains(l, "level="+level) && strings.Contains(l, s) {
			n++
		}
	}
	return n
}

func newLogBuffer() (*logBuffer, *slog.Logger) {
	b := &logBuffer{}
	return b, slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestCRIAbsent checks that without a CRI socket the enricher stays out
// of the way: no call, no error, nothing above debug in the log, and the
// Resolver does not retry on its account.
func TestCRIAbsent(t *testing.T) {
	logs, log := newLogBuffer()
	cri := NewCRI(CRIOptions{Sockets: []string{filepath.Join(t.TempDir(), "none.sock")}, Log: log})
	defer cri.Close()
	for range 100 {
		c := &event.Container{ID: randomHex(t, 32)}
		if ok, err := cri.Enrich(c); ok || err != nil {
			t.Fatalf("Enrich = %v, %v; want false, nil", ok, err)
		}
	}
	if n := cri.calls.Load(); n != 0 {
		t.Errorf("%d calls without a socket", n)
	}
	if s, _ := cri.Endpoint(); s != "" {
		t.Errorf("endpoint %q without a socket", s)
	}
	if strings.Contains(logs.String(), "level=WARN") || strings.Contains(logs.String(), "level=ERROR") ||
		logs.count("DEBUG", "no CRI socket") != 1 {
		t.Errorf("log:\n%s\nwant one debug line", logs)
	}

	r, err := NewResolver(Options{Mounts: &Mounts{}, Enrichers: []Enricher{cri}})
	if err != nil {
		t.Fatal(err)
	}
	tr := r.track(&Ref{ID: randomHex(t, 32)})
	if tr.retry.Load() == 0 {
		// Nothing knew the container: retried as ever.
		t.Error("an unknown container is not retried")
	}
	if NewCRI(CRIOptions{Sockets: []string{}}).find() != "" {
		t.Error("an empty socket list found a socket")
	}
}

// fakeRuntime is a CRI runtime service that knows a fixed set of
// containers and sandboxes.
type fakeRuntime struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	containers map[string]*runtimeapi.ContainerStatus
	sandboxes  map[string]*runtimeapi.PodSandboxStatus
}

func (f *fakeRuntime) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{RuntimeName: "cri-o", RuntimeVersion: "1.36.0", RuntimeApiVersion: "v1"}, nil
}

func (f *fakeRuntime) ContainerStatus(_ context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	if s, ok := f.containers[req.ContainerId]; ok {
		return &runtimeapi.ContainerStatusResponse{Status: s}, nil
	}
	return nil, status.Errorf(codes.NotFound, "container %q not found", req.ContainerId)
}

func (f *fakeRuntime) PodSandboxStatus(_ context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	if s, ok := f.sandboxes[req.PodSandboxId]; ok {
		return &runtimeapi.PodSandboxStatusResponse{Status: s}, nil
	}
	return nil, status.Errorf(codes.NotFound, "pod sandbox %q not found", req.PodSandboxId)
}

// serveFake serves f on a unix socket at path until the returned stop.
func serveFake(t *testing.T, f *fakeRuntime, path string) (stop func()) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(srv, f)
	go srv.Serve(l)
	var once sync.Once
	stop = func() { once.Do(srv.Stop) }
	t.Cleanup(stop)
	return stop
}

// TestCRIFake checks the enricher against a fake runtime: what it asks
// (only what on-disk state left out), what it fills, what it caches, and
// how it backs off while the socket is down.
func TestCRIFake(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "crio.sock")
	ctrID, sandboxID, uid := randomHex(t, 32), randomHex(t, 32), randomUID(t)
	started := time.Now().Add(-time.Minute).Truncate(time.Second).UTC()
	f := &fakeRuntime{
		containers: map[string]*runtimeapi.ContainerStatus{ctrID: {
			Id:        ctrID,
			Metadata:  &runtimeapi.ContainerMetadata{Name: "app"},
			Image:     &runtimeapi.ImageSpec{Image: "sha256:" + strings.Repeat("ab", 32), UserSpecifiedImage: "nginx:1.27"},
			ImageRef:  "docker.io/library/nginx@sha256:" + strings.Repeat("cd", 32),
			StartedAt: started.UnixNano(),
			Labels: map[string]string{labelContainerName: "app", labelPodName: "web-0",
				labelPodNamespace: "shop", labelPodUID: uid},
		}},
		sandboxes: map[string]*runtimeapi.PodSandboxStatus{sandboxID: {
			Id:        sandboxID,
			Metadata:  &runtimeapi.PodSandboxMetadata{Name: "web-0", Namespace: "shop", Uid: uid},
			CreatedAt: started.UnixNano(),
		}},
	}
	stop := serveFake(t, f, sock)
	logs, log := newLogBuffer()
	cri := NewCRI(CRIOptions{Sockets: []string{filepath.Join(dir, "absent.sock"), sock}, Wait: 5 * time.Second,
		MinBackoff: 300 * time.Millisecond, Log: log})
	defer cri.Close()

	// Complete from disk: not asked about.
	full := &event.Container{ID: ctrID, Name: "x", Image: "y", PodUID: uid, Pod: "p", Namespace: "n"}
	if ok, err := cri.Enrich(full); ok || err != nil || cri.calls.Load() != 0 {
		t.Fatalf("complete container: Enrich = %v, %v after %d calls; want false, nil, none", ok, err, cri.calls.Load())
	}
	podman := &event.Container{ID: ctrID, Runtime: "podman"}
	if ok, err := cri.Enrich(podman); ok || err != nil || cri.calls.Load() != 0 {
		t.Fatalf("podman container: Enrich = %v, %v; want no call", ok, err)
	}

	c := &event.Container{ID: ctrID, PodUID: uid}
	if ok, err := cri.Enrich(c); !ok || err != nil {
		t.Fatalf("Enrich = %v, %v; want true, nil", ok, err)
	}
	want := event.Container{ID: ctrID, Runtime: "cri-o", Name: "app", Image: "nginx:1.27",
		ImageID: f.containers[ctrID].ImageRef, Pod: "web-0", PodUID: uid, Namespace: "shop", StartTime: started}
	got := *c
	got.Labels = nil
	if fmt.Sprint(got) != fmt.Sprint(want) || c.Labels[labelPodName] != "web-0" {
		t.Errorf("enriched\n %+v\nwant\n %+v", *c, want)
	}
	if s, rt := cri.Endpoint(); s != sock || rt != "cri-o" {
		t.Errorf("endpoint %q %q, want %q cri-o", s, rt, sock)
	}
	calls := cri.calls.Load() // Version and ContainerStatus
	c2 := &event.Container{ID: ctrID, Name: "from-disk"}
	if ok, _ := cri.Enrich(c2); !ok || c2.Name != "from-disk" || c2.Pod != "web-0" || cri.calls.Load() != calls {
		t.Errorf("cached: %+v after %d more calls; want the name from disk kept, the pod filled, no call", c2, cri.calls.Load()-calls)
	}

	sb := &event.Container{ID: sandboxID}
	if ok, err := cri.Enrich(sb); !ok || err != nil || sb.Pod != "web-0" || sb.Namespace != "shop" || sb.PodUID != uid || sb.Runtime != "cri-o" {
		t.Errorf("sandbox: Enrich = %v, %v: %+v", ok, err, sb)
	}
	unknown := randomHex(t, 32)
	if ok, err := cri.Enrich(&event.Container{ID: unknown}); ok || err != nil {
		t.Errorf("unknown container: Enrich = %v, %v; want false, nil", ok, err)
	}
	calls = cri.calls.Load()
	if ok, _ := cri.Enrich(&event.Container{ID: unknown}); ok || cri.calls.Load() != calls {
		t.Error("an unknown container is asked about again")
	}

	// The runtime goes away (its socket stays, as after a crash).
	stop()
	other := randomHex(t, 32)
	if ok, err := cri.Enrich(&event.Container{ID: other}); ok || err != ErrPending {
		t.Fatalf("socket down: Enrich = %v, %v; want false, ErrPending", ok, err)
	}
	calls = cri.calls.Load()
	for range 100 {
		if _, err := cri.Enrich(&event.Container{ID: randomHex(t, 32)}); err != ErrPending {
			t.Fatalf("backing off: Enrich err = %v, want ErrPending", err)
		}
	}
	if n := cri.calls.Load() - calls; n != 0 {
		t.Errorf("%d calls while backing off", n)
	}
	if ok, _ := cri.Enrich(&event.Container{ID: ctrID}); !ok {
		t.Error("a cached answer is lost while the socket is down")
	}
	if n := logs.count("WARN", "CRI socket unreachable"); n != 1 {
		t.Errorf("%d warnings for the socket going down, want 1:\n%s", n, logs)
	}

	// It comes back.
	os.Remove(sock)
	serveFake(t, f, sock)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := cri.Enrich(&event.Container{ID: other}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the socket is not used again after it came back:\n%s", logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if logs.count("INFO", "CRI socket is back") != 1 {
		t.Errorf("no line says the socket is back:\n%s", logs)
	}
	cri.Close()
	if ok, err := cri.Enrich(&event.Container{ID: randomHex(t, 32)}); ok || err != nil {
		t.Errorf("closed: Enrich = %v, %v", ok, err)
	}
}

// TestResolverPending checks that an enricher's ErrPending has the
// Resolver ask again even though another enricher knew the container.
func TestResolverPending(t *testing.T) {
	p := &pendingEnricher{}
	r, err := NewResolver(Options{Mounts: &Mounts{}, Enrichers: []Enricher{knowsEnricher{}, p}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	r.now = func() time.Time { return now }
	tr := r.track(&Ref{ID: randomHex(t, 32)})
	if tr.retry.Load() == 0 {
		t.Fatal("no retry while a lookup is pending")
	}
	p.done = true
	now = now.Add(time.Second)
	if c := r.current(tr); c.Pod != "web-0" || c.Name != "disk" {
		t.Errorf("after the lookup: %+v", c)
	}
	if tr.retry.Load() != 0 {
		t.Error("still retrying after the lookup answered")
	}
}

type knowsEnricher struct{}

func (knowsEnricher) Enrich(c *event.Container) (bool, error) { c.Name = "disk"; return true, nil }

type pendingEnricher struct{ done bool }

func (p *pendingEnricher) Enrich(c *event.Container) (bool, error) {
	if !p.done {
		return false, ErrPending
	}
	c.Pod = "web-0"
	return true, nil
}

// testContainerd is a containerd with its CRI plugin, run from a
// directory of its own under /tmp (root, state, sockets, runc's state),
// apart from the host's /run/containerd and from the e2e's.
type testContainerd struct {
	t      *testing.T
	dir    string
	sock   string
	cgroup string // cgroup parent of the test's pods, e.g. /vigil-cri-test-123
	cmd    *exec.Cmd
	exited chan struct{}
	conn   *grpc.ClientConn
	rt     runtimeapi.RuntimeServiceClient
}

const criTestImage = "vigil.local/cri-test/busybox:1"

func startTestContainerd(t *testing.T) *testContainerd {
	t.Helper()
	requireRoot(t)
	for _, b := range []string{"containerd", "ctr", "containerd-shim-runc-v2", "runc", "busybox"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s is not installed (hack/install-deps.sh: apt-get install containerd runc busybox-static)", b)
		}
	}
	dir, err := os.MkdirTemp("/tmp", "vigil-cri-test-")
	if err != nil {
		t.Fatal(err)
	}
	d := &testContainerd{t: t, dir: dir, sock: filepath.Join(dir, "containerd.sock"), cgroup: "/" + filepath.Base(dir)}
	t.Cleanup(d.cleanup)
	for _, sub := range []string{"cni/bin", "cni/net.d", "logs", "opt"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[debug]
  address = %[5]q

[plugins."io.containerd.internal.v1.opt"]
  path = %[6]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[7]q
  # Machines that drop CAP_SYS_RESOURCE cannot lower oom_score_adj.
  restrict_oom_score_adj = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # runc's state here, not in /run/containerd/runc/k8s.io: the
        # sensor's on-disk enrichers do not find it, only the CRI does.
        Root = %[8]q
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[9]q
    conf_dir = %[10]q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), d.sock, d.sock+".ttrpc", filepath.Join(dir, "debug.sock"),
		filepath.Join(dir, "opt"), criTestImage, filepath.Join(dir, "runc"), filepath.Join(dir, "cni/bin"), filepath.Join(dir, "cni/net.d"))
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	d.start()
	conn, err := grpc.NewClient("unix://"+d.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	d.conn, d.rt = conn, runtimeapi.NewRuntimeServiceClient(conn)
	d.waitReady()

	img := filepath.Join(dir, "image.tar")
	buildBusyboxImage(t, criTestImage, img)
	if out, err := exec.Command("ctr", "--address", d.sock, "--namespace", "k8s.io", "images", "import", img).CombinedOutput(); err != nil {
		t.Fatalf("ctr images import: %v: %s", err, out)
	}
	return d
}

// start runs containerd in a process group of its own.
func (d *testContainerd) start() {
	d.t.Helper()
	logf, err := os.OpenFile(filepath.Join(d.dir, "containerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		d.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("containerd", "--config", filepath.Join(d.dir, "config.toml"), "--log-level", "info")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.cmd, d.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) { cmd.Wait(); close(exited) }(d.exited)
}

// waitReady waits until the CRI answers.
func (d *testContainerd) waitReady() {
	d.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := d.rt.Version(ctx, &runtimeapi.VersionRequest{})
		cancel()
		if err == nil {
			return
		}
		select {
		case <-d.exited:
			d.t.Fatalf("containerd exited:\n%s", d.logTail())
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("containerd's CRI does not answer: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kill stops containerd at once (SIGKILL), leaving its socket and the
// containers' shims behind, as a crash would.
func (d *testContainerd) kill() {
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Kill()
	<-d.exited
	d.cmd = nil
}

func (d *testContainerd) logTail() string {
	data, _ := os.ReadFile(filepath.Join(d.dir, "containerd.log"))
	if len(data) > 8000 {
		data = data[len(data)-8000:]
	}
	return string(data)
}

// cleanup removes everything the test made, whatever point it reached:
// pods (through the CRI while containerd runs), containerd, shims and
// leftover containers, mounts, cgroups and the directory.
func (d *testContainerd) cleanup() {
	t := d.t
	if t.Failed() && d.dir != "" {
		t.Logf("containerd log (tail):\n%s", d.logTail())
	}
	if d.cmd != nil && d.rt != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if pods, err := d.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err == nil {
			for _, p := range pods.Items {
				_, _ = d.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id})
				if _, err := d.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
					t.Logf("remove pod sandbox %s: %v", p.Id, err)
				}
			}
		}
		cancel()
	}
	if d.conn != nil {
		d.conn.Close()
	}
	if d.cmd != nil {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
			<-d.exited
		}
		d.cmd = nil
	}
	// Shims whose containers were not removed, and their shim sockets
	// (under /run/containerd/s, named in each task's address file).
	addrs, _ := filepath.Glob(filepath.Join(d.dir, "state", "io.containerd.runtime.v2.task", "*", "*", "address"))
	for _, pid := range pidsWithArg(d.sock) {
		t.Logf("containerd shim %d still running: killed", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, a := range addrs {
		if data, err := os.ReadFile(a); err == nil {
			_ = os.Remove(strings.TrimPrefix(strings.TrimSpace(string(data)), "unix://"))
		}
	}
	// Processes left in the test's cgroups, then the cgroups.
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	for _, root := range roots {
		var dirs []string
		_ = filepath.WalkDir(filepath.Join(root, d.cgroup), func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for _, dir := range slices.Backward(dirs) {
			if data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
				for _, f := range strings.Fields(string(data)) {
					if pid, err := strconv.Atoi(f); err == nil {
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			}
			for range 50 {
				if err := os.Remove(dir); err == nil || os.IsNotExist(err) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	// runc state of containers containerd did not delete.
	if out, err := exec.Command("runc", "--root", filepath.Join(d.dir, "runc"), "list", "-q").Output(); err == nil {
		for _, id := range strings.Fields(string(out)) {
			_ = exec.Command("runc", "--root", filepath.Join(d.dir, "runc"), "delete", "--force", id).Run()
		}
	}
	for _, m := range mountsUnder(d.dir) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			t.Logf("unmount %s: %v", m, err)
		}
	}
	if err := os.RemoveAll(d.dir); err != nil {
		t.Errorf("remove %s: %v", d.dir, err)
	}
	if left := mountsUnder(d.dir); len(left) > 0 {
		t.Errorf("mounts left under %s: %v", d.dir, left)
	}
}

// pidsWithArg lists the processes one of whose arguments is arg.
func pidsWithArg(arg string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && slices.Contains(strings.Split(string(data), "\x00"), arg) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// mountsUnder lists the mount points at or under dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var ms []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := strings.ReplaceAll(fields[4], `\040`, " ")
		if p == dir || strings.HasPrefix(p, dir+"/") {
			ms = append(ms, p)
		}
	}
	slices.SortFunc(ms, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return ms
}

// buildBusyboxImage writes a one-layer image of Debian's static busybox,
// sleeping by default, as a docker-format tarball for ctr images import.
func buildBusyboxImage(t *testing.T, ref, path string) {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	for _, d := range []string{"bin/", "dev/", "etc/", "proc/", "sys/", "tmp/", "var/"} {
		must(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: epoch}))
	}
	must(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bb)), ModTime: epoch}))
	_, err = tw.Write(bb)
	must(t, err)
	for _, a := range []string{"sh", "sleep"} {
		must(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777, ModTime: epoch}))
	}
	must(t, tw.Close())
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	must(t, err)
	img, err := mutate.AppendLayers(empty.Image, layer)
	must(t, err)
	cf, err := img.ConfigFile()
	must(t, err)
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = v1.Time{Time: epoch.UTC()}
	cf.Config = v1.Config{Entrypoint: []string{"/bin/sleep", "2147483647"}, Env: []string{"PATH=/bin"}}
	img, err = mutate.ConfigFile(img, cf)
	must(t, err)
	tag, err := name.ParseReference(ref)
	must(t, err)
	must(t, tarball.WriteToFile(path, tag, img))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// runPod runs a pod (host network, so no CNI is needed) with one
// container sleeping, as the kubelet would with its labels, and returns
// the sandbox's and the container's ids.
func (d *testContainerd) runPod(pod, namespace, uid, container string) (sandboxID, containerID string) {
	t := d.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	labels := map[string]string{labelPodName: pod, labelPodNamespace: namespace, labelPodUID: uid}
	hostNet := &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}
	sbCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: pod, Namespace: namespace, Uid: uid},
		LogDirectory: filepath.Join(d.dir, "logs", uid),
		Labels:       labels,
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent:    d.cgroup + "/pod" + uid,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: hostNet},
		},
	}
	sb, err := d.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sbCfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	ctrLabels := map[string]string{labelContainerName: container}
	for k, v := range labels {
		ctrLabels[k] = v
	}
	cc, err := d.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: sb.PodSandboxId,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: container},
			Image:    &runtimeapi.ImageSpec{Image: criTestImage},
			Command:  []string{"/bin/sleep", "3600"},
			LogPath:  container + ".log",
			Labels:   ctrLabels,
			Linux: &runtimeapi.LinuxContainerConfig{
				SecurityContext: &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: hostNet},
			},
		},
		SandboxConfig: sbCfg,
	})
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	if _, err := d.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: cc.ContainerId}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	return sb.PodSandboxId, cc.ContainerId
}

// cgroupPid returns a process of the cgroup at path (relative to the
// hierarchies' roots), waiting for it to have one.
func cgroupPid(t *testing.T, m Mounts, path string) uint32 {
	t.Helper()
	root := m.Unified.Path
	if m.Memory.Path != "" {
		root = m.Memory.Path
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, _ := os.ReadFile(filepath.Join(root, path, "cgroup.procs"))
		if f := strings.Fields(string(data)); len(f) > 0 {
			pid, err := strconv.ParseUint(f[0], 10, 32)
			must(t, err)
			return uint32(pid)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no process in cgroup %s", filepath.Join(root, path))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cgroupKey is what the sensor's eBPF programs would record for pid: the
// ids of its unified and memory cgroups.
func cgroupKey(t *testing.T, m Mounts, pid uint32) key {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/cgroup")
	must(t, err)
	var k key
	for _, l := range parseProcCgroup(data) {
		switch {
		case l.unified && m.Unified.Path != "" && l.path != "/":
			k.v2 = inode(t, filepath.Join(m.Unified.Path, l.path))
		case hasController(l.controllers, "memory") && m.Memory.Path != "":
			k.v1 = inode(t, filepath.Join(m.Memory.Path, l.path))
		}
	}
	return k
}

// resolveUntil resolves (k, pid) as events of the container keep coming
// until ok accepts the answer, or fails after a few seconds.
func resolveUntil(t *testing.T, r *Resolver, k key, pid uint32, ok func(*event.Container) bool) *event.Container {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := r.Resolve(k.v2, k.v1, pid)
		if c != nil && ok(c) {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("resolved %+v", c)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCRIContainerd runs a pod in a real containerd through its CRI and
// resolves its container, and its sandbox, through a Resolver whose CRI
// enricher talks to that containerd: runc's state is where the on-disk
// enrichers do not look, so the pod, namespace, container name and image
// can only come from the CRI. Then containerd dies: the Resolver still
// attributes the container from its cgroup, the enricher backs off with
// one warning, and fills the container in once containerd is back.
func TestCRIContainerd(t *testing.T) {
	d := startTestContainerd(t)
	m := machineMounts(t)
	uid := randomUID(t)
	sandboxID, ctrID := d.runPod("web-0", "shop", uid, "app")
	pid := cgroupPid(t, m, d.cgroup+"/pod"+uid+"/"+ctrID)
	pausePid := cgroupPid(t, m, d.cgroup+"/pod"+uid+"/"+sandboxID)

	logs, log := newLogBuffer()
	cri := NewCRI(CRIOptions{Sockets: []string{filepath.Join(d.dir, "absent.sock"), d.sock}, Log: log})
	defer cri.Close()
	complete := func(c *event.Container) bool { return c.Name != "" }
	for _, tc := range []struct {
		name string
		k    key
	}{{"ids", cgroupKey(t, m, pid)}, {"pid only", key{}}} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewResolver(Options{Mounts: &m, Enrichers: append(DefaultEnrichers("/"), cri)})
			must(t, err)
			c := resolveUntil(t, r, tc.k, pid, complete)
			if c.ID != ctrID || c.PodUID != uid || c.Pod != "web-0" || c.Namespace != "shop" || c.Name != "app" ||
				c.Image != criTestImage || !strings.HasPrefix(c.ImageID, "sha256:") && !strings.Contains(c.ImageID, "@sha256:") ||
				c.Runtime != "containerd" || time.Since(c.StartTime) > time.Minute || c.Labels[labelPodName] != "web-0" {
				t.Errorf("resolved %+v\nwant container %s app of pod shop/web-0 (%s), image %s, runtime containerd", c, ctrID, uid, criTestImage)
			}
		})
	}
	if s, rt := cri.Endpoint(); s != d.sock || rt != "containerd" {
		t.Errorf("endpoint %q %q, want %s containerd", s, rt, d.sock)
	}
	t.Run("sandbox", func(t *testing.T) {
		r, err := NewResolver(Options{Mounts: &m, Enrichers: append(DefaultEnrichers("/"), cri)})
		must(t, err)
		c := resolveUntil(t, r, cgroupKey(t, m, pausePid), pausePid, func(c *event.Container) bool { return c.Pod != "" })
		if c.ID != sandboxID || c.Pod != "web-0" || c.Namespace != "shop" || c.PodUID != uid || c.Runtime != "containerd" {
			t.Errorf("sandbox resolved %+v", c)
		}
	})

	t.Run("down", func(t *testing.T) {
		logs2, log2 := newLogBuffer()
		cri2 := NewCRI(CRIOptions{Sockets: []string{d.sock}, MinBackoff: 500 * time.Millisecond, Log: log2})
		defer cri2.Close()
		// Connected first: the socket goes down mid-run.
		deadline := time.Now().Add(5 * time.Second)
		for s, _ := cri2.Endpoint(); s == ""; s, _ = cri2.Endpoint() {
			_, _ = cri2.Enrich(&event.Container{ID: randomHex(t, 32)})
			if time.Now().After(deadline) {
				t.Fatalf("not connected:\n%s", logs2)
			}
			time.Sleep(10 * time.Millisecond)
		}
		d.kill()
		r, err := NewResolver(Options{Mounts: &m, Enrichers: append(DefaultEnrichers("/"), cri2)})
		must(t, err)
		k := cgroupKey(t, m, pid)
		start := time.Now()
		c := r.Resolve(k.v2, k.v1, pid)
		if el := time.Since(start); el > 100*time.Millisecond {
			t.Errorf("Resolve took %v with the socket down", el)
		}
		if c == nil || c.ID != ctrID || c.PodUID != uid || c.Name != "" {
			t.Fatalf("with containerd down: resolved %+v; want the container and its pod uid from the cgroup only", c)
		}
		// Events keep coming: the enricher waits out its backoff.
		resolveUntil(t, r, k, pid, func(*event.Container) bool { return logs2.count("WARN", "CRI socket unreachable") > 0 })
		calls := cri2.calls.Load()
		for range 200 {
			r.Resolve(k.v2, k.v1, pid)
			_, _ = cri2.Enrich(&event.Container{ID: randomHex(t, 32)})
		}
		if n := cri2.calls.Load() - calls; n > 1 {
			t.Errorf("%d calls to a dead socket within the backoff", n)
		}
		d.start()
		d.waitReady()
		c = resolveUntil(t, r, k, pid, complete)
		if c.Pod != "web-0" || c.Name != "app" || c.Image != criTestImage {
			t.Errorf("after containerd came back: resolved %+v", c)
		}
		if n := logs2.count("WARN", "CRI socket unreachable"); n != 1 {
			t.Errorf("%d warnings, want 1:\n%s", n, logs2)
		}
		if logs2.count("INFO", "CRI socket is back") != 1 {
			t.Errorf("no line says the socket is back:\n%s", logs2)
		}
		if strings.Contains(logs2.String(), "level=ERROR") {
			t.Errorf("errors logged:\n%s", logs2)
		}
	})
	if strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("warnings while containerd ran:\n%s", logs)
	}
}
