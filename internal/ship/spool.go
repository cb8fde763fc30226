package ship

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/oklog/ulid/v2"
)

// spool keeps the batches not yet acknowledged, one file per batch named
// <batch id>.json, in batch id (ULID, so creation) order. A file appears
// whole or not at all: it is written to a temporary name, synced and
// renamed. The spool is not safe for concurrent use; Client guards it.
type spool struct {
	dir     string
	max     int64
	entries []spoolEntry // oldest first
	bytes   int64
	last    ulid.ULID // highest id ever seen, so new ids sort after old ones
	lock    *os.File
}

type spoolEntry struct {
	id     ulid.ULID
	size   int64
	alerts int // -1 when not known (found on disk at open)
}

const (
	spoolExt    = ".json"
	spoolTmpPfx = ".tmp-"
	spoolLock   = ".lock"
)

// openSpool creates dir if needed, takes its lock (one client per spool),
// removes temporary files a crash left behind and indexes the batches.
func openSpool(dir string, max int64) (*spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create spool directory: %w", err)
	}
	lock, err := lockDir(filepath.Join(dir, spoolLock))
	if err != nil {
		return nil, err
	}
	s := &spool{dir: dir, max: max, lock: lock}
	des, err := os.ReadDir(dir)
	if err != nil {
		s.close()
		return nil, fmt.Errorf("read spool directory: %w", err)
	}
	for _, de := range des {
		name := de.Name()
		if strings.HasPrefix(name, spoolTmpPfx) {
			_ = os.Remove(filepath.Join(dir, name))
			continue
		}
		if !de.Type().IsRegular() || !strings.HasSuffix(name, spoolExt) {
			continue
		}
		id, err := ulid.ParseStrict(strings.TrimSuffix(name, spoolExt))
		if err != nil {
			continue
		}
		info, err := de.Info()
		if err != nil {
			continue
		}
		s.entries = append(s.entries, spoolEntry{id: id, size: info.Size(), alerts: -1})
		s.bytes += info.Size()
	}
	slices.SortFunc(s.entries, func(a, b spoolEntry) int { return a.id.Compare(b.id) })
	if n := len(s.entries); n > 0 {
		s.last = s.entries[n-1].id
	}
	return s, nil
}

func (s *spool) path(id ulid.ULID) string {
	return filepath.Join(s.dir, id.String()+spoolExt)
}

// nextID returns a fresh ULID greater than every id the spool has seen, even
// when the clock went back since those were made.
func (s *spool) nextID() ulid.ULID {
	id := ulid.Make()
	if id.Compare(s.last) <= 0 {
		id = s.last
		for i := len(id) - 1; i >= 0; i-- {
			id[i]++
			if id[i] != 0 {
				break
			}
		}
	}
	s.last = id
	return id
}

// write stores one batch durably. To stay within the bound it first drops
// the oldest batches and returns them; a batch larger than the whole bound
// is still written, after everything older was dropped.
func (s *spool) write(id ulid.ULID, data []byte, alerts int) (dropped []spoolEntry, err error) {
	for len(s.entries) > 0 && s.bytes+int64(len(data)) > s.max {
		e := s.entries[0]
		if e.alerts < 0 {
			e.alerts = s.countAlerts(e)
		}
		if err := s.remove(e.id); err != nil {
			return dropped, err
		}
		dropped = append(dropped, e)
	}
	f, err := os.CreateTemp(s.dir, spoolTmpPfx+"*")
	if err != nil {
		return dropped, fmt.Errorf("spool batch: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.path(id))
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return dropped, fmt.Errorf("spool batch: %w", err)
	}
	s.entries = append(s.entries, spoolEntry{id: id, size: int64(len(data)), alerts: alerts})
	s.bytes += int64(len(data))
	return dropped, nil
}

// oldest returns the batch to send next.
func (s *spool) oldest() (spoolEntry, bool) {
	if len(s.entries) == 0 {
		return spoolEntry{}, false
	}
	return s.entries[0], true
}

func (s *spool) read(id ulid.ULID) ([]byte, error) {
	data, err := os.ReadFile(s.path(id))
	if err != nil {
		return nil, fmt.Errorf("read spooled batch: %w", err)
	}
	return data, nil
}

// remove forgets a batch; a file already gone is not an error. The
// directory is not synced: a removal lost in a crash only resends a batch
// the server already has, which it skips by batch id.
func (s *spool) remove(id ulid.ULID) error {
	i := slices.IndexFunc(s.entries, func(e spoolEntry) bool { return e.id == id })
	if i < 0 {
		return nil
	}
	if err := os.Remove(s.path(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove spooled batch: %w", err)
	}
	s.bytes -= s.entries[i].size
	s.entries = slices.Delete(s.entries, i, i+1)
	return nil
}

// countAlerts reads a spooled batch to learn how many alerts dropping it
// loses; 0 when it cannot be read.
func (s *spool) countAlerts(e spoolEntry) int {
	data, err := os.ReadFile(s.path(e.id))
	if err != nil {
		return 0
	}
	var b struct {
		Alerts []json.RawMessage `json:"alerts"`
	}
	if json.Unmarshal(data, &b) != nil {
		return 0
	}
	return len(b.Alerts)
}

func (s *spool) close() error {
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close() // closing the descriptor releases the lock
	s.lock = nil
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
