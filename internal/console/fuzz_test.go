package console

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzConsoleRequests sends arbitrary query strings and forms, from a
// reader and an admin, to the pages that read them: whatever comes in,
// the answer is a page (200, or a 4xx that says what is wrong), never a
// 500 or a panic, and never an alert changed by a form without the
// session's CSRF token.
func FuzzConsoleRequests(f *testing.F) {
	for _, seed := range []string{
		"severity=high&status=all&cluster=prod&namespace=shop&type=pod&resource=web-1&rule=r&time=24h&q=sh&sort=severity",
		"severity=bogus", "time=3y", "sort=name", "cursor=%%%", "cursor=eyJzIjoibGFzdF9zZWVuIn0", "type=pods",
		"q=%25_%5C", "page=-4", "status=", "kind=node", "kind=nope", "cluster=" + strings.Repeat("x", 300),
		"status=dismissed&reason=" + strings.Repeat("r", 3000),
	} {
		f.Add(seed)
	}
	tc := newTestConsole(f, Config{})
	tc.seedFilters()
	// tc's helpers report to f, which a fuzz target may not use.
	do := func(method, target, token string, form url.Values) *httptest.ResponseRecorder {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req := httptest.NewRequest(method, target, body)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		req.AddCookie(&http.Cookie{Name: cookieName, Value: token})
		rec := httptest.NewRecorder()
		tc.h.ServeHTTP(rec, req)
		return rec
	}
	status := func(t *testing.T) string {
		a, err := tc.st.GetAlert(context.Background(), "P1")
		if err != nil {
			t.Fatal(err)
		}
		return a.Status
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return // not a query string a browser would send
		}
		for _, path := range []string{"/alerts", "/alerts/P1", "/incidents", "/inventory", "/clusters", "/recommendations", "/recommendations/no-privileged"} {
			for _, token := range []string{tc.reader, tc.admin} {
				rec := do(http.MethodGet, path+"?"+q.Encode(), token, nil)
				if rec.Code >= 500 || (rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest && rec.Code != http.StatusNotFound) {
					t.Fatalf("GET %s?%s as %s: %d\n%s", path, q.Encode(), token[:8], rec.Code, rec.Body)
				}
			}
		}
		// A form without the session's CSRF token changes nothing.
		q.Del("csrf")
		before := status(t)
		for _, path := range []string{"/alerts/P1/status", "/alerts/P1/suppress"} {
			if rec := do(http.MethodPost, path, tc.admin, q); rec.Code != http.StatusForbidden {
				t.Fatalf("POST %s without CSRF: %d", path, rec.Code)
			}
		}
		if after := status(t); after != before {
			t.Fatalf("a form without CSRF changed P1 from %s to %s", before, after)
		}
	})
}
