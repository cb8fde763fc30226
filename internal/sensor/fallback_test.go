package sensor_test

import (
	"bufio"
	"encoding/json"
	"os"
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

// When the eBPF programs really cannot be loaded (here: seccomp fails every
// bpf(2) call with EPERM, as Docker's default profile does in an
// unprivileged container) the sensor falls back to the process connector
// and its warning names the cause.
func TestFallbackWhenEBPFCannotLoad(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the sensor tests need root")
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), actionEnv+"=sensor-without-bpf")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			e := new(event.Event)
			if err := json.Unmarshal(sc.Bytes(), e); err != nil {
				t.Errorf("sensor output %q: %v", sc.Text(), err)
				continue
			}
			r.mu.Lock()
			r.events = append(r.events, e)
			r.mu.Unlock()
		}
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		stdin.Close() // the child's sensor stops at EOF
		<-read
		if err := cmd.Wait(); err != nil {
			t.Errorf("sensor process: %v: %s", err, stderr.String())
		}
	}
	t.Cleanup(func() {
		cmd.Process.Kill() // unless stopped already
		stop()
	})

	health := r.wait(t, "health", 30*time.Second, func(e *event.Event) bool { return e.Kind == event.SensorHealth })
	h := health.Health
	if h.Mode != "netlink" || len(h.Warnings) != 1 ||
		!strings.Contains(h.Warnings[0], "eBPF programs could not be loaded") ||
		!strings.Contains(h.Warnings[0], "operation not permitted") ||
		!strings.Contains(h.Warnings[0], "falling back to the netlink process connector") ||
		!strings.Contains(h.Warnings[0], "network, file") {
		t.Fatalf("health = %+v, want netlink mode and one warning naming the cause (EPERM from bpf) and what is missing", h)
	}
	t.Logf("fallback warning: %s", h.Warnings[0])

	cmd2 := exec.Command("/bin/sh", "-c", "exec /bin/sleep 0.5")
	if err := cmd2.Run(); err != nil {
		t.Fatal(err)
	}
	r.wait(t, "exec of sleep", 10*time.Second, func(e *event.Event) bool {
		return e.Kind == event.ProcessExec && e.Process.Pid == uint32(cmd2.Process.Pid) && slices.Equal(e.Process.Args, []string{"/bin/sleep", "0.5"})
	})
	stop()
}
