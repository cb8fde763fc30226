package sensor

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/sensor/bpf"
)

// stats are the sensor's own counters, read by health events and metrics.
type stats struct {
	events       atomic.Uint64 // events handed to emit
	decodeErrors atomic.Uint64

	mu       sync.Mutex
	mode     string
	warnings []string
	kernel   bpf.Counters // last read
	counters func() (bpf.Counters, error)
	connLost func() uint64 // fallback mode: connector overruns

	byKind map[event.Kind]uint64 // guarded by Sensor.emitMu

	// swept counts syscalls parked at enter whose thread died before the
	// exit: records never sent, reported as drops of their kind.
	swept map[bpf.Kind]uint64 // guarded by mu
}

func (st *stats) addSwept(n map[bpf.Kind]uint64) {
	if len(n) == 0 {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.swept == nil {
		st.swept = map[bpf.Kind]uint64{}
	}
	for k, v := range n {
		st.swept[k] += v
	}
}

// setMode records how the sensor watches the kernel; counters reads the
// kernel's counters (nil when there are none, as in fallback mode).
func (st *stats) setMode(mode string, warnings []string, counters func() (bpf.Counters, error)) {
	st.mu.Lock()
	st.mode, st.warnings, st.counters = mode, warnings, counters
	st.mu.Unlock()
}

func (st *stats) setConnectorLost(lost func() uint64) {
	st.mu.Lock()
	st.connLost = lost
	st.mu.Unlock()
}

// healthLoop sends a sensor.health event at start and every interval
// until ctx is done.
func (s *Sensor) healthLoop(ctx context.Context, counters func() (bpf.Counters, error)) {
	s.sendHealth(counters)
	t := time.NewTicker(s.cfg.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.clock.sync()
			s.sendHealth(counters)
		}
	}
}

// sendHealth reads the kernel's counters (nil in fallback mode) and
// emits them with the sensor's own.
func (s *Sensor) sendHealth(counters func() (bpf.Counters, error)) {
	if counters != nil {
		if c, err := counters(); err == nil {
			s.stats.mu.Lock()
			s.stats.kernel = c
			s.stats.mu.Unlock()
		} else {
			s.cfg.Log.Warn("cannot read kernel counters", "err", err)
		}
	}
	s.send(&event.Event{Kind: event.SensorHealth, Time: time.Now().UTC(), Node: s.cfg.Node, Health: s.Health()})
}

// Health returns the sensor's current counters. Safe for concurrent use.
func (s *Sensor) Health() *event.Health {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	h := &event.Health{
		Mode:           s.stats.mode,
		Warnings:       s.stats.warnings,
		EventsTotal:    s.stats.events.Load(),
		ProcessCache:   s.tree.Len(),
		CacheEvictions: s.tree.Evictions(),
		DecodeErrors:   s.stats.decodeErrors.Load(),
	}
	for _, perKind := range s.stats.kernel.Dropped {
		var cpu uint64
		for kind, n := range perKind {
			if n == 0 {
				continue
			}
			cpu += n
			if h.DroppedByKind == nil {
				h.DroppedByKind = map[string]uint64{}
			}
			h.DroppedByKind[bpf.Kind(kind).String()] += n
		}
		h.DroppedPerCPU = append(h.DroppedPerCPU, cpu)
		h.DroppedTotal += cpu
	}
	for kind, n := range s.stats.swept {
		if h.DroppedByKind == nil {
			h.DroppedByKind = map[string]uint64{}
		}
		h.DroppedByKind[kind.String()] += n
		h.DroppedTotal += n
	}
	if s.stats.connLost != nil {
		// The connector does not say what it lost, only that it did.
		if n := s.stats.connLost(); n > 0 {
			h.DroppedTotal += n
			h.DroppedByKind = map[string]uint64{"connector_overrun": n}
		}
	}
	for _, perKind := range s.stats.kernel.Sent {
		for kind, n := range perKind {
			if n == 0 {
				continue
			}
			if h.KernelSentByKind == nil {
				h.KernelSentByKind = map[string]uint64{}
			}
			h.KernelSentByKind[bpf.Kind(kind).String()] += n
		}
	}
	return h
}
