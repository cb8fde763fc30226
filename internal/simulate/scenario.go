package simulate

import (
	"context"
	"net"
	"strings"
	"sync"
	"time"
)

// Scenario is one simulated attack.
type Scenario struct {
	// ID is the stable kebab-case name users pass to `vigil simulate`.
	ID string
	// Summary says in one line what the attacker does.
	Summary string
	// Rules are the rule ids the scenario must raise for its victim; it
	// passes when every one of them reached the server.
	Rules []string
	// NeedsCluster marks scenarios that only a Kubernetes cluster can run
	// (the control plane's audit log); the local backend skips them.
	NeedsCluster bool
	// ControlPlane marks scenarios whose alerts come from the API
	// server's audit log: they name no container, so they are matched by
	// the API objects the scenario touched (Session.Object), and the
	// victim is the cluster's API itself (VictimSpec.APIOnly).
	ControlPlane bool
	// LocalAddresses are the addresses the scenario gives the victim's
	// loopback (Victim.AddLocalAddress); a cluster victim's attacker
	// sidecar may add these and no others, and gets NET_ADMIN only then.
	LocalAddresses []string
	// PodServiceAccount: in a cluster, the victim talks to the real API
	// server with its pod's own token (mounted by the kubelet); the
	// stand-in Victim plants for the local backend under the
	// service-account directory is left out there.
	PodServiceAccount bool
	// Victim is the workload the attack runs against.
	Victim VictimSpec
	// Run performs the attack against the started victim. It calls
	// s.Step before each action, naming the rules that action must raise,
	// so that latency is measured from it. Run returns when its actions
	// are done (not when the alerts arrive) or when ctx is cancelled.
	Run func(ctx context.Context, s *Session) error
}

// Victim is a running victim workload as a scenario sees it. The
// attacker's side of the network (Dial, Listen) is the victim's own
// network, never the machine's.
type Victim interface {
	// ContainerID is the id alerts carry for the victim's container.
	ContainerID() string
	// Exec runs args in the victim, as kubectl exec does, and returns
	// the combined output.
	Exec(ctx context.Context, args ...string) (string, error)
	// Dial connects the attacker to addr (ip:port) as the victim's
	// network sees it.
	Dial(ctx context.Context, addr string) (net.Conn, error)
	// Listen opens an attacker's listener at addr (ip:port) reachable
	// from the victim; the caller closes it.
	Listen(addr string) (net.Listener, error)
	// AddLocalAddress makes ip an address of the victim's own loopback
	// interface, so that a fake service listening on it (via Listen)
	// answers for that address. Traffic to it never leaves the victim.
	AddLocalAddress(ctx context.Context, ip string) error
	// Remove deletes the victim and everything created for it. It runs
	// on failure and cancellation too, so it takes no context.
	Remove() error
}

// Backend starts victims: Local runs runc containers on this machine,
// Cluster runs pods. A Backend that is also an io.Closer is closed when Run
// returns (also on failure and cancellation): what it created for the run
// as a whole, such as the Cluster's namespace, goes then.
type Backend interface {
	// Name is "local" or "cluster".
	Name() string
	// Check reports why the backend cannot run at all (missing tools,
	// not root), before any scenario starts.
	Check() error
	// Skip reports why sc cannot run on this backend, "" when it can.
	Skip(sc *Scenario) string
	// Start starts a victim for spec. On error nothing is left behind.
	Start(ctx context.Context, spec VictimSpec) (Victim, error)
}

// ScenarioStarter is a Backend that starts victims knowing the whole
// scenario (its cluster needs, or that it acts on the control plane);
// Run calls StartScenario instead of Start then. Its contract is Start's.
type ScenarioStarter interface {
	StartScenario(ctx context.Context, sc *Scenario) (Victim, error)
}

// Session is a scenario's run: the victim and the time of each step.
type Session struct {
	Victim Victim
	// Logf receives progress lines (what ran and its output); never nil.
	Logf func(format string, args ...any)
	// RealMetadata: Config.RealMetadata.
	RealMetadata bool

	mu      sync.Mutex
	steps   map[string]time.Time // rule id -> when the action that raises it ran
	objects map[string]bool      // "resource/namespace/name" a control-plane scenario touched
}

// Object records that the scenario acted on an API object (namespace ""
// for cluster-scoped ones, name "" for a whole collection): a control-plane
// scenario's alerts are the ones about the objects it recorded.
func (s *Session) Object(resource, namespace, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.objects == nil {
		s.objects = map[string]bool{}
	}
	s.objects[ObjectRef(resource, namespace, name)] = true
}

// ObjectRef is how Alert.Object and Session.Object name an API object.
func ObjectRef(resource, namespace, name string) string {
	return resource + "/" + namespace + "/" + name
}

func (s *Session) touched(object string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.objects[object]
}

// Step records that the action about to run must raise rules; detection
// latency is measured from now. A rule keeps its first step's time.
func (s *Session) Step(rules ...string) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.steps == nil {
		s.steps = map[string]time.Time{}
	}
	for _, r := range rules {
		if _, ok := s.steps[r]; !ok {
			s.steps[r] = now
		}
	}
}

// Exec runs args in the victim and logs it and its output. An action
// failing inside the victim is expected (modprobe has no modules there):
// alerts are on intent, so the error is logged, not returned, unless ctx
// is done.
func (s *Session) Exec(ctx context.Context, args ...string) (string, error) {
	out, err := s.Victim.Exec(ctx, args...)
	s.Logf("  $ %q -> %v\n%s", args, err, indent(out))
	if ctx.Err() != nil {
		return out, ctx.Err()
	}
	return out, nil
}

func (s *Session) stepTime(rule string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.steps[rule]
	return t, ok
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n    ") + "\n"
}

// All lists every scenario in the order `all` runs them.
func All() []*Scenario {
	return []*Scenario{webshell(), recon(), lateralMovement(), secrets(), crypto(), reverseShell(), drift(), controlPlane()}
}

// Lookup returns the scenarios names select: scenario ids, or "all".
func Lookup(names []string) ([]*Scenario, error) {
	all := All()
	if len(names) == 0 {
		return nil, errUnknown("", all)
	}
	var out []*Scenario
	seen := map[string]bool{}
	for _, n := range names {
		if n == "all" {
			for _, sc := range all {
				if !seen[sc.ID] {
					seen[sc.ID] = true
					out = append(out, sc)
				}
			}
			continue
		}
		found := false
		for _, sc := range all {
			if sc.ID == n {
				found = true
				if !seen[sc.ID] {
					seen[sc.ID] = true
					out = append(out, sc)
				}
			}
		}
		if !found {
			return nil, errUnknown(n, all)
		}
	}
	return out, nil
}
