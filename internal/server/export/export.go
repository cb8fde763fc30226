package export

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// An Output turns alerts into one destination's payload and sends it.
// Outputs hold no queue, retry or metric of their own: the Dispatcher does
// that for all of them. Send is never called concurrently for one Output.
type Output interface {
	// Name is the configured output name, unique within a Dispatcher.
	Name() string
	// Send delivers one batch, in order. A returned error makes the
	// Dispatcher send the same batch again later, unless
	// errors.Is(err, ErrPermanent): then the batch is given up and counted.
	// Send returns when ctx is done. It must not modify the alerts: their
	// maps, slices and pointers are shared with the other outputs.
	Send(ctx context.Context, alerts []event.Alert) error
}

// ErrPermanent marks a Send error that retrying cannot fix: the endpoint
// rejected the payload or the credentials (an HTTP 4xx other than 408 and
// 429, an Elasticsearch document rejected for its content).
var ErrPermanent = errors.New("permanent export failure")

// errPayload marks a permanent error caused by the payload's content or size
// (HTTP 400, 413, 422; an Elasticsearch document rejected): the Dispatcher
// splits such a batch to deliver the alerts that are fine and drop only the
// ones refused.
var errPayload = errors.New("payload refused")

// Config is one configured output, as an administrator writes it. Secret,
// a Slack URL, header values and URL passwords are write-only: show only
// Redacted().
type Config struct {
	Name string `json:"name"`
	// Type is webhook, syslog, slack, splunk or elasticsearch.
	Type string `json:"type"`
	// URL is the webhook URL, the Slack incoming-webhook URL (a secret), the
	// Splunk HEC endpoint (the bare https://host:8088 gets
	// /services/collector/event) or the Elasticsearch base URL.
	URL string `json:"url,omitempty"`
	// Address is the syslog receiver's host:port.
	Address string `json:"address,omitempty"`
	// Network is the syslog transport: udp (default), tcp or tls.
	Network string `json:"network,omitempty"`
	// Format is the syslog message body: json (default) or cef. The framing
	// is RFC 5424 either way, with RFC 6587 octet counting over tcp and tls.
	Format string `json:"format,omitempty"`
	// Index is the Elasticsearch index (default vigil-alerts) or the Splunk
	// index (default: the token's).
	Index string `json:"index,omitempty"`
	// MinSeverity drops alerts below it for this output (default: none).
	MinSeverity event.Severity `json:"min_severity,omitempty"`
	// Headers are added to every HTTP request.
	Headers map[string]string `json:"headers,omitempty"`
	// Secret is the credential: the Splunk HEC token, the Elasticsearch API
	// key (or user:password for basic auth), the webhook's bearer token.
	Secret string `json:"secret,omitempty"`
	// CAFile is a PEM file of CAs trusted (besides the system's) for HTTPS
	// and syslog over TLS.
	CAFile             string `json:"ca_file,omitempty"`
	InsecureSkipVerify bool   `json:"insecure_skip_verify,omitempty"`
	// RateLimit caps sends (requests or syslog batches) per second. 0 is the
	// type's default: 1 for Slack (its documented webhook limit), none for
	// the others.
	RateLimit float64 `json:"rate_limit,omitempty"`
}

// kind is one entry of the output table: its constructor and what the
// Dispatcher must respect when sending to it.
type kind struct {
	new func(Config) (Output, error)
	// maxBatch caps a batch below Options.MaxBatch (0: no cap of its own).
	maxBatch int
	// rate is the default RateLimit.
	rate float64
	// secretURL means the whole URL is a credential (Slack).
	secretURL bool
}

// kinds is the table of outputs: adding one is a file and a line here.
var kinds = map[string]kind{
	"webhook":       {new: newWebhook},
	"syslog":        {new: newSyslog},
	"slack":         {new: newSlack, maxBatch: slackMaxAlerts, rate: 1, secretURL: true},
	"splunk":        {new: newSplunk},
	"elasticsearch": {new: newElasticsearch},
}

// Types lists the output types New accepts.
func Types() []string {
	var ts []string
	for t := range kinds {
		ts = append(ts, t)
	}
	sort.Strings(ts)
	return ts
}

// New validates cfg and builds its Output. Neither the error nor the
// Output's Send errors contain the configuration's secrets. The Output may
// hold a connection (syslog over TCP or TLS): it implements io.Closer.
func New(cfg Config) (Output, error) {
	o, _, err := build(cfg)
	if err != nil {
		return nil, err
	}
	return o, nil
}

func build(cfg Config) (*scrubbed, kind, error) {
	s := newScrubber(cfg)
	k, ok := kinds[cfg.Type]
	switch {
	case !ok:
		return nil, k, fmt.Errorf("export output %q: type %q: want one of %s", cfg.Name, cfg.Type, strings.Join(Types(), ", "))
	case cfg.Name == "":
		return nil, k, fmt.Errorf("export output of type %s: no name", cfg.Type)
	case cfg.RateLimit < 0:
		return nil, k, fmt.Errorf("export output %q: negative rate_limit", cfg.Name)
	}
	if cfg.MinSeverity != "" {
		if _, err := event.ParseSeverity(string(cfg.MinSeverity)); err != nil {
			return nil, k, fmt.Errorf("export output %q: min_severity: %w", cfg.Name, err)
		}
	}
	o, err := k.new(cfg)
	if err != nil {
		return nil, k, s.scrub(fmt.Errorf("export output %q: %w", cfg.Name, err))
	}
	return &scrubbed{Output: o, s: s}, k, nil
}

// Redacted returns cfg with every secret blanked, for API responses and
// logs: Secret is emptied, header values become "REDACTED", a URL keeps its
// scheme, host and path but loses its password and query values, and a
// Slack URL also loses its path.
func (c Config) Redacted() Config {
	r := c
	r.Secret = ""
	if c.Headers != nil {
		r.Headers = make(map[string]string, len(c.Headers))
		for k := range c.Headers {
			r.Headers[k] = redacted
		}
	}
	r.URL = redactURL(c.URL, kinds[c.Type].secretURL)
	return r
}

const redacted = "REDACTED"

// redactURL keeps what identifies an endpoint and drops what may
// authenticate to it.
func redactURL(raw string, hidePath bool) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return redacted
	}
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			r.User = url.UserPassword(u.User.Username(), redacted)
		} else {
			r.User = u.User
		}
	}
	if hidePath && u.Path != "" && u.Path != "/" {
		r.Path = "/" + redacted
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q[k] = []string{redacted}
		}
		r.RawQuery = q.Encode()
	}
	return r.String()
}

// scrubber replaces a configuration's secrets in error text. It is the
// safety net behind careful messages: a library error that quotes a URL or
// a response body that echoes a token still comes out clean.
type scrubber struct{ secrets []string }

func newScrubber(c Config) scrubber {
	var s []string
	add := func(v string) {
		if v != "" {
			s = append(s, v, url.QueryEscape(v), url.PathEscape(v))
		}
	}
	add(c.Secret)
	if strings.Contains(c.Secret, ":") { // user:password, sent as basic auth
		add(base64.StdEncoding.EncodeToString([]byte(c.Secret)))
	}
	for _, v := range c.Headers {
		add(v)
	}
	if kinds[c.Type].secretURL {
		add(c.URL)
		if u, err := url.Parse(c.URL); err == nil {
			add(strings.TrimPrefix(u.EscapedPath(), "/"))
			add(strings.TrimPrefix(u.Path, "/"))
		}
	}
	if u, err := url.Parse(c.URL); err == nil {
		if p, ok := u.User.Password(); ok {
			add(p)
			add(base64.StdEncoding.EncodeToString([]byte(u.User.Username() + ":" + p)))
		}
		for _, vs := range u.Query() {
			for _, v := range vs {
				add(v)
			}
		}
	}
	// Longest first, so a secret that contains another is replaced whole.
	sort.Slice(s, func(i, j int) bool { return len(s[i]) > len(s[j]) })
	return scrubber{secrets: s}
}

func (s scrubber) text(msg string) string {
	for _, v := range s.secrets {
		msg = strings.ReplaceAll(msg, v, redacted)
	}
	return msg
}

// scrub returns err with its secrets replaced, keeping what the Dispatcher
// asks of an error: whether it is permanent and how long to wait.
func (s scrubber) scrub(err error) error {
	if err == nil {
		return nil
	}
	e := &scrubbedError{msg: s.text(err.Error()), permanent: errors.Is(err, ErrPermanent),
		payload: errors.Is(err, errPayload)}
	var ra retryAfterer
	if errors.As(err, &ra) {
		e.retryAfter = ra.RetryAfter()
	}
	return e
}

type scrubbedError struct {
	msg        string
	permanent  bool
	payload    bool
	retryAfter time.Duration
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Is(target error) bool {
	return (target == ErrPermanent && e.permanent) || (target == errPayload && e.payload)
}
func (e *scrubbedError) RetryAfter() time.Duration { return e.retryAfter }

// permanent marks err (an alert the payload builder cannot encode) as one
// that retrying cannot fix.
func permanent(err error) error {
	return fmt.Errorf("%w: %w", ErrPermanent, err)
}

// marshal is json.Marshal without HTML escaping: payloads go to machines
// and people reading logs, not into web pages, and "&&" in a command line
// should read as such.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// retryAfterer is an error that knows when the endpoint wants to be asked
// again (HTTP 429/503 Retry-After).
type retryAfterer interface{ RetryAfter() time.Duration }

// scrubbed is what New returns: the type's Output behind the scrubber.
type scrubbed struct {
	Output
	s scrubber
}

func (o *scrubbed) Send(ctx context.Context, alerts []event.Alert) error {
	return o.s.scrub(o.Output.Send(ctx, alerts))
}

// Close releases the output's connection, if it holds one.
func (o *scrubbed) Close() error {
	if c, ok := o.Output.(io.Closer); ok {
		return o.s.scrub(c.Close())
	}
	return nil
}

// version is Vigil's version for CEF headers: the main module's version
// from the build information, "dev" for a source build.
var version = buildVersion()

func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			return strings.TrimPrefix(v, "v")
		}
	}
	return "dev"
}
