// Package audit reads Kubernetes API server audit events: the webhook
// backend's batches, audit log files (JSON lines, gzip-rotated too), and
// the objects inside events that rules look at.
package audit

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/vigil-sec/vigil/internal/event"
)

// Limits on untrusted input.
const (
	// MaxEventBytes bounds one event's JSON. A larger event keeps its
	// metadata (who did what to which object) and loses its request and
	// response objects, as the API server's own truncation does.
	MaxEventBytes = 256 << 10
	// MaxLineBytes bounds one line of an audit log; a longer line is
	// skipped and counted.
	MaxLineBytes = 4 << 20
	// MaxBodyBytes bounds one webhook request body.
	MaxBodyBytes = 64 << 20
)

// Stats counts what a batch or file held.
type Stats struct {
	Events    int `json:"events"`    // decoded and usable
	Malformed int `json:"malformed"` // not JSON, or not an audit event
	Missing   int `json:"missing"`   // required fields absent (auditID, verb, stage, user)
	Truncated int `json:"truncated"` // over MaxEventBytes: objects dropped, metadata kept
	TooLong   int `json:"too_long"`  // log lines over MaxLineBytes, skipped
}

// Add sums o into s.
func (s *Stats) Add(o Stats) {
	s.Events += o.Events
	s.Malformed += o.Malformed
	s.Missing += o.Missing
	s.Truncated += o.Truncated
	s.TooLong += o.TooLong
}

// Rejected is how many events were lost.
func (s Stats) Rejected() int { return s.Malformed + s.Missing + s.TooLong }

// ErrNotAudit is returned for a body that is neither an EventList, an
// Event nor a JSON array.
var ErrNotAudit = errors.New("not an audit EventList, Event or JSON array of events")

// DecodeBatch decodes a webhook body: an audit.k8s.io EventList (what
// kube-apiserver's webhook backend sends), a single Event, or a JSON
// array of events. Bad items are counted and skipped; only a body that is
// none of the three fails.
func DecodeBatch(body []byte) ([]event.Audit, Stats, error) {
	var st Stats
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, st, ErrNotAudit
	}
	// The common case, a well-formed EventList, in one pass.
	if body[0] == '{' {
		var list struct {
			Kind  string        `json:"kind"`
			Items []event.Audit `json:"items"`
		}
		if err := json.Unmarshal(body, &list); err == nil && list.Kind == "EventList" {
			out := list.Items[:0]
			for _, a := range list.Items {
				if check(&a, len(a.RequestObject)+len(a.ResponseObject), &st) {
					out = append(out, a)
				}
			}
			return out, st, nil
		}
	}
	var items []json.RawMessage
	switch body[0] {
	case '[':
		if err := json.Unmarshal(body, &items); err != nil {
			return nil, st, fmt.Errorf("%w: %v", ErrNotAudit, err)
		}
	case '{':
		var list struct {
			Kind  string            `json:"kind"`
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			return nil, st, fmt.Errorf("%w: %v", ErrNotAudit, err)
		}
		switch {
		case list.Kind == "EventList" || (list.Kind == "" && list.Items != nil):
			items = list.Items
		case list.Kind == "Event" || list.Kind == "":
			items = []json.RawMessage{body}
		default:
			return nil, st, fmt.Errorf("%w: kind %q", ErrNotAudit, clip(list.Kind))
		}
	default:
		return nil, st, ErrNotAudit
	}
	out := make([]event.Audit, 0, len(items))
	for _, raw := range items {
		if a, ok := decodeOne(raw, &st); ok {
			out = append(out, a)
		}
	}
	return out, st, nil
}

// decodeOne decodes one event, counting what is wrong with it.
func decodeOne(raw []byte, st *Stats) (event.Audit, bool) {
	var a event.Audit
	if err := json.Unmarshal(raw, &a); err != nil {
		st.Malformed++
		return a, false
	}
	return a, check(&a, len(raw), st)
}

// check counts a decoded event of size bytes: false when it lacks a
// required field; over MaxEventBytes it loses its objects.
func check(a *event.Audit, size int, st *Stats) bool {
	a.Origin = nil // Vigil's to set, never the sender's
	if a.AuditID == "" || a.Verb == "" || a.Stage == "" || a.User.Username == "" {
		st.Missing++
		return false
	}
	if size > MaxEventBytes {
		a.RequestObject, a.ResponseObject = nil, nil
		if a.Annotations == nil {
			a.Annotations = map[string]string{}
		}
		a.Annotations[TruncatedAnnotation] = "true"
		st.Truncated++
	}
	st.Events++
	return true
}

// TruncatedAnnotation marks an event whose objects Vigil dropped.
const TruncatedAnnotation = "vigil.dev/truncated"

// ReadLines reads an audit log (one event per line) from r and calls fn
// for each usable event, in order. Bad lines are counted and skipped; the
// error is a read error or fn's. It returns how many bytes it consumed:
// up to the end of the last complete line, for resuming. A last line
// without a newline is read only when final (a finished or rotated file);
// otherwise it may still be being written, and is left for the next read.
func ReadLines(r io.Reader, final bool, fn func(*event.Audit) error) (Stats, int64, error) {
	var st Stats
	br := bufio.NewReaderSize(r, 64<<10)
	var offset, pending int64 // consumed; read of the current line
	var line []byte
	tooLong := false
	for {
		chunk, err := br.ReadSlice('\n')
		pending += int64(len(chunk))
		if len(chunk) > 0 && !tooLong {
			if len(line)+len(chunk) > MaxLineBytes {
				tooLong, line = true, line[:0]
			} else {
				line = append(line, chunk...)
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err != nil && !errors.Is(err, io.EOF):
			return st, offset, err
		}
		if err != nil { // EOF
			if !final || (len(line) == 0 && !tooLong) {
				return st, offset, nil // a partial line is not consumed: a tail resumes at its start
			}
		}
		if tooLong {
			st.TooLong++
		} else if l := bytes.TrimSpace(line); len(l) > 0 {
			if a, ok := decodeOne(l, &st); ok {
				if err := fn(&a); err != nil {
					return st, offset, err // the line is not consumed: a resume reads it again
				}
			}
		}
		offset, pending = offset+pending, 0
		line, tooLong = line[:0], false
		if err != nil {
			return st, offset, nil
		}
	}
}

// Open opens an audit log file for ReadLines, decompressing a .gz one.
func Open(path string) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(path, ".gz") {
		return f, nil
	}
	z, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{z, f}, nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// Event wraps an audit event for the detection engine; its time is when
// the API server reached the event's stage.
func Event(a *event.Audit) *event.Event {
	at := a.StageTimestamp
	if at.IsZero() {
		at = a.RequestReceivedTimestamp
	}
	return &event.Event{Kind: event.K8sAudit, Time: at, Audit: a}
}
