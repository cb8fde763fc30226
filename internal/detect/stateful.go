package detect

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// partial is a sequence under way in one group: the steps matched so far.
type partial struct {
	next  int
	key   string
	start time.Time
	seen  []string // one line per matched step, for the alert's evidence
}

// sequence advances rule r's partial matches in the event's group and
// fires when one completes. An event can both advance a partial and start
// a new one (two downloads, then the chmod of the second).
//
// It runs for every event of the rule's kinds, so the path that changes
// nothing does not allocate: the group is computed once per event into
// the view's buffers (v.groupOf), each step is matched at most once, and
// the map of groups is written only when the group's partials change.
func (e *Engine) sequence(r *compiled, v *view) {
	var memo [4]struct {
		done, ok bool
		key      string
	}
	ruleOK := 0 // r.m.match(v), once evaluated: 1 true, -1 false
	stepOK := func(i int) (bool, string) {
		if i < len(memo) && memo[i].done {
			return memo[i].ok, memo[i].key
		}
		s := r.steps[i]
		ok, key := slices.Contains(s.Kinds, v.e.Kind) && s.m.match(v), ""
		if ok {
			if ruleOK == 0 {
				ruleOK = -1
				if r.m.match(v) {
					ruleOK = 1
				}
			}
			ok = ruleOK > 0
		}
		if ok && s.key != nil {
			key = s.key(v)
		}
		if i < len(memo) {
			memo[i].done, memo[i].ok, memo[i].key = true, ok, key
		}
		return ok, key
	}
	// The common case, cheaply: nothing under way for this rule anywhere
	// and the event does not start it.
	if e.live[r] == 0 {
		if ok, _ := stepOK(0); !ok {
			return
		}
	}
	// gk.group aliases v's buffer: it is cloned before it is stored.
	gk := groupKey{rule: r.ID, group: v.groupOf(r.Sequence.By)}
	old, had := e.seqs[gk]
	if !had {
		if ok, _ := stepOK(0); !ok {
			return // nothing under way in this group, and no start
		}
	}
	at := v.e.Time
	if at.IsZero() {
		at = e.cfg.Now()
	}
	within := time.Duration(r.Sequence.Within)
	// Drop partials that ran out of time.
	parts := slices.DeleteFunc(old, func(p *partial) bool { return at.Sub(p.start) > within })
	advanced := false
	for i := 0; i < len(parts); i++ {
		p := parts[i]
		ok, key := stepOK(p.next)
		if !ok || (key != "" && p.key != "" && key != p.key) {
			continue
		}
		advanced = true
		if p.key == "" {
			p.key = key
		}
		p.seen = append(p.seen, stepLine(r.steps[p.next], v))
		p.next++
		if p.next == len(r.steps) {
			e.stats.Matches++
			parts = slices.Delete(parts, i, i+1)
			i--
			e.fire(r, v, map[string]any{"sequence": p.seen})
		}
	}
	if ok, key := stepOK(0); ok && !advanced {
		if len(parts) >= maxPartials {
			parts = parts[1:]
			e.stats.StateEvicts++
		}
		parts = append(parts, &partial{next: 1, key: key, start: at, seen: []string{stepLine(r.steps[0], v)}})
	}
	e.live[r] += len(parts) - len(old)
	if len(parts) == len(old) && (len(parts) == 0 || &parts[0] == &old[0]) {
		return // the same slice: steps advanced in place, or nothing happened
	}
	if len(parts) == 0 {
		delete(e.seqs, gk)
		return
	}
	if !had && len(e.seqs) >= maxGroups {
		e.evictGroups(at)
	}
	// Assigning replaces the stored key too: store a copy.
	gk.group = strings.Clone(gk.group)
	e.seqs[gk] = parts
}

// groupCache holds the event's stateful-rule groups (see group) that need
// building: per user, and per process tree. A container's group is its id.
type groupCache struct {
	userOK, treeOK bool
	user, tree     []byte
}

// groupOf is group(v, by) computed once per event into v's buffers,
// without allocating. The string aliases v's buffer: it is valid until
// the next reset, and must be copied before it is kept.
func (v *view) groupOf(by string) string {
	g := &v.groups
	if by == "user" || v.e.Audit != nil {
		if !g.userOK {
			g.user = append(append(g.user[:0], "user:"...), v.audit().User.Username...)
			g.userOK = true
		}
		return unsafeString(g.user)
	}
	id := v.ctr().ID
	if by != "process_tree" && id != "" {
		return id
	}
	if !g.treeOK {
		g.tree = g.tree[:0]
		if id != "" {
			g.tree = append(append(g.tree, id...), '/')
		}
		execID, pid := v.proc().ExecID, v.proc().Pid
		for _, a := range v.ancestry() {
			if a.Pid <= 1 || isRuntime(basename(a.Exe)) {
				break
			}
			execID, pid = a.ExecID, a.Pid
		}
		if execID != "" {
			g.tree = append(g.tree, execID...)
		} else {
			g.tree = strconv.AppendUint(append(g.tree, "pid:"...), uint64(pid), 10)
		}
		g.treeOK = true
	}
	return unsafeString(g.tree)
}

// stepLine describes the event that matched a step.
func stepLine(s *step, v *view) string {
	name := s.Name
	if name == "" {
		name = string(v.e.Kind)
	}
	detail := v.cmdline()
	switch v.e.Kind {
	case event.FileOpen, event.FileChmod, event.FileWrite:
		detail = v.file().Path
	case event.NetworkConnect:
		detail = v.net().Dst
	}
	return name + ": " + strings.Clone(detail)
}

// evictGroups drops sequence state that can no longer complete, and if
// nothing has expired, the oldest group.
func (e *Engine) evictGroups(now time.Time) {
	var oldest groupKey
	var at time.Time
	for k, parts := range e.seqs {
		if len(parts) == 0 || now.Sub(parts[0].start) > time.Hour {
			e.forgetGroup(k)
			continue
		}
		if at.IsZero() || parts[0].start.Before(at) {
			oldest, at = k, parts[0].start
		}
	}
	if len(e.seqs) >= maxGroups {
		e.forgetGroup(oldest)
	}
	e.stats.StateEvicts++
}

// forgetGroup drops a group's partial sequences.
func (e *Engine) forgetGroup(k groupKey) {
	for r, n := range e.live {
		if r.ID == k.rule {
			e.live[r] = n - len(e.seqs[k])
		}
	}
	delete(e.seqs, k)
}

// burstState holds one group's recent hits of a burst rule.
type burstState struct {
	hits []burstHit
}

type burstHit struct {
	at    time.Time
	value string
}

// burst records a hit and fires when the group reached the rule's count
// (of distinct values, when the rule names one) within its window.
func (e *Engine) burst(r *compiled, v *view) {
	at := v.e.Time
	if at.IsZero() {
		at = e.cfg.Now()
	}
	gk := groupKey{rule: r.ID, group: group(v, r.Burst.By)}
	st := e.bursts[gk]
	if st == nil {
		if len(e.bursts) >= maxGroups {
			e.evictBursts(at)
		}
		st = &burstState{}
		e.bursts[gk] = st
	}
	within := time.Duration(r.Burst.Within)
	st.hits = slices.DeleteFunc(st.hits, func(h burstHit) bool { return at.Sub(h.at) > within })
	value := v.cmdline()
	if r.distinct != nil {
		value = r.distinct(v)
	}
	if len(st.hits) >= maxBurstHits {
		st.hits = st.hits[1:]
	}
	st.hits = append(st.hits, burstHit{at: at, value: strings.Clone(value)})
	var members []string
	for _, h := range st.hits {
		if r.distinct == nil || !slices.Contains(members, h.value) {
			members = append(members, h.value)
		}
	}
	if len(members) < r.Burst.Count {
		return
	}
	delete(e.bursts, gk)
	e.fire(r, v, map[string]any{"burst": members, "window": within.String()})
}

func (e *Engine) evictBursts(now time.Time) {
	for k, st := range e.bursts {
		if len(st.hits) == 0 || now.Sub(st.hits[len(st.hits)-1].at) > time.Hour {
			delete(e.bursts, k)
		}
	}
	if len(e.bursts) >= maxGroups {
		for k := range e.bursts { // any one: the map is full of live bursts
			delete(e.bursts, k)
			break
		}
	}
	e.stats.StateEvicts++
}

// cpuWatch is a process a sustained_cpu rule marked: its exec event and
// CPU-time samples.
type cpuWatch struct {
	rule    *compiled
	ev      event.Event
	samples []cpuSample
	fired   bool
}

type cpuSample struct {
	at    time.Time
	ticks uint64
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// Linux architecture Vigil runs on.
const clockTicks = 100

func (e *Engine) watchCPU(r *compiled, v *view) {
	p := v.e.Process
	if p == nil || p.Pid == 0 {
		return
	}
	if _, ok := e.cpu[p.Pid]; !ok && len(e.cpu) >= maxCPUWatch {
		e.stats.StateEvicts++
		return
	}
	ev := *v.e
	e.cpu[p.Pid] = &cpuWatch{rule: r, ev: ev}
}

// sampleCPU reads the CPU time of every watched process and fires a rule
// when a process used at least its cores over its window.
func (e *Engine) sampleCPU(now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for pid, w := range e.cpu {
		ticks, err := readCPUTicks(e.cfg.ProcRoot, pid)
		if err != nil {
			delete(e.cpu, pid) // exited
			continue
		}
		w.samples = append(w.samples, cpuSample{at: now, ticks: ticks})
		window := time.Duration(w.rule.SustainedCPU.For)
		// Keep the newest sample at least window old, and those after it.
		for len(w.samples) > 2 && now.Sub(w.samples[1].at) >= window {
			w.samples = w.samples[1:]
		}
		first := w.samples[0]
		span := now.Sub(first.at)
		if w.fired || span < window {
			continue
		}
		cores := float64(ticks-first.ticks) / clockTicks / span.Seconds()
		if cores < w.rule.SustainedCPU.Cores {
			continue
		}
		w.fired = true
		e.stats.Matches++
		var v view
		v.reset(&w.ev)
		e.fire(w.rule, &v, map[string]any{
			"cpu_cores":  float64(int(cores*100)) / 100,
			"cpu_window": span.Round(time.Second).String(),
		})
	}
}

// readCPUTicks returns utime+stime of pid from /proc/PID/stat.
func readCPUTicks(procRoot string, pid uint32) (uint64, error) {
	b, err := os.ReadFile(procRoot + "/" + strconv.FormatUint(uint64(pid), 10) + "/stat")
	if err != nil {
		return 0, err
	}
	// Fields after the parenthesised comm (which may hold spaces).
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, os.ErrInvalid
	}
	f := strings.Fields(s[i+1:])
	// f[0] is state (field 3); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, os.ErrInvalid
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, os.ErrInvalid
	}
	return ut + st, nil
}
