package sensor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/vigil-sec/vigil/internal/sensor/bpf"
	"github.com/vigil-sec/vigil/internal/sensor/procconn"
	"github.com/vigil-sec/vigil/internal/sensor/procfs"
)

// runFallback watches processes through the netlink process connector
// when eBPF cannot be loaded. The connector says only which pid forked,
// exec'd or exited; the rest (exe, argv, cwd, credentials, cgroup) is read
// from /proc and is missing for processes that exit before it is read.
func (s *Sensor) runFallback(ctx context.Context, warning string) error {
	conn, err := procconn.Open()
	if err != nil {
		return fmt.Errorf("%s; but the fallback failed too: %w", warning, err)
	}
	s.stats.setMode("netlink", []string{warning}, nil)
	s.stats.setConnectorLost(conn.Lost)

	done := make(chan struct{})
	go func() {
		defer close(done)
		s.healthLoop(ctx, nil)
	}()
	go func() {
		<-ctx.Done()
		conn.Close() // unblocks Read
	}()

	toBoottime := monotonicToBoottime()
	for {
		evs, err := conn.Read()
		if errors.Is(err, procconn.ErrOverrun) {
			continue // counted by conn.Lost, reported in sensor.health
		}
		if err != nil {
			if errors.Is(err, procconn.ErrClosed) || ctx.Err() != nil {
				break
			}
			return fmt.Errorf("read process connector: %w", err)
		}
		for _, ev := range evs {
			s.handleConnector(ev, ev.Timestamp+toBoottime)
		}
	}
	<-done
	s.sendHealth(nil)
	return nil
}

// handleConnector turns a connector event into the record the eBPF
// programs would have sent, completed from /proc, and handles it.
func (s *Sensor) handleConnector(ev procconn.Event, ktime uint64) {
	if ev.Pid != ev.Tgid {
		return // a thread: the process tree follows processes
	}
	switch ev.Kind {
	case procconn.Fork:
		// The child's start time names it in its exec_id: /proc's, as the
		// eBPF records and the seeding use, when the child is still there.
		start := ktime
		if b, err := os.ReadFile(filepath.Join(s.cfg.ProcRoot, strconv.FormatUint(uint64(ev.Tgid), 10), "stat")); err == nil {
			if p, err := procfs.ParseStat(b); err == nil && p.Pid == ev.Tgid {
				start = p.StartBoottime
			}
		}
		s.handle(&bpf.Record{Kind: bpf.KindFork, Ktime: ktime, Tgid: ev.ParentTgid, Tid: ev.ParentPid,
			ChildTgid: ev.Tgid, ChildStartBoottime: start})
	case procconn.Exec:
		r := &bpf.Record{Kind: bpf.KindExec, Ktime: ktime, Tgid: ev.Tgid, Tid: ev.Pid, StartBoottime: ktime,
			Exec: &bpf.Exec{}}
		if p, err := s.procs.Read(ev.Tgid); err == nil {
			r.Ppid, r.UID, r.GID, r.EUID, r.Comm, r.StartBoottime = p.Ppid, p.UID, p.GID, p.EUID, p.Comm, p.StartBoottime
			r.Exec.Filename, r.Exec.ExeName, r.Exec.Cwd, r.Exec.Args = p.Exe, filepath.Base(p.Exe), p.Cwd, p.Args
		} else if e, ok := s.tree.Get(ev.Tgid); ok {
			r.Ppid = e.Ppid // exited before /proc could be read: keep at least the parent
		}
		s.handle(r)
	case procconn.Exit:
		r := &bpf.Record{Kind: bpf.KindExit, Ktime: ktime, Tgid: ev.Tgid, Tid: ev.Pid, Ppid: ev.ParentTgid,
			Ret: int64(ev.ExitCode)}
		if r.Ppid == 0 { // reaped before the kernel read its parent
			if e, ok := s.tree.Get(ev.Tgid); ok {
				r.Ppid = e.Ppid
			}
		}
		s.handle(r)
	}
}

// monotonicToBoottime is what to add to a CLOCK_MONOTONIC instant to get
// CLOCK_BOOTTIME (the time the machine spent suspended).
func monotonicToBoottime() uint64 {
	var mono, boot unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono)
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot)
	return uint64(max(boot.Nano()-mono.Nano(), 0))
}
