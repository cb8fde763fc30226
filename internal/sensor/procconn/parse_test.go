package procconn

import (
	"encoding/binary"
	"errors"
	"slices"
	"syscall"
	"testing"
)

var ne = binary.NativeEndian

// procEvent builds a struct proc_event (40 bytes: header, 24-byte union)
// with the given union words.
func procEvent(what, cpu uint32, ts uint64, words ...uint32) []byte {
	b := make([]byte, procHdrLen+24)
	ne.PutUint32(b[0:], what)
	ne.PutUint32(b[4:], cpu)
	ne.PutUint64(b[8:], ts)
	for i, w := range words {
		ne.PutUint32(b[procHdrLen+4*i:], w)
	}
	return b
}

// cnMsg wraps data in a struct cn_msg with the given id.
func cnMsg(idx, val, seq, ack uint32, data []byte) []byte {
	b := make([]byte, cnMsgLen, cnMsgLen+len(data))
	ne.PutUint32(b[0:], idx)
	ne.PutUint32(b[4:], val)
	ne.PutUint32(b[8:], seq)
	ne.PutUint32(b[12:], ack)
	ne.PutUint16(b[16:], uint16(len(data)))
	return append(b, data...)
}

// nlMsg wraps payload in a struct nlmsghdr of the given type, padded to
// 4 bytes as the kernel does.
func nlMsg(typ uint16, payload []byte) []byte {
	n := nlmsgHdrLen + len(payload)
	b := make([]byte, nlmsgHdrLen, (n+3)&^3)
	ne.PutUint32(b[0:], uint32(n))
	ne.PutUint16(b[4:], typ)
	b = append(b, payload...)
	return append(b, make([]byte, cap(b)-len(b))...)
}

// proc is one kernel process-events message.
func proc(what uint32, words ...uint32) []byte {
	return nlMsg(nlmsgDone, cnMsg(cnIdxProc, cnValProc, 7, 0, procEvent(what, 3, 123456789, words...)))
}

func cat(bs ...[]byte) []byte { return slices.Concat(bs...) }

var (
	forkMsg = proc(uint32(Fork), 100, 101, 200, 201)
	execMsg = proc(uint32(Exec), 200, 201)
	exitMsg = proc(uint32(Exit), 200, 201, 256, 17, 100, 101)

	forkEv = Event{Kind: Fork, CPU: 3, Timestamp: 123456789, ParentPid: 100, ParentTgid: 101, Pid: 200, Tgid: 201}
	execEv = Event{Kind: Exec, CPU: 3, Timestamp: 123456789, Pid: 200, Tgid: 201}
	exitEv = Event{Kind: Exit, CPU: 3, Timestamp: 123456789, Pid: 200, Tgid: 201, ExitCode: 256, ExitSignal: 17, ParentPid: 100, ParentTgid: 101}
)

func TestParse(t *testing.T) {
	// The kernel's answer to PROC_CN_MCAST_LISTEN: what == PROC_EVENT_NONE.
	ackMsg := nlMsg(nlmsgDone, cnMsg(cnIdxProc, cnValProc, 1, 2, procEvent(procNone, 0, 0, 0)))
	const uidEvent = 0x4
	nlErr := func(errno int32) []byte {
		p := make([]byte, 4+nlmsgHdrLen)
		ne.PutUint32(p, uint32(errno))
		return nlMsg(nlmsgError, p)
	}
	// A 17-byte message is padded to 20 when another follows it.
	odd := nlMsg(nlmsgNoop, []byte{1})
	oddFork := nlMsg(nlmsgDone, cnMsg(cnIdxProc, cnValProc, 7, 0, append(procEvent(uint32(Fork), 3, 123456789, 100, 101, 200, 201), 0xee)))
	shortHeader := slices.Clone(forkMsg)
	ne.PutUint32(shortHeader, nlmsgHdrLen-1)
	tooLong := slices.Clone(forkMsg)
	ne.PutUint32(tooLong, uint32(len(forkMsg)+1))
	hugeLen := slices.Clone(forkMsg)
	ne.PutUint32(hugeLen, ^uint32(0))
	cnLenTooBig := slices.Clone(forkMsg)
	ne.PutUint16(cnLenTooBig[nlmsgHdrLen+16:], 41)

	for _, tc := range []struct {
		name    string
		in      []byte
		want    []Event
		wantErr error // nil: no error
	}{
		{name: "empty", in: nil},
		{name: "fork", in: forkMsg, want: []Event{forkEv}},
		{name: "exec", in: execMsg, want: []Event{execEv}},
		{name: "exit", in: exitMsg, want: []Event{exitEv}},
		{name: "several in one buffer", in: cat(forkMsg, execMsg, exitMsg), want: []Event{forkEv, execEv, exitEv}},
		{name: "padding skipped", in: cat(odd, forkMsg), want: []Event{forkEv}},
		{name: "padded event", in: cat(oddFork, execMsg), want: []Event{forkEv, execEv}},
		{name: "last message unpadded", in: cat(forkMsg, odd[:17]), want: []Event{forkEv}},
		{name: "other connector idx skipped", in: cat(nlMsg(nlmsgDone, cnMsg(2, 1, 0, 0, procEvent(uint32(Exec), 0, 0, 1, 1))), execMsg), want: []Event{execEv}},
		{name: "other connector val skipped", in: cat(nlMsg(nlmsgDone, cnMsg(1, 2, 0, 0, procEvent(uint32(Exec), 0, 0, 1, 1))), execMsg), want: []Event{execEv}},
		{name: "other connector with short data skipped", in: cat(nlMsg(nlmsgDone, cnMsg(3, 1, 0, 0, []byte{1})), execMsg), want: []Event{execEv}},
		{name: "uid event skipped", in: cat(proc(uidEvent, 200, 201, 0, 0), exitMsg), want: []Event{exitEv}},
		{name: "ack skipped", in: cat(ackMsg, forkMsg), want: []Event{forkEv}},
		{name: "noop skipped", in: cat(nlMsg(nlmsgNoop, nil), forkMsg), want: []Event{forkEv}},
		{name: "netlink ack skipped", in: cat(nlErr(0), forkMsg), want: []Event{forkEv}},
		{name: "netlink error", in: nlErr(-int32(syscall.EPERM)), wantErr: syscall.EPERM},
		{name: "netlink error truncated", in: nlMsg(nlmsgError, []byte{1}), wantErr: ErrMalformed},
		{name: "short header", in: forkMsg[:nlmsgHdrLen-1], wantErr: ErrMalformed},
		{name: "nlmsg len smaller than header", in: shortHeader, wantErr: ErrMalformed},
		{name: "nlmsg len zero", in: make([]byte, 64), wantErr: ErrMalformed},
		{name: "nlmsg len past end", in: tooLong, wantErr: ErrMalformed},
		{name: "nlmsg len huge", in: hugeLen, wantErr: ErrMalformed},
		{name: "cn_msg truncated", in: nlMsg(nlmsgDone, make([]byte, cnMsgLen-1)), wantErr: ErrMalformed},
		{name: "cn_msg len past end", in: cnLenTooBig, wantErr: ErrMalformed},
		{name: "proc_event header truncated", in: nlMsg(nlmsgDone, cnMsg(1, 1, 0, 0, make([]byte, procHdrLen-1))), wantErr: ErrMalformed},
		{name: "fork data truncated", in: nlMsg(nlmsgDone, cnMsg(1, 1, 0, 0, procEvent(uint32(Fork), 0, 0)[:procHdrLen+15])), wantErr: ErrMalformed},
		{name: "exec data truncated", in: nlMsg(nlmsgDone, cnMsg(1, 1, 0, 0, procEvent(uint32(Exec), 0, 0)[:procHdrLen+7])), wantErr: ErrMalformed},
		{name: "exit data truncated", in: nlMsg(nlmsgDone, cnMsg(1, 1, 0, 0, procEvent(uint32(Exit), 0, 0)[:procHdrLen+23])), wantErr: ErrMalformed},
		{name: "error after good message", in: cat(forkMsg, shortHeader), wantErr: ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.in)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Parse = %v, %v; want error %v", got, err, tc.wantErr)
				}
				if got != nil {
					t.Fatalf("Parse returned events %v with error %v", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("Parse =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

// TestParseTruncated cuts buffers at every length: a cut inside a message
// is an error, a cut between messages is a shorter valid buffer.
func TestParseTruncated(t *testing.T) {
	for _, tc := range []struct {
		name string
		msgs [][]byte
	}{
		{"fork", [][]byte{forkMsg}},
		{"exec", [][]byte{execMsg}},
		{"exit", [][]byte{exitMsg}},
		{"fork exec exit", [][]byte{forkMsg, execMsg, exitMsg}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			full := cat(tc.msgs...)
			boundary := map[int]int{0: 0} // offset -> messages before it
			off := 0
			for i, m := range tc.msgs {
				off += len(m)
				boundary[off] = i + 1
			}
			for n := range len(full) {
				got, err := Parse(full[:n])
				if k, ok := boundary[n]; ok {
					if err != nil || len(got) != k {
						t.Fatalf("Parse(first %d bytes) = %d events, %v; want %d events", n, len(got), err, k)
					}
					continue
				}
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("Parse(first %d of %d bytes) = %v, %v; want ErrMalformed", n, len(full), got, err)
				}
			}
		})
	}
}

func TestDecodeAck(t *testing.T) {
	in := nlMsg(nlmsgDone, cnMsg(cnIdxProc, cnValProc, 9, 43, procEvent(procNone, 0, 0, uint32(syscall.EINVAL))))
	var acks []ack
	events, err := decode(cat(forkMsg, in), func(a ack) { acks = append(acks, a) })
	if err != nil || !slices.Equal(events, []Event{forkEv}) {
		t.Fatalf("decode = %v, %v", events, err)
	}
	if want := []ack{{seq: 9, ack: 43, errno: uint32(syscall.EINVAL)}}; !slices.Equal(acks, want) {
		t.Fatalf("acks = %+v, want %+v", acks, want)
	}
}

// TestEncodeControl checks the LISTEN message byte for byte against the
// layout of linux/netlink.h, linux/connector.h and linux/cn_proc.h.
func TestEncodeControl(t *testing.T) {
	got := encodeControl(opListen, 5, 42, 4242)
	want := nlMsg(nlmsgDone, cnMsg(cnIdxProc, cnValProc, 5, 42, ne.AppendUint32(nil, opListen)))
	ne.PutUint32(want[8:], 5)     // nlmsg_seq
	ne.PutUint32(want[12:], 4242) // nlmsg_pid
	if !slices.Equal(got, want) {
		t.Fatalf("encodeControl =\n% x\nwant\n% x", got, want)
	}
	if len(got) != 40 {
		t.Fatalf("LISTEN message is %d bytes, want 16 + 20 + 4", len(got))
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{Fork: "fork", Exec: "exec", Exit: "exit", 4: "kind(0x4)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%#x).String() = %q, want %q", uint32(k), got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, seed := range [][]byte{
		nil, forkMsg, execMsg, exitMsg, cat(forkMsg, execMsg, exitMsg),
		nlMsg(nlmsgDone, cnMsg(cnIdxProc, cnValProc, 1, 2, procEvent(procNone, 0, 0))),
		nlMsg(nlmsgDone, cnMsg(2, 1, 0, 0, []byte{1, 2, 3})),
		nlMsg(nlmsgError, []byte{0xff, 0xff, 0xff, 0xff}),
		forkMsg[:30],
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		events, err := Parse(b)
		if err != nil {
			if events != nil {
				t.Fatalf("Parse returned %d events with error %v", len(events), err)
			}
			return
		}
		for _, e := range events {
			switch e.Kind {
			case Fork, Exec, Exit:
			default:
				t.Fatalf("Parse returned an event of unknown kind %v", e.Kind)
			}
		}
	})
}
