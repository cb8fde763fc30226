package procconn

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrClosed is wrapped by the error Read returns once Close has been
// called, and by a second Close.
var ErrClosed = os.ErrClosed

// ErrNamespace is wrapped by the error Open returns when the kernel will
// not report process events to the caller because it is outside the
// initial network, user or pid namespace (a container without the host's
// network and pid namespaces).
var ErrNamespace = errors.New("the kernel reports process events only to the initial network, user and pid namespaces")

// ErrOverrun is returned by Read when the kernel could not queue one or
// more notifications because the socket's receive buffer was full. The
// lost events are gone (the kernel does not say how many); the Conn
// remains usable and the caller should count the overrun and keep reading.
// It wraps unix.ENOBUFS.
var ErrOverrun = fmt.Errorf("process connector overrun, events lost: %w", unix.ENOBUFS)

const (
	// rcvBufBytes is the socket receive buffer Open asks for, so bursts of
	// forks are queued rather than lost while the reader is busy. Each
	// notification costs roughly a kilobyte of buffer (skb overhead
	// included). The kernel doubles the value; without CAP_NET_ADMIN it
	// is capped by net.core.rmem_max.
	rcvBufBytes = 8 << 20
	// readBufBytes holds the largest datagram the connector sends
	// (CONNECTOR_MAX_MSG_SIZE plus headers) with room to spare.
	readBufBytes = 64 << 10
	// ackTimeout bounds Open's wait for the kernel to acknowledge the
	// subscription. The kernel answers from within sendto, so the ack is
	// normally queued before Open starts waiting; the wait ends early.
	ackTimeout = 2 * time.Second
)

// Conn is a subscription to the kernel's process events. It is safe for
// concurrent use: Reads are serialised (each datagram goes to one of
// them), and Lost and Close may be called while a Read blocks.
type Conn struct {
	f      *os.File // the non-blocking netlink socket, driven by the runtime poller
	rc     syscall.RawConn
	portID uint32 // the socket's netlink port id, assigned by the kernel at bind

	seq    atomic.Uint32 // sequence number of the last control message sent
	closed atomic.Bool
	lost   atomic.Uint64

	mu      sync.Mutex // held by Read; guards the fields below
	buf     []byte
	pending []Event // events received while Open waited for its ack
	overrun bool    // an overrun happened while Open waited for its ack
}

// Open subscribes to the kernel's process events: it creates a
// NETLINK_CONNECTOR socket, enlarges its receive buffer, joins the
// CN_IDX_PROC multicast group, sends PROC_CN_MCAST_LISTEN and waits for
// the kernel's acknowledgement. The caller must Close the Conn.
//
// Open fails when the kernel has no process connector
// (CONFIG_PROC_EVENTS), and with an error wrapping ErrNamespace when the
// caller is not in the initial network namespace (the connector's kernel
// socket lives there only; sendto fails with ECONNREFUSED at once) or not
// in the initial user and pid namespaces (the kernel ignores the request
// without answering, so Open gives up after two seconds).
func Open() (*Conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_CONNECTOR)
	if err != nil {
		return nil, fmt.Errorf("open process connector: create netlink socket: %w", err)
	}
	portID, err := setup(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("open process connector: %w", err)
	}
	// A non-blocking fd is registered with the runtime poller, so a Read
	// parked in it is woken, with an error, by Close.
	f := os.NewFile(uintptr(fd), "netlink-proc-connector")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open process connector: %w", err)
	}
	c := &Conn{f: f, rc: rc, portID: portID, buf: make([]byte, readBufBytes)}
	if err := c.subscribe(); err != nil {
		c.Close()
		return nil, fmt.Errorf("open process connector: %w", err)
	}
	return c, nil
}

// setup sizes the socket's receive buffer and binds it to the process
// events group. It returns the port id the kernel assigned.
func setup(fd int) (uint32, error) {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBufBytes); err != nil {
		// Without CAP_NET_ADMIN: ask for as much as rmem_max allows.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBufBytes); err != nil {
			return 0, fmt.Errorf("set receive buffer size: %w", err)
		}
	}
	// Groups is a bit mask: group n is bit n-1, so CN_IDX_PROC (1) is 1.
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1 << (cnIdxProc - 1)}); err != nil {
		return 0, fmt.Errorf("bind to the process events group: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0, fmt.Errorf("read bound address: %w", err)
	}
	nl, ok := sa.(*unix.SockaddrNetlink)
	if !ok {
		return 0, fmt.Errorf("read bound address: got %T, want a netlink address", sa)
	}
	return nl.Pid, nil
}

// subscribe sends PROC_CN_MCAST_LISTEN and waits for the kernel's
// acknowledgement, keeping any events that arrive first for Read.
func (c *Conn) subscribe() error {
	if err := c.send(opListen, c.seq.Add(1)); err != nil {
		if errors.Is(err, unix.ECONNREFUSED) {
			// The connector's kernel socket exists in the initial network
			// namespace only; elsewhere nothing listens at port 0.
			return fmt.Errorf("send PROC_CN_MCAST_LISTEN: %w, so this is not the initial network namespace: %w", err, ErrNamespace)
		}
		return fmt.Errorf("send PROC_CN_MCAST_LISTEN: %w", err)
	}

	if err := c.f.SetReadDeadline(time.Now().Add(ackTimeout)); err != nil {
		return fmt.Errorf("wait for PROC_CN_MCAST_LISTEN acknowledgement: %w", err)
	}
	defer c.f.SetReadDeadline(time.Time{})
	for {
		n, fromKernel, err := c.recv()
		switch {
		case errors.Is(err, unix.ENOBUFS):
			c.lost.Add(1)
			c.overrun = true
			continue
		case errors.Is(err, os.ErrDeadlineExceeded):
			// The kernel drops, without an answer, requests from tasks
			// outside the initial user and pid namespaces.
			return fmt.Errorf("no acknowledgement of PROC_CN_MCAST_LISTEN within %v, so this is likely not the initial user or pid namespace: %w", ackTimeout, ErrNamespace)
		case err != nil:
			return fmt.Errorf("wait for PROC_CN_MCAST_LISTEN acknowledgement: %w", err)
		case !fromKernel:
			continue
		}
		var got *ack
		events, err := decode(c.buf[:n], func(a ack) {
			// The kernel answers with our ack number plus one. (It does
			// not echo seq: every message it sends gets the next number
			// of a per-CPU counter.)
			if a.ack == c.portID+1 {
				got = &a
			}
		})
		if err != nil {
			return fmt.Errorf("wait for PROC_CN_MCAST_LISTEN acknowledgement: %w", err)
		}
		c.pending = append(c.pending, events...)
		if got == nil {
			continue
		}
		if got.errno != 0 {
			return fmt.Errorf("PROC_CN_MCAST_LISTEN refused by the kernel: %w", syscall.Errno(got.errno))
		}
		return nil
	}
}

// send sends control operation op to the kernel's process connector. The
// port id doubles as the ack number, so the kernel's answer (ack number
// plus one) can be told from other listeners'.
func (c *Conn) send(op, seq uint32) error {
	msg := encodeControl(op, seq, c.portID, c.portID)
	var serr error
	err := c.rc.Write(func(fd uintptr) bool {
		for {
			serr = unix.Sendto(int(fd), msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
			if serr != unix.EINTR {
				return serr != unix.EAGAIN
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// recv receives one datagram into c.buf, blocking in the runtime poller.
// fromKernel is false for datagrams another socket sent.
func (c *Conn) recv() (n int, fromKernel bool, err error) {
	var rerr error
	err = c.rc.Read(func(fd uintptr) bool {
		for {
			var from unix.Sockaddr
			n, from, rerr = unix.Recvfrom(int(fd), c.buf, 0)
			switch rerr {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false
			}
			nl, ok := from.(*unix.SockaddrNetlink)
			fromKernel = ok && nl.Pid == 0
			return true
		}
	})
	if err != nil {
		return 0, false, err
	}
	return n, fromKernel, rerr
}

// Read blocks until the kernel reports at least one fork, exec or exit
// and returns the events of one datagram, in the kernel's order.
//
// When the kernel dropped notifications, Read returns ErrOverrun, adds one
// to Lost, and can be called again. Once Close is called, a Read blocked
// in another goroutine returns promptly, and every later Read returns at
// once, with an error wrapping ErrClosed (os.ErrClosed). Messages that do
// not come from the kernel are ignored; a message that cannot be decoded
// yields an error wrapping ErrMalformed.
func (c *Conn) Read() ([]Event, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return nil, fmt.Errorf("read process connector: %w", ErrClosed)
	}
	if c.overrun {
		c.overrun = false
		return nil, ErrOverrun
	}
	if len(c.pending) > 0 {
		events := c.pending
		c.pending = nil
		return events, nil
	}
	for {
		n, fromKernel, err := c.recv()
		switch {
		case c.closed.Load():
			return nil, fmt.Errorf("read process connector: %w", ErrClosed)
		case errors.Is(err, unix.ENOBUFS):
			c.lost.Add(1)
			return nil, ErrOverrun
		case err != nil:
			return nil, fmt.Errorf("read process connector: %w", err)
		case !fromKernel:
			continue
		}
		events, err := Parse(c.buf[:n])
		if err != nil {
			return nil, fmt.Errorf("read process connector: %w", err)
		}
		if len(events) > 0 {
			return events, nil
		}
	}
}

// Lost returns how many overruns (ErrOverrun) the Conn has seen. Each
// stands for one or more lost events.
func (c *Conn) Lost() uint64 { return c.lost.Load() }

// Close unsubscribes (PROC_CN_MCAST_IGNORE, best effort: the kernel keeps
// counting a listener that closes without it and keeps generating
// events) and closes the socket, waking a blocked Read. Calling Close
// again returns an error wrapping ErrClosed.
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return fmt.Errorf("close process connector: %w", ErrClosed)
	}
	_ = c.send(opIgnore, c.seq.Add(1))
	if err := c.f.Close(); err != nil {
		return fmt.Errorf("close process connector: %w", err)
	}
	return nil
}
