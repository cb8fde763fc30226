package sensor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/sensor/bpf"
	"github.com/vigil-sec/vigil/internal/sensor/procfs"
	"github.com/vigil-sec/vigil/internal/sensor/proctree"
)

// Containers attributes a process to its container. Resolve returns nil
// for host processes. Implementations must be fast on repeated ids (the
// call is on the path of every event) and safe for concurrent use.
type Containers interface {
	Resolve(cgroupV2, cgroupV1 uint64, pid uint32) *event.Container
}

// Config is everything a Sensor needs.
type Config struct {
	// Node names this machine in every event.
	Node string
	// ProcRoot is where the host's /proc is mounted ("/proc").
	ProcRoot string
	// RingBufferBytes sizes the kernel-to-user buffer (0: 4 MiB).
	RingBufferBytes uint32
	// Latency bounds how long an event may wait in the kernel's ring
	// buffer: the sensor reads in batches rather than waking up for every
	// record (0: 20ms; negative: wake for every record).
	Latency time.Duration
	// ProcessCache bounds the process tree (0: 32768 processes).
	ProcessCache int
	// AncestryDepth is how many ancestors an event carries (0: 8).
	AncestryDepth int
	// HealthInterval is how often a sensor.health event reports counters
	// (0: 30s). One is also sent at start and at stop.
	HealthInterval time.Duration
	// WatchPaths and WatchNames replace the default sensitive files.
	WatchPaths []bpf.WatchPath
	WatchNames []string
	// DisableEBPF watches through the netlink process connector only, as
	// when eBPF cannot be loaded.
	DisableEBPF bool
	// Containers attributes processes to containers; nil attributes none.
	Containers Containers
	// Log receives the sensor's own diagnostics; nil discards them.
	Log *slog.Logger
}

// Sensor watches this node. Create it with New and call Run once.
type Sensor struct {
	cfg   Config
	tree  *proctree.Tree
	procs procfs.FS
	clock *clock
	stats stats

	emitMu sync.Mutex
	emit   func(*event.Event)
}

// New returns a Sensor for cfg, with defaults filled in.
func New(cfg Config) *Sensor {
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	if cfg.Latency == 0 {
		cfg.Latency = 20 * time.Millisecond
	}
	if cfg.AncestryDepth <= 0 {
		cfg.AncestryDepth = 8
	}
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = 30 * time.Second
	}
	if cfg.WatchPaths == nil {
		cfg.WatchPaths = DefaultWatchPaths
	}
	if cfg.WatchNames == nil {
		cfg.WatchNames = DefaultWatchNames
	}
	if cfg.Node == "" {
		cfg.Node, _ = os.Hostname()
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Sensor{
		cfg:   cfg,
		tree:  proctree.New(proctree.Config{Max: cfg.ProcessCache}),
		procs: procfs.FS{Root: cfg.ProcRoot},
		clock: newClock(),
	}
}

// fallbackLimits says what the netlink fallback cannot see.
const fallbackLimits = "only process exec, fork and exit are seen, argv is read from /proc and can be missed for short-lived processes, and network, file, module, namespace and ptrace events are not reported"

// ErrNotRoot is returned by Run when the sensor lacks the privileges to
// watch the kernel.
var ErrNotRoot = errors.New("the sensor must run as root: it loads eBPF programs (or, as a fallback, listens to the kernel's process connector)")

// Run watches the node until ctx is cancelled, calling emit for every
// event, one call at a time. It returns nil after cancellation and an
// error when nothing could be watched. Run may be called once.
func (s *Sensor) Run(ctx context.Context, emit func(*event.Event)) error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	s.emit = emit
	s.seed()

	if s.cfg.DisableEBPF {
		warning := "eBPF disabled by configuration; watching the netlink process connector: " + fallbackLimits
		s.cfg.Log.Warn(warning)
		return s.runFallback(ctx, warning)
	}
	objs, err := bpf.Open(bpf.Config{
		RingBufferBytes: s.cfg.RingBufferBytes,
		Latency:         max(s.cfg.Latency, 0),
		SelfTgid:        uint32(os.Getpid()),
		Paths:           s.cfg.WatchPaths,
		Names:           s.cfg.WatchNames,
	})
	if err != nil {
		warning := fmt.Sprintf("eBPF programs could not be loaded (%v); falling back to the netlink process connector: %s", err, fallbackLimits)
		s.cfg.Log.Warn(warning)
		return s.runFallback(ctx, warning)
	}
	defer objs.Close()
	var warnings []string
	for _, m := range objs.Missing() {
		warnings = append(warnings, "hook not available on this kernel: "+m)
	}
	s.stats.setMode("ebpf", warnings, objs.Counters)

	done := make(chan struct{})
	go func() {
		defer close(done)
		s.healthLoop(ctx, objs.Counters)
	}()
	go s.sweepLoop(ctx, objs)
	go func() {
		// Stop new records, then read what is already buffered: nothing
		// the kernel recorded before cancellation is lost.
		<-ctx.Done()
		objs.Detach()
		objs.Drain()
	}()

	dec := bpf.NewDecoder()
	for {
		raw, err := objs.Read()
		if err != nil {
			if errors.Is(err, bpf.ErrDrained) || errors.Is(err, bpf.ErrClosed) {
				break
			}
			return fmt.Errorf("read ring buffer: %w", err)
		}
		rec, err := dec.Decode(raw)
		if err != nil {
			s.stats.decodeErrors.Add(1)
			s.cfg.Log.Debug("drop undecodable record", "err", err)
			continue
		}
		s.handle(&rec)
	}
	<-done
	s.sendHealth(objs.Counters)
	return nil
}

// sweepInterval is how often syscalls parked by dead threads are cleared.
const sweepInterval = 30 * time.Second

// sweepLoop clears, every sweepInterval until ctx is done, the syscalls
// the kernel parked at sys_enter for threads that are gone, so that the
// pending maps (plain hashes, which never evict) cannot fill up, and
// counts them as dropped.
func (s *Sensor) sweepLoop(ctx context.Context, objs *bpf.Objects) {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.stats.addSwept(objs.SweepPending(func(tgid, tid uint32) bool {
				_, err := os.Stat(fmt.Sprintf("%s/%d/task/%d", s.cfg.ProcRoot, tgid, tid))
				return err == nil
			}))
		}
	}
}

func (s *Sensor) send(e *event.Event) {
	s.stats.events.Add(1)
	s.emitMu.Lock()
	if s.stats.byKind == nil {
		s.stats.byKind = map[event.Kind]uint64{}
	}
	s.stats.byKind[e.Kind]++
	s.emit(e)
	s.emitMu.Unlock()
}

// seed fills the process tree from /proc, so that processes that started
// before the sensor have parents and ancestry.
func (s *Sensor) seed() {
	pids, err := s.procs.Pids()
	if err != nil {
		s.cfg.Log.Warn("cannot seed the process tree", "err", err)
		return
	}
	for _, pid := range pids {
		p, err := s.procs.Read(pid)
		if err != nil {
			continue // exited meanwhile
		}
		s.tree.Put(proctree.Entry{
			Pid: p.Pid, Ppid: p.Ppid, Exe: p.Exe, Args: p.Args, Cwd: p.Cwd,
			StartBoottime: p.StartBoottime, ExecID: s.execID(p.Pid, p.StartBoottime),
		})
	}
}
