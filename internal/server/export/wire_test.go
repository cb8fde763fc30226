package export

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

func mustNew(t *testing.T, c Config) Output {
	t.Helper()
	o, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.(io.Closer).Close() })
	return o
}

func send(t *testing.T, o Output, as []event.Alert) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return o.Send(ctx, as)
}

func TestWebhookWire(t *testing.T) {
	rec := newRecorder(t, nil)
	o := mustNew(t, Config{Name: "hook", Type: "webhook", URL: rec.srv.URL + "/hook?x=1",
		Headers: map[string]string{"X-Team": "blue"}, Secret: "s3cret"})
	as := alerts()
	if err := send(t, o, as); err != nil {
		t.Fatal(err)
	}
	r := rec.requests()[0]
	if r.Method != "POST" || r.Path != "/hook" || r.RawQuery != "x=1" {
		t.Errorf("request %s %s?%s", r.Method, r.Path, r.RawQuery)
	}
	for k, want := range map[string]string{"Content-Type": "application/json", "X-Team": "blue", "Authorization": "Bearer s3cret"} {
		if got := r.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	got := decodeAlerts(t, r.Body)
	if len(got) != 3 || got[0].Process.Exe != "/tmp/xmrig" || got[2].Description != as[2].Description {
		t.Errorf("body decodes to %+v", got)
	}
}

func TestSlackWire(t *testing.T) {
	rec := newRecorder(t, func(int, request) (int, http.Header, string) { return 200, nil, "ok" })
	o := mustNew(t, Config{Name: "chat", Type: "slack", URL: rec.srv.URL + "/services/T000/B000/XXXX"})
	as := numbered(slackMaxAlerts + 1)
	if err := send(t, o, as); err != nil {
		t.Fatal(err)
	}
	reqs := rec.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests for %d alerts, want 2", len(reqs), len(as))
	}
	for _, r := range reqs {
		var m slackMessage
		if err := json.Unmarshal(r.Body, &m); err != nil {
			t.Fatal(err)
		}
		if r.Path != "/services/T000/B000/XXXX" || r.Header.Get("Content-Type") != "application/json" ||
			m.Text == "" || len(m.Blocks) == 0 || len(m.Blocks) > 50 {
			t.Errorf("slack request %s %q: %d blocks, text %q", r.Path, r.Header.Get("Content-Type"), len(m.Blocks), m.Text)
		}
	}
}

func TestSplunkWire(t *testing.T) {
	rec := newRecorder(t, func(int, request) (int, http.Header, string) {
		return 200, nil, `{"text":"Success","code":0}`
	})
	o := mustNew(t, Config{Name: "splunk", Type: "splunk", URL: rec.srv.URL, Secret: "hec-token", Index: "sec"})
	if err := send(t, o, alerts()); err != nil {
		t.Fatal(err)
	}
	r := rec.requests()[0]
	if r.Path != "/services/collector/event" || r.Header.Get("Authorization") != "Splunk hec-token" {
		t.Errorf("request %s, Authorization %q", r.Path, r.Header.Get("Authorization"))
	}
	dec := json.NewDecoder(strings.NewReader(string(r.Body)))
	n := 0
	for dec.More() {
		var e struct {
			Time       float64     `json:"time"`
			Host       string      `json:"host"`
			Sourcetype string      `json:"sourcetype"`
			Index      string      `json:"index"`
			Event      event.Alert `json:"event"`
		}
		if err := dec.Decode(&e); err != nil {
			t.Fatal(err)
		}
		if e.Sourcetype != "vigil:alert" || e.Index != "sec" || e.Event.ID != alerts()[n].ID {
			t.Errorf("event %d: %+v", n, e)
		}
		n++
	}
	if n != 3 {
		t.Errorf("%d events, want 3", n)
	}

	// An explicit endpoint path is kept.
	o = mustNew(t, Config{Name: "splunk2", Type: "splunk", URL: rec.srv.URL + "/services/collector", Secret: "t"})
	send(t, o, alerts()[:1])
	if p := rec.requests()[1].Path; p != "/services/collector" {
		t.Errorf("explicit path became %s", p)
	}
}

func TestElasticsearchWire(t *testing.T) {
	var answer string
	rec := newRecorder(t, func(int, request) (int, http.Header, string) { return 200, nil, answer })
	ok := `{"took":3,"errors":false,"items":[{"index":{"_id":"1","status":201}}]}`
	for _, tc := range []struct {
		name, secret, auth, answer string
		want                       string // "", "retry" or "permanent"
	}{
		{"api key", "a2V5aWQ6a2V5", "ApiKey a2V5aWQ6a2V5", ok, ""},
		{"basic", "elastic:pw", "Basic " + base64.StdEncoding.EncodeToString([]byte("elastic:pw")), ok, ""},
		{"mapping error", "", "", `{"errors":true,"items":[{"index":{"status":201}},{"index":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [count]"}}}]}`, "permanent"},
		{"overloaded", "", "", `{"errors":true,"items":[{"index":{"status":400,"error":{"type":"x","reason":"y"}}},{"index":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}}]}`, "retry"},
		{"not json", "", "", `<html>`, "retry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answer = tc.answer
			o := mustNew(t, Config{Name: "es", Type: "elasticsearch", URL: rec.srv.URL + "/es/", Secret: tc.secret})
			err := send(t, o, alerts())
			switch {
			case tc.want == "" && err != nil,
				tc.want == "retry" && (err == nil || errors.Is(err, ErrPermanent)),
				tc.want == "permanent" && !errors.Is(err, ErrPermanent):
				t.Fatalf("error %v, want %s", err, tc.want)
			}
			reqs := rec.requests()
			r := reqs[len(reqs)-1]
			if r.Path != "/es/_bulk" || r.Header.Get("Content-Type") != "application/x-ndjson" || r.Header.Get("Authorization") != tc.auth {
				t.Errorf("request %s %q auth %q", r.Path, r.Header.Get("Content-Type"), r.Header.Get("Authorization"))
			}
			if lines := strings.Count(string(r.Body), "\n"); lines != 6 {
				t.Errorf("%d NDJSON lines, want 6", lines)
			}
			if tc.want == "permanent" && !strings.Contains(err.Error(), "mapper_parsing_exception") {
				t.Errorf("error does not name the item error: %v", err)
			}
		})
	}
}

// TestHTTPStatus: 4xx is permanent except 408 and 429, 5xx is retried, and
// Retry-After is passed on.
func TestHTTPStatus(t *testing.T) {
	var code int
	rec := newRecorder(t, func(int, request) (int, http.Header, string) {
		return code, http.Header{"Retry-After": {"7"}}, `{"error":"nope"}`
	})
	o := mustNew(t, Config{Name: "hook", Type: "webhook", URL: rec.srv.URL})
	for _, c := range []struct {
		code      int
		permanent bool
	}{{400, true}, {401, true}, {403, true}, {404, true}, {413, true}, {301, true},
		{408, false}, {429, false}, {500, false}, {502, false}, {503, false}} {
		code = c.code
		err := send(t, o, numbered(1))
		if err == nil || errors.Is(err, ErrPermanent) != c.permanent {
			t.Errorf("HTTP %d: error %v, permanent %v, want %v", c.code, err, errors.Is(err, ErrPermanent), c.permanent)
			continue
		}
		var ra retryAfterer
		if !errors.As(err, &ra) || ra.RetryAfter() != 7*time.Second {
			t.Errorf("HTTP %d: Retry-After not passed on: %v", c.code, err)
		}
		if !strings.Contains(err.Error(), strconv.Itoa(c.code)) || !strings.Contains(err.Error(), "nope") {
			t.Errorf("HTTP %d: error %q lacks the status or body", c.code, err)
		}
	}
}

func TestSyslogUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	big := alerts()[0]
	big.ID = "big"
	big.Evidence = map[string]any{"blob": strings.Repeat("x", 100000)}
	for _, format := range []string{"json", "cef"} {
		o := mustNew(t, Config{Name: "sl", Type: "syslog", Address: pc.LocalAddr().String(), Network: "udp", Format: format})
		as := append(alerts(), big)
		if err := send(t, o, as); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1<<17)
		for i, a := range as {
			pc.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				t.Fatalf("%s datagram %d: %v", format, i, err)
			}
			if n > udpMax {
				t.Errorf("datagram of %d bytes", n)
			}
			checkSyslog(t, buf[:n], a, format)
		}
	}
}

// checkSyslog checks one received message against the alert it carries.
func checkSyslog(t *testing.T, b []byte, a event.Alert, format string) {
	t.Helper()
	m := parse5424(t, b)
	if m.App != "vigil" || m.MsgID != headerField(a.Rule, 32) || m.Pri != syslogFacility*8+syslogSeverity(a.Severity) ||
		!strings.Contains(m.SD, `id="`+a.ID+`"`) {
		t.Errorf("header %+v for alert %s", m, a.ID)
	}
	switch format {
	case "json", "":
		var got event.Alert
		if err := json.Unmarshal([]byte(m.Msg), &got); err != nil || got.ID != a.ID {
			t.Errorf("json body of %s: %v: %.200s", a.ID, err, m.Msg)
		}
	case "cef":
		f := cefHeaderFields(m.Msg)
		if len(f) != 8 || f[0] != "CEF:0" || f[4] != a.Rule || !strings.Contains(f[7], "externalId="+a.ID) {
			t.Errorf("cef body of %s: %q", a.ID, f)
		}
	}
}

// readFrames reads n RFC 6587 octet-counted frames.
func readFrames(t *testing.T, r *bufio.Reader, n int) [][]byte {
	t.Helper()
	var frames [][]byte
	for range n {
		l, err := r.ReadString(' ')
		if err != nil {
			t.Fatalf("frame length: %v", err)
		}
		size, err := strconv.Atoi(strings.TrimSuffix(l, " "))
		if err != nil {
			t.Fatalf("frame length %q", l)
		}
		b := make([]byte, size)
		if _, err := io.ReadFull(r, b); err != nil {
			t.Fatal(err)
		}
		frames = append(frames, b)
	}
	return frames
}

func TestSyslogTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	testStreamSyslog(t, l, Config{Name: "sl", Type: "syslog", Address: l.Addr().String(), Network: "tcp", Format: "cef"})
}

func TestSyslogTLS(t *testing.T) {
	caFile, cert := testCA(t)
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cfg := Config{Name: "sl", Type: "syslog", Address: l.Addr().String(), Network: "tls", CAFile: caFile}

	// Without the CA the server is not trusted.
	go func() {
		if c, err := l.Accept(); err == nil {
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	untrusted := cfg
	untrusted.CAFile = ""
	if err := send(t, mustNew(t, untrusted), alerts()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("untrusted server: error %v", err)
	}
	testStreamSyslog(t, l, cfg)
}

// testStreamSyslog sends over a stream transport, checks the frames, then
// has the receiver drop the connection and checks the next batch arrives
// on a new one.
func testStreamSyslog(t *testing.T, l net.Listener, cfg Config) {
	conns := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if tc, ok := c.(*tls.Conn); ok {
				tc.Handshake() // the client's dial waits for it
			}
			conns <- c
		}
	}()
	o := mustNew(t, cfg)
	as := alerts()
	if err := send(t, o, as); err != nil {
		t.Fatal(err)
	}
	c := <-conns
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i, f := range readFrames(t, bufio.NewReader(c), len(as)) {
		checkSyslog(t, f, as[i], cfg.Format)
	}
	c.Close()
	time.Sleep(20 * time.Millisecond) // let the FIN arrive

	more := numbered(2)
	if err := send(t, o, more); err != nil {
		t.Fatal(err)
	}
	select {
	case c = <-conns:
	case <-time.After(5 * time.Second):
		t.Fatal("no reconnection after the receiver closed the connection")
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i, f := range readFrames(t, bufio.NewReader(c), len(more)) {
		checkSyslog(t, f, more[i], cfg.Format)
	}
}
