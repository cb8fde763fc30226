package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestContainerdImport is privileged: it starts a throwaway containerd
// (Debian's, with its own root, state and socket in a temp dir), imports the
// tarballs as `ctr -n k8s.io images import` would on a node, and runs both
// images with runc. It needs root, containerd, ctr, runc and busybox-static
// (hack/install-deps.sh) and fails, never skips, without them.
func TestContainerdImport(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (runs containerd); run the tests as root, as CI does")
	}
	for _, bin := range []string{"containerd", "ctr", "runc", "containerd-shim-runc-v2"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s: %v (apt-get install containerd runc)", bin, err)
		}
	}
	const busybox = "/bin/busybox"
	if _, err := os.Stat(busybox); err != nil {
		t.Fatalf("%v (apt-get install busybox-static)", err)
	}
	arch := runtime.GOARCH
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// A tiny static program stands in for vigil: it reports who it runs as.
	work := t.TempDir()
	src := filepath.Join(work, "main.go")
	if err := os.WriteFile(src, []byte(`package main

import (
	"fmt"
	"os"
)

func main() { fmt.Printf("uid=%d gid=%d args=%q\n", os.Getuid(), os.Getgid(), os.Args) }
`), 0o644); err != nil {
		t.Fatal(err)
	}
	fake := filepath.Join(work, "fake-vigil")
	build := exec.CommandContext(ctx, "go", "build", "-o", fake, src)
	build.Dir = work
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build fake vigil: %v\n%s", err, out)
	}

	cfg := fakeConfig(t, t.TempDir())
	cfg.Archs, cfg.Binaries, cfg.NodeBins, cfg.Busybox = []string{arch}, map[string]string{arch: fake}, map[string]string{arch: fake}, busybox
	if err := run(ctx, cfg); err != nil {
		t.Fatal(err)
	}

	ctr := startContainerd(ctx, t)
	for _, tar := range []string{"vigil-" + arch + ".tar", "victim-" + arch + ".tar"} {
		ctr("images", "import", "--snapshotter", "native", filepath.Join(cfg.Out, tar))
	}
	ls := ctr("images", "ls", "-q")
	for _, ref := range []string{"vigil.dev/vigil:v1.2.3", "vigil.dev/victim:v1.2.3"} {
		if !strings.Contains(ls, ref+"\n") {
			t.Errorf("ctr images ls lacks %s:\n%s", ref, ls)
		}
	}
	// The default entrypoint and user, as the agent Deployment runs it.
	if got, want := ctr("run", "--rm", "--snapshotter", "native", "vigil.dev/vigil:v1.2.3", "vigil-test"),
		`uid=65532 gid=65532 args=["/usr/bin/vigil"]`; strings.TrimSpace(got) != want {
		t.Errorf("vigil image ran as %q, want %q", got, want)
	}
	if got := ctr("run", "--rm", "--snapshotter", "native", "vigil.dev/victim:v1.2.3", "victim-test",
		"/bin/sh", "-c", "id -u; echo hi | base64"); got != "0\naGkK\n" {
		t.Errorf("victim image printed %q, want 0 and aGkK", got)
	}
}

// startContainerd runs a private containerd until the test ends and returns
// a function that runs ctr against it in the k8s.io namespace, failing the
// test when ctr fails.
func startContainerd(ctx context.Context, t *testing.T) func(args ...string) string {
	t.Helper()
	// Not t.TempDir: the socket path must stay under the 108-byte limit.
	dir, err := os.MkdirTemp("", "vigil-containerd-")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "containerd.sock")
	conf := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[metrics]
  address = ""
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc")), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	d := exec.Command("containerd", "--config", conf)
	d.Stdout, d.Stderr = logf, logf
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = d.Process.Kill()
		_ = d.Wait()
		logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logf.Name()); err == nil {
				t.Logf("containerd log:\n%s", b)
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove containerd dir: %v", err)
		}
	})
	ctr := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", sock, "-n", "k8s.io"}, args...)...)
		out, err := cmd.Output()
		if ee, ok := err.(*exec.ExitError); ok {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		return string(out), err
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := ctr("version")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not answer on %s: %v", sock, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return func(args ...string) string {
		t.Helper()
		out, err := ctr(args...)
		if err != nil {
			t.Fatalf("ctr %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
}
