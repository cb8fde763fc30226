package bpf

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestLoadAndExec loads the real programs into the running kernel and
// checks that an exec comes back decoded. Needs root; fails without it.
func TestLoadAndExec(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test loads eBPF programs and must run as root")
	}
	o, err := Open(Config{SelfTgid: uint32(os.Getpid()), RingBufferBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	t.Logf("missing optional hooks: %v", o.Missing())

	cmd := exec.Command("/bin/echo", "vigil-loader-test", "second arg")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := uint32(cmd.Process.Pid)
	dec := NewDecoder()
	deadline := time.AfterFunc(5*time.Second, func() { o.Close() })
	defer deadline.Stop()
	for {
		raw, err := o.Read()
		if err != nil {
			t.Fatalf("no exec record for pid %d: %v", pid, err)
		}
		r, err := dec.Decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		if r.Kind == KindExec && r.Tgid == pid {
			if got := r.Exec.Args; len(got) != 3 || got[1] != "vigil-loader-test" || got[2] != "second arg" {
				t.Fatalf("args = %q", got)
			}
			if r.Exec.Filename != "/bin/echo" || r.Ppid != uint32(os.Getpid()) {
				t.Fatalf("filename %q ppid %d", r.Exec.Filename, r.Ppid)
			}
			wd, _ := os.Getwd()
			if r.Exec.Cwd != wd {
				t.Fatalf("cwd = %q, want %q", r.Exec.Cwd, wd)
			}
			return
		}
	}
}
