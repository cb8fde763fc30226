package detect

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"

	"go.yaml.in/yaml/v3"
	"golang.org/x/sys/unix"

	"github.com/vigil-sec/vigil/internal/event"
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

// killProcess sends SIGKILL through a pidfd, after checking that the pid
// still runs the executable the event saw (comm is what the kernel keeps
// of its name), so a recycled pid is never hit.
func killProcess(procRoot string, p *event.Process) error {
	if p == nil || p.Pid == 0 {
		return errors.New("no process")
	}
	fd, err := unix.PidfdOpen(int(p.Pid), 0)
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", p.Pid, err)
	}
	defer unix.Close(fd)
	if p.Comm != "" {
		comm, err := os.ReadFile(procRoot + "/" + strconv.Itoa(int(p.Pid)) + "/comm")
		if err != nil {
			return fmt.Errorf("process %d is gone: %w", p.Pid, err)
		}
		if string(bytes.TrimSpace(comm)) != p.Comm {
			return fmt.Errorf("pid %d now runs %q, not %q: not killed", p.Pid, bytes.TrimSpace(comm), p.Comm)
		}
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil {
		return fmt.Errorf("kill %d: %w", p.Pid, err)
	}
	return nil
}
