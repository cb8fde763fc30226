package sensor_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/sensor"
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
	case "finit-module": // file [params]: a module file; the attempt is what matters
		f, err := os.Open(args[0])
		if err != nil {
			return err
		}
		params := ""
		if len(args) > 1 {
			params = args[1]
		}
		fmt.Println(errnoName(unix.FinitModule(int(f.Fd()), params, 0)))
		return nil
	case "memfd-bad-flags": // name: flags no kernel knows -> EINVAL
		_, err := unix.MemfdCreate(args[0], 0x100)
		fmt.Println(errnoName(err))
		return nil
	case "nobody-ptrace": // pid: attach as uid 65534 (EPERM for root's processes)
		target, _ := strconv.Atoi(args[0])
		if err := dropToNobody(); err != nil {
			return err
		}
		fmt.Println(errnoName(unix.PtraceAttach(target)))
		return nil
	case "nobody-unshare": // a mount namespace without CAP_SYS_ADMIN: EPERM
		if err := dropToNobody(); err != nil {
			return err
		}
		fmt.Println(errnoName(unix.Unshare(unix.CLONE_NEWNS)))
		return nil
	case "nobody-setns": // join our own network namespace without CAP_SYS_ADMIN: EPERM
		fd, err := unix.Open("/proc/self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := dropToNobody(); err != nil {
			return err
		}
		fmt.Println(errnoName(unix.Setns(fd, unix.CLONE_NEWNET)))
		return nil
	case "listen-udp": // listen on an unbound UDP socket: EOPNOTSUPP
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		fmt.Println(errnoName(unix.Listen(fd, 1)))
		return nil
	case "init-module": // params: a bogus image; the attempt is what matters
		fmt.Println(errnoName(unix.InitModule([]byte(bogusModule), args[0])))
		return nil
	case "exec-as": // uid euid gid dir argv...: exec with real and effective uids apart
		ids := make([]int, 3)
		for i := range ids {
			ids[i], _ = strconv.Atoi(args[i])
		}
		if err := os.Chdir(args[3]); err != nil {
			return err
		}
		if err := syscall.Setgroups(nil); err != nil {
			return err
		}
		if err := syscall.Setresgid(ids[2], ids[2], ids[2]); err != nil {
			return err
		}
		if err := syscall.Setresuid(ids[0], ids[1], ids[1]); err != nil {
			return err
		}
		return syscall.Exec(args[4], args[5:], os.Environ())
	case "sensor-without-bpf": // a sensor whose bpf(2) calls seccomp denies, events as JSON lines
		return runSensorWithoutBPF()
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

// bogusModule is what the module tests hand the kernel as a module image.
const bogusModule = "not an ELF module image"

// errnoName names a syscall's failure as the sensor does ("" for success).
func errnoName(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

// dropToNobody makes every thread of the process uid and gid 65534, with
// no supplementary groups and, as a non-root uid, no capabilities.
func dropToNobody() error {
	if err := syscall.Setgroups(nil); err != nil {
		return err
	}
	if err := syscall.Setresgid(65534, 65534, 65534); err != nil {
		return err
	}
	return syscall.Setresuid(65534, 65534, 65534)
}

// runSensorWithoutBPF runs a sensor in a process where seccomp makes
// every bpf(2) call fail with EPERM, as Docker's default seccomp profile
// does to a sensor run in an unprivileged container. It prints the
// events as JSON lines until stdin closes.
func runSensorWithoutBPF() error {
	if err := denyBPF(); err != nil {
		return fmt.Errorf("install seccomp filter: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	enc := json.NewEncoder(os.Stdout)
	s := sensor.New(sensor.Config{HealthInterval: time.Hour})
	return s.Run(ctx, func(e *event.Event) { enc.Encode(e) })
}

// denyBPF installs, on every thread, a seccomp filter that fails bpf(2)
// with EPERM and allows everything else.
func denyBPF() error {
	const (
		retAllow = 0x7fff0000
		retErrno = 0x00050000
	)
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 4}, // seccomp_data.arch
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 1, Jf: 0, K: unix.AUDIT_ARCH_X86_64},
		{Code: unix.BPF_RET | unix.BPF_K, K: retAllow},        // another ABI: not this test's concern
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.SYS_BPF},
		{Code: unix.BPF_RET | unix.BPF_K, K: retErrno | uint32(unix.EPERM)},
		{Code: unix.BPF_RET | unix.BPF_K, K: retAllow},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return err
	}
	const setModeFilter, flagTsync = 1, 1
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, setModeFilter, flagTsync, uintptr(unsafe.Pointer(&fprog))); errno != 0 {
		return errno
	}
	return nil
}
