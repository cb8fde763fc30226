package sensor_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/sensor"
)

func TestMetrics(t *testing.T) {
	r := startSensor(t, sensor.Config{})
	pid, _ := action(t, "open", "/etc/hostname")
	r.wait(t, "exec of the action", 10*time.Second, byPid(event.ProcessExec, pid))

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(r.sensor.Collector())
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
	}
	for _, want := range []string{"vigil_sensor_events_total", "vigil_sensor_kernel_records_total",
		"vigil_sensor_dropped_records_total", "vigil_sensor_process_cache_entries", "vigil_sensor_mode"} {
		if !names[want] {
			t.Errorf("metric %s missing; have %v", want, names)
		}
	}
	err = testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP vigil_sensor_mode 1 for how the sensor watches the kernel: ebpf, or the netlink fallback.
# TYPE vigil_sensor_mode gauge
vigil_sensor_mode{mode="ebpf"} 1
`), "vigil_sensor_mode")
	if err != nil {
		t.Error(err)
	}
	if n := counterValue(t, reg, "vigil_sensor_kernel_records_total", "exec"); n < 1 {
		t.Errorf("kernel exec records = %v, want at least the action's exec", n)
	}
}

// counterValue returns the value of a gathered counter with the given kind label.
func counterValue(t *testing.T, reg *prometheus.Registry, name, kind string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if f.GetName() == name && l.GetName() == "kind" && l.GetValue() == kind {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{kind=%q}", name, kind)
	return 0
}
