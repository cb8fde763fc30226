package ship

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

const testToken = "vgl_c_S3cr3tClusterCredential-DoNotLog"

// ingestServer stands in for the real server's ingest endpoint: it checks
// the token, decodes with DecodeBatch, skips batch ids it has stored and
// upserts alerts by id, counting everything a test may want to check.
type ingestServer struct {
	t *testing.T

	mu        sync.Mutex
	requests  int
	batches   map[string]bool
	dupes     int               // requests for a batch id already stored
	order     []string          // alert ids in the order first stored
	stored    map[string]int    // times each alert id was inserted (must stay 1)
	counts    map[string]uint64 // upserted count per alert id
	health    []Health
	bodySizes []int
	// findings holds, per stored batch with findings or completed scans,
	// "f:<id>" per finding and then "c:<scan>" per completed scan.
	findings [][]string
	// intercept, when set, may answer a request itself (return true),
	// after the batch was decoded and before or after it is stored.
	intercept func(w http.ResponseWriter, r *http.Request, b *Batch, n int) bool
	// after, when set, runs after the batch was stored and may replace the
	// acknowledgement (return true).
	after func(w http.ResponseWriter, r *http.Request, b *Batch, n int) bool
}

func newIngestServer(t *testing.T) *ingestServer {
	return &ingestServer{t: t, batches: map[string]bool{}, stored: map[string]int{}, counts: map[string]uint64{}}
}

func (s *ingestServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != IngestPath {
		http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+testToken {
		http.Error(w, `{"error":"bad credentials"}`, http.StatusUnauthorized)
		return
	}
	body := &countingReader{r: r.Body}
	b, err := DecodeBatch(body)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	n := s.requests
	s.bodySizes = append(s.bodySizes, body.n)
	if err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, ErrTooLarge) {
			code = http.StatusRequestEntityTooLarge
		}
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		return
	}
	if s.intercept != nil && s.intercept(w, r, b, n) {
		return
	}
	if s.batches[b.BatchID] {
		s.dupes++
	} else {
		s.batches[b.BatchID] = true
		for _, a := range b.Alerts {
			if _, ok := s.counts[a.ID]; !ok {
				s.order = append(s.order, a.ID)
				s.stored[a.ID]++
			}
			s.counts[a.ID] = max(s.counts[a.ID], a.Count)
		}
		s.health = append(s.health, b.Health...)
		var fs []string
		for _, f := range b.Findings {
			fs = append(fs, "f:"+f.ID)
		}
		for _, scan := range b.CompletedScans {
			fs = append(fs, "c:"+scan)
		}
		if fs != nil {
			s.findings = append(s.findings, fs)
		}
	}
	if s.after != nil && s.after(w, r, b, n) {
		return
	}
	w.WriteHeader(http.StatusAccepted)
	w.Write([]byte(`{"accepted":true}`))
}

type countingReader struct {
	r interface{ Read([]byte) (int, error) }
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func (s *ingestServer) snapshot() (order []string, dupes, requests int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.order), s.dupes, s.requests
}

// checkExactlyOnce fails unless the server stored exactly want, in order,
// each alert once.
func (s *ingestServer) checkExactlyOnce(t *testing.T, want []string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, n := range s.stored {
		if n != 1 {
			t.Errorf("alert %s stored %d times", id, n)
		}
	}
	if !slices.Equal(s.order, want) {
		t.Fatalf("server has %d alerts, want %d in order; first difference at %d", len(s.order), len(want), firstDiff(s.order, want))
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func alertIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("alert-%05d", i)
	}
	return ids
}

func queueAlerts(c *Client, ids []string) {
	for _, id := range ids {
		a := testAlert(id, 1)
		c.Alert(&a)
	}
}

// testConfig is a fast client: short flushes and retries, no heartbeats.
func testConfig(t *testing.T, server, dir string) Config {
	return Config{
		Server: server, Token: testToken, SpoolDir: dir,
		BatchSize: 50, FlushInterval: 10 * time.Millisecond,
		RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond,
		Heartbeat: -1, Node: "node-1", Component: "sensor",
		Log: slog.New(slog.NewTextHandler(&testWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

type testWriter struct {
	t  *testing.T
	mu sync.Mutex
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// runClient runs c until the test ends or stop is called; stop waits for
// Run to return.
func runClient(t *testing.T, c *Client) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func openClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// reserveAddr returns a loopback address nobody listens on (yet).
func reserveAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func startServerAt(t *testing.T, addr string, h http.Handler) *httptest.Server {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s again: %v", addr, err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

func TestServerDownThenUp(t *testing.T) {
	addr := reserveAddr(t)
	cfg := testConfig(t, "http://"+addr, t.TempDir())
	c := openClient(t, cfg)
	runClient(t, c)

	ids := alertIDs(1000)
	queueAlerts(c, ids[:600])
	// Refused connections: everything is spooled and retried.
	waitFor(t, "spooled batches and retries", func() bool {
		s := c.Stats()
		return s.Retries >= 3 && s.QueuedAlerts == 0 && s.SpoolBatches >= 12
	})

	// The server comes up but answers 503 for a while.
	srv := newIngestServer(t)
	srv.intercept = func(w http.ResponseWriter, r *http.Request, b *Batch, n int) bool {
		if n <= 5 {
			w.Header().Set("Retry-After", "0")
			http.Error(w, `{"error":"database unavailable"}`, http.StatusServiceUnavailable)
			return true
		}
		return false
	}
	startServerAt(t, addr, srv)
	queueAlerts(c, ids[600:])
	waitFor(t, "delivery", func() bool {
		order, _, _ := srv.snapshot()
		return len(order) == len(ids) && c.Stats().SpoolBatches == 0
	})
	srv.checkExactlyOnce(t, ids)
	s := c.Stats()
	if s.SentAlerts != uint64(len(ids)) || s.DroppedAlerts != 0 || s.DroppedBatches != 0 || s.RejectedBatches != 0 {
		t.Fatalf("stats %+v", s)
	}
	if s.LastError == "" || s.Retries < 8 {
		t.Fatalf("retries not recorded: %+v", s)
	}
}

// TestCrashResendsSameBatch simulates a sensor that dies after the server
// stored its batches but before the acknowledgements arrived: a new client
// on the same spool sends the same batch ids, and the server keeps one copy.
func TestCrashResendsSameBatch(t *testing.T) {
	srv := newIngestServer(t)
	lost := true // guarded by srv.mu, like everything after sees
	srv.after = func(w http.ResponseWriter, r *http.Request, b *Batch, n int) bool {
		if !lost {
			return false
		}
		// Stored, but the connection dies before the answer.
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return true
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	dir := t.TempDir()

	cfg := testConfig(t, ts.URL, dir)
	cfg.FlushInterval = time.Hour // the tail stays in memory until shutdown
	a, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(cfg); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Open on a locked spool: %v", err)
	}
	stopA := runClient(t, a)
	ids := alertIDs(230)
	queueAlerts(a, ids[:200]) // 4 full batches, cut at once
	// The first batch is stored and resent, stored and resent: the client
	// never hears back, so it never gets to the second.
	waitFor(t, "the server to store the first batch", func() bool {
		order, dupes, _ := srv.snapshot()
		return len(order) == 50 && dupes >= 2 && a.Stats().SpooledBatches == 4
	})
	queueAlerts(a, ids[200:]) // not a full batch: only in memory
	stopA()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) != 5 {
		t.Fatalf("spool holds %d batches, want the 4 unacknowledged and the 1 cut at shutdown", len(files))
	}
	// A crash can leave a temporary file; it must not be sent.
	os.WriteFile(filepath.Join(dir, spoolTmpPfx+"123"), []byte(`{"batch_id":"x"`), 0o600)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("ignored"), 0o600)

	srv.mu.Lock()
	lost = false
	dupesBefore := srv.dupes
	srv.mu.Unlock()
	b := openClient(t, testConfig(t, ts.URL, dir))
	runClient(t, b)
	waitFor(t, "the spool to drain", func() bool { return b.Stats().SpoolBatches == 0 })
	srv.checkExactlyOnce(t, ids)
	if _, dupes, _ := srv.snapshot(); dupes != dupesBefore+1 {
		t.Fatalf("server saw %d resent batch ids after the restart, want 1 (the first batch)", dupes-dupesBefore)
	}
	if st := b.Stats(); st.SentBatches != 5 || st.SentAlerts != 230 {
		t.Fatalf("second client stats %+v", st)
	}
	if _, err := os.Stat(filepath.Join(dir, spoolTmpPfx+"123")); !os.IsNotExist(err) {
		t.Fatalf("temporary file left: %v", err)
	}
}

func TestSpoolBoundDropsOldest(t *testing.T) {
	addr := reserveAddr(t)
	cfg := testConfig(t, "http://"+addr, t.TempDir())
	cfg.BatchSize = 10
	one, _ := json.Marshal(testAlert("alert-00000", 1))
	batchBytes := int64(10 * (len(one) + 1))
	cfg.MaxSpoolBytes = 5*batchBytes + batchBytes/2 // room for 5 batches
	c := openClient(t, cfg)
	runClient(t, c)

	ids := alertIDs(300)
	for i := 0; i < len(ids); i += 10 {
		queueAlerts(c, ids[i:i+10])
	}
	waitFor(t, "everything cut", func() bool {
		s := c.Stats()
		return s.QueuedAlerts == 0 && s.SpooledBatches == 30
	})
	s := c.Stats()
	if s.SpoolBytes > cfg.MaxSpoolBytes || s.SpoolBatches != 5 {
		t.Fatalf("spool over its bound: %+v (max %d)", s, cfg.MaxSpoolBytes)
	}
	if s.DroppedBatches != 25 || s.DroppedAlerts != 250 {
		t.Fatalf("drops not counted: %+v", s)
	}

	srv := newIngestServer(t)
	startServerAt(t, addr, srv)
	waitFor(t, "delivery", func() bool { return c.Stats().SpoolBatches == 0 })
	// The newest survive, in order.
	srv.checkExactlyOnce(t, ids[250:])
}

func TestPermanentRejectionIsDropped(t *testing.T) {
	srv := newIngestServer(t)
	poisonSeen := 0
	srv.intercept = func(w http.ResponseWriter, r *http.Request, b *Batch, n int) bool {
		for _, a := range b.Alerts {
			if a.ID == "poison" {
				poisonSeen++
				w.WriteHeader(http.StatusBadRequest)
				w.Write([]byte(`{"error":"alerts[0].rule: unknown rule"}`))
				return true
			}
		}
		return false
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	cfg := testConfig(t, ts.URL, t.TempDir())
	cfg.BatchSize = 1
	c := openClient(t, cfg)
	runClient(t, c)

	ids := alertIDs(20)
	queueAlerts(c, ids[:10])
	poison := testAlert("poison", 1)
	c.Alert(&poison)
	bad := testAlert("bad-severity", 1)
	bad.Severity = "critical"
	c.Alert(&bad) // refused on the way in
	queueAlerts(c, ids[10:])
	waitFor(t, "delivery", func() bool {
		order, _, _ := srv.snapshot()
		return len(order) == len(ids) && c.Stats().SpoolBatches == 0
	})
	srv.checkExactlyOnce(t, ids)
	time.Sleep(50 * time.Millisecond) // time for a wrong retry to show
	srv.mu.Lock()
	seen := poisonSeen
	srv.mu.Unlock()
	if seen != 1 {
		t.Fatalf("the refused batch was sent %d times", seen)
	}
	s := c.Stats()
	if s.RejectedBatches != 1 || s.DroppedBatches != 1 || s.DroppedAlerts != 2 {
		t.Fatalf("stats %+v", s)
	}
	if !strings.Contains(s.LastError, "400") || !strings.Contains(s.LastError, "unknown rule") {
		t.Fatalf("last error %q", s.LastError)
	}
}

func TestCredentialRefusalKeepsBatches(t *testing.T) {
	srv := newIngestServer(t)
	srv.intercept = func(w http.ResponseWriter, r *http.Request, b *Batch, n int) bool {
		if n <= 4 {
			http.Error(w, `{"error":"unknown cluster credential"}`, http.StatusUnauthorized)
			return true
		}
		return false
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	c := openClient(t, testConfig(t, ts.URL, t.TempDir()))
	runClient(t, c)
	ids := alertIDs(120)
	queueAlerts(c, ids)
	waitFor(t, "delivery", func() bool { return c.Stats().SpoolBatches == 0 && c.Stats().QueuedAlerts == 0 })
	srv.checkExactlyOnce(t, ids)
	if s := c.Stats(); s.DroppedAlerts != 0 || s.Retries < 4 {
		t.Fatalf("stats %+v", s)
	}
}

func TestRedirectIsNotFollowed(t *testing.T) {
	target := newIngestServer(t)
	tts := httptest.NewServer(target)
	t.Cleanup(tts.Close)
	redirects := 0
	var mu sync.Mutex
	rts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		redirects++
		mu.Unlock()
		http.Redirect(w, r, tts.URL+IngestPath, http.StatusFound)
	}))
	t.Cleanup(rts.Close)
	c := openClient(t, testConfig(t, rts.URL, t.TempDir()))
	runClient(t, c)
	queueAlerts(c, alertIDs(3))
	waitFor(t, "retries", func() bool { return c.Stats().Retries >= 2 })
	if _, _, n := target.snapshot(); n != 0 {
		t.Fatalf("the redirect was followed %d times", n)
	}
	if s := c.Stats(); s.SpoolBatches != 1 || s.DroppedAlerts != 0 || !strings.Contains(s.LastError, "302") {
		t.Fatalf("stats %+v", s)
	}
}

func TestMergesAlertUpdates(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, "http://"+reserveAddr(t), dir)
	c := openClient(t, cfg)
	for count := uint64(1); count <= 100; count++ {
		a := testAlert("aggregated", count)
		c.Alert(&a)
		if count == 50 {
			b := testAlert("other", 1)
			c.Alert(&b)
		}
	}
	stale := testAlert("aggregated", 7) // a late, older update
	c.Alert(&stale)
	// Changing the caller's alert after Alert must not change what is sent.
	mut := testAlert("mutated", 1)
	c.Alert(&mut)
	mut.Labels["app"] = "changed"
	mut.Count = 99

	c.Health(Health{State: "installed", Health: &event.Health{Mode: "ebpf"}})
	c.Health(Health{State: "failed", Reason: "BPF LSM not enabled"})
	c.Inventory([]InventoryItem{{Kind: KindPod, Name: "web-7d9f", Namespace: "shop"}, {Kind: "secret", Name: "x"}})
	c.Findings([]Finding{{ID: "f1", Check: "privileged-container", Resource: "Deployment/shop/web", Status: Unhealthy}})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) != 1 {
		t.Fatalf("%d batches spooled, want 1", len(files))
	}
	f, _ := os.Open(files[0])
	defer f.Close()
	b, err := DecodeBatch(f) // what the client writes, the server accepts
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(files[0]) != b.BatchID+".json" || b.Node != "node-1" || b.Component != "sensor" {
		t.Fatalf("batch %s in %s", b.BatchID, files[0])
	}
	var got []string
	for _, a := range b.Alerts {
		got = append(got, fmt.Sprintf("%s:%d", a.ID, a.Count))
	}
	if want := []string{"aggregated:100", "other:1", "mutated:1"}; !slices.Equal(got, want) {
		t.Fatalf("alerts %v, want %v", got, want)
	}
	if b.Alerts[2].Labels["app"] != "web" {
		t.Fatal("the queued alert shares the caller's map")
	}
	if len(b.Health) != 1 || b.Health[0].State != "failed" || b.Health[0].Node != "node-1" || b.Health[0].Component != "sensor" || b.Health[0].At.IsZero() {
		t.Fatalf("health %+v", b.Health)
	}
	if len(b.Inventory) != 1 || len(b.Findings) != 1 {
		t.Fatalf("inventory %+v findings %+v", b.Inventory, b.Findings)
	}
}

func TestLargeAlertsSplitBatches(t *testing.T) {
	srv := newIngestServer(t)
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	cfg := testConfig(t, ts.URL, t.TempDir())
	cfg.BatchSize = DefaultBatchSize
	c := openClient(t, cfg)
	runClient(t, c)
	ids := alertIDs(100)
	big := strings.Repeat("x", 200<<10)
	for _, id := range ids {
		a := testAlert(id, 1)
		a.Evidence["blob"] = big
		c.Alert(&a)
	}
	huge := testAlert("huge", 1)
	huge.Evidence["blob"] = strings.Repeat("y", MaxBatchBytes)
	c.Alert(&huge) // can never fit a batch: refused on the way in
	waitFor(t, "delivery", func() bool {
		order, _, _ := srv.snapshot()
		return len(order) == len(ids)
	})
	srv.checkExactlyOnce(t, ids)
	srv.mu.Lock()
	sizes := slices.Clone(srv.bodySizes)
	srv.mu.Unlock()
	if len(sizes) < 3 || slices.Max(sizes) > MaxBatchBytes {
		t.Fatalf("request sizes %v", sizes)
	}
	if s := c.Stats(); s.DroppedAlerts != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestHeartbeat(t *testing.T) {
	srv := newIngestServer(t)
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	cfg := testConfig(t, ts.URL, t.TempDir())
	cfg.Heartbeat = 30 * time.Millisecond
	c := openClient(t, cfg)
	c.Health(Health{State: "installed"})
	runClient(t, c)
	waitFor(t, "heartbeats", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return len(srv.health) >= 4
	})
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for _, h := range srv.health {
		if h.State != "installed" || h.Component != "sensor" {
			t.Fatalf("heartbeat health %+v", h)
		}
	}
}

// TestSecretsStayOut checks that neither the token nor the proxy password
// reaches a log line, Stats or an error, even when a server echoes them.
func TestSecretsStayOut(t *testing.T) {
	const proxyPass = "Pr0xyPassw0rd!"
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))

	// A server that echoes the request's credentials in its errors, with
	// alternately a retryable and a permanent status.
	var echoed int
	var echoMu sync.Mutex
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		echoMu.Lock()
		echoed++
		code := []int{http.StatusInternalServerError, http.StatusBadRequest}[echoed%2]
		echoMu.Unlock()
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"error":"bad request from %s %s"}`, r.Header.Get("Authorization"), r.Header.Get("Proxy-Authorization"))
	}))
	t.Cleanup(echo.Close)
	proxy := newTestProxy(t, "user", proxyPass)

	var errs []string
	for _, cfg := range []Config{
		{Server: echo.URL, Token: testToken, SpoolDir: t.TempDir()},
		{Server: echo.URL, Token: testToken, SpoolDir: t.TempDir(), Proxy: "http://user:" + proxyPass + "@" + proxy.addr},
		{Server: echo.URL, Token: testToken, SpoolDir: t.TempDir(), Proxy: "http://user:wrong-" + proxyPass + "@" + proxy.addr},
	} {
		cfg.Log = logger
		cfg.BatchSize = 1
		cfg.FlushInterval, cfg.RetryMin, cfg.RetryMax, cfg.Heartbeat = 5*time.Millisecond, 5*time.Millisecond, 20*time.Millisecond, -1
		c := openClient(t, cfg)
		stop := runClient(t, c)
		queueAlerts(c, alertIDs(5))
		for i := range 5 {
			c.Alert(&event.Alert{ID: fmt.Sprintf("x%d", i), Rule: "r", Severity: event.Low, Evidence: map[string]any{"pad": strings.Repeat("p", i)}})
		}
		waitFor(t, "failures", func() bool { s := c.Stats(); return s.Retries+s.RejectedBatches >= 3 })
		stop()
		errs = append(errs, c.Stats().LastError)
	}
	// Configuration errors quote nothing secret either.
	for _, cfg := range []Config{
		{Server: "http://h", Token: testToken + "\n", SpoolDir: t.TempDir()},
		{Server: "http://h", Token: testToken, SpoolDir: t.TempDir(), Proxy: "http://user:" + proxyPass + "@bad host:x"},
		{Server: "http://h", Token: testToken, SpoolDir: t.TempDir(), Proxy: "ftp://user:" + proxyPass + "@h"},
		{Server: "http://user:" + proxyPass + "@h", Token: testToken, SpoolDir: t.TempDir()},
	} {
		_, err := Open(cfg)
		if err == nil {
			t.Fatalf("Open accepted %+v", cfg)
		}
		errs = append(errs, err.Error())
	}
	logMu.Lock()
	out := logs.String()
	logMu.Unlock()
	if !strings.Contains(out, "ingest") || !strings.Contains(out, "[REDACTED]") {
		t.Fatalf("the scenario did not log the echoed errors:\n%s", out)
	}
	for _, secret := range []string{testToken, proxyPass, basicAuth("user", proxyPass), basicAuth("user", "wrong-"+proxyPass)} {
		if strings.Contains(out, secret) {
			t.Errorf("logs contain %q:\n%s", secret, out)
		}
		for _, e := range errs {
			if strings.Contains(e, secret) {
				t.Errorf("error contains %q: %s", secret, e)
			}
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestOpenRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	for name, cfg := range map[string]Config{
		"no spool":        {Server: "http://h", Token: "t"},
		"no server":       {Token: "t", SpoolDir: dir},
		"bad scheme":      {Server: "ftp://h", Token: "t", SpoolDir: dir},
		"no host":         {Server: "http://", Token: "t", SpoolDir: dir},
		"query":           {Server: "http://h/?x=1", Token: "t", SpoolDir: dir},
		"no token":        {Server: "http://h", SpoolDir: dir},
		"token with CRLF": {Server: "http://h", Token: "t\r\nX: y", SpoolDir: dir},
		"bad proxy":       {Server: "http://h", Token: "t", SpoolDir: dir, Proxy: "socks4://h"},
		"missing CA":      {Server: "https://h", Token: "t", SpoolDir: dir, CAFile: filepath.Join(dir, "none.pem")},
		"long node":       {Server: "http://h", Token: "t", SpoolDir: dir, Node: strings.Repeat("n", 300)},
	} {
		if c, err := Open(cfg); err == nil {
			c.Close()
			t.Errorf("%s: Open accepted it", name)
		}
	}
	notPEM := filepath.Join(dir, "x.pem")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	if _, err := Open(Config{Server: "https://h", Token: "t", SpoolDir: dir, CAFile: notPEM}); err == nil {
		t.Error("a CA file without certificates was accepted")
	}
}

func TestBackoff(t *testing.T) {
	lo, hi := time.Second, time.Minute
	for attempt := 1; attempt < 20; attempt++ {
		for range 100 {
			d := backoff(attempt, lo, hi, 0)
			ceil := min(hi, lo<<(attempt-1))
			if d < lo || d > hi || d > ceil || d < ceil/2 {
				t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, d, max(lo, ceil/2), ceil)
			}
		}
	}
	if d := backoff(1, lo, hi, 30*time.Second); d != 30*time.Second {
		t.Fatalf("Retry-After ignored: %v", d)
	}
	if d := backoff(1, lo, hi, time.Hour); d != hi {
		t.Fatalf("Retry-After not capped: %v", d)
	}
}

func TestNextIDIsMonotonic(t *testing.T) {
	s := &spool{}
	// A spooled batch from the future (the clock went back since).
	future, _ := time.Parse(time.RFC3339, "2100-01-01T00:00:00Z")
	s.last[0] = 0xff
	s.last[5] = byte(future.Unix()) // any id above now
	prev := s.last
	for range 1000 {
		id := s.nextID()
		if id.Compare(prev) <= 0 {
			t.Fatalf("%s not after %s", id, prev)
		}
		prev = id
	}
}

// BenchmarkClientThroughput measures alerts per second from Alert to the
// server's acknowledgement, spool writes (fsync) included, against a
// loopback server that decodes every batch.
func BenchmarkClientThroughput(b *testing.B) {
	var mu sync.Mutex
	got := 0
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		batch, err := DecodeBatch(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		got += len(batch.Alerts)
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	defer ts.Close()
	c, err := Open(Config{Server: ts.URL, Token: testToken, SpoolDir: b.TempDir(), Heartbeat: -1, FlushInterval: 10 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	alerts := make([]event.Alert, 1000)
	for i := range alerts {
		alerts[i] = testAlert(fmt.Sprintf("01JDQ3ZK6T%016d", i), 1)
	}
	b.ResetTimer()
	for i := range b.N {
		a := alerts[i%len(alerts)]
		a.ID = fmt.Sprintf("01JDQ3ZK6T%016d", i)
		c.Alert(&a)
	}
	for {
		mu.Lock()
		n := got
		mu.Unlock()
		if n >= b.N {
			break
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "alerts/s")
	cancel()
	<-done
	if s := c.Stats(); s.DroppedAlerts != 0 {
		b.Fatalf("dropped %d", s.DroppedAlerts)
	}
}

// TestFindingsKeepTheirOrder queues findings that take several batches,
// then a scan completion, then the next run's findings, while the server is
// down (so everything goes through the spool) and while Sync cuts batches
// from another goroutine: the server must receive the findings in the
// order queued, each once, and the completion in the batch of the last
// finding before it or later, never with a finding queued after it.
func TestFindingsKeepTheirOrder(t *testing.T) {
	addr := reserveAddr(t)
	cfg := testConfig(t, "http://"+addr, t.TempDir())
	c := openClient(t, cfg)
	runClient(t, c)

	blob := strings.Repeat("x", 100<<10)
	var want []string
	finding := func(i int, scan string) Finding {
		f := Finding{ID: fmt.Sprintf("f-%04d", i%150), Check: "no-privileged", Resource: fmt.Sprintf("Deployment/shop/w%d", i),
			Status: Unhealthy, Scan: scan, Details: map[string]any{"blob": blob}}
		if i%7 == 3 {
			f = Finding{ID: f.ID, Status: Removed, Scan: scan}
		}
		want = append(want, "f:"+f.ID)
		return f
	}
	stopSync := make(chan struct{})
	syncDone := make(chan struct{})
	go func() {
		defer close(syncDone)
		for {
			select {
			case <-stopSync:
				return
			default:
				if err := c.Sync(); err != nil {
					t.Error(err)
				}
				time.Sleep(time.Millisecond)
			}
		}
	}()
	for i := range 200 { // about 20 MB: at least three batches
		c.Findings([]Finding{finding(i, "01SCAN1")})
	}
	c.ScanComplete("01SCAN1")
	want = append(want, "c:01SCAN1")
	for i := 200; i < 230; i++ {
		c.Findings([]Finding{finding(i, "01SCAN2")})
	}
	c.ScanComplete("01SCAN2")
	want = append(want, "c:01SCAN2")
	c.ScanComplete("bad scan id") // refused on the way in
	close(stopSync)
	<-syncDone
	waitFor(t, "spooled", func() bool { return c.queueEmpty() && c.Stats().SpoolBatches >= 4 })

	srv := newIngestServer(t)
	srv.intercept = func(w http.ResponseWriter, r *http.Request, b *Batch, n int) bool {
		if n%3 == 1 { // every batch is retried at least once
			w.Header().Set("Retry-After", "0")
			http.Error(w, `{"error":"try again"}`, http.StatusServiceUnavailable)
			return true
		}
		return false
	}
	startServerAt(t, addr, srv)
	waitFor(t, "delivery", func() bool { return c.Stats().SpoolBatches == 0 && c.queueEmpty() })

	srv.mu.Lock()
	batches := slices.Clone(srv.findings)
	srv.mu.Unlock()
	var got []string
	for i, b := range batches {
		for j, item := range b {
			if strings.HasPrefix(item, "c:") && j != len(b)-1 {
				t.Errorf("batch %d: completion %s is followed by %v in its batch", i, item, b[j+1:])
			}
		}
		got = append(got, b...)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("server got %d items, want %d in order; first difference at %d", len(got), len(want), firstDiff(got, want))
	}
	if len(batches) < 4 {
		t.Fatalf("%d batches; the test wants findings spanning several", len(batches))
	}
}
