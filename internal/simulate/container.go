package simulate

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Prefix starts the name of everything a simulation creates: container
// ids, pod names, bundle directories.
const Prefix = "vigil-sim-"

// Namespace is the Kubernetes namespace the victims are labelled with.
const Namespace = "vigil-simulation"

// Image is the image name victims are labelled with. It must not name
// Vigil: rules leave Vigil's own images alone (persist_infra_images).
const Image = "attack-simulation/victim:busybox"

// applets are the busybox applets linked into every victim's image.
var applets = []string{"sh", "cat", "cp", "chmod", "echo", "sleep", "ls", "id", "uname", "wget", "nc", "true",
	"env", "mkdir", "rm", "grep", "find", "base64", "touch", "head", "printf", "sed", "ip", "hostname", "ps"}

// File is a file planted in a victim's image before it starts.
type File struct {
	Data []byte
	Mode os.FileMode
}

// VictimSpec describes a victim container.
type VictimSpec struct {
	// Name is the scenario's id; the container is vigil-sim-<Name>-<random>.
	Name string
	// Args is the container's init; default sleeps.
	Args []string
	// Env is added to the init's and every exec's environment.
	Env []string
	// Links are symlinks in the image (path -> target), e.g. a web
	// server's name for busybox.
	Links map[string]string
	// Files are planted in the image (the container's lower layer).
	Files map[string]File
}

// container is a running runc container: the local backend's victim.
type container struct {
	id, podUID, bundle string
	rootfs             string // overlay merged directory
	pid                int
	runc, busybox      string
	cgroupsPath        string
	env                []string
}

// requirements finds runc and busybox, the local backend's two tools.
func requirements() (runc, busybox string, err error) {
	if os.Geteuid() != 0 {
		return "", "", errors.New("the local simulation runs containers: run it as root")
	}
	if runc, err = exec.LookPath("runc"); err != nil {
		return "", "", errors.New("runc is not installed (apt-get install runc)")
	}
	if busybox, err = exec.LookPath("busybox"); err != nil {
		return "", "", errors.New("busybox is not installed (apt-get install busybox-static)")
	}
	return runc, busybox, nil
}

// startContainer creates the OCI bundle for spec and runs it detached. On
// error, everything it created is already removed.
func startContainer(ctx context.Context, runc, busybox string, spec VictimSpec) (c *container, err error) {
	c = &container{id: Prefix + spec.Name + "-" + randomHex(4), podUID: podUID(), runc: runc, busybox: busybox}
	if c.bundle, err = os.MkdirTemp("", c.id+"-"); err != nil {
		return nil, fmt.Errorf("create bundle: %w", err)
	}
	defer func() {
		if err != nil {
			c.remove()
		}
	}()
	image := filepath.Join(c.bundle, "image")
	if err := buildImage(image, busybox, spec); err != nil {
		return c, fmt.Errorf("build image for %s: %w", c.id, err)
	}
	upper, work := filepath.Join(c.bundle, "upper"), filepath.Join(c.bundle, "work")
	c.rootfs = filepath.Join(c.bundle, "merged")
	for _, d := range []string{upper, work, c.rootfs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return c, err
		}
	}
	// The image is the overlay's lower layer and writes go to the upper
	// one, as with containerd: the sensor tells drift by that.
	if out, err := exec.CommandContext(ctx, "mount", "-t", "overlay", "overlay", "-o",
		fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", image, upper, work), c.rootfs).CombinedOutput(); err != nil {
		c.rootfs = ""
		return c, fmt.Errorf("mount overlay: %v: %s", err, bytes.TrimSpace(out))
	}
	c.cgroupsPath = "/kubepods/besteffort/pod" + c.podUID + "/" + c.id
	c.env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME=/root", "HOSTNAME=" + c.id}, spec.Env...)
	if err := c.writeSpec(ctx, spec); err != nil {
		return c, err
	}
	// The detached init inherits runc's stdio: a file, not a pipe, or
	// reading runc's output would wait for the container to exit.
	log, err := os.Create(filepath.Join(c.bundle, "init.log"))
	if err != nil {
		return c, err
	}
	defer log.Close()
	cmd := exec.CommandContext(ctx, runc, "run", "--detach", "--bundle", c.bundle, c.id)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(log.Name())
		return c, fmt.Errorf("runc run %s: %v: %s", c.id, err, bytes.TrimSpace(out))
	}
	out, err := exec.CommandContext(ctx, runc, "state", c.id).Output()
	if err != nil {
		return c, fmt.Errorf("runc state %s: %w", c.id, err)
	}
	var st struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal(out, &st); err != nil || st.Pid == 0 {
		return c, fmt.Errorf("runc state %s: no pid in %s", c.id, out)
	}
	c.pid = st.Pid
	return c, nil
}

func buildImage(image, busybox string, spec VictimSpec) error {
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "proc", "dev", "sys", "tmp", "etc", "root", "var/tmp"} {
		if err := os.MkdirAll(filepath.Join(image, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(image, "tmp"), 0o1777); err != nil {
		return err
	}
	data, err := os.ReadFile(busybox)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(image, "bin", "busybox"), data, 0o755); err != nil {
		return err
	}
	for _, a := range applets {
		if err := os.Symlink("busybox", filepath.Join(image, "bin", a)); err != nil {
			return err
		}
	}
	for path, target := range spec.Links {
		if err := os.MkdirAll(filepath.Join(image, filepath.Dir(path)), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(target, filepath.Join(image, path)); err != nil {
			return err
		}
	}
	files := map[string]File{
		"/etc/passwd": {Data: []byte("root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/sh\n"), Mode: 0o644},
		"/etc/group":  {Data: []byte("root:x:0:\nwww-data:x:33:\n"), Mode: 0o644},
		"/etc/hosts":  {Data: []byte("127.0.0.1 localhost\n"), Mode: 0o644},
	}
	for path, f := range spec.Files {
		files[path] = f
	}
	for path, f := range files {
		dst := filepath.Join(image, path)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(dst, f.Data, f.Mode); err != nil {
			return err
		}
		if err := os.Chmod(dst, f.Mode); err != nil {
			return err
		}
	}
	return nil
}

// writeSpec writes config.json: runc's default spec (its own network,
// pid, mount, ipc and uts namespaces, no added capabilities) with the
// kubelet's cgroup layout and the CRI annotations that name the pod, so
// that the sensor attributes the victim as it would a pod's container.
func (c *container) writeSpec(ctx context.Context, spec VictimSpec) error {
	tmp, err := os.MkdirTemp("", c.id+"-spec-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if out, err := exec.CommandContext(ctx, c.runc, "spec", "--bundle", tmp).CombinedOutput(); err != nil {
		return fmt.Errorf("runc spec: %v: %s", err, bytes.TrimSpace(out))
	}
	raw, err := os.ReadFile(filepath.Join(tmp, "config.json"))
	if err != nil {
		return err
	}
	var s map[string]any
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("runc spec: %w", err)
	}
	args := spec.Args
	if len(args) == 0 {
		args = []string{"/bin/sleep", "3600"}
	}
	proc := s["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = args
	proc["cwd"] = "/"
	proc["env"] = c.env
	s["hostname"] = c.id
	s["root"] = map[string]any{"path": c.rootfs, "readonly": false}
	s["linux"].(map[string]any)["cgroupsPath"] = c.cgroupsPath
	s["annotations"] = map[string]string{
		"io.kubernetes.cri.container-type":    "container",
		"io.kubernetes.cri.container-name":    "victim",
		"io.kubernetes.cri.sandbox-name":      Prefix + spec.Name,
		"io.kubernetes.cri.sandbox-namespace": Namespace,
		"io.kubernetes.cri.sandbox-uid":       c.podUID,
		"io.kubernetes.cri.image-name":        Image,
		"app.kubernetes.io/managed-by":        "vigil-simulate",
	}
	raw, err = json.MarshalIndent(s, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.bundle, "config.json"), raw, 0o644)
}

// exec runs args in the container, as kubectl exec would, and returns its
// combined output.
func (c *container) exec(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, c.runc, append([]string{"exec", c.id}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("exec %q in %s: %w", args, c.id, err)
	}
	return string(out), nil
}

// hostNetns runs busybox's args on the host inside the container's
// network namespace only (e.g. ip addr add): it sets the namespace up
// without running anything in the container.
func (c *container) hostNetns(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, c.busybox, append([]string{"nsenter", "-t", fmt.Sprint(c.pid), "-n", c.busybox}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%q in the network namespace of %s: %v: %s", args, c.id, err, bytes.TrimSpace(out))
	}
	return nil
}

// remove kills and deletes the container and removes its bundle, overlay
// and cgroups. It does not depend on a context: it runs on cancellation.
func (c *container) remove() error {
	var errs []error
	if c.pid != 0 {
		_ = exec.Command(c.runc, "kill", c.id, "KILL").Run()
		var err error
		for range 50 {
			if err = exec.Command(c.runc, "delete", "--force", c.id).Run(); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("runc delete %s: %w", c.id, err))
		}
		removeCgroupDirs(c.cgroupsPath)
	}
	if c.rootfs != "" {
		if out, err := exec.Command("umount", c.rootfs).CombinedOutput(); err != nil {
			if out2, err2 := exec.Command("umount", "-l", c.rootfs).CombinedOutput(); err2 != nil {
				errs = append(errs, fmt.Errorf("umount %s: %v: %s %s", c.rootfs, err, out, out2))
			}
		}
	}
	if c.bundle != "" && strings.Contains(filepath.Base(c.bundle), Prefix) {
		if err := os.RemoveAll(c.bundle); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeStale removes the victims, their overlay mounts and bundles that a
// killed run (kill -9, a test timeout) left behind. The caller holds
// localLock, so no other run owns them.
func removeStale(runc string) {
	out, err := exec.Command(runc, "list", "--quiet").Output()
	if err != nil {
		return
	}
	for _, id := range strings.Fields(string(out)) {
		if strings.HasPrefix(id, Prefix) {
			c := &container{id: id, runc: runc, pid: -1}
			c.remove()
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mounts")
	bundles, _ := filepath.Glob(filepath.Join(os.TempDir(), Prefix+"*"))
	for _, b := range bundles {
		merged := filepath.Join(b, "merged")
		if bytes.Contains(mounts, []byte(" "+merged+" ")) {
			_ = exec.Command("umount", "-l", merged).Run()
		}
		_ = os.RemoveAll(b)
	}
}

// removeCgroupDirs removes the now-empty parents runc created for path in
// every mounted hierarchy, deepest first; it stops at the first that is not
// empty (shared with other containers).
func removeCgroupDirs(path string) {
	if path == "" {
		return
	}
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

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func podUID() string {
	h := randomHex(16)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
