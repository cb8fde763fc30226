package sensor_test

import (
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/runctest"
	"github.com/vigil-sec/vigil/internal/sensor"
	"github.com/vigil-sec/vigil/internal/sensor/container"
)

// execIn returns the first process.exec whose argv is args.
func execIn(args ...string) func(*event.Event) bool {
	return func(e *event.Event) bool {
		return e.Kind == event.ProcessExec && slices.Equal(e.Process.Args, args)
	}
}

func TestExecInContainer(t *testing.T) {
	r := startSensor(t, sensor.Config{})
	c := runctest.Start(t, runctest.Options{Overlay: true})

	script := "/bin/echo in-container-marker; /bin/true"
	if out, err := c.Exec(t, "/bin/sh", "-c", script); err != nil {
		t.Fatalf("runc exec: %v: %s", err, out)
	}
	e := r.wait(t, "exec in the container", 10*time.Second, execIn("/bin/echo", "in-container-marker"))
	sh := r.wait(t, "the container's shell", 10*time.Second, execIn("/bin/sh", "-c", script))

	if e.Container == nil || e.Container.ID != c.ID {
		t.Fatalf("container = %+v, want id %s", e.Container, c.ID)
	}
	if e.Container.PodUID != c.PodUID {
		t.Errorf("pod uid = %q, want %q", e.Container.PodUID, c.PodUID)
	}
	if e.Process.Ppid != sh.Process.Pid || e.Process.Parent == nil || e.Process.Parent.Exe != "/bin/sh" ||
		!slices.Equal(e.Process.Parent.Args, []string{"/bin/sh", "-c", script}) {
		t.Errorf("parent = ppid %d %+v, want the shell %d", e.Process.Ppid, e.Process.Parent, sh.Process.Pid)
	}
	if e.Process.ParentExecID != sh.Process.ExecID {
		t.Errorf("parent exec id = %q, want the shell's %q", e.Process.ParentExecID, sh.Process.ExecID)
	}
	if e.Process.Drift || e.Process.UpperLayer {
		t.Errorf("busybox shipped in the image flagged as drift: %+v", e.Process)
	}
	if e.Process.PidNS == 0 || e.Process.CgroupID == 0 {
		t.Errorf("namespace and cgroup ids missing: %+v", e.Process)
	}
}

// A binary copied into a running container and executed is drift; one
// shipped in its image is not. Overlay roots (containerd, CRI-O) show it
// as an upper-layer executable; plain directories as an inode written
// after the container started.
func TestDrift(t *testing.T) {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		overlay   bool
		wantUpper bool
	}{
		{"overlay root", true, true},
		{"plain root", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startSensor(t, sensor.Config{})
			c := runctest.Start(t, runctest.Options{Overlay: tc.overlay})
			time.Sleep(50 * time.Millisecond)        // the copy is strictly after the start
			c.CopyIn(t, busybox, "/tmp/echo", 0o755) // busybox picks its applet from the name

			if out, err := c.Exec(t, "/bin/echo", "shipped"); err != nil {
				t.Fatalf("runc exec: %v: %s", err, out)
			}
			if out, err := c.Exec(t, "/tmp/echo", "dropped"); err != nil {
				t.Fatalf("runc exec: %v: %s", err, out)
			}
			shipped := r.wait(t, "shipped binary", 10*time.Second, execIn("/bin/echo", "shipped"))
			dropped := r.wait(t, "dropped binary", 10*time.Second, execIn("/tmp/echo", "dropped"))
			if shipped.Process.Drift || shipped.Process.UpperLayer || shipped.Process.ExeWrittenAfterStart {
				t.Errorf("shipped binary flagged: %+v", shipped.Process)
			}
			if !dropped.Process.Drift || dropped.Process.UpperLayer != tc.wantUpper {
				t.Errorf("dropped binary: drift %v upper_layer %v written_after_start %v, want drift and upper_layer %v",
					dropped.Process.Drift, dropped.Process.UpperLayer, dropped.Process.ExeWrittenAfterStart, tc.wantUpper)
			}
			if dropped.Container == nil || dropped.Container.ID != c.ID {
				t.Errorf("container = %+v, want %s", dropped.Container, c.ID)
			}
		})
	}
}

func newContainers(t *testing.T) sensor.Containers {
	r, err := container.NewResolver(container.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}
