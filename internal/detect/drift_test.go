package detect

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/sensor/procfs"
)

// procStart is a live process's start time as the sensor reports it (wall
// time), read from /proc.
func procStart(t testing.TB, pid int) time.Time {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	p, err := procfs.ParseStat(b)
	if err != nil {
		t.Fatal(err)
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		t.Fatal(err)
	}
	boot := time.Now().UnixNano() - ts.Nano()
	return time.Unix(0, boot+int64(p.StartBoottime)).UTC()
}

// sleeping is a host sleep the test may kill; one goroutine waits for it
// and closes done.
type sleeping struct {
	*exec.Cmd
	done chan struct{}
}

func sleeper(t *testing.T) *sleeping {
	t.Helper()
	p := &sleeping{Cmd: exec.Command("/bin/sleep", "30"), done: make(chan struct{})}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.Wait(); close(p.done) }()
	t.Cleanup(func() { _ = p.Process.Kill(); <-p.done })
	return p
}

// killedBySIGKILL waits up to d for p to end and reports whether SIGKILL
// ended it.
func killedBySIGKILL(p *sleeping, d time.Duration) bool {
	select {
	case <-p.done:
		ws, _ := p.ProcessState.Sys().(syscall.WaitStatus)
		return ws.Signal() == syscall.SIGKILL
	case <-time.After(d):
		return false
	}
}

func driftEvent(p *exec.Cmd, start time.Time, ns string) *event.Event {
	return &event.Event{Kind: event.ProcessExec, Time: time.Now(),
		Process: &event.Process{Pid: uint32(p.Process.Pid), Exe: "/tmp/sleep", Args: []string{"sleep", "30"},
			Comm: "sleep", StartTime: start, Drift: true, UpperLayer: true},
		Container: &event.Container{ID: "c-" + ns, Namespace: ns, Image: "shop/web:1", Labels: map[string]string{"tier": "prod"}}}
}

// An exception that covers the drift wins over block: the process lives
// and nothing is raised (it was the audit's repro: killed=1 alerts=0).
func TestDriftBlockExceptedNotKilled(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("run as root")
	}
	p := sleeper(t)
	var got []*event.Alert
	e := New(Config{Rules: loadRules(t, ""),
		Drift: DriftPolicy{Rules: []DriftRule{{Name: "prod", Action: DriftBlock, Namespace: "prod"}}},
		Exceptions: []Exception{{ID: "x", Rules: []string{"runtime.drift-binary-executed"}, Namespace: "prod",
			Reason: "expected"}},
		Emit: func(a *event.Alert) { got = append(got, a) }})
	e.Process(driftEvent(p.Cmd, procStart(t, p.Process.Pid), "prod"))
	if len(got) != 0 {
		t.Fatalf("%d alerts for an excepted drift: %+v", len(got), got[0])
	}
	if s := e.Stats(); s.Killed != 0 || s.Suppressed == 0 {
		t.Fatalf("stats %+v", s)
	}
	if killedBySIGKILL(p, 500*time.Millisecond) {
		t.Fatal("an excepted drifted process was killed")
	}
}

// Every blocked hit is killed, aggregated or not, and the alert says so.
func TestDriftBlockAggregatedEachKilled(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("run as root")
	}
	var got []*event.Alert
	e := New(Config{Rules: loadRules(t, ""),
		Drift: DriftPolicy{Rules: []DriftRule{{Name: "label", Action: DriftBlock, Labels: map[string]string{"tier": "prod"}}}},
		Emit:  func(a *event.Alert) { got = append(got, a) }})
	for i := range 3 {
		p := sleeper(t)
		e.Process(driftEvent(p.Cmd, procStart(t, p.Process.Pid), "shop"))
		if !killedBySIGKILL(p, 2*time.Second) {
			t.Fatalf("hit %d: not killed", i+1)
		}
	}
	if len(got) != 1 || got[0].Action != ActionKilled {
		t.Fatalf("alerts: %d, first %+v", len(got), got)
	}
	e.Flush()
	if last := got[len(got)-1]; last.Count != 3 || last.Action != ActionKilled {
		t.Fatalf("aggregated alert: count %d action %q", last.Count, last.Action)
	}
	if s := e.Stats(); s.Killed != 3 {
		t.Fatalf("killed %d, want 3", s.Killed)
	}
}

// A kill that cannot be done is stated in the alert; a recycled pid (the
// start time does not match) or an event without a start time is never
// killed.
func TestDriftBlockKillFailures(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("run as root")
	}
	gone := exec.Command("/bin/true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		ev    func(p *exec.Cmd) *event.Event
		alive bool
		want  string
	}{
		{"already exited", func(*exec.Cmd) *event.Event {
			return driftEvent(gone, time.Now(), "prod")
		}, false, "already exited"},
		{"pid reused", func(p *exec.Cmd) *event.Event {
			return driftEvent(p, procStart(t, p.Process.Pid).Add(-3*time.Second), "prod")
		}, true, "was reused"},
		{"other program", func(p *exec.Cmd) *event.Event {
			ev := driftEvent(p, procStart(t, p.Process.Pid), "prod")
			ev.Process.Comm = "xmrig"
			return ev
		}, true, "not killed"},
		{"no start time", func(p *exec.Cmd) *event.Event {
			return driftEvent(p, time.Time{}, "prod")
		}, true, "no start time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := sleeper(t)
			var got []*event.Alert
			e := New(Config{Rules: loadRules(t, ""),
				Drift: DriftPolicy{Rules: []DriftRule{{Name: "prod", Action: DriftBlock, Namespace: "prod"}}},
				Emit:  func(a *event.Alert) { got = append(got, a) }})
			e.Process(tc.ev(p.Cmd))
			if len(got) != 1 {
				t.Fatalf("%d alerts", len(got))
			}
			a := got[0]
			msg, _ := a.Evidence["kill_error"].(string)
			if a.Action != ActionKillFailed || !strings.Contains(msg, tc.want) {
				t.Fatalf("action %q, kill_error %q: want %s", a.Action, msg, tc.want)
			}
			if tc.alive && killedBySIGKILL(p, 300*time.Millisecond) {
				t.Fatal("killed a process that is not the event's")
			}
		})
	}
}

// A kill error from the kill function (EPERM) reaches the alert; the
// default policy never kills.
func TestDriftBlockErrorAndDefault(t *testing.T) {
	calls := 0
	var got []*event.Alert
	cfg := Config{Rules: loadRules(t, ""),
		Drift: DriftPolicy{Rules: []DriftRule{{Name: "img", Action: DriftBlock, Image: "shop/*"}}},
		Emit:  func(a *event.Alert) { got = append(got, a) },
		kill: func(string, *event.Process) error {
			calls++
			return errors.New("kill 1: operation not permitted")
		}}
	e := New(cfg)
	ev := &event.Event{Kind: event.ProcessExec, Time: time.Now(),
		Process:   &event.Process{Pid: 1, Exe: "/tmp/x", Args: []string{"x"}, Drift: true},
		Container: &event.Container{ID: "c", Image: "shop/web:1"}}
	e.Process(ev)
	if calls != 1 || len(got) != 1 || got[0].Action != ActionKillFailed || got[0].Evidence["kill_error"] != "kill 1: operation not permitted" {
		t.Fatalf("calls %d, alerts %+v", calls, got)
	}
	// No policy: alert, never kill.
	cfg.Drift = DriftPolicy{}
	got = nil
	e = New(cfg)
	e.Process(ev)
	if calls != 1 || len(got) != 1 || got[0].Action != "" {
		t.Fatalf("default policy: calls %d, alerts %+v", calls, got)
	}
}
