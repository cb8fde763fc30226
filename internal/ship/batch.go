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

// Finding statuses.
const (
	Healthy   = "healthy"
	Unhealthy = "unhealthy"
)

// Finding is the result of one posture check on one resource.
type Finding struct {
	ID        string         `json:"id"`
	Check     string         `json:"check"`
	Resource  string         `json:"resource"`
	Namespace string         `json:"namespace,omitempty"`
	Status    string         `json:"status"`
	Details   map[string]any `json:"details,omitempty"`
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
	if f.Check == "" {
		return errors.New("check: required")
	}
	if f.Status != Healthy && f.Status != Unhealthy {
		return fmt.Errorf("status: %q is not healthy or unhealthy", clip(f.Status))
	}
	return nil
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
