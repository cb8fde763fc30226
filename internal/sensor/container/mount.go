package container

import (
	"bufio"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
)

// Mount is a mounted cgroup hierarchy.
type Mount struct {
	// Path is where it is mounted, e.g. /sys/fs/cgroup/unified.
	Path string
	// Root is the cgroup path of the mount's root directory: "/" unless
	// a sub-tree was bind-mounted. The cgroup path of the directory
	// Path/x/y is Root/x/y.
	Root string
}

// Mounts are the hierarchies a Resolver maps ids in. Either may be
// missing (zero): pure cgroup v2 hosts have no v1 memory hierarchy.
type Mounts struct {
	// Unified is the cgroup2 hierarchy, whose ids are cgroupV2.
	Unified Mount
	// Memory is the cgroup v1 memory controller's hierarchy, whose ids
	// are cgroupV1.
	Memory Mount
}

// mountEntry is one line of /proc/<pid>/mountinfo.
type mountEntry struct {
	root, point, fstype, superOpts string
}

// parseMountinfo reads the lines of a /proc/<pid>/mountinfo (proc(5));
// malformed lines are skipped.
func parseMountinfo(r io.Reader) ([]mountEntry, error) {
	var out []mountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		// 35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		out = append(out, mountEntry{root: unescape(f[3]), point: unescape(f[4]), fstype: g[0], superOpts: g[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return out, nil
}

// findMounts picks the unified and v1 memory hierarchies out of a mount
// table. With a hostRoot other than "/" only mounts under it count: in a
// pod, /sys/fs/cgroup is the pod's own (often namespaced) view, and the
// host's is e.g. /host/sys/fs/cgroup. Among several candidates the one
// showing the whole hierarchy (root "/") at the shortest path wins; of
// equals, the later mount, which hides the earlier.
func findMounts(entries []mountEntry, hostRoot string) Mounts {
	hostRoot = filepath.Clean(hostRoot)
	var m Mounts
	better := func(cur Mount, e mountEntry) bool {
		if cur.Path == "" {
			return true
		}
		if (e.root == "/") != (cur.Root == "/") {
			return e.root == "/"
		}
		return len(e.point) <= len(cur.Path)
	}
	for _, e := range entries {
		if hostRoot != "/" && e.point != hostRoot && !strings.HasPrefix(e.point, hostRoot+"/") {
			continue
		}
		var dst *Mount
		switch {
		case e.fstype == "cgroup2":
			dst = &m.Unified
		case e.fstype == "cgroup" && slices.Contains(strings.Split(e.superOpts, ","), "memory"):
			dst = &m.Memory
		default:
			continue
		}
		if better(*dst, e) {
			*dst = Mount{Path: e.point, Root: e.root}
		}
	}
	return m
}

// unescape undoes mountinfo's octal escapes (\040 for a space, \011,
// \012, \134).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) && isOctal(s[i+1:i+4]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string) bool {
	return len(s) == 3 && '0' <= s[0] && s[0] <= '3' && '0' <= s[1] && s[1] <= '7' && '0' <= s[2] && s[2] <= '7'
}

// procCgroup is one line of /proc/<pid>/cgroup.
type procCgroup struct {
	unified     bool   // the cgroup2 line, 0::path
	controllers string // comma-separated v1 controllers, e.g. "memory"
	path        string
}

// parseProcCgroup reads /proc/<pid>/cgroup (cgroups(7)):
// hierarchy-id:controller-list:path per line, "0::path" for cgroup v2.
// Malformed lines are skipped.
func parseProcCgroup(data []byte) []procCgroup {
	var out []procCgroup
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSuffix(line, "\n")
		id, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		ctrls, path, ok := strings.Cut(rest, ":")
		if !ok || !strings.HasPrefix(path, "/") {
			continue
		}
		out = append(out, procCgroup{unified: id == "0" && ctrls == "", controllers: ctrls, path: path})
	}
	return out
}

// hasController reports whether a /proc/<pid>/cgroup controller list
// names c.
func hasController(list, c string) bool {
	return slices.Contains(strings.Split(list, ","), c)
}
