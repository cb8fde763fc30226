package detect

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// spinEnv makes the test binary a stand-in miner (TestMiningSpinner).
const spinEnv = "VIGIL_TEST_SPIN"

// TestMiningSpinner is not a test: re-executed with VIGIL_TEST_SPIN=busy it
// spins a miner's worker threads, with =idle it sleeps.
func TestMiningSpinner(t *testing.T) {
	switch os.Getenv(spinEnv) {
	case "busy":
		n := spinThreads()
		runtime.GOMAXPROCS(n)
		for range n - 1 {
			go spin()
		}
		spin()
	case "idle":
		time.Sleep(10 * time.Minute)
	}
}

var spun uint64

// spinThreads is how many threads the stand-in miner spins: one, above the
// rule's 0.8 cores, leaving the other core of a CI machine to the tests
// running beside this one.
func spinThreads() int { return 1 }

func spin() {
	for {
		spun++ // racy on purpose: only the CPU it burns matters
	}
}

// The built-in runtime.mining-behaviour rule, unchanged, fires on a real
// process that keeps the CPU busy for its whole window (30 s), sampled
// from the real /proc, and not on an idle process started the same way.
// The "miner" is this test binary copied to a hidden directory under the
// name kswapd0, the way cryptojackers disguise theirs.
func TestMiningBehaviourBuiltinRule(t *testing.T) {
	t.Parallel()
	rs, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	var rule *Rule
	for _, r := range rs.Rules() {
		if r.ID == "runtime.mining-behaviour" {
			rule = &r
		}
	}
	if rule == nil || rule.SustainedCPU == nil || !rule.IsEnabled() {
		t.Fatalf("built-in runtime.mining-behaviour missing, disabled or not a sustained_cpu rule: %+v", rule)
	}
	window := time.Duration(rule.SustainedCPU.For)

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(t.TempDir(), ".cache-sys", "kswapd0")
	if err := os.MkdirAll(filepath.Dir(exe), 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, self, exe)
	start := func(mode string) *exec.Cmd {
		cmd := exec.Command(exe, "-test.run=^TestMiningSpinner$", "-test.timeout=0")
		cmd.Env = append(os.Environ(), spinEnv+"="+mode)
		// Its own session, so its own scheduler autogroup: its share of a
		// busy test machine does not depend on this test's other threads.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if mode == "busy" {
			favour(cmd.Process.Pid)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	busy, idle := start("busy"), start("idle")

	alerts := make(chan *event.Alert, 8)
	e := New(Config{Rules: rs, Cluster: "test", Node: "node-1", CPUInterval: time.Second, UpdateInterval: time.Hour,
		Emit: func(a *event.Alert) { alerts <- a }})
	execOf := func(p *exec.Cmd) *event.Event {
		return &event.Event{Kind: event.ProcessExec, Time: time.Now(),
			Process: &event.Process{Pid: uint32(p.Process.Pid), Ppid: uint32(os.Getpid()), UID: uint32(os.Getuid()),
				Exe: exe, Args: p.Args, Cwd: "/var/lib/redis",
				Parent: &event.Lineage{Pid: uint32(os.Getpid()), Exe: "/usr/local/bin/redis-server", Args: []string{"redis-server"}}},
			Container: &event.Container{ID: "c-redis", Name: "redis", Image: "redis:7", Pod: "cache-0", Namespace: "shop"}}
	}
	e.Process(execOf(busy))
	e.Process(execOf(idle))
	if n := e.Stats().CPUWatched; n != 2 {
		t.Fatalf("the rule watches %d processes, want both", n)
	}
	for a := range len(alerts) {
		t.Fatalf("alert before any CPU was sampled: %v", a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = e.Run(ctx) }()

	began := time.Now()
	var got *event.Alert
	for got == nil {
		select {
		case a := <-alerts:
			if a.Rule == rule.ID {
				got = a
			} else {
				t.Logf("other alert: %s", a.Rule)
			}
		case <-time.After(window + 30*time.Second):
			used, _ := readCPUTicks("/proc", uint32(busy.Process.Pid))
			t.Fatalf("no %s alert for a process spinning %d threads for %s (it got %.2f cores: is the machine overloaded?)",
				rule.ID, spinThreads(), time.Since(began).Round(time.Second), float64(used)/clockTicks/time.Since(began).Seconds())
		}
	}
	if waited := time.Since(began); waited < window-2*time.Second {
		t.Errorf("fired after %s, before the rule's %s window", waited, window)
	}
	if got.Process == nil || got.Process.Pid != uint32(busy.Process.Pid) {
		t.Fatalf("alert for %+v, the busy process is %d (idle %d)", got.Process, busy.Process.Pid, idle.Process.Pid)
	}
	if got.Severity != event.High || got.Tactic != "Impact" || got.ContainerID != "c-redis" || got.Namespace != "shop" {
		t.Errorf("attribution: %+v", got)
	}
	ev := got.Evidence
	if cores, _ := ev["cpu_cores"].(float64); cores < rule.SustainedCPU.Cores {
		t.Errorf("cpu_cores %v < %v", ev["cpu_cores"], rule.SustainedCPU.Cores)
	}
	if w, _ := ev["cpu_window"].(string); w == "" {
		t.Errorf("no cpu_window in %v", ev)
	} else if d, err := time.ParseDuration(w); err != nil || d < window {
		t.Errorf("cpu_window %q, want at least %s", w, window)
	}
	if ev["proc.exe"] != exe || ev["container.image"] != "redis:7" {
		t.Errorf("evidence %v", ev)
	}
	t.Logf("fired after %s: %v", time.Since(began).Round(time.Second), ev)

	// The idle process, same executable and exec, was sampled over the
	// same window and never fires.
	select {
	case a := <-alerts:
		t.Fatalf("second alert, for pid %d", a.Process.Pid)
	case <-time.After(3 * time.Second):
	}
	if n := e.Stats().CPUWatched; n != 2 {
		t.Fatalf("watching %d processes, want the busy and the idle one", n)
	}
}

// favour raises the stand-in miner's priority (root only; best effort) so
// that it gets the core it asks for on a test machine loaded with other
// work: the rule's threshold is real CPU use, and a starved spinner is not
// the process under test.
func favour(pid int) {
	if os.Geteuid() != 0 {
		return
	}
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, pid, -15)
	_ = os.WriteFile("/proc/"+strconv.Itoa(pid)+"/autogroup", []byte("-15"), 0)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
