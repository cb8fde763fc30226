package procfs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ticksPerSecond is USER_HZ, the unit of /proc/<pid>/stat's starttime. It
// is 100 on every architecture Linux exports to user space.
const ticksPerSecond = 100

// Process is one process as /proc shows it.
type Process struct {
	Pid, Ppid     uint32
	Comm          string
	Exe           string
	Args          []string
	Cwd           string
	UID, GID      uint32
	EUID          uint32
	StartBoottime uint64 // ns since boot, at USER_HZ resolution
}

// FS reads one /proc mount; Root is "/proc" on the host, or e.g.
// "/host/proc" when the sensor runs in a pod with the host's /proc mounted.
type FS struct {
	Root string
}

// Pids lists the processes (thread-group ids) in the mount.
func (fs FS) Pids() ([]uint32, error) {
	entries, err := os.ReadDir(fs.Root)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", fs.Root, err)
	}
	var pids []uint32
	for _, e := range entries {
		if n, err := strconv.ParseUint(e.Name(), 10, 32); err == nil {
			pids = append(pids, uint32(n))
		}
	}
	return pids, nil
}

// Read returns what /proc knows of pid. Fields the caller may not read
// (exe and cwd of other users' processes without privilege) stay empty;
// an error means the process is gone or /proc/<pid>/stat is unreadable.
func (fs FS) Read(pid uint32) (Process, error) {
	dir := filepath.Join(fs.Root, strconv.FormatUint(uint64(pid), 10))
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return Process{}, fmt.Errorf("read process %d: %w", pid, err)
	}
	p, err := ParseStat(stat)
	if err != nil {
		return Process{}, fmt.Errorf("read process %d: %w", pid, err)
	}
	p.Exe, _ = os.Readlink(filepath.Join(dir, "exe"))
	p.Cwd, _ = os.Readlink(filepath.Join(dir, "cwd"))
	if cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil {
		p.Args = SplitCmdline(cmdline)
	}
	if status, err := os.ReadFile(filepath.Join(dir, "status")); err == nil {
		p.UID, p.EUID, p.GID = parseIDs(status)
	}
	return p, nil
}

// ParseStat parses /proc/<pid>/stat. The comm field is in parentheses and
// may itself hold spaces and parentheses, so fields are counted from the
// last ')'.
func ParseStat(b []byte) (Process, error) {
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return Process{}, fmt.Errorf("parse stat: no comm field")
	}
	pid, err := strconv.ParseUint(string(bytes.TrimSpace(b[:open])), 10, 32)
	if err != nil {
		return Process{}, fmt.Errorf("parse stat pid: %w", err)
	}
	// After ')': state(3) ppid(4) ... starttime(22), numbered from 1.
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 20 {
		return Process{}, fmt.Errorf("parse stat: %d fields after comm, want at least 20", len(f))
	}
	ppid, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil {
		return Process{}, fmt.Errorf("parse stat ppid: %w", err)
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return Process{}, fmt.Errorf("parse stat starttime: %w", err)
	}
	return Process{
		Pid: uint32(pid), Ppid: uint32(ppid), Comm: string(b[open+1 : end]),
		StartBoottime: start * (1e9 / ticksPerSecond),
	}, nil
}

// SplitCmdline splits /proc/<pid>/cmdline (NUL-separated) into argv.
func SplitCmdline(b []byte) []string {
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 {
		return nil
	}
	return strings.Split(string(b), "\x00")
}

// parseIDs reads the real and effective uid and the real gid from
// /proc/<pid>/status.
func parseIDs(status []byte) (uid, euid, gid uint32) {
	for line := range bytes.Lines(status) {
		name, rest, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) < 2 {
			continue
		}
		real, _ := strconv.ParseUint(f[0], 10, 32)
		eff, _ := strconv.ParseUint(f[1], 10, 32)
		switch string(name) {
		case "Uid":
			uid, euid = uint32(real), uint32(eff)
		case "Gid":
			gid = uint32(real)
		}
	}
	return uid, euid, gid
}
