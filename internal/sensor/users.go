package sensor

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// Users names the account behind a runtime alert: the process's uid
// looked up in the passwd file of the filesystem the process sees (the
// container's own /etc/passwd through /proc/PID/root, the node's for a
// host process). Events carry only the numeric uid; the lookup runs when
// an alert is raised, never per event, and its answers are cached per
// (container or mount namespace, uid) for a while, within a bound.
type Users struct {
	procRoot string
	ttl      time.Duration
	max      int
	now      func() time.Time

	mu    sync.Mutex
	cache map[userKey]userEntry
}

type userKey struct {
	scope string // "ctr:ID", "mnt:INODE" or "host"
	uid   uint32
}

type userEntry struct {
	name string // "" when the passwd file has no such uid
	at   time.Time
}

// Bounds of the user cache: entries expire so that an account created
// after the first lookup (by an attacker, say) is named on later alerts.
const (
	userCacheMax = 4096
	userCacheTTL = 10 * time.Minute
	// maxPasswd bounds what is read of a passwd file.
	maxPasswd = 1 << 20
)

// NewUsers returns a resolver reading processes under procRoot (the
// host's /proc, e.g. /host/proc in a pod).
func NewUsers(procRoot string) *Users {
	if procRoot == "" {
		procRoot = "/proc"
	}
	return &Users{procRoot: procRoot, ttl: userCacheTTL, max: userCacheMax, now: time.Now, cache: map[userKey]userEntry{}}
}

// Attribute sets a.User from the alert's process when the alert has a
// process and no user yet (control-plane alerts name their Kubernetes
// identity already). It leaves User nil when the name cannot be found:
// the process and every ancestor in its container are gone, or the image
// has no passwd entry for the uid. Safe for concurrent use.
func (u *Users) Attribute(a *event.Alert) {
	if u == nil || a == nil || a.User != nil || a.Process == nil {
		return
	}
	if name := u.Name(a.ContainerID, a.Process); name != "" {
		a.User = &event.User{Name: name}
	}
}

// Name returns the account name of p's uid as p's filesystem knows it, or
// "" when it cannot tell. containerID is "" for a host process.
func (u *Users) Name(containerID string, p *event.Process) string {
	key := userKey{scope: "host", uid: p.UID}
	switch {
	case containerID != "":
		key.scope = "ctr:" + containerID
	case p.MntNS != 0 && p.MntNS != u.mntNS(1):
		// Not attributed to a container but not in the node's mount
		// namespace either: its own files answer.
		key.scope = "mnt:" + strconv.FormatUint(uint64(p.MntNS), 10)
	}
	now := u.now()
	u.mu.Lock()
	e, ok := u.cache[key]
	u.mu.Unlock()
	if ok && now.Sub(e.at) < u.ttl {
		return e.name
	}
	name, found := u.lookup(key, p)
	if !found {
		return "" // no passwd file readable: do not remember, a later alert may do better
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.cache) >= u.max {
		u.evict(now)
	}
	u.cache[key] = userEntry{name: name, at: now}
	return name
}

// lookup reads the passwd file p sees. found is false when no file could
// be read (every candidate process exited, or none is in p's namespace).
func (u *Users) lookup(key userKey, p *event.Process) (name string, found bool) {
	for _, path := range u.passwdFiles(key, p) {
		data, err := readBounded(path)
		if err != nil {
			continue
		}
		return passwdName(data, p.UID), true
	}
	return "", false
}

// passwdFiles are the passwd files that answer for p, best first. For a
// host process, the node's (through init's root, which is right also when
// the sensor runs in a pod). For a container process, the one under its
// own root, then under its parent's and ancestors' (a short-lived
// `cat /etc/shadow` is gone by the time its alert is raised), as long as
// they are in its mount namespace: the runtime's shim above the container
// sees the node's files.
func (u *Users) passwdFiles(key userKey, p *event.Process) []string {
	file := func(pid uint32) string {
		return u.procRoot + "/" + strconv.FormatUint(uint64(pid), 10) + "/root/etc/passwd"
	}
	if key.scope == "host" {
		out := []string{file(1)}
		if u.procRoot == "/proc" {
			out = append(out, "/etc/passwd")
		}
		return out
	}
	ns := p.MntNS
	if ns == 0 {
		if ns = u.mntNS(p.Pid); ns == 0 {
			return nil // gone, and no way to tell which ancestors share its files
		}
	}
	pids := []uint32{p.Pid}
	if p.Parent != nil {
		pids = append(pids, p.Parent.Pid)
	} else if p.Ppid != 0 {
		pids = append(pids, p.Ppid)
	}
	for _, a := range p.Ancestry {
		pids = append(pids, a.Pid)
	}
	var out []string
	for i, pid := range pids {
		if pid <= 1 || (i > 0 && pid == pids[i-1]) || u.mntNS(pid) != ns {
			continue
		}
		out = append(out, file(pid))
	}
	return out
}

// mntNS is the inode of pid's mount namespace, 0 when pid is gone.
func (u *Users) mntNS(pid uint32) uint32 {
	l, err := os.Readlink(u.procRoot + "/" + strconv.FormatUint(uint64(pid), 10) + "/ns/mnt")
	if err != nil {
		return 0
	}
	// "mnt:[4026531841]"
	l = strings.TrimSuffix(strings.TrimPrefix(l, "mnt:["), "]")
	n, err := strconv.ParseUint(l, 10, 32)
	if err != nil {
		return 0
	}
	return uint32(n)
}

// evict drops expired entries and, if the cache is still full, an
// arbitrary half of it. Called with u.mu held.
func (u *Users) evict(now time.Time) {
	for k, e := range u.cache {
		if now.Sub(e.at) >= u.ttl {
			delete(u.cache, k)
		}
	}
	for k := range u.cache {
		if len(u.cache) < u.max/2+1 {
			break
		}
		delete(u.cache, k)
	}
}

// passwdName finds uid in passwd(5) data: "name:x:uid:gid:...". The first
// entry wins, as with getpwuid.
func passwdName(data []byte, uid uint32) string {
	want := strconv.FormatUint(uint64(uid), 10)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.SplitN(line, ":", 4)
		if len(f) == 4 && f[2] == want && f[0] != "" {
			return f[0]
		}
	}
	return ""
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxPasswd))
}
