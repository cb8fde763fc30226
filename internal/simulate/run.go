package simulate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// AlertSource tells which alerts reached the server.
type AlertSource interface {
	// Alerts returns the alerts raised for the container containerID
	// and last seen at or after since. It is called repeatedly while a
	// scenario waits; an error ends the wait.
	Alerts(ctx context.Context, containerID string, since time.Time) ([]Alert, error)
}

// AuditAlertSource is an AlertSource that also reads the control plane's
// alerts, which control-plane scenarios need.
type AuditAlertSource interface {
	AlertSource
	// AuditAlerts returns the alerts raised from the API server's audit
	// log (no container, no node) last seen at or after since, with
	// Object set.
	AuditAlerts(ctx context.Context, since time.Time) ([]Alert, error)
}

// Alert is what a scenario checks of an alert on the server.
type Alert struct {
	Rule string
	// Namespace and Pod are the workload the alert names, when the
	// sensor knew it.
	Namespace, Pod string
	// Object is the API object a control-plane alert is about, as
	// ObjectRef names it ("" for runtime alerts).
	Object string
}

// Config configures Run.
type Config struct {
	Backend Backend
	Alerts  AlertSource
	// Timeout bounds the wait for a scenario's alerts after its actions
	// (default 60s).
	Timeout time.Duration
	// Poll is the interval between questions to Alerts (default 100ms);
	// it bounds the latency's precision.
	Poll time.Duration
	// Warmup is how long victims run before the first attack (default
	// 0). The sensor learns a new container's pod and image from the
	// runtime's state, which a container's very first processes may not
	// find yet; a few seconds let it, as with a pod attacked in
	// production, so alerts carry the pod and namespace too.
	Warmup time.Duration
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
	// RealMetadata sends lateral-movement's requests to the cloud's real
	// metadata service instead of a fake one on the victim's loopback
	// (`--real-metadata`, for users' own cloud clusters only: never set in
	// tests or CI). The victim then gets no NET_ADMIN sidecar.
	RealMetadata bool
}

// Result statuses.
const (
	Pass    = "pass"
	Fail    = "fail"
	Skipped = "skipped"
)

// Result is one scenario's outcome.
type Result struct {
	Scenario string `json:"scenario"`
	// Status is pass, fail or skipped.
	Status string `json:"result"`
	// Reason explains a failure or a skip.
	Reason      string `json:"reason,omitempty"`
	ContainerID string `json:"container_id,omitempty"`
	// Namespace and Pod are the victim as its alerts name it ("" when
	// the sensor did not know the pod).
	Namespace string       `json:"namespace,omitempty"`
	Pod       string       `json:"pod,omitempty"`
	Rules     []RuleResult `json:"rules"`
	// Latency is the slowest expected rule's: from its step to the
	// alert being visible through the API. Zero unless every rule was seen.
	Latency time.Duration `json:"latency_ns"`
}

// RuleResult is one expected rule of a scenario.
type RuleResult struct {
	Rule string `json:"rule"`
	Seen bool   `json:"seen"`
	// Latency is from the step that should raise the rule to the alert
	// being visible; zero when not seen.
	Latency time.Duration `json:"latency_ns,omitempty"`
}

// Run runs scenarios and returns one Result per scenario. It starts every
// victim first, waits until the oldest has run for cfg.Warmup (a victim is
// a workload that has been running for a while, fully known to the
// sensor, when the attacker arrives), then runs the attacks one after the
// other, removing each victim when its scenario is done. A scenario that
// fails does not stop the others; cancelling ctx (Ctrl-C) stops the run,
// every victim is removed all the same, and the scenarios not finished
// fail as interrupted. The error is for a run that could not start at
// all.
func Run(ctx context.Context, cfg Config, scenarios []*Scenario) ([]Result, error) {
	if cfg.Backend == nil || cfg.Alerts == nil {
		return nil, errors.New("simulate: a backend and an alert source are required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if err := cfg.Backend.Check(); err != nil {
		return nil, err
	}
	if c, ok := cfg.Backend.(io.Closer); ok {
		defer func() {
			if err := c.Close(); err != nil {
				cfg.Logf("%s backend: cleanup: %v", cfg.Backend.Name(), err)
			}
		}()
	}
	results := make([]Result, len(scenarios))
	victims := make([]Victim, len(scenarios))
	remove := func(i int) {
		if victims[i] == nil {
			return
		}
		err := victims[i].Remove()
		victims[i] = nil
		if err != nil {
			r := &results[i]
			cfg.Logf("scenario %s: cleanup: %v", r.Scenario, err)
			if r.Status != Fail {
				r.Status, r.Reason = Fail, fmt.Sprintf("cleanup: %v", err)
			}
		}
	}
	defer func() {
		for i := range victims {
			remove(i)
		}
	}()
	// Alerts are matched by container id, unique to this run; since
	// only keeps the server's work small, and a second of slack absorbs
	// clock differences between the node and the server.
	since := time.Now().Add(-time.Second)
	var first time.Time
	if cfg.RealMetadata {
		scenarios = withoutLocalAddresses(scenarios)
	}
	for i, sc := range scenarios {
		r := &results[i]
		r.Scenario = sc.ID
		for _, id := range sc.Rules {
			r.Rules = append(r.Rules, RuleResult{Rule: id})
		}
		if reason := cfg.Backend.Skip(sc); reason != "" {
			r.Status, r.Reason = Skipped, reason
			continue
		}
		if ctx.Err() != nil {
			continue
		}
		var v Victim
		var err error
		if ss, ok := cfg.Backend.(ScenarioStarter); ok {
			v, err = ss.StartScenario(ctx, sc)
		} else {
			v, err = cfg.Backend.Start(ctx, sc.Victim)
		}
		if err != nil {
			r.Status, r.Reason = Fail, fmt.Sprintf("start the victim: %v", err)
			continue
		}
		victims[i], r.ContainerID = v, v.ContainerID()
		if first.IsZero() {
			first = time.Now()
		}
		cfg.Logf("scenario %s: victim %s started", sc.ID, r.ContainerID)
	}
	if wait := time.Until(first.Add(cfg.Warmup)); !first.IsZero() && wait > 0 {
		cfg.Logf("victims running; attacks start in %v", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	for i, sc := range scenarios {
		r := &results[i]
		if r.Status != "" {
			continue
		}
		if ctx.Err() != nil {
			r.Status, r.Reason = Fail, "interrupted"
			continue
		}
		runOne(ctx, cfg, sc, victims[i], since, r)
		remove(i)
	}
	return results, nil
}

func runOne(ctx context.Context, cfg Config, sc *Scenario, v Victim, since time.Time, r *Result) {
	cfg.Logf("scenario %s: %s", sc.ID, sc.Summary)
	s := &Session{Victim: v, Logf: cfg.Logf, RealMetadata: cfg.RealMetadata}
	start := time.Now()
	if err := sc.Run(ctx, s); err != nil {
		r.Status, r.Reason = Fail, fmt.Sprintf("attack: %v", err)
		return
	}
	for _, id := range sc.Rules {
		s.Step(id) // a rule no step named is timed from the end of the actions
	}
	deadline := time.Now().Add(cfg.Timeout)
	cfg.Logf("scenario %s: actions done in %v; waiting up to %v for %s", sc.ID, time.Since(start).Round(time.Millisecond), cfg.Timeout, strings.Join(sc.Rules, ", "))
	for {
		alerts, err := readAlerts(ctx, cfg.Alerts, sc, s, since)
		now := time.Now()
		var rules []string
		for _, a := range alerts {
			rules = append(rules, a.Rule)
			if r.Pod == "" && a.Pod != "" {
				r.Namespace, r.Pod = a.Namespace, a.Pod
			}
		}
		if err != nil && ctx.Err() == nil {
			r.Status, r.Reason = Fail, fmt.Sprintf("read alerts: %v", err)
			return
		}
		missing := 0
		for i := range r.Rules {
			rr := &r.Rules[i]
			if !rr.Seen && slices.Contains(rules, rr.Rule) {
				rr.Seen = true
				t, _ := s.stepTime(rr.Rule)
				rr.Latency = now.Sub(t)
			}
			if !rr.Seen {
				missing++
			}
		}
		if missing == 0 {
			r.Status = Pass
			for _, rr := range r.Rules {
				r.Latency = max(r.Latency, rr.Latency)
			}
			return
		}
		if ctx.Err() != nil {
			r.Status, r.Reason = Fail, "interrupted"
			return
		}
		if now.After(deadline) {
			var miss []string
			for _, rr := range r.Rules {
				if !rr.Seen {
					miss = append(miss, rr.Rule)
				}
			}
			r.Status, r.Reason = Fail, fmt.Sprintf("no alert within %v for %s", cfg.Timeout, strings.Join(miss, ", "))
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(cfg.Poll):
		}
	}
}

// readAlerts asks for a scenario's alerts: its container's, or for a
// control-plane scenario the audit alerts about the objects it touched.
func readAlerts(ctx context.Context, src AlertSource, sc *Scenario, s *Session, since time.Time) ([]Alert, error) {
	if !sc.ControlPlane {
		return src.Alerts(ctx, s.Victim.ContainerID(), since)
	}
	as, ok := src.(AuditAlertSource)
	if !ok {
		return nil, errors.New("the alert source cannot read control-plane alerts")
	}
	all, err := as.AuditAlerts(ctx, since)
	var mine []Alert
	for _, a := range all {
		if s.touched(a.Object) {
			mine = append(mine, a)
		}
	}
	return mine, err
}

func errUnknown(name string, all []*Scenario) error {
	ids := []string{}
	for _, sc := range all {
		ids = append(ids, sc.ID)
	}
	if name == "" {
		return fmt.Errorf("name a scenario: %s or all", strings.Join(ids, ", "))
	}
	return fmt.Errorf("unknown scenario %q: want %s or all", name, strings.Join(ids, ", "))
}

// withoutLocalAddresses copies the scenarios that would give their victim
// local addresses without them: with the real metadata service, nothing
// impersonates it.
func withoutLocalAddresses(scenarios []*Scenario) []*Scenario {
	out := make([]*Scenario, len(scenarios))
	for i, sc := range scenarios {
		if len(sc.LocalAddresses) > 0 {
			c := *sc
			c.LocalAddresses = nil
			sc = &c
		}
		out[i] = sc
	}
	return out
}
