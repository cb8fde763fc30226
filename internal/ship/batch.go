package ship

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// MaxBatchBytes bounds the JSON encoding of one batch. The server refuses
// larger bodies (413) and the client cuts batches well below it.
const MaxBatchBytes = 8 << 20

// MaxBatchAlerts bounds the number of alerts in one batch.
const MaxBatchAlerts = 10000

// maxIDLen bounds batch ids and alert ids.
const maxIDLen = 128

var batchType = reflect.TypeFor[Batch]()

// ErrTooLarge is wrapped by DecodeBatch when the body exceeds MaxBatchBytes.
var ErrTooLarge = errors.New("batch too large")

// Batch is the body of POST /api/v1/ingest: what one sensor or agent sends
// in one request. BatchID is a ULID chosen by the sender before the first
// attempt and kept across retries, so the server can skip a batch it has
// already stored.
type Batch struct {
	BatchID   string          `json:"batch_id"`
	Node      string          `json:"node,omitempty"`
	Component string          `json:"component,omitempty"` // sensor, agent
	SentAt    time.Time       `json:"sent_at"`
	Alerts    []event.Alert   `json:"alerts,omitempty"`
	Health    []Health        `json:"health,omitempty"`
	Inventory []InventoryItem `json:"inventory,omitempty"`
	Findings  []Finding       `json:"findings,omitempty"`
	// CompletedScans are scanner runs (Finding.Scan) the sender has sent
	// every finding of, up to and including this batch. After it has
	// applied the batch's findings, the server deletes, for each id in
	// turn, the cluster's findings whose Scan differs: what older runs,
	// workloads deleted while no scanner ran and manual scans left
	// behind. A sender names at most one run per batch (two different
	// ids in one batch would delete every finding).
	CompletedScans []string `json:"completed_scans,omitempty"`
}

// Health is a component's state as it reports it: State is pending,
// installed or failed (Reason says why), Health the sensor's own counters.
// Each batch a component sends doubles as its heartbeat.
type Health struct {
	Node      string        `json:"node,omitempty"`
	Component string        `json:"component"`
	State     string        `json:"state"`
	Reason    string        `json:"reason,omitempty"`
	Health    *event.Health `json:"health,omitempty"`
	At        time.Time     `json:"at"`
}

// Inventory kinds.
const (
	KindNode      = "node"
	KindWorkload  = "workload"
	KindImage     = "image"
	KindContainer = "container"
	KindPod       = "pod"
)

// InventoryItem is one object the agent or sensor saw in the cluster.
type InventoryItem struct {
	Kind      string            `json:"kind"`
	Name      string            `json:"name"`
	Namespace string            `json:"namespace,omitempty"`
	Node      string            `json:"node,omitempty"`
	Attrs     map[string]string `json:"attrs,omitempty"`
}

// Finding statuses. Removed is not a result but a retraction: the resource
// is gone (its workload was deleted, or the check no longer applies to it)
// and the server deletes the finding with that id.
const (
	Healthy   = "healthy"
	Unhealthy = "unhealthy"
	Removed   = "removed"
)

// MaxCompletedScans bounds Batch.CompletedScans.
const MaxCompletedScans = 16

// Finding is the result of one posture check on one resource. ID is the
// sender's stable key for (check, resource): the server keeps one finding
// per cluster and ID, and within one batch the last finding of an ID wins.
// A Removed finding needs only its ID. Details["mode"] (a string: audit,
// deny) is the mode the check runs in.
type Finding struct {
	ID        string         `json:"id"`
	Check     string         `json:"check"`
	Resource  string         `json:"resource"`
	Namespace string         `json:"namespace,omitempty"`
	Status    string         `json:"status"`
	Details   map[string]any `json:"details,omitempty"`
	// Scan is the id (a ULID) of the scanner run that made the finding;
	// empty for one-off scans. See Batch.CompletedScans.
	Scan string `json:"scan,omitempty"`
}

// DecodeBatch reads one batch from untrusted input and validates it. It
// reads at most MaxBatchBytes+1 bytes (a larger body gives an error that
// wraps ErrTooLarge), rejects unknown fields, trailing data after the JSON
// object and invalid values; every error names the offending field, e.g.
// "alerts[3].severity". The caller still has to check that the sender may
// write what the batch holds (its cluster).
func DecodeBatch(r io.Reader) (*Batch, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxBatchBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read batch: %w", err)
	}
	if len(data) > MaxBatchBytes {
		return nil, fmt.Errorf("decode batch: body over %d bytes: %w", MaxBatchBytes, ErrTooLarge)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var b Batch
	if err := dec.Decode(&b); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("decode batch: empty body")
		}
		// Find where, for a message that names the field.
		if serr := checkShape(data, batchType); serr != nil {
			return nil, fmt.Errorf("decode batch: %w", serr)
		}
		return nil, fmt.Errorf("decode batch: %w", describeJSONError(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("decode batch: trailing data after the JSON object")
	}
	// encoding/json matches keys case-insensitively and lets a repeated key
	// win; refuse both, and let the slower shape check say where.
	if !exactKeys(data, batchType) {
		err := checkShape(data, batchType)
		if err == nil {
			err = errors.New("a field name differs from the contract or is repeated")
		}
		return nil, fmt.Errorf("decode batch: %w", err)
	}
	if err := b.Validate(); err != nil {
		return nil, fmt.Errorf("decode batch: %w", err)
	}
	return &b, nil
}

// describeJSONError rewords the json package's errors so that they name the
// field and position without echoing large parts of the input.
func describeJSONError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "batch"
		}
		return fmt.Errorf("field %s: JSON %s where %s was expected (byte %d)", field, typ.Value, typ.Type, typ.Offset)
	case errors.Is(err, io.EOF):
		return errors.New("empty body")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("malformed JSON: unexpected end of input")
	}
	return err
}

// Validate checks the values DecodeBatch cannot check by type. Senders
// need not call it: the client validates each item as it is queued.
func (b *Batch) Validate() error {
	if b.BatchID == "" {
		return errors.New("batch_id: required")
	}
	if err := checkID(b.BatchID); err != nil {
		return fmt.Errorf("batch_id: %w", err)
	}
	if len(b.Alerts) > MaxBatchAlerts {
		return fmt.Errorf("alerts: %d alerts, at most %d per batch", len(b.Alerts), MaxBatchAlerts)
	}
	for i := range b.Alerts {
		if err := validateAlert(&b.Alerts[i]); err != nil {
			return fmt.Errorf("alerts[%d].%w", i, err)
		}
	}
	for i := range b.Health {
		if err := b.Health[i].validate(); err != nil {
			return fmt.Errorf("health[%d].%w", i, err)
		}
	}
	for i := range b.Inventory {
		if err := b.Inventory[i].validate(); err != nil {
			return fmt.Errorf("inventory[%d].%w", i, err)
		}
	}
	for i := range b.Findings {
		if err := b.Findings[i].validate(); err != nil {
			return fmt.Errorf("findings[%d].%w", i, err)
		}
	}
	if len(b.CompletedScans) > MaxCompletedScans {
		return fmt.Errorf("completed_scans: %d ids, at most %d per batch", len(b.CompletedScans), MaxCompletedScans)
	}
	for i, id := range b.CompletedScans {
		if err := checkScan(id); err != nil {
			return fmt.Errorf("completed_scans[%d]: %w", i, err)
		}
	}
	return nil
}

// The validators below return errors that start with the field name, so
// that the caller can prefix the item's position.

func validateAlert(a *event.Alert) error {
	if a.ID == "" {
		return errors.New("id: required")
	}
	if err := checkID(a.ID); err != nil {
		return fmt.Errorf("id: %w", err)
	}
	if a.Rule == "" {
		return errors.New("rule: required")
	}
	if a.Severity.Rank() < 0 {
		return fmt.Errorf("severity: %q is not informational, low, medium or high", clip(string(a.Severity)))
	}
	switch a.Status {
	case "", event.StatusActive, event.StatusDismissed, event.StatusResolved:
	default:
		return fmt.Errorf("status: %q is not active, dismissed or resolved", clip(a.Status))
	}
	return nil
}

func (h *Health) validate() error {
	if h.Component == "" {
		return errors.New("component: required")
	}
	if h.State == "" {
		return errors.New("state: required")
	}
	return nil
}

func (it *InventoryItem) validate() error {
	switch it.Kind {
	case KindNode, KindWorkload, KindImage, KindContainer, KindPod:
	default:
		return fmt.Errorf("kind: %q is not node, workload, image, container or pod", clip(it.Kind))
	}
	if it.Name == "" {
		return errors.New("name: required")
	}
	return nil
}

func (f *Finding) validate() error {
	if f.ID == "" {
		return errors.New("id: required")
	}
	if len(f.ID) > maxIDLen {
		return fmt.Errorf("id: longer than %d bytes", maxIDLen)
	}
	if f.Scan != "" {
		if err := checkID(f.Scan); err != nil {
			return fmt.Errorf("scan: %w", err)
		}
	}
	switch f.Status {
	case Removed:
		return nil
	case Healthy, Unhealthy:
	default:
		return fmt.Errorf("status: %q is not healthy, unhealthy or removed", clip(f.Status))
	}
	if f.Check == "" {
		return errors.New("check: required")
	}
	return nil
}

// checkScan checks a scanner run id of Batch.CompletedScans.
func checkScan(id string) error {
	if id == "" {
		return errors.New("required")
	}
	return checkID(id)
}

// checkID accepts 1..128 visible ASCII characters, which covers ULIDs and
// keeps ids safe in URLs, file names and log lines.
func checkID(s string) error {
	if len(s) > maxIDLen {
		return fmt.Errorf("longer than %d bytes", maxIDLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("byte %d is not a visible ASCII character", i)
		}
	}
	return nil
}

// clip shortens a rejected value before it is quoted in an error.
func clip(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}
