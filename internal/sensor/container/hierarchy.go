package container

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// fileIDKernfs is the file handle type of kernfs inodes, cgroup
// directories among them; the handle is the node's 64-bit id, which is
// the cgroup id the eBPF programs record.
const fileIDKernfs = 0xfe

// lookup is the outcome of mapping a cgroup id to a path.
type lookup int

const (
	// found: the id is the directory at the path.
	found lookup = iota
	// gone: no directory has the id any more. Cgroup ids are not reused
	// while the machine runs, so this is final.
	gone
	// unknown: the id could not be mapped now (a walk was rate-limited,
	// a transient error); asking again later may succeed.
	unknown
)

// pathEntry caches one id: its cgroup path, or ok false for gone.
type pathEntry struct {
	path string
	ok   bool
}

// hierarchy maps the cgroup ids of one mounted hierarchy to paths: by
// file handle (one open_by_handle_at) where the kernel and our
// capabilities allow, else by walking the mount and comparing inodes, at
// most once per rewalk interval.
type hierarchy struct {
	Mount
	paths   *cache[uint64, pathEntry]
	handles atomic.Bool
	rewalk  time.Duration
	now     func() time.Time

	walkMu   sync.Mutex
	lastWalk time.Time
}

// newHierarchy returns the hierarchy at m. The error, if any, says why
// file handles cannot be used and the hierarchy will be walked instead.
func newHierarchy(m Mount, size int, rewalk time.Duration, now func() time.Time) (*hierarchy, error) {
	m.Path = filepath.Clean(m.Path)
	h := &hierarchy{Mount: m, paths: newCache[uint64, pathEntry](size), rewalk: rewalk, now: now}
	err := h.probeHandles()
	h.handles.Store(err == nil)
	return h, err
}

// probeHandles checks that the mount's root has a kernfs file handle
// whose id is its inode number, and that it can be opened by it (which
// takes CAP_DAC_READ_SEARCH).
func (h *hierarchy) probeHandles() error {
	fh, _, err := unix.NameToHandleAt(unix.AT_FDCWD, h.Path, 0)
	if err != nil {
		return fmt.Errorf("name_to_handle_at %s: %w", h.Path, err)
	}
	if fh.Type() != fileIDKernfs || fh.Size() != 8 {
		return fmt.Errorf("%s: file handle of type %#x and %d bytes, want kernfs (%#x, 8)", h.Path, fh.Type(), fh.Size(), fileIDKernfs)
	}
	var st unix.Stat_t
	if err := unix.Stat(h.Path, &st); err != nil {
		return fmt.Errorf("stat %s: %w", h.Path, err)
	}
	if id := binary.NativeEndian.Uint64(fh.Bytes()); id != st.Ino {
		return fmt.Errorf("%s: file handle id %d is not the inode number %d", h.Path, id, st.Ino)
	}
	if _, res, err := h.byHandle(st.Ino); res != found {
		return fmt.Errorf("open_by_handle_at %s: %w", h.Path, err)
	}
	return nil
}

// path returns the cgroup path of the directory whose id is id.
func (h *hierarchy) path(id uint64) (string, lookup) {
	if e, ok := h.paths.get(id); ok {
		if e.ok {
			return e.path, found
		}
		return "", gone
	}
	if h.handles.Load() {
		p, res, err := h.byHandle(id)
		if res != unknown {
			h.paths.put(id, pathEntry{p, res == found})
			return p, res
		}
		if permanent(err) {
			h.handles.Store(false)
		}
	}
	return h.walk(id)
}

// byHandle opens the directory with id by file handle and reads its path
// back from /proc/self/fd.
func (h *hierarchy) byHandle(id uint64) (string, lookup, error) {
	mfd, err := unix.Open(h.Path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", unknown, fmt.Errorf("open %s: %w", h.Path, err)
	}
	defer unix.Close(mfd)
	var b [8]byte
	binary.NativeEndian.PutUint64(b[:], id)
	fd, err := unix.OpenByHandleAt(mfd, unix.NewFileHandle(fileIDKernfs, b[:]), unix.O_PATH|unix.O_CLOEXEC)
	switch {
	case errors.Is(err, unix.ESTALE), errors.Is(err, unix.ENOENT):
		return "", gone, nil
	case err != nil:
		return "", unknown, err
	}
	defer unix.Close(fd)
	abs, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "", unknown, err
	}
	if strings.HasSuffix(abs, " (deleted)") {
		return "", gone, nil
	}
	p, ok := h.cgroupPath(abs)
	if !ok {
		// The directory is outside what this mount shows (a bind-mounted
		// sub-tree); a walk will tell.
		return "", unknown, fmt.Errorf("cgroup %d is at %s, outside %s", id, abs, h.Path)
	}
	return p, found, nil
}

// permanent reports whether a file handle error will recur for every id:
// no kernel support, or no CAP_DAC_READ_SEARCH.
func permanent(err error) bool {
	for _, e := range []error{unix.EPERM, unix.EACCES, unix.EOPNOTSUPP, unix.EINVAL, unix.ENOSYS, unix.EBADF} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// walk searches the whole mount for the directory with id, caching every
// directory it passes. A miss is final (gone): the process was in the
// cgroup before the walk started, so the cgroup was removed meanwhile.
// Walks are rate-limited; a rate-limited miss is unknown.
func (h *hierarchy) walk(id uint64) (string, lookup) {
	h.walkMu.Lock()
	defer h.walkMu.Unlock()
	if e, ok := h.paths.get(id); ok { // a walk that just finished saw it
		if e.ok {
			return e.path, found
		}
		return "", gone
	}
	now := h.now()
	if !h.lastWalk.IsZero() && now.Sub(h.lastWalk) < h.rewalk {
		return "", unknown
	}
	h.lastWalk = now
	var (
		match    string
		res      = gone
		rootGone bool
	)
	filepath.WalkDir(h.Path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			rootGone = rootGone || p == h.Path
			return nil // cgroups come and go during the walk
		}
		if !d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		cg, ok := h.cgroupPath(p)
		if !ok {
			return nil
		}
		h.paths.put(st.Ino, pathEntry{cg, true})
		if st.Ino == id {
			match, res = cg, found
		}
		return nil
	})
	if rootGone {
		return "", unknown
	}
	h.paths.put(id, pathEntry{match, res == found})
	return match, res
}

// cgroupPath turns a path under the mount into a cgroup path.
func (h *hierarchy) cgroupPath(abs string) (string, bool) {
	rel, ok := strings.CutPrefix(abs, h.Path)
	if !ok || rel != "" && !strings.HasPrefix(rel, "/") {
		return "", false
	}
	return path.Join("/", h.Root, rel), true
}

// dir turns a cgroup path into the directory under the mount, if the
// mount shows it.
func (h *hierarchy) dir(cgroupPath string) (string, bool) {
	root := path.Join("/", h.Root)
	rel, ok := strings.CutPrefix(path.Join("/", cgroupPath), root)
	if !ok || root != "/" && rel != "" && !strings.HasPrefix(rel, "/") {
		return "", false
	}
	return filepath.Join(h.Path, rel), true
}

// inode returns the id of the directory at cgroupPath, 0 if there is none.
func (h *hierarchy) inode(cgroupPath string) uint64 {
	dir, ok := h.dir(cgroupPath)
	if !ok {
		return 0
	}
	var st unix.Stat_t
	if unix.Stat(dir, &st) != nil {
		return 0
	}
	return st.Ino
}
