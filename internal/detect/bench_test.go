package detect

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// eventMix is a recorded-style node workload: mostly the benign exec, exit
// and connect traffic of web, app and batch containers and the host, with
// about one event in a hundred from an attack.
func eventMix(n int) []*event.Event {
	r := rand.New(rand.NewPCG(1, 2))
	ctrs := []*event.Container{
		{ID: "3f2a9c", Name: "web", Image: "nginx:1.27", Pod: "web-7d9f", Namespace: "shop", Workload: "Deployment/shop/web", Labels: map[string]string{"app": "web"}},
		{ID: "8b1e77", Name: "api", Image: "ghcr.io/acme/api:2.3", Pod: "api-5c4b", Namespace: "shop", Workload: "Deployment/shop/api"},
		{ID: "c0ffee", Name: "worker", Image: "python:3.12", Pod: "etl-x1", Namespace: "data", Workload: "CronJob/data/etl"},
		nil, // the host
	}
	benign := []struct {
		exe    string
		args   []string
		parent string
	}{
		{"/usr/sbin/nginx", []string{"nginx", "-g", "daemon off;"}, "/usr/bin/containerd-shim-runc-v2"},
		{"/bin/sh", []string{"sh", "-c", "date +%s > /tmp/heartbeat"}, "/usr/bin/python3.12"},
		{"/bin/date", []string{"date", "+%s"}, "/bin/sh"},
		{"/usr/bin/python3.12", []string{"python3", "-m", "etl.run", "--since", "1h"}, "/bin/sh"},
		{"/bin/ls", []string{"ls", "-la", "/data/in"}, "/bin/bash"},
		{"/usr/bin/git", []string{"git", "rev-parse", "HEAD"}, "/usr/bin/make"},
		{"/usr/bin/cat", []string{"cat", "/proc/meminfo"}, "/usr/bin/node"},
		{"/usr/local/bin/node", []string{"node", "server.js"}, "/usr/bin/tini"},
		{"/usr/bin/grep", []string{"grep", "-c", "ERROR", "/var/log/app.log"}, "/bin/sh"},
		{"/usr/lib/systemd/systemd-journald", []string{"systemd-journald"}, "/usr/lib/systemd/systemd"},
	}
	attacks := []*event.Event{
		{Kind: event.ProcessExec, Process: &event.Process{Exe: "/tmp/xmrig", Args: []string{"./xmrig", "-o", "stratum+tcp://pool.supportxmr.com:3333"}, Drift: true, UpperLayer: true, Parent: &event.Lineage{Exe: "/bin/bash"}}},
		{Kind: event.ProcessExec, Process: &event.Process{Exe: "/bin/sh", Args: []string{"sh", "-c", "echo d2hvYW1p| base64 -d| bash"}, Ancestry: []event.Lineage{{Exe: "/usr/sbin/php-fpm8.1"}}}},
		{Kind: event.ProcessExec, Process: &event.Process{Exe: "/usr/bin/nmap", Args: []string{"nmap", "-Pn", "--open", "kubernetes.default/24", "-p", "443"}, Parent: &event.Lineage{Exe: "/bin/bash"}}},
		{Kind: event.FileOpen, Process: &event.Process{Exe: "/bin/cat", Args: []string{"cat", "/etc/shadow"}}, File: &event.File{Path: "/etc/shadow", Op: "open", Flags: "O_RDONLY"}},
	}
	out := make([]*event.Event, 0, n)
	for range n {
		ctr := ctrs[r.IntN(len(ctrs))]
		var e *event.Event
		switch x := r.IntN(100); {
		case x == 0:
			a := *attacks[r.IntN(len(attacks))]
			p := *a.Process
			a.Process = &p
			e = &a
		case x < 55:
			b := benign[r.IntN(len(benign))]
			e = &event.Event{Kind: event.ProcessExec, Process: &event.Process{Exe: b.exe, Args: b.args, Cwd: "/app",
				Parent:   &event.Lineage{Exe: b.parent},
				Ancestry: []event.Lineage{{Exe: b.parent}, {Exe: "/usr/bin/containerd-shim-runc-v2"}, {Exe: "/usr/lib/systemd/systemd"}}}}
		case x < 85:
			e = &event.Event{Kind: event.ProcessExit, Process: &event.Process{Exe: benign[r.IntN(len(benign))].exe}}
		case x < 97:
			e = &event.Event{Kind: event.NetworkConnect, Process: &event.Process{Exe: "/usr/local/bin/node", Args: []string{"node", "server.js"}},
				Network: &event.Network{Protocol: "tcp", Family: "ipv4", Src: "10.244.1.7:43122", Dst: fmt.Sprintf("10.96.0.%d:%d", r.IntN(250), []int{80, 443, 5432, 6379}[r.IntN(4)])}}
		default:
			e = &event.Event{Kind: event.FileOpen, Process: &event.Process{Exe: "/usr/local/bin/node", Args: []string{"node", "server.js"}},
				File: &event.File{Path: "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt", Op: "open", Flags: "O_RDONLY|O_CLOEXEC"}}
		}
		e.Process.Pid = uint32(1000 + r.IntN(30000))
		e.Container = ctr
		e.Node = "node-1"
		out = append(out, e)
	}
	return out
}

// BenchmarkEngine runs the full built-in catalog over the event mix; the
// ns/op is per event. Target (issue 3): at least 500,000 events per second
// per core and no allocation per benign event.
func BenchmarkEngine(b *testing.B) {
	rs, err := Load(Options{})
	if err != nil {
		b.Fatal(err)
	}
	events := eventMix(100_000)
	alerts := 0
	e := New(Config{Rules: rs, Emit: func(*event.Alert) { alerts++ }, kill: func(string, *event.Process) error { return nil }})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		e.Process(events[i%len(events)])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkEngineBenign is the hot path alone: benign events only, which
// must not allocate.
func BenchmarkEngineBenign(b *testing.B) {
	rs, err := Load(Options{})
	if err != nil {
		b.Fatal(err)
	}
	var events []*event.Event
	for _, e := range eventMix(20_000) {
		if !isAttack(e) {
			events = append(events, e)
		}
	}
	e := New(Config{Rules: rs})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		e.Process(events[i%len(events)])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func isAttack(e *event.Event) bool {
	p := e.Process
	return p.Drift || len(p.Ancestry) == 1 || e.Kind == event.FileOpen && e.File.Path == "/etc/shadow" ||
		len(p.Args) > 0 && p.Args[0] == "nmap"
}

// TestBenignEventsDoNotAllocate holds the hot path to zero allocations.
func TestBenignEventsDoNotAllocate(t *testing.T) {
	rs, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	var events []*event.Event
	for _, e := range eventMix(5000) {
		if !isAttack(e) {
			events = append(events, e)
		}
	}
	e := New(Config{Rules: rs, Emit: func(a *event.Alert) { t.Errorf("benign event raised %s: %+v", a.Rule, a.Process) }})
	for _, ev := range events { // warm the view's buffers
		e.Process(ev)
	}
	i := 0
	allocs := testing.AllocsPerRun(len(events), func() {
		e.Process(events[i%len(events)])
		i++
	})
	if allocs != 0 {
		t.Fatalf("%.2f allocations per benign event, want 0", allocs)
	}
}

// TestAlertLatency measures the engine's share of alert latency: from the
// event entering Process to the alert handed to Emit (the sensor writes
// and flushes it there). p99 must stay well under 50 ms.
func TestAlertLatency(t *testing.T) {
	rs, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	var lat []time.Duration
	var start time.Time
	e := New(Config{Rules: rs, AggregateWindow: time.Nanosecond, Emit: func(*event.Alert) { lat = append(lat, time.Since(start)) },
		kill: func(string, *event.Process) error { return nil }})
	for i, ev := range eventMix(50_000) {
		ev.Time = testEpoch.Add(time.Duration(i) * time.Second) // no aggregation: every hit is emitted
		start = time.Now()
		e.Process(ev)
	}
	if len(lat) < 50 {
		t.Fatalf("only %d alerts from the mix", len(lat))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	t.Logf("%d alerts: engine latency p50 %v, p99 %v", len(lat), p50, p99)
	if p99 > 50*time.Millisecond {
		t.Fatalf("p99 %v", p99)
	}
}
