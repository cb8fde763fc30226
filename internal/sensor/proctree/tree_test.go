package proctree

import (
	"fmt"
	"slices"
	"testing"
)

func pids(es []*Entry) []uint32 {
	var out []uint32
	for _, e := range es {
		out = append(out, e.Pid)
	}
	return out
}

func TestForkExecExitAncestry(t *testing.T) {
	tr := New(Config{})
	tr.Put(Entry{Pid: 1, Exe: "/sbin/init", StartBoottime: 1})
	tr.Exec(Entry{Pid: 100, Ppid: 1, Exe: "/usr/sbin/php-fpm", StartBoottime: 10})
	tr.Fork(100, 200, 20, "x")
	if e, _ := tr.Get(200); e.Exe != "/usr/sbin/php-fpm" || e.Ppid != 100 {
		t.Fatalf("forked child = %+v, want the parent's image", e)
	}
	tr.Exec(Entry{Pid: 200, Ppid: 100, Exe: "/bin/sh", Args: []string{"sh", "-c", "id"}})
	tr.Fork(200, 300, 30, "y")
	tr.Exec(Entry{Pid: 300, Ppid: 200, Exe: "/usr/bin/id"})
	if e, _ := tr.Get(200); e.StartBoottime != 20 {
		t.Fatalf("exec lost the process start time: %+v", e)
	}
	if got := pids(tr.Ancestry(300, 10)); !slices.Equal(got, []uint32{200, 100, 1}) {
		t.Fatalf("ancestry = %v", got)
	}
	if got := pids(tr.Ancestry(300, 2)); !slices.Equal(got, []uint32{200, 100}) {
		t.Fatalf("ancestry depth 2 = %v", got)
	}
	// The shell exits; its orphan keeps its ancestry.
	tr.Exit(200)
	if got := pids(tr.Ancestry(300, 10)); !slices.Equal(got, []uint32{200, 100, 1}) {
		t.Fatalf("ancestry after parent exit = %v", got)
	}
}

func TestPidReuseStopsAncestry(t *testing.T) {
	tr := New(Config{})
	tr.Put(Entry{Pid: 50, Ppid: 40, StartBoottime: 100})
	// pid 40 is a newer process than its supposed child: the real parent is gone.
	tr.Put(Entry{Pid: 40, Ppid: 1, StartBoottime: 500})
	if got := tr.Ancestry(50, 10); len(got) != 0 {
		t.Fatalf("ancestry through a reused pid = %v", pids(got))
	}
}

func TestBounded(t *testing.T) {
	tr := New(Config{Max: 1000, MaxArgBytes: 16})
	for i := range uint32(100_000) {
		tr.Put(Entry{Pid: i + 2, Ppid: 1, StartBoottime: uint64(i), Args: []string{"aaaaaaaaaa", "bbbbbbbbbb", "cc"}})
		if i%2 == 0 {
			tr.Exit(i + 2)
		}
	}
	if tr.Len() > 1000 {
		t.Fatalf("tree holds %d entries, bound is 1000", tr.Len())
	}
	e, ok := tr.Get(100_001)
	if !ok {
		t.Fatal("newest process evicted")
	}
	if got := fmt.Sprint(e.Args); got != "[aaaaaaaaaa bbbbb]" {
		t.Fatalf("args not capped: %s", got)
	}
	if tr.Evictions() == 0 {
		t.Fatal("evicting live processes was not counted")
	}
}

// BenchmarkForkExecExit is the tree's work for one short-lived process,
// with an ancestry lookup as every event does.
func BenchmarkForkExecExit(b *testing.B) {
	tr := New(Config{Max: 4096})
	tr.Put(Entry{Pid: 1, Exe: "/sbin/init"})
	args := []string{"/bin/true", "--flag", "value"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		pid := uint32(2 + i%1_000_000)
		tr.Fork(1, pid, uint64(i), "id")
		tr.Exec(Entry{Pid: pid, Ppid: 1, Exe: "/bin/true", Args: args, ExecID: "id"})
		_ = tr.Ancestry(pid, 8)
		tr.Exit(pid)
	}
}
