package export

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vigil-sec/vigil/internal/event"
)

// fast are options for tests: quick retries, visible logs.
func fast(log *syncBuffer) Options {
	o := Options{MinRetryInterval: 5 * time.Millisecond, MaxRetryInterval: 40 * time.Millisecond,
		SendTimeout: 5 * time.Second, FlushTimeout: 2 * time.Second}
	if log != nil {
		o.Log = slog.New(slog.NewJSONHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return o
}

// start runs d until the test ends, and fails the test if Run does not
// return once its ctx is cancelled.
func start(t *testing.T, d *Dispatcher) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
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

func health(d *Dispatcher, name string) Status {
	for _, s := range d.Health() {
		if s.Name == name {
			return s
		}
	}
	return Status{}
}

// TestEndpointDownThenUp: while the endpoint is down (nothing listens),
// alerts queue and are retried; when it comes up they all arrive, once and
// in order, and the output is healthy again.
func TestEndpointDownThenUp(t *testing.T) {
	addr := freeAddr(t)
	var log syncBuffer
	opts := fast(&log)
	opts.MaxBatch = 7
	d, err := NewDispatcher([]Config{{Name: "hook", Type: "webhook", URL: "http://" + addr + "/in"}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	start(t, d)
	const n = 50
	for _, a := range numbered(n) {
		d.Submit(a)
	}
	eventually(t, 5*time.Second, "failed attempts", func() bool { return health(d, "hook").Failures >= 3 })
	s := health(d, "hook")
	if s.Healthy || !strings.Contains(s.LastError, "connection refused") || s.Queued != n || s.Sent != 0 {
		t.Fatalf("while down: %+v", s)
	}

	rec := &recorder{}
	var l net.Listener
	eventually(t, 5*time.Second, "the endpoint's port", func() bool {
		l, err = net.Listen("tcp", addr)
		return err == nil
	})
	srv := &http.Server{Handler: rec}
	go srv.Serve(l)
	defer srv.Close()

	eventually(t, 5*time.Second, "delivery after recovery", func() bool { return health(d, "hook").Sent == n })
	if got := rec.ids(t); !slices.Equal(got, seq(n)) {
		t.Errorf("delivered out of order or more than once:\n got %v\nwant %v", got, seq(n))
	}
	for _, r := range rec.requests() {
		if len(decodeAlerts(t, r.Body)) > 7 {
			t.Errorf("batch over MaxBatch")
		}
	}
	s = health(d, "hook")
	if !s.Healthy || s.Queued != 0 || s.Dropped != 0 || s.LastSuccess.IsZero() || s.LastError == "" {
		t.Errorf("after recovery: %+v", s)
	}
	if !strings.Contains(log.String(), "export recovered") || !strings.Contains(log.String(), "will retry") {
		t.Errorf("logs lack the failure or the recovery:\n%s", log.String())
	}
}

// TestQueueBound: a full queue drops for that output only, and counts it.
func TestQueueBound(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	opts := fast(nil)
	opts.QueueSize, opts.Registerer = 5, reg
	down := "http://" + freeAddr(t)
	d, err := NewDispatcher([]Config{
		{Name: "small", Type: "webhook", URL: down},
		{Name: "picky", Type: "webhook", URL: down, MinSeverity: event.High},
	}, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range numbered(20) { // not running: nothing leaves the queues
		d.Submit(a)
	}
	if s := health(d, "small"); s.Queued != 5 || s.Dropped != 15 {
		t.Errorf("small: queued %d dropped %d, want 5 and 15", s.Queued, s.Dropped)
	}
	if s := health(d, "picky"); s.Queued != 5 || s.Dropped != 0 { // 5 high alerts among 20
		t.Errorf("picky: queued %d dropped %d, want 5 and 0", s.Queued, s.Dropped)
	}
	err = testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP vigil_export_dropped_total Alerts an export output gave up: its queue was full or the endpoint refused them.
# TYPE vigil_export_dropped_total counter
vigil_export_dropped_total{output="picky"} 0
vigil_export_dropped_total{output="small"} 15
# HELP vigil_export_queue_depth Alerts waiting for an export output, including the batch being sent.
# TYPE vigil_export_queue_depth gauge
vigil_export_queue_depth{output="picky"} 5
vigil_export_queue_depth{output="small"} 5
`), "vigil_export_dropped_total", "vigil_export_queue_depth")
	if err != nil {
		t.Error(err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("metric lint: %v %v", err, problems)
	}
}

// TestQueueBoundWhileDown: with the endpoint down and the dispatcher
// running, what fits is delivered later, in order, and the rest counted.
func TestQueueBoundWhileDown(t *testing.T) {
	var up atomic.Bool
	rec := newRecorder(t, func(int, request) (int, http.Header, string) {
		if up.Load() {
			return 200, nil, ""
		}
		return 503, nil, "down"
	})
	opts := fast(nil)
	opts.QueueSize, opts.MaxBatch = 10, 4
	d, err := NewDispatcher([]Config{{Name: "hook", Type: "webhook", URL: rec.srv.URL}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	start(t, d)
	d.Submit(numbered(1)[0])
	eventually(t, 5*time.Second, "a failure", func() bool { return health(d, "hook").Failures > 0 })
	for _, a := range numbered(100)[1:] {
		d.Submit(a)
	}
	s := health(d, "hook")
	if s.Dropped != 100-1-10 || s.Queued != 11 {
		t.Errorf("while down: %+v", s)
	}
	up.Store(true)
	eventually(t, 5*time.Second, "delivery", func() bool { return health(d, "hook").Sent == 11 })
	var want []string
	for _, a := range numbered(11) {
		want = append(want, a.ID)
	}
	// The 503s carried the first alert alone; then it and the 10 queued
	// alerts arrived once each, in order.
	var got []string
	for _, id := range rec.ids(t) {
		if !slices.Contains(got, id) {
			got = append(got, id)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
}

func TestMinSeverity(t *testing.T) {
	recs := map[string]*recorder{}
	var cfgs []Config
	for name, min := range map[string]event.Severity{"all": "", "medium": event.Medium, "high": event.High, "info": event.Informational} {
		recs[name] = newRecorder(t, nil)
		cfgs = append(cfgs, Config{Name: name, Type: "webhook", URL: recs[name].srv.URL, MinSeverity: min})
	}
	d, err := NewDispatcher(cfgs, fast(nil))
	if err != nil {
		t.Fatal(err)
	}
	start(t, d)
	for _, a := range numbered(8) { // two of each severity
		d.Submit(a)
	}
	want := map[string]int{"all": 8, "info": 8, "medium": 4, "high": 2}
	eventually(t, 5*time.Second, "delivery", func() bool {
		for name, n := range want {
			if health(d, name).Sent != uint64(n) {
				return false
			}
		}
		return true
	})
	for name, rec := range recs {
		for _, id := range rec.ids(t) {
			var a event.Alert
			for _, x := range numbered(8) {
				if x.ID == id {
					a = x
				}
			}
			min := map[string]event.Severity{"medium": event.Medium, "high": event.High}[name]
			if min != "" && a.Severity.Rank() < min.Rank() {
				t.Errorf("%s got %s alert %s", name, a.Severity, id)
			}
		}
	}
}

// TestPermanentVersusRetry: a 4xx gives the batch up after one attempt and
// counts it; a 5xx is retried with the same batch until it is accepted.
func TestPermanentVersusRetry(t *testing.T) {
	rejecting := newRecorder(t, func(int, request) (int, http.Header, string) {
		return 403, nil, `{"error":"bad token"}`
	})
	flaky := newRecorder(t, func(n int, _ request) (int, http.Header, string) {
		if n < 3 {
			return 500 + n, nil, "try later"
		}
		return 200, nil, ""
	})
	limited := newRecorder(t, func(n int, _ request) (int, http.Header, string) {
		if n == 0 {
			return 429, http.Header{"Retry-After": {"0"}}, ""
		}
		return 200, nil, ""
	})
	var log syncBuffer
	d, err := NewDispatcher([]Config{
		{Name: "rejecting", Type: "webhook", URL: rejecting.srv.URL},
		{Name: "flaky", Type: "webhook", URL: flaky.srv.URL},
		{Name: "limited", Type: "webhook", URL: limited.srv.URL},
	}, fast(&log))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range numbered(3) { // queued before Run: one batch
		d.Submit(a)
	}
	start(t, d)
	eventually(t, 5*time.Second, "all outcomes", func() bool {
		return health(d, "rejecting").Rejected == 3 && health(d, "flaky").Sent == 3 && health(d, "limited").Sent == 3
	})
	time.Sleep(100 * time.Millisecond) // room for a wrong retry
	if n := len(rejecting.requests()); n != 1 {
		t.Errorf("rejected batch sent %d times, want once", n)
	}
	s := health(d, "rejecting")
	if s.Healthy || s.Dropped != 3 || s.Failures != 1 || !strings.Contains(s.LastError, "403") || s.Queued != 0 {
		t.Errorf("rejecting: %+v", s)
	}
	if !strings.Contains(log.String(), "refused alerts") {
		t.Errorf("no log of the rejection:\n%s", log.String())
	}
	reqs := flaky.requests()
	if len(reqs) != 4 {
		t.Fatalf("flaky endpoint got %d requests, want 3 failures + 1", len(reqs))
	}
	for _, r := range reqs {
		if string(r.Body) != string(reqs[0].Body) {
			t.Errorf("a retry sent a different batch")
		}
	}
	if s := health(d, "flaky"); !s.Healthy || s.Failures != 3 || s.Dropped != 0 {
		t.Errorf("flaky: %+v", s)
	}
	if s := health(d, "limited"); !s.Healthy || s.Failures != 1 || len(limited.requests()) != 2 {
		t.Errorf("limited: %+v", s)
	}
}

// TestPoisonAlertIsolated: a batch refused for its content (400) is split
// until only the offending alert is dropped; the rest arrive in order.
func TestPoisonAlertIsolated(t *testing.T) {
	rec := newRecorder(t, func(_ int, r request) (int, http.Header, string) {
		if strings.Contains(string(r.Body), `"a0005"`) {
			return 400, nil, `{"error":"cannot parse a0005"}`
		}
		return 200, nil, ""
	})
	d, err := NewDispatcher([]Config{{Name: "hook", Type: "webhook", URL: rec.srv.URL}}, fast(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range numbered(16) {
		d.Submit(a)
	}
	start(t, d)
	eventually(t, 5*time.Second, "the batch settled", func() bool { return health(d, "hook").Queued == 0 })
	s := health(d, "hook")
	if s.Sent != 15 || s.Rejected != 1 || s.Dropped != 1 {
		t.Errorf("%+v", s)
	}
	var delivered []string
	for _, r := range rec.requests() {
		if !strings.Contains(string(r.Body), `"a0005"`) {
			for _, a := range decodeAlerts(t, r.Body) {
				delivered = append(delivered, a.ID)
			}
		}
	}
	if want := slices.Delete(seq(16), 5, 6); !slices.Equal(delivered, want) {
		t.Errorf("delivered %v, want %v", delivered, want)
	}
	if n := len(rec.requests()); n > 9 { // 1 + 2 + 2 + 2 + 2 halvings at most
		t.Errorf("%d requests to isolate one alert among 16", n)
	}
}

// TestFlushOnShutdown: what is queued when ctx ends is still delivered.
func TestFlushOnShutdown(t *testing.T) {
	rec := newRecorder(t, nil)
	d, err := NewDispatcher([]Config{{Name: "hook", Type: "webhook", URL: rec.srv.URL}}, fast(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range numbered(30) {
		d.Submit(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rec.ids(t); !slices.Equal(got, seq(30)) {
		t.Errorf("flushed %v", got)
	}
	if err := d.Run(context.Background()); err == nil {
		t.Error("second Run accepted")
	}
}

// TestRateLimit: Slack's default of one message per second spaces sends.
func TestRateLimit(t *testing.T) {
	var times []time.Time
	var mu sync.Mutex
	rec := newRecorder(t, func(int, request) (int, http.Header, string) {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		return 200, nil, "ok"
	})
	d, err := NewDispatcher([]Config{{Name: "chat", Type: "slack", URL: rec.srv.URL + "/services/x", RateLimit: 20}}, fast(nil))
	if err != nil {
		t.Fatal(err)
	}
	start(t, d)
	for _, a := range numbered(5) {
		d.Submit(a)
		time.Sleep(time.Millisecond)
	}
	eventually(t, 5*time.Second, "delivery", func() bool { return health(d, "chat").Sent == 5 })
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap < 45*time.Millisecond {
			t.Errorf("sends %d and %d %v apart, want >= 50ms at 20/s", i-1, i, gap)
		}
	}
	if q := d.queues[0]; q.maxBatch != slackMaxAlerts {
		t.Errorf("slack batch cap %d", q.maxBatch)
	}
	d2, _ := NewDispatcher([]Config{{Name: "chat", Type: "slack", URL: rec.srv.URL + "/x"}}, Options{})
	if d2.queues[0].interval != time.Second {
		t.Errorf("slack default interval %v", d2.queues[0].interval)
	}
}

// TestSecretsNeverLeak: endpoints that fail and echo what they were sent
// (URL, headers) still leave no secret in Health, logs, errors or Redacted.
func TestSecretsNeverLeak(t *testing.T) {
	echo := newRecorder(t, func(n int, r request) (int, http.Header, string) {
		b, _ := json.Marshal(map[string]any{"path": r.Path, "query": r.RawQuery, "headers": r.Header})
		return 500, nil, string(b)
	})
	secrets := []string{"hec-SECRET-1", "es-SECRET-2", "pw-SECRET-3", "SECRET-4-slackpath", "hdr-SECRET-5", "q-SECRET-6", "bearer-SECRET-7"}
	// What travels on the wire in place of the password: basic auth.
	leaks := append(slices.Clone(secrets), base64.StdEncoding.EncodeToString([]byte("elastic:"+secrets[2])))
	cfgs := []Config{
		{Name: "splunk", Type: "splunk", URL: echo.srv.URL, Secret: secrets[0]},
		{Name: "es-key", Type: "elasticsearch", URL: echo.srv.URL, Secret: secrets[1]},
		{Name: "es-url", Type: "elasticsearch", URL: strings.Replace(echo.srv.URL, "http://", "http://elastic:"+secrets[2]+"@", 1)},
		{Name: "slack-echo", Type: "slack", URL: echo.srv.URL + "/services/T0/B0/" + secrets[3], RateLimit: 1000},
		{Name: "slack-down", Type: "slack", URL: "http://" + freeAddr(t) + "/services/T0/B0/" + secrets[3], RateLimit: 1000},
		{Name: "hook", Type: "webhook", URL: echo.srv.URL + "/?token=" + secrets[5], Secret: secrets[6],
			Headers: map[string]string{"X-Api-Key": secrets[4]}},
		{Name: "hook-down", Type: "webhook", URL: "http://" + freeAddr(t) + "/?token=" + secrets[5],
			Headers: map[string]string{"X-Api-Key": secrets[4]}},
	}
	var log syncBuffer
	d, err := NewDispatcher(cfgs, fast(&log))
	if err != nil {
		t.Fatal(err)
	}
	start(t, d)
	for _, a := range numbered(4) {
		d.Submit(a)
	}
	eventually(t, 10*time.Second, "failures on every output", func() bool {
		for _, s := range d.Health() {
			if s.Failures < 2 {
				return false
			}
		}
		return true
	})
	var seen []string
	for _, s := range d.Health() {
		b, _ := json.Marshal(s)
		seen = append(seen, "health "+string(b))
		if s.LastError == "" {
			t.Errorf("%s: no last error", s.Name)
		}
	}
	if !strings.Contains(log.String(), "REDACTED") {
		t.Errorf("the echoes were not scrubbed, or not logged:\n%s", log.String())
	}
	seen = append(seen, "log "+log.String())
	for _, c := range cfgs {
		b, _ := json.Marshal(c.Redacted())
		seen = append(seen, "redacted "+string(b))
		o, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = o.Send(ctx, numbered(1))
		cancel()
		if err == nil {
			t.Errorf("%s: send to a failing endpoint succeeded", c.Name)
		} else {
			seen = append(seen, "error "+err.Error())
		}
	}
	// Invalid configurations: the error must not quote the secret either.
	for _, c := range []Config{
		{Name: "bad-slack", Type: "slack", URL: "https://hooks.slack.com/services/" + secrets[3] + "/\x7f"},
		{Name: "bad-slack2", Type: "slack", URL: "ftp://hooks.slack.com/services/" + secrets[3]},
		{Name: "bad-es", Type: "elasticsearch", URL: "http://u:" + secrets[2] + "@[::1", Secret: secrets[1]},
		{Name: "bad-ca", Type: "splunk", URL: "https://x", Secret: secrets[0], CAFile: "/nonexistent/" + secrets[0]},
		{Name: "bad-sev", Type: "splunk", URL: "https://x", Secret: secrets[0], MinSeverity: "urgent"},
	} {
		_, err := New(c)
		if err == nil {
			t.Errorf("%s: accepted", c.Name)
			continue
		}
		seen = append(seen, "config error "+err.Error())
		_, err = NewDispatcher([]Config{c}, Options{})
		seen = append(seen, "dispatcher error "+err.Error())
	}
	for _, text := range seen {
		for _, s := range leaks {
			if strings.Contains(text, s) {
				t.Errorf("secret %q leaked in %.3000s", s, text)
			}
		}
	}
	t.Logf("sample scrubbed error: %s", health(d, "slack-echo").LastError)
}

func TestRedacted(t *testing.T) {
	c := Config{Name: "x", Type: "slack", URL: "https://hooks.slack.com/services/T/B/secret", Secret: "s",
		Headers: map[string]string{"Authorization": "Bearer t"}, MinSeverity: event.High}
	r := c.Redacted()
	if r.Secret != "" || r.URL != "https://hooks.slack.com/REDACTED" || r.Headers["Authorization"] != "REDACTED" ||
		r.Name != "x" || r.MinSeverity != event.High || c.Headers["Authorization"] != "Bearer t" {
		t.Errorf("slack redacted: %+v (original %+v)", r, c)
	}
	for in, want := range map[string]string{
		"https://u:p@es:9200/base?api_key=k&x=1": "https://u:REDACTED@es:9200/base?api_key=REDACTED&x=REDACTED",
		"https://splunk:8088":                    "https://splunk:8088",
		"::bad":                                  "REDACTED",
	} {
		if got := (Config{Type: "elasticsearch", URL: in}).Redacted().URL; got != want {
			t.Errorf("Redacted(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestNewValidation(t *testing.T) {
	for _, c := range []Config{
		{Name: "x", Type: "pagerduty"},
		{Type: "webhook", URL: "http://x"},
		{Name: "x", Type: "webhook"},
		{Name: "x", Type: "webhook", URL: "ftp://x"},
		{Name: "x", Type: "webhook", URL: "http://"},
		{Name: "x", Type: "webhook", URL: "http://x", MinSeverity: "urgent"},
		{Name: "x", Type: "webhook", URL: "http://x", RateLimit: -1},
		{Name: "x", Type: "syslog"},
		{Name: "x", Type: "syslog", Address: "h:514", Network: "sctp"},
		{Name: "x", Type: "syslog", Address: "h:514", Format: "leef"},
		{Name: "x", Type: "syslog", Address: "h:514", Network: "tls", CAFile: "/nonexistent"},
		{Name: "x", Type: "splunk", URL: "https://x"},
		{Name: "x", Type: "elasticsearch", URL: "https://x", CAFile: "/etc/hostname"},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New accepted %+v", c)
		}
	}
	ok := Config{Name: "x", Type: "webhook", URL: "http://x"}
	if _, err := NewDispatcher([]Config{ok, ok}, Options{}); err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Errorf("duplicate names: %v", err)
	}
	if _, err := NewDispatcher(nil, Options{QueueSize: -1}); err == nil {
		t.Error("negative queue size accepted")
	}
	reg := prometheus.NewRegistry()
	if _, err := NewDispatcher(nil, Options{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewDispatcher(nil, Options{Registerer: reg}); err == nil {
		t.Error("second registration accepted")
	}
	if got := Types(); !slices.Equal(got, []string{"elasticsearch", "slack", "splunk", "syslog", "webhook"}) {
		t.Errorf("Types() = %v", got)
	}
}

func TestBackoff(t *testing.T) {
	lo, hi := 100*time.Millisecond, 2*time.Second
	for attempt, want := range []time.Duration{100, 200, 400, 800, 1600, 2000, 2000} {
		want *= time.Millisecond
		for range 50 {
			if d := backoff(attempt, lo, hi); d < want/2 || d > want {
				t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, d, want/2, want)
			}
		}
	}
	if d := backoff(1000, lo, hi); d > hi {
		t.Errorf("overflow: %v", d)
	}
}

func TestScrubKeepsKind(t *testing.T) {
	s := newScrubber(Config{Secret: "tok"})
	err := s.scrub(&statusError{code: 403, status: "403 Forbidden", body: "bad tok", retryAfter: time.Second})
	var ra retryAfterer
	if !errors.Is(err, ErrPermanent) || err.Error() != "HTTP 403 Forbidden: bad REDACTED" || !errors.As(err, &ra) || ra.RetryAfter() != time.Second {
		t.Errorf("scrubbed: %v", err)
	}
}
