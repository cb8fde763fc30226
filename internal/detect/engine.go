package detect

import (
	"context"
	"crypto/rand"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/vigil-sec/vigil/internal/audit"
	"github.com/vigil-sec/vigil/internal/event"
)

// Config configures an Engine.
type Config struct {
	Rules *Ruleset
	// Exceptions add to those the rule files declare.
	Exceptions []Exception
	Drift      DriftPolicy
	// Cluster and Node stamp every alert.
	Cluster, Node string
	// Emit receives every new alert and, at most every UpdateInterval,
	// the updated count of an aggregated one (same ID). It is called with
	// the engine's lock held, from Process or Run: it must not call back
	// into the engine, and should be quick.
	Emit func(*event.Alert)
	// UpdateInterval is how often aggregated alerts are re-emitted with
	// their new count (default 30s); AggregateWindow is how long a quiet
	// alert keeps aggregating (default 1h).
	UpdateInterval, AggregateWindow time.Duration
	// ProcRoot is the host's /proc, for CPU sampling and drift blocking.
	ProcRoot string
	// CPUInterval is how often watched processes are sampled (default 5s).
	CPUInterval time.Duration
	Log         *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// kill replaces killProcess in tests.
	kill func(procRoot string, p *event.Process) error
}

// Engine turns events into alerts. Process is safe for concurrent use.
type Engine struct {
	cfg  Config
	rs   *Ruleset
	excs []Exception

	mu       sync.Mutex
	v        view
	set      []uint64 // candidate rules of the event under evaluation
	aggs     map[aggKey]*aggregate
	seqs     map[groupKey][]*partial
	live     map[*compiled]int // partial sequences under way, per rule
	bursts   map[groupKey]*burstState
	cpu      map[uint32]*cpuWatch
	stats    Stats
	lastTick time.Time
}

// Stats counts what the engine did.
type Stats struct {
	Events      uint64 `json:"events_total"`
	Matches     uint64 `json:"matches_total"`
	Alerts      uint64 `json:"alerts_total"`
	Suppressed  uint64 `json:"suppressed_total"`
	Aggregated  uint64 `json:"aggregated_total"`
	Killed      uint64 `json:"killed_total"`
	CPUWatched  int    `json:"cpu_watched"`
	StateEvicts uint64 `json:"state_evictions_total"`
}

// Bounds on the engine's state, whatever the load.
const (
	maxAggregates = 16384
	maxGroups     = 16384
	maxPartials   = 8
	maxBurstHits  = 1024
	maxCPUWatch   = 1024
)

// aggKey is what repeated hits aggregate on: the rule, the container (or
// node) and the program, as executable and argv[0] (one busybox binary is
// many programs).
type aggKey struct{ rule, scope, exe string }

type aggregate struct {
	alert *event.Alert
	dirty bool
}

type groupKey struct{ rule, group string }

// New returns an engine for cfg.Rules.
func New(cfg Config) *Engine {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.UpdateInterval <= 0 {
		cfg.UpdateInterval = 30 * time.Second
	}
	if cfg.AggregateWindow <= 0 {
		cfg.AggregateWindow = time.Hour
	}
	if cfg.CPUInterval <= 0 {
		cfg.CPUInterval = 5 * time.Second
	}
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.kill == nil {
		cfg.kill = killProcess
	}
	if cfg.Emit == nil {
		cfg.Emit = func(*event.Alert) {}
	}
	return &Engine{
		cfg:    cfg,
		rs:     cfg.Rules,
		excs:   append(cfg.Rules.Exceptions(), cfg.Exceptions...),
		aggs:   map[aggKey]*aggregate{},
		seqs:   map[groupKey][]*partial{},
		live:   map[*compiled]int{},
		bursts: map[groupKey]*burstState{},
		cpu:    map[uint32]*cpuWatch{},
	}
}

// SetExceptions replaces the exceptions given at run time (those a server
// created from alerts); the rule files' own and Config.Exceptions stay.
func (e *Engine) SetExceptions(xs []Exception) {
	e.mu.Lock()
	defer e.mu.Unlock()
	base := append(e.rs.Exceptions(), e.cfg.Exceptions...)
	e.excs = append(base, xs...)
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.stats
	s.CPUWatched = len(e.cpu)
	return s
}

// Process evaluates one event against every rule for its kind.
func (e *Engine) Process(ev *event.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stats.Events++
	if ev.Kind == event.ProcessExit && ev.Process != nil {
		delete(e.cpu, ev.Process.Pid)
	}
	ix := e.rs.byKind[ev.Kind]
	if ix == nil {
		return
	}
	v := &e.v
	v.reset(ev)
	defer v.reset(nil)
	if cap(e.set) < ix.setWords() {
		e.set = make([]uint64, ix.setWords())
	}
	set := e.set[:ix.setWords()]
	ix.candidates(v, set)
	ix.each(set, func(r *compiled) {
		switch {
		case r.steps != nil:
			e.sequence(r, v)
		case !slices.Contains(r.Kinds, ev.Kind):
		case !r.m.match(v):
		case r.Burst != nil:
			e.stats.Matches++
			e.burst(r, v)
		case r.SustainedCPU != nil:
			e.stats.Matches++
			e.watchCPU(r, v)
		default:
			e.stats.Matches++
			e.fire(r, v, nil)
		}
	})
}

// Run re-emits aggregated alerts whose count changed and samples watched
// processes' CPU until ctx is done, then flushes what is pending.
func (e *Engine) Run(ctx context.Context) error {
	tick := min(e.cfg.UpdateInterval, e.cfg.CPUInterval)
	t := time.NewTicker(tick)
	defer t.Stop()
	lastCPU := e.cfg.Now()
	for {
		select {
		case <-ctx.Done():
			e.Flush()
			return nil
		case <-t.C:
			now := e.cfg.Now()
			if now.Sub(lastCPU) >= e.cfg.CPUInterval {
				e.sampleCPU(now)
				lastCPU = now
			}
			e.flushDue(now, false)
		}
	}
}

// Flush emits every aggregated alert whose count changed since it was
// last emitted.
func (e *Engine) Flush() { e.flushDue(e.cfg.Now(), true) }

func (e *Engine) flushDue(now time.Time, all bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !all && now.Sub(e.lastTick) < e.cfg.UpdateInterval {
		return
	}
	e.lastTick = now
	for k, a := range e.aggs {
		if a.dirty {
			a.dirty = false
			e.emit(a.alert)
		}
		if now.Sub(a.alert.LastSeen) > e.cfg.AggregateWindow {
			delete(e.aggs, k)
		}
	}
}

// fire raises (or aggregates into) the alert of rule r for the event in v.
// extra evidence (sequence steps, burst members, CPU use) is merged in.
func (e *Engine) fire(r *compiled, v *view, extra map[string]any) {
	now := e.cfg.Now()
	at := v.e.Time
	if at.IsZero() {
		at = now
	}
	drift := ""
	if r.Drift {
		if drift = e.cfg.Drift.action(e.cfg.Cluster, v.e.Container); drift == DriftIgnore {
			e.stats.Suppressed++
			return
		}
	}
	a := e.newAlert(r, v, at)
	for k, val := range extra {
		if a.Evidence == nil {
			a.Evidence = map[string]any{}
		}
		a.Evidence[k] = val
	}
	for i := range e.excs {
		if e.excs[i].Matches(a, now) {
			e.stats.Suppressed++
			return
		}
	}
	// Block only what is not excepted, and kill every hit, aggregated or
	// not; hits aggregate with those that ended the same way.
	if drift == DriftBlock {
		e.block(a, v.e.Process)
	}
	key := aggKey{rule: r.ID, scope: a.ContainerID, exe: procExe(a.Process) + "\x00" + basename(first(argsOf(a.Process)))}
	if a.Action != "" {
		key.exe += "\x00" + a.Action
	}
	switch {
	case v.e.Audit != nil:
		// One user doing the same to one object again: one alert. A
		// workload and the pods its controllers make for it are one
		// object: one rollout, one alert.
		// A burst is the user's, whatever object ended it; each exec
		// command is its own.
		ref := v.ref()
		key.scope, key.exe = "user:"+a.User.Name, ref.Resource+"/"+ref.Subresource+"/"+ref.Namespace+"/"+ref.Name
		switch {
		case r.Burst != nil:
			key.exe = "burst"
		case a.Workload != "":
			key.exe = "workload:" + a.Workload
		case ref.Subresource == "exec":
			key.exe += "\x00" + audit.ExecCommand(v.audit())
		}
	case key.scope == "":
		key.scope = "node:" + a.Node
	}
	if agg, ok := e.aggs[key]; ok && at.Sub(agg.alert.LastSeen) <= e.cfg.AggregateWindow {
		agg.alert.Count++
		if at.After(agg.alert.LastSeen) {
			agg.alert.LastSeen = at
		}
		agg.dirty = true
		e.stats.Aggregated++
		return
	}
	if len(e.aggs) >= maxAggregates {
		e.evictAggregate()
	}
	e.aggs[key] = &aggregate{alert: a}
	e.stats.Alerts++
	e.emit(a)
}

func (e *Engine) emit(a *event.Alert) {
	c := *a
	e.cfg.Emit(&c)
}

// evictAggregate forgets the alert seen longest ago, emitting its final
// count first.
func (e *Engine) evictAggregate() {
	var oldest aggKey
	var at time.Time
	for k, a := range e.aggs {
		if at.IsZero() || a.alert.LastSeen.Before(at) {
			oldest, at = k, a.alert.LastSeen
		}
	}
	if a := e.aggs[oldest]; a != nil && a.dirty {
		e.emit(a.alert)
	}
	delete(e.aggs, oldest)
	e.stats.StateEvicts++
}

func procExe(p *event.Process) string {
	if p == nil {
		return ""
	}
	return p.Exe
}

func argsOf(p *event.Process) []string {
	if p == nil {
		return nil
	}
	return p.Args
}

// newAlert builds the alert with the full attribution of the event.
func (e *Engine) newAlert(r *compiled, v *view, at time.Time) *event.Alert {
	ev := v.e
	a := &event.Alert{
		ID:          ulid.MustNew(ulid.Timestamp(at), rand.Reader).String(),
		Rule:        r.ID,
		Title:       r.Title,
		Severity:    r.Severity,
		Tactic:      r.Tactic,
		Techniques:  r.Techniques,
		Status:      event.StatusActive,
		FirstSeen:   at,
		LastSeen:    at,
		Count:       1,
		Source:      sourceOf(r.ID),
		Cluster:     e.cfg.Cluster,
		Node:        ev.Node,
		Description: r.Description,
		Remediation: strings.TrimSpace(r.Remediation),
		Tags:        r.Tags,
	}
	if a.Node == "" && ev.Audit == nil {
		a.Node = e.cfg.Node
	}
	if au := ev.Audit; au != nil {
		attributeAudit(a, au)
	}
	if c := ev.Container; c != nil {
		a.ContainerID, a.Container, a.Image = c.ID, c.Name, c.Image
		a.Pod, a.Namespace, a.Workload, a.Labels = c.Pod, c.Namespace, c.Workload, c.Labels
	}
	if ev.Process != nil {
		p := *ev.Process
		a.Process = &p
	}
	if len(r.evidence) > 0 {
		a.Evidence = make(map[string]any, len(r.evidence))
		for _, f := range r.evidence {
			a.Evidence[f.name] = f.value(v)
		}
	}
	return a
}

// attributeAudit names the user and the object of a control-plane alert:
// its namespace, and the pod or workload it is about.
func attributeAudit(a *event.Alert, au *event.Audit) {
	a.User = &event.User{Name: au.User.Username, Groups: au.User.Groups}
	ref := au.ObjectRef
	if ref == nil {
		return
	}
	a.Namespace = ref.Namespace
	switch ref.Resource {
	case "pods":
		a.Pod = ref.Name
	case "deployments", "daemonsets", "statefulsets", "replicasets", "jobs", "cronjobs":
		a.Workload = workloadKinds[ref.Resource] + "/" + ref.Namespace + "/" + ref.Name
	}
	if o := au.Origin; o != nil {
		// A controller acted for a workload: the alert is the workload's,
		// and the person's who last wrote it, when known.
		a.Workload = o.Workload
		if o.User.Username != "" {
			a.User = &event.User{Name: o.User.Username, Groups: o.User.Groups}
		}
	}
}

// workloadKinds maps workload resources to their kinds.
var workloadKinds = map[string]string{
	"deployments": "Deployment", "daemonsets": "DaemonSet", "statefulsets": "StatefulSet",
	"replicasets": "ReplicaSet", "jobs": "Job", "cronjobs": "CronJob",
}

func sourceOf(id string) string {
	if i := strings.IndexByte(id, '.'); i > 0 {
		return id[:i]
	}
	return ""
}

// group is the unit stateful rules count in: the container, or on the
// host the process tree (its oldest ancestor below init and the runtime).
func group(v *view, by string) string {
	if by == "user" || v.e.Audit != nil {
		return "user:" + v.audit().User.Username // control-plane events: per identity
	}
	if by != "process_tree" {
		if id := v.ctr().ID; id != "" {
			return id
		}
	}
	root := v.proc().ExecID
	if root == "" {
		root = "pid:" + strconv.FormatUint(uint64(v.proc().Pid), 10)
	}
	for _, a := range v.ancestry() {
		if a.Pid <= 1 || isRuntime(basename(a.Exe)) {
			break
		}
		root = a.ExecID
		if root == "" {
			root = "pid:" + strconv.FormatUint(uint64(a.Pid), 10)
		}
	}
	if id := v.ctr().ID; id != "" {
		return id + "/" + root
	}
	return root
}

// isRuntime names the processes a host process tree hangs from: init, the
// container runtimes, kubelet and sshd (each session is its own tree).
func isRuntime(name string) bool {
	switch name {
	case "systemd", "init", "kubelet", "sshd", "tini", "dumb-init":
		return true
	}
	return isContainerRuntime(name)
}
