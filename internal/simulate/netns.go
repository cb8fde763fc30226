package simulate

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// socketIn creates a TCP socket inside the network namespace of pid. The
// calling goroutine's thread enters the namespace only for the socket(2)
// call: a socket belongs to the namespace it was created in for its whole
// life, so connecting or listening on it later reaches only that
// namespace, whatever thread does it.
func socketIn(pid int) (fd int, err error) {
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return -1, fmt.Errorf("open own network namespace: %w", err)
	}
	defer self.Close()
	target, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		runtime.UnlockOSThread()
		return -1, fmt.Errorf("open network namespace of pid %d: %w", pid, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return -1, fmt.Errorf("enter network namespace of pid %d: %w", pid, err)
	}
	fd, sockErr := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked and is discarded when the goroutine
		// ends: never let the runtime reuse it in the wrong namespace.
		if sockErr == nil {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("return to own network namespace: %w", err)
	}
	runtime.UnlockOSThread()
	if sockErr != nil {
		return -1, fmt.Errorf("socket: %w", sockErr)
	}
	return fd, nil
}

func sockaddr(addr string) (*unix.SockaddrInet4, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return nil, fmt.Errorf("address %q: want IPv4 ip:port", addr)
	}
	return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}, nil
}

// dialIn connects to addr (ip:port) from inside the network namespace of
// pid.
func dialIn(ctx context.Context, pid int, addr string) (net.Conn, error) {
	sa, err := sockaddr(addr)
	if err != nil {
		return nil, err
	}
	fd, err := socketIn(pid)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "sim-conn")
	defer f.Close()
	done := make(chan error, 1)
	go func() { done <- unix.Connect(fd, sa) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		unix.Shutdown(fd, unix.SHUT_RDWR)
		<-done
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("connect %s in the victim's network namespace: %w", addr, err)
	}
	return net.FileConn(f)
}

// listenIn listens on addr (ip:port) inside the network namespace of pid.
func listenIn(pid int, addr string) (net.Listener, error) {
	sa, err := sockaddr(addr)
	if err != nil {
		return nil, err
	}
	fd, err := socketIn(pid)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "sim-listener")
	defer f.Close()
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(fd, sa); err != nil {
		return nil, fmt.Errorf("bind %s in the victim's network namespace: %w", addr, err)
	}
	if err := unix.Listen(fd, 16); err != nil {
		return nil, fmt.Errorf("listen on %s in the victim's network namespace: %w", addr, err)
	}
	return net.FileListener(f)
}

// onlyLoopback reports an error unless the network namespace of pid has
// no interface but lo: then no packet sent in it can leave the machine.
func onlyLoopback(pid int) error {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/dev", pid))
	if err != nil {
		return fmt.Errorf("read interfaces of the victim's network namespace: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) < 3 {
		return fmt.Errorf("victim's network namespace: no interfaces listed in %q", data)
	}
	for _, l := range lines[2:] {
		name, _, _ := strings.Cut(strings.TrimSpace(l), ":")
		if name != "lo" {
			return fmt.Errorf("victim's network namespace has interface %q besides lo: refusing to send traffic from it", name)
		}
	}
	return nil
}
