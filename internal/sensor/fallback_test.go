package sensor_test

import (
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/sensor"
)

// Without eBPF the sensor still sees execs, with argv from /proc, and says
// plainly what it is missing.
func TestFallbackToProcessConnector(t *testing.T) {
	r := startSensor(t, sensor.Config{DisableEBPF: true})
	health := r.wait(t, "health", time.Second, func(e *event.Event) bool { return e.Kind == event.SensorHealth })
	if health.Health.Mode != "netlink" || len(health.Health.Warnings) == 0 ||
		!strings.Contains(health.Health.Warnings[0], "network, file") {
		t.Fatalf("health = %+v, want netlink mode with a warning naming what is missing", health.Health)
	}

	// The child sleeps, so /proc still shows its argv when the sensor reads it.
	cmd := exec.Command("/bin/sh", "-c", "exec /bin/sleep 0.5")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	e := r.wait(t, "exec of sleep", 10*time.Second, func(e *event.Event) bool {
		return e.Kind == event.ProcessExec && e.Process.Pid == uint32(pid) && slices.Equal(e.Process.Args, []string{"/bin/sleep", "0.5"})
	})
	sleep, err := filepath.EvalSymlinks("/bin/sleep") // /proc/<pid>/exe is the resolved file
	if err != nil {
		t.Fatal(err)
	}
	if e.Process.Exe != sleep || e.Process.ExecID == "" {
		t.Errorf("exec event = %+v", e.Process)
	}
	exit := r.wait(t, "exit of sleep", 10*time.Second, byPid(event.ProcessExit, pid))
	if exit.Process.ExitCode == nil || *exit.Process.ExitCode != 0 {
		t.Errorf("exit = %+v", exit.Process)
	}
}
