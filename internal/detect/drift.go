package detect

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/sys/unix"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/sensor/procfs"
)

// Drift actions.
const (
	DriftAlert  = "alert"  // raise the drift alert (the default)
	DriftIgnore = "ignore" // expected drift: stay quiet
	DriftBlock  = "block"  // alert and kill the drifted process
)

// DriftPolicy decides, per container, what binary drift does. The first
// rule whose scope matches wins; no match means alert. Block is opt-in:
// only a rule that says block kills anything.
type DriftPolicy struct {
	Rules []DriftRule `yaml:"rules" json:"rules"`
}

// DriftRule scopes one action. Empty scope fields match anything; values
// are globs.
type DriftRule struct {
	Name      string            `yaml:"name" json:"name"`
	Action    string            `yaml:"action" json:"action"`
	Cluster   string            `yaml:"cluster" json:"cluster,omitempty"`
	Namespace string            `yaml:"namespace" json:"namespace,omitempty"`
	Image     string            `yaml:"image" json:"image,omitempty"`
	Labels    map[string]string `yaml:"labels" json:"labels,omitempty"`
}

// LoadDriftPolicy reads a policy file (YAML: rules: [...]).
func LoadDriftPolicy(path string) (DriftPolicy, error) {
	data, err := readLimited(path)
	if err != nil {
		return DriftPolicy{}, err
	}
	var p DriftPolicy
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		return DriftPolicy{}, fmt.Errorf("drift policy %s: %w", path, err)
	}
	return p, p.Validate()
}

// Validate checks every rule's action and patterns.
func (p DriftPolicy) Validate() error {
	var errs []error
	for i, r := range p.Rules {
		switch r.Action {
		case DriftAlert, DriftIgnore, DriftBlock:
		default:
			errs = append(errs, fmt.Errorf("drift rule %d (%s): action %q: want alert, ignore or block", i+1, r.Name, r.Action))
		}
	}
	return errors.Join(errs...)
}

// action returns what the policy says for a drifted exec.
func (p DriftPolicy) action(cluster string, c *event.Container) string {
	if c == nil {
		c = &event.Container{}
	}
	for _, r := range p.Rules {
		if r.Cluster != "" && !globMatch(r.Cluster, cluster) ||
			r.Namespace != "" && !globMatch(r.Namespace, c.Namespace) ||
			r.Image != "" && !globMatch(r.Image, c.Image) {
			continue
		}
		labelsOK := true
		for k, want := range r.Labels {
			if got, ok := c.Labels[k]; !ok || !globMatch(want, got) {
				labelsOK = false
				break
			}
		}
		if labelsOK {
			return r.Action
		}
	}
	return DriftAlert
}

// Drift block outcomes, in Alert.Action. A failed kill also names its
// cause in the alert's evidence, under "kill_error".
const (
	ActionKilled     = "killed"
	ActionKillFailed = "kill_failed"
)

// block kills the drifted process of alert a (an alert that no exception
// suppressed) and records the outcome on the alert.
func (e *Engine) block(a *event.Alert, p *event.Process) {
	if err := e.cfg.kill(e.cfg.ProcRoot, p); err != nil {
		a.Action = ActionKillFailed
		if a.Evidence == nil {
			a.Evidence = map[string]any{}
		}
		a.Evidence["kill_error"] = err.Error()
		e.cfg.Log.Warn("drift block: could not kill the process", "rule", a.Rule, "container", a.ContainerID, "err", err)
		return
	}
	a.Action = ActionKilled
	e.stats.Killed++
}

// startSlack is how far /proc's start time of a process may be from the
// event's: /proc counts clock ticks (10 ms), and the sensor's and the
// engine's readings of the wall time at boot may differ by what NTP
// slewed in between. A recycled pid starts much later than that.
const startSlack = 100 * time.Millisecond

// killProcess sends SIGKILL through a pidfd, only when the pid still is
// the process of the event: same start time (since boot) and same comm.
// The pidfd is opened first and /proc read after, so the checked process
// is the one signalled, or the signal finds no one: a recycled pid is
// never hit. Without a start time to check, nothing is killed.
func killProcess(procRoot string, p *event.Process) error {
	if p == nil || p.Pid == 0 {
		return errors.New("no process")
	}
	if p.StartTime.IsZero() {
		return fmt.Errorf("process %d: the event has no start time to verify the pid against: not killed", p.Pid)
	}
	fd, err := unix.PidfdOpen(int(p.Pid), 0)
	if errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("process %d already exited", p.Pid)
	}
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", p.Pid, err)
	}
	defer unix.Close(fd)
	stat, err := os.ReadFile(procRoot + "/" + strconv.Itoa(int(p.Pid)) + "/stat")
	if err != nil {
		return fmt.Errorf("process %d already exited: %w", p.Pid, err)
	}
	now, err := procfs.ParseStat(stat)
	if err != nil {
		return fmt.Errorf("process %d: %w: not killed", p.Pid, err)
	}
	if d := time.Duration(int64(now.StartBoottime) - bootNanos(p.StartTime)); d > startSlack || d < -startSlack {
		return fmt.Errorf("pid %d was reused (now %q, started %v apart from the drifted process): not killed", p.Pid, now.Comm, d.Abs().Round(time.Millisecond))
	}
	if p.Comm != "" && now.Comm != p.Comm {
		return fmt.Errorf("pid %d now runs %q, not %q: not killed", p.Pid, now.Comm, p.Comm)
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("process %d already exited", p.Pid)
		}
		return fmt.Errorf("kill %d: %w", p.Pid, err)
	}
	return nil
}

// bootNanos converts a wall time to CLOCK_BOOTTIME nanoseconds, the
// clock of process start times.
func bootNanos(t time.Time) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return t.UnixNano() - (time.Now().UnixNano() - ts.Nano())
}
