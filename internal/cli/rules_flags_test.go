//go:build !node

package cli

import "testing"

// `vigil up` runs a sensor and the control-plane engine: it takes the same
// rule flags as `vigil sensor` (and hands them to both), --intel included.
func TestRulesFlagsOnUpAndSensor(t *testing.T) {
	up, sensor := upCmd(), sensorCmd()
	for _, name := range []string{"rules", "disable-rule", "intel"} {
		if up.Flags().Lookup(name) == nil {
			t.Errorf("vigil up has no --%s", name)
		}
		if sensor.Flags().Lookup(name) == nil {
			t.Errorf("vigil sensor has no --%s", name)
		}
	}
	// A bad --intel file is an error, not silently the shipped lists.
	rf := ruleFlags{intel: "/nonexistent/intel.yaml"}
	if _, err := rf.load(false); err == nil {
		t.Fatal("a missing --intel file loaded")
	}
}
