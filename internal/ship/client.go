package ship

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// IngestPath is where the server takes batches.
const IngestPath = "/api/v1/ingest"

// Defaults of Config.
const (
	DefaultMaxSpoolBytes = 256 << 20
	DefaultBatchSize     = 500
	DefaultFlushInterval = time.Second
	DefaultRetryMin      = time.Second
	DefaultRetryMax      = time.Minute
	DefaultHeartbeat     = 30 * time.Second
	DefaultTimeout       = 30 * time.Second
)

const (
	// batchBudget is what the items of one batch may take, leaving room
	// for the envelope (ids, node, component, time: bounded in Open).
	batchBudget = MaxBatchBytes - 4<<10
	// maxQueueBytes bounds what waits in memory for the next cut; past it
	// new items are dropped and counted (Run normally cuts long before).
	maxQueueBytes = 64 << 20
	// maxNameLen bounds Config.Node and Config.Component.
	maxNameLen = 253
)

// Config configures a Client. Server, Token and SpoolDir are required.
type Config struct {
	// Server is the server's base URL, https://host:port (http:// for
	// tests and `vigil up`), optionally with a path prefix.
	Server string
	// Token is the cluster credential. It is sent only in the
	// Authorization header: never logged, never in an error or Stats.
	Token string
	// Proxy is an optional http:// or https:// proxy URL, with basic-auth
	// credentials as user:pass@ (percent-encoded); used for plain HTTP and
	// for CONNECT tunnels. The password is never logged. When empty the
	// usual HTTPS_PROXY/HTTP_PROXY/NO_PROXY variables apply.
	Proxy string
	// CAFile is an optional PEM bundle trusted, in addition to the
	// system's roots, for the server's (and an https proxy's) certificate.
	CAFile string
	// SpoolDir holds the batches not yet acknowledged. Required; created
	// if missing; one Client at a time (it is locked).
	SpoolDir string
	// MaxSpoolBytes bounds the spool (default 256 MiB). When a new batch
	// does not fit, the oldest batches are dropped and counted.
	MaxSpoolBytes int64
	// BatchSize is the most alerts in one batch (default 500, at most
	// MaxBatchAlerts). Batches are also cut below MaxBatchBytes.
	BatchSize int
	// FlushInterval is how long an item may wait in memory before it is
	// cut into a batch and spooled (default 1s).
	FlushInterval time.Duration
	// Node and Component (sensor, agent) label every batch; they also fill
	// in a Health that leaves them empty.
	Node, Component string
	// Log receives the client's logs; nil discards them.
	Log *slog.Logger
	// HTTPClient replaces the client built from Proxy and CAFile (tests);
	// Proxy and CAFile are then ignored.
	HTTPClient *http.Client

	// RetryMin and RetryMax bound the exponential backoff between failed
	// attempts (defaults 1s and 1m); each wait is jittered.
	RetryMin, RetryMax time.Duration
	// Heartbeat is how long the client may stay silent: when nothing was
	// acknowledged for that long and nothing waits to be sent, it sends the
	// latest Health of each component again (or an empty batch), so the
	// server can tell connected from offline. Default 30s; negative: never.
	Heartbeat time.Duration
	// Timeout bounds one request (default 30s).
	Timeout time.Duration
}

// Stats counts what the client did since Open. LastError never contains
// the token or the proxy password.
type Stats struct {
	SentBatches uint64 // acknowledged by the server
	SentAlerts  uint64 // alerts in those batches
	// SpooledBatches counts batches written to the spool since Open;
	// SpoolBatches and SpoolBytes are what it holds now.
	SpooledBatches uint64
	SpoolBatches   int
	SpoolBytes     int64
	QueuedAlerts   int    // in memory, not yet in a batch
	Retries        uint64 // failed attempts that will be retried
	// DroppedBatches counts batches lost to the spool bound or refused
	// for good by the server (RejectedBatches of them). DroppedAlerts
	// counts the alerts in those, plus alerts refused on the way in
	// (invalid, too large, memory queue full, client closed).
	DroppedBatches  uint64
	DroppedAlerts   uint64
	RejectedBatches uint64
	LastError       string
	LastErrorAt     time.Time
}

// Client ships alerts, health, inventory and findings to the server. The
// methods that queue (Alert, Health, Inventory, Findings) are safe for
// concurrent use and never block on the network or the disk; Run does the
// work. Call Close after Run has returned.
type Client struct {
	cfg      Config
	log      *slog.Logger
	http     *http.Client
	endpoint string
	secrets  []string

	mu          sync.Mutex
	closed      bool
	alerts      []queued
	alertIdx    map[string]int
	health      []queued
	healthIdx   map[string]int
	lastHealth  map[string]json.RawMessage // for heartbeats
	inventory   []queued
	findings    []queued
	queuedBytes int
	dropWarned  bool
	stats       Stats

	// cutMu makes cuts one at a time, so that batches are spooled (and so
	// sent) in the order their items were queued.
	cutMu   sync.Mutex
	spoolMu sync.Mutex
	spool   *spool

	kick    chan struct{}
	running atomic.Bool
}

// queued is one item encoded when it was queued, which also makes it a deep
// copy of what the caller passed.
type queued struct {
	key   string
	count uint64
	last  time.Time
	raw   json.RawMessage
	// complete marks, in the findings queue, a ScanComplete: raw is the
	// scan id as a JSON string.
	complete bool
}

// Open checks cfg, builds the HTTP client and opens the spool, whose
// batches Run sends first. The returned error never contains the token or
// the proxy's credentials.
func Open(cfg Config) (*Client, error) {
	if cfg.SpoolDir == "" {
		return nil, errors.New("ship: spool directory required")
	}
	endpoint, err := ingestURL(cfg.Server)
	if err != nil {
		return nil, fmt.Errorf("ship: %w", err)
	}
	if cfg.Token == "" {
		return nil, errors.New("ship: token required")
	}
	for i := 0; i < len(cfg.Token); i++ {
		if c := cfg.Token[i]; c <= ' ' || c > '~' {
			return nil, errors.New("ship: token: only visible ASCII characters allowed")
		}
	}
	if len(cfg.Node) > maxNameLen || len(cfg.Component) > maxNameLen {
		return nil, fmt.Errorf("ship: node and component names are limited to %d bytes", maxNameLen)
	}
	if cfg.MaxSpoolBytes <= 0 {
		cfg.MaxSpoolBytes = DefaultMaxSpoolBytes
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	cfg.BatchSize = min(cfg.BatchSize, MaxBatchAlerts)
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = DefaultRetryMin
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = DefaultRetryMax
	}
	cfg.RetryMax = max(cfg.RetryMax, cfg.RetryMin)
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	c := &Client{
		cfg:        cfg,
		log:        cfg.Log,
		endpoint:   endpoint,
		secrets:    []string{cfg.Token},
		alertIdx:   map[string]int{},
		healthIdx:  map[string]int{},
		lastHealth: map[string]json.RawMessage{},
		kick:       make(chan struct{}, 1),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.http = cfg.HTTPClient
	if c.http == nil {
		c.http, err = c.newHTTPClient()
		if err != nil {
			return nil, fmt.Errorf("ship: %w", err)
		}
	}
	c.spool, err = openSpool(cfg.SpoolDir, cfg.MaxSpoolBytes)
	if err != nil {
		return nil, fmt.Errorf("ship: %w", err)
	}
	if n := len(c.spool.entries); n > 0 {
		c.log.Info("resuming spooled batches", "batches", n, "bytes", c.spool.bytes, "dir", cfg.SpoolDir)
	}
	return c, nil
}

func ingestURL(server string) (string, error) {
	if server == "" {
		return "", errors.New("server URL required")
	}
	u, err := url.Parse(server)
	if err != nil {
		return "", errors.New("server URL: not a valid URL")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return "", errors.New("server URL: scheme must be https or http")
	}
	if u.Host == "" {
		return "", errors.New("server URL: host required")
	}
	if u.User != nil {
		return "", errors.New("server URL: must not contain credentials (use the token)")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", errors.New("server URL: must not have a query or fragment")
	}
	return strings.TrimRight(u.String(), "/") + IngestPath, nil
}

func (c *Client) newHTTPClient() (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = http.ProxyFromEnvironment
	if c.cfg.Proxy != "" {
		u, err := url.Parse(c.cfg.Proxy)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			// The parser's message would quote the URL, password and all.
			return nil, errors.New("proxy URL: want http[s]://[user:password@]host:port")
		}
		if u.User != nil {
			if p, ok := u.User.Password(); ok && p != "" {
				// As typed, as encoded in URLs, and as sent in
				// Proxy-Authorization, which a proxy may echo.
				c.secrets = append(c.secrets, p,
					base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+p)))
				if e := url.PathEscape(p); e != p {
					c.secrets = append(c.secrets, e)
				}
				if e := url.QueryEscape(p); e != p {
					c.secrets = append(c.secrets, e)
				}
			}
		}
		tr.Proxy = http.ProxyURL(u)
		c.log.Info("using proxy", "proxy", u.Scheme+"://"+u.Host)
	}
	if c.cfg.CAFile != "" {
		pem, err := os.ReadFile(c.cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificates", c.cfg.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{
		Transport: tr,
		// A redirect would turn the POST into a GET or carry the token
		// elsewhere; report it instead.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// Alert queues an alert (a deep copy). An alert with the id of one still
// queued replaces it unless its count is lower, so an aggregated alert
// updated many times per flush is sent once with its latest count. An
// invalid alert is logged, counted as dropped and not sent.
func (c *Client) Alert(a *event.Alert) {
	if a == nil {
		return
	}
	if err := validateAlert(a); err != nil {
		c.dropItem("alert", err, true)
		return
	}
	raw, err := json.Marshal(a)
	if err != nil {
		c.dropItem("alert", fmt.Errorf("encode: %w", err), true)
		return
	}
	if len(raw) >= batchBudget {
		c.dropItem("alert", fmt.Errorf("id %s: %d bytes encoded, more than a batch may hold", a.ID, len(raw)), true)
		return
	}
	c.mu.Lock()
	if c.closed {
		c.stats.DroppedAlerts++
		c.mu.Unlock()
		return
	}
	if i, ok := c.alertIdx[a.ID]; ok {
		q := &c.alerts[i]
		if a.Count >= q.count {
			c.queuedBytes += len(raw) - len(q.raw)
			*q = queued{key: a.ID, count: a.Count, last: a.LastSeen, raw: raw}
		}
		c.mu.Unlock()
		return
	}
	if c.queuedBytes+len(raw) > maxQueueBytes {
		c.mu.Unlock()
		c.dropItem("alert", errors.New("memory queue full"), true)
		return
	}
	c.alertIdx[a.ID] = len(c.alerts)
	c.alerts = append(c.alerts, queued{key: a.ID, count: a.Count, last: a.LastSeen, raw: raw})
	c.queuedBytes += len(raw)
	full := c.fullLocked()
	c.mu.Unlock()
	if full {
		c.wake()
	}
}

// Health queues a component's state; a later report for the same node and
// component replaces one still queued. Empty Node and Component are taken
// from Config, a zero At is now. The latest report per component is
// re-sent as the heartbeat.
func (c *Client) Health(h Health) {
	if h.Node == "" {
		h.Node = c.cfg.Node
	}
	if h.Component == "" {
		h.Component = c.cfg.Component
	}
	if h.At.IsZero() {
		h.At = time.Now().UTC()
	}
	if err := h.validate(); err != nil {
		c.dropItem("health", err, false)
		return
	}
	raw, err := json.Marshal(&h)
	if err != nil || len(raw) >= batchBudget {
		c.dropItem("health", errors.New("cannot encode within a batch"), false)
		return
	}
	key := h.Node + "\x00" + h.Component
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.lastHealth[key] = raw
	if i, ok := c.healthIdx[key]; ok {
		c.queuedBytes += len(raw) - len(c.health[i].raw)
		c.health[i].raw = raw
		return
	}
	c.healthIdx[key] = len(c.health)
	c.health = append(c.health, queued{key: key, raw: raw})
	c.queuedBytes += len(raw)
}

// Inventory queues inventory items; invalid ones are logged and skipped.
func (c *Client) Inventory(items []InventoryItem) {
	for i := range items {
		if err := items[i].validate(); err != nil {
			c.dropItem("inventory item", err, false)
			continue
		}
		c.queueOther(&c.inventory, "inventory item", &items[i], false)
	}
}

// Findings queues posture findings (Removed ones included); invalid ones
// are logged and skipped. Findings reach the server in the order they were
// queued, through batches and the spool, so the last one queued for an id
// is the one that stays.
func (c *Client) Findings(findings []Finding) {
	for i := range findings {
		if err := findings[i].validate(); err != nil {
			c.dropItem("finding", err, false)
			continue
		}
		c.queueOther(&c.findings, "finding", &findings[i], false)
	}
}

// ScanComplete says that every finding of scanner run scan has been
// queued: the server then deletes the cluster's findings of other runs
// (Batch.CompletedScans). The marker travels in the batch that holds the
// last findings queued before it, or a later one, and never with findings
// queued after it, so a next run may start at once. An invalid id is
// logged and skipped. A finding the client had to drop (the spool bound,
// a batch refused for good) is missing until the next run sends it again.
func (c *Client) ScanComplete(scan string) {
	if err := checkScan(scan); err != nil {
		c.dropItem("scan completion", fmt.Errorf("scan: %w", err), false)
		return
	}
	c.queueOther(&c.findings, "scan completion", scan, true)
}

func (c *Client) queueOther(q *[]queued, what string, v any, complete bool) {
	raw, err := json.Marshal(v)
	if err != nil || len(raw) >= batchBudget {
		c.dropItem(what, errors.New("cannot encode within a batch"), false)
		return
	}
	c.mu.Lock()
	if c.closed || c.queuedBytes+len(raw) > maxQueueBytes {
		c.mu.Unlock()
		c.dropItem(what, errors.New("memory queue full or client closed"), false)
		return
	}
	*q = append(*q, queued{raw: raw, complete: complete})
	c.queuedBytes += len(raw)
	full := c.fullLocked()
	c.mu.Unlock()
	if full {
		c.wake()
	}
}

// dropItem logs (once per cut, so a flood does not flood the log) and
// counts an item refused on the way in.
func (c *Client) dropItem(what string, err error, alert bool) {
	c.mu.Lock()
	if alert {
		c.stats.DroppedAlerts++
	}
	warn := !c.dropWarned
	c.dropWarned = true
	c.mu.Unlock()
	if warn {
		c.log.Warn("dropped "+what, "error", c.redact(err.Error()))
	}
}

func (c *Client) fullLocked() bool {
	return len(c.alerts) >= c.cfg.BatchSize || c.queuedBytes >= batchBudget
}

func (c *Client) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Run sends the spool in order, then each batch as it is cut: a full batch
// at once, anything else after FlushInterval. Failed attempts are retried
// with exponential backoff and jitter; a batch the server refuses for good
// (a 4xx other than 401, 403, 407, 408 and 429) is logged, counted and
// dropped. When ctx is done Run spools what is still in memory and returns
// nil; it returns an error only when it was already running.
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("ship: Run is already running")
	}
	defer c.running.Store(false)

	flush := time.NewTicker(c.cfg.FlushInterval)
	defer flush.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	var (
		attempt     int
		nextTry     time.Time
		lastFlush   = time.Now()
		lastContact time.Time // zero: announce ourselves at once
	)
	for ctx.Err() == nil {
		now := time.Now()
		all := now.Sub(lastFlush) >= c.cfg.FlushInterval
		if all {
			lastFlush = now
		}
		if err := c.cut(all); err != nil {
			c.setError(err)
		}

		pending := c.spoolLen() > 0
		if pending && !now.Before(nextTry) {
			switch r := c.sendOldest(ctx); r.outcome {
			case sendDone:
				attempt, nextTry, lastContact = 0, time.Time{}, time.Now()
				continue
			case sendDropped:
				attempt, nextTry = 0, time.Time{}
				continue
			case sendRetry:
				attempt++
				nextTry = time.Now().Add(backoff(attempt, c.cfg.RetryMin, c.cfg.RetryMax, r.retryAfter))
			case sendCancelled:
				continue // the loop condition ends Run
			}
		}
		if !pending && c.cfg.Heartbeat > 0 && time.Since(lastContact) >= c.cfg.Heartbeat && c.queueEmpty() {
			c.queueHeartbeat()
			if err := c.cut(true); err != nil {
				c.setError(err)
			}
			lastContact = time.Now() // at most one heartbeat per interval, even failing
			continue
		}

		if c.spoolLen() > 0 && !nextTry.IsZero() {
			retry.Reset(time.Until(nextTry))
		}
		select {
		case <-ctx.Done():
		case <-flush.C:
		case <-c.kick:
		case <-retry.C:
		}
		retry.Stop()
	}
	if err := c.cut(true); err != nil {
		c.setError(err)
		c.log.Error("could not spool queued items at shutdown", "error", c.redact(err.Error()))
	}
	return nil
}

// Close spools what is still in memory and releases the spool. Items
// queued afterwards are dropped. Call it after Run has returned.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	err := c.cut(true)
	c.spoolMu.Lock()
	defer c.spoolMu.Unlock()
	if cerr := c.spool.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("ship: close: %s", c.redact(err.Error()))
	}
	return nil
}

// Stats returns a snapshot of the counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	s := c.stats
	s.QueuedAlerts = len(c.alerts)
	c.mu.Unlock()
	c.spoolMu.Lock()
	s.SpoolBatches = len(c.spool.entries)
	s.SpoolBytes = c.spool.bytes
	c.spoolMu.Unlock()
	return s
}

func (c *Client) spoolLen() int {
	c.spoolMu.Lock()
	defer c.spoolMu.Unlock()
	return len(c.spool.entries)
}

func (c *Client) queueEmpty() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.alerts)+len(c.health)+len(c.inventory)+len(c.findings) == 0
}

func (c *Client) queueHeartbeat() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for key, raw := range c.lastHealth {
		if _, ok := c.healthIdx[key]; !ok {
			c.healthIdx[key] = len(c.health)
			c.health = append(c.health, queued{key: key, raw: raw})
			c.queuedBytes += len(raw)
		}
	}
	if len(c.health) == 0 {
		// An empty batch still tells the server we are alive.
		c.health = append(c.health, queued{})
	}
}

// Sync writes every queued item to the spool and returns when it is on
// disk (fsynced): a receiver that acknowledges only what it has durably
// accepted calls it before answering. Sending stays Run's.
func (c *Client) Sync() error { return c.cut(true) }

// cut moves queued items into batches and spools them: every queued item
// when all is set, else only full batches. If the spool cannot be written
// the items go back to the front of the queue and cut returns the error.
// Cuts run one at a time, so each queue's items are spooled in order; a
// batch's findings end at its first scan completion (takeFindings).
func (c *Client) cut(all bool) error {
	c.cutMu.Lock()
	defer c.cutMu.Unlock()
	for {
		c.mu.Lock()
		n := len(c.alerts) + len(c.health) + len(c.inventory) + len(c.findings)
		if n == 0 || (!all && !c.fullLocked()) {
			c.mu.Unlock()
			return nil
		}
		var t taken
		budget := batchBudget
		t.alerts, budget = takeItems(&c.alerts, budget, c.cfg.BatchSize)
		t.health, budget = takeItems(&c.health, budget, len(c.health))
		t.inventory, budget = takeItems(&c.inventory, budget, len(c.inventory))
		t.findings = takeFindings(&c.findings, budget)
		c.queuedBytes -= t.bytes()
		c.reindexLocked()
		c.dropWarned = false
		c.mu.Unlock()

		if err := c.spoolBatch(&t); err != nil {
			c.mu.Lock()
			c.alerts = append(t.alerts, c.alerts...)
			c.health = append(t.health, c.health...)
			c.inventory = append(t.inventory, c.inventory...)
			c.findings = append(t.findings, c.findings...)
			c.queuedBytes += t.bytes()
			c.reindexLocked()
			c.mu.Unlock()
			return err
		}
	}
}

type taken struct {
	alerts, health, inventory, findings []queued
}

func (t *taken) bytes() int {
	n := 0
	for _, l := range [][]queued{t.alerts, t.health, t.inventory, t.findings} {
		for _, q := range l {
			n += len(q.raw)
		}
	}
	return n
}

// takeItems removes from the front of q as many items as fit in budget
// (each costs its size and a comma), at most limit of them.
func takeItems(q *[]queued, budget, limit int) ([]queued, int) {
	n := 0
	for n < len(*q) && n < limit && len((*q)[n].raw)+1 <= budget {
		budget -= len((*q)[n].raw) + 1
		n++
	}
	out := make([]queued, n)
	copy(out, (*q)[:n])
	*q = append((*q)[:0], (*q)[n:]...)
	return out, budget
}

// takeFindings is takeItems for the findings queue, which also stops after
// the first scan completion: the server applies a batch's completions
// after all of its findings, so findings queued after a completion must
// travel in a later batch.
func takeFindings(q *[]queued, budget int) []queued {
	limit := len(*q)
	for i, f := range *q {
		if f.complete {
			limit = i + 1
			break
		}
	}
	out, _ := takeItems(q, budget, limit)
	return out
}

func (c *Client) reindexLocked() {
	clear(c.alertIdx)
	for i, q := range c.alerts {
		c.alertIdx[q.key] = i // a requeued duplicate: the later index wins, both are sent
	}
	clear(c.healthIdx)
	for i, q := range c.health {
		if q.raw != nil {
			c.healthIdx[q.key] = i
		}
	}
}

// spoolBatch gives the items a batch id, encodes them and writes the batch
// to the spool, dropping the oldest batches if the bound requires it.
func (c *Client) spoolBatch(t *taken) error {
	c.spoolMu.Lock()
	defer c.spoolMu.Unlock()
	id := c.spool.nextID()
	data := encodeBatch(id.String(), c.cfg.Node, c.cfg.Component, time.Now().UTC(), t)
	dropped, err := c.spool.write(id, data, len(t.alerts))
	if len(dropped) > 0 {
		var alerts uint64
		for _, e := range dropped {
			alerts += uint64(e.alerts)
		}
		c.mu.Lock()
		c.stats.DroppedBatches += uint64(len(dropped))
		c.stats.DroppedAlerts += alerts
		c.mu.Unlock()
		c.log.Warn("spool full: dropped the oldest batches", "batches", len(dropped), "alerts", alerts,
			"max_spool_bytes", c.cfg.MaxSpoolBytes)
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.stats.SpooledBatches++
	c.mu.Unlock()
	return nil
}

// encodeBatch writes the JSON of a Batch from items already encoded.
func encodeBatch(id, node, component string, at time.Time, t *taken) []byte {
	var b bytes.Buffer
	b.Grow(t.bytes() + 512)
	str := func(s string) {
		j, _ := json.Marshal(s)
		b.Write(j)
	}
	b.WriteString(`{"batch_id":`)
	str(id)
	if node != "" {
		b.WriteString(`,"node":`)
		str(node)
	}
	if component != "" {
		b.WriteString(`,"component":`)
		str(component)
	}
	b.WriteString(`,"sent_at":`)
	ts, _ := at.MarshalJSON()
	b.Write(ts)
	for _, f := range []struct {
		name     string
		items    []queued
		complete bool
	}{{"alerts", t.alerts, false}, {"health", t.health, false}, {"inventory", t.inventory, false},
		{"findings", t.findings, false}, {"completed_scans", t.findings, true}} {
		first := true
		for _, q := range f.items {
			if q.raw == nil || q.complete != f.complete { // nil: the heartbeat's placeholder
				continue
			}
			if first {
				b.WriteString(`,"` + f.name + `":[`)
				first = false
			} else {
				b.WriteByte(',')
			}
			b.Write(q.raw)
		}
		if !first {
			b.WriteByte(']')
		}
	}
	b.WriteByte('}')
	return b.Bytes()
}

type sendOutcome int

const (
	sendDone      sendOutcome = iota // acknowledged and removed
	sendDropped                      // refused for good or unreadable, removed
	sendRetry                        // kept, try again later
	sendCancelled                    // ctx done during the attempt, kept
)

type sendResult struct {
	outcome    sendOutcome
	retryAfter time.Duration
}

// sendOldest makes one attempt to deliver the oldest spooled batch.
func (c *Client) sendOldest(ctx context.Context) sendResult {
	c.spoolMu.Lock()
	e, ok := c.spool.oldest()
	var data []byte
	var err error
	if ok {
		data, err = c.spool.read(e.id)
		if err != nil {
			_ = c.spool.remove(e.id)
		}
	}
	c.spoolMu.Unlock()
	if !ok {
		return sendResult{outcome: sendDropped} // emptied meanwhile; nothing sent
	}
	id := e.id.String()
	if err != nil {
		c.countDropped(e, false)
		c.setError(err)
		c.log.Error("dropped an unreadable spooled batch", "batch_id", id, "error", c.redact(err.Error()))
		return sendResult{outcome: sendDropped}
	}
	if e.alerts < 0 {
		e.alerts = countAlertsIn(data)
	}

	rctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, c.endpoint, bytes.NewReader(data))
	if err != nil {
		c.setError(err)
		return sendResult{outcome: sendRetry}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "vigil-ship")
	req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return sendResult{outcome: sendCancelled}
		}
		c.retried(id, fmt.Errorf("send batch: %w", err))
		return sendResult{outcome: sendRetry}
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // lets the connection be reused
	resp.Body.Close()

	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		c.spoolMu.Lock()
		err := c.spool.remove(e.id)
		c.spoolMu.Unlock()
		if err != nil {
			c.setError(err) // resent later and skipped by the server
		}
		c.mu.Lock()
		c.stats.SentBatches++
		c.stats.SentAlerts += uint64(e.alerts)
		c.mu.Unlock()
		c.log.Debug("batch delivered", "batch_id", id, "alerts", e.alerts)
		return sendResult{outcome: sendDone}
	case code == http.StatusUnauthorized || code == http.StatusForbidden || code == http.StatusProxyAuthRequired:
		// The credential, not the batch, is wrong: keep everything
		// until someone fixes it, within the spool's bound.
		err := fmt.Errorf("server refused the credentials: %s%s", resp.Status, serverMessage(body))
		c.setError(err)
		c.bumpRetries()
		c.log.Error("ingest refused; keeping the batch and retrying", "batch_id", id, "error", c.redact(err.Error()))
		return sendResult{outcome: sendRetry}
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500 || code < 200 || (code >= 300 && code < 400):
		c.retried(id, fmt.Errorf("send batch: %s%s", resp.Status, serverMessage(body)))
		return sendResult{outcome: sendRetry, retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"))}
	default:
		err := fmt.Errorf("server refused batch %s: %s%s", id, resp.Status, serverMessage(body))
		c.spoolMu.Lock()
		_ = c.spool.remove(e.id)
		c.spoolMu.Unlock()
		c.countDropped(e, true)
		c.setError(err)
		c.log.Error("batch refused by the server; dropped", "batch_id", id, "alerts", e.alerts, "error", c.redact(err.Error()))
		return sendResult{outcome: sendDropped}
	}
}

func (c *Client) retried(id string, err error) {
	c.bumpRetries()
	c.setError(err)
	c.log.Warn("ingest failed; will retry", "batch_id", id, "error", c.redact(err.Error()))
}

func (c *Client) bumpRetries() {
	c.mu.Lock()
	c.stats.Retries++
	c.mu.Unlock()
}

func (c *Client) countDropped(e spoolEntry, rejected bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.DroppedBatches++
	if e.alerts > 0 {
		c.stats.DroppedAlerts += uint64(e.alerts)
	}
	if rejected {
		c.stats.RejectedBatches++
	}
}

func (c *Client) setError(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.LastError = c.redact(err.Error())
	c.stats.LastErrorAt = time.Now()
}

// redact removes the token and the proxy password from s. Nothing the
// client builds contains them; this guards against what libraries or the
// server may echo.
func (c *Client) redact(s string) string {
	for _, sec := range c.secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "[REDACTED]")
		}
	}
	return s
}

// serverMessage extracts the {"error": "..."} of a refusal, shortened.
func serverMessage(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	if msg == "" {
		return ""
	}
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return ": " + strings.ToValidUTF8(msg, "?")
}

func countAlertsIn(data []byte) int {
	var b struct {
		Alerts []json.RawMessage `json:"alerts"`
	}
	if json.Unmarshal(data, &b) != nil {
		return 0
	}
	return len(b.Alerts)
}

// backoff returns the wait before attempt+1: min doubled per failed
// attempt up to max, jittered into its upper half (never below min), and
// at least what the server asked for in Retry-After (still capped by max).
func backoff(attempt int, lo, hi, retryAfter time.Duration) time.Duration {
	d := lo
	for i := 1; i < attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	d = d/2 + rand.N(d/2+1)
	d = max(d, lo, retryAfter)
	return min(d, hi)
}

func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return time.Until(t)
	}
	return 0
}
