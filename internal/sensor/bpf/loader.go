package bpf

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// ErrClosed is returned by Read after Close.
var ErrClosed = os.ErrClosed

// WatchPath is a sensitive path whose opens the kernel reports: one file
// (Prefix false) or everything under a directory (Prefix true, with a
// trailing slash).
type WatchPath struct {
	Path   string
	Prefix bool
}

// Config sets what Open loads.
type Config struct {
	// RingBufferBytes is the size of the kernel-to-user ring buffer, a
	// power of two multiple of the page size. 0 means 4 MiB.
	RingBufferBytes uint32
	// Latency bounds how long a record may wait in the ring buffer before
	// Read returns it. Records are read in batches: the reader is woken
	// when a sixteenth of the ring is full or after Latency, whichever
	// comes first. 0 wakes the reader for every record.
	Latency time.Duration
	// SelfTgid is the sensor's own pid, whose activity is not reported.
	SelfTgid uint32
	// Paths and Names are the watched sensitive files: absolute paths and
	// prefixes, and base names matched in any directory (at most 31 bytes).
	Paths []WatchPath
	Names []string
}

// Objects is the loaded and attached sensor. Close releases it.
type Objects struct {
	objs    sensorObjects
	links   []link.Link
	reader  *ringbuf.Reader
	record  ringbuf.Record
	missing []string
	latency time.Duration
}

// tracepoint names a syscall tracepoint program. Optional ones do not exist
// on every architecture or kernel (open/creat/chmod are x86-only,
// fchmodat2 arrived in 6.6, module syscalls need CONFIG_MODULES); their
// absence is reported, not fatal.
type tracepoint struct {
	name     string
	prog     *ebpf.Program
	optional bool
}

// Open loads the programs into the kernel, fills the watch maps and
// attaches every hook. It needs root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN
// on older kernels) and a kernel with BTF.
func Open(cfg Config) (*Objects, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}
	spec, err := loadSensor()
	if err != nil {
		return nil, fmt.Errorf("parse sensor object: %w", err)
	}
	size := cfg.RingBufferBytes
	if size == 0 {
		size = 4 << 20
	}
	spec.Maps["events"].MaxEntries = size
	var wakeup uint64
	if cfg.Latency > 0 {
		wakeup = uint64(size / 16)
	}
	if err := spec.Variables["wakeup_bytes"].Set(wakeup); err != nil {
		return nil, fmt.Errorf("set wakeup_bytes: %w", err)
	}
	if err := spec.Variables["self_tgid"].Set(cfg.SelfTgid); err != nil {
		return nil, fmt.Errorf("set self_tgid: %w", err)
	}
	lens, err := nameLengths(cfg.Names)
	if err != nil {
		return nil, err
	}
	if err := spec.Variables["name_lens"].Set(lens); err != nil {
		return nil, fmt.Errorf("set name_lens: %w", err)
	}
	leafGate, dirGate := leafGates(leafNames(cfg))
	if err := spec.Variables["leaf_gate"].Set(leafGate); err != nil {
		return nil, fmt.Errorf("set leaf_gate: %w", err)
	}
	if err := spec.Variables["dir_gate"].Set(dirGate); err != nil {
		return nil, fmt.Errorf("set dir_gate: %w", err)
	}
	o := &Objects{latency: cfg.Latency}
	if err := spec.LoadAndAssign(&o.objs, nil); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load sensor programs: %+v", verr)
		}
		return nil, fmt.Errorf("load sensor programs: %w", err)
	}
	if err := o.setWatches(cfg); err != nil {
		o.Close()
		return nil, err
	}
	if err := mountTracefs(); err != nil {
		o.Close()
		return nil, err
	}
	if err := o.attach(); err != nil {
		o.Close()
		return nil, err
	}
	o.reader, err = ringbuf.NewReader(o.objs.Events)
	if err != nil {
		o.Close()
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	return o, nil
}

func (o *Objects) setWatches(cfg Config) error {
	for _, w := range cfg.Paths {
		if !strings.HasPrefix(w.Path, "/") || len(w.Path) >= len(sensorWatchKey{}.Path) {
			return fmt.Errorf("watch path %q: must be absolute and shorter than %d bytes", w.Path, len(sensorWatchKey{}.Path))
		}
		var k sensorWatchKey
		k.Prefixlen = uint32(len(w.Path) * 8)
		for i := range len(w.Path) {
			k.Path[i] = int8(w.Path[i])
		}
		v := sensorWatchValue{Len: uint16(len(w.Path))}
		if !w.Prefix {
			v.Exact = 1
		}
		if err := o.objs.WatchedPrefix.Put(&k, &v); err != nil {
			return fmt.Errorf("watch path %q: %w", w.Path, err)
		}
	}
	for _, name := range cfg.Names {
		var k sensorNameKey
		if name == "" || strings.Contains(name, "/") || len(name) >= len(k.Name) {
			return fmt.Errorf("watch name %q: must be a base name shorter than %d bytes", name, len(k.Name))
		}
		for i := range len(name) {
			k.Name[i] = int8(name[i])
		}
		if err := o.objs.WatchedName.Put(&k, uint8(1)); err != nil {
			return fmt.Errorf("watch name %q: %w", name, err)
		}
	}
	for name, bits := range leafNames(cfg) {
		var k sensorNameKey
		for i := range len(name) {
			k.Name[i] = int8(name[i])
		}
		if err := o.objs.WatchedLeaf.Put(&k, bits); err != nil {
			return fmt.Errorf("watch leaf %q: %w", name, err)
		}
	}
	return nil
}

// Bits of watched_leaf, enum leaf_bits in sensor.bpf.c.
const (
	leafFile = 1 // base name of a watched file
	leafName = 2 // a watched base name
	leafDir  = 4 // last component of a watched directory
)

// leafNames derives the exit-time gate from the watched set: a successful
// open whose requested string did not match is resolved through the
// opened file only when its name (or its parent's or grandparent's, for
// directories) is one of these. Names of 32 bytes or more cannot be keys;
// their files are then matched at enter only.
func leafNames(cfg Config) map[string]uint8 {
	out := map[string]uint8{}
	add := func(name string, bit uint8) {
		if name != "" && len(name) < len(sensorNameKey{}.Name) {
			out[name] |= bit
		}
	}
	for _, w := range cfg.Paths {
		p := strings.TrimRight(w.Path, "/")
		base := p[strings.LastIndexByte(p, '/')+1:]
		if w.Prefix {
			add(base, leafDir)
		} else {
			add(base, leafFile)
		}
	}
	for _, n := range cfg.Names {
		add(n, leafName)
	}
	return out
}

func (o *Objects) attach() error {
	p := &o.objs.sensorPrograms
	for name, prog := range map[string]*ebpf.Program{
		"sched_process_exec": p.OnExec,
		"sched_process_fork": p.OnFork,
		"sched_process_exit": p.OnExit,
	} {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: name, Program: prog})
		if err != nil {
			return fmt.Errorf("attach raw tracepoint %s: %w", name, err)
		}
		o.links = append(o.links, l)
	}
	tps := []tracepoint{
		{"openat", p.EnterOpenat, false}, {"openat2", p.EnterOpenat2, true},
		{"open", p.EnterOpen, true}, {"creat", p.EnterCreat, true},
		{"chmod", p.EnterChmod, true}, {"fchmodat", p.EnterFchmodat, false},
		{"fchmodat2", p.EnterFchmodat2, true}, {"fchmod", p.EnterFchmod, false},
		{"memfd_create", p.EnterMemfdCreate, false}, {"ptrace", p.EnterPtrace, false},
		{"init_module", p.EnterInitModule, true}, {"finit_module", p.EnterFinitModule, true},
		{"delete_module", p.EnterDeleteModule, true}, {"unshare", p.EnterUnshare, false},
		{"setns", p.EnterSetns, false}, {"connect", p.EnterConnect, false}, {"listen", p.EnterListen, false},
		{"sendto", p.EnterSendto, false}, {"sendmsg", p.EnterSendmsg, false},
		// Failed execs need only the exit: the arguments are still in the
		// caller's registers and memory when it fails.
		{"execve", nil, false}, {"execveat", nil, true},
	}
	exits := map[string]*ebpf.Program{
		"openat": p.ExitOpenat, "openat2": p.ExitOpenat2, "open": p.ExitOpen, "creat": p.ExitCreat,
		"chmod": p.ExitChmod, "fchmodat": p.ExitFchmodat, "fchmodat2": p.ExitFchmodat2, "fchmod": p.ExitFchmod,
		"memfd_create": p.ExitMemfdCreate, "ptrace": p.ExitPtrace, "init_module": p.ExitInitModule,
		"finit_module": p.ExitFinitModule, "delete_module": p.ExitDeleteModule, "unshare": p.ExitUnshare,
		"setns": p.ExitSetns, "connect": p.ExitConnect, "listen": p.ExitListen,
		"sendto": p.ExitSendto, "sendmsg": p.ExitSendmsg, "execve": p.ExitExecve, "execveat": p.ExitExecveat,
	}
	for _, tp := range tps {
		// Attach the exit first so that no enter is parked without its exit.
		for _, hook := range []struct {
			event string
			prog  *ebpf.Program
		}{{"sys_exit_" + tp.name, exits[tp.name]}, {"sys_enter_" + tp.name, tp.prog}} {
			if hook.prog == nil {
				continue
			}
			l, err := link.Tracepoint("syscalls", hook.event, hook.prog, nil)
			if err != nil {
				if tp.optional && errors.Is(err, os.ErrNotExist) {
					o.missing = append(o.missing, "syscalls/"+hook.event)
					break
				}
				return fmt.Errorf("attach tracepoint syscalls/%s: %w", hook.event, err)
			}
			o.links = append(o.links, l)
		}
	}
	return nil
}

// mountTracefs mounts tracefs at /sys/kernel/tracing when neither it nor
// debugfs is mounted: syscall tracepoints are found through it.
func mountTracefs() error {
	for _, p := range []string{"/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"} {
		if _, err := os.Stat(p); err == nil {
			return nil
		}
	}
	if err := unix.Mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, ""); err != nil {
		return fmt.Errorf("mount tracefs at /sys/kernel/tracing (needed for syscall tracepoints): %w", err)
	}
	return nil
}

// nameLengths returns the distinct lengths of the watched base names, which
// the kernel side needs as constants.
func nameLengths(names []string) ([16]uint32, error) {
	var lens [16]uint32
	n := 0
	for _, name := range names {
		if slices.Contains(lens[:n], uint32(len(name))) {
			continue
		}
		if n == len(lens) {
			return lens, fmt.Errorf("watch names: at most %d distinct name lengths", len(lens))
		}
		lens[n] = uint32(len(name))
		n++
	}
	return lens, nil
}

// Missing lists the optional hooks this kernel does not have.
func (o *Objects) Missing() []string { return o.missing }

// Read blocks until the next record and returns its raw bytes, valid until
// the next call. It returns ErrClosed once Close has been called. Read is
// not safe for concurrent use.
func (o *Objects) Read() ([]byte, error) {
	for {
		if o.latency > 0 {
			o.reader.SetDeadline(time.Now().Add(o.latency))
		}
		err := o.reader.ReadInto(&o.record)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue // the latency timer fired on an empty ring
		}
		if err != nil {
			return nil, err
		}
		return o.record.RawSample, nil
	}
}

// Counters are the per-CPU, per-kind counts of records sent to and dropped
// by the ring buffer since load.
type Counters struct {
	Sent    [][]uint64 // [cpu][kind]
	Dropped [][]uint64
}

// Counters reads the kernel's sent and dropped counters. Safe to call
// concurrently with Read.
func (o *Objects) Counters() (Counters, error) {
	var c Counters
	for _, m := range []struct {
		m   *ebpf.Map
		out *[][]uint64
	}{{o.objs.Sent, &c.Sent}, {o.objs.Drops, &c.Dropped}} {
		for k := range kindMax {
			var perCPU []uint64
			if err := m.m.Lookup(uint32(k), &perCPU); err != nil {
				return c, fmt.Errorf("read counters: %w", err)
			}
			for len(*m.out) < len(perCPU) {
				*m.out = append(*m.out, make([]uint64, kindMax))
			}
			for cpu, n := range perCPU {
				(*m.out)[cpu][k] = n
			}
		}
	}
	return c, nil
}

// leafGates are the kernel's first filter before a watched_leaf lookup:
// per name length, a bit for the first character (& 63) of each name.
func leafGates(leaves map[string]uint8) (leaf, dir [32]uint64) {
	for name, bits := range leaves {
		bit := uint64(1) << (name[0] & 63)
		if bits&(leafFile|leafName) != 0 {
			leaf[len(name)] |= bit
		}
		if bits&leafDir != 0 {
			dir[len(name)] |= bit
		}
	}
	return leaf, dir
}

// SweepPending deletes syscalls parked at sys_enter by threads that no
// longer exist (alive reports whether thread tid of process tgid does):
// a thread that died between enter and exit, or the old id of a thread
// that exec'd from a multi-threaded process (its id changed). It returns how many it
// removed, by record kind: records that will never be sent.
func (o *Objects) SweepPending(alive func(tgid, tid uint32) bool) map[Kind]uint64 {
	swept := map[Kind]uint64{}
	sweep := func(m *ebpf.Map, kind func(*ebpf.Map, uint64) Kind) {
		var dead []uint64
		var key uint64
		it := m.Iterate()
		var val []byte
		for it.Next(&key, &val) {
			if !alive(uint32(key>>32), uint32(key)) {
				dead = append(dead, key)
			}
		}
		for _, k := range dead {
			kd := kind(m, k)
			if m.Delete(k) == nil {
				swept[kd]++
			}
		}
	}
	sweep(o.objs.Pending, func(m *ebpf.Map, k uint64) Kind {
		var r sensorSysRecord
		if m.Lookup(k, &r) == nil {
			return Kind(r.H.Kind)
		}
		return KindOpen
	})
	sweep(o.objs.PendingNet, func(m *ebpf.Map, k uint64) Kind {
		var p sensorPendingNet
		if m.Lookup(k, &p) == nil && p.Kind != 0 {
			return Kind(p.Kind)
		}
		return KindConnect
	})
	return swept
}

// Detach stops the kernel from producing records; records already in the
// ring buffer can still be read. Used to shut down without losing any.
func (o *Objects) Detach() error {
	var errs []error
	for _, l := range o.links {
		errs = append(errs, l.Close())
	}
	o.links = nil
	return errors.Join(errs...)
}

// Drain wakes a blocked Read: Read returns the records already in the
// ring buffer, then ErrDrained.
func (o *Objects) Drain() error {
	return o.reader.Flush()
}

// ErrDrained is returned by Read once Drain has been called and every
// record buffered before it has been read.
var ErrDrained = ringbuf.ErrFlushed

// Close detaches every hook and frees the kernel objects. A blocked Read
// returns ErrClosed.
func (o *Objects) Close() error {
	var errs []error
	if o.reader != nil {
		errs = append(errs, o.reader.Close())
	}
	for _, l := range o.links {
		errs = append(errs, l.Close())
	}
	errs = append(errs, o.objs.Close())
	return errors.Join(errs...)
}
