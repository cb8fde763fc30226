package audit

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

const tailTestPoll = 10 * time.Millisecond

// tailSeeds is how many randomized histories TestTailRandomized plays;
// raise it when changing the tailer (-tail-seeds=200).
var tailSeeds = flag.Int("tail-seeds", 6, "histories TestTailRandomized plays")

// tailLine is one audit log line with the given auditID.
func tailLine(id string) string {
	return fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":%q,"stage":"ResponseComplete",`+
		`"requestURI":"/api/v1/namespaces/shop/pods","verb":"list","user":{"username":"alice"},"sourceIPs":["10.0.0.8"],`+
		`"responseStatus":{"code":200},"stageTimestamp":"2026-03-01T10:00:00.234567Z"}`+"\n", id)
}

// tailLog is a log directory as kube-apiserver's lumberjack keeps it.
type tailLog struct {
	t        *testing.T
	dir      string
	path     string
	lastRot  time.Time
	rotated  []string // plain rotated files, oldest first
	deadline time.Duration
}

func newTailLog(t *testing.T) *tailLog {
	dir := t.TempDir()
	l := &tailLog{t: t, dir: dir, path: filepath.Join(dir, "audit.log"), deadline: 10 * time.Second}
	l.create()
	return l
}

func (l *tailLog) create() {
	l.t.Helper()
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		l.t.Fatal(err)
	}
	f.Close()
}

// write appends s to the live file in one write.
func (l *tailLog) write(s string) {
	l.t.Helper()
	f, err := os.OpenFile(l.path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		l.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		l.t.Fatal(err)
	}
}

func (l *tailLog) lines(ids ...string) {
	l.t.Helper()
	var b strings.Builder
	for _, id := range ids {
		b.WriteString(tailLine(id))
	}
	l.write(b.String())
}

// rotate renames the live file as lumberjack does (its name holds the
// time of the rotation, in UTC to the millisecond) and creates a new one.
// It returns the rotated file's path.
func (l *tailLog) rotate() string {
	l.t.Helper()
	now := time.Now().UTC().Truncate(time.Millisecond)
	if !now.After(l.lastRot) {
		now = l.lastRot.Add(time.Millisecond)
		time.Sleep(time.Until(now.Add(time.Millisecond)))
	}
	l.lastRot = now
	name := filepath.Join(l.dir, "audit-"+now.Format(backupTime)+".log")
	if err := os.Rename(l.path, name); err != nil {
		l.t.Fatal(err)
	}
	l.create()
	l.rotated = append(l.rotated, name)
	return name
}

// compress gzips a rotated file as lumberjack does: NAME.gz written in
// place, then NAME removed.
func (l *tailLog) compress(name string) {
	l.t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		l.t.Fatal(err)
	}
	f, err := os.Create(name + ".gz")
	if err != nil {
		l.t.Fatal(err)
	}
	z := gzip.NewWriter(f)
	if _, err := z.Write(data); err != nil {
		l.t.Fatal(err)
	}
	if err := z.Close(); err != nil {
		l.t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		l.t.Fatal(err)
	}
	if err := os.Remove(name); err != nil {
		l.t.Fatal(err)
	}
	l.rotated = slices.DeleteFunc(l.rotated, func(s string) bool { return s == name })
}

// tailRun is one Tailer.Run in the background.
type tailRun struct {
	t      *testing.T
	cancel context.CancelFunc
	done   chan struct{}
	st     TailStats
	err    error
	got    *tailGot
}

// tailGot collects the auditIDs delivered, across runs.
type tailGot struct {
	mu  sync.Mutex
	ids []string
}

func (g *tailGot) add(a *event.Audit) error {
	g.mu.Lock()
	g.ids = append(g.ids, a.AuditID)
	g.mu.Unlock()
	return nil
}

func (g *tailGot) snapshot() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.ids)
}

func (l *tailLog) tailer(state string, log *bytes.Buffer) *Tailer {
	tr := &Tailer{Path: l.path, StateFile: state, Poll: tailTestPoll}
	switch {
	case log != nil:
		tr.Log = slog.New(slog.NewTextHandler(log, nil))
	case testing.Verbose():
		tr.Log = slog.New(slog.NewTextHandler(tWriter{l.t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return tr
}

// tWriter sends the tailer's log to the test's.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func startTail(t *testing.T, tr *Tailer, got *tailGot, fn func(*event.Audit) error) *tailRun {
	t.Helper()
	if fn == nil {
		fn = got.add
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &tailRun{t: t, cancel: cancel, done: make(chan struct{}), got: got}
	go func() {
		defer close(r.done)
		r.st, r.err = tr.Run(ctx, fn)
	}()
	t.Cleanup(func() { r.stop() })
	return r
}

// stop ends the run and waits for it, bounded.
func (r *tailRun) stop() TailStats {
	r.t.Helper()
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		r.t.Fatal("Tailer.Run did not return after cancel")
	}
	if r.err != nil {
		r.t.Fatalf("Run: %v", r.err)
	}
	return r.st
}

// waitIDs waits until want has been delivered, and fails on anything else.
func waitIDs(t *testing.T, got *tailGot, want []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ids := got.snapshot()
		if len(ids) >= len(want) || time.Now().After(deadline) {
			if !slices.Equal(ids, want) {
				i := 0
				for i < len(ids) && i < len(want) && ids[i] == want[i] {
					i++
				}
				lo := max(0, i-3)
				t.Fatalf("delivered %d events, want %d; from #%d got %v, want %v",
					len(ids), len(want), lo, ids[lo:min(len(ids), i+5)], want[lo:min(len(want), i+5)])
			}
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// settle lets a few polls pass.
func settle() { time.Sleep(5 * tailTestPoll) }

func ids(prefix string, from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("%s%d", prefix, i))
	}
	return out
}

func TestTailLineInPieces(t *testing.T) {
	l := newTailLog(t)
	got := &tailGot{}
	r := startTail(t, l.tailer("", nil), got, nil)
	line := tailLine("a1")
	l.write(line[:40])
	settle()
	waitIDs(t, got, nil)
	l.write(line[40 : len(line)-1]) // all but the newline
	settle()
	waitIDs(t, got, nil)
	l.write("\n" + tailLine("a2") + tailLine("a3")[:10])
	waitIDs(t, got, []string{"a1", "a2"})
	l.write(tailLine("a3")[10:])
	waitIDs(t, got, []string{"a1", "a2", "a3"})
	st := r.stop()
	if st.Events != 3 || st.Rejected() != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTailBadLinesAreCounted(t *testing.T) {
	l := newTailLog(t)
	got := &tailGot{}
	r := startTail(t, l.tailer("", nil), got, nil)
	l.write(tailLine("a1") + "not json\n" + `{"auditID":"x"}` + "\n\n" + tailLine("a2"))
	waitIDs(t, got, []string{"a1", "a2"})
	st := r.stop()
	if st.Events != 2 || st.Malformed != 1 || st.Missing != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTailRotation(t *testing.T) {
	l := newTailLog(t)
	got := &tailGot{}
	r := startTail(t, l.tailer("", nil), got, nil)
	l.lines("a1", "a2")
	waitIDs(t, got, []string{"a1", "a2"})
	// Lines written just before the rename are read from the rotated file.
	l.lines("a3", "a4")
	l.rotate()
	l.lines("b1")
	waitIDs(t, got, []string{"a1", "a2", "a3", "a4", "b1"})
	// Two rotations between polls, the first file gzipped at once.
	l.lines("b2")
	first := l.rotate()
	l.lines("c1")
	l.compress(first)
	l.rotate()
	l.lines("d1")
	waitIDs(t, got, []string{"a1", "a2", "a3", "a4", "b1", "b2", "c1", "d1"})
	st := r.stop()
	if st.Rotations != 3 || st.LostFiles != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTailRestartReadsOnlyNewLines(t *testing.T) {
	l := newTailLog(t)
	state := filepath.Join(t.TempDir(), "tail.json")
	got := &tailGot{}
	r := startTail(t, l.tailer(state, nil), got, nil)
	l.lines("a1", "a2")
	l.write(tailLine("a3")[:20])
	waitIDs(t, got, []string{"a1", "a2"})
	r.stop()
	l.write(tailLine("a3")[20:])
	l.lines("a4")
	r = startTail(t, l.tailer(state, nil), got, nil)
	waitIDs(t, got, []string{"a1", "a2", "a3", "a4"})
	r.stop()
	r = startTail(t, l.tailer(state, nil), got, nil)
	settle()
	waitIDs(t, got, []string{"a1", "a2", "a3", "a4"})
	r.stop()
}

func TestTailGzipRotationWhileStopped(t *testing.T) {
	l := newTailLog(t)
	state := filepath.Join(t.TempDir(), "tail.json")
	got := &tailGot{}
	r := startTail(t, l.tailer(state, nil), got, nil)
	l.lines("a1", "a2")
	waitIDs(t, got, []string{"a1", "a2"})
	r.stop()
	// While stopped: more lines, a rotation gzipped at once, and another
	// still plain.
	l.lines("a3", "a4")
	l.compress(l.rotate())
	l.lines("b1")
	l.rotate()
	l.lines("c1", "c2")
	r = startTail(t, l.tailer(state, nil), got, nil)
	waitIDs(t, got, []string{"a1", "a2", "a3", "a4", "b1", "c1", "c2"})
	st := r.stop()
	if st.Rotations != 2 || st.LostFiles != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTailStopWhileReadingRotatedGzip(t *testing.T) {
	l := newTailLog(t)
	state := filepath.Join(t.TempDir(), "tail.json")
	got := &tailGot{}
	startTail(t, l.tailer(state, nil), got, nil).stop() // state: the empty live file
	want := ids("a", 1, 2000)
	l.lines(want...)
	l.compress(l.rotate())
	l.lines("b1")
	want = append(want, "b1")
	// Stop after every few events, mid-file.
	for range 50 {
		n := len(got.snapshot())
		if n == len(want) {
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		k := 0
		_, err := l.tailer(state, nil).Run(ctx, func(a *event.Audit) error {
			if k++; k == 100 || a.AuditID == "b1" {
				cancel()
			}
			return got.add(a)
		})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	waitIDs(t, got, want)
}

func TestTailRefusedEventIsOfferedAgain(t *testing.T) {
	l := newTailLog(t)
	state := filepath.Join(t.TempDir(), "tail.json")
	got := &tailGot{}
	l.lines("a1", "a2", "a3", "a4")
	refuse := errors.New("downstream full")
	_, err := l.tailer(state, nil).Run(context.Background(), func(a *event.Audit) error {
		if a.AuditID == "a3" {
			return refuse
		}
		return got.add(a)
	})
	if !errors.Is(err, refuse) {
		t.Fatalf("Run: %v, want fn's error", err)
	}
	r := startTail(t, l.tailer(state, nil), got, nil)
	waitIDs(t, got, []string{"a1", "a2", "a3", "a4"})
	r.stop()
}

func TestTailTruncation(t *testing.T) {
	l := newTailLog(t)
	state := filepath.Join(t.TempDir(), "tail.json")
	var log bytes.Buffer
	got := &tailGot{}
	r := startTail(t, l.tailer(state, nil), got, nil)
	l.lines("a1", "a2", "a3")
	waitIDs(t, got, []string{"a1", "a2", "a3"})
	// copytruncate while running: the file shrinks.
	if err := os.Truncate(l.path, 0); err != nil {
		t.Fatal(err)
	}
	settle()
	l.lines("b1")
	waitIDs(t, got, []string{"a1", "a2", "a3", "b1"})
	st := r.stop()
	if st.Truncations != 1 {
		t.Fatalf("stats %+v", st)
	}
	// While stopped: truncated and refilled past the old offset; the
	// file starts differently.
	if err := os.Truncate(l.path, 0); err != nil {
		t.Fatal(err)
	}
	l.lines(ids("c", 1, 5)...)
	r = startTail(t, l.tailer(state, &log), got, nil)
	waitIDs(t, got, append([]string{"a1", "a2", "a3", "b1"}, ids("c", 1, 5)...))
	st = r.stop()
	if st.Truncations != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Same inode, started differently, but refilled while running.
	r = startTail(t, l.tailer(state, nil), got, nil)
	settle()
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, id := range ids("d", 1, 20) {
		b.WriteString(tailLine(id))
	}
	if _, err := f.WriteString(b.String()); err != nil {
		t.Fatal(err)
	}
	f.Close()
	want := append(append([]string{"a1", "a2", "a3", "b1"}, ids("c", 1, 5)...), ids("d", 1, 20)...)
	waitIDs(t, got, want)
	if st := r.stop(); st.Truncations != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTailDeletedRotatedFileIsReported(t *testing.T) {
	l := newTailLog(t)
	state := filepath.Join(t.TempDir(), "tail.json")
	got := &tailGot{}
	r := startTail(t, l.tailer(state, nil), got, nil)
	l.lines("a1")
	l.write(tailLine("a2")[:30]) // unread when stopped
	waitIDs(t, got, []string{"a1"})
	r.stop()
	l.write(tailLine("a2")[30:])
	old := l.rotate()
	if err := os.Remove(old); err != nil {
		t.Fatal(err)
	}
	l.lines("b1")
	var log bytes.Buffer
	r = startTail(t, l.tailer(state, &log), got, nil)
	waitIDs(t, got, []string{"a1", "b1"})
	st := r.stop()
	if st.LostFiles != 1 || st.LostBytes != 30 {
		t.Fatalf("stats %+v: want one lost file, 30 bytes known unread", st)
	}
	if !strings.Contains(log.String(), "lost") || !strings.Contains(log.String(), "unread_bytes_at_least=30") {
		t.Fatalf("log %q: want a warning saying what was lost", log.String())
	}
}

func TestTailStateForAnotherLogIsIgnored(t *testing.T) {
	l := newTailLog(t)
	state := filepath.Join(t.TempDir(), "tail.json")
	if err := os.WriteFile(state, []byte(`{"path":"/elsewhere/audit.log","inode":1,"offset":99999}`), 0o600); err != nil {
		t.Fatal(err)
	}
	l.lines("a1")
	got := &tailGot{}
	r := startTail(t, l.tailer(state, nil), got, nil)
	waitIDs(t, got, []string{"a1"})
	r.stop()
}

func TestTailWaitsForTheLog(t *testing.T) {
	l := newTailLog(t)
	if err := os.Remove(l.path); err != nil {
		t.Fatal(err)
	}
	got := &tailGot{}
	r := startTail(t, l.tailer("", nil), got, nil)
	settle()
	l.create()
	l.lines("a1")
	waitIDs(t, got, []string{"a1"})
	r.stop()
}

// TestTailRandomized interleaves writes (lines split across writes),
// rotations, gzipping and restarts, and checks every event is delivered
// exactly once, in order.
func TestTailRandomized(t *testing.T) {
	for seed := range uint64(*tailSeeds) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(seed, 42))
			l := newTailLog(t)
			state := filepath.Join(t.TempDir(), "tail.json")
			got := &tailGot{}
			var want []string
			// A first start reads only the live file: have the state
			// record the empty log before anything is written.
			startTail(t, l.tailer(state, nil), got, nil).stop()
			r := startTail(t, l.tailer(state, nil), got, nil)
			pending := "" // the rest of a line partly written
			var trace []string
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("operations:\n%s", strings.Join(trace, "\n"))
				}
			})
			next := 0
			for range 300 {
				switch op := rnd.IntN(100); {
				case op < 55: // write: finish a pending line, then lines, maybe a piece of one more
					var b strings.Builder
					b.WriteString(pending)
					pending = ""
					for range rnd.IntN(5) {
						next++
						id := fmt.Sprintf("e%d", next)
						want = append(want, id)
						b.WriteString(tailLine(id))
					}
					if rnd.IntN(3) == 0 {
						next++
						id := fmt.Sprintf("e%d", next)
						want = append(want, id)
						line := tailLine(id)
						cut := 1 + rnd.IntN(len(line)-1)
						b.WriteString(line[:cut])
						pending = line[cut:]
					}
					if b.Len() > 0 {
						l.write(b.String())
						trace = append(trace, fmt.Sprintf("write through e%d", next))
					}
				case op < 65 && pending == "": // lumberjack rotates between lines
					name := l.rotate()
					trace = append(trace, "rotate "+filepath.Base(name))
					if rnd.IntN(3) == 0 {
						l.compress(name)
						trace = append(trace, "gzip it")
					}
				case op < 72 && len(l.rotated) > 0: // gzip an older rotated file
					name := l.rotated[rnd.IntN(len(l.rotated))]
					l.compress(name)
					trace = append(trace, "gzip "+filepath.Base(name))
				case op < 85: // start or stop
					if r == nil {
						r = startTail(t, l.tailer(state, nil), got, nil)
						trace = append(trace, "start")
					} else {
						r.stop()
						r = nil
						data, _ := os.ReadFile(state)
						trace = append(trace, fmt.Sprintf("stop after %d: %s", len(got.snapshot()), bytes.TrimSpace(data)))
					}
				default:
					time.Sleep(time.Duration(rnd.IntN(3)) * tailTestPoll)
				}
			}
			l.write(pending)
			if r == nil {
				r = startTail(t, l.tailer(state, nil), got, nil)
			}
			waitIDs(t, got, want)
			settle()
			waitIDs(t, got, want)
			if st := r.stop(); st.LostFiles != 0 || st.Rejected() != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}
