package audit

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// Tailer follows a live audit log as kube-apiserver's log backend writes
// it (--audit-log-path), like tail -F: it reads each complete line once,
// follows lumberjack's rotation (the live file renamed to
// PREFIX-<time>.EXT in the same directory, then perhaps gzipped to
// PREFIX-<time>.EXT.gz, and a new live file created) and, with a
// StateFile, resumes where it stopped after a restart: the rest of the
// file it was reading (renamed or gzipped since), every file rotated
// after it, then the live file.
//
// Files are told apart by inode and by a digest of their first bytes (an
// audit log's first line holds a unique auditID), which also finds a file
// that was gzipped while the tailer was stopped. A file copied and
// truncated in place (logrotate's copytruncate) is read again from its
// start; the lines written between the last read and the truncation are in
// the copy, which is not read.
type Tailer struct {
	// Path is the live log, as given to --audit-log-path.
	Path string
	// StateFile records the position (JSON, replaced atomically) after fn
	// has accepted the events before it: at most every second and when Run
	// returns. Empty: no state; each Run starts at the beginning of the
	// live file. A state written for another Path is ignored.
	StateFile string
	// Poll is how often the log is checked for new lines and rotation
	// (default 250ms).
	Poll time.Duration
	// Log receives rotations, truncations and losses; nil discards them.
	Log *slog.Logger
}

// TailStats counts what a Tailer read and what it could not.
type TailStats struct {
	Stats
	// Rotations counts rotated files read to their end and left.
	Rotations int `json:"rotations"`
	// Truncations counts the live file shrinking or being rewritten in
	// place; the lines written since the last read before it are lost.
	Truncations int `json:"truncations"`
	// LostFiles counts rotated files removed before they were read to
	// the end; LostBytes is a lower bound of what they held unread.
	LostFiles int   `json:"lost_files"`
	LostBytes int64 `json:"lost_bytes"`
}

// DefaultPoll is Tailer.Poll's default.
const DefaultPoll = 250 * time.Millisecond

const (
	// headBytes is how much of a file's start identifies it.
	headBytes = 1024
	// saveEvery bounds how often the state file is written.
	saveEvery = time.Second
	// backupTime is lumberjack's timestamp in rotated file names (UTC).
	backupTime = "2006-01-02T15-04-05.000"
	// readBuffer is ReadLines' buffer size: a *bufio.Reader of at least
	// this size is used by ReadLines as is, which lets the tailer know how
	// far ReadLines has consumed when it calls fn.
	readBuffer = 64 << 10
)

// errStop ends a read when ctx is done, after fn accepted an event.
var errStop = errors.New("stopped")

// tailState is the state file.
type tailState struct {
	Path string `json:"path"`
	// Rotated is the base name of the rotated file being finished; empty
	// while on the live file.
	Rotated string `json:"rotated,omitempty"`
	Inode   uint64 `json:"inode"`
	// Offset is where the next line starts, in uncompressed bytes.
	Offset int64 `json:"offset"`
	// Size is the file's size when last looked at.
	Size int64 `json:"size"`
	// Head is the SHA-256 of the file's first HeadLen bytes.
	Head    string `json:"head,omitempty"`
	HeadLen int    `json:"head_len,omitempty"`
	// After is the time in the name of the last rotated file before the
	// live one (with no file open: the last one read). The live file's
	// own rotated name will be later; comparing names, not clocks, keeps
	// this right whatever our clock does.
	After time.Time `json:"after,omitzero"`
}

// cursor is the file being read.
type cursor struct {
	rotated string        // base name of a rotated file; "" for the live file
	ts      time.Time     // a rotated file's time
	f       *os.File      // a plain file (live or rotated)
	z       io.ReadCloser // a gzipped rotated file, positioned at off
	fi      os.FileInfo   // f's identity
	ino     uint64
	off     int64
	size    int64
	head    string
	headLen int
	// after bounds the names of the files rotated before the live file.
	after time.Time
}

func (c *cursor) close() {
	if c.f != nil {
		c.f.Close()
	}
	if c.z != nil {
		c.z.Close()
	}
}

func (c *cursor) state(path string) tailState {
	return tailState{Path: path, Rotated: c.rotated, Inode: c.ino, Offset: c.off, Size: c.size,
		Head: c.head, HeadLen: c.headLen, After: c.after}
}

// tail is one Run.
type tail struct {
	t   *Tailer
	ctx context.Context
	fn  func(*event.Audit) error
	log *slog.Logger
	dir string
	// prefix and ext split the live file's name as lumberjack does.
	prefix, ext string

	cur *cursor
	// With no cursor: fresh means start with the live file (the rotated
	// ones are history); else the next file is the first rotated after
	// `after`, then the live one.
	fresh     bool
	after     time.Time
	waitNoted bool

	br        *bufio.Reader
	count     countingReader
	base      int64 // file offset where br starts
	fnErr     error
	st        TailStats
	saved     tailState
	lastSave  time.Time
	saveErred bool
}

// Run follows the log and calls fn for each event, in order, until ctx is
// done (then it returns nil) or fn returns an error (then Run returns it,
// and the event fn refused is offered first after a restart). Lines that
// are not usable events are counted and skipped. fn is called from Run's
// goroutine only. A missing live file is waited for. Memory is bounded by
// the longest line (MaxLineBytes). The error is fn's, or a failure to read
// the state file; reading errors on the log are logged and retried.
func (t *Tailer) Run(ctx context.Context, fn func(*event.Audit) error) (TailStats, error) {
	poll := t.Poll
	if poll <= 0 {
		poll = DefaultPoll
	}
	log := t.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	base := filepath.Base(t.Path)
	ext := filepath.Ext(base)
	tl := &tail{t: t, ctx: ctx, fn: fn, log: log.With("path", t.Path), dir: filepath.Dir(t.Path),
		prefix: strings.TrimSuffix(base, ext), ext: ext, br: bufio.NewReaderSize(nil, readBuffer)}
	defer func() {
		if tl.cur != nil {
			tl.cur.close()
		}
	}()
	if err := tl.resume(); err != nil {
		return tl.st, err
	}
	timer := time.NewTimer(poll)
	defer timer.Stop()
	for {
		moved, err := tl.step()
		if err != nil && !errors.Is(err, errStop) {
			tl.save(true)
			return tl.st, err
		}
		if err != nil || ctx.Err() != nil {
			break
		}
		tl.save(false)
		if moved {
			continue
		}
		timer.Reset(poll)
		select {
		case <-ctx.Done():
		case <-timer.C:
		}
		if ctx.Err() != nil {
			break
		}
	}
	tl.save(true)
	return tl.st, nil
}

// resume positions the tailer from the state file.
func (tl *tail) resume() error {
	tl.fresh = true
	if tl.t.StateFile == "" {
		return nil
	}
	data, err := os.ReadFile(tl.t.StateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read tail state: %w", err)
	}
	var s tailState
	if err := json.Unmarshal(data, &s); err != nil || s.Offset < 0 {
		tl.log.Warn("tail state unreadable; starting at the beginning of the live file", "state", tl.t.StateFile, "err", err)
		return nil
	}
	if s.Path != tl.t.Path {
		tl.log.Warn("tail state is for another log; starting at the beginning of the live file", "state", tl.t.StateFile, "state_path", s.Path)
		return nil
	}
	tl.saved = s
	tl.fresh = false
	if s.Rotated == "" && s.Offset == 0 {
		// Nothing read from the file yet (or none open): whatever became
		// of it, it is the first file rotated after s.After, or still the
		// live file. Its inode may have been reused, and the start of a
		// file without a complete line does not tell it apart.
		tl.after = s.After
		return nil
	}
	if s.Rotated != "" {
		ts, ok := tl.backupTime(s.Rotated)
		if !ok {
			tl.log.Warn("tail state names a file that is not a rotated log; starting at the beginning of the live file", "rotated", s.Rotated)
			tl.fresh = true
			return nil
		}
		if c := tl.openRotated(backup{name: s.Rotated, ts: ts, gz: strings.HasSuffix(s.Rotated, ".gz")}, s); c != nil {
			tl.cur = c
			tl.log.Debug("resuming a rotated file", "file", c.rotated, "offset", s.Offset)
			return nil
		}
		tl.lost(s, s.Rotated)
		tl.after = ts
		return nil
	}
	// Past its first line, a file is known by its inode and first bytes.
	rewritten := false
	if c := tl.openLive(); c != nil {
		if c.ino == s.Inode && c.matches(s) {
			c.off, c.after = s.Offset, s.After
			tl.cur = c
			tl.log.Debug("resuming the live file", "offset", s.Offset)
			return nil
		}
		rewritten = c.ino == s.Inode && s.Inode != 0
		c.close()
	}
	// The file was rotated (or replaced) while we were stopped: find it
	// among the rotated files, by inode while it is plain, by its first
	// bytes once gzipped.
	tl.after = s.After
	for _, b := range tl.backups() {
		c := tl.openRotated(b, s)
		if c != nil && ((c.z != nil && s.HeadLen > 0) || (c.f != nil && c.ino == s.Inode)) {
			tl.cur = c
			tl.log.Debug("resuming a file rotated while stopped", "file", c.rotated, "offset", s.Offset)
			return nil
		}
		if c != nil {
			c.close()
		}
	}
	if rewritten {
		tl.st.Truncations++
	}
	tl.lost(s, filepath.Base(tl.t.Path))
	return nil
}

// lost reports that the rest of the file s describes is gone.
func (tl *tail) lost(s tailState, name string) {
	unread := max(0, s.Size-s.Offset)
	tl.st.LostFiles++
	tl.st.LostBytes += unread
	tl.log.Warn("audit log file removed or replaced before it was read to the end: its unread events are lost",
		"file", name, "offset", s.Offset, "unread_bytes_at_least", unread)
}

// step reads what is new and follows rotation. moved is true when it
// changed files (call again at once).
func (tl *tail) step() (moved bool, err error) {
	c := tl.cur
	switch {
	case c == nil && tl.fresh:
		// Start with the live file: what was rotated before is history.
		if bs := tl.backups(); len(bs) > 0 {
			tl.after = bs[len(bs)-1].ts
		}
		tl.fresh = false
		return tl.advance(), nil
	case c == nil:
		return tl.advance(), nil
	case c.rotated != "":
		if err := tl.read(true); err != nil {
			return false, err
		}
		tl.finished()
		tl.after = c.ts
		return true, nil
	}
	pfi, err := os.Stat(tl.t.Path)
	if err != nil {
		// Between lumberjack's rename and its create, or logging stopped:
		// keep reading what we have.
		return false, tl.read(false)
	}
	if !os.SameFile(pfi, c.fi) {
		// Rotated: lumberjack closes the file before renaming it, so it
		// is complete.
		if err := tl.read(true); err != nil {
			return false, err
		}
		tl.finished()
		tl.after = tl.rotatedTime(c)
		tl.log.Debug("the live file was rotated", "at", tl.after)
		return true, nil
	}
	fi, err := c.f.Stat()
	if err != nil {
		tl.log.Warn("stat audit log", "err", err)
		return false, nil
	}
	if fi.Size() < c.off || (fi.Size() != c.size && !tl.sameHead(c)) {
		tl.st.Truncations++
		tl.log.Warn("audit log truncated or rewritten in place: reading it from the start; lines written since the last read are lost",
			"offset", c.off, "size", fi.Size())
		c.off, c.head, c.headLen = 0, "", 0
	}
	c.size = fi.Size()
	return false, tl.read(false)
}

// finished closes a file read to its end.
func (tl *tail) finished() {
	tl.st.Rotations++
	tl.cur.close()
	tl.cur = nil
}

func (tl *tail) noteWaiting() {
	if !tl.waitNoted {
		tl.waitNoted = true
		tl.log.Info("waiting for the audit log to appear")
	}
}

// rotatedTime finds the time in the rotated name of c, the live file just
// rotated: by inode, or by its first bytes if already gzipped. If the file
// is gone, the files rotated after it follow c.after.
func (tl *tail) rotatedTime(c *cursor) time.Time {
	for _, b := range tl.backups() {
		path := filepath.Join(tl.dir, b.name)
		if !b.gz {
			fi, err := os.Stat(path)
			if err == nil {
				if os.SameFile(fi, c.fi) {
					return b.ts
				}
				continue
			}
			path += ".gz" // gzipped since the listing
		}
		if c.headLen > 0 {
			if h, n, err := headOf(path, c.headLen); err == nil && n == c.headLen && h == c.head {
				return b.ts
			}
		}
	}
	return c.after
}

// advance moves to the first rotated file after tl.after, else to the live
// file; it returns whether it found one.
func (tl *tail) advance() bool {
	for range 8 {
		if tl.ctx.Err() != nil {
			return false
		}
		var next *backup
		for _, b := range tl.backups() {
			if b.ts.After(tl.after) {
				next = &b
				break
			}
		}
		if next != nil {
			if c := tl.openRotated(*next, tailState{}); c != nil {
				tl.cur = c
				tl.log.Debug("reading a rotated file", "file", c.rotated)
				return true
			}
			tl.st.LostFiles++
			tl.st.LostBytes += next.size
			tl.log.Warn("rotated audit log removed before it was read: its events are lost", "file", next.name, "bytes", next.size)
			tl.after = next.ts
			continue
		}
		c := tl.openLive()
		if c == nil {
			tl.noteWaiting()
			return false
		}
		// A rotation between listing and opening would put a file between
		// the last rotated one and the one we opened: look again.
		if slices.ContainsFunc(tl.backups(), func(b backup) bool { return b.ts.After(tl.after) }) {
			c.close()
			continue
		}
		c.after = tl.after
		tl.cur = c
		tl.log.Debug("following the live file")
		return true
	}
	return false
}

// read reads cur from its offset to the end of what is there, calling fn
// for each complete line (each line, when final).
func (tl *tail) read(final bool) error {
	c := tl.cur
	var r io.Reader
	if c.z != nil {
		r = c.z
	} else {
		if _, err := c.f.Seek(c.off, io.SeekStart); err != nil {
			tl.log.Warn("seek audit log", "err", err)
			return nil
		}
		r = c.f
	}
	tl.base = c.off
	tl.count = countingReader{r: r}
	tl.br.Reset(&tl.count)
	st, end, err := ReadLines(tl.br, final, tl.accept)
	tl.st.Add(st)
	switch {
	case err == nil:
		c.off = tl.base + end
	case errors.Is(err, errStop):
		return err
	case tl.fnErr != nil:
		return tl.fnErr
	default:
		c.off = tl.base + end
		tl.log.Warn("read audit log", "file", c.rotated, "err", err)
	}
	if c.z != nil {
		// A gzipped file is read in one go; what it held is what it holds.
		c.size = c.off
	} else if fi, err := c.f.Stat(); err == nil {
		c.size = max(c.size, fi.Size())
	}
	c.growHead()
	return nil
}

// growHead extends the digest of a plain file's first bytes while it is
// shorter than headBytes, so that it covers at least the first line once
// a line has been read.
func (c *cursor) growHead() {
	if c.f == nil || c.headLen >= headBytes {
		return
	}
	if h, n, err := headOfFile(c.f, headBytes); err == nil && n > c.headLen {
		c.head, c.headLen = h, n
	}
}

// accept hands one event to fn and, once fn has taken it, moves the
// cursor past its line.
func (tl *tail) accept(a *event.Audit) error {
	if err := tl.fn(a); err != nil {
		tl.fnErr = err
		return err
	}
	// ReadLines reads through tl.br itself and has consumed exactly this
	// event's line.
	tl.cur.off = tl.base + tl.count.n - int64(tl.br.Buffered())
	tl.cur.growHead()
	tl.save(false)
	if tl.ctx.Err() != nil {
		return errStop
	}
	return nil
}

// save writes the state file when it changed, at most every second unless
// force.
func (tl *tail) save(force bool) {
	if tl.t.StateFile == "" || (tl.cur == nil && tl.fresh) {
		return
	}
	s := tailState{Path: tl.t.Path, After: tl.after}
	if tl.cur != nil {
		s = tl.cur.state(tl.t.Path)
	}
	if s == tl.saved || (!force && time.Since(tl.lastSave) < saveEvery) {
		return
	}
	tl.lastSave = time.Now()
	if err := writeState(tl.t.StateFile, s); err != nil {
		if !tl.saveErred {
			tl.log.Warn("could not save the tail state; a restart will read some lines again", "err", err)
		}
		tl.saveErred = true
		return
	}
	tl.saveErred = false
	tl.saved = s
}

func writeState(path string, s tailState) error {
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// openLive opens the live file, or returns nil when it is missing.
func (tl *tail) openLive() *cursor {
	f, err := os.Open(tl.t.Path)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			tl.log.Warn("open audit log", "err", err)
		}
		return nil
	}
	c, err := newCursor(f)
	if err != nil {
		f.Close()
		tl.log.Warn("open audit log", "err", err)
		return nil
	}
	return c
}

func newCursor(f *os.File) (*cursor, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	c := &cursor{f: f, fi: fi, ino: inode(fi), size: fi.Size()}
	c.head, c.headLen, err = headOfFile(f, headBytes)
	return c, err
}

// matches reports whether the file starts as the one s describes did.
func (c *cursor) matches(s tailState) bool {
	if s.HeadLen == 0 {
		return true
	}
	if c.f == nil {
		return c.headLen >= s.HeadLen // a gzipped file's head is checked on open
	}
	h, n, err := headOfFile(c.f, s.HeadLen)
	return err == nil && n == s.HeadLen && h == s.Head
}

// sameHead reports whether the live file still starts as it did.
func (tl *tail) sameHead(c *cursor) bool {
	if c.headLen == 0 {
		return true
	}
	h, n, err := headOfFile(c.f, c.headLen)
	return err != nil || (n == c.headLen && h == c.head)
}

// openRotated opens rotated file b (its .gz when the plain one is gone)
// positioned at s.Offset; nil when it is gone, or does not start as s
// says.
func (tl *tail) openRotated(b backup, s tailState) *cursor {
	names := []string{b.name}
	if !b.gz {
		names = append(names, b.name+".gz")
	}
	for _, name := range names {
		path := filepath.Join(tl.dir, name)
		if strings.HasSuffix(name, ".gz") {
			c, err := openGz(path, s)
			if err != nil {
				if !errors.Is(err, fs.ErrNotExist) {
					tl.log.Warn("open rotated audit log", "file", name, "err", err)
				}
				continue
			}
			if c == nil {
				return nil
			}
			c.rotated, c.ts = name, b.ts
			return c
		}
		f, err := os.Open(path)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				tl.log.Warn("open rotated audit log", "file", name, "err", err)
			}
			continue
		}
		c, err := newCursor(f)
		if err != nil || !c.matches(s) {
			f.Close()
			return nil
		}
		c.rotated, c.ts, c.off = name, b.ts, s.Offset
		return c
	}
	return nil
}

// openGz opens a gzipped rotated file and skips to s.Offset; a nil cursor
// means it does not start as s says.
func openGz(path string, s tailState) (*cursor, error) {
	r, err := Open(path)
	if err != nil {
		return nil, err
	}
	c := &cursor{z: r}
	if fi, err := os.Stat(path); err == nil {
		c.ino = inode(fi)
	}
	var head []byte
	if s.HeadLen > 0 {
		head = make([]byte, s.HeadLen)
		n, err := io.ReadFull(r, head)
		if (err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF)) || n < s.HeadLen || digest(head) != s.Head {
			r.Close()
			return nil, nil
		}
		c.head, c.headLen = s.Head, s.HeadLen
	}
	skip := s.Offset - int64(len(head))
	if skip < 0 {
		// Re-open: the head read went past the offset.
		r.Close()
		if r, err = Open(path); err != nil {
			return nil, err
		}
		c.z, skip = r, s.Offset
	}
	if _, err := io.CopyN(io.Discard, r, skip); err != nil && !errors.Is(err, io.EOF) {
		r.Close()
		return nil, err
	}
	c.off, c.size = s.Offset, s.Offset
	return c, nil
}

// backup is a rotated file.
type backup struct {
	name string
	ts   time.Time
	gz   bool
	size int64
}

// backups lists the rotated files of the live file, oldest first, a plain
// file before its gzipped copy (lumberjack removes the plain one once the
// copy is complete).
func (tl *tail) backups() []backup {
	entries, err := os.ReadDir(tl.dir)
	if err != nil {
		tl.log.Warn("list audit log directory", "err", err)
		return nil
	}
	var out []backup
	for _, e := range entries {
		ts, ok := tl.backupTime(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		b := backup{name: e.Name(), ts: ts, gz: strings.HasSuffix(e.Name(), ".gz")}
		if fi, err := e.Info(); err == nil {
			b.size = fi.Size()
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b backup) int {
		if c := a.ts.Compare(b.ts); c != 0 {
			return c
		}
		switch {
		case a.gz == b.gz:
			return 0
		case b.gz:
			return -1
		}
		return 1
	})
	// One entry per rotation: the plain file when both exist.
	return slices.CompactFunc(out, func(a, b backup) bool { return a.ts.Equal(b.ts) })
}

// backupTime parses lumberjack's PREFIX-<time>EXT[.gz].
func (tl *tail) backupTime(name string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(name, tl.prefix+"-")
	if !ok {
		return time.Time{}, false
	}
	rest = strings.TrimSuffix(rest, ".gz")
	rest, ok = strings.CutSuffix(rest, tl.ext)
	if !ok {
		return time.Time{}, false
	}
	ts, err := time.Parse(backupTime, rest)
	return ts, err == nil
}

// headOfFile digests the first n bytes of f, fewer if it is shorter.
func headOfFile(f *os.File, n int) (string, int, error) {
	buf := make([]byte, n)
	m, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", 0, err
	}
	if m == 0 {
		return "", 0, nil
	}
	return digest(buf[:m]), m, nil
}

// headOf digests the first n (uncompressed) bytes of a log file.
func headOf(path string, n int) (string, int, error) {
	r, err := Open(path)
	if err != nil {
		return "", 0, err
	}
	defer r.Close()
	buf := make([]byte, n)
	m, err := io.ReadFull(r, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", 0, err
	}
	return digest(buf[:m]), m, nil
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// inode is the file's inode number (0 where the system has none: files
// are then told apart by their first bytes only).
func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
