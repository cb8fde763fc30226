package sensor_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/runctest"
	"github.com/vigil-sec/vigil/internal/sensor"
)

// A runtime alert names the user from the container's own /etc/passwd: a
// real runc container with an account the node does not have, a process
// running as it, and the same uid meaning something else on the host.
func TestUserAttributionRunc(t *testing.T) {
	c := runctest.Start(t, runctest.Options{})
	c.WriteFile(t, "etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\n# app account\nvigil-app:x:4242:4242::/home/app:/bin/sh\n"), 0o644)
	if host, _ := os.ReadFile("/etc/passwd"); strings.Contains(string(host), ":4242:") {
		t.Fatal("the host has uid 4242: the test needs a uid only the container names")
	}
	// A process in the container running as uid 4242.
	// The detached process inherits runc's stdio: a file, not a pipe, or
	// waiting for runc's output would wait for the process.
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	log, err := os.Create(filepath.Join(dir, "exec.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command("runc", "exec", "--detach", "--pid-file", pidFile, "--user", "4242:4242", c.ID, "/bin/sleep", "600")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(log.Name())
		t.Fatalf("runc exec: %v: %s", err, out)
	}
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exec.Command("kill", "-9", strconv.Itoa(pid)).Run() })
	if st, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status"); !strings.Contains(string(st), "Uid:\t4242") {
		t.Fatalf("the exec'd process is not uid 4242:\n%s", st)
	}
	init := uint32(c.InitPid(t))
	mnt := mntNS(t, pid)

	users := sensor.NewUsers("/proc")
	alert := func(p *event.Process) *event.Alert {
		return &event.Alert{Rule: "runtime.test", ContainerID: c.ID, Process: p}
	}

	a := alert(&event.Process{Pid: uint32(pid), UID: 4242, MntNS: mnt, Exe: "/bin/sleep"})
	users.Attribute(a)
	if a.User == nil || a.User.Name != "vigil-app" {
		t.Fatalf("user %+v, want vigil-app from the container's passwd", a.User)
	}

	// The uid of root in the container, read from the container, not the
	// node (whose root could be named anything; here the file says root).
	a = alert(&event.Process{Pid: init, UID: 0, MntNS: mnt})
	users.Attribute(a)
	if a.User == nil || a.User.Name != "root" {
		t.Fatalf("root in the container: %+v", a.User)
	}

	// A short-lived process already gone when its alert is raised: its
	// parent (the container's init) shares its files and answers. A fresh
	// resolver, so nothing comes from the cache.
	fresh := sensor.NewUsers("/proc")
	gone := deadPid(t)
	a = alert(&event.Process{Pid: gone, UID: 4242, MntNS: mnt, Parent: &event.Lineage{Pid: init}})
	fresh.Attribute(a)
	if a.User == nil || a.User.Name != "vigil-app" {
		t.Fatalf("exited process: user %+v, want vigil-app through its parent", a.User)
	}
	// An ancestor outside the container (the runtime's shim, here this
	// test) is not asked: its passwd is the node's.
	a = alert(&event.Process{Pid: gone, UID: 4242, MntNS: mnt, Parent: &event.Lineage{Pid: uint32(os.Getpid())}})
	sensor.NewUsers("/proc").Attribute(a)
	if a.User != nil {
		t.Fatalf("user %+v read through a process outside the container", a.User)
	}

	// The cache is keyed by container: a second lookup does not read the
	// file again (a changed passwd is seen only after the entry expires).
	c.WriteFile(t, "etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\nrenamed:x:4242:4242::/:/bin/sh\n"), 0o644)
	a = alert(&event.Process{Pid: uint32(pid), UID: 4242, MntNS: mnt})
	users.Attribute(a)
	if a.User == nil || a.User.Name != "vigil-app" {
		t.Fatalf("cached lookup: %+v", a.User)
	}
	a = alert(&event.Process{Pid: uint32(pid), UID: 4242, MntNS: mnt})
	sensor.NewUsers("/proc").Attribute(a)
	if a.User == nil || a.User.Name != "renamed" {
		t.Fatalf("uncached lookup after the change: %+v", a.User)
	}

	// A uid the container's passwd does not name: no user, not a guess.
	a = alert(&event.Process{Pid: uint32(pid), UID: 31337, MntNS: mnt})
	users.Attribute(a)
	if a.User != nil {
		t.Fatalf("unknown uid named %+v", a.User)
	}

	// A host process is named from the node's passwd.
	a = &event.Alert{Rule: "runtime.test", Process: &event.Process{Pid: uint32(os.Getpid()), UID: 0, MntNS: mntNS(t, os.Getpid())}}
	users.Attribute(a)
	if a.User == nil || a.User.Name != hostName(t, 0) {
		t.Fatalf("host process: %+v", a.User)
	}

	// Control-plane alerts keep their Kubernetes identity.
	a = &event.Alert{Rule: "audit.x", User: &event.User{Name: "alice@example.com"}, Process: &event.Process{Pid: uint32(pid), UID: 4242}}
	users.Attribute(a)
	if a.User.Name != "alice@example.com" {
		t.Fatalf("audit user overwritten: %+v", a.User)
	}
}

func mntNS(t *testing.T, pid int) uint32 {
	t.Helper()
	l, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(l, "mnt:["), "]"), 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(n)
}

// deadPid is the pid of a process that has exited.
func deadPid(t *testing.T) uint32 {
	t.Helper()
	p := exec.Command("/bin/true")
	if err := p.Run(); err != nil {
		t.Fatal(err)
	}
	return uint32(p.Process.Pid)
}

func hostName(t *testing.T, uid int) string {
	t.Helper()
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Split(l, ":"); len(f) > 3 && f[2] == strconv.Itoa(uid) {
			return f[0]
		}
	}
	t.Fatalf("no uid %d in /etc/passwd", uid)
	return ""
}
