package sensor_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/sensor"
)

// evasionEnv makes the test binary, re-executed as a child, perform one of
// the evasion actions below instead of running tests (the sensor ignores
// its own process, so every action runs in a child).
const evasionEnv = "VIGIL_EVASION_ACTION"

func init() {
	if a := os.Getenv(evasionEnv); a != "" {
		if err := evasionAction(a, os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, a+":", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

func evasionAction(action string, args []string) error {
	switch action {
	case "openat-dirfd": // dir name: openat(open(dir), name)
		dfd, err := unix.Open(args[0], unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		fd, err := unix.Openat(dfd, args[1], unix.O_RDONLY, 0)
		if err != nil {
			return err
		}
		return unix.Close(fd)
	case "chdir-open": // dir name: chdir(dir); open(name)
		if err := os.Chdir(args[0]); err != nil {
			return err
		}
		f, err := os.Open(args[1])
		if err != nil {
			return err
		}
		return f.Close()
	case "sendto": // network addr count: unconnected sendto, count times
		network, addr := args[0], args[1]
		dst, err := net.ResolveUDPAddr(network, addr)
		if err != nil {
			return err
		}
		c, err := net.ListenUDP(network, nil)
		if err != nil {
			return err
		}
		defer c.Close()
		var n int
		fmt.Sscan(args[2], &n)
		for range n {
			if _, err := c.WriteToUDP([]byte("x"), dst); err != nil { // sendto(2)
				return err
			}
		}
		fmt.Println(c.LocalAddr())
		return nil
	case "sendmsg": // network addr: one sendmsg with msg_name
		dst, err := net.ResolveUDPAddr(args[0], args[1])
		if err != nil {
			return err
		}
		c, err := net.ListenUDP(args[0], nil)
		if err != nil {
			return err
		}
		defer c.Close()
		_, _, err = c.WriteMsgUDP([]byte("x"), nil, dst) // sendmsg(2)
		return err
	case "execve": // path: execve(path) and print the errno
		err := unix.Exec(args[0], []string{args[0], "vigil-arg"}, os.Environ())
		fmt.Println(unix.ErrnoName(err.(unix.Errno)))
		return nil
	}
	return fmt.Errorf("unknown action %q", action)
}

// evade runs the test binary as a child performing action.
func evade(t *testing.T, name string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), evasionEnv+"="+name)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
	return cmd.Process.Pid, string(out)
}

// TestEvasionResolvedOpens: opens of /etc/shadow by a path that does not
// spell it are reported with the real path, marked resolved, with the
// string the caller passed.
func TestEvasionResolvedOpens(t *testing.T) {
	r := startSensor(t, sensor.Config{})
	link := filepath.Join(t.TempDir(), "innocent")
	if err := os.Symlink("/etc/shadow", link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		cmd       *exec.Cmd
		requested string
	}{
		{"cd-relative", cmdIn("/etc", "/bin/cat", "shadow"), "shadow"},
		{"double-slash", exec.Command("/bin/cat", "/etc//shadow"), "/etc//shadow"},
		{"dot", exec.Command("/bin/cat", "/etc/./shadow"), "/etc/./shadow"},
		{"dotdot", exec.Command("/bin/cat", "/etc/../etc/shadow"), "/etc/../etc/shadow"},
		{"proc-self-root", exec.Command("/bin/cat", "/proc/self/root/etc/shadow"), "/proc/self/root/etc/shadow"},
		{"symlink", exec.Command("/bin/cat", link), link},
		{"openat-dirfd", evasionCmd("openat-dirfd", "/etc", "shadow"), "shadow"},
		{"chdir-open", evasionCmd("chdir-open", "/etc", "shadow"), "shadow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cmd.Stdout = nil
			if err := tc.cmd.Run(); err != nil {
				t.Fatalf("%v: %v", tc.cmd.Args, err)
			}
			pid := tc.cmd.Process.Pid
			e := r.wait(t, "resolved open of /etc/shadow", 10*time.Second, func(e *event.Event) bool {
				return byPid(event.FileOpen, pid)(e) && e.File.Path == "/etc/shadow"
			})
			if !e.File.Resolved || e.File.RequestedPath != tc.requested || e.Syscall == nil || e.Syscall.Ret < 0 || !strings.HasPrefix(e.File.Flags, "O_RDONLY") {
				t.Fatalf("event file %+v syscall %+v, want resolved from %q", e.File, e.Syscall, tc.requested)
			}
		})
	}
	t.Run("spelled-out path reported once, unresolved", func(t *testing.T) {
		cmd := exec.Command("/bin/cat", "/etc/shadow")
		cmd.Run()
		pid := cmd.Process.Pid
		r.wait(t, "open of /etc/shadow", 10*time.Second, byPid(event.FileOpen, pid))
		time.Sleep(200 * time.Millisecond)
		var n int
		for _, e := range r.all() {
			if byPid(event.FileOpen, pid)(e) && e.File.Path == "/etc/shadow" {
				n++
				if e.File.Resolved {
					t.Errorf("enter-matched open marked resolved: %+v", e.File)
				}
			}
		}
		if n != 1 {
			t.Fatalf("%d events for one open of /etc/shadow, want 1", n)
		}
	})
	t.Run("unwatched file with a watched name elsewhere", func(t *testing.T) {
		fake := filepath.Join(t.TempDir(), "shadow")
		os.WriteFile(fake, []byte("x"), 0o600)
		cmd := exec.Command("/bin/cat", fake)
		cmd.Run()
		time.Sleep(300 * time.Millisecond)
		if e := r.find(byPid(event.FileOpen, cmd.Process.Pid)); e != nil {
			t.Fatalf("open of %s reported: %+v", fake, e.File)
		}
	})
}

func cmdIn(dir string, name string, args ...string) *exec.Cmd {
	c := exec.Command(name, args...)
	c.Dir = dir
	return c
}

func evasionCmd(name string, args ...string) *exec.Cmd {
	c := exec.Command(os.Args[0], args...)
	c.Env = append(os.Environ(), evasionEnv+"="+name)
	return c
}

// TestUDPSendUnconnected: sendto/sendmsg with a destination, without
// connect(), is a network.connect marked send, reported once per socket
// and destination however many datagrams go out.
func TestUDPSendUnconnected(t *testing.T) {
	r := startSensor(t, sensor.Config{})
	for _, tc := range []struct{ network, listen string }{{"udp4", "127.0.0.1:0"}, {"udp6", "[::1]:0"}} {
		t.Run(tc.network, func(t *testing.T) {
			l, err := net.ListenPacket(tc.network, tc.listen)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			dst := l.LocalAddr().String()
			pid, out := evade(t, "sendto", tc.network, dst, "50")
			e := r.wait(t, "unconnected sendto", 10*time.Second, func(e *event.Event) bool {
				return byPid(event.NetworkConnect, pid)(e) && e.Network.Dst == dst
			})
			if !e.Network.Send || e.Network.Protocol != "udp" || e.Syscall == nil || e.Syscall.Name != "sendto" || e.Syscall.Ret != 1 {
				t.Fatalf("event network %+v syscall %+v", e.Network, e.Syscall)
			}
			if e.Network.Src != strings.TrimSpace(out) {
				t.Errorf("src = %q, child sent from %q", e.Network.Src, out)
			}
			time.Sleep(300 * time.Millisecond)
			var n int
			for _, e := range r.all() {
				if byPid(event.NetworkConnect, pid)(e) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("%d events for 50 sends to one destination, want 1", n)
			}
		})
	}
	t.Run("sendmsg", func(t *testing.T) {
		l, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		dst := l.LocalAddr().String()
		pid, _ := evade(t, "sendmsg", "udp4", dst)
		e := r.wait(t, "unconnected sendmsg", 10*time.Second, func(e *event.Event) bool {
			return byPid(event.NetworkConnect, pid)(e) && e.Network.Dst == dst
		})
		if !e.Network.Send || e.Network.Protocol != "udp" || e.Syscall.Name != "sendmsg" {
			t.Fatalf("event network %+v syscall %+v", e.Network, e.Syscall)
		}
	})
}

// TestFailedExec: an exec that fails is reported as a process.exec attempt
// with its errno; a successful one produces exactly one event.
func TestFailedExec(t *testing.T) {
	r := startSensor(t, sensor.Config{})
	dir := t.TempDir()
	noexec := filepath.Join(dir, "not-executable")
	os.WriteFile(noexec, []byte("#!/bin/sh\n"), 0o644)
	for _, tc := range []struct {
		name, path string
		errno      unix.Errno
	}{
		{"missing", filepath.Join(dir, "no-such-binary"), unix.ENOENT},
		{"not executable", noexec, unix.EACCES},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pid, out := evade(t, "execve", tc.path)
			if strings.TrimSpace(out) != unix.ErrnoName(tc.errno) {
				t.Fatalf("execve(%s) in the child: %q", tc.path, out)
			}
			e := r.wait(t, "failed exec", 10*time.Second, func(e *event.Event) bool {
				return byPid(event.ProcessExec, pid)(e) && e.Process.ExecFailed
			})
			if e.Process.Exe != tc.path || !slices.Equal(e.Process.Args, []string{tc.path, "vigil-arg"}) {
				t.Errorf("failed exec process exe %q args %q", e.Process.Exe, e.Process.Args)
			}
			checkFailed(t, e, tc.errno, "execve")
		})
	}
	t.Run("relative name", func(t *testing.T) {
		cmd := evasionCmd("execve", "./no-such-relative")
		cmd.Dir = dir
		out, _ := cmd.CombinedOutput()
		e := r.wait(t, "failed relative exec", 10*time.Second, func(e *event.Event) bool {
			return byPid(event.ProcessExec, cmd.Process.Pid)(e) && e.Process.ExecFailed
		})
		if want := filepath.Join(dir, "no-such-relative"); e.Process.Exe != want {
			t.Errorf("exe = %q, want %q (child: %q)", e.Process.Exe, want, out)
		}
	})
	t.Run("success reported once", func(t *testing.T) {
		cmd := exec.Command("/bin/true", "vigil-once")
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		pid := cmd.Process.Pid
		r.wait(t, "exec", 10*time.Second, byPid(event.ProcessExec, pid))
		r.wait(t, "exit", 10*time.Second, byPid(event.ProcessExit, pid))
		var n int
		for _, e := range r.all() {
			if byPid(event.ProcessExec, pid)(e) {
				n++
				if e.Process.ExecFailed || e.Syscall != nil {
					t.Errorf("successful exec reported as %+v %+v", e.Process, e.Syscall)
				}
			}
		}
		if n != 1 {
			t.Fatalf("%d process.exec events for one exec, want 1", n)
		}
	})
}
