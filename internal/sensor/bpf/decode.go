package bpf

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unsafe"
)

// Kind is the type of a ring-buffer record.
type Kind uint8

// Record kinds, generated from enum record_kind in sensor.h.
const (
	KindExec        = Kind(sensorRecordKindK_EXEC)
	KindExit        = Kind(sensorRecordKindK_EXIT)
	KindFork        = Kind(sensorRecordKindK_FORK)
	KindConnect     = Kind(sensorRecordKindK_CONNECT)
	KindListen      = Kind(sensorRecordKindK_LISTEN)
	KindOpen        = Kind(sensorRecordKindK_OPEN)
	KindChmod       = Kind(sensorRecordKindK_CHMOD)
	KindMemfdCreate = Kind(sensorRecordKindK_MEMFD_CREATE)
	KindPtrace      = Kind(sensorRecordKindK_PTRACE)
	KindModule      = Kind(sensorRecordKindK_MODULE)
	KindUnshare     = Kind(sensorRecordKindK_UNSHARE)
	KindSetns       = Kind(sensorRecordKindK_SETNS)
	kindMax         = int(sensorRecordKindK_MAX)
)

var kindNames = [...]string{
	KindExec: "exec", KindExit: "exit", KindFork: "fork", KindConnect: "connect",
	KindListen: "listen", KindOpen: "open", KindChmod: "chmod", KindMemfdCreate: "memfd_create",
	KindPtrace: "ptrace", KindModule: "module", KindUnshare: "unshare", KindSetns: "setns",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

var syscallNames = map[sensorSysCall]string{
	sensorSysCallSYS_OPENAT: "openat", sensorSysCallSYS_OPENAT2: "openat2", sensorSysCallSYS_OPEN: "open",
	sensorSysCallSYS_CREAT: "creat", sensorSysCallSYS_CHMOD: "chmod", sensorSysCallSYS_FCHMOD: "fchmod",
	sensorSysCallSYS_FCHMODAT: "fchmodat", sensorSysCallSYS_FCHMODAT2: "fchmodat2",
	sensorSysCallSYS_CONNECT: "connect", sensorSysCallSYS_LISTEN: "listen",
	sensorSysCallSYS_MEMFD_CREATE: "memfd_create", sensorSysCallSYS_PTRACE: "ptrace",
	sensorSysCallSYS_INIT_MODULE: "init_module", sensorSysCallSYS_FINIT_MODULE: "finit_module",
	sensorSysCallSYS_DELETE_MODULE: "delete_module", sensorSysCallSYS_UNSHARE: "unshare",
	sensorSysCallSYS_SETNS: "setns", sensorSysCallSYS_EXECVE: "execve", sensorSysCallSYS_EXECVEAT: "execveat",
	sensorSysCallSYS_SENDTO: "sendto", sensorSysCallSYS_SENDMSG: "sendmsg",
}

// Record is one decoded ring-buffer record. The fields after the header are
// set according to Kind.
type Record struct {
	Kind          Kind
	Syscall       string // the syscall behind the record, "" for exec/fork/exit
	CPU           uint32
	Ktime         uint64 // CLOCK_BOOTTIME ns
	Tgid, Tid     uint32
	Ppid          uint32
	UID, GID      uint32
	EUID          uint32
	CgroupID      uint64
	Cgroup1ID     uint64
	PidNS, MntNS  uint32
	Ret           int64 // syscall return, or wait status for exit
	StartBoottime uint64
	Comm          string

	Exec *Exec // KindExec

	ChildTgid          uint32 // KindFork
	ChildStartBoottime uint64

	Net *Net // KindConnect, KindListen

	Args          [3]uint64 // syscall arguments, per Kind
	Path          string    // user path, or a dentry walk joined into a path
	PathTruncated bool
	// PathResolved is set when Path is the real path of the opened file,
	// walked at sys_exit because the string the caller passed
	// (RequestedPath) did not match a watched path as written.
	PathResolved  bool
	RequestedPath string
}

// Exec is what an exec record adds.
type Exec struct {
	Filename        string // as passed to execve
	ExeName         string // the executable's own file name
	Cwd             string
	CwdTruncated    bool
	Args            []string
	ArgsTruncated   bool
	ExeTruncated    bool
	TTY             string
	UpperLayer      bool
	Memfd           bool
	ExeCtimeNs      uint64 // realtime
	NSStartBoottime uint64 // the pid namespace's init start
	PidNSLevel      uint32
	// Failed is set for an execve/execveat that returned an error (Record.Ret);
	// the process kept its image. Cwd is then the directory a relative
	// Filename was looked up in: the cwd, or the dirfd's path when DirFD.
	Failed bool
	DirFD  bool
}

// Net is what connect and listen records add.
type Net struct {
	Family   uint16 // AF_INET or AF_INET6
	SockType uint16 // SOCK_STREAM, SOCK_DGRAM, ...
	Protocol uint16 // IPPROTO_*
	Local    netip.AddrPort
	Remote   netip.AddrPort
	// Send is set for an unconnected send (sendto/sendmsg with a
	// destination) rather than a connect.
	Send bool
}

// ErrShort is returned for a record shorter than its kind's fixed part.
var ErrShort = errors.New("short record")

var (
	headerSize   = int(unsafe.Sizeof(sensorHeader{}))
	execFixed    = int(unsafe.Offsetof(sensorExecRecord{}.Args))
	sysFixed     = int(unsafe.Offsetof(sensorSysRecord{}.Path))
	netSize      = int(unsafe.Sizeof(sensorNetRecord{}))
	forkSize     = int(unsafe.Sizeof(sensorForkRecord{}))
	scratchWords = (int(unsafe.Sizeof(sensorExecRecord{})) + 7) / 8
)

// Decoder turns raw ring-buffer samples into Records. It reuses one
// aligned buffer, so it is not safe for concurrent use.
type Decoder struct {
	buf []uint64
}

// NewDecoder returns a Decoder.
func NewDecoder() *Decoder {
	return &Decoder{buf: make([]uint64, scratchWords)}
}

// Decode parses one raw sample. It never panics on malformed input; it
// returns an error naming what was wrong.
func (d *Decoder) Decode(raw []byte) (Record, error) {
	if len(raw) < headerSize {
		return Record{}, fmt.Errorf("decode header: %w (%d bytes)", ErrShort, len(raw))
	}
	// View an aligned, zero-padded copy of the sample as the C struct.
	b := unsafe.Slice((*byte)(unsafe.Pointer(&d.buf[0])), len(d.buf)*8)
	n := copy(b, raw)
	clear(b[n:])
	h := (*sensorHeader)(unsafe.Pointer(&b[0]))
	r := Record{
		Kind: Kind(h.Kind), Syscall: syscallNames[sensorSysCall(h.Syscall)], CPU: h.Cpu, Ktime: h.Ktime,
		Tgid: h.Tgid, Tid: h.Tid, Ppid: h.Ppid, UID: h.Uid, GID: h.Gid, EUID: h.Euid,
		CgroupID: h.CgroupId, Cgroup1ID: h.Cgroup1Id, PidNS: h.PidNs, MntNS: h.MntNs,
		Ret: h.Ret, StartBoottime: h.StartBoottime, Comm: cstring(h.Comm[:]),
	}
	switch r.Kind {
	case KindExec:
		if len(raw) < execFixed {
			return r, fmt.Errorf("decode exec: %w (%d bytes)", ErrShort, len(raw))
		}
		e := (*sensorExecRecord)(unsafe.Pointer(&b[0]))
		flags := sensorExecFlags(e.ExecFlags)
		args := min(int(e.ArgsLen), len(raw)-execFixed, len(e.Args))
		r.Exec = &Exec{
			Filename:        cstring(e.Exe[:]),
			ExeName:         cstring(e.ExeName[:]),
			Cwd:             walkedPath(bytesOf(e.Cwd[:min(int(e.CwdLen), len(e.Cwd))])),
			CwdTruncated:    flags&sensorExecFlagsEXEC_CWD_TRUNCATED != 0,
			Args:            splitArgs(bytesOf(e.Args[:args])),
			ArgsTruncated:   flags&sensorExecFlagsEXEC_ARGS_TRUNCATED != 0,
			ExeTruncated:    flags&sensorExecFlagsEXEC_EXE_TRUNCATED != 0,
			TTY:             ttyName(cstring(e.Tty[:])),
			UpperLayer:      flags&sensorExecFlagsEXEC_UPPER_LAYER != 0,
			Memfd:           flags&sensorExecFlagsEXEC_MEMFD != 0,
			ExeCtimeNs:      e.ExeCtimeNs,
			NSStartBoottime: e.NsStartBoottime,
			PidNSLevel:      e.PidNsLevel,
			Failed:          flags&sensorExecFlagsEXEC_FAILED != 0,
			DirFD:           flags&sensorExecFlagsEXEC_DIRFD != 0,
		}
	case KindFork:
		if len(raw) < forkSize {
			return r, fmt.Errorf("decode fork: %w (%d bytes)", ErrShort, len(raw))
		}
		f := (*sensorForkRecord)(unsafe.Pointer(&b[0]))
		r.ChildTgid, r.ChildStartBoottime = f.ChildTgid, f.ChildStartBoottime
	case KindExit:
	case KindConnect, KindListen:
		if len(raw) < netSize {
			return r, fmt.Errorf("decode %s: %w (%d bytes)", r.Kind, ErrShort, len(raw))
		}
		nr := (*sensorNetRecord)(unsafe.Pointer(&b[0]))
		r.Net = &Net{
			Family: nr.Family, SockType: nr.SockType, Protocol: nr.Protocol,
			Local:  addrPort(nr.Family, nr.LocalAddr, nr.LocalPort),
			Remote: addrPort(nr.Family, nr.RemoteAddr, nr.RemotePort),
			Send:   nr.NetFlags&uint16(sensorNetFlagsNET_SEND) != 0,
		}
	case KindOpen, KindChmod, KindMemfdCreate, KindPtrace, KindModule, KindUnshare, KindSetns:
		if len(raw) < sysFixed {
			return r, fmt.Errorf("decode %s: %w (%d bytes)", r.Kind, ErrShort, len(raw))
		}
		s := (*sensorSysRecord)(unsafe.Pointer(&b[0]))
		r.Args = s.Arg
		path := bytesOf(s.Path[:min(int(s.PathLen), len(raw)-sysFixed, len(s.Path))])
		if s.PathWalked != 0 {
			r.Path = walkedPath(path)
			r.PathTruncated = s.PathWalked == 2
		} else {
			r.Path = cstring(s.Path[:min(int(s.PathLen)+1, len(s.Path))])
		}
		if s.Resolved == uint8(sensorPathSourcePATH_RESOLVED) {
			r.PathResolved = true
			if start := int(s.PathLen) + 1; start < min(len(raw)-sysFixed, len(s.Path)) {
				end := min(start+int(s.ReqLen)+1, len(raw)-sysFixed, len(s.Path))
				r.RequestedPath = cstring(s.Path[start:end])
			}
		}
	default:
		return r, fmt.Errorf("decode: unknown record kind %d", r.Kind)
	}
	return r, nil
}

func bytesOf(s []int8) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s))
}

// cstring returns the NUL-terminated string at the start of s.
func cstring(s []int8) string {
	b := bytesOf(s)
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// ttyName turns the kernel's name of a terminal into its /dev path's:
// a pseudo-terminal the kernel calls "pts3" is /dev/pts/3, as ps and w
// show it. Other names (tty1, ttyS0, console) are already their path.
func ttyName(kernel string) string {
	if n, ok := strings.CutPrefix(kernel, "pts"); ok && n != "" && strings.Trim(n, "0123456789") == "" {
		return "pts/" + n
	}
	return kernel
}

// splitArgs splits NUL-separated argv; a trailing NUL ends the last argument.
func splitArgs(b []byte) []string {
	b = bytes.TrimSuffix(b, []byte{0})
	if len(b) == 0 {
		return nil
	}
	parts := bytes.Split(b, []byte{0})
	args := make([]string, len(parts))
	for i, p := range parts {
		args[i] = string(p)
	}
	return args
}

// walkedPath joins the NUL-separated, leaf-first components of a dentry
// walk into an absolute path.
func walkedPath(b []byte) string {
	b = bytes.TrimSuffix(b, []byte{0})
	if len(b) == 0 {
		return "/"
	}
	parts := bytes.Split(b, []byte{0})
	var out []byte
	for i := len(parts) - 1; i >= 0; i-- {
		if len(parts[i]) == 0 || (len(parts[i]) == 1 && parts[i][0] == '/') {
			continue
		}
		out = append(out, '/')
		out = append(out, parts[i]...)
	}
	if len(out) == 0 {
		return "/"
	}
	return string(out)
}

func addrPort(family uint16, addr [16]uint8, port uint16) netip.AddrPort {
	switch family {
	case 2: // AF_INET
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(addr[:4])), port)
	case 10: // AF_INET6
		return netip.AddrPortFrom(netip.AddrFrom16(addr).Unmap(), port)
	}
	return netip.AddrPort{}
}
