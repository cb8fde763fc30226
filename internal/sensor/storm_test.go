package sensor_test

import (
	"strconv"
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/sensor"
)

// An exec storm is delivered without loss, or the loss is counted exactly:
// every exec record the kernel sent arrives as a process.exec event, and
// those it could not send are in the dropped counters.
func TestExecStorm(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ring      uint32
		stall     bool
		execs     int
		wantDrops bool
	}{
		{name: "default ring buffer", execs: 3000},
		// A 16 KiB ring and a consumer stalled for the whole storm: the
		// kernel must drop, and every drop must be counted.
		{name: "tiny ring and stalled consumer", ring: 16 << 10, stall: true, execs: 1000, wantDrops: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hold chan struct{}
			if tc.stall {
				hold = make(chan struct{})
			}
			r := startSensorHeld(t, sensor.Config{RingBufferBytes: tc.ring}, hold)
			storm, out := action(t, "exec-storm", strconv.Itoa(tc.execs))
			if hold != nil {
				close(hold)
			}
			if out != "" {
				t.Fatalf("exec storm: %s", out)
			}
			r.stop(t) // detaches, drains the ring, sends a final health event

			events := r.all()
			final := events[len(events)-1]
			if final.Kind != event.SensorHealth {
				t.Fatalf("last event is %s, want the final sensor.health", final.Kind)
			}
			var execs, ours uint64
			for _, e := range events {
				if e.Kind == event.ProcessExec {
					execs++
					if e.Process.Ppid == uint32(storm) {
						ours++
					}
				}
			}
			h := final.Health
			sent, dropped := h.KernelSentByKind["exec"], h.DroppedByKind["exec"]
			t.Logf("storm of %d execs: received %d of ours, %d in all; kernel sent %d, dropped %d (per CPU %v)",
				tc.execs, ours, execs, sent, dropped, h.DroppedPerCPU)
			if execs != sent {
				t.Errorf("received %d process.exec events, the kernel sent %d: events lost in user space", execs, sent)
			}
			if ours+dropped < uint64(tc.execs) {
				t.Errorf("received %d of the storm's %d execs and only %d drops were counted: loss not accounted for", ours, tc.execs, dropped)
			}
			if !tc.wantDrops && dropped > 0 {
				t.Errorf("%d exec records dropped with the default ring buffer", dropped)
			}
			if tc.wantDrops && dropped == 0 {
				t.Errorf("a tiny ring and a slow consumer dropped nothing: the test did not exercise loss")
			}
			if tc.wantDrops && h.DroppedTotal < dropped {
				t.Errorf("dropped_total %d < dropped exec records %d", h.DroppedTotal, dropped)
			}
		})
	}
}
