package export

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// request is what a recorder saw.
type request struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Body                   []byte
}

// recorder is an HTTP endpoint on loopback that records every request and
// answers with what respond says (200 and "{}" by default).
type recorder struct {
	srv     *httptest.Server
	mu      sync.Mutex
	reqs    []request
	respond func(n int, r request) (int, http.Header, string)
}

func newRecorder(t *testing.T, respond func(n int, r request) (int, http.Header, string)) *recorder {
	rec := &recorder{respond: respond}
	rec.srv = httptest.NewServer(rec)
	t.Cleanup(rec.srv.Close)
	return rec
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	req := request{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone(), Body: body}
	rec.mu.Lock()
	n := len(rec.reqs)
	rec.reqs = append(rec.reqs, req)
	rec.mu.Unlock()
	code, hdr, resp := 200, http.Header(nil), "{}"
	if rec.respond != nil {
		code, hdr, resp = rec.respond(n, req)
	}
	for k, v := range hdr {
		w.Header()[k] = v
	}
	w.WriteHeader(code)
	io.WriteString(w, resp)
}

func (rec *recorder) requests() []request {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]request(nil), rec.reqs...)
}

// ids are the alert ids of every webhook request body, in arrival order.
func (rec *recorder) ids(t *testing.T) []string {
	t.Helper()
	var ids []string
	for _, r := range rec.requests() {
		for _, a := range decodeAlerts(t, r.Body) {
			ids = append(ids, a.ID)
		}
	}
	return ids
}

func decodeAlerts(t *testing.T, b []byte) []event.Alert {
	t.Helper()
	var as []event.Alert
	if err := json.Unmarshal(b, &as); err != nil {
		t.Fatalf("webhook body: %v: %s", err, b)
	}
	return as
}

// numbered makes n alerts with ids a000.. in order, cycling severities.
func numbered(n int) []event.Alert {
	sev := []event.Severity{event.High, event.Medium, event.Low, event.Informational}
	as := make([]event.Alert, n)
	for i := range as {
		as[i] = event.Alert{ID: fmt.Sprintf("a%04d", i), Rule: "test.rule", Title: "test", Severity: sev[i%4],
			Status: event.StatusActive, LastSeen: time.Unix(1795341600, 0).UTC(), Count: 1}
	}
	return as
}

func seq(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("a%04d", i)
	}
	return ids
}

// eventually polls cond for up to d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// syncBuffer is a log sink safe for the dispatcher's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freeAddr is a loopback TCP address nothing listens on (yet).
func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// testCA makes a CA, writes its certificate to a PEM file and returns that
// path with a server certificate for 127.0.0.1 signed by it.
func testCA(t *testing.T) (caFile string, cert tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vigil test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return caFile, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// syslogMsg is one parsed RFC 5424 message.
type syslogMsg struct {
	Pri                                     int
	Timestamp, Host, App, ProcID, MsgID, SD string
	Msg                                     string
}

// parse5424 parses the RFC 5424 layout the syslog output writes; it fails
// the test on anything else.
func parse5424(t *testing.T, b []byte) syslogMsg {
	t.Helper()
	s := string(b)
	var m syslogMsg
	if len(s) < 4 || s[0] != '<' {
		t.Fatalf("not RFC 5424: %q", s)
	}
	end := bytes.IndexByte(b, '>')
	m.Pri, _ = strconv.Atoi(s[1:end])
	s = s[end+1:]
	var fields [6]string
	for i := range fields {
		sp := bytes.IndexByte([]byte(s), ' ')
		if sp < 0 {
			t.Fatalf("short header: %q", b)
		}
		fields[i], s = s[:sp], s[sp+1:]
	}
	if fields[0] != "1" {
		t.Fatalf("version %q", fields[0])
	}
	m.Timestamp, m.Host, m.App, m.ProcID, m.MsgID = fields[1], fields[2], fields[3], fields[4], fields[5]
	if s[0] == '-' {
		m.SD, s = "-", s[1:]
	} else {
		i := 1
		for ; i < len(s) && s[i] != ']'; i++ {
			if s[i] == '\\' {
				i++
			}
		}
		m.SD, s = s[:i+1], s[i+1:]
	}
	if len(s) > 0 && s[0] == ' ' {
		s = s[1:]
	}
	m.Msg = s
	return m
}
