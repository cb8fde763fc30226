package sensor

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// fakeProc lays out pid's root/etc/passwd and ns/mnt link under root.
func fakeProc(t *testing.T, root string, pid, ns uint32, passwd string) {
	t.Helper()
	dir := filepath.Join(root, strconv.Itoa(int(pid)))
	for _, d := range []string{"root/etc", "ns"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("mnt:["+strconv.Itoa(int(ns))+"]", filepath.Join(dir, "ns", "mnt")); err != nil {
		t.Fatal(err)
	}
	if passwd != "" {
		if err := os.WriteFile(filepath.Join(dir, "root", "etc", "passwd"), []byte(passwd), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// The cache stays within its bound, entries expire, and a failed read
// (the process is gone) is not remembered.
func TestUserCacheBoundAndExpiry(t *testing.T) {
	root := t.TempDir()
	fakeProc(t, root, 1, 1000, "root:x:0:0::/root:/bin/sh\n")
	for pid := uint32(100); pid < 110; pid++ {
		fakeProc(t, root, pid, pid, "app"+strconv.Itoa(int(pid))+":x:1000:1000::/:/bin/sh\n")
	}
	u := NewUsers(root)
	u.max = 4
	now := time.Unix(1_800_000_000, 0)
	u.now = func() time.Time { return now }
	for pid := uint32(100); pid < 110; pid++ {
		p := &event.Process{Pid: pid, UID: 1000, MntNS: pid}
		if got, want := u.Name("c"+strconv.Itoa(int(pid)), p), "app"+strconv.Itoa(int(pid)); got != want {
			t.Fatalf("pid %d: %q, want %q", pid, got, want)
		}
		if len(u.cache) > u.max {
			t.Fatalf("cache holds %d entries, bound %d", len(u.cache), u.max)
		}
	}
	// Cached: a changed file is not read again until the entry expires.
	p := &event.Process{Pid: 109, UID: 1000, MntNS: 109}
	fakePasswd(t, root, 109, "renamed:x:1000:1000::/:/bin/sh\n")
	if got := u.Name("c109", p); got != "app109" {
		t.Fatalf("cached: %q", got)
	}
	now = now.Add(userCacheTTL)
	if got := u.Name("c109", p); got != "renamed" {
		t.Fatalf("after expiry: %q", got)
	}
	// A process whose namespace does not match its pid's (pid reuse) and
	// a process that is gone are not named, and not cached as unnamed.
	if got := u.Name("c-other", &event.Process{Pid: 105, UID: 1000, MntNS: 999}); got != "" {
		t.Fatalf("pid reused by another namespace: %q", got)
	}
	if _, ok := u.cache[userKey{scope: "ctr:c-other", uid: 1000}]; ok {
		t.Fatal("a failed lookup was cached")
	}
	// Host processes read the node's passwd through init's root.
	if got := u.Name("", &event.Process{Pid: 4321, UID: 0, MntNS: 1000}); got != "root" {
		t.Fatalf("host process: %q", got)
	}
	// Attribute sets nothing for an unnamed uid.
	a := &event.Alert{ContainerID: "c100", Process: &event.Process{Pid: 100, UID: 7, MntNS: 100}}
	u.Attribute(a)
	if a.User != nil {
		t.Fatalf("uid 7 named %+v", a.User)
	}
}

func fakePasswd(t *testing.T, root string, pid int, passwd string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(root, strconv.Itoa(pid), "root", "etc", "passwd"), []byte(passwd), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestPasswdName(t *testing.T) {
	data := []byte("# comment\n\nroot:x:0:0::/root:/bin/sh\nbroken\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\ndup:x:33:33::/:/bin/sh\n")
	for uid, want := range map[uint32]string{0: "root", 33: "www-data", 1: ""} {
		if got := passwdName(data, uid); got != want {
			t.Errorf("uid %d: %q, want %q", uid, got, want)
		}
	}
}
