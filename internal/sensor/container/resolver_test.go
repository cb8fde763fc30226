package container

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/runctest"
)

// The tests in this file that create cgroups need root. They fail, never
// skip, without it: CI runs them as root, and a skip would hide that the
// kernel-facing half of the package went untested.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test creates cgroups and needs root (run go test as root)")
	}
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func randomUID(t testing.TB) string {
	h := randomHex(t, 16)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// machineMounts finds this machine's cgroup hierarchies the way
// NewResolver does.
func machineMounts(t *testing.T) Mounts {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	entries, err := parseMountinfo(f)
	if err != nil {
		t.Fatal(err)
	}
	m := findMounts(entries, "/")
	if m.Unified.Path == "" && m.Memory.Path == "" {
		t.Fatal("no cgroup2 and no cgroup v1 memory hierarchy is mounted")
	}
	return m
}

// hierarchies lists the machine's mounted hierarchies by name. A missing
// v1 memory hierarchy is how pure cgroup v2 machines are, not a failure.
func hierarchies(t *testing.T, m Mounts) []struct {
	name  string
	mount Mount
} {
	t.Helper()
	var hs []struct {
		name  string
		mount Mount
	}
	if m.Unified.Path != "" {
		hs = append(hs, struct {
			name  string
			mount Mount
		}{"v2", m.Unified})
	} else {
		t.Log("no cgroup2 hierarchy is mounted on this machine: cgroup v2 cases not run")
	}
	if m.Memory.Path != "" {
		hs = append(hs, struct {
			name  string
			mount Mount
		}{"v1", m.Memory})
	} else {
		t.Log("no cgroup v1 memory hierarchy is mounted on this machine (pure cgroup v2): v1 cases not run")
	}
	return hs
}

// makeCgroup creates the cgroup rel (and its parents) in the hierarchy at
// mount and removes them, deepest first, when the test ends, up to and
// including the first element of rel.
func makeCgroup(t *testing.T, mount, rel string) string {
	t.Helper()
	dir := filepath.Join(mount, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	top := filepath.Join(mount, strings.Split(strings.TrimPrefix(rel, "/"), "/")[0])
	t.Cleanup(func() {
		for p := dir; strings.HasPrefix(p, top); p = filepath.Dir(p) {
			err := os.Remove(p)
			switch {
			case errors.Is(err, unix.ENOTEMPTY):
				return // a parent another case still uses
			case err != nil && !errors.Is(err, fs.ErrNotExist):
				t.Errorf("remove cgroup: %v", err)
				return
			}
		}
	})
	return dir
}

// inode returns the cgroup id of the directory at path.
func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return st.Ino
}

// newTestResolver returns a Resolver over the machine's hierarchies with
// no enrichment, resolving by file handle or, with walk, by walking.
func newTestResolver(t *testing.T, m Mounts, walk bool) *Resolver {
	t.Helper()
	r, err := NewResolver(Options{Mounts: &m, Enrichers: []Enricher{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []*hierarchy{r.unified, r.memory} {
		if h == nil {
			continue
		}
		if walk {
			h.handles.Store(false)
		} else if !h.handles.Load() {
			t.Fatalf("file handles unusable on %s as root: %v", h.Path, r.Warnings())
		}
	}
	return r
}

func checkRef(t *testing.T, got *event.Container, want *Ref) {
	t.Helper()
	switch {
	case want == nil && got != nil:
		t.Errorf("resolved %+v, want the host (nil)", got)
	case want == nil:
	case got == nil:
		t.Errorf("resolved the host, want %+v", *want)
	case got.ID != want.ID || got.Runtime != want.Runtime || got.PodUID != want.PodUID:
		t.Errorf("resolved id %q runtime %q pod %q, want %+v", got.ID, got.Runtime, got.PodUID, *want)
	}
}

// TestResolveCgroups creates real cgroups in each mounted hierarchy for
// each runtime's layout and resolves their ids, by file handle and by
// walking.
func TestResolveCgroups(t *testing.T) {
	requireRoot(t)
	m := machineMounts(t)
	var (
		base  = "/vigil-test-" + randomHex(t, 4) // one tree to clean up, apart from real workloads
		cid   = randomHex(t, 32)
		node  = randomHex(t, 32)
		uid   = randomUID(t)
		uidU  = strings.ReplaceAll(uid, "-", "_")
		runID = "vigil-test-" + randomHex(t, 3)
	)
	for _, tc := range []struct {
		name string
		path string
		want *Ref // nil: a host cgroup
	}{
		{"containerd systemd",
			"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
			&Ref{ID: cid, Runtime: "containerd", PodUID: uid}},
		{"containerd cgroupfs", "/kubepods/burstable/pod" + uid + "/" + cid, &Ref{ID: cid, PodUID: uid}},
		{"guaranteed pod cgroupfs", "/kubepods/pod" + uid + "/" + cid, &Ref{ID: cid, PodUID: uid}},
		{"cri-o", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/crio-" + cid + ".scope",
			&Ref{ID: cid, Runtime: "cri-o", PodUID: uid}},
		{"cri-o conmon", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/crio-conmon-" + cid + ".scope", nil},
		{"docker cgroupfs", "/docker/" + cid, &Ref{ID: cid, Runtime: "docker"}},
		{"docker systemd", "/system.slice/docker-" + cid + ".scope", &Ref{ID: cid, Runtime: "docker"}},
		{"podman", "/machine.slice/libpod-" + cid + ".scope/container", &Ref{ID: cid, Runtime: "podman"}},
		{"runc id", "/kubepods/besteffort/pod" + uid + "/" + runID, &Ref{ID: runID, PodUID: uid}},
		{"runc systemd", "/system.slice/runc-" + runID + ".scope", &Ref{ID: runID, Runtime: "runc"}},
		{"runc systemd hex id", "/system.slice/runc-" + cid + ".scope", &Ref{ID: cid, Runtime: "runc"}},
		{"runc cgroupfs hex id", "/" + cid, &Ref{ID: cid}},
		// runc's cgroupfs /<id> with a non-hex id is decided by runc's
		// state, not by the path: see TestParsePath.
		{"kind node", "/docker/" + node + "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
			&Ref{ID: cid, Runtime: "containerd", PodUID: uid}},
		{"pod cgroup", "/kubepods/besteffort/pod" + uid, nil},
		{"host service", "/system.slice/vigil-test.service", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, h := range hierarchies(t, m) {
				dir := makeCgroup(t, h.mount.Path, base+tc.path)
				id := inode(t, dir)
				for _, mode := range []string{"handle", "walk"} {
					t.Run(h.name+"/"+mode, func(t *testing.T) {
						r := newTestResolver(t, m, mode == "walk")
						k := key{v2: id}
						if h.name == "v1" {
							// A hybrid host's runtime may leave the process
							// in the unified root: only v1 names the container.
							k = key{v1: id}
							if m.Unified.Path != "" {
								k.v2 = inode(t, m.Unified.Path)
							}
						}
						got := r.Resolve(k.v2, k.v1, 0)
						checkRef(t, got, tc.want)
						if again := r.Resolve(k.v2, k.v1, 0); again != got {
							t.Errorf("second resolve gave another answer: %+v, first %+v", again, got)
						}
					})
				}
			}
		})
	}
}

// TestResolveGone checks that an id whose cgroup was removed resolves to
// the host, and that a container seen before its cgroup went stays
// cached.
func TestResolveGone(t *testing.T) {
	requireRoot(t)
	m := machineMounts(t)
	for _, h := range hierarchies(t, m) {
		t.Run(h.name, func(t *testing.T) {
			cid := randomHex(t, 32)
			dir := makeCgroup(t, h.mount.Path, "/vigil-test-"+randomHex(t, 4)+"/docker/"+cid)
			id := inode(t, dir)
			k := key{v2: id}
			if h.name == "v1" {
				k = key{v1: id}
			}
			for _, mode := range []string{"handle", "walk"} {
				t.Run(mode, func(t *testing.T) {
					seen := newTestResolver(t, m, mode == "walk")
					checkRef(t, seen.Resolve(k.v2, k.v1, 0), &Ref{ID: cid, Runtime: "docker"})
				})
			}
			seen := newTestResolver(t, m, false)
			seen.Resolve(k.v2, k.v1, 0)
			for p := dir; p != h.mount.Path; p = filepath.Dir(p) {
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
			}
			checkRef(t, seen.Resolve(k.v2, k.v1, 0), &Ref{ID: cid, Runtime: "docker"})
			for _, mode := range []string{"handle", "walk"} {
				t.Run("gone/"+mode, func(t *testing.T) {
					late := newTestResolver(t, m, mode == "walk")
					checkRef(t, late.Resolve(k.v2, k.v1, 0), nil)
					if _, ok := late.results.get(k); !ok {
						t.Error("a removed cgroup's id was not cached as the host")
					}
				})
			}
		})
	}
}

// TestResolveProcess moves a real process into a container's cgroups and
// resolves it by pid alone (the ids unknown, as in the netlink fallback),
// by its ids, and by its ids when they cannot be mapped now (the answer
// from /proc is cached only when a stat shows it is theirs).
func TestResolveProcess(t *testing.T) {
	requireRoot(t)
	m := machineMounts(t)
	cid, uid := randomHex(t, 32), randomUID(t)
	rel := "/vigil-test-" + randomHex(t, 4) + "/kubepods/besteffort/pod" + uid + "/" + cid
	want := &Ref{ID: cid, PodUID: uid}

	var dirs []string
	for _, h := range hierarchies(t, m) {
		dirs = append(dirs, makeCgroup(t, h.mount.Path, rel))
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() }) // before the cgroups are removed
	pid := uint32(cmd.Process.Pid)
	for _, d := range dirs {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
			t.Fatalf("move the process into %s: %v", d, err)
		}
	}
	var k key
	if m.Unified.Path != "" {
		k.v2 = inode(t, filepath.Join(m.Unified.Path, rel))
	}
	if m.Memory.Path != "" {
		k.v1 = inode(t, filepath.Join(m.Memory.Path, rel))
	}

	t.Run("pid only", func(t *testing.T) {
		r := newTestResolver(t, m, false)
		checkRef(t, r.Resolve(0, 0, pid), want)
		if n := r.results.len(); n != 0 {
			t.Errorf("%d results cached without ids", n)
		}
	})
	t.Run("no hierarchy mounted", func(t *testing.T) {
		r, err := NewResolver(Options{Mounts: &Mounts{}, Enrichers: []Enricher{}})
		if err != nil {
			t.Fatal(err)
		}
		checkRef(t, r.Resolve(k.v2, k.v1, pid), want)
		if n := r.results.len(); n != 0 {
			t.Errorf("%d results cached with nothing to check them against", n)
		}
	})
	t.Run("ids", func(t *testing.T) {
		r := newTestResolver(t, m, false)
		checkRef(t, r.Resolve(k.v2, k.v1, 0), want)
	})
	// Walks rate-limited, no file handles: the ids cannot be mapped now.
	stalled := func(t *testing.T) *Resolver {
		r := newTestResolver(t, m, true)
		for _, h := range []*hierarchy{r.unified, r.memory} {
			if h != nil {
				h.lastWalk = time.Now()
				h.rewalk = time.Hour
			}
		}
		return r
	}
	t.Run("unmapped ids learned from proc", func(t *testing.T) {
		r := stalled(t)
		checkRef(t, r.Resolve(k.v2, k.v1, pid), want)
		if _, ok := r.results.get(k); !ok {
			t.Error("the answer was not cached although /proc showed the ids' own cgroups")
		}
	})
	t.Run("unmapped ids that proc does not confirm", func(t *testing.T) {
		r := stalled(t)
		other := key{k.v2 + 1<<40, k.v1 + 1<<40} // ids of no cgroup
		checkRef(t, r.Resolve(other.v2, other.v1, pid), want)
		if _, ok := r.results.get(other); ok {
			t.Error("cached what /proc says under ids it does not show")
		}
	})
	t.Run("exited", func(t *testing.T) {
		r := newTestResolver(t, m, false)
		checkRef(t, r.Resolve(k.v2, k.v1, pid), want)
		cmd.Process.Kill()
		cmd.Wait()
		for _, d := range dirs {
			if err := os.Remove(d); err != nil {
				t.Fatal(err)
			}
		}
		checkRef(t, r.Resolve(k.v2, k.v1, pid), want) // seen while it ran
		checkRef(t, newTestResolver(t, m, false).Resolve(k.v2, k.v1, pid), nil)
	})
}

// TestResolveEnriched runs the whole chain on a cgroup: ids to path,
// runc state and bundle annotations, the pod source.
func TestResolveEnriched(t *testing.T) {
	requireRoot(t)
	m := machineMounts(t)
	cid, uid := randomHex(t, 32), randomUID(t)
	h := hierarchies(t, m)[0]
	dir := makeCgroup(t, h.mount.Path, "/vigil-test-"+randomHex(t, 4)+"/kubepods.slice/kubepods-pod"+strings.ReplaceAll(uid, "-", "_")+".slice/cri-containerd-"+cid+".scope")
	id := inode(t, dir)

	root := t.TempDir()
	bundle := "/run/containerd/io.containerd.runtime.v2.task/k8s.io/" + cid
	writeFile(t, root, "/run/containerd/runc/k8s.io/"+cid+"/state.json", runcStateJSON(bundle))
	writeFile(t, root, bundle+"/config.json", `{"annotations":{"io.kubernetes.cri.container-name":"web",
		"io.kubernetes.cri.sandbox-name":"web-7d9f8c6b5-x2x4q","io.kubernetes.cri.sandbox-namespace":"shop",
		"io.kubernetes.cri.image-name":"docker.io/library/nginx:1.27"}}`)
	pods := podMap{uid: {Name: "web-7d9f8c6b5-x2x4q", Namespace: "shop", Labels: map[string]string{"app": "web"},
		OwnerKind: "ReplicaSet", OwnerName: "web-7d9f8c6b5"}}

	r, err := NewResolver(Options{Mounts: &m, Enrichers: []Enricher{OCI{HostRoot: root}}, Pods: pods})
	if err != nil {
		t.Fatal(err)
	}
	k := key{v2: id}
	if h.name == "v1" {
		k = key{v1: id}
	}
	got := r.Resolve(k.v2, k.v1, 0)
	want := &event.Container{ID: cid, Runtime: "containerd", Name: "web", Image: "docker.io/library/nginx:1.27",
		Pod: "web-7d9f8c6b5-x2x4q", PodUID: uid, Namespace: "shop", Workload: "Deployment/web",
		Labels: map[string]string{"app": "web"}, StartTime: created}
	if got == nil || got.ID != want.ID || got.Runtime != want.Runtime || got.Name != want.Name || got.Image != want.Image ||
		got.Pod != want.Pod || got.PodUID != want.PodUID || got.Namespace != want.Namespace || got.Workload != want.Workload ||
		got.Labels["app"] != "web" || !got.StartTime.Equal(want.StartTime) {
		t.Errorf("resolved %+v\nwant %+v", got, want)
	}
}

// The sensor's Containers interface, restated to keep this package free
// of the sensor's imports.
var _ interface {
	Resolve(cgroupV2, cgroupV1 uint64, pid uint32) *event.Container
} = (*Resolver)(nil)

// TestResolveRunc resolves a real runc container, started the way the
// kubelet's cgroupfs layout places it, with the default enrichers reading
// runc's own state.
func TestResolveRunc(t *testing.T) {
	requireRoot(t)
	m := machineMounts(t)
	c := runctest.Start(t, runctest.Options{})
	pid := uint32(c.InitPid(t))
	k := procKey(t, m, pid)
	r, err := NewResolver(Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		k    key
	}{{"ids", k}, {"pid only", key{}}} {
		t.Run(tc.name, func(t *testing.T) {
			got := r.Resolve(tc.k.v2, tc.k.v1, pid)
			if got == nil || got.ID != c.ID || got.PodUID != c.PodUID || got.Runtime != "runc" ||
				time.Since(got.StartTime) > time.Minute {
				t.Errorf("resolved %+v, want id %s, pod %s, runtime runc, started just now", got, c.ID, c.PodUID)
			}
		})
	}
}

// TestResolvePlainRunc checks runc's own layout for a spec without a
// cgroups path, "/<id>" with any id: a container by runc's state, and a
// host cgroup of the same shape without state stays the host's.
func TestResolvePlainRunc(t *testing.T) {
	requireRoot(t)
	m := machineMounts(t)
	id := "vigil-plain-" + randomHex(t, 4)
	c := runctest.Start(t, runctest.Options{ID: id, CgroupsPath: "/" + id})
	pid := uint32(c.InitPid(t))
	k := procKey(t, m, pid)
	r, err := NewResolver(Options{Enrichers: []Enricher{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		k    key
	}{{"ids", k}, {"pid only", key{}}} {
		if got := r.Resolve(tc.k.v2, tc.k.v1, pid); got == nil || got.ID != id || got.Runtime != "runc" {
			t.Errorf("%s: resolved %+v, want id %s, runtime runc", tc.name, got, id)
		}
	}

	// A host cgroup shaped like it: unsure for a grace period, then the host's.
	host := "vigil-plain-host-" + randomHex(t, 4)
	var hk key
	for _, h := range hierarchies(t, m) {
		id := inode(t, makeCgroup(t, h.mount.Path, "/"+host))
		if h.name == "v1" {
			hk.v1 = id
		} else {
			hk.v2 = id
		}
	}
	now := time.Now()
	r.now = func() time.Time { return now }
	if got := r.Resolve(hk.v2, hk.v1, 0); got != nil {
		t.Errorf("host cgroup /%s resolved %+v", host, got)
	}
	if _, cached := r.results.get(hk); cached {
		t.Errorf("host cgroup /%s cached before runc could have written its state", host)
	}
	now = now.Add(plainRuncGrace)
	if got := r.Resolve(hk.v2, hk.v1, 0); got != nil {
		t.Errorf("host cgroup /%s resolved %+v after the grace period", host, got)
	}
	if _, cached := r.results.get(hk); !cached {
		t.Errorf("host cgroup /%s not cached after the grace period", host)
	}
}

// procKey is the cgroup ids of pid's cgroups in the hierarchies of m.
func procKey(t *testing.T, m Mounts, pid uint32) key {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var k key
	for _, l := range parseProcCgroup(data) {
		switch {
		case l.unified && m.Unified.Path != "":
			k.v2 = inode(t, filepath.Join(m.Unified.Path, l.path))
		case hasController(l.controllers, "memory") && m.Memory.Path != "":
			k.v1 = inode(t, filepath.Join(m.Memory.Path, l.path))
		}
	}
	return k
}

// podMap is a PodSource over a map.
type podMap map[string]PodInfo

func (p podMap) Pod(uid string) (PodInfo, bool) { v, ok := p[uid]; return v, ok }

// flakyEnricher knows a container only once told so.
type flakyEnricher struct {
	mu    sync.Mutex
	known bool
	calls int
}

func (f *flakyEnricher) Enrich(c *event.Container) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.known {
		c.Name = "web"
	}
	return f.known, nil
}

// TestEnrichRetry checks that a container nothing knew yet is described
// again soon (its first events come before runc writes its state), backing
// off to every RetryInterval, and no more after RetryFor.
func TestEnrichRetry(t *testing.T) {
	for _, tc := range []struct {
		name         string
		learnAt      time.Duration // when the enricher starts knowing it
		wantName     string
		knownBy      time.Duration // the name is known by then
		minC, maxC   int           // enrichments in all
		lastCallUpTo time.Duration // no enrichment after this
	}{
		// 0, 10, 30, 70, 150 ms: the fifth attempt knows it.
		{"learned on an early retry", 100 * time.Millisecond, "web", 160 * time.Millisecond, 5, 5, 160 * time.Millisecond},
		// Backing off from 10 ms to 5 s, then every 5 s up to the 60 s cutoff.
		{"never learned", time.Hour, "", 0, 18, 24, time.Minute + 5*time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &flakyEnricher{}
			r, err := NewResolver(Options{Mounts: &Mounts{}, Enrichers: []Enricher{f},
				RetryInterval: 5 * time.Second, RetryFor: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Unix(1e9, 0)
			now := start
			r.now = func() time.Time { return now }
			tr := r.track(&Ref{ID: id})
			var lastCall time.Duration
			for ; now.Sub(start) < 2*time.Minute; now = now.Add(10 * time.Millisecond) {
				f.mu.Lock()
				f.known = now.Sub(start) >= tc.learnAt
				before := f.calls
				f.mu.Unlock()
				c := r.current(tr)
				if f.calls != before {
					lastCall = now.Sub(start)
				}
				if tc.knownBy > 0 && now.Sub(start) >= tc.knownBy && c.Name != tc.wantName {
					t.Fatalf("at %v: name %q, want %q", now.Sub(start), c.Name, tc.wantName)
				}
			}
			if c := r.current(tr); c.Name != tc.wantName || f.calls < tc.minC || f.calls > tc.maxC || lastCall > tc.lastCallUpTo {
				t.Errorf("name %q after %d enrichments (last at %v), want %q after %d-%d, none after %v",
					c.Name, f.calls, lastCall, tc.wantName, tc.minC, tc.maxC, tc.lastCallUpTo)
			}
		})
	}
}

// TestPodSourceRetry checks that a pod the source has not seen yet is
// looked up again.
func TestPodSourceRetry(t *testing.T) {
	pods := podMap{}
	r, err := NewResolver(Options{Mounts: &Mounts{}, Enrichers: []Enricher{}, Pods: pods, RetryInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1e9, 0)
	r.now = func() time.Time { return now }
	tr := r.track(&Ref{ID: id, PodUID: uid})
	if c := r.current(tr); c.Workload != "" {
		t.Fatalf("workload %q before the pod is known", c.Workload)
	}
	pods[uid] = PodInfo{Name: "db-0", Namespace: "shop", OwnerKind: "StatefulSet", OwnerName: "db"}
	now = now.Add(2 * time.Second)
	if c := r.current(tr); c.Workload != "StatefulSet/db" || c.Pod != "db-0" {
		t.Errorf("after the pod appeared: %+v", c)
	}
}

// TestResolveConcurrent resolves from many goroutines at once (run with
// -race): cached hits, misses, host and container answers.
func TestResolveConcurrent(t *testing.T) {
	r, err := NewResolver(Options{Mounts: &Mounts{}, Enrichers: []Enricher{&flakyEnricher{}}, CacheSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	for i := range uint64(100) {
		var tr *tracked
		if i%2 == 0 {
			tr = r.track(&Ref{ID: strconv.FormatUint(i%10, 10)})
		}
		r.results.put(key{i, 0}, tr)
	}
	self := uint32(os.Getpid())
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				k := uint64((i*7 + g) % 150) // some cached, some evicted, some never seen
				r.Resolve(k, 0, self)
			}
		})
	}
	wg.Wait()
	if n := r.results.len(); n > 64 {
		t.Errorf("%d cached results, bound is 64", n)
	}
}

func TestResolveCachedAllocs(t *testing.T) {
	r, k := cachedResolver(t)
	if n := testing.AllocsPerRun(1000, func() { r.Resolve(k.v2, k.v1, 1) }); n != 0 {
		t.Errorf("a cached resolve allocates %v times", n)
	}
}

// cachedResolver returns a Resolver with one container cached under k.
func cachedResolver(tb testing.TB) (*Resolver, key) {
	r, err := NewResolver(Options{Mounts: &Mounts{}, Enrichers: []Enricher{}})
	if err != nil {
		tb.Fatal(err)
	}
	k := key{v2: 4242, v1: 4343}
	r.results.put(k, r.track(&Ref{ID: id, Runtime: "containerd", PodUID: uid}))
	r.results.put(key{v2: 1}, nil)
	return r, k
}

func BenchmarkResolveCached(b *testing.B) {
	r, k := cachedResolver(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r.Resolve(k.v2, k.v1, 1) == nil {
				b.Fatal("cached container not found")
			}
		}
	})
}
