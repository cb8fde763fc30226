package audit

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// ev is one audit event as kube-apiserver writes it, with extra fields
// (JSON members, without braces) spliced in.
func ev(id, verb, user string, extra ...string) string {
	s := fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":%q,"stage":"ResponseComplete",`+
		`"requestURI":"/api/v1/namespaces/shop/pods","verb":%q,"user":{"username":%q,"groups":["system:authenticated"]},`+
		`"sourceIPs":["10.0.0.8"],"userAgent":"kubectl/v1.36.3","objectRef":{"resource":"pods","namespace":"shop","apiVersion":"v1"},`+
		`"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-03-01T10:00:00.123456Z","stageTimestamp":"2026-03-01T10:00:00.234567Z"`,
		id, verb, user)
	for _, e := range extra {
		s += "," + e
	}
	return s + "}"
}

func eventList(items ...string) string {
	return `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[` + strings.Join(items, ",") + `]}`
}

func TestDecodeBatch(t *testing.T) {
	good := ev("a-1", "list", "alice")
	noUser := `{"auditID":"a-2","stage":"ResponseComplete","verb":"get","user":{}}`
	for _, tc := range []struct {
		name  string
		body  string
		ids   []string // auditIDs decoded, in order
		stats Stats
	}{
		{"EventList, one malformed, one missing user",
			eventList(good, `{"auditID":42,"verb":"get"}`, noUser), []string{"a-1"}, Stats{Events: 1, Malformed: 1, Missing: 1}},
		{"EventList, items of every wrong JSON type",
			eventList(`"x"`, `7`, `[]`, `true`, `null`, good), []string{"a-1"}, Stats{Events: 1, Malformed: 4, Missing: 1}},
		{"EventList without kind", `{"items":[` + good + `]}`, []string{"a-1"}, Stats{Events: 1}},
		{"empty EventList", eventList(), nil, Stats{}},
		{"EventList without items", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1"}`, nil, Stats{}},
		{"single Event", good, []string{"a-1"}, Stats{Events: 1}},
		{"single Event without kind", strings.Replace(good, `"kind":"Event",`, "", 1), []string{"a-1"}, Stats{Events: 1}},
		{"single Event, whitespace around", "\n\t " + good + "\r\n", []string{"a-1"}, Stats{Events: 1}},
		{"single incomplete Event", `{"kind":"Event","auditID":"x"}`, nil, Stats{Missing: 1}},
		{"JSON array", "[" + good + "," + ev("a-3", "create", "bob") + "," + noUser + "]", []string{"a-1", "a-3"}, Stats{Events: 2, Missing: 1}},
		{"empty JSON array", "[]", nil, Stats{}},
		{"missing verb", `[{"auditID":"x","stage":"ResponseComplete","user":{"username":"u"}}]`, nil, Stats{Missing: 1}},
		{"missing stage", `[{"auditID":"x","verb":"get","user":{"username":"u"}}]`, nil, Stats{Missing: 1}},
		{"missing auditID", `[{"verb":"get","stage":"ResponseComplete","user":{"username":"u"}}]`, nil, Stats{Missing: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			events, st, err := DecodeBatch([]byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if st != tc.stats {
				t.Errorf("stats %+v, want %+v", st, tc.stats)
			}
			var ids []string
			for _, e := range events {
				ids = append(ids, e.AuditID)
			}
			if strings.Join(ids, ",") != strings.Join(tc.ids, ",") {
				t.Errorf("events %v, want %v", ids, tc.ids)
			}
			if st.Events != len(events) {
				t.Errorf("Stats.Events %d, %d events returned", st.Events, len(events))
			}
		})
	}
}

func TestDecodeBatchNotAudit(t *testing.T) {
	for _, body := range []string{
		``, `   `, "\n", `null`, `42`, `-1`, `"EventList"`, `true`,
		`{"kind":"Pod"}`, `{"kind":"Pod","apiVersion":"v1","items":[]}`, `{"kind":"EventList"`, `[{"auditID":"x"}`, `{"items":7}`,
		`<html>`, "\xef\xbb\xbf" + `{"kind":"EventList","items":[]}`,
	} {
		events, st, err := DecodeBatch([]byte(body))
		if !errors.Is(err, ErrNotAudit) {
			t.Errorf("%q: err %v, want ErrNotAudit", body, err)
		}
		if events != nil || st != (Stats{}) {
			t.Errorf("%q: events %v, stats %+v with the error", body, events, st)
		}
	}
	// The kind named in the error is clipped.
	_, _, err := DecodeBatch([]byte(`{"kind":"` + strings.Repeat("K", 10000) + `"}`))
	if !errors.Is(err, ErrNotAudit) || len(err.Error()) > 200 {
		t.Fatalf("long kind: %d-byte error %.80v", len(err.Error()), err)
	}
}

func TestDecodeBatchTruncates(t *testing.T) {
	huge := `"requestObject":{"kind":"ConfigMap","data":{"big":"` + strings.Repeat("x", MaxEventBytes) + `"}},` +
		`"responseObject":{"kind":"ConfigMap"},"annotations":{"authorization.k8s.io/decision":"allow"},` +
		`"objectRef":{"resource":"configmaps","namespace":"shop","name":"big"}`
	// objectRef appears twice: the later one wins, as for the API server's JSON decoder.
	body := eventList(ev("big-1", "create", "alice", huge), ev("small-1", "create", "alice", `"requestObject":{"kind":"ConfigMap"}`))
	events, st, err := DecodeBatch([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Stats{Events: 2, Truncated: 1}); st != want {
		t.Fatalf("stats %+v, want %+v", st, want)
	}
	if st.Rejected() != 0 {
		t.Errorf("Rejected %d: a truncated event is not lost", st.Rejected())
	}
	big := events[0]
	if big.AuditID != "big-1" || big.Verb != "create" || big.User.Username != "alice" || big.ObjectRef == nil ||
		big.ObjectRef.Name != "big" || big.ResponseStatus == nil || big.ResponseStatus.Code != 200 || len(big.SourceIPs) != 1 {
		t.Errorf("metadata lost: %+v", big)
	}
	if big.RequestObject != nil || big.ResponseObject != nil {
		t.Errorf("objects kept: %d and %d bytes", len(big.RequestObject), len(big.ResponseObject))
	}
	if big.Annotations[TruncatedAnnotation] != "true" || big.Annotations["authorization.k8s.io/decision"] != "allow" {
		t.Errorf("annotations %v", big.Annotations)
	}
	if ObjectOf(&big) != nil {
		t.Error("an object from a truncated event")
	}
	small := events[1]
	if small.Annotations[TruncatedAnnotation] != "" || string(small.RequestObject) != `{"kind":"ConfigMap"}` {
		t.Errorf("small event: annotations %v, request %s", small.Annotations, small.RequestObject)
	}

	// Without annotations of its own, it gets a map.
	e, st, err := DecodeBatch([]byte(ev("big-2", "create", "alice", `"requestObject":{"x":"`+strings.Repeat("y", MaxEventBytes)+`"}`)))
	if err != nil || st.Truncated != 1 || len(e) != 1 || e[0].Annotations[TruncatedAnnotation] != "true" {
		t.Fatalf("err %v, stats %+v, annotations %v", err, st, e[0].Annotations)
	}
}

func TestDecodeBatchTimestamps(t *testing.T) {
	events, _, err := DecodeBatch([]byte(ev("ts", "get", "alice")))
	if err != nil || len(events) != 1 {
		t.Fatal(err, len(events))
	}
	a := events[0]
	want := time.Date(2026, 3, 1, 10, 0, 0, 123456000, time.UTC)
	if !a.RequestReceivedTimestamp.Equal(want) || !a.StageTimestamp.Equal(want.Add(111111*time.Microsecond)) {
		t.Fatalf("timestamps %v %v", a.RequestReceivedTimestamp, a.StageTimestamp)
	}
	// The engine's event is at the stage time, or at the receipt without one.
	if e := Event(&a); e.Kind != event.K8sAudit || !e.Time.Equal(a.StageTimestamp) || e.Audit != &a {
		t.Fatalf("Event: %+v", e)
	}
	a.StageTimestamp = time.Time{}
	if e := Event(&a); !e.Time.Equal(want) {
		t.Fatalf("Event without stage time: %v", e.Time)
	}
	// Other offsets and precisions.
	for _, ts := range []string{"2026-03-01T11:00:00+01:00", "2026-03-01T10:00:00.000000001Z", "2026-03-01T10:00:00Z"} {
		b := strings.Replace(ev("t", "get", "u"), "2026-03-01T10:00:00.234567Z", ts, 1)
		events, st, err := DecodeBatch([]byte(b))
		if err != nil || st.Events != 1 || events[0].StageTimestamp.Sub(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)) > time.Microsecond {
			t.Errorf("%s: err %v, stats %+v, %v", ts, err, st, events)
		}
	}
	// A timestamp that is not one makes the event malformed, not the batch.
	b := strings.Replace(ev("t", "get", "u"), "2026-03-01T10:00:00.234567Z", "yesterday", 1)
	if events, st, err := DecodeBatch([]byte(eventList(b, ev("ok", "get", "u")))); err != nil || st != (Stats{Events: 1, Malformed: 1}) || events[0].AuditID != "ok" {
		t.Fatalf("bad timestamp: err %v, stats %+v", err, st)
	}
}

// lines collects the auditIDs ReadLines passes to fn.
func readAll(t *testing.T, r io.Reader, final bool) ([]string, Stats, int64) {
	t.Helper()
	var ids []string
	st, off, err := ReadLines(r, final, func(a *event.Audit) error {
		ids = append(ids, a.AuditID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids, st, off
}

func TestReadLinesPartialLastLine(t *testing.T) {
	complete := ev("l1", "get", "u") + "\n" + ev("l2", "get", "u") + "\n" + ev("l3", "get", "u") + "\n"
	partial := ev("l4", "get", "u")[:40]
	input := complete + partial

	ids, st, off := readAll(t, strings.NewReader(input), false)
	if strings.Join(ids, ",") != "l1,l2,l3" || st != (Stats{Events: 3}) || off != int64(len(complete)) {
		t.Fatalf("not final: ids %v, stats %+v, offset %d (want %d)", ids, st, off, len(complete))
	}
	// Final: the partial line is read (and here it is not JSON).
	ids, st, off = readAll(t, strings.NewReader(input), true)
	if strings.Join(ids, ",") != "l1,l2,l3" || st != (Stats{Events: 3, Malformed: 1}) || off != int64(len(input)) {
		t.Fatalf("final: ids %v, stats %+v, offset %d (want %d)", ids, st, off, len(input))
	}
	// Final, with a complete event on the unterminated line.
	whole := complete + ev("l4", "get", "u")
	ids, st, off = readAll(t, strings.NewReader(whole), true)
	if strings.Join(ids, ",") != "l1,l2,l3,l4" || st != (Stats{Events: 4}) || off != int64(len(whole)) {
		t.Fatalf("final, complete last line: ids %v, stats %+v, offset %d", ids, st, off)
	}
	// Not final: nothing of a lone partial line is consumed.
	ids, st, off = readAll(t, strings.NewReader(partial), false)
	if len(ids) != 0 || st != (Stats{}) || off != 0 {
		t.Fatalf("lone partial line: ids %v, stats %+v, offset %d", ids, st, off)
	}
	// Empty input.
	for _, final := range []bool{false, true} {
		if ids, st, off := readAll(t, strings.NewReader(""), final); len(ids) != 0 || st != (Stats{}) || off != 0 {
			t.Fatalf("empty, final %v: %v %+v %d", final, ids, st, off)
		}
	}
}

func TestReadLinesResume(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	first := ev("r1", "get", "u") + "\n" + ev("r2", "get", "u") + "\n"
	l3 := ev("r3", "get", "u")
	if err := os.WriteFile(path, []byte(first+l3[:30]), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ids, _, off := readAll(t, f, false)
	f.Close()
	if strings.Join(ids, ",") != "r1,r2" || off != int64(len(first)) {
		t.Fatalf("first read: %v, offset %d", ids, off)
	}
	// The writer finishes line 3 and appends line 4.
	if err := os.WriteFile(path, []byte(first+l3+"\n"+ev("r4", "get", "u")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err = os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	ids, st, off2 := readAll(t, f, false)
	if strings.Join(ids, ",") != "r3,r4" || st != (Stats{Events: 2}) {
		t.Fatalf("resumed read: %v, %+v", ids, st)
	}
	fi, _ := f.Stat()
	if off+off2 != fi.Size() {
		t.Fatalf("offsets %d+%d, file size %d", off, off2, fi.Size())
	}
	// Nothing new: nothing read, nothing consumed.
	ids, st, off3 := readAll(t, f, false)
	if len(ids) != 0 || st != (Stats{}) || off3 != 0 {
		t.Fatalf("at the end: %v, %+v, %d", ids, st, off3)
	}
}

func TestReadLinesLimitsAndFormats(t *testing.T) {
	long := `{"auditID":"long","stage":"ResponseComplete","verb":"get","user":{"username":"u"},"requestObject":{"x":"` +
		strings.Repeat("x", MaxLineBytes) + `"}}`
	input := ev("b1", "get", "u") + "\r\n" + // CRLF
		"\n" + "   \t\r\n" + "\n" + // blank lines
		long + "\n" +
		ev("b2", "get", "u") + "\r\n" +
		"not json\n" +
		`{"auditID":"b3"}` + "\n" +
		"  " + ev("b4", "get", "u") + "  \n"
	ids, st, off := readAll(t, strings.NewReader(input), false)
	if strings.Join(ids, ",") != "b1,b2,b4" {
		t.Errorf("ids %v", ids)
	}
	if want := (Stats{Events: 3, TooLong: 1, Malformed: 1, Missing: 1}); st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
	if off != int64(len(input)) {
		t.Errorf("offset %d, want %d", off, len(input))
	}
	if st.Rejected() != 3 {
		t.Errorf("Rejected %d", st.Rejected())
	}

	// A long line still being written is not consumed; when final it is
	// skipped and counted.
	ids, st, off = readAll(t, strings.NewReader(ev("c1", "get", "u")+"\n"+long), false)
	if strings.Join(ids, ",") != "c1" || st != (Stats{Events: 1}) || off != int64(len(ev("c1", "get", "u"))+1) {
		t.Errorf("unterminated long line: %v %+v %d", ids, st, off)
	}
	in := ev("c1", "get", "u") + "\n" + long
	ids, st, off = readAll(t, strings.NewReader(in), true)
	if strings.Join(ids, ",") != "c1" || st != (Stats{Events: 1, TooLong: 1}) || off != int64(len(in)) {
		t.Errorf("final long line: %v %+v %d", ids, st, off)
	}

	// A line just under the limit is read (as a truncated event).
	fit := `{"auditID":"fit","stage":"ResponseComplete","verb":"get","user":{"username":"u"},"requestObject":{"x":"`
	fit += strings.Repeat("x", MaxLineBytes-len(fit)-len(`"}}`)-1) + `"}}`
	ids, st, _ = readAll(t, strings.NewReader(fit+"\n"), false)
	if strings.Join(ids, ",") != "fit" || st != (Stats{Events: 1, Truncated: 1}) {
		t.Errorf("line of MaxLineBytes: %v %+v", ids, st)
	}
}

func TestReadLinesErrors(t *testing.T) {
	input := ev("e1", "get", "u") + "\n" + ev("e2", "get", "u") + "\n" + ev("e3", "get", "u") + "\n"
	stop := errors.New("stop")
	var n int
	st, off, err := ReadLines(strings.NewReader(input), true, func(a *event.Audit) error {
		if n++; a.AuditID == "e2" {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 2 || st.Events != 2 {
		t.Fatalf("fn's error: err %v, %d calls, %+v", err, n, st)
	}
	if off <= 0 || off > int64(len(input)) {
		t.Fatalf("offset %d after fn's error", off)
	}
	// A read error is returned, with what was consumed before it.
	boom := errors.New("disk on fire")
	r := io.MultiReader(strings.NewReader(ev("e1", "get", "u")+"\n"+`{"partial`), &errReader{boom})
	ids := 0
	st, off, err = ReadLines(r, true, func(*event.Audit) error { ids++; return nil })
	if !errors.Is(err, boom) || ids != 1 || off != int64(len(ev("e1", "get", "u"))+1) {
		t.Fatalf("read error: err %v, %d events, offset %d", err, ids, off)
	}
}

type errReader struct{ err error }

func (r *errReader) Read([]byte) (int, error) { return 0, r.err }

// The event fn gets is its own: later lines do not overwrite it.
func TestReadLinesEventsAreOwned(t *testing.T) {
	input := ev("o1", "create", "u", `"requestObject":{"kind":"ConfigMap","metadata":{"name":"first"}}`) + "\n" +
		ev("o2", "create", "u", `"requestObject":{"kind":"Secret","metadata":{"name":"second-and-longer"}}`) + "\n"
	var kept []event.Audit
	if _, _, err := ReadLines(strings.NewReader(input), true, func(a *event.Audit) error {
		kept = append(kept, *a)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(kept) != 2 || ObjectOf(&kept[0]).Name != "first" || ObjectOf(&kept[1]).Name != "second-and-longer" {
		t.Fatalf("events share memory: %s / %s", kept[0].RequestObject, kept[1].RequestObject)
	}
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	content := ev("g1", "get", "u") + "\n" + ev("g2", "get", "u") + "\n"
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte(content))
	zw.Close()
	gz := filepath.Join(dir, "audit-2026-03-01T10-00-00.000.log.gz")
	plain := filepath.Join(dir, "audit.log")
	os.WriteFile(gz, buf.Bytes(), 0o600)
	os.WriteFile(plain, []byte(content), 0o600)
	for _, path := range []string{gz, plain} {
		f, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		ids, st, off := readAll(t, f, true)
		if err := f.Close(); err != nil {
			t.Errorf("%s: close: %v", path, err)
		}
		if strings.Join(ids, ",") != "g1,g2" || st.Events != 2 || off != int64(len(content)) {
			t.Errorf("%s: %v %+v %d", path, ids, st, off)
		}
	}
	// A .gz that is not gzip, and a missing file.
	bad := filepath.Join(dir, "bad.gz")
	os.WriteFile(bad, []byte(content), 0o600)
	if f, err := Open(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("not gzip: %v", err)
		if f != nil {
			f.Close()
		}
	}
	if _, err := Open(filepath.Join(dir, "nope.log")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	// A truncated gzip file is a read error, not silently short.
	cut := filepath.Join(dir, "cut.log.gz")
	os.WriteFile(cut, buf.Bytes()[:buf.Len()-10], 0o600)
	f, err := Open(cut)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, _, err := ReadLines(f, true, func(*event.Audit) error { return nil }); err == nil {
		t.Error("truncated gzip read without error")
	}
}

func TestStatsAdd(t *testing.T) {
	s := Stats{Events: 1, Malformed: 2, Missing: 3, Truncated: 4, TooLong: 5}
	s.Add(Stats{Events: 10, Malformed: 20, Missing: 30, Truncated: 40, TooLong: 50})
	if s != (Stats{Events: 11, Malformed: 22, Missing: 33, Truncated: 44, TooLong: 55}) || s.Rejected() != 22+33+55 {
		t.Fatalf("%+v, rejected %d", s, s.Rejected())
	}
}
