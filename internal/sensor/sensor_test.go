package sensor_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/sensor"
)

func TestMain(m *testing.M) {
	if a := os.Getenv(actionEnv); a != "" {
		os.Exit(runAction(a, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// recorder runs a real sensor and keeps every event it emits.
type recorder struct {
	mu     sync.Mutex
	events []*event.Event
	cancel context.CancelFunc
	done   chan error
	sensor *sensor.Sensor
}

func startSensor(t *testing.T, cfg sensor.Config) *recorder {
	t.Helper()
	return startSensorHeld(t, cfg, nil)
}

// startSensorHeld starts a sensor whose consumer, like a stalled exporter,
// blocks on every event but sensor.health until hold is closed (a nil hold
// never blocks).
func startSensorHeld(t *testing.T, cfg sensor.Config, hold <-chan struct{}) *recorder {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the sensor tests load eBPF programs and start containers: run them as root")
	}
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = time.Hour
	}
	if cfg.Containers == nil {
		cfg.Containers = newContainers(t)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &recorder{cancel: cancel, done: make(chan error, 1)}
	s := sensor.New(cfg)
	r.sensor = s
	go func() {
		r.done <- s.Run(ctx, func(e *event.Event) {
			if hold != nil && e.Kind != event.SensorHealth {
				<-hold
			}
			r.mu.Lock()
			r.events = append(r.events, e)
			r.mu.Unlock()
		})
	}()
	// The first health event says the programs are attached.
	h := r.wait(t, "sensor start", 30*time.Second, func(e *event.Event) bool { return e.Kind == event.SensorHealth })
	if !cfg.DisableEBPF && h.Health.Mode != "ebpf" {
		r.stop(t)
		t.Fatalf("sensor runs in %q mode, want eBPF: %v", h.Health.Mode, h.Health.Warnings)
	}
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop ends the sensor and waits for it to drain.
func (r *recorder) stop(t *testing.T) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("sensor.Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("sensor did not stop within 30s")
	}
}

// wait returns the first event matching match, failing the test after timeout.
func (r *recorder) wait(t *testing.T, what string, timeout time.Duration, match func(*event.Event) bool) *event.Event {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if e := r.find(match); e != nil {
			return e
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no event for %s within %v (%d events seen)", what, timeout, len(r.all()))
	return nil
}

func (r *recorder) find(match func(*event.Event) bool) *event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if match(e) {
			return e
		}
	}
	return nil
}

func (r *recorder) all() []*event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// action runs the test binary as a child performing action; it returns the
// child's pid and output.
func action(t *testing.T, name string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), actionEnv+"="+name)
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("action %s: %v: %s", name, err, out)
		}
	}
	return cmd.Process.Pid, string(out)
}

func byPid(kind event.Kind, pid int) func(*event.Event) bool {
	return func(e *event.Event) bool {
		return e.Kind == kind && e.Process != nil && e.Process.Pid == uint32(pid)
	}
}

func TestHostExecHasParentAndNoContainer(t *testing.T) {
	r := startSensor(t, sensor.Config{})
	cmd := exec.Command("/bin/sh", "-c", "/bin/echo host-marker; exit 7")
	cmd.Run()
	shell := uint32(cmd.Process.Pid)
	e := r.wait(t, "host exec", 10*time.Second, func(e *event.Event) bool {
		return e.Kind == event.ProcessExec && slices.Equal(e.Process.Args, []string{"/bin/echo", "host-marker"})
	})
	if e.Process.Ppid != shell || e.Process.Parent == nil || e.Process.Parent.Exe != "/bin/sh" {
		t.Fatalf("echo's parent = %+v (ppid %d), want /bin/sh pid %d", e.Process.Parent, e.Process.Ppid, shell)
	}
	if e.Container != nil {
		t.Fatalf("host process attributed to container %+v", e.Container)
	}
	if len(e.Process.Ancestry) < 2 || e.Process.Ancestry[1].Pid != uint32(os.Getpid()) {
		t.Fatalf("ancestry = %+v, want sh then the test process %d", e.Process.Ancestry, os.Getpid())
	}
	if e.Process.ExecID == "" || e.Process.ExecID == e.Process.ParentExecID {
		t.Fatalf("exec ids: %q parent %q", e.Process.ExecID, e.Process.ParentExecID)
	}
	exit := r.wait(t, "shell exit", 10*time.Second, byPid(event.ProcessExit, int(shell)))
	if exit.Process.ExitCode == nil || *exit.Process.ExitCode != 7 {
		t.Fatalf("exit code = %v, want 7", exit.Process.ExitCode)
	}
}

func TestNetwork(t *testing.T) {
	r := startSensor(t, sensor.Config{})
	for _, tc := range []struct{ network, listen string }{
		{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}, {"udp4", "127.0.0.1:0"}, {"udp6", "[::1]:0"},
	} {
		t.Run(tc.network, func(t *testing.T) {
			var addr string
			if strings.HasPrefix(tc.network, "tcp") {
				l, err := net.Listen(tc.network, tc.listen)
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				addr = l.Addr().String()
			} else {
				c, err := net.ListenPacket(tc.network, tc.listen)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				addr = c.LocalAddr().String()
			}
			pid, out := action(t, "connect", tc.network, addr)
			e := r.wait(t, "connect "+addr, 10*time.Second, byPid(event.NetworkConnect, pid))
			proto := tc.network[:3]
			if e.Network.Protocol != proto || e.Network.Dst != addr || e.Network.Src == "" || e.Syscall.Ret != 0 {
				t.Fatalf("connect event = %+v %+v (child said %q), want %s to %s", e.Network, e.Syscall, out, proto, addr)
			}
		})
	}
	t.Run("refused", func(t *testing.T) {
		l, _ := net.Listen("tcp4", "127.0.0.1:0")
		addr := l.Addr().String()
		l.Close()
		pid, _ := action(t, "connect", "tcp4", addr)
		e := r.wait(t, "refused connect", 10*time.Second, byPid(event.NetworkConnect, pid))
		if e.Syscall.Errno != "ECONNREFUSED" || e.Network.Dst != addr {
			t.Fatalf("refused connect = %+v %+v", e.Network, e.Syscall)
		}
	})
	t.Run("listen", func(t *testing.T) {
		pid, out := action(t, "listen", "127.0.0.1:0")
		e := r.wait(t, "listen", 10*time.Second, byPid(event.NetworkListen, pid))
		if e.Network.Src != strings.TrimSpace(out) || e.Network.Protocol != "tcp" {
			t.Fatalf("listen event = %+v, child listened on %q", e.Network, out)
		}
	})
}

func TestSensitiveFiles(t *testing.T) {
	r := startSensor(t, sensor.Config{})
	home := t.TempDir()
	history := filepath.Join(home, ".bash_history")
	pid, _ := action(t, "open", "/etc/shadow", "/etc/ld.so.preload", "/etc/hostname")
	shadow := r.wait(t, "open /etc/shadow", 10*time.Second, func(e *event.Event) bool {
		return byPid(event.FileOpen, pid)(e) && e.File.Path == "/etc/shadow"
	})
	if shadow.Syscall.Ret < 0 || shadow.File.Flags != "O_RDONLY|O_CLOEXEC" {
		t.Fatalf("shadow open = %+v %+v", shadow.File, shadow.Syscall)
	}
	// /etc/ld.so.preload does not exist here: the attempt is still reported.
	if _, err := os.Stat("/etc/ld.so.preload"); err == nil {
		t.Fatal("this test expects /etc/ld.so.preload to be absent")
	}
	preload := r.wait(t, "failed open of /etc/ld.so.preload", 10*time.Second, func(e *event.Event) bool {
		return byPid(event.FileOpen, pid)(e) && e.File.Path == "/etc/ld.so.preload"
	})
	if preload.Syscall.Errno != "ENOENT" {
		t.Fatalf("preload open = %+v", preload.Syscall)
	}
	wpid, _ := action(t, "write", history)
	w := r.wait(t, "write of a shell history", 10*time.Second, byPid(event.FileWrite, wpid))
	if w.File.Path != history || w.File.Op != "write" {
		t.Fatalf("history write = %+v", w.File)
	}
	time.Sleep(200 * time.Millisecond)
	if e := r.find(func(e *event.Event) bool { return e.File != nil && e.File.Path == "/etc/hostname" }); e != nil {
		t.Fatalf("unwatched file reported: %+v", e.File)
	}
}

func TestChmodMemfdNamespacePtrace(t *testing.T) {
	r := startSensor(t, sensor.Config{})
	script := filepath.Join(t.TempDir(), "payload")
	os.WriteFile(script, []byte("#!/bin/sh\n"), 0o644)

	pid, _ := action(t, "chmod", script, "755")
	c := r.wait(t, "chmod +x", 10*time.Second, byPid(event.FileChmod, pid))
	if c.File.Path != script || c.File.Mode != "0755" || c.Syscall.Ret != 0 {
		t.Fatalf("chmod event = %+v %+v", c.File, c.Syscall)
	}
	pid, _ = action(t, "chmod", script, "644")
	time.Sleep(200 * time.Millisecond)
	if e := r.find(byPid(event.FileChmod, pid)); e != nil {
		t.Fatalf("chmod without exec bits reported: %+v", e.File)
	}

	pid, out := action(t, "memfd-exec", "vigil-fileless", "/bin/echo", "from-memory")
	if !strings.Contains(out, "from-memory") {
		t.Fatalf("memfd exec did not run: %q", out)
	}
	mc := r.wait(t, "memfd_create", 10*time.Second, byPid(event.MemfdCreate, pid))
	if mc.File.Path != "memfd:vigil-fileless" {
		t.Fatalf("memfd_create event = %+v", mc.File)
	}
	mx := r.wait(t, "memfd exec", 10*time.Second, byPid(event.MemfdExec, pid))
	if !mx.Process.Memfd || !strings.HasPrefix(mx.File.Path, "memfd:vigil-fileless") || !slices.Equal(mx.Process.Args, []string{"vigil-fileless", "from-memory"}) {
		t.Fatalf("memfd exec event = %+v %+v", mx.Process, mx.File)
	}

	pid, _ = action(t, "unshare")
	u := r.wait(t, "unshare", 10*time.Second, byPid(event.NamespaceChange, pid))
	if u.Namespace.Op != "unshare" || !slices.Equal(u.Namespace.Types, []string{"uts"}) || u.Syscall.Ret != 0 {
		t.Fatalf("unshare event = %+v %+v", u.Namespace, u.Syscall)
	}
	pid, _ = action(t, "setns")
	sn := r.wait(t, "setns", 10*time.Second, byPid(event.NamespaceChange, pid))
	if sn.Namespace.Op != "setns" || !slices.Equal(sn.Namespace.Types, []string{"net"}) {
		t.Fatalf("setns event = %+v %+v", sn.Namespace, sn.Syscall)
	}

	pid, out = action(t, "ptrace-attach")
	p := r.wait(t, "ptrace attach", 10*time.Second, byPid(event.Ptrace, pid))
	if p.Ptrace.Request != "PTRACE_ATTACH" || fmt.Sprint(p.Ptrace.TargetPid) != strings.TrimSpace(out) {
		t.Fatalf("ptrace event = %+v, target %q", p.Ptrace, out)
	}
}

// checkFailed checks, on the event's JSON as `vigil sensor --output jsonl`
// prints it, that the attempt is recorded with its failure: the syscall's
// name, "ret" the negated errno and "errno" its name.
func checkFailed(t *testing.T, e *event.Event, errno unix.Errno, syscalls ...string) {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Syscall *struct {
			Name  string `json:"name"`
			Ret   *int64 `json:"ret"`
			Errno string `json:"errno"`
		} `json:"syscall"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	sc := got.Syscall
	if sc == nil || sc.Ret == nil || !slices.Contains(syscalls, sc.Name) || *sc.Ret != -int64(errno) || sc.Errno != unix.ErrnoName(errno) {
		t.Errorf("event %s, want syscall %v failing with ret %d and errno %q", b, syscalls, -int64(errno), unix.ErrnoName(errno))
	}
}

// Intent matters: each watched syscall is reported when it fails too, with
// its failure in the event.
func TestFailingSyscalls(t *testing.T) {
	r := startSensor(t, sensor.Config{})

	t.Run("chmod +x of a missing file", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "no-such-payload")
		pid, out := action(t, "chmod", missing, "755")
		e := r.wait(t, "failed chmod", 10*time.Second, byPid(event.FileChmod, pid))
		if e.File.Path != missing || e.File.Mode != "0755" {
			t.Errorf("chmod event file = %+v (child: %q)", e.File, out)
		}
		checkFailed(t, e, unix.ENOENT, "chmod", "fchmodat", "fchmodat2")
	})
	t.Run("memfd_create with invalid flags", func(t *testing.T) {
		pid, out := action(t, "memfd-bad-flags", "vigil-einval")
		if strings.TrimSpace(out) != "EINVAL" {
			t.Fatalf("memfd_create(0x100) in the child: %q, want EINVAL", out)
		}
		e := r.wait(t, "failed memfd_create", 10*time.Second, byPid(event.MemfdCreate, pid))
		if e.File.Path != "memfd:vigil-einval" {
			t.Errorf("memfd_create event file = %+v", e.File)
		}
		checkFailed(t, e, unix.EINVAL, "memfd_create")
	})
	t.Run("ptrace attach to pid 1 as nobody", func(t *testing.T) {
		pid, out := action(t, "nobody-ptrace", "1")
		if strings.TrimSpace(out) != "EPERM" {
			t.Fatalf("PTRACE_ATTACH to pid 1 as uid 65534: %q, want EPERM", out)
		}
		e := r.wait(t, "failed ptrace", 10*time.Second, byPid(event.Ptrace, pid))
		if e.Ptrace.Request != "PTRACE_ATTACH" || e.Ptrace.TargetPid != 1 || e.Process.UID != 65534 || e.Process.EUID != 65534 {
			t.Errorf("ptrace event = %+v by uid %d euid %d, want PTRACE_ATTACH of 1 by 65534", e.Ptrace, e.Process.UID, e.Process.EUID)
		}
		checkFailed(t, e, unix.EPERM, "ptrace")
	})
	t.Run("unshare mount namespace as nobody", func(t *testing.T) {
		pid, out := action(t, "nobody-unshare")
		if strings.TrimSpace(out) != "EPERM" {
			t.Fatalf("unshare(CLONE_NEWNS) as uid 65534: %q, want EPERM", out)
		}
		e := r.wait(t, "failed unshare", 10*time.Second, byPid(event.NamespaceChange, pid))
		if e.Namespace.Op != "unshare" || !slices.Equal(e.Namespace.Types, []string{"mnt"}) || e.Process.UID != 65534 {
			t.Errorf("unshare event = %+v by uid %d", e.Namespace, e.Process.UID)
		}
		checkFailed(t, e, unix.EPERM, "unshare")
	})
	t.Run("setns as nobody", func(t *testing.T) {
		pid, out := action(t, "nobody-setns")
		if strings.TrimSpace(out) != "EPERM" {
			t.Fatalf("setns(CLONE_NEWNET) as uid 65534: %q, want EPERM", out)
		}
		e := r.wait(t, "failed setns", 10*time.Second, byPid(event.NamespaceChange, pid))
		if e.Namespace.Op != "setns" || !slices.Equal(e.Namespace.Types, []string{"net"}) || e.Process.UID != 65534 {
			t.Errorf("setns event = %+v by uid %d", e.Namespace, e.Process.UID)
		}
		checkFailed(t, e, unix.EPERM, "setns")
	})
	t.Run("listen on an unbound UDP socket", func(t *testing.T) {
		pid, out := action(t, "listen-udp")
		if strings.TrimSpace(out) != unix.ErrnoName(unix.EOPNOTSUPP) { // named ENOTSUP: the same number on Linux
			t.Fatalf("listen on a UDP socket: %q, want EOPNOTSUPP", out)
		}
		e := r.wait(t, "failed listen", 10*time.Second, byPid(event.NetworkListen, pid))
		if e.Network.Protocol != "udp" || e.Network.Family != "ipv4" || e.Network.Src != "0.0.0.0:0" {
			t.Errorf("listen event network = %+v", e.Network)
		}
		checkFailed(t, e, unix.EOPNOTSUPP, "listen")
	})
}

// moduleSyscalls are the module hooks, which need CONFIG_MODULES.
var moduleSyscalls = []string{"init_module", "finit_module", "delete_module"}

// tracepointExists reports whether tracefs lists syscalls/<name>.
func tracepointExists(name string) bool {
	for _, root := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
		if _, err := os.Stat(filepath.Join(root, "events/syscalls", name)); err == nil {
			return true
		}
	}
	return false
}

// TestKernelModuleAttempt: module load attempts, all failing, are reported
// with the module file, or the image's size and parameters.
//
// A kernel built without module support (CONFIG_MODULES=n, as the build
// machines' is) has no module syscalls: they are sys_ni_syscall, return
// ENOSYS, and have no syscall tracepoints, so nothing the sensor hooks can
// see an attempt there. On such a kernel the test asserts exactly that, and
// that the sensor says so in its health warnings; the reporting itself is
// asserted by `make vmtest`, which runs this test under Debian's 6.1 and
// 6.12 kernels (modular), where VIGIL_VMTEST=1 makes the modular path
// mandatory.
func TestKernelModuleAttempt(t *testing.T) {
	r := startSensor(t, sensor.Config{})
	health := r.find(func(e *event.Event) bool { return e.Kind == event.SensorHealth })
	_, err := os.Stat("/proc/modules")
	modular := err == nil
	bogus := filepath.Join(t.TempDir(), "evil.ko")
	if err := os.WriteFile(bogus, []byte(bogusModule), 0o644); err != nil {
		t.Fatal(err)
	}

	if !modular {
		if os.Getenv("VIGIL_VMTEST") != "" {
			t.Fatal("make vmtest must boot kernels with module support, and this one has none: module load reporting would go untested")
		}
		for _, sc := range moduleSyscalls {
			for _, tp := range []string{"sys_enter_" + sc, "sys_exit_" + sc} {
				if tracepointExists(tp) {
					t.Errorf("no /proc/modules, yet tracepoint syscalls/%s exists", tp)
				}
			}
			// The exit is attached first: its absence is what the sensor reports.
			want := "hook not available on this kernel: syscalls/sys_exit_" + sc
			if !slices.Contains(health.Health.Warnings, want) {
				t.Errorf("health warnings %q lack %q", health.Health.Warnings, want)
			}
		}
		fpid, fout := action(t, "finit-module", bogus)
		ipid, iout := action(t, "init-module", "vigil_test=1")
		if strings.TrimSpace(fout) != "ENOSYS" || strings.TrimSpace(iout) != "ENOSYS" {
			t.Fatalf("finit_module: %q, init_module: %q; want ENOSYS from a kernel without modules", fout, iout)
		}
		time.Sleep(300 * time.Millisecond)
		if e := r.find(func(e *event.Event) bool {
			return e.Kind == event.KernelModule && (e.Process.Pid == uint32(fpid) || e.Process.Pid == uint32(ipid))
		}); e != nil {
			t.Fatalf("module event from a kernel without module syscall tracepoints: %+v", e)
		}
		t.Logf("kernel without module support: the module syscalls return ENOSYS and have no tracepoints; the sensor warns %q. Reporting is asserted under make vmtest.", health.Health.Warnings)
		return
	}

	for _, w := range health.Health.Warnings {
		if strings.Contains(w, "module") {
			t.Fatalf("the kernel has modules but the sensor could not hook them: %v", health.Health.Warnings)
		}
	}
	t.Run("finit_module of a bogus file", func(t *testing.T) {
		pid, out := action(t, "finit-module", bogus, "vigil_test=1")
		errno := errnoOf(t, out)
		e := r.wait(t, "finit_module", 10*time.Second, byPid(event.KernelModule, pid))
		if e.Module.Op != "load" || e.Module.Name != bogus {
			t.Errorf("module = %+v, want a load of %s", e.Module, bogus)
		}
		checkFailed(t, e, errno, "finit_module")
	})
	t.Run("finit_module of a loaded module", func(t *testing.T) {
		file := loadedModuleFile(t)
		if file == "" {
			if os.Getenv("VIGIL_VMTEST") != "" {
				t.Fatal("no uncompressed .ko of a loaded module under /lib/modules: hack/vmtest.sh puts overlay.ko there")
			}
			t.Log("no uncompressed .ko of a loaded module on this machine: only bogus module files are tried here")
			return
		}
		pid, out := action(t, "finit-module", file)
		errno := errnoOf(t, out) // EEXIST, or what signature checks and lockdown say first
		e := r.wait(t, "finit_module", 10*time.Second, byPid(event.KernelModule, pid))
		if e.Module.Op != "load" || e.Module.Name != file {
			t.Errorf("module = %+v, want a load of %s", e.Module, file)
		}
		checkFailed(t, e, errno, "finit_module")
	})
	t.Run("init_module of a bad image", func(t *testing.T) {
		pid, out := action(t, "init-module", "vigil_test=1 other=x")
		errno := errnoOf(t, out)
		e := r.wait(t, "init_module", 10*time.Second, byPid(event.KernelModule, pid))
		if e.Module.Op != "load" || e.Module.Name != "" || e.Module.Params != "vigil_test=1 other=x" || e.Module.Size != uint64(len(bogusModule)) {
			t.Errorf("module = %+v, want a load of %d bytes with params", e.Module, len(bogusModule))
		}
		checkFailed(t, e, errno, "init_module")
	})
}

// errnoOf is the errno an action printed; it fails the test on success.
func errnoOf(t *testing.T, out string) unix.Errno {
	t.Helper()
	name := strings.TrimSpace(out)
	var errno unix.Errno
	for e := unix.Errno(1); e < 4096; e++ {
		if unix.ErrnoName(e) == name {
			errno = e
			break
		}
	}
	if errno == 0 {
		t.Fatalf("the child's syscall gave %q, want a failure", name)
	}
	return errno
}

// loadedModuleFile returns an uncompressed .ko under /lib/modules of a
// module already loaded (loading it again fails with EEXIST and changes
// nothing), or "".
func loadedModuleFile(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("/proc/modules")
	if err != nil {
		t.Fatal(err)
	}
	loaded := map[string]bool{}
	for line := range strings.Lines(string(data)) {
		if name, _, ok := strings.Cut(line, " "); ok {
			loaded[name] = true
		}
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	var found string
	filepath.WalkDir(filepath.Join("/lib/modules", unix.ByteSliceToString(uts.Release[:])), func(p string, d fs.DirEntry, err error) error {
		if err != nil || found != "" {
			return nil
		}
		if name, ok := strings.CutSuffix(d.Name(), ".ko"); ok && d.Type().IsRegular() && loaded[strings.ReplaceAll(name, "-", "_")] {
			found = p
			return filepath.SkipAll
		}
		return nil
	})
	return found
}

// waitExe waits until pid runs exe (its exec is done).
func waitExe(t *testing.T, pid int, exe string) {
	t.Helper()
	want, err := filepath.EvalSymlinks(exe)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if got, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); got == want {
			return
		}
	}
	t.Fatalf("process %d does not run %s", pid, want)
}

// startShell starts /bin/sh -c script with a pipe to its stdin, and waits
// until it runs.
func startShell(t *testing.T, script string) (*exec.Cmd, io.WriteCloser) {
	t.Helper()
	sh := exec.Command("/bin/sh", "-c", script)
	in, err := sh.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sh.Process.Kill()
		sh.Wait()
	})
	waitExe(t, sh.Process.Pid, "/bin/sh")
	return sh, in
}

// A process that predates the sensor is seeded from /proc: its children's
// events name it as parent, with its argv, and their ancestry goes on up
// to the test process.
func TestSeedFromProc(t *testing.T) {
	script := "read x; /bin/echo seeded-$x; exit 0"
	sh, in := startShell(t, script)
	r := startSensor(t, sensor.Config{})
	fmt.Fprintln(in, "ok")
	in.Close()
	if err := sh.Wait(); err != nil {
		t.Fatal(err)
	}
	shPid := uint32(sh.Process.Pid)
	e := r.wait(t, "echo's exec", 10*time.Second, execIn("/bin/echo", "seeded-ok"))
	shExe, _ := filepath.EvalSymlinks("/bin/sh") // /proc/<pid>/exe is the resolved file
	p := e.Process
	if p.Ppid != shPid || p.Parent == nil || p.Parent.Pid != shPid || p.Parent.Exe != shExe ||
		!slices.Equal(p.Parent.Args, []string{"/bin/sh", "-c", script}) {
		t.Fatalf("echo's parent = %+v (ppid %d), want %s pid %d with its argv", p.Parent, p.Ppid, shExe, shPid)
	}
	if p.ParentExecID == "" || p.ParentExecID != p.Parent.ExecID || p.ParentExecID == p.ExecID {
		t.Errorf("exec ids: echo %q, parent %q, parent_exec_id %q", p.ExecID, p.Parent.ExecID, p.ParentExecID)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Ancestry) < 2 || p.Ancestry[0].Pid != shPid || p.Ancestry[1].Pid != uint32(os.Getpid()) || p.Ancestry[1].Exe != self {
		t.Fatalf("ancestry = %+v, want sh %d then the test process %d (%s)", p.Ancestry, shPid, os.Getpid(), self)
	}
	if live := r.find(byPid(event.ProcessExec, int(shPid))); live != nil {
		t.Fatalf("the shell's exec was seen live, so seeding went untested: %+v", live.Process)
	}
}

// A process keeps its exec_id across a sensor restart: the id one sensor
// gives its exec equals the id the next one seeds from /proc.
func TestSeedExecIDStable(t *testing.T) {
	first := startSensor(t, sensor.Config{})
	sh, in := startShell(t, "read x; /bin/echo restarted-$x; exit 3")
	shPid := int(sh.Process.Pid)
	live := first.wait(t, "the shell's exec", 10*time.Second, func(e *event.Event) bool {
		return byPid(event.ProcessExec, shPid)(e) && len(e.Process.Args) > 0 && e.Process.Args[0] == "/bin/sh"
	})
	first.stop(t)
	if live.Process.ExecID == "" {
		t.Fatal("exec without exec_id")
	}

	second := startSensor(t, sensor.Config{})
	fmt.Fprintln(in, "ok")
	in.Close()
	sh.Wait()
	echo := second.wait(t, "echo's exec", 10*time.Second, execIn("/bin/echo", "restarted-ok"))
	if echo.Process.ParentExecID != live.Process.ExecID {
		t.Errorf("after a restart the shell's exec_id is %q, before it was %q", echo.Process.ParentExecID, live.Process.ExecID)
	}
	exit := second.wait(t, "the shell's exit", 10*time.Second, byPid(event.ProcessExit, shPid))
	if exit.Process.ExecID != live.Process.ExecID {
		t.Errorf("the shell's exit has exec_id %q, its exec had %q", exit.Process.ExecID, live.Process.ExecID)
	}
	if e := second.find(byPid(event.ProcessExec, shPid)); e != nil {
		t.Fatalf("the restarted sensor saw the shell's exec live, so seeding went untested: %+v", e.Process)
	}
}

// nsInode is the inode number of /proc/<pid>/ns/<name>.
func nsInode(t *testing.T, pid int, name string) uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, name), &st); err != nil {
		t.Fatal(err)
	}
	return uint32(st.Ino)
}

// TestExecFields checks the process.exec fields a sensor test would
// otherwise take on trust.
func TestExecFields(t *testing.T) {
	r := startSensor(t, sensor.Config{})

	t.Run("argv over 4 KiB is truncated", func(t *testing.T) {
		args := []string{"/bin/echo"}
		for i := range 100 {
			args = append(args, fmt.Sprintf("vigil-argv-%03d-%s", i, strings.Repeat("x", 50)))
		}
		cmd := exec.Command(args[0], args[1:]...)
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		// The kernel keeps the first 4095 bytes of the NUL-separated argv.
		kept := (strings.Join(args, "\x00") + "\x00")[:4095]
		want := strings.Split(strings.TrimSuffix(kept, "\x00"), "\x00")
		e := r.wait(t, "the long exec", 10*time.Second, byPid(event.ProcessExec, cmd.Process.Pid))
		if !e.Process.ArgsTruncated || !slices.Equal(e.Process.Args, want) {
			t.Fatalf("args_truncated %v, %d args (last %q), want true and %d args (last %q)", e.Process.ArgsTruncated,
				len(e.Process.Args), e.Process.Args[len(e.Process.Args)-1], len(want), want[len(want)-1])
		}
	})

	t.Run("credentials, cwd and namespaces", func(t *testing.T) {
		dir := t.TempDir()
		cwd, err := filepath.EvalSymlinks(dir)
		if err != nil {
			t.Fatal(err)
		}
		// In new mount and pid namespaces, so that the ids cannot be the
		// sensor's own; uid 1234 with euid 4321, gid 2345.
		cmd := exec.Command(os.Args[0], "1234", "4321", "2345", cwd, "/bin/sleep", "sleep", "3")
		cmd.Env = append(os.Environ(), actionEnv+"=exec-as")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID}
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Wait()
		defer cmd.Process.Kill()
		pid := cmd.Process.Pid
		e := r.wait(t, "exec of sleep", 10*time.Second, func(e *event.Event) bool {
			return byPid(event.ProcessExec, pid)(e) && slices.Equal(e.Process.Args, []string{"sleep", "3"})
		})
		p := e.Process
		if p.UID != 1234 || p.EUID != 4321 || p.GID != 2345 {
			t.Errorf("uid %d euid %d gid %d, want 1234 4321 2345 (child: %q)", p.UID, p.EUID, p.GID, out.String())
		}
		if p.Cwd != cwd {
			t.Errorf("cwd = %q, want %q", p.Cwd, cwd)
		}
		mnt, pidNS := nsInode(t, pid, "mnt"), nsInode(t, pid, "pid")
		if p.MntNS != mnt || p.PidNS != pidNS {
			t.Errorf("mnt_ns %d pid_ns %d, want /proc/%d/ns: %d %d", p.MntNS, p.PidNS, pid, mnt, pidNS)
		}
		if mnt == nsInode(t, os.Getpid(), "mnt") || pidNS == nsInode(t, os.Getpid(), "pid") {
			t.Errorf("the child shares the test's namespaces: the check above proves nothing")
		}
	})

	t.Run("tty", func(t *testing.T) {
		// A pseudo-terminal the POSIX way (posix_openpt, unlockpt, ptsname).
		ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer ptmx.Close()
		if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
			t.Fatal(err)
		}
		n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
		if err != nil {
			t.Fatal(err)
		}
		pts, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer pts.Close()
		go io.Copy(io.Discard, ptmx)
		cmd := exec.Command("/bin/echo", "vigil-tty")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		e := r.wait(t, "exec on a tty", 10*time.Second, byPid(event.ProcessExec, cmd.Process.Pid))
		if want := fmt.Sprintf("pts/%d", n); e.Process.TTY != want {
			t.Errorf("tty = %q, want %q", e.Process.TTY, want)
		}
	})
}
