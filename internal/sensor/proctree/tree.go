package proctree

import (
	"cmp"
	"slices"
	"sync/atomic"
)

// Entry is one process in the tree.
type Entry struct {
	Pid, Ppid     uint32
	ExecID        string
	Exe           string
	Args          []string // capped at Config.MaxArgBytes
	Cwd           string
	StartBoottime uint64 // when the process (not its exec) started
	Exited        bool
}

// Config bounds a Tree.
type Config struct {
	// Max is the most entries kept, live and exited. 0 means 32768.
	Max int
	// MaxArgBytes caps the argv kept per entry for ancestry. 0 means 512.
	MaxArgBytes int
}

// Tree is the process cache. Its mutating methods and Get/Ancestry must be
// called from one goroutine (the sensor's event loop); Len and Evictions
// are safe from any goroutine.
type Tree struct {
	cfg       Config
	entries   map[uint32]*Entry
	exited    []*Entry // exit order, oldest first
	size      atomic.Int64
	evictions atomic.Uint64
}

// New returns an empty tree.
func New(cfg Config) *Tree {
	if cfg.Max <= 0 {
		cfg.Max = 32768
	}
	if cfg.MaxArgBytes <= 0 {
		cfg.MaxArgBytes = 512
	}
	return &Tree{cfg: cfg, entries: make(map[uint32]*Entry)}
}

// Put records a process seen in /proc or by a fork, replacing any older
// process with the same pid.
func (t *Tree) Put(e Entry) *Entry {
	e.Args = capArgs(e.Args, t.cfg.MaxArgBytes)
	p := &e
	if _, ok := t.entries[e.Pid]; !ok {
		t.makeRoom()
	}
	t.entries[e.Pid] = p
	t.size.Store(int64(len(t.entries)))
	return p
}

// Fork records child as a copy of its parent's image (until it execs).
func (t *Tree) Fork(parent, child uint32, childStart uint64, childExecID string) *Entry {
	e := Entry{Pid: child, Ppid: parent, StartBoottime: childStart, ExecID: childExecID}
	if p, ok := t.entries[parent]; ok {
		e.Exe, e.Args, e.Cwd = p.Exe, p.Args, p.Cwd
	}
	return t.Put(e)
}

// Exec records that pid now runs a new program. The process keeps its
// start time when the tree knew it already.
func (t *Tree) Exec(e Entry) *Entry {
	if old, ok := t.entries[e.Pid]; ok && !old.Exited {
		if e.StartBoottime == 0 {
			e.StartBoottime = old.StartBoottime
		}
	}
	return t.Put(e)
}

// Exit marks pid as exited. The entry stays, for late events and for the
// ancestry of its orphans, until its space is needed.
func (t *Tree) Exit(pid uint32) {
	e, ok := t.entries[pid]
	if !ok || e.Exited {
		return
	}
	e.Exited = true
	t.exited = append(t.exited, e)
	if len(t.exited) > t.cfg.Max/2 {
		t.dropExited(len(t.exited) - t.cfg.Max/2)
	}
}

// Get returns the entry for pid.
func (t *Tree) Get(pid uint32) (*Entry, bool) {
	e, ok := t.entries[pid]
	return e, ok
}

// Ancestry returns pid's ancestors, parent first, at most depth of them.
// It stops at pid 0, at an unknown process, and at a loop (pid reuse).
func (t *Tree) Ancestry(pid uint32, depth int) []*Entry {
	var out []*Entry
	e, ok := t.entries[pid]
	for ok && len(out) < depth && e.Ppid != 0 && e.Ppid != e.Pid {
		parent, found := t.entries[e.Ppid]
		if !found || (parent.StartBoottime > e.StartBoottime && e.StartBoottime != 0) {
			break // unknown, or a newer process reusing the parent's pid
		}
		out = append(out, parent)
		e, ok = parent, true
	}
	return out
}

// Len is the number of entries. Safe for concurrent use.
func (t *Tree) Len() int { return int(t.size.Load()) }

// Evictions counts entries dropped for space while their process was
// live, which can cost an event its ancestry. Safe for concurrent use.
func (t *Tree) Evictions() uint64 { return t.evictions.Load() }

// makeRoom frees space for one more entry: exited processes go first;
// when every entry is live, the oldest tenth is evicted and counted.
func (t *Tree) makeRoom() {
	if len(t.entries) < t.cfg.Max {
		return
	}
	if len(t.exited) > 0 {
		t.dropExited(max(1, len(t.exited)/2))
		if len(t.entries) < t.cfg.Max {
			return
		}
	}
	// Live processes whose exits were missed: evict the oldest tenth.
	n := max(1, t.cfg.Max/10)
	oldest := make([]*Entry, 0, len(t.entries))
	for _, e := range t.entries {
		oldest = append(oldest, e)
	}
	slices.SortFunc(oldest, func(a, b *Entry) int { return cmp.Compare(a.StartBoottime, b.StartBoottime) })
	for _, e := range oldest[:min(n, len(oldest))] {
		delete(t.entries, e.Pid)
		t.evictions.Add(1)
	}
	t.size.Store(int64(len(t.entries)))
}

func (t *Tree) dropExited(n int) {
	for _, e := range t.exited[:n] {
		if cur, ok := t.entries[e.Pid]; ok && cur == e {
			delete(t.entries, e.Pid)
		}
	}
	t.exited = append(t.exited[:0], t.exited[n:]...)
	t.size.Store(int64(len(t.entries)))
}

// capArgs keeps argv up to about limit bytes, whole arguments first.
func capArgs(args []string, limit int) []string {
	total := 0
	for i, a := range args {
		total += len(a) + 1
		if total > limit {
			out := make([]string, i, i+1)
			copy(out, args[:i])
			if rest := limit - (total - len(a) - 1); rest > 0 {
				out = append(out, a[:rest])
			}
			return out
		}
	}
	return args
}
