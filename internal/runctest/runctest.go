package runctest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Options shape a container.
type Options struct {
	// ID is the container's id; empty means 64 random hex digits.
	ID string
	// CgroupsPath is runc's linux.cgroupsPath; empty means
	// /kubepods/besteffort/pod<uid>/<id>, the cgroupfs layout of a kubelet.
	CgroupsPath string
	// Overlay puts the root filesystem on overlayfs: the busybox tree is the
	// lower (image) layer and writes go to an upper layer, as with containerd.
	Overlay bool
	// Args is the container's init; default sleeps for ten minutes.
	Args []string
	// Links adds symlinks to the image (path in the container -> target),
	// e.g. a web server's name for busybox.
	Links map[string]string
	// Annotations go into the bundle's config.json, as a CRI runtime
	// writes the pod's name, namespace and image there
	// (io.kubernetes.cri.sandbox-namespace, ...).
	Annotations map[string]string
}

// Container is a running runc container.
type Container struct {
	ID     string
	PodUID string
	// Rootfs is the container's root as the host sees it (the overlay's
	// merged directory when Overlay is set).
	Rootfs string
	// Upper is the overlay's writable layer, "" without Overlay.
	Upper  string
	bundle string
}

// Busybox applets linked in the image.
var applets = []string{"sh", "cat", "cp", "chmod", "echo", "sleep", "ls", "id", "wget", "nc", "true", "env", "mkdir", "rm", "unshare", "nsenter"}

// Start creates and starts a container and registers its removal with
// t.Cleanup.
func Start(t testing.TB, opts Options) *Container {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("runctest: starting a container needs root")
	}
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Fatal("runctest: runc is not installed (apt-get install runc)")
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal("runctest: busybox is not installed (apt-get install busybox-static)")
	}
	c := &Container{ID: opts.ID, PodUID: podUID()}
	if c.ID == "" {
		c.ID = randomHex(32)
	}
	c.bundle = t.TempDir()
	image := filepath.Join(c.bundle, "image")
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp", "etc", "root"} {
		must(t, os.MkdirAll(filepath.Join(image, d), 0o755))
	}
	copyFile(t, busybox, filepath.Join(image, "bin", "busybox"), 0o755)
	for _, a := range applets {
		must(t, os.Symlink("busybox", filepath.Join(image, "bin", a)))
	}
	for path, target := range opts.Links {
		must(t, os.MkdirAll(filepath.Join(image, filepath.Dir(path)), 0o755))
		must(t, os.Symlink(target, filepath.Join(image, path)))
	}
	must(t, os.WriteFile(filepath.Join(image, "etc", "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(image, "etc", "shadow"), []byte("root:*:19000:0:99999:7:::\n"), 0o600))

	c.Rootfs = image
	if opts.Overlay {
		c.Upper = filepath.Join(c.bundle, "upper")
		work := filepath.Join(c.bundle, "work")
		c.Rootfs = filepath.Join(c.bundle, "merged")
		for _, d := range []string{c.Upper, work, c.Rootfs} {
			must(t, os.MkdirAll(d, 0o755))
		}
		out, err := exec.Command("mount", "-t", "overlay", "overlay", "-o",
			fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", image, c.Upper, work), c.Rootfs).CombinedOutput()
		if err != nil {
			t.Fatalf("runctest: mount overlay: %v: %s", err, out)
		}
		t.Cleanup(func() { exec.Command("umount", "-l", c.Rootfs).Run() })
	}

	if opts.CgroupsPath == "" {
		opts.CgroupsPath = "/kubepods/besteffort/pod" + c.PodUID + "/" + c.ID
	}
	if len(opts.Args) == 0 {
		opts.Args = []string{"/bin/sleep", "600"}
	}
	writeSpec(t, runc, c.bundle, c.Rootfs, opts)

	// The detached init inherits runc's stdio: a file, not a pipe, or
	// reading runc's output would wait for the container to exit.
	log, err := os.Create(filepath.Join(c.bundle, "init.log"))
	must(t, err)
	defer log.Close()
	cmd := exec.Command(runc, "run", "--detach", "--bundle", c.bundle, c.ID)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(log.Name())
		t.Fatalf("runctest: runc run: %v: %s", err, out)
	}
	t.Cleanup(func() {
		exec.Command(runc, "kill", c.ID, "KILL").Run()
		for range 50 {
			if exec.Command(runc, "delete", "--force", c.ID).Run() == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		// runc leaves the pod-level cgroup directories behind.
		removeCgroupDirs(opts.CgroupsPath)
	})
	return c
}

// Exec runs args in the container and returns its combined output.
func (c *Container) Exec(t testing.TB, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command("runc", append([]string{"exec", c.ID}, args...)...).CombinedOutput()
	return string(out), err
}

// InitPid is the host pid of the container's init process.
func (c *Container) InitPid(t testing.TB) int {
	t.Helper()
	out, err := exec.Command("runc", "state", c.ID).Output()
	if err != nil {
		t.Fatalf("runctest: runc state: %v", err)
	}
	var st struct {
		Pid int `json:"pid"`
	}
	must(t, json.Unmarshal(out, &st))
	return st.Pid
}

// WriteFile writes a file into the running container's root filesystem
// from the host side, as a kubectl cp or a download inside it would.
func (c *Container) WriteFile(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	must(t, os.WriteFile(filepath.Join(c.Rootfs, path), data, mode))
}

// CopyIn copies a host file into the running container.
func (c *Container) CopyIn(t testing.TB, src, path string, mode os.FileMode) {
	t.Helper()
	copyFile(t, src, filepath.Join(c.Rootfs, path), mode)
}

func writeSpec(t testing.TB, runc, bundle, rootfs string, opts Options) {
	t.Helper()
	tmp := t.TempDir()
	if out, err := exec.Command(runc, "spec", "--bundle", tmp).CombinedOutput(); err != nil {
		t.Fatalf("runctest: runc spec: %v: %s", err, out)
	}
	raw, err := os.ReadFile(filepath.Join(tmp, "config.json"))
	must(t, err)
	var spec map[string]any
	must(t, json.Unmarshal(raw, &spec))
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = opts.Args
	proc["cwd"] = "/"
	spec["root"] = map[string]any{"path": rootfs, "readonly": false}
	spec["linux"].(map[string]any)["cgroupsPath"] = opts.CgroupsPath
	if len(opts.Annotations) > 0 {
		spec["annotations"] = opts.Annotations
	}
	raw, err = json.MarshalIndent(spec, "", " ")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(bundle, "config.json"), raw, 0o644))
}

// removeCgroupDirs removes the now-empty parents runc created for path in
// every mounted hierarchy, deepest first; it stops at the first that is not
// empty (shared with other containers).
func removeCgroupDirs(path string) {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	for _, root := range roots {
		for p := strings.TrimSuffix(path, "/"); p != "" && p != "/"; p = filepath.Dir(p) {
			if os.Remove(filepath.Join(root, p)) != nil {
				break
			}
		}
	}
}

func copyFile(t testing.TB, src, dst string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(src)
	must(t, err)
	must(t, os.WriteFile(dst, data, mode))
	must(t, os.Chmod(dst, mode))
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func podUID() string {
	h := randomHex(16)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
