// Package controlplane is control-plane detection on the server: audit
// batches from a cluster's API server go through the detection engine's
// k8s.audit rules, and the alerts are stored before the batch is
// acknowledged.
package controlplane

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/vigil-sec/vigil/internal/audit"
	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/server/store"
	"github.com/vigil-sec/vigil/internal/ship"
)

// Store is where alerts go.
type Store interface {
	Ingest(ctx context.Context, clusterID string, b *ship.Batch, now time.Time) (store.IngestResult, error)
	ListExceptions(ctx context.Context, clusterID string) ([]detect.Exception, error)
}

// Config configures the detector.
type Config struct {
	Rules *detect.Ruleset
	Store Store
	Log   *slog.Logger
	// Alerts receives every alert stored (e.g. the exporters); nil drops.
	Alerts func(event.Alert)
	Now    func() time.Time
}

// Detector runs the audit rules, one engine per cluster (bursts and
// aggregation are per cluster), and stores what they raise.
type Detector struct {
	cfg     Config
	mu      sync.Mutex
	engines map[string]*clusterEngine
}

type clusterEngine struct {
	engine  *detect.Engine
	lineage *audit.Lineage
	mu      sync.Mutex // serialises batches of one cluster
	pending []event.Alert
	synced  time.Time         // exceptions last read
	seen    map[[16]byte]bool // digests of recent batches
	order   [][16]byte
}

// maxSeen is how many batch digests a cluster remembers: the API server
// retries a batch within seconds, not after a thousand others.
const maxSeen = 1000

// forget drops a digest: its batch failed and will come again.
func (ce *clusterEngine) forget(sum [16]byte) {
	delete(ce.seen, sum)
}

// remember records a batch digest; false when it was seen already.
func (ce *clusterEngine) remember(sum [16]byte) bool {
	if ce.seen[sum] {
		return false
	}
	if ce.seen == nil {
		ce.seen = map[[16]byte]bool{}
	}
	if len(ce.order) >= maxSeen {
		delete(ce.seen, ce.order[0])
		ce.order = ce.order[1:]
	}
	ce.seen[sum] = true
	ce.order = append(ce.order, sum)
	return true
}

// Result is what one batch held and raised.
type Result struct {
	audit.Stats
	Alerts    int  `json:"alerts"`
	Duplicate bool `json:"duplicate,omitempty"`
}

// New returns a detector.
func New(cfg Config) *Detector {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Alerts == nil {
		cfg.Alerts = func(event.Alert) {}
	}
	return &Detector{cfg: cfg, engines: map[string]*clusterEngine{}}
}

// exceptionsEvery is how often a cluster's exceptions are re-read.
const exceptionsEvery = 30 * time.Second

func (d *Detector) engine(clusterID, clusterName string) *clusterEngine {
	d.mu.Lock()
	defer d.mu.Unlock()
	ce := d.engines[clusterID]
	if ce == nil {
		ce = &clusterEngine{lineage: audit.NewLineage()}
		ce.engine = detect.New(detect.Config{Rules: d.cfg.Rules, Cluster: clusterName, Log: d.cfg.Log, Now: d.cfg.Now,
			Emit: func(a *event.Alert) { ce.pending = append(ce.pending, *a) }})
		d.engines[clusterID] = ce
	}
	return ce
}

// Handle runs one webhook body of cluster clusterID through the rules and
// stores the alerts. It returns after the store committed them, so an
// acknowledged batch is never lost; a batch sent again (the API server
// retries on timeouts) is recognised by its digest and stored once.
func (d *Detector) Handle(ctx context.Context, clusterID, clusterName string, body []byte) (Result, error) {
	events, st, err := audit.DecodeBatch(body)
	res := Result{Stats: st}
	if err != nil {
		return res, err
	}
	ce := d.engine(clusterID, clusterName)
	ce.mu.Lock()
	defer ce.mu.Unlock()
	if now := d.cfg.Now(); now.Sub(ce.synced) > exceptionsEvery {
		xs, err := d.cfg.Store.ListExceptions(ctx, clusterID)
		if err != nil {
			return res, fmt.Errorf("exceptions: %w", err)
		}
		ce.engine.SetExceptions(xs)
		ce.synced = now
	}
	full := sha256.Sum256(body)
	var sum [16]byte
	copy(sum[:], full[:16])
	if !ce.remember(sum) {
		// A retry of a batch this server took: its events already went
		// through the rules (and its alerts into the store, which also
		// knows the batch id).
		res.Duplicate = true
		return res, nil
	}
	for i := range events {
		events[i].Origin = ce.lineage.Observe(&events[i])
		ce.engine.Process(audit.Event(&events[i]))
	}
	alerts := ce.pending
	ce.pending = nil
	res.Alerts = len(alerts)
	if len(alerts) == 0 {
		return res, nil
	}
	b := &ship.Batch{BatchID: "audit-" + hex.EncodeToString(sum[:]), Alerts: alerts}
	r, err := d.cfg.Store.Ingest(ctx, clusterID, b, d.cfg.Now())
	if err != nil {
		// Not acknowledged: the API server sends the batch again, and its
		// alerts (kept) go with the retry's.
		ce.pending = append(alerts, ce.pending...)
		ce.forget(sum)
		return res, err
	}
	res.Duplicate = r.Duplicate
	if !r.Duplicate {
		for _, a := range alerts {
			d.cfg.Alerts(a)
		}
	}
	return res, nil
}

// updateEvery is how often aggregated alerts' counts are stored.
const updateEvery = 30 * time.Second

// Run stores the updated counts of aggregated alerts (the same user doing
// the same again) every updateEvery until ctx is done, and once more then.
func (d *Detector) Run(ctx context.Context) error {
	t := time.NewTicker(updateEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			d.flush(context.WithoutCancel(ctx))
			return nil
		case <-t.C:
			d.flush(ctx)
		}
	}
}

func (d *Detector) flush(ctx context.Context) {
	d.mu.Lock()
	ids := make(map[string]*clusterEngine, len(d.engines))
	for id, ce := range d.engines {
		ids[id] = ce
	}
	d.mu.Unlock()
	for id, ce := range ids {
		ce.mu.Lock()
		ce.engine.Flush()
		alerts := ce.pending
		ce.pending = nil
		if len(alerts) > 0 {
			b := &ship.Batch{BatchID: "audit-update-" + ulidNow(d.cfg.Now()), Alerts: alerts}
			if _, err := d.cfg.Store.Ingest(ctx, id, b, d.cfg.Now()); err != nil {
				d.cfg.Log.Warn("control plane: storing alert updates", "cluster", id, "err", err)
				ce.pending = append(alerts, ce.pending...)
			}
		}
		ce.mu.Unlock()
	}
}

func ulidNow(t time.Time) string { return ulid.MustNew(ulid.Timestamp(t), rand.Reader).String() }
