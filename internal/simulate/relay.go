package simulate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The relay is the attacker's side of a cluster victim: `vigil simulate
// relay` runs in a sidecar of the victim pod, so its sockets live in the
// pod's network namespace, as the local backend's attacker sockets live in
// the runc container's. The CLI reaches it through a port-forward; every
// port-forward connection carries one request line, answered "OK" or
// "ERR <reason>", then (for DIAL and ACCEPT) raw bytes in both directions:
//
//	DIAL <ip:port>     connect to a local address of the pod; splice
//	LISTEN <ip:port>   listen there; the relay then writes "CONN <id>" on
//	                   this connection for each accepted connection, and
//	                   closes the listener when this connection closes
//	ACCEPT <id>        take accepted connection <id>; splice
//	PING               answer OK (the relay is up)
//	ADDR <ip>          add ip/32 to the pod's loopback (an address the
//	                   relay was started to allow; needs NET_ADMIN)
//
// The relay dials only addresses of the pod's own interfaces: no
// attacker's connection leaves the pod's network namespace.

// RelayPort is the port the relay listens on in the victim pod, on
// loopback (a port-forward reaches the pod's loopback).
const RelayPort = 7077

// RelayConfig configures ServeRelay.
type RelayConfig struct {
	// AllowAddresses are the addresses ADDR may add to the loopback.
	AllowAddresses []string
	// AddAddress adds ip/32 to the loopback; nil is addLoopbackAddress
	// (netlink). Tests replace it.
	AddAddress func(ip netip.Addr) error
	// LocalAddress reports whether ip is an address of this network
	// namespace; nil checks the interfaces. Tests replace it.
	LocalAddress func(ip netip.Addr) bool
	// Logf receives one line per request; nil discards.
	Logf func(format string, args ...any)
}

// ServeRelay serves relay requests on l until ctx is done, then closes l
// and every connection it relays.
func ServeRelay(ctx context.Context, l net.Listener, cfg RelayConfig) error {
	if cfg.AddAddress == nil {
		cfg.AddAddress = addLoopbackAddress
	}
	if cfg.LocalAddress == nil {
		cfg.LocalAddress = isLocalAddress
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	r := &relay{cfg: cfg, pending: map[uint64]net.Conn{}, conns: map[net.Conn]bool{}}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-ctx.Done()
		l.Close()
		r.closeAll()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("relay: accept: %w", err)
		}
		go r.handle(ctx, c)
	}
}

type relay struct {
	cfg RelayConfig

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]net.Conn // accepted, not yet taken by ACCEPT
	conns   map[net.Conn]bool   // everything open, closed on shutdown
}

func (r *relay) track(c net.Conn) {
	r.mu.Lock()
	r.conns[c] = true
	r.mu.Unlock()
}

func (r *relay) untrack(c net.Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
	c.Close()
}

func (r *relay) closeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.conns {
		c.Close()
	}
}

func (r *relay) handle(ctx context.Context, c net.Conn) {
	r.track(c)
	defer r.untrack(c)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReaderSize(c, 512)
	line, err := readLine(br)
	if err != nil {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	verb, arg, _ := strings.Cut(line, " ")
	r.cfg.Logf("relay: %s %s", verb, arg)
	reply := func(err error) bool {
		if err != nil {
			fmt.Fprintf(c, "ERR %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
			return false
		}
		_, werr := io.WriteString(c, "OK\n")
		return werr == nil
	}
	switch verb {
	case "DIAL":
		peer, err := r.dial(ctx, arg)
		if !reply(err) {
			return
		}
		r.track(peer)
		defer r.untrack(peer)
		splice(&bufferedConn{Conn: c, r: br}, peer)
	case "LISTEN":
		l, err := r.listen(arg)
		if !reply(err) {
			return
		}
		r.serveListener(c, br, l)
	case "ACCEPT":
		id, err := strconv.ParseUint(arg, 10, 64)
		r.mu.Lock()
		peer, ok := r.pending[id]
		delete(r.pending, id)
		r.mu.Unlock()
		if err == nil && !ok {
			err = fmt.Errorf("no accepted connection %q", arg)
		}
		if !reply(err) {
			return
		}
		defer r.untrack(peer)
		splice(&bufferedConn{Conn: c, r: br}, peer)
	case "ADDR":
		reply(r.addAddress(arg))
	case "PING":
		reply(nil)
	default:
		reply(fmt.Errorf("unknown request %q", verb))
	}
}

func (r *relay) dial(ctx context.Context, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return nil, fmt.Errorf("address %q: want IPv4 ip:port", addr)
	}
	if !r.cfg.LocalAddress(ap.Addr()) {
		return nil, fmt.Errorf("%s is not an address of the victim pod: the relay connects only inside the pod", ap.Addr())
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp4", ap.String())
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", ap, err)
	}
	return c, nil
}

func (r *relay) listen(addr string) (net.Listener, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return nil, fmt.Errorf("address %q: want IPv4 ip:port", addr)
	}
	if ap.Port() == RelayPort {
		return nil, fmt.Errorf("port %d is the relay's own", RelayPort)
	}
	l, err := net.Listen("tcp4", ap.String())
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", ap, err)
	}
	return l, nil
}

// serveListener announces each connection l accepts on the control
// connection c until c closes, then closes l and the connections not
// taken.
func (r *relay) serveListener(c net.Conn, br *bufio.Reader, l net.Listener) {
	var ids []uint64
	go func() {
		// The client sends nothing more: EOF means it closed the listener.
		_, _ = io.Copy(io.Discard, br)
		l.Close()
	}()
	defer func() {
		l.Close()
		r.mu.Lock()
		for _, id := range ids {
			if p, ok := r.pending[id]; ok {
				delete(r.pending, id)
				p.Close()
			}
		}
		r.mu.Unlock()
	}()
	for {
		peer, err := l.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		r.nextID++
		id := r.nextID
		r.pending[id] = peer
		r.conns[peer] = true
		r.mu.Unlock()
		ids = append(ids, id)
		if _, err := fmt.Fprintf(c, "CONN %d\n", id); err != nil {
			return
		}
	}
}

func (r *relay) addAddress(s string) error {
	ip, err := netip.ParseAddr(s)
	if err != nil || !ip.Is4() {
		return fmt.Errorf("address %q: want IPv4", s)
	}
	if !slices.Contains(r.cfg.AllowAddresses, ip.String()) {
		return fmt.Errorf("the relay was not started to add %s (allowed: %s)", ip, strings.Join(r.cfg.AllowAddresses, ", "))
	}
	if r.cfg.LocalAddress(ip) {
		return nil
	}
	return r.cfg.AddAddress(ip)
}

// isLocalAddress reports whether ip is loopback or an address of one of
// this network namespace's interfaces.
func isLocalAddress(ip netip.Addr) bool {
	if ip.IsLoopback() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if x, ok := netip.AddrFromSlice(n.IP); ok && x.Unmap() == ip {
				return true
			}
		}
	}
	return false
}

// RelayClient talks to a relay. Dial opens a new connection to it (through
// a port-forward, or directly in tests); it is safe for concurrent use.
type RelayClient struct {
	Dial func(ctx context.Context) (net.Conn, error)
}

// request opens a connection, sends line and reads the answer.
func (rc *RelayClient) request(ctx context.Context, line string) (*bufferedConn, error) {
	c, err := rc.Dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("reach the attacker relay: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	br := bufio.NewReaderSize(c, 512)
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		c.Close()
		return nil, fmt.Errorf("relay %s: %w", line, err)
	}
	answer, err := readLine(br)
	if err != nil {
		c.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("relay %s: %w", line, err)
	}
	if reason, ok := strings.CutPrefix(answer, "ERR "); ok {
		c.Close()
		return nil, fmt.Errorf("relay %s: %s", line, reason)
	}
	if answer != "OK" {
		c.Close()
		return nil, fmt.Errorf("relay %s: unexpected answer %q", line, answer)
	}
	_ = c.SetDeadline(time.Time{})
	return &bufferedConn{Conn: c, r: br}, nil
}

// DialVia connects to addr (ip:port) in the victim pod's network.
func (rc *RelayClient) DialVia(ctx context.Context, addr string) (net.Conn, error) {
	return rc.request(ctx, "DIAL "+addr)
}

// ListenVia listens on addr (ip:port) in the victim pod's network; the
// returned listener's connections are relayed. Closing it closes the
// pod's listener.
func (rc *RelayClient) ListenVia(ctx context.Context, addr string) (net.Listener, error) {
	c, err := rc.request(ctx, "LISTEN "+addr)
	if err != nil {
		return nil, err
	}
	ap, _ := netip.ParseAddrPort(addr)
	l := &relayListener{rc: rc, ctl: c, addr: net.TCPAddrFromAddrPort(ap), conns: make(chan net.Conn), done: make(chan struct{})}
	go l.run()
	return l, nil
}

// AddAddress adds ip to the victim pod's loopback.
func (rc *RelayClient) AddAddress(ctx context.Context, ip string) error {
	c, err := rc.request(ctx, "ADDR "+ip)
	if err != nil {
		return err
	}
	return c.Close()
}

type relayListener struct {
	rc    *RelayClient
	ctl   *bufferedConn
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	err   error
}

func (l *relayListener) run() {
	for {
		line, err := readLine(l.ctl.r)
		if err != nil {
			l.close(fmt.Errorf("relay listener %s closed: %w", l.addr, err))
			return
		}
		id, ok := strings.CutPrefix(line, "CONN ")
		if !ok {
			continue
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			c, err := l.rc.request(ctx, "ACCEPT "+id)
			if err != nil {
				return // the victim's connection is closed by the relay
			}
			select {
			case l.conns <- c:
			case <-l.done:
				c.Close()
			}
		}()
	}
}

func (l *relayListener) close(err error) {
	l.once.Do(func() {
		l.err = err
		close(l.done)
		l.ctl.Close()
	})
}

func (l *relayListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *relayListener) Close() error {
	l.close(net.ErrClosed)
	return nil
}

func (l *relayListener) Addr() net.Addr { return l.addr }

// bufferedConn is a connection whose first bytes may already sit in a
// bufio.Reader (read with the request or answer line).
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite half-closes when the underlying connection can.
func (c *bufferedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// splice copies both ways until both directions end (half-closing each
// side as its peer finishes), or 30 s after the first ended, then closes
// both.
func splice(a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			dst.Close()
		}
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	select {
	case <-done:
	case <-time.After(30 * time.Second):
	}
	a.Close()
	b.Close()
}

func readLine(br *bufio.Reader) (string, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return "", errors.New("line too long")
		}
		return "", err
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}
