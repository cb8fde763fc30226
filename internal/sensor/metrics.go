package sensor

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/sensor/bpf"
)

var (
	eventsDesc = prometheus.NewDesc("vigil_sensor_events_total",
		"Events the sensor handed out, by kind.", []string{"kind"}, nil)
	sentDesc = prometheus.NewDesc("vigil_sensor_kernel_records_total",
		"Records the kernel programs put in the ring buffer, by record kind.", []string{"kind"}, nil)
	droppedDesc = prometheus.NewDesc("vigil_sensor_dropped_records_total",
		"Records the kernel could not put in the full ring buffer, by CPU and record kind.", []string{"cpu", "kind"}, nil)
	decodeErrorsDesc = prometheus.NewDesc("vigil_sensor_decode_errors_total",
		"Ring-buffer records the sensor could not decode.", nil, nil)
	cacheDesc = prometheus.NewDesc("vigil_sensor_process_cache_entries",
		"Processes in the sensor's process tree.", nil, nil)
	evictionsDesc = prometheus.NewDesc("vigil_sensor_process_cache_evictions_total",
		"Processes evicted from the full process tree.", nil, nil)
	modeDesc = prometheus.NewDesc("vigil_sensor_mode",
		"1 for how the sensor watches the kernel: ebpf, or the netlink fallback.", []string{"mode"}, nil)
)

// Collector returns the sensor's Prometheus metrics. Kernel counters are
// read at each scrape, so the figures are current, not those of the last
// sensor.health event.
func (s *Sensor) Collector() prometheus.Collector { return collector{s} }

type collector struct{ s *Sensor }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{eventsDesc, sentDesc, droppedDesc, decodeErrorsDesc, cacheDesc, evictionsDesc, modeDesc} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	s.emitMu.Lock()
	byKind := make(map[event.Kind]uint64, len(s.stats.byKind))
	for k, n := range s.stats.byKind {
		byKind[k] = n
	}
	s.emitMu.Unlock()
	for k, n := range byKind {
		ch <- prometheus.MustNewConstMetric(eventsDesc, prometheus.CounterValue, float64(n), string(k))
	}

	s.stats.mu.Lock()
	mode, counters := s.stats.mode, s.stats.counters
	s.stats.mu.Unlock()
	if mode != "" {
		ch <- prometheus.MustNewConstMetric(modeDesc, prometheus.GaugeValue, 1, mode)
	}
	if counters != nil {
		if k, err := counters(); err == nil {
			collectKernel(ch, k)
		}
	}
	ch <- prometheus.MustNewConstMetric(decodeErrorsDesc, prometheus.CounterValue, float64(s.stats.decodeErrors.Load()))
	ch <- prometheus.MustNewConstMetric(cacheDesc, prometheus.GaugeValue, float64(s.tree.Len()))
	ch <- prometheus.MustNewConstMetric(evictionsDesc, prometheus.CounterValue, float64(s.tree.Evictions()))
}

func collectKernel(ch chan<- prometheus.Metric, k bpf.Counters) {
	sent := map[string]uint64{}
	for _, perKind := range k.Sent {
		for kind, n := range perKind {
			sent[bpf.Kind(kind).String()] += n
		}
	}
	for kind, n := range sent {
		ch <- prometheus.MustNewConstMetric(sentDesc, prometheus.CounterValue, float64(n), kind)
	}
	for cpu, perKind := range k.Dropped {
		for kind, n := range perKind {
			ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue, float64(n), strconv.Itoa(cpu), bpf.Kind(kind).String())
		}
	}
}
