package sensor

import (
	"encoding/base64"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/sensor/bpf"
	"github.com/vigil-sec/vigil/internal/sensor/proctree"
)

// handle turns one kernel record into tree updates and events.
func (s *Sensor) handle(r *bpf.Record) {
	switch r.Kind {
	case bpf.KindFork:
		s.tree.Fork(r.Tgid, r.ChildTgid, r.ChildStartBoottime, s.execID(r.ChildTgid, r.ChildStartBoottime))
	case bpf.KindExec:
		s.handleExec(r)
	case bpf.KindExit:
		e := s.base(event.ProcessExit, r)
		code := int((r.Ret >> 8) & 0xff)
		e.Process.ExitCode = &code
		e.Process.Signal = int(r.Ret & 0x7f)
		s.send(e)
		s.tree.Exit(r.Tgid)
	case bpf.KindConnect, bpf.KindListen:
		kind := event.NetworkConnect
		if r.Kind == bpf.KindListen {
			kind = event.NetworkListen
		}
		e := s.base(kind, r)
		e.Network = network(r.Net)
		e.Network.Send = r.Net.Send
		s.send(e)
	case bpf.KindOpen:
		s.send(s.fileOpen(r))
	case bpf.KindChmod:
		e := s.base(event.FileChmod, r)
		e.File = &event.File{Path: s.absPath(r), Op: "chmod", Mode: fmt.Sprintf("%04o", r.Args[0]&07777)}
		s.send(e)
	case bpf.KindMemfdCreate:
		e := s.base(event.MemfdCreate, r)
		e.File = &event.File{Path: "memfd:" + r.Path, Op: "memfd_create", Flags: memfdFlags(r.Args[0])}
		s.send(e)
	case bpf.KindPtrace:
		e := s.base(event.Ptrace, r)
		e.Ptrace = &event.PtraceReq{Request: ptraceRequest(r.Args[0]), TargetPid: uint32(r.Args[1])}
		s.send(e)
	case bpf.KindModule:
		e := s.base(event.KernelModule, r)
		e.Module = &event.Module{Op: "load"}
		switch r.Syscall {
		case "finit_module":
			e.Module.Name = r.Path // the module file (its parameters are not recorded)
		case "init_module":
			// The image is in the caller's memory, which the kernel side
			// does not copy: its size and parameters are what is known.
			e.Module.Size, e.Module.Params = r.Args[0], r.Path
		case "delete_module":
			e.Module.Op, e.Module.Name = "unload", r.Path
		}
		s.send(e)
	case bpf.KindUnshare:
		e := s.base(event.NamespaceChange, r)
		e.Namespace = &event.Namespace{Op: "unshare", Types: namespaceTypes(r.Args[0])}
		s.send(e)
	case bpf.KindSetns:
		e := s.base(event.NamespaceChange, r)
		types := namespaceTypes(r.Args[0])
		if len(types) == 0 { // nstype 0: the kind is in the nsfs file name, "net:[4026531840]"
			if name, _, ok := strings.Cut(strings.TrimPrefix(r.Path, "/"), ":"); ok {
				types = []string{name}
			}
		}
		e.Namespace = &event.Namespace{Op: "setns", Types: types}
		s.send(e)
	}
}

func (s *Sensor) handleExec(r *bpf.Record) {
	x := r.Exec
	if x.Failed {
		s.handleFailedExec(r)
		return
	}
	exe := x.Filename
	if exe == "/proc/self/exe" {
		// A re-exec of the caller's own binary (busybox applets, runc,
		// multi-call tools): name the binary, not the magic link.
		if prev, ok := s.tree.Get(r.Tgid); ok && prev.Exe != "" {
			exe = prev.Exe
		}
	}
	if !strings.HasPrefix(exe, "/") && x.Cwd != "" && !x.Memfd {
		exe = filepath.Join(x.Cwd, exe)
	}
	s.tree.Exec(proctree.Entry{
		Pid: r.Tgid, Ppid: r.Ppid, Exe: exe, Args: x.Args, Cwd: x.Cwd,
		StartBoottime: r.StartBoottime, ExecID: s.execID(r.Tgid, r.StartBoottime),
	})
	e := s.base(event.ProcessExec, r)
	p := e.Process
	p.Args = x.Args // the tree keeps a capped copy; the event gets all of it
	p.ArgsTruncated = x.ArgsTruncated
	p.TTY = x.TTY
	p.Memfd = x.Memfd
	if e.Container != nil || x.PidNSLevel > 0 {
		p.UpperLayer = x.UpperLayer
		// The inode changed after the container's init started: written into
		// the container after it started (copied, downloaded, compiled).
		started := s.clock.wall(x.NSStartBoottime)
		p.ExeWrittenAfterStart = x.NSStartBoottime != 0 && x.ExeCtimeNs > uint64(started.UnixNano())
		// A memfd is fileless execution, reported as such, not a binary
		// added to the container's filesystem (runc's own init runs from one).
		p.Drift = (p.UpperLayer || p.ExeWrittenAfterStart) && !x.Memfd
	}
	s.send(e)
	if x.Memfd {
		m := *e
		m.Kind = event.MemfdExec
		m.File = &event.File{Path: x.ExeName, Op: "exec"}
		s.send(&m)
	}
}

// handleFailedExec reports an exec attempt that failed: shaped like the
// exec it would have been (Exe and Args what the caller tried to run),
// marked exec_failed with the error in Syscall. The process tree is left
// alone: the process still runs its old image.
func (s *Sensor) handleFailedExec(r *bpf.Record) {
	x := r.Exec
	exe := x.Filename
	switch {
	case exe == "" && x.DirFD: // execveat(fd, "", AT_EMPTY_PATH): fexecve
		exe = x.Cwd
	case exe != "" && !strings.HasPrefix(exe, "/") && x.Cwd != "":
		exe = filepath.Join(x.Cwd, exe)
	}
	e := s.base(event.ProcessExec, r)
	p := e.Process
	p.Exe, p.Args, p.ArgsTruncated, p.TTY = exe, x.Args, x.ArgsTruncated, x.TTY
	if !x.DirFD && x.Cwd != "" {
		p.Cwd = x.Cwd
	}
	p.ExecFailed = true
	s.send(e)
}

// base builds an event of kind for the record's process, with its parent,
// ancestry and container.
func (s *Sensor) base(kind event.Kind, r *bpf.Record) *event.Event {
	p := &event.Process{
		Pid: r.Tgid, Ppid: r.Ppid, UID: r.UID, GID: r.GID, EUID: r.EUID, Comm: r.Comm,
		CgroupID: r.CgroupID, PidNS: r.PidNS, MntNS: r.MntNS,
		StartTime: s.clock.wall(r.StartBoottime),
	}
	if r.Tid != r.Tgid {
		p.Tid = r.Tid
	}
	entry, ok := s.tree.Get(r.Tgid)
	if !ok {
		entry = s.lookupLate(r)
	}
	if entry != nil {
		p.Exe, p.Args, p.Cwd, p.ExecID = entry.Exe, entry.Args, entry.Cwd, entry.ExecID
	}
	if parent, ok := s.tree.Get(r.Ppid); ok {
		p.Parent = &event.Lineage{Pid: parent.Pid, Exe: parent.Exe, Args: parent.Args, ExecID: parent.ExecID}
		p.ParentExecID = parent.ExecID
	}
	for _, a := range s.tree.Ancestry(r.Tgid, s.cfg.AncestryDepth) {
		p.Ancestry = append(p.Ancestry, event.Lineage{Pid: a.Pid, Exe: a.Exe, ExecID: a.ExecID})
	}
	e := &event.Event{Kind: kind, Time: s.clock.wall(r.Ktime), Node: s.cfg.Node, Process: p}
	if s.cfg.Containers != nil {
		e.Container = s.cfg.Containers.Resolve(r.CgroupID, r.Cgroup1ID, r.Tgid)
	}
	if r.Syscall != "" {
		e.Syscall = &event.Syscall{Name: r.Syscall, Ret: r.Ret}
		if r.Ret < 0 && r.Ret > -4096 {
			e.Syscall.Errno = unix.ErrnoName(syscall.Errno(-r.Ret))
		}
	}
	return e
}

// lookupLate fills in a process the tree has not seen (its fork record was
// dropped, or it predates the sensor and exited from /proc meanwhile).
func (s *Sensor) lookupLate(r *bpf.Record) *proctree.Entry {
	p, err := s.procs.Read(r.Tgid)
	if err != nil || p.StartBoottime/1e7 != r.StartBoottime/1e7 {
		return nil // gone, or the pid now belongs to another process
	}
	return s.tree.Put(proctree.Entry{
		Pid: p.Pid, Ppid: p.Ppid, Exe: p.Exe, Args: p.Args, Cwd: p.Cwd,
		StartBoottime: r.StartBoottime, ExecID: s.execID(p.Pid, r.StartBoottime),
	})
}

// execID is unique across the cluster and stable for one process: node,
// pid and the process's start in CLOCK_BOOTTIME clock ticks (USER_HZ, the
// resolution of /proc/<pid>/stat). The kernel's exec records and /proc
// both know these, so a process seen exec'ing by one sensor and seeded
// from /proc by the next (a restart, an upgrade) keeps its id. Successive
// execs in one process (sh -c 'exec app') share the id: nothing /proc
// shows tells one image of a process from the next.
func (s *Sensor) execID(pid uint32, startBoottime uint64) string {
	ticks := startBoottime / (1e9 / userHZ)
	return base64.RawURLEncoding.EncodeToString([]byte(s.cfg.Node + ":" + strconv.FormatUint(ticks, 10) + ":" + strconv.FormatUint(uint64(pid), 10)))
}

// userHZ is the unit of /proc/<pid>/stat's start time (100 everywhere).
const userHZ = 100

func (s *Sensor) fileOpen(r *bpf.Record) *event.Event {
	flags := int(r.Args[0])
	kind := event.FileOpen
	op := "open"
	if flags&(unix.O_WRONLY|unix.O_RDWR|unix.O_CREAT|unix.O_TRUNC|unix.O_APPEND) != 0 {
		kind, op = event.FileWrite, "write"
	}
	e := s.base(kind, r)
	e.File = &event.File{Path: s.absPath(r), Op: op, Flags: openFlags(flags)}
	if r.PathResolved {
		e.File.Path, e.File.Resolved, e.File.RequestedPath = r.Path, true, r.RequestedPath
	}
	return e
}

// absPath makes a relative syscall path absolute against the process's
// working directory (as of its exec: the best the sensor knows).
func (s *Sensor) absPath(r *bpf.Record) string {
	if r.Path == "" || strings.HasPrefix(r.Path, "/") {
		return r.Path
	}
	if e, ok := s.tree.Get(r.Tgid); ok && e.Cwd != "" {
		return filepath.Join(e.Cwd, r.Path)
	}
	return r.Path
}

func network(n *bpf.Net) *event.Network {
	out := &event.Network{Protocol: "other", Family: "ipv4"}
	if n.Family == unix.AF_INET6 {
		out.Family = "ipv6"
	}
	switch {
	// Multipath TCP (Go's listeners default to it) is TCP on the wire
	// and to every rule that asks for TCP.
	case n.Protocol == unix.IPPROTO_TCP || n.Protocol == unix.IPPROTO_MPTCP || (n.Protocol == 0 && n.SockType == unix.SOCK_STREAM):
		out.Protocol = "tcp"
	case n.Protocol == unix.IPPROTO_UDP || (n.Protocol == 0 && n.SockType == unix.SOCK_DGRAM):
		out.Protocol = "udp"
	case n.Protocol == unix.IPPROTO_ICMP || n.Protocol == unix.IPPROTO_ICMPV6:
		out.Protocol = "icmp"
	}
	if n.Local.IsValid() {
		out.Src = n.Local.String()
	}
	if n.Remote.IsValid() && n.Remote.Addr().IsValid() && (n.Remote.Port() != 0 || !n.Remote.Addr().IsUnspecified()) {
		out.Dst = n.Remote.String()
	}
	return out
}

func openFlags(f int) string {
	var parts []string
	switch f & unix.O_ACCMODE {
	case unix.O_RDONLY:
		parts = append(parts, "O_RDONLY")
	case unix.O_WRONLY:
		parts = append(parts, "O_WRONLY")
	case unix.O_RDWR:
		parts = append(parts, "O_RDWR")
	}
	for _, fl := range []struct {
		bit  int
		name string
	}{{unix.O_CREAT, "O_CREAT"}, {unix.O_EXCL, "O_EXCL"}, {unix.O_TRUNC, "O_TRUNC"}, {unix.O_APPEND, "O_APPEND"}, {unix.O_CLOEXEC, "O_CLOEXEC"}} {
		if f&fl.bit != 0 {
			parts = append(parts, fl.name)
		}
	}
	return strings.Join(parts, "|")
}

func memfdFlags(f uint64) string {
	var parts []string
	if f&unix.MFD_CLOEXEC != 0 {
		parts = append(parts, "MFD_CLOEXEC")
	}
	if f&unix.MFD_ALLOW_SEALING != 0 {
		parts = append(parts, "MFD_ALLOW_SEALING")
	}
	if f&unix.MFD_EXEC != 0 {
		parts = append(parts, "MFD_EXEC")
	}
	return strings.Join(parts, "|")
}

var ptraceRequests = map[uint64]string{
	unix.PTRACE_TRACEME: "PTRACE_TRACEME", unix.PTRACE_POKETEXT: "PTRACE_POKETEXT",
	unix.PTRACE_POKEDATA: "PTRACE_POKEDATA", unix.PTRACE_POKEUSR: "PTRACE_POKEUSER",
	unix.PTRACE_SETREGS: "PTRACE_SETREGS", unix.PTRACE_ATTACH: "PTRACE_ATTACH",
	unix.PTRACE_SETREGSET: "PTRACE_SETREGSET", unix.PTRACE_SEIZE: "PTRACE_SEIZE",
}

func ptraceRequest(r uint64) string {
	if n, ok := ptraceRequests[r]; ok {
		return n
	}
	return fmt.Sprintf("%d", r)
}

var namespaceFlags = []struct {
	flag uint64
	name string
}{
	{unix.CLONE_NEWNS, "mnt"}, {unix.CLONE_NEWCGROUP, "cgroup"}, {unix.CLONE_NEWUTS, "uts"},
	{unix.CLONE_NEWIPC, "ipc"}, {unix.CLONE_NEWUSER, "user"}, {unix.CLONE_NEWPID, "pid"},
	{unix.CLONE_NEWNET, "net"}, {unix.CLONE_NEWTIME, "time"},
}

func namespaceTypes(flags uint64) []string {
	var out []string
	for _, f := range namespaceFlags {
		if flags&f.flag != 0 {
			out = append(out, f.name)
		}
	}
	return out
}
