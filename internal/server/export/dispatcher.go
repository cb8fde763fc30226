package export

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sec/vigil/internal/event"
)

// Options tune a Dispatcher; the zero value of a field takes its default.
type Options struct {
	// QueueSize bounds the alerts waiting per output (default 10000). When
	// an output's queue is full, Submit drops the alert for that output.
	QueueSize int
	// MaxBatch bounds the alerts per Send (default 100; Slack caps at 10).
	MaxBatch int
	// MinRetryInterval is the first wait after a failed send (default
	// 500ms); each further failure doubles it up to MaxRetryInterval
	// (default 1m). The waits are jittered, and a longer Retry-After from
	// the endpoint is honored up to MaxRetryInterval.
	MinRetryInterval time.Duration
	MaxRetryInterval time.Duration
	// SendTimeout bounds one Send (default 30s).
	SendTimeout time.Duration
	// FlushTimeout bounds the delivery of what is queued once Run's ctx is
	// done (default 5s).
	FlushTimeout time.Duration
	// Log receives failures, recoveries and drops (default: discarded).
	Log *slog.Logger
	// Registerer, when set, gets the vigil_export_* metrics.
	Registerer prometheus.Registerer
}

func (o *Options) defaults() error {
	for _, v := range []struct {
		name string
		n    int64
	}{{"QueueSize", int64(o.QueueSize)}, {"MaxBatch", int64(o.MaxBatch)},
		{"MinRetryInterval", int64(o.MinRetryInterval)}, {"MaxRetryInterval", int64(o.MaxRetryInterval)},
		{"SendTimeout", int64(o.SendTimeout)}, {"FlushTimeout", int64(o.FlushTimeout)}} {
		if v.n < 0 {
			return fmt.Errorf("export options: negative %s", v.name)
		}
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if o.QueueSize == 0 {
		o.QueueSize = 10000
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = 100
	}
	def(&o.MinRetryInterval, 500*time.Millisecond)
	def(&o.MaxRetryInterval, time.Minute)
	def(&o.SendTimeout, 30*time.Second)
	def(&o.FlushTimeout, 5*time.Second)
	o.MaxRetryInterval = max(o.MaxRetryInterval, o.MinRetryInterval)
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// A Dispatcher fans alerts out to the configured outputs. Each output has
// its own bounded queue and goroutine, so a slow or dead endpoint delays
// and drops only its own alerts. Submit and Health are safe for concurrent
// use, before, during and after Run.
type Dispatcher struct {
	opts    Options
	queues  []*queue
	running atomic.Bool
}

// queue is one output's state: its alerts in order, its limits and its
// counters (the source of both Health and the metrics).
type queue struct {
	name, typ string
	minRank   int
	out       *scrubbed
	ch        chan *event.Alert
	maxBatch  int
	interval  time.Duration // between sends, from the rate limit
	next      time.Time     // earliest next send; only the worker touches it
	log       *slog.Logger

	inflight                          atomic.Int64
	sent, failures, dropped, rejected atomic.Uint64
	dropping                          atomic.Bool

	mu        sync.Mutex
	healthy   bool
	lastErr   string
	lastErrAt time.Time
	lastOK    time.Time
}

// NewDispatcher validates every output and the options. It fails on an
// invalid output, a duplicate name or a metrics registration conflict; its
// errors contain no secret.
func NewDispatcher(outputs []Config, opts Options) (*Dispatcher, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	d := &Dispatcher{opts: opts}
	seen := map[string]bool{}
	for _, c := range outputs {
		out, k, err := build(c)
		if err != nil {
			return nil, err
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("export output %q: duplicate name", c.Name)
		}
		seen[c.Name] = true
		q := &queue{
			name: c.Name, typ: c.Type, minRank: -1, out: out,
			ch:       make(chan *event.Alert, opts.QueueSize),
			maxBatch: opts.MaxBatch, healthy: true,
			log: opts.Log.With("output", c.Name, "type", c.Type),
		}
		if c.MinSeverity != "" {
			q.minRank = c.MinSeverity.Rank()
		}
		if k.maxBatch > 0 {
			q.maxBatch = min(q.maxBatch, k.maxBatch)
		}
		rate := c.RateLimit
		if rate == 0 {
			rate = k.rate
		}
		if rate > 0 {
			q.interval = time.Duration(float64(time.Second) / rate)
		}
		d.queues = append(d.queues, q)
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(collector{d}); err != nil {
			return nil, fmt.Errorf("register export metrics: %w", err)
		}
	}
	return d, nil
}

// Submit queues a for every output whose minimum severity it meets. It
// never blocks: when an output's queue is full, a is dropped for that
// output alone and counted in its dropped total. The dispatcher keeps a:
// the caller must not modify its maps, slices or pointed-to values later.
func (d *Dispatcher) Submit(a event.Alert) {
	rank := a.Severity.Rank()
	p := &a // one copy, shared by the queues: outputs only read alerts
	for _, q := range d.queues {
		if rank < q.minRank {
			continue
		}
		select {
		case q.ch <- p:
		default:
			q.dropped.Add(1)
			if q.dropping.CompareAndSwap(false, true) {
				q.log.Warn("export queue full, dropping alerts", "queue_size", cap(q.ch))
			}
		}
	}
}

// Run sends until ctx is done, one goroutine per output: it takes up to
// MaxBatch queued alerts, sends them, and while the endpoint fails sends the
// same batch again after a growing, jittered wait, so alerts arrive in the
// order submitted. Alerts refused permanently are dropped and counted (a
// batch refused for its content is first split to find the culprits). Once
// ctx is done Run makes one attempt, within FlushTimeout, to deliver what
// is queued, closes the outputs' connections and returns nil. Run may be
// called once.
func (d *Dispatcher) Run(ctx context.Context) error {
	if !d.running.CompareAndSwap(false, true) {
		return errors.New("export dispatcher: Run called twice")
	}
	var wg sync.WaitGroup
	for _, q := range d.queues {
		wg.Go(func() { q.run(ctx, d.opts) })
	}
	wg.Wait()
	for _, q := range d.queues {
		q.out.Close()
	}
	return nil
}

func (q *queue) run(ctx context.Context, o Options) {
	batch := make([]event.Alert, 0, q.maxBatch)
	for {
		select {
		case <-ctx.Done():
			q.flush(o, nil)
			return
		case a := <-q.ch:
			batch = q.fill(append(batch, *a))
		}
		if n := q.deliver(ctx, o, batch); n < len(batch) {
			q.flush(o, batch[n:])
			return
		}
		clear(batch)
		batch = batch[:0]
		q.inflight.Store(0)
	}
}

// fill adds what is already queued to batch, up to maxBatch, without
// waiting: under load batches grow by themselves while a send is under way.
func (q *queue) fill(batch []event.Alert) []event.Alert {
	for len(batch) < q.maxBatch {
		select {
		case a := <-q.ch:
			batch = append(batch, *a)
		default:
			q.inflight.Store(int64(len(batch)))
			return batch
		}
	}
	q.inflight.Store(int64(len(batch)))
	return batch
}

// deliver sends batch until it is delivered or refused for good, retrying
// what fails for now. It returns how many alerts, from the start of batch,
// are done with: len(batch) unless ctx ended first. A batch refused for its
// content is split in halves, so that only the alerts at fault are dropped.
func (q *queue) deliver(ctx context.Context, o Options, batch []event.Alert) int {
	for attempt := 0; ; attempt++ {
		err := q.send(ctx, o.SendTimeout, batch)
		switch {
		case err == nil:
			return len(batch)
		case ctx.Err() != nil:
			return 0
		case errors.Is(err, ErrPermanent) && errors.Is(err, errPayload) && len(batch) > 1:
			h := len(batch) / 2
			if n := q.deliver(ctx, o, batch[:h]); n < h {
				return n
			}
			return h + q.deliver(ctx, o, batch[h:])
		case errors.Is(err, ErrPermanent):
			q.reject(len(batch), err)
			return len(batch)
		}
		wait := backoff(attempt, o.MinRetryInterval, o.MaxRetryInterval)
		var ra retryAfterer
		if errors.As(err, &ra) && ra.RetryAfter() > wait {
			wait = min(ra.RetryAfter(), o.MaxRetryInterval)
		}
		q.log.Warn("export failed, will retry", "alerts", len(batch), "attempt", attempt+1,
			"retry_in", wait.Round(time.Millisecond).String(), "error", err.Error())
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(wait):
		}
	}
}

func (q *queue) reject(n int, err error) {
	q.rejected.Add(uint64(n))
	q.dropped.Add(uint64(n))
	q.log.Error("export endpoint refused alerts; dropped", "alerts", n, "error", err.Error())
}

// send makes one attempt, after the rate limit allows it, and records the
// outcome. A send cut short by ctx is not counted as a failure.
func (q *queue) send(ctx context.Context, timeout time.Duration, batch []event.Alert) error {
	if d := time.Until(q.next); d > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	err := q.out.Send(sctx, batch)
	cancel()
	q.next = time.Now().Add(q.interval)
	if err != nil && ctx.Err() != nil {
		return err
	}
	now := time.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	if err != nil {
		q.failures.Add(1)
		q.healthy, q.lastErr, q.lastErrAt = false, err.Error(), now
		return err
	}
	q.sent.Add(uint64(len(batch)))
	if !q.healthy {
		q.log.Info("export recovered", "down_since", q.lastErrAt.Format(time.RFC3339))
	}
	q.healthy, q.lastOK = true, now
	if len(q.ch) < cap(q.ch)/2 {
		q.dropping.Store(false)
	}
	return nil
}

// flush makes one attempt, bounded by FlushTimeout, at the batch in hand
// and then at what is queued, stopping at the first failure.
func (q *queue) flush(o Options, batch []event.Alert) {
	ctx, cancel := context.WithTimeout(context.Background(), o.FlushTimeout)
	defer cancel()
	for {
		if len(batch) == 0 {
			select {
			case a := <-q.ch:
				batch = q.fill([]event.Alert{*a})
			default:
				return
			}
		}
		if err := q.send(ctx, o.SendTimeout, batch); err != nil {
			if errors.Is(err, ErrPermanent) {
				q.reject(len(batch), err)
			} else {
				q.log.Warn("export stopped with alerts undelivered", "alerts", len(batch)+len(q.ch), "error", err.Error())
				return
			}
		}
		batch = nil
		q.inflight.Store(0)
	}
}

// backoff is the wait before retry attempt+1: min doubled per attempt up to
// max, then jittered into [d/2, d) so that outputs recovering together do
// not retry in step.
func backoff(attempt int, lo, hi time.Duration) time.Duration {
	d := hi
	if attempt < 32 && lo<<attempt > 0 && lo<<attempt < hi {
		d = lo << attempt
	}
	return d/2 + rand.N(d/2+1)
}

// Status is one output's health, as the API shows it.
type Status struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	Healthy bool   `json:"healthy"`
	// LastError is the last failed send's error, scrubbed of secrets.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	// Queued counts alerts waiting, including the batch being sent.
	Queued int `json:"queued"`
	// Sent counts alerts delivered; Failures failed send attempts.
	Sent     uint64 `json:"sent"`
	Failures uint64 `json:"failures"`
	// Dropped counts alerts given up: the queue was full, or the endpoint
	// refused them for good (those are also counted in Rejected).
	Dropped  uint64 `json:"dropped"`
	Rejected uint64 `json:"rejected"`
}

// Health reports every output, in configuration order. An output is
// healthy until a send fails and again after one succeeds.
func (d *Dispatcher) Health() []Status {
	st := make([]Status, 0, len(d.queues))
	for _, q := range d.queues {
		q.mu.Lock()
		s := Status{Name: q.name, Type: q.typ, Healthy: q.healthy, LastError: q.lastErr,
			LastErrorAt: q.lastErrAt, LastSuccess: q.lastOK}
		q.mu.Unlock()
		s.Queued = q.depth()
		s.Sent, s.Failures = q.sent.Load(), q.failures.Load()
		s.Dropped, s.Rejected = q.dropped.Load(), q.rejected.Load()
		st = append(st, s)
	}
	return st
}

func (q *queue) depth() int { return len(q.ch) + int(q.inflight.Load()) }

var (
	sentDesc     = prometheus.NewDesc("vigil_export_sent_total", "Alerts delivered to an export output.", []string{"output"}, nil)
	failuresDesc = prometheus.NewDesc("vigil_export_failures_total", "Failed send attempts to an export output (each retry counts).", []string{"output"}, nil)
	droppedDesc  = prometheus.NewDesc("vigil_export_dropped_total", "Alerts an export output gave up: its queue was full or the endpoint refused them.", []string{"output"}, nil)
	depthDesc    = prometheus.NewDesc("vigil_export_queue_depth", "Alerts waiting for an export output, including the batch being sent.", []string{"output"}, nil)
)

// collector reads the dispatcher's counters at scrape time, so that Health
// and the metrics never disagree.
type collector struct{ d *Dispatcher }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{sentDesc, failuresDesc, droppedDesc, depthDesc} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, q := range c.d.queues {
		ch <- prometheus.MustNewConstMetric(sentDesc, prometheus.CounterValue, float64(q.sent.Load()), q.name)
		ch <- prometheus.MustNewConstMetric(failuresDesc, prometheus.CounterValue, float64(q.failures.Load()), q.name)
		ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue, float64(q.dropped.Load()), q.name)
		ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(q.depth()), q.name)
	}
}
