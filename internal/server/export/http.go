package export

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// tlsConfig is the TLS client configuration of an output: the system's CAs
// plus CAFile, or no verification at all when asked.
func tlsConfig(c Config, serverName string) (*tls.Config, error) {
	t := &tls.Config{ServerName: serverName, InsecureSkipVerify: c.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificate", c.CAFile)
		}
		t.RootCAs = pool
	}
	return t, nil
}

// httpTarget is what the HTTP outputs share: a parsed endpoint, a client
// that trusts the configured CAs, and the configured headers.
type httpTarget struct {
	url     *url.URL
	shown   string // the URL as errors may show it
	client  *http.Client
	headers map[string]string
}

// secretURL hides the URL's path in errors (a Slack webhook's path is its
// credential).
func newHTTPTarget(c Config, raw string, secretURL bool) (*httpTarget, error) {
	if raw == "" {
		return nil, errors.New("url: missing")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the URL, which may be a secret: keep the cause only.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("url: scheme %q: want http or https", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New("url: no host")
	}
	tc, err := tlsConfig(c, u.Hostname())
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.MaxIdleConnsPerHost = 4
	return &httpTarget{
		url:   u,
		shown: redactURL(raw, secretURL),
		client: &http.Client{
			Transport: tr,
			// A POST that is redirected turns into a GET: report it instead.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Timeout:       2 * time.Minute,
		},
		headers: c.Headers,
	}, nil
}

// endpoint returns the target URL with path appended to its own path.
func (h *httpTarget) endpoint(path string) string {
	u := *h.url
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawPath = ""
	return u.String()
}

// post sends body and returns the response body of a 2xx answer, or a
// *statusError / a transport error that names the endpoint without secrets.
// extra headers (the credential) win over configured ones.
func (h *httpTarget) post(ctx context.Context, endpoint, contentType string, body []byte, extra map[string]string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("post %s: build request", h.shown)
	}
	for k, v := range h.headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", "vigil/"+version)
	for k, v := range extra {
		req.Header.Set(k, v)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("post %s: %w", h.shown, err)
	}
	defer resp.Body.Close()
	const maxBody = 1 << 20
	rb, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("post %s: %w", h.shown, newStatusError(resp, rb))
	}
	if err != nil {
		return nil, fmt.Errorf("post %s: read response: %w", h.shown, err)
	}
	return rb, nil
}

// statusError is a non-2xx HTTP answer. 4xx answers are permanent except
// 408 and 429; 3xx (a redirect not followed) is permanent too: the URL is
// wrong. Everything else is retried.
type statusError struct {
	code       int
	status     string
	body       string
	retryAfter time.Duration
}

func newStatusError(resp *http.Response, body []byte) *statusError {
	e := &statusError{code: resp.StatusCode, status: resp.Status, body: snippet(body, 200)}
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		if s, err := strconv.Atoi(ra); err == nil && s >= 0 {
			e.retryAfter = time.Duration(s) * time.Second
		} else if t, err := http.ParseTime(ra); err == nil {
			e.retryAfter = max(time.Until(t), 0)
		}
	}
	return e
}

func (e *statusError) Error() string {
	if e.body == "" {
		return "HTTP " + e.status
	}
	return "HTTP " + e.status + ": " + e.body
}

func (e *statusError) Is(target error) bool {
	switch target {
	case ErrPermanent:
		return e.code >= 300 && e.code < 500 &&
			e.code != http.StatusRequestTimeout && e.code != http.StatusTooManyRequests
	case errPayload:
		return e.code == http.StatusBadRequest || e.code == http.StatusRequestEntityTooLarge ||
			e.code == http.StatusUnprocessableEntity
	}
	return false
}

func (e *statusError) RetryAfter() time.Duration { return e.retryAfter }

// snippet is the start of a response body for an error message: one line,
// at most n bytes, cut on a rune boundary.
func snippet(b []byte, n int) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > n {
		s = truncateUTF8(s, n) + "..."
	}
	return s
}

// truncateUTF8 cuts s to at most n bytes without splitting a rune.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	n = max(n, 0)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
