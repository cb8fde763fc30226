package procconn

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openEnv makes the test binary, re-executed in new namespaces, call Open
// and report the result instead of running tests.
const openEnv = "PROCCONN_TEST_OPEN"

func TestMain(m *testing.M) {
	if os.Getenv(openEnv) != "" {
		c, err := Open()
		if err == nil {
			c.Close()
		}
		fmt.Printf("namespace=%t refused=%t err=%v\n", errors.Is(err, ErrNamespace), errors.Is(err, unix.ECONNREFUSED), err)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the process connector tests subscribe to kernel process events: run them as root")
	}
}

func open(t *testing.T) *Conn {
	t.Helper()
	requireRoot(t)
	c, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// collector reads a Conn in the background and keeps every event.
type collector struct {
	mu     sync.Mutex
	events []Event
	err    error // the error that ended reading
	done   chan struct{}
}

func collect(c *Conn) *collector {
	col := &collector{done: make(chan struct{})}
	go func() {
		defer close(col.done)
		for {
			events, err := c.Read()
			if errors.Is(err, ErrOverrun) {
				continue
			}
			col.mu.Lock()
			col.events = append(col.events, events...)
			col.err = err
			col.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return col
}

// find waits until match holds for some event and returns it.
func (col *collector) find(t *testing.T, what string, deadline time.Time, match func(Event) bool) Event {
	t.Helper()
	for {
		col.mu.Lock()
		for _, e := range col.events {
			if match(e) {
				col.mu.Unlock()
				return e
			}
		}
		err := col.err
		col.mu.Unlock()
		if err != nil {
			t.Fatalf("waiting for %s: Read: %v", what, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestProcessLifecycle runs real programs and waits for the kernel's
// fork, exec and exit notifications about them.
func TestProcessLifecycle(t *testing.T) {
	c := open(t)
	col := collect(c)
	self := uint32(os.Getpid())

	for _, tc := range []struct {
		path     string
		exitCode uint32 // wait status: exit status << 8
	}{
		{"/bin/true", 0},
		{"/bin/false", 1 << 8},
	} {
		t.Run(tc.path, func(t *testing.T) {
			cmd := exec.Command(tc.path)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pid := uint32(cmd.Process.Pid)
			cmd.Wait()
			deadline := time.Now().Add(10 * time.Second)

			fork := col.find(t, fmt.Sprintf("fork of %d", pid), deadline, func(e Event) bool {
				return e.Kind == Fork && e.Tgid == pid
			})
			if fork.Pid != pid || fork.ParentTgid != self {
				t.Errorf("fork = %+v, want pid %d and parent tgid %d", fork, pid, self)
			}
			execEv := col.find(t, fmt.Sprintf("exec of %d", pid), deadline, func(e Event) bool {
				return e.Kind == Exec && e.Tgid == pid
			})
			if execEv.Pid != pid {
				t.Errorf("exec = %+v, want pid %d", execEv, pid)
			}
			exit := col.find(t, fmt.Sprintf("exit of %d", pid), deadline, func(e Event) bool {
				return e.Kind == Exit && e.Tgid == pid && e.Pid == pid
			})
			// The kernel fills the exit's parent only while the task is
			// still hashed: a parent that reaps it first (cmd.Wait on
			// another CPU) leaves 0, which the sensor reads as unknown.
			if exit.ExitCode != tc.exitCode || exit.ExitSignal != uint32(syscall.SIGCHLD) || (exit.ParentTgid != self && exit.ParentTgid != 0) {
				t.Errorf("exit = %+v, want exit code %#x, signal SIGCHLD, parent tgid %d", exit, tc.exitCode, self)
			}
			if !(fork.Timestamp <= execEv.Timestamp && execEv.Timestamp <= exit.Timestamp) || fork.Timestamp == 0 {
				t.Errorf("timestamps fork %d, exec %d, exit %d: want non-zero and in order", fork.Timestamp, execEv.Timestamp, exit.Timestamp)
			}
		})
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	requireRoot(t)
	c, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	col := collect(c)
	time.Sleep(100 * time.Millisecond) // let Read park in the poller
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-col.done:
	case <-time.After(2 * time.Second):
		t.Fatal("Read still blocked 2s after Close")
	}
	if !errors.Is(col.err, os.ErrClosed) {
		t.Fatalf("blocked Read returned %v, want os.ErrClosed", col.err)
	}
	if _, err := c.Read(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Read after Close = %v, want os.ErrClosed", err)
	}
	if err := c.Close(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("second Close = %v, want os.ErrClosed", err)
	}
}

// TestOverrun shrinks the receive buffer to the kernel's minimum, lets
// processes run without reading, and expects Read to report the loss.
func TestOverrun(t *testing.T) {
	c := open(t)
	var serr error
	if err := c.rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 0)
	}); err != nil || serr != nil {
		t.Fatalf("shrink receive buffer: %v %v", err, serr)
	}
	for range 50 {
		if err := exec.Command("/bin/true").Run(); err != nil {
			t.Fatal(err)
		}
	}
	timer := time.AfterFunc(10*time.Second, func() { c.Close() })
	defer timer.Stop()

	_, err := c.Read()
	if !errors.Is(err, ErrOverrun) || !errors.Is(err, unix.ENOBUFS) {
		t.Fatalf("first Read after a burst into a tiny buffer = %v, want ErrOverrun wrapping ENOBUFS", err)
	}
	if n := c.Lost(); n != 1 {
		t.Fatalf("Lost = %d, want 1", n)
	}
	// What was queued before the overrun is still there.
	events, err := c.Read()
	if err != nil || len(events) == 0 {
		t.Fatalf("Read after overrun = %v, %v; want events", events, err)
	}
}

// TestOpenOutsideInitialNamespaces re-runs the test binary in new
// namespaces, where the kernel does not report process events.
func TestOpenOutsideInitialNamespaces(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name    string
		flags   uintptr
		refused bool // sendto fails at once, rather than the ack never coming
	}{
		{"network", unix.CLONE_NEWNET, true},
		{"pid", unix.CLONE_NEWPID, false},
		{"user", unix.CLONE_NEWUSER, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), openEnv+"=1")
			cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: tc.flags}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("run Open in a new %s namespace: %v\n%s", tc.name, err, out)
			}
			want := fmt.Sprintf("namespace=true refused=%t ", tc.refused)
			if tc.flags == unix.CLONE_NEWUSER && strings.Contains(string(out), "bind to the process events group: operation not permitted") {
				// Kernels before 6.6 refuse the bind itself outside the
				// initial user namespace: a clear error too.
				want = "namespace=false refused=false "
			}
			if !strings.HasPrefix(string(out), want) {
				t.Fatalf("Open in a new %s namespace: %s\nwant a line starting %q", tc.name, out, want)
			}
			t.Logf("%s", out)
		})
	}
}
