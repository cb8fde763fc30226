package container

import (
	"reflect"
	"strings"
	"testing"
)

const hybridMountinfo = `25 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`

const podMountinfo = `1200 1100 0:60 / / rw - overlay overlay rw
1201 1200 0:61 / /sys/fs/cgroup ro,nosuid - cgroup2 cgroup rw,nsdelegate
1202 1200 8:1 / /host rw shared:1 - ext4 /dev/vda rw
1203 1202 0:26 / /host/sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
1204 1202 0:27 /kubepods.slice /host/mnt/sub rw - cgroup2 cgroup2 rw
`

func TestFindMounts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		mountinfo string
		hostRoot  string
		want      Mounts
	}{
		{"hybrid", hybridMountinfo, "/", Mounts{
			Unified: Mount{Path: "/sys/fs/cgroup/unified", Root: "/"},
			Memory:  Mount{Path: "/sys/fs/cgroup/memory", Root: "/"},
		}},
		{"pure v2", "30 25 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n", "/",
			Mounts{Unified: Mount{Path: "/sys/fs/cgroup", Root: "/"}}},
		{"v1 memory with other controllers", "35 31 0:32 / /sys/fs/cgroup/cpu,memory rw - cgroup cgroup rw,cpu,memory\n", "/",
			Mounts{Memory: Mount{Path: "/sys/fs/cgroup/cpu,memory", Root: "/"}}},
		{"pod with host mounted at /host", podMountinfo, "/host",
			Mounts{Unified: Mount{Path: "/host/sys/fs/cgroup", Root: "/"}}},
		{"pod's own view when the host root is /", podMountinfo, "/",
			Mounts{Unified: Mount{Path: "/sys/fs/cgroup", Root: "/"}}},
		{"host root with trailing slash", podMountinfo, "/host/",
			Mounts{Unified: Mount{Path: "/host/sys/fs/cgroup", Root: "/"}}},
		{"only a sub-tree", "1204 1202 0:27 /kubepods.slice /host/cg rw - cgroup2 cgroup2 rw\n", "/host",
			Mounts{Unified: Mount{Path: "/host/cg", Root: "/kubepods.slice"}}},
		{"escaped mount point", `41 31 0:38 / /mnt/cgroup\040two rw - cgroup2 cgroup2 rw` + "\n", "/",
			Mounts{Unified: Mount{Path: "/mnt/cgroup two", Root: "/"}}},
		{"no cgroups", "25 1 8:1 / / rw - ext4 /dev/vda rw\n", "/", Mounts{}},
		{"garbage", "not a mountinfo line\n - \n1 2 3\n", "/", Mounts{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entries, err := parseMountinfo(strings.NewReader(tc.mountinfo))
			if err != nil {
				t.Fatal(err)
			}
			if got := findMounts(entries, tc.hostRoot); got != tc.want {
				t.Errorf("findMounts = %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`/a\040b`:      "/a b",
		`/a\011b`:      "/a\tb",
		`/a\134b`:      `/a\b`,
		`/a\04`:        `/a\04`,
		`/a\999`:       `/a\999`,
		`\040`:         " ",
		`/plain`:       "/plain",
		`/end\`:        `/end\`,
		`/two\040\040`: "/two  ",
	} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseProcCgroup(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []procCgroup
	}{
		{"hybrid", "9:name=systemd:/\n4:memory:/kubepods/pod" + uid + "/" + id + "\n1:cpu,cpuacct:/x\n0::/kubepods/pod" + uid + "/" + id + "\n",
			[]procCgroup{
				{controllers: "name=systemd", path: "/"},
				{controllers: "memory", path: "/kubepods/pod" + uid + "/" + id},
				{controllers: "cpu,cpuacct", path: "/x"},
				{unified: true, path: "/kubepods/pod" + uid + "/" + id},
			}},
		{"pure v2", "0::/system.slice/ssh.service\n", []procCgroup{{unified: true, path: "/system.slice/ssh.service"}}},
		{"path with a colon", "0::/a:b", []procCgroup{{unified: true, path: "/a:b"}}},
		{"garbage", "nonsense\n1:memory\n2:cpu:relative\n", nil},
		{"empty", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseProcCgroup([]byte(tc.in)); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parseProcCgroup = %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add(hybridMountinfo)
	f.Add(podMountinfo)
	f.Fuzz(func(t *testing.T, s string) {
		entries, err := parseMountinfo(strings.NewReader(s))
		if err != nil {
			return
		}
		m := findMounts(entries, "/host")
		for _, p := range []string{m.Unified.Path, m.Memory.Path} {
			if p != "" && p != "/host" && !strings.HasPrefix(p, "/host/") {
				t.Fatalf("mount %q is not under the host root", p)
			}
		}
	})
}

func FuzzParseProcCgroup(f *testing.F) {
	f.Add([]byte("4:memory:/kubepods/pod" + uid + "/" + id + "\n0::/\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, l := range parseProcCgroup(b) {
			if !strings.HasPrefix(l.path, "/") || strings.Contains(l.path, "\n") {
				t.Fatalf("line %+v", l)
			}
		}
	})
}
