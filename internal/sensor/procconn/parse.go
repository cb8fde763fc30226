package procconn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
)

// Kernel ABI, from linux/netlink.h, linux/connector.h and linux/cn_proc.h.
const (
	nlmsgHdrLen = 16 // struct nlmsghdr
	nlmsgNoop   = 0x1
	nlmsgError  = 0x2
	nlmsgDone   = 0x3 // the type the connector sends its messages with

	cnMsgLen  = 20 // struct cn_msg without data
	cnIdxProc = 0x1
	cnValProc = 0x1

	procHdrLen = 16 // what, cpu, timestamp_ns of struct proc_event

	procNone = 0x0 // what of the kernel's acknowledgement of a control message

	opListen = 1 // PROC_CN_MCAST_LISTEN
	opIgnore = 2 // PROC_CN_MCAST_IGNORE
)

// Kind says what happened to a process. Its values are the kernel's
// PROC_EVENT_* codes.
type Kind uint32

// The kinds Parse and Read return; the connector's other notifications
// (uid, gid, sid, ptrace, comm, coredump) are skipped.
const (
	Fork Kind = 0x00000001
	Exec Kind = 0x00000002
	Exit Kind = 0x80000000
)

func (k Kind) String() string {
	switch k {
	case Fork:
		return "fork"
	case Exec:
		return "exec"
	case Exit:
		return "exit"
	}
	return fmt.Sprintf("kind(%#x)", uint32(k))
}

// Event is one process-connector notification. Pids are as seen from the
// initial pid namespace; Pid is the thread id and Tgid the process id.
type Event struct {
	Kind      Kind
	CPU       uint32
	Timestamp uint64 // ns since boot (CLOCK_MONOTONIC), from the kernel

	// Fork: the new task. Exec and Exit: the task that exec'd or exited;
	// the kernel reports an Exit for every thread, with Pid != Tgid for
	// all but the thread-group leader.
	Pid, Tgid uint32

	// Fork: the task that forked. Exit: the exiting task's parent.
	// Zero for Exec.
	ParentPid, ParentTgid uint32

	// Exit only: the task's exit_code as the kernel keeps it, a wait(2)
	// status (exit status << 8, or the terminating signal number), and
	// its exit_signal, the signal its parent is sent (SIGCHLD for
	// ordinary processes, 0xffffffff (-1) for threads other than the
	// leader).
	ExitCode   uint32
	ExitSignal uint32
}

// ErrMalformed is wrapped by the errors Parse returns for input that is
// not a well-formed sequence of connector messages.
var ErrMalformed = errors.New("malformed process connector message")

// Parse decodes a buffer holding one or more netlink messages (nlmsghdr,
// then cn_msg, then proc_event), as one recv on a connector socket
// returns it. It returns the Fork, Exec and Exit events in order and skips
// everything else: other connector ids, other process notifications, the
// kernel's acknowledgements and netlink no-ops. An empty buffer holds no
// events.
//
// Truncated or inconsistent input yields an error wrapping ErrMalformed (a
// netlink error message yields the errno it carries); Parse never panics
// and does not retain b.
func Parse(b []byte) ([]Event, error) {
	return decode(b, nil)
}

// ack is the kernel's answer to a control message: the message's own seq,
// the control message's ack number plus one, and an errno (0 on success).
type ack struct {
	seq, ack, errno uint32
}

// decode is Parse that also hands acknowledgements to onAck when it is
// not nil.
func decode(b []byte, onAck func(ack)) ([]Event, error) {
	ne := binary.NativeEndian
	var events []Event
	for off := 0; off < len(b); {
		rest := b[off:]
		if len(rest) < nlmsgHdrLen {
			return nil, fmt.Errorf("%w: %d bytes at offset %d are too few for a %d-byte netlink header",
				ErrMalformed, len(rest), off, nlmsgHdrLen)
		}
		n := ne.Uint32(rest[0:])
		typ := ne.Uint16(rest[4:])
		switch {
		case n < nlmsgHdrLen:
			return nil, fmt.Errorf("%w: netlink message at offset %d has length %d, less than its %d-byte header",
				ErrMalformed, off, n, nlmsgHdrLen)
		case uint64(n) > uint64(len(rest)):
			return nil, fmt.Errorf("%w: netlink message at offset %d has length %d, but only %d bytes are left",
				ErrMalformed, off, n, len(rest))
		}
		payload := rest[nlmsgHdrLen:n]

		switch typ {
		case nlmsgDone:
			ev, ok, err := decodeCn(payload, onAck)
			if err != nil {
				return nil, fmt.Errorf("netlink message at offset %d: %w", off, err)
			}
			if ok {
				events = append(events, ev)
			}
		case nlmsgError:
			if len(payload) < 4 {
				return nil, fmt.Errorf("%w: netlink error message at offset %d has %d payload bytes, need 4",
					ErrMalformed, off, len(payload))
			}
			if errno := int32(ne.Uint32(payload)); errno != 0 {
				return nil, fmt.Errorf("netlink error message: %w", syscall.Errno(-errno))
			}
		default:
			// NLMSG_NOOP and anything else the connector does not send.
		}

		// Messages are 4-byte aligned; the last one may be unpadded.
		off += min(int((n+3)&^3), len(rest))
	}
	return events, nil
}

// decodeCn decodes one cn_msg. ok is false for messages that are not
// Fork, Exec or Exit events.
func decodeCn(b []byte, onAck func(ack)) (ev Event, ok bool, err error) {
	ne := binary.NativeEndian
	if len(b) < cnMsgLen {
		return ev, false, fmt.Errorf("%w: %d payload bytes are too few for a %d-byte cn_msg",
			ErrMalformed, len(b), cnMsgLen)
	}
	idx, val := ne.Uint32(b[0:]), ne.Uint32(b[4:])
	seq, ackNo := ne.Uint32(b[8:]), ne.Uint32(b[12:])
	dlen := int(ne.Uint16(b[16:]))
	if cnMsgLen+dlen > len(b) {
		return ev, false, fmt.Errorf("%w: cn_msg says %d data bytes, but only %d follow it",
			ErrMalformed, dlen, len(b)-cnMsgLen)
	}
	if idx != cnIdxProc || val != cnValProc {
		return ev, false, nil
	}
	d := b[cnMsgLen : cnMsgLen+dlen]
	if len(d) < procHdrLen {
		return ev, false, fmt.Errorf("%w: proc_event has %d bytes, need at least %d",
			ErrMalformed, len(d), procHdrLen)
	}
	what := ne.Uint32(d[0:])
	ev = Event{
		Kind:      Kind(what),
		CPU:       ne.Uint32(d[4:]),
		Timestamp: ne.Uint64(d[8:]),
	}
	u := d[procHdrLen:] // the event_data union
	need := unionLen(what)
	if len(u) < need {
		return ev, false, fmt.Errorf("%w: %s event has %d data bytes, need %d",
			ErrMalformed, ev.Kind, len(u), need)
	}
	word := func(i int) uint32 { return ne.Uint32(u[4*i:]) }
	switch what {
	case procNone:
		if onAck != nil {
			onAck(ack{seq: seq, ack: ackNo, errno: word(0)})
		}
		return ev, false, nil
	case uint32(Fork):
		ev.ParentPid, ev.ParentTgid, ev.Pid, ev.Tgid = word(0), word(1), word(2), word(3)
	case uint32(Exec):
		ev.Pid, ev.Tgid = word(0), word(1)
	case uint32(Exit):
		ev.Pid, ev.Tgid = word(0), word(1)
		ev.ExitCode, ev.ExitSignal = word(2), word(3)
		ev.ParentPid, ev.ParentTgid = word(4), word(5)
	default:
		return ev, false, nil
	}
	return ev, true, nil
}

// unionLen is how many bytes of proc_event's event_data union decodeCn
// reads for an event of type what.
func unionLen(what uint32) int {
	switch what {
	case procNone:
		return 4 // ack.err
	case uint32(Fork):
		return 16
	case uint32(Exec):
		return 8
	case uint32(Exit):
		return 24
	}
	return 0
}

// encodeControl builds the netlink message that sends op
// (PROC_CN_MCAST_LISTEN or _IGNORE) to the kernel's process connector.
func encodeControl(op, seq, ackNo, portID uint32) []byte {
	ne := binary.NativeEndian
	const size = nlmsgHdrLen + cnMsgLen + 4
	b := make([]byte, size)
	ne.PutUint32(b[0:], size)
	ne.PutUint16(b[4:], nlmsgDone)
	ne.PutUint32(b[8:], seq)
	ne.PutUint32(b[12:], portID)
	c := b[nlmsgHdrLen:]
	ne.PutUint32(c[0:], cnIdxProc)
	ne.PutUint32(c[4:], cnValProc)
	ne.PutUint32(c[8:], seq)
	ne.PutUint32(c[12:], ackNo)
	ne.PutUint16(c[16:], 4)
	ne.PutUint32(c[cnMsgLen:], op)
	return b
}
