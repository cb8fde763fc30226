package testproc

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestExitedErrHasLogTail(t *testing.T) {
	dir := t.TempDir()
	p, err := Start(dir, "quitter", "sh", "-c", "pwd; echo first; echo last words >&2; exit 3")
	if err != nil {
		t.Fatal(err)
	}
	if p.LogPath() != filepath.Join(dir, "quitter.log") || p.Name() != "quitter" {
		t.Errorf("Name, LogPath = %q, %q", p.Name(), p.LogPath())
	}
	err = Poll(10*time.Second, 10*time.Millisecond, nil, func() error {
		if done, _ := p.Exited(); !done {
			return errors.New("still running")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.Reported() {
		t.Error("Reported() = true with nothing reported")
	}
	err = p.ExitedErr()
	if err == nil {
		t.Fatal("ExitedErr: nil after exit")
	}
	if done, status := p.Exited(); !done || status == nil {
		t.Errorf("Exited() = %v, %v; want true and exit status 3", done, status)
	}
	var ee *ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("ExitedErr: %T, want *ExitError", err)
	}
	msg := err.Error()
	for _, want := range []string{"quitter exited: exit status 3", "# sh -c pwd;", dir + "\nfirst\nlast words"} {
		if !strings.Contains(msg, want) {
			t.Errorf("ExitedErr lacks %q:\n%s", want, msg)
		}
	}
	if !p.Reported() {
		t.Error("Reported() = false after ExitedErr")
	}
	// WithLogTail does not repeat a tail the error already has.
	if got := p.WithLogTail(err, 5); got != err {
		t.Errorf("WithLogTail(ExitedErr) = %v, want it unchanged", got)
	}
	if got := p.LogTail(1); got != "last words" {
		t.Errorf("LogTail(1) = %q", got)
	}
}

func TestStopKillsGroup(t *testing.T) {
	dir := t.TempDir()
	// The forked child ignores SIGTERM: only the SIGKILL to the group ends it.
	p, err := Start(dir, "forker", "sh", "-c", `(trap "" TERM; exec sleep 300) & echo $! >child.pid; wait`)
	if err != nil {
		t.Fatal(err)
	}
	var child int
	err = Poll(10*time.Second, 10*time.Millisecond, p.ExitedErr, func() error {
		b, err := os.ReadFile(filepath.Join(dir, "child.pid")) // cmd.Dir is dir
		if err != nil {
			return err
		}
		child, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WithLogTail(p.ExitedErr(), 10); err != nil {
		t.Fatalf("exited early: %v", err)
	}
	p.Stop(2 * time.Second)
	if done, _ := p.Exited(); !done {
		t.Error("Exited() = false after Stop")
	}
	err = Poll(10*time.Second, 20*time.Millisecond, nil, func() error {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(child) + "/stat")
		if err != nil {
			return nil // gone
		}
		// A zombie waiting for its new parent to reap it is dead too.
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && strings.HasPrefix(string(b[i:]), ") Z") {
			return nil
		}
		return errors.New("child still running")
	})
	if err != nil {
		_ = syscall.Kill(child, syscall.SIGKILL)
		t.Fatalf("forked child %d: %v", child, err)
	}
	p.Stop(time.Second) // again: harmless
}

func TestPollTimesOut(t *testing.T) {
	n := 0
	start := time.Now()
	err := Poll(100*time.Millisecond, 10*time.Millisecond, nil, func() error {
		n++
		return errors.New("try " + strconv.Itoa(n))
	})
	if err == nil || !strings.Contains(err.Error(), "not done after 100ms") || !strings.HasSuffix(err.Error(), "try "+strconv.Itoa(n)) {
		t.Errorf("Poll = %v; want a timeout with the last error (try %d)", err, n)
	}
	if d := time.Since(start); d < 100*time.Millisecond || n < 2 {
		t.Errorf("Poll returned after %v and %d calls", d, n)
	}
	stopErr := errors.New("stopped")
	if err := Poll(time.Minute, time.Millisecond, func() error { return stopErr }, func() error { return errors.New("no") }); err != stopErr {
		t.Errorf("Poll with a failing stop = %v, want %v", err, stopErr)
	}
}

func TestFreePort(t *testing.T) {
	port, err := FreePort()
	if err != nil || port <= 0 {
		t.Fatalf("FreePort() = %d, %v", port, err)
	}
}
