// Package testproc is a child process of a test with its log file, used by
// kubetest and the e2e node: the process runs in its own process group (so
// Stop reaches anything it forks) with Pdeathsig (so a test binary killed by
// -timeout does not leak it), and its stdout and stderr go to <dir>/<name>.log.
package testproc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// exitTailLines is how many lines of the log an ExitError carries.
const exitTailLines = 40

// Process is a running (or ended) child process of the test.
type Process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	err     error         // exit status; read only after done is closed
	// reported is set once the log's tail is in an error (ExitedErr,
	// WithLogTail), so a caller logging every tail at the end can skip it.
	reported atomic.Bool
}

// Start runs bin with args in dir, with stdout and stderr in
// <dir>/<name>.log; the log's first line is "# bin args". A relative bin
// containing a slash is taken relative to the test's working directory, not
// to dir.
func Start(dir, name, bin string, args ...string) (*Process, error) {
	if strings.Contains(bin, "/") && !filepath.IsAbs(bin) {
		abs, err := filepath.Abs(bin)
		if err != nil {
			return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
		}
		bin = abs
	}
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create %s log: %w", name, err)
	}
	defer logf.Close() // the child has its own copy
	fmt.Fprintf(logf, "# %s %s\n", bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &Process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Name returns the process's name, as given to Start.
func (p *Process) Name() string { return p.name }

// LogPath returns the path of the process's log.
func (p *Process) LogPath() string { return p.logPath }

// Exited reports whether the process has ended, and its exit status.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// ExitError is ExitedErr's error: the process ended (even with status 0),
// and Tail is the end of its log.
type ExitError struct {
	Name    string
	LogPath string
	Err     error // the exit status
	Tail    string
	p       *Process
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("%s exited: %v\n%s", e.Name, e.Err, tailSection(e.Name, e.LogPath, e.Tail))
}

func (e *ExitError) Unwrap() error { return e.Err }

// ExitedErr returns nil while the process runs and an *ExitError, with the
// tail of its log, once it has ended. It is the stop function Poll wants
// for a wait on a process that must stay up.
func (p *Process) ExitedErr() error {
	done, err := p.Exited()
	if !done {
		return nil
	}
	if err == nil {
		err = errors.New("exit status 0")
	}
	p.reported.Store(true)
	return &ExitError{Name: p.name, LogPath: p.logPath, Err: err, Tail: p.LogTail(exitTailLines), p: p}
}

// WithLogTail returns err with the last n lines of the process's log
// appended, or err itself if it is nil or already an ExitedErr of p.
func (p *Process) WithLogTail(err error, n int) error {
	if err == nil {
		return nil
	}
	p.reported.Store(true)
	var ee *ExitError
	if errors.As(err, &ee) && ee.p == p {
		return err
	}
	return fmt.Errorf("%w\n%s", err, tailSection(p.name, p.logPath, p.LogTail(n)))
}

// Reported reports whether the tail of the process's log has gone into an
// error (ExitedErr, WithLogTail), so a cleanup that logs the tail of every
// process of a failed test need not repeat it.
func (p *Process) Reported() bool { return p.reported.Load() }

// LogTail returns the last n lines of the process's log.
func (p *Process) LogTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(read %s: %v)", p.logPath, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TailSection formats the tail of the process's log for a test log: a
// header naming the process and its log file, then the last n lines.
func (p *Process) TailSection(n int) string {
	return tailSection(p.name, p.logPath, p.LogTail(n))
}

func tailSection(name, path, tail string) string {
	return fmt.Sprintf("--- %s log (tail, %s) ---\n%s", name, path, tail)
}

// Stop sends SIGTERM to the process group, then SIGKILL after grace; anything
// the process forked into its group is killed too. It may be called more
// than once.
func (p *Process) Stop(grace time.Duration) {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
		}
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// Poll calls f every interval until it returns nil, stop (if not nil)
// returns an error, or timeout passes; it returns nil, stop's error, or f's
// last error wrapped with the timeout.
func Poll(timeout, interval time.Duration, stop func() error, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if stop != nil {
			if serr := stop(); serr != nil {
				return serr
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not done after %v: %w", timeout, err)
		}
		time.Sleep(interval)
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
