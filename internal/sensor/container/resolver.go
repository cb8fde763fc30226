package container

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// Options configure a Resolver. The zero value suits a sensor running on
// the host itself.
type Options struct {
	// HostRoot is where the host's root filesystem is seen: "/" (the
	// default) on the host, e.g. "/host" in a pod that mounts it there.
	// Only cgroup mounts under it are used, and the default enrichers
	// read runtime state under it.
	HostRoot string
	// ProcRoot is a /proc of the host's pid namespace, where the pids
	// given to Resolve are, read for /proc/<pid>/cgroup (default:
	// HostRoot/proc).
	ProcRoot string
	// Mounts overrides the cgroup hierarchies found in
	// /proc/self/mountinfo.
	Mounts *Mounts
	// Enrichers add runtime metadata to each new container, in order;
	// nil means DefaultEnrichers(HostRoot), an empty slice none. A CRI
	// enricher (NewCRI) goes last, to ask the runtime only about what the
	// state on disk left out.
	Enrichers []Enricher
	// Pods, when set, adds pod name, namespace, labels and workload from
	// the Kubernetes API's view of the pod.
	Pods PodSource
	// CacheSize bounds each cache: resolved (cgroupV2, cgroupV1) pairs,
	// containers, and cgroup paths per hierarchy (0: 8192).
	CacheSize int
	// RewalkInterval is the least time between two walks of a hierarchy
	// when file handles cannot be used (0: one second).
	RewalkInterval time.Duration
	// RetryInterval is how often a container whose enrichment found
	// nothing yet (its runtime state was not written, the pod source had
	// not seen the pod, an enricher answered ErrPending) is enriched
	// again (0: five seconds), for up to RetryFor after it was first seen
	// (0: two minutes).
	RetryInterval, RetryFor time.Duration
	// Log receives enrichment errors at debug level; nil discards them.
	Log *slog.Logger
}

// Resolver attributes processes to containers by their cgroups. It is
// safe for concurrent use; create it with NewResolver. It holds no open
// files and starts no goroutines, so it needs no closing.
type Resolver struct {
	opts      Options
	mounts    Mounts
	unified   *hierarchy // nil when not mounted
	memory    *hierarchy // nil when not mounted
	enrichers []Enricher
	warnings  []string
	now       func() time.Time

	results *cache[key, *tracked] // nil value: a host process
	// plainMiss remembers when a cgroup that may be plain runc's "/<id>"
	// was first found without runc state (plainRunc).
	plainMiss *cache[string, time.Time]
	idMu      sync.Mutex // makes byID's get-or-create atomic
	byID      *cache[string, *tracked]
}

// key is what the sensor knows of a process's cgroups.
type key struct{ v2, v1 uint64 }

// tracked is one container: its reference from the cgroup path and its
// current description, which is replaced (never modified) when a retry
// of its enrichment learns more.
type tracked struct {
	ref   Ref
	first time.Time
	c     atomic.Pointer[event.Container]
	// retry is when to enrich again, in Unix nanoseconds: 0 once
	// complete or given up, math.MaxInt64 while a retry runs.
	retry atomic.Int64
	// tries counts enrichments that found nothing (owned by whoever set
	// retry to math.MaxInt64).
	tries uint
}

// NewResolver finds the cgroup hierarchies (in /proc/self/mountinfo,
// under opts.HostRoot) and returns a Resolver for them. It fails only
// when the mount table cannot be read; a missing hierarchy or missing
// file handle support is reported by Warnings.
func NewResolver(opts Options) (*Resolver, error) {
	if opts.HostRoot == "" {
		opts.HostRoot = "/"
	}
	if opts.ProcRoot == "" {
		opts.ProcRoot = filepath.Join(opts.HostRoot, "proc")
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = 8192
	}
	if opts.RewalkInterval <= 0 {
		opts.RewalkInterval = time.Second
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = 5 * time.Second
	}
	if opts.RetryFor <= 0 {
		opts.RetryFor = 2 * time.Minute
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	r := &Resolver{
		opts:      opts,
		enrichers: opts.Enrichers,
		now:       time.Now,
		results:   newCache[key, *tracked](opts.CacheSize),
		byID:      newCache[string, *tracked](opts.CacheSize),
		plainMiss: newCache[string, time.Time](opts.CacheSize),
	}
	if r.enrichers == nil {
		r.enrichers = DefaultEnrichers(opts.HostRoot)
	}
	if opts.Mounts != nil {
		r.mounts = *opts.Mounts
	} else {
		f, err := os.Open("/proc/self/mountinfo")
		if err != nil {
			return nil, fmt.Errorf("find cgroup mounts: %w", err)
		}
		entries, err := parseMountinfo(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("find cgroup mounts: %w", err)
		}
		r.mounts = findMounts(entries, opts.HostRoot)
	}
	for _, h := range []struct {
		m    Mount
		dst  **hierarchy
		name string
	}{
		{r.mounts.Unified, &r.unified, "cgroup2"},
		{r.mounts.Memory, &r.memory, "cgroup v1 memory"},
	} {
		if h.m.Path == "" {
			r.warnings = append(r.warnings, fmt.Sprintf("no %s hierarchy mounted under %s", h.name, opts.HostRoot))
			continue
		}
		if h.m.Root == "" {
			h.m.Root = "/"
		}
		var err error
		*h.dst, err = newHierarchy(h.m, opts.CacheSize, opts.RewalkInterval, r.now)
		if err != nil {
			r.warnings = append(r.warnings, fmt.Sprintf("%s ids resolved by walking %s: %v", h.name, h.m.Path, err))
		}
	}
	if r.unified == nil && r.memory == nil {
		r.warnings = append(r.warnings, "containers resolved from /proc/<pid>/cgroup on every event")
	}
	return r, nil
}

// Mounts returns the cgroup hierarchies the Resolver maps ids in.
func (r *Resolver) Mounts() Mounts { return r.mounts }

// Warnings says what the Resolver cannot do on this machine (a hierarchy
// not mounted, file handles not usable), for the sensor's health report.
func (r *Resolver) Warnings() []string { return slices.Clone(r.warnings) }

// Resolve returns the container of a process, or nil for a host process.
// cgroupV2 is the id of its cgroup in the unified hierarchy, cgroupV1 that
// of its cgroup v1 memory controller directory (0 when unknown), pid its
// thread-group id as the host sees it.
//
// Answers are cached by (cgroupV2, cgroupV1), host processes included, so
// a repeated pair costs one map lookup. The returned Container is shared
// by every caller and must not be modified.
func (r *Resolver) Resolve(cgroupV2, cgroupV1 uint64, pid uint32) *event.Container {
	k := key{cgroupV2, cgroupV1}
	if k != (key{}) {
		if t, ok := r.results.get(k); ok {
			return r.current(t)
		}
	}
	t, settled := r.lookup(k, pid)
	if settled {
		r.results.put(k, t)
	}
	return r.current(t)
}

// current returns t's description, enriching it again first when a retry
// is due.
func (r *Resolver) current(t *tracked) *event.Container {
	if t == nil {
		return nil
	}
	if next := t.retry.Load(); next != 0 && r.now().UnixNano() >= next &&
		t.retry.CompareAndSwap(next, math.MaxInt64) {
		r.enrich(t)
	}
	return t.c.Load()
}

// candidate is one cgroup path's answer.
type candidate struct {
	ref   Ref
	depth int
	ok    bool
}

// lookup finds the container for k, or for pid when k cannot tell.
// settled reports that the answer follows from k alone and may be cached
// under it.
func (r *Resolver) lookup(k key, pid uint32) (t *tracked, settled bool) {
	cands, settled := r.fromIDs(k)
	if settled {
		return r.track(best(cands)), true
	}
	// An id could not be mapped now, or there is none: ask /proc. What it
	// says is the process's cgroup now, which is not necessarily the one
	// the ids name (runc's init joins the container's cgroup after
	// starting in the runtime's); it is cached under k only when a stat
	// shows the paths are the ids' directories.
	lines := r.procCgroup(pid)
	if k != (key{}) && r.learn(k, lines) {
		if cands, settled = r.fromIDs(k); settled {
			return r.track(best(cands)), true
		}
	}
	// Keep what the ids said: /proc may be gone already.
	for _, unified := range []bool{true, false} {
		for _, l := range lines {
			if l.unified == unified {
				c, _ := r.candidate(l.path)
				cands = append(cands, c)
			}
		}
	}
	return r.track(best(cands)), false
}

// fromIDs maps k's ids in the hierarchies that are mounted. settled
// reports that at least one was consulted and each consulted id was
// found or is gone for good.
func (r *Resolver) fromIDs(k key) (cands []candidate, settled bool) {
	consulted := false
	settled = true
	for _, x := range []struct {
		h  *hierarchy
		id uint64
	}{{r.unified, k.v2}, {r.memory, k.v1}} {
		if x.h == nil || x.id == 0 {
			continue
		}
		consulted = true
		switch p, res := x.h.path(x.id); res {
		case found:
			c, unsure := r.candidate(p)
			cands = append(cands, c)
			if unsure {
				settled = false
			}
		case unknown:
			settled = false
		}
	}
	return cands, settled && consulted
}

// learn records the paths /proc showed for k's ids when they are the
// ids' directories, and reports whether it learned any.
func (r *Resolver) learn(k key, lines []procCgroup) bool {
	learned := false
	for _, l := range lines {
		var h *hierarchy
		var id uint64
		switch {
		case l.unified:
			h, id = r.unified, k.v2
		case hasController(l.controllers, "memory"):
			h, id = r.memory, k.v1
		}
		if h != nil && id != 0 && h.inode(l.path) == id {
			h.paths.put(id, pathEntry{l.path, true})
			learned = true
		}
	}
	return learned
}

// procCgroup reads /proc/<pid>/cgroup; nil when the process is gone.
func (r *Resolver) procCgroup(pid uint32) []procCgroup {
	if pid == 0 {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(r.opts.ProcRoot, strconv.FormatUint(uint64(pid), 10), "cgroup"))
	if err != nil {
		return nil
	}
	return parseProcCgroup(data)
}

// candidate is what the cgroup path p says, or failing that, runc's
// state (plainRunc). unsure reports an answer that may change soon.
func (r *Resolver) candidate(p string) (c candidate, unsure bool) {
	ref, depth, ok := parsePath(p)
	if ok || ref.Monitor {
		return candidate{ref, depth, ok}, false
	}
	if ref, ok, unsure := r.plainRunc(p); ok {
		return candidate{ref, 1, true}, false
	} else if unsure {
		return candidate{}, true
	}
	return candidate{}, false
}

// plainRuncGrace is how long a cgroup that may be plain runc's stays
// unsure without runc state: runc writes state.json only after its init
// has joined the cgroup.
const plainRuncGrace = 10 * time.Second

// plainRunc answers for "/<id>", the cgroup runc creates for a container
// whose spec has no cgroups path: only runc's state tells it from a host
// cgroup. It is a container when a state directory holds <id>/state.json
// naming that cgroup. Until then, for plainRuncGrace after the path is
// first seen, unsure reports that the answer may still change.
func (r *Resolver) plainRunc(p string) (ref Ref, ok, unsure bool) {
	id := strings.TrimPrefix(p, "/")
	if id == "" || strings.Contains(id, "/") || !isRuncID(id) || isSystemdUnit(id) {
		return Ref{}, false, false
	}
	for _, d := range DefaultStateDirs() {
		data, err := os.ReadFile(filepath.Join(r.opts.HostRoot, d.Path, id, "state.json"))
		if err == nil && stateHasCgroup(data, p) {
			return Ref{ID: id, Runtime: d.Runtime}, true, false
		}
	}
	first, seen := r.plainMiss.get(p)
	if !seen {
		first = r.now()
		r.plainMiss.put(p, first)
	}
	return Ref{}, false, r.now().Sub(first) < plainRuncGrace
}

// isSystemdUnit reports a name systemd gives the cgroups it creates.
func isSystemdUnit(name string) bool {
	for _, suffix := range []string{".slice", ".scope", ".service", ".mount", ".socket", ".swap"} {
		if strings.HasSuffix(name, suffix) {
			return true
		}
	}
	return false
}

// best picks the most deeply nested container among a process's cgroup
// paths, the earliest of equals (the unified hierarchy comes first). On
// a cgroup v1 host the runtime may leave the unified hierarchy alone, so
// the memory controller's path is the only one that names the container.
func best(cands []candidate) *Ref {
	var b *candidate
	for i := range cands {
		if c := &cands[i]; c.ok && (b == nil || c.depth > b.depth) {
			b = c
		}
	}
	if b == nil {
		return nil
	}
	return &b.ref
}

// track returns the tracked container for ref, enriching it the first
// time it is seen; nil for nil.
func (r *Resolver) track(ref *Ref) *tracked {
	if ref == nil {
		return nil
	}
	r.idMu.Lock()
	t, ok := r.byID.get(ref.ID)
	if !ok {
		t = &tracked{ref: *ref, first: r.now()}
		t.c.Store(&event.Container{ID: ref.ID, Runtime: ref.Runtime, PodUID: ref.PodUID})
		t.retry.Store(math.MaxInt64) // callers in the meantime see the bare reference
		r.byID.put(ref.ID, t)
	}
	r.idMu.Unlock()
	if !ok {
		r.enrich(t)
	}
	return t
}

// enrich describes t afresh through the enrichers and the pod source and
// schedules a retry when they did not know it yet.
func (r *Resolver) enrich(t *tracked) {
	c := &event.Container{ID: t.ref.ID, Runtime: t.ref.Runtime, PodUID: t.ref.PodUID}
	known, pending := len(r.enrichers) == 0, false
	for _, e := range r.enrichers {
		ok, err := e.Enrich(c)
		switch {
		case errors.Is(err, ErrPending):
			pending = true // a lookup runs in the background (the CRI's)
		case err != nil:
			r.opts.Log.Debug("enrich container", "id", c.ID, "err", err)
		}
		known = known || ok
	}
	known = known && !pending
	if r.opts.Pods != nil && c.PodUID != "" {
		p, ok := r.opts.Pods.Pod(c.PodUID)
		if ok {
			applyPod(c, p)
		}
		known = known && ok
	}
	t.c.Store(c)
	now := r.now()
	if known || now.Sub(t.first) >= r.opts.RetryFor {
		t.retry.Store(0)
	} else {
		// A container's first events (runc init's) come before runc writes
		// its state: retry soon, backing off to RetryInterval.
		wait := min(r.opts.RetryInterval, 10*time.Millisecond<<min(t.tries, 16))
		t.tries++
		t.retry.Store(now.Add(wait).UnixNano())
	}
}
