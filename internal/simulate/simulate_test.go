package simulate_test

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/simulate"
)

// Every scenario names rules that exist among the built-in rules, and its
// id is stable kebab-case.
func TestScenariosNameBuiltinRules(t *testing.T) {
	rs, err := detect.Load(detect.Options{})
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, r := range rs.Rules() {
		known[r.ID] = true
	}
	for _, sc := range simulate.All() {
		if len(sc.Rules) == 0 {
			t.Errorf("%s names no rules", sc.ID)
		}
		if sc.ID != strings.ToLower(sc.ID) || strings.ContainsAny(sc.ID, " _") {
			t.Errorf("scenario id %q is not kebab-case", sc.ID)
		}
		for _, id := range sc.Rules {
			if !known[id] {
				t.Errorf("%s expects %s, which is not a built-in rule", sc.ID, id)
			}
		}
		if !sc.NeedsCluster && !strings.HasPrefix(sc.Victim.Name, sc.ID) {
			t.Errorf("%s: victim named %q", sc.ID, sc.Victim.Name)
		}
	}
}

func TestLookup(t *testing.T) {
	all, err := simulate.Lookup([]string{"all"})
	if err != nil || len(all) != len(simulate.All()) {
		t.Fatalf("all: %d scenarios, %v", len(all), err)
	}
	two, err := simulate.Lookup([]string{"crypto", "webshell", "crypto"})
	if err != nil || len(two) != 2 || two[0].ID != "crypto" || two[1].ID != "webshell" {
		t.Fatalf("crypto webshell crypto: %v %v", two, err)
	}
	if _, err := simulate.Lookup([]string{"nope"}); err == nil || !strings.Contains(err.Error(), "webshell") {
		t.Fatalf("unknown scenario: %v", err)
	}
	if _, err := simulate.Lookup(nil); err == nil {
		t.Fatal("no scenario accepted")
	}
}

// fakeBackend runs scenarios without containers: Run is tested on its
// own, against an alert source that answers after a delay.
type fakeBackend struct{ removed, addresses []string }

func (f *fakeBackend) Name() string { return "fake" }
func (f *fakeBackend) Check() error { return nil }
func (f *fakeBackend) Skip(sc *simulate.Scenario) string {
	if sc.NeedsCluster {
		return "needs a cluster"
	}
	return ""
}
func (f *fakeBackend) Start(_ context.Context, spec simulate.VictimSpec) (simulate.Victim, error) {
	return &fakeVictim{b: f, id: "vigil-sim-" + spec.Name}, nil
}

type fakeVictim struct {
	b  *fakeBackend
	id string
}

func (v *fakeVictim) ContainerID() string                             { return v.id }
func (v *fakeVictim) Exec(context.Context, ...string) (string, error) { return "", nil }
func (v *fakeVictim) Dial(context.Context, string) (net.Conn, error)  { return nil, os.ErrInvalid }
func (v *fakeVictim) Listen(string) (net.Listener, error)             { return nil, os.ErrInvalid }
func (v *fakeVictim) AddLocalAddress(_ context.Context, ip string) error {
	v.b.addresses = append(v.b.addresses, ip)
	return nil
}
func (v *fakeVictim) Remove() error { v.b.removed = append(v.b.removed, v.id); return nil }

type delayedAlerts struct {
	after time.Time
	rules map[string][]string // container -> rules
}

func (d delayedAlerts) Alerts(_ context.Context, id string, _ time.Time) ([]simulate.Alert, error) {
	if time.Now().Before(d.after) {
		return nil, nil
	}
	var out []simulate.Alert
	for _, r := range d.rules[id] {
		out = append(out, simulate.Alert{Rule: r, Namespace: simulate.Namespace, Pod: id})
	}
	return out, nil
}

func TestRunPassFailSkip(t *testing.T) {
	step := func(rules ...string) func(context.Context, *simulate.Session) error {
		return func(_ context.Context, s *simulate.Session) error { s.Step(rules...); return nil }
	}
	scs := []*simulate.Scenario{
		{ID: "a", Rules: []string{"r1", "r2"}, Victim: simulate.VictimSpec{Name: "a"}, Run: step("r1", "r2")},
		{ID: "b", Rules: []string{"r3"}, Victim: simulate.VictimSpec{Name: "b"}, Run: step("r3")},
		{ID: "c", Rules: []string{"audit.x"}, NeedsCluster: true},
	}
	be := &fakeBackend{}
	alerts := delayedAlerts{after: time.Now().Add(150 * time.Millisecond), rules: map[string][]string{
		"vigil-sim-a": {"r1", "r2", "other"},
		"vigil-sim-b": {"r1"}, // r3 never comes
	}}
	res, err := simulate.Run(context.Background(), simulate.Config{Backend: be, Alerts: alerts, Timeout: 400 * time.Millisecond, Poll: 10 * time.Millisecond}, scs)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Status != simulate.Pass || res[0].Latency < 100*time.Millisecond || res[0].Latency > time.Second || !res[0].Rules[1].Seen ||
		res[0].Pod != "vigil-sim-a" || res[0].Namespace != simulate.Namespace {
		t.Errorf("a: %+v", res[0])
	}
	if res[1].Status != simulate.Fail || !strings.Contains(res[1].Reason, "r3") || res[1].Rules[0].Seen {
		t.Errorf("b: %+v", res[1])
	}
	if res[2].Status != simulate.Skipped || res[2].Reason != "needs a cluster" {
		t.Errorf("c: %+v", res[2])
	}
	if strings.Join(be.removed, ",") != "vigil-sim-a,vigil-sim-b" {
		t.Errorf("removed %v", be.removed)
	}
}

// The local backend's victim: a runc container whose network namespace
// has only lo, where the attacker can listen and dial, and which leaves
// nothing behind. Runs as root in CI; fails where runc or busybox are
// missing.
func TestLocalVictim(t *testing.T) {
	be := &simulate.Local{}
	if err := be.Check(); err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	ctx := context.Background()
	v, err := be.Start(ctx, simulate.VictimSpec{Name: "test", Files: map[string]simulate.File{"/etc/motd": {Data: []byte("hi\n"), Mode: 0o644}}})
	if err != nil {
		t.Fatal(err)
	}
	removed := false
	t.Cleanup(func() {
		if !removed {
			v.Remove()
		}
	})
	id := v.ContainerID()
	if !strings.HasPrefix(id, simulate.Prefix+"test-") {
		t.Fatalf("container id %q", id)
	}
	if out, err := v.Exec(ctx, "/bin/cat", "/etc/motd"); err != nil || out != "hi\n" {
		t.Fatalf("exec: %q %v", out, err)
	}
	if out, _ := v.Exec(ctx, "/bin/cat", "/proc/net/dev"); strings.Contains(out, "eth") || !strings.Contains(out, "lo:") {
		t.Fatalf("victim's interfaces: %s", out)
	}
	if err := v.AddLocalAddress(ctx, "169.254.169.254"); err != nil {
		t.Fatal(err)
	}
	l, err := v.Listen("169.254.169.254:80")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		c, err := l.Accept()
		if err == nil {
			io.WriteString(c, "local only\n")
			c.Close()
		}
	}()
	if out, err := v.Exec(ctx, "/bin/nc", "169.254.169.254", "80"); err != nil || out != "local only\n" {
		t.Fatalf("victim -> attacker listener: %q %v", out, err)
	}
	l.Close()
	// The attacker's listeners live in the victim's network namespace,
	// not the host's: a port the host does not use, opened in the victim,
	// refuses connections on the host's loopback. (Never dial the metadata
	// address from the host: this machine may be a cloud VM.)
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := free.Addr().String()
	free.Close()
	l, err = v.Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("the victim's listener on %s answers on the host", addr)
	}
	if c, err := v.Dial(ctx, addr); err != nil {
		t.Fatalf("attacker -> victim's %s: %v", addr, err)
	} else {
		c.Close()
	}

	removed = true
	if err := v.Remove(); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command("runc", "list", "-q").Output(); strings.Contains(string(out), id) {
		t.Errorf("container %s still listed by runc", id)
	}
	if m, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(m), id) {
		t.Errorf("an overlay of %s is still mounted", id)
	}
	if dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), id+"-*")); len(dirs) > 0 {
		t.Errorf("bundle left behind: %v", dirs)
	}
}

// A run killed with its victims up (kill -9, a test timeout) leaves them
// behind; the next local run removes them. Two local runs at once are
// refused rather than removing each other's victims.
func TestLocalRemovesStaleVictims(t *testing.T) {
	killed := &simulate.Local{}
	if err := killed.Check(); err != nil {
		t.Fatal(err)
	}
	v, err := killed.Start(context.Background(), simulate.VictimSpec{Name: "stale"})
	if err != nil {
		t.Fatal(err)
	}
	id := v.ContainerID()
	if err := (&simulate.Local{}).Check(); err == nil || !strings.Contains(err.Error(), "another") {
		t.Fatalf("a second local run while one holds the lock: %v", err)
	}
	killed.Close() // the run dies without removing its victim

	next := &simulate.Local{}
	if err := next.Check(); err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	if out, _ := exec.Command("runc", "list", "--quiet").Output(); strings.Contains(string(out), id) {
		t.Fatalf("stale victim %s still runs", id)
	}
	if mounts, _ := os.ReadFile("/proc/self/mounts"); strings.Contains(string(mounts), id) {
		t.Fatalf("stale victim %s still has its overlay mounted", id)
	}
}

// --real-metadata: lateral-movement asks the real service, so nothing on
// the victim impersonates it (no local address, no fake listener) and its
// alerts alone decide.
func TestRealMetadata(t *testing.T) {
	scs, err := simulate.Lookup([]string{"lateral-movement"})
	if err != nil {
		t.Fatal(err)
	}
	rules := scs[0].Rules
	be := &fakeBackend{}
	alerts := delayedAlerts{rules: map[string][]string{"vigil-sim-lateral-movement": rules}}
	res, err := simulate.Run(context.Background(), simulate.Config{Backend: be, Alerts: alerts, Timeout: time.Second,
		Poll: 10 * time.Millisecond, RealMetadata: true}, scs)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Status != simulate.Pass || len(be.addresses) != 0 {
		t.Errorf("result %+v, local addresses %v: want a pass with none", res[0], be.addresses)
	}
	if len(scs[0].LocalAddresses) == 0 {
		t.Error("Run changed the scenario it was given")
	}
	// Without it, the fake service is set up on the victim's loopback.
	be = &fakeBackend{}
	simulate.Run(context.Background(), simulate.Config{Backend: be, Alerts: alerts, Timeout: time.Second, Poll: 10 * time.Millisecond}, scs)
	if len(be.addresses) != 1 || be.addresses[0] != "169.254.169.254" {
		t.Errorf("local addresses %v", be.addresses)
	}
}
