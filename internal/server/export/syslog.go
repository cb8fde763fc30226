package export

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigil-sec/vigil/internal/event"
)

// syslogOutput writes RFC 5424 messages, one per alert, whose body is the
// alert's JSON or a CEF line: one datagram per alert over UDP, RFC 6587
// octet-counted frames over TCP and TLS on one kept connection.
type syslogOutput struct {
	name, network, address, format string
	tls                            *tls.Config

	mu   sync.Mutex
	conn net.Conn
}

const (
	// udpMax is the largest UDP payload over IPv4 (64 KiB less the IP and
	// UDP headers): a longer message is shortened to fit one datagram.
	udpMax = 65507
	// syslogFacility is 4, security/authorization messages.
	syslogFacility = 4
	// sdID is the structured-data element of Vigil's fields; 32473 is the
	// private enterprise number RFC 5612 reserves for such use.
	sdID = "vigil@32473"
)

func newSyslog(c Config) (Output, error) {
	o := &syslogOutput{name: c.Name, network: c.Network, address: c.Address, format: c.Format}
	if o.network == "" {
		o.network = "udp"
	}
	if o.format == "" {
		o.format = "json"
	}
	switch o.network {
	case "udp", "tcp", "tls":
	default:
		return nil, fmt.Errorf("network %q: want udp, tcp or tls", o.network)
	}
	switch o.format {
	case "json", "cef":
	default:
		return nil, fmt.Errorf("format %q: want json or cef", o.format)
	}
	host, _, err := net.SplitHostPort(o.address)
	if err != nil {
		return nil, fmt.Errorf("address %q: want host:port: %w", o.address, err)
	}
	if o.network == "tls" {
		if o.tls, err = tlsConfig(c, host); err != nil {
			return nil, err
		}
	}
	return o, nil
}

func (o *syslogOutput) Name() string { return o.name }

func (o *syslogOutput) Send(ctx context.Context, alerts []event.Alert) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.conn != nil && o.network != "udp" && !peerOpen(o.conn) {
		o.closeLocked()
	}
	if o.conn == nil {
		if err := o.dial(ctx); err != nil {
			return err
		}
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(30 * time.Second)
	}
	o.conn.SetWriteDeadline(deadline)
	if o.network == "udp" {
		for _, a := range alerts {
			msg, err := syslogMessage(a, o.format, udpMax)
			if err != nil {
				return permanent(err)
			}
			if _, err := o.conn.Write(msg); err != nil {
				o.closeLocked()
				return fmt.Errorf("syslog udp %s: %w", o.address, err)
			}
		}
		return nil
	}
	var buf bytes.Buffer
	for _, a := range alerts {
		msg, err := syslogMessage(a, o.format, 0)
		if err != nil {
			return permanent(err)
		}
		buf.WriteString(strconv.Itoa(len(msg)))
		buf.WriteByte(' ')
		buf.Write(msg)
	}
	if _, err := o.conn.Write(buf.Bytes()); err != nil {
		o.closeLocked()
		return fmt.Errorf("syslog %s %s: %w", o.network, o.address, err)
	}
	return nil
}

func (o *syslogOutput) dial(ctx context.Context) error {
	var err error
	switch o.network {
	case "tls":
		d := tls.Dialer{Config: o.tls}
		o.conn, err = d.DialContext(ctx, "tcp", o.address)
	default:
		var d net.Dialer
		o.conn, err = d.DialContext(ctx, o.network, o.address)
	}
	if err != nil {
		o.conn = nil
		return fmt.Errorf("syslog %s %s: %w", o.network, o.address, err)
	}
	return nil
}

// peerOpen tells whether the receiver still has the connection open, so
// that a batch is not written into a connection the receiver closed (the
// kernel would accept the write and the batch would be lost). A syslog
// receiver never writes: a peek at the socket that finds nothing pending
// means open, an end of file or an error means closed. Pending bytes (TLS
// session tickets, a close_notify) are read through the connection, with a
// short deadline, until the socket tells.
func peerOpen(c net.Conn) bool {
	raw := c
	if tc, ok := c.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	for range 8 {
		state := peek(raw)
		switch state {
		case peekEmpty:
			return true
		case peekClosed:
			return false
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		var b [512]byte
		_, err := c.Read(b[:])
		c.SetReadDeadline(time.Time{})
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			return false
		}
		if state == peekUnknown {
			return true
		}
	}
	return true
}

const (
	peekEmpty = iota
	peekPending
	peekClosed
	peekUnknown // not a socket
)

// peek looks at c's socket without reading or waiting.
func peek(c net.Conn) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return peekUnknown
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return peekUnknown
	}
	var n int
	var perr error
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, perr = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return true
	})
	switch {
	case err != nil:
		return peekClosed
	case errors.Is(perr, unix.EAGAIN):
		return peekEmpty
	case perr != nil, n == 0:
		return peekClosed
	}
	return peekPending
}

func (o *syslogOutput) closeLocked() {
	if o.conn != nil {
		o.conn.Close()
		o.conn = nil
	}
}

// Close closes the kept connection; the next Send dials again.
func (o *syslogOutput) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closeLocked()
	return nil
}

// syslogMessage is one RFC 5424 message for a:
//
//	<PRI>1 TIMESTAMP HOSTNAME vigil - MSGID [vigil@32473 ...] MSG
//
// with the alert's node as HOSTNAME, its rule as MSGID (cut to the 32
// characters RFC 5424 allows) and its JSON or CEF line as MSG (no BOM: SIEM
// parsers of JSON bodies do not expect one). A non-zero limit bounds the
// message: a JSON body first drops the bulky fields (evidence, ancestry,
// description, remediation, labels, long arguments), then any body is cut
// on a rune (and CEF escape) boundary.
func syslogMessage(a event.Alert, format string, limit int) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "<%d>1 ", syslogFacility*8+syslogSeverity(a.Severity))
	if a.LastSeen.IsZero() {
		b.WriteString("-")
	} else {
		b.WriteString(a.LastSeen.UTC().Format("2006-01-02T15:04:05.000000Z07:00"))
	}
	b.WriteByte(' ')
	b.WriteString(headerField(a.Node, 255))
	b.WriteString(" vigil - ")
	b.WriteString(headerField(a.Rule, 32))
	b.WriteByte(' ')
	writeSD(&b, a)
	b.WriteByte(' ')
	head := b.Len()

	var body []byte
	switch format {
	case "cef":
		body = []byte(cefLine(a))
	default:
		var err error
		if body, err = marshal(a); err != nil {
			return nil, fmt.Errorf("encode alert %s: %w", a.ID, err)
		}
		if limit > 0 && head+len(body) > limit {
			if body, err = marshal(slim(a)); err != nil {
				return nil, fmt.Errorf("encode alert %s: %w", a.ID, err)
			}
		}
	}
	if limit > 0 && head+len(body) > limit {
		body = []byte(truncateUTF8(string(body), limit-head))
		if format == "cef" {
			body = trimEscape(body)
		}
	}
	b.Write(body)
	return b.Bytes(), nil
}

// syslogSeverity maps alert severities onto RFC 5424's: high is critical,
// medium a warning, low a notice.
func syslogSeverity(s event.Severity) int {
	switch s {
	case event.High:
		return 2
	case event.Medium:
		return 4
	case event.Low:
		return 5
	}
	return 6
}

// headerField makes s a valid RFC 5424 header field: printable US-ASCII
// without spaces, at most n characters, "-" when empty.
func headerField(s string, n int) string {
	if s == "" {
		return "-"
	}
	b := []byte(s)
	for i, c := range b {
		if c < 33 || c > 126 {
			b[i] = '_'
		}
	}
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}

// writeSD writes the structured-data element with the fields a syslog
// server can index without parsing the body.
func writeSD(b *bytes.Buffer, a event.Alert) {
	b.WriteString("[" + sdID)
	for _, p := range [][2]string{
		{"id", a.ID}, {"severity", string(a.Severity)}, {"cluster", a.Cluster},
		{"namespace", a.Namespace}, {"pod", a.Pod}, {"container", a.Container},
	} {
		if p[1] == "" {
			continue
		}
		b.WriteString(" " + p[0] + `="`)
		v := truncateUTF8(strings.ToValidUTF8(p[1], "\uFFFD"), sdMaxValue)
		b.WriteString(sdEscape.Replace(v))
		b.WriteByte('"')
	}
	b.WriteByte(']')
}

// sdMaxValue bounds each structured-data value, so that the header always
// leaves room for the body within a datagram.
const sdMaxValue = 256

// sdEscape escapes what RFC 5424 requires and turns line breaks into
// spaces, so that a message is always one line for receivers that split on
// them.
var sdEscape = strings.NewReplacer(`\`, `\\`, `"`, `\"`, `]`, `\]`, "\r", " ", "\n", " ")

// slim is a without the fields that can be large, marked so that a reader
// knows the message was shortened.
func slim(a event.Alert) event.Alert {
	a.Evidence = map[string]any{"truncated": true}
	a.Description, a.Remediation, a.Labels = "", "", nil
	if a.Process != nil {
		p := *a.Process
		p.Ancestry = nil
		args := p.Args
		if len(args) > 8 {
			args, p.ArgsTruncated = args[:8], true
		}
		p.Args = make([]string, len(args))
		for i, arg := range args {
			if len(arg) > 256 {
				arg, p.ArgsTruncated = truncateUTF8(arg, 256), true
			}
			p.Args[i] = arg
		}
		a.Process = &p
	}
	return a
}

// trimEscape drops a dangling backslash a cut left at the end of a CEF line,
// which would otherwise escape nothing.
func trimEscape(b []byte) []byte {
	n := 0
	for i := len(b) - 1; i >= 0 && b[i] == '\\'; i-- {
		n++
	}
	if n%2 == 1 {
		b = b[:len(b)-1]
	}
	return b
}
