package sensor_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

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

// TestKernelModuleAttempt: a module load attempt is reported with its
// failure, on kernels with module support; on kernels without it, the
// sensor says the hook is missing.
func TestKernelModuleAttempt(t *testing.T) {
	r := startSensor(t, sensor.Config{})
	health := r.find(func(e *event.Event) bool { return e.Kind == event.SensorHealth })
	if slices.ContainsFunc(health.Health.Warnings, func(w string) bool { return strings.Contains(w, "finit_module") }) {
		if _, err := os.Stat("/proc/modules"); err == nil {
			t.Fatalf("the kernel has modules but the sensor could not hook finit_module: %v", health.Health.Warnings)
		}
		t.Logf("kernel built without module support; sensor reports: %v", health.Health.Warnings)
		return
	}
	f := filepath.Join(t.TempDir(), "evil.ko")
	os.WriteFile(f, []byte("not an ELF module"), 0o644)
	pid, _ := action(t, "finit-module", f)
	e := r.wait(t, "finit_module", 10*time.Second, byPid(event.KernelModule, pid))
	if e.Module.Op != "load" || e.Module.Name != f || e.Syscall.Ret >= 0 {
		t.Fatalf("module event = %+v %+v", e.Module, e.Syscall)
	}
}
