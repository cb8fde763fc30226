package ship

import (
	"encoding/base64"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func basicAuth(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
}

// testProxy is a forwarding proxy with basic auth: absolute-form requests
// for http:// targets are forwarded, CONNECT opens a tunnel. It refuses
// anything without the right Proxy-Authorization with 407, and echoes what
// it got in the refusal's body (as a careless proxy might).
type testProxy struct {
	addr       string
	user, pass string

	mu                          sync.Mutex
	forwarded, tunnels, refused int
}

func newTestProxy(t *testing.T, user, pass string) *testProxy {
	p := &testProxy{user: user, pass: pass}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	p.addr = srv.Listener.Addr().String()
	return p
}

func (p *testProxy) counts() (forwarded, tunnels, refused int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.forwarded, p.tunnels, p.refused
}

var forwardTransport = &http.Transport{} // no proxy of its own

func (p *testProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	got := r.Header.Get("Proxy-Authorization")
	if got != "Basic "+basicAuth(p.user, p.pass) {
		p.mu.Lock()
		p.refused++
		p.mu.Unlock()
		w.Header().Set("Proxy-Authenticate", `Basic realm="test"`)
		w.WriteHeader(http.StatusProxyAuthRequired)
		io.WriteString(w, "proxy refused credentials "+got)
		return
	}
	if r.Method == http.MethodConnect {
		p.mu.Lock()
		p.tunnels++
		p.mu.Unlock()
		dst, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		src, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			dst.Close()
			return
		}
		io.WriteString(src, "HTTP/1.1 200 Connection established\r\n\r\n")
		go func() {
			io.Copy(dst, buf) // buf holds anything already read
			dst.(*net.TCPConn).CloseWrite()
		}()
		io.Copy(src, dst)
		src.Close()
		dst.Close()
		return
	}
	if !r.URL.IsAbs() {
		http.Error(w, "not a proxy request", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	p.forwarded++
	p.mu.Unlock()
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.Header.Del("Proxy-Authorization")
	out.Header.Set("Via", "1.1 test-proxy")
	resp, err := forwardTransport.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

func writeCA(t *testing.T, ts *httptest.Server) string {
	path := filepath.Join(t.TempDir(), "ca.pem")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestProxy(t *testing.T) {
	const user, pass = "vigil", "p@ss:w/rd" // needs percent-encoding in the URL
	proxyURL := func(p *testProxy, user, pass string) string {
		u := &url.URL{Scheme: "http", Host: p.addr}
		if user != "" {
			u.User = url.UserPassword(user, pass)
		}
		return u.String()
	}

	t.Run("http absolute-form", func(t *testing.T) {
		proxy := newTestProxy(t, user, pass)
		srv := newIngestServer(t)
		var via []string
		srv.intercept = func(w http.ResponseWriter, r *http.Request, b *Batch, n int) bool {
			via = append(via, r.Header.Get("Via"))
			return false
		}
		ts := httptest.NewServer(srv)
		t.Cleanup(ts.Close)
		cfg := testConfig(t, ts.URL, t.TempDir())
		cfg.Proxy = proxyURL(proxy, user, pass)
		c := openClient(t, cfg)
		runClient(t, c)
		ids := alertIDs(120)
		queueAlerts(c, ids)
		waitFor(t, "delivery", func() bool { return c.Stats().SentAlerts == 120 })
		srv.checkExactlyOnce(t, ids)
		forwarded, tunnels, refused := proxy.counts()
		if forwarded != 3 || tunnels != 0 || refused != 0 {
			t.Fatalf("proxy forwarded %d, tunnelled %d, refused %d", forwarded, tunnels, refused)
		}
		srv.mu.Lock()
		defer srv.mu.Unlock()
		for _, v := range via {
			if v != "1.1 test-proxy" {
				t.Fatalf("a request bypassed the proxy: Via %q", v)
			}
		}
	})

	t.Run("https CONNECT", func(t *testing.T) {
		proxy := newTestProxy(t, user, pass)
		srv := newIngestServer(t)
		plain := 0
		srv.intercept = func(w http.ResponseWriter, r *http.Request, b *Batch, n int) bool {
			if r.TLS == nil || r.Header.Get("Via") != "" {
				plain++
			}
			return false
		}
		ts := httptest.NewTLSServer(srv)
		t.Cleanup(ts.Close)
		cfg := testConfig(t, ts.URL, t.TempDir())
		cfg.Proxy = proxyURL(proxy, user, pass)
		cfg.CAFile = writeCA(t, ts)
		c := openClient(t, cfg)
		runClient(t, c)
		ids := alertIDs(120)
		queueAlerts(c, ids)
		waitFor(t, "delivery", func() bool { return c.Stats().SentAlerts == 120 })
		srv.checkExactlyOnce(t, ids)
		forwarded, tunnels, refused := proxy.counts()
		if forwarded != 0 || tunnels < 1 || refused != 0 || plain != 0 {
			t.Fatalf("proxy forwarded %d, tunnelled %d, refused %d; %d requests not over TLS", forwarded, tunnels, refused, plain)
		}
	})

	t.Run("https without the test CA", func(t *testing.T) {
		proxy := newTestProxy(t, user, pass)
		srv := newIngestServer(t)
		ts := httptest.NewUnstartedServer(srv)
		ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
		ts.StartTLS()
		t.Cleanup(ts.Close)
		cfg := testConfig(t, ts.URL, t.TempDir())
		cfg.Proxy = proxyURL(proxy, user, pass)
		c := openClient(t, cfg)
		runClient(t, c)
		queueAlerts(c, alertIDs(3))
		waitFor(t, "retries", func() bool { return c.Stats().Retries >= 2 })
		if s := c.Stats(); !strings.Contains(s.LastError, "certificate") || s.SentBatches != 0 {
			t.Fatalf("stats %+v", s)
		}
	})

	for _, tc := range []struct {
		name       string
		tls        bool
		user, pass string
	}{
		{"http wrong password", false, user, "wrong"},
		{"http no credentials", false, "", ""},
		{"https wrong password", true, user, "wrong"},
		{"https no credentials", true, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxy := newTestProxy(t, user, pass)
			srv := newIngestServer(t)
			var ts *httptest.Server
			if tc.tls {
				ts = httptest.NewTLSServer(srv)
			} else {
				ts = httptest.NewServer(srv)
			}
			t.Cleanup(ts.Close)
			cfg := testConfig(t, ts.URL, t.TempDir())
			cfg.Proxy = proxyURL(proxy, tc.user, tc.pass)
			if tc.tls {
				cfg.CAFile = writeCA(t, ts)
			}
			c := openClient(t, cfg)
			runClient(t, c)
			queueAlerts(c, alertIDs(10))
			waitFor(t, "refusals", func() bool {
				_, _, refused := proxy.counts()
				return refused >= 3
			})
			if _, _, n := srv.snapshot(); n != 0 {
				t.Fatalf("%d requests reached the server", n)
			}
			s := c.Stats()
			if s.SpoolBatches != 1 || s.DroppedAlerts != 0 || s.Retries < 2 {
				t.Fatalf("the batch was not kept for retry: %+v", s)
			}
			if !strings.Contains(s.LastError, "407") && !strings.Contains(s.LastError, "Proxy Authentication Required") {
				t.Fatalf("last error %q", s.LastError)
			}
			if strings.Contains(s.LastError, "wrong") {
				t.Fatalf("last error shows the password: %q", s.LastError)
			}
		})
	}
}
