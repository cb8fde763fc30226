package procfs

import (
	"os"
	"slices"
	"testing"
)

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		in        string
		pid, ppid uint32
		comm      string
		start     uint64
		wantErr   bool
	}{
		{in: "42 (sh) S 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 1234 0 0", pid: 42, ppid: 1, comm: "sh", start: 1234 * 1e7},
		{in: "7 (a (b) c) R 3 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0", pid: 7, ppid: 3, comm: "a (b) c", start: 5e7},
		{in: "7 (x) R", wantErr: true},
		{in: "garbage", wantErr: true},
		{in: "", wantErr: true},
	} {
		p, err := ParseStat([]byte(tc.in))
		if (err != nil) != tc.wantErr {
			t.Fatalf("ParseStat(%q) error = %v", tc.in, err)
		}
		if err == nil && (p.Pid != tc.pid || p.Ppid != tc.ppid || p.Comm != tc.comm || p.StartBoottime != tc.start) {
			t.Fatalf("ParseStat(%q) = %+v", tc.in, p)
		}
	}
}

func TestReadSelf(t *testing.T) {
	p, err := FS{Root: "/proc"}.Read(uint32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	wd, _ := os.Getwd()
	if p.Ppid != uint32(os.Getppid()) || p.Exe != exe || p.Cwd != wd || p.UID != uint32(os.Getuid()) || !slices.Equal(p.Args, os.Args) {
		t.Fatalf("Read(self) = %+v", p)
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("42 (sh) S 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 1234 0 0"))
	f.Fuzz(func(t *testing.T, b []byte) { ParseStat(b) })
}
