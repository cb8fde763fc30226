package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/vigil-sec/vigil/internal/simulate"
	"github.com/vigil-sec/vigil/test/e2e/node"
)

// Images `vigil simulate` runs on the node, as hack/images tags them with
// -version imageTag; both are imported into the node's containerd.
const (
	victimImage = "vigil.dev/victim:" + imageTag
	relayImage  = "vigil.dev/vigil:" + imageTag
)

// simulationResult is the part of `vigil simulate -o json` the test reads.
type simulationResult struct {
	Scenario    string   `json:"scenario"`
	Result      string   `json:"result"`
	Reason      string   `json:"reason"`
	ContainerID string   `json:"container_id"`
	Namespace   string   `json:"namespace"`
	Pod         string   `json:"pod"`
	LatencyMS   *float64 `json:"latency_ms"`
	Rules       []struct {
		Rule      string   `json:"rule"`
		Seen      bool     `json:"seen"`
		LatencyMS *float64 `json:"latency_ms"`
	} `json:"rules"`
}

// parseSimulation reads the JSON array `vigil simulate -o json` prints.
func parseSimulation(out string) ([]simulationResult, error) {
	i := strings.Index(out, "[")
	if i < 0 {
		return nil, fmt.Errorf("no JSON array in the output")
	}
	var rs []simulationResult
	if err := json.Unmarshal([]byte(out[i:]), &rs); err != nil {
		return nil, err
	}
	return rs, nil
}

func msString(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.2fs", *v/1000)
}

// logSimulation prints the latency table: one line per scenario (its
// slowest rule) and one per expected rule.
func logSimulation(t *testing.T, rs []simulationResult) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%-16s %-6s %8s  %s\n", "SCENARIO", "RESULT", "LATENCY", "RULES (latency)")
	for _, r := range rs {
		var rules []string
		for _, rr := range r.Rules {
			rules = append(rules, fmt.Sprintf("%s (%s)", rr.Rule, msString(rr.LatencyMS)))
		}
		fmt.Fprintf(&b, "%-16s %-6s %8s  %s", r.Scenario, r.Result, msString(r.LatencyMS), strings.Join(rules, ", "))
		if r.Reason != "" {
			fmt.Fprintf(&b, "  [%s]", r.Reason)
		}
		b.WriteString("\n")
	}
	t.Logf("e2e vigil: simulation latencies (attack step -> alert visible through the API):\n%s", b.String())
}

// checkSimulation checks `vigil simulate all`'s results against the
// scenarios the binary knows and every expected alert against the
// server's API: a runtime scenario's alerts name the node, namespace
// vigil-simulation, the victim's pod (vigil-sim-<scenario>-*), container
// "victim", its image and container id; control-plane's alerts come from
// the audit log and name the objects of vigil-simulation it touched.
func checkSimulation(ctx context.Context, t *testing.T, s *server, n *node.Node, rs []simulationResult) error {
	var bad []string
	byID := map[string]simulationResult{}
	for _, r := range rs {
		byID[r.Scenario] = r
	}
	for _, sc := range simulate.All() {
		r, ok := byID[sc.ID]
		if !ok {
			bad = append(bad, sc.ID+": not in the results")
			continue
		}
		if r.Result != "pass" {
			bad = append(bad, fmt.Sprintf("%s: %s: %s", sc.ID, r.Result, r.Reason))
			continue
		}
		if sc.ControlPlane {
			bad = append(bad, checkControlPlaneAlerts(ctx, t, s, sc)...)
			continue
		}
		bad = append(bad, checkScenarioAlerts(ctx, t, s, n, sc, r)...)
	}
	if len(rs) != len(simulate.All()) {
		bad = append(bad, fmt.Sprintf("%d results, want %d", len(rs), len(simulate.All())))
	}
	if len(bad) > 0 {
		return fmt.Errorf("simulation:\n  %s", strings.Join(bad, "\n  "))
	}
	return nil
}

func checkScenarioAlerts(ctx context.Context, t *testing.T, s *server, n *node.Node, sc *simulate.Scenario, r simulationResult) []string {
	var bad []string
	if !containerID.MatchString(r.ContainerID) {
		return []string{fmt.Sprintf("%s: victim container id %q", sc.ID, r.ContainerID)}
	}
	if !strings.HasPrefix(r.Pod, simulate.Prefix+sc.ID+"-") || r.Namespace != simulate.Namespace {
		bad = append(bad, fmt.Sprintf("%s: result names pod %s/%s", sc.ID, r.Namespace, r.Pod))
	}
	alerts, err := s.alerts(ctx, url.Values{"resource": {r.ContainerID}, "limit": {"1000"}})
	if err != nil {
		return append(bad, fmt.Sprintf("%s: %v", sc.ID, err))
	}
	for _, rule := range sc.Rules {
		i := slices.IndexFunc(alerts, func(a alert) bool { return a.Rule == rule && a.ContainerID == r.ContainerID })
		if i < 0 {
			bad = append(bad, fmt.Sprintf("%s: no %s alert for container %s on the server", sc.ID, rule, r.ContainerID))
			continue
		}
		a := alerts[i]
		var wrong []string
		want := func(field, got string, ok bool) {
			if !ok {
				wrong = append(wrong, fmt.Sprintf("%s = %q", field, got))
			}
		}
		want("cluster", a.Cluster, a.Cluster == clusterName)
		want("node", a.Node, a.Node == n.Name)
		want("namespace", a.Namespace, a.Namespace == simulate.Namespace)
		want("pod", a.Pod, a.Pod == r.Pod && r.Pod != "")
		want("container", a.Container, a.Container == "victim")
		want("image", a.Image, strings.Contains(a.Image, victimImage))
		// A victim is a bare pod: no owner, so no workload; its pod's
		// labels name the scenario when the sensor knows the pod.
		want("workload", a.Workload, a.Workload == "")
		if len(wrong) > 0 {
			b, _ := json.Marshal(a)
			bad = append(bad, fmt.Sprintf("%s: %s alert not attributed to the victim: %s\n    alert: %s", sc.ID, rule, strings.Join(wrong, ", "), b))
			continue
		}
		t.Logf("e2e vigil: %-16s %-42s node=%s pod=%s/%s container=%s image=%s labels=%v", sc.ID, rule, a.Node, a.Namespace, a.Pod, a.Container, a.Image, a.Labels)
	}
	return bad
}

// checkControlPlaneAlerts finds each rule of control-plane among the
// audit alerts of the simulation's namespace and of no workload.
func checkControlPlaneAlerts(ctx context.Context, t *testing.T, s *server, sc *simulate.Scenario) []string {
	var all []alert
	for _, q := range []url.Values{{"namespace": {simulate.Namespace}}, {"type": {"cluster"}}} {
		q.Set("limit", "1000")
		as, err := s.alerts(ctx, q)
		if err != nil {
			return []string{fmt.Sprintf("%s: %v", sc.ID, err)}
		}
		all = append(all, as...)
	}
	var bad []string
	for _, rule := range sc.Rules {
		var mine []alert
		for _, a := range all {
			if a.Rule == rule && a.Source == "audit" && a.Cluster == clusterName {
				mine = append(mine, a)
			}
		}
		if len(mine) == 0 {
			bad = append(bad, fmt.Sprintf("%s: no %s audit alert of cluster %s on the server", sc.ID, rule, clusterName))
			continue
		}
		a := mine[0]
		switch rule {
		case "audit.privileged-container":
			// About the privileged pod the scenario made in its namespace.
			if a.Namespace != simulate.Namespace || !strings.HasPrefix(a.Pod, simulate.Prefix+"privileged-") {
				b, _ := json.Marshal(a)
				bad = append(bad, fmt.Sprintf("%s: %s alert names %s/%s, want %s/%sprivileged-*\n    alert: %s", sc.ID, rule, a.Namespace, a.Pod, simulate.Namespace, simulate.Prefix, b))
				continue
			}
		case "audit.events-deleted":
			if a.Namespace != simulate.Namespace {
				b, _ := json.Marshal(a)
				bad = append(bad, fmt.Sprintf("%s: %s alert names namespace %q, want %s\n    alert: %s", sc.ID, rule, a.Namespace, simulate.Namespace, b))
				continue
			}
		}
		user := ""
		if a.User != nil {
			user = a.User.Name
		}
		t.Logf("e2e vigil: %-16s %-42s namespace=%s pod=%s user=%s", sc.ID, rule, a.Namespace, a.Pod, user)
	}
	return bad
}

// waitNamespaceGone waits until namespace is deleted.
func waitNamespaceGone(ctx context.Context, cs kubernetes.Interface, namespace string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ns, err := cs.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case err != nil:
			return fmt.Errorf("read namespace %s: %w", namespace, err)
		}
		if time.Now().After(deadline) {
			var conds []string
			for _, c := range ns.Status.Conditions {
				conds = append(conds, fmt.Sprintf("%s=%s %s", c.Type, c.Status, c.Message))
			}
			sort.Strings(conds)
			return fmt.Errorf("namespace %s still there %v after the simulation (phase %s) %s", namespace, timeout, ns.Status.Phase, strings.Join(conds, "; "))
		}
		time.Sleep(500 * time.Millisecond)
	}
}
