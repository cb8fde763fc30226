package sensor_test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The test binary re-executes itself to act as a watched process: the
// sensor ignores its own process, so the tests' actions run in a child.
const actionEnv = "VIGIL_SENSOR_TEST_ACTION"

// runAction performs one action and returns the process's exit code.
func runAction(action string, args []string) int {
	if err := act(action, args); err != nil {
		fmt.Fprintln(os.Stderr, action+":", err)
		return 1
	}
	return 0
}

func act(action string, args []string) error {
	switch action {
	case "connect": // network address; a blocking connect, as most programs do
		return blockingConnect(args[0], netip.MustParseAddrPort(args[1]))
	case "listen":
		l, err := net.Listen("tcp", args[0])
		if err != nil {
			return err
		}
		fmt.Println(l.Addr())
		return l.Close()
	case "open": // path...
		for _, p := range args {
			if f, err := os.Open(p); err == nil {
				f.Close()
			}
		}
		return nil
	case "write":
		return os.WriteFile(args[0], []byte("x"), 0o600)
	case "chmod":
		mode, _ := strconv.ParseUint(args[1], 8, 32)
		return os.Chmod(args[0], os.FileMode(mode))
	case "memfd-exec": // copy a binary into a memfd and exec it
		fd, err := unix.MemfdCreate(args[0], 0)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(args[1])
		if err != nil {
			return err
		}
		if _, err := unix.Write(fd, data); err != nil {
			return err
		}
		path := fmt.Sprintf("/proc/self/fd/%d", fd)
		return syscall.Exec(path, append([]string{args[0]}, args[2:]...), os.Environ())
	case "unshare":
		return unix.Unshare(unix.CLONE_NEWUTS)
	case "setns":
		// Re-join our own network namespace: a real setns, allowed
		// everywhere (a sandbox may forbid opening pid 1's namespaces).
		fd, err := unix.Open("/proc/self/ns/net", unix.O_RDONLY, 0)
		if err != nil {
			return err
		}
		return unix.Setns(fd, unix.CLONE_NEWNET)
	case "ptrace-attach":
		// The tracer is a thread: attach, wait and detach from the same one,
		// or the detach fails with ESRCH when Go moves the goroutine.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		target := exec.Command("/bin/sleep", "5")
		if err := target.Start(); err != nil {
			return err
		}
		defer target.Process.Kill()
		fmt.Println(target.Process.Pid)
		if err := unix.PtraceAttach(target.Process.Pid); err != nil {
			return err
		}
		var ws unix.WaitStatus // the tracee must stop before detach
		if _, err := unix.Wait4(target.Process.Pid, &ws, 0, nil); err != nil {
			return err
		}
		return unix.PtraceDetach(target.Process.Pid)
	case "finit-module": // an invalid module: the attempt is what matters
		f, err := os.Open(args[0])
		if err != nil {
			return err
		}
		_ = unix.FinitModule(int(f.Fd()), "", 0)
		return nil
	case "exec-storm":
		n, _ := strconv.Atoi(args[0])
		for range n {
			if err := exec.Command("/bin/true").Run(); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("unknown action %q", action)
}

// blockingConnect connects a blocking socket, so the sensor sees the
// connect's final result rather than EINPROGRESS.
func blockingConnect(network string, dst netip.AddrPort) error {
	typ := unix.SOCK_STREAM
	if strings.HasPrefix(network, "udp") {
		typ = unix.SOCK_DGRAM
	}
	var sa unix.Sockaddr
	family := unix.AF_INET6
	if dst.Addr().Is4() {
		family = unix.AF_INET
		sa = &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: int(dst.Port()), Addr: dst.Addr().As16()}
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Connect(fd, sa)
}
