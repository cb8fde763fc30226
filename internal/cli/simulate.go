//go:build !node

package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vigil-sec/vigil/internal/install"
	"github.com/vigil-sec/vigil/internal/simulate"
)

func simulateCmd() *cobra.Command {
	var (
		c       clientFlags
		local   bool
		timeout time.Duration
		verbose bool
		warmup  time.Duration
		realMD  bool
		kube    simulateKubeFlags
	)
	ids := []string{}
	for _, sc := range simulate.All() {
		ids = append(ids, sc.ID)
	}
	cmd := &cobra.Command{
		Use:   "simulate SCENARIO... | all",
		Short: "Run harmless attacks and check that their alerts reach the server",
		Long: `Run harmless versions of real attacks against a victim workload, then ask the
server until the alerts each scenario must raise show up for the victim's
container, and print a table: scenario, expected rules, pass or fail, and the
detection latency (from the attack step to the alert visible through the
API). The exit status is non-zero when any scenario fails.

Scenarios: ` + strings.Join(ids, ", ") + `, or all.

--local runs the runtime scenarios on this machine without a cluster, against
a ` + "`vigil up`" + ` whose sensor watches it: each victim is a runc container
(busybox-static root on overlayfs) with its own network namespace, where the
attacker's servers (a fake API server, a fake cloud metadata service on
169.254.169.254, the miner's download site, the reverse shell's listener) also
live: no traffic leaves the machine. It needs root, runc and busybox.
Scenarios that need a cluster are reported as skipped.

Without --local the victims are pods in namespace ` + simulate.Namespace + ` of the cluster
of the current kubeconfig (--kubeconfig, --context), created with the labels
app.kubernetes.io/part-of=vigil and app.kubernetes.io/component=simulation
(a namespace of that name without them is never touched). Each pod runs the
victim image (--victim-image, busybox; unprivileged, every capability dropped)
and an attacker sidecar (--relay-image, the vigil image) that the CLI reaches
through a port-forward: the attacker's servers and connections live in the
pod's network namespace only, and the fake metadata service on
169.254.169.254 is on the pod's own loopback (the sidecar alone gets
NET_ADMIN for that). control-plane acts on the API with your kubeconfig: a
query of the test namespace, a privileged pod that is never scheduled, a
cluster-admin binding for a throwaway service account, deleted events; its
alerts come from the API server's audit log.

Everything a simulation creates is named vigil-sim-* and removed at the end,
also on failure and on Ctrl-C; the cluster's namespace is deleted.`,
		Example: `  sudo vigil simulate --local all
  sudo vigil simulate --local webshell crypto -o json
  vigil simulate --context prod --server https://vigil.example.com all`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := c.checkOutput(); err != nil {
				return err
			}
			scenarios, err := simulate.Lookup(args)
			if err != nil {
				return err
			}
			if local && (kube.kubeconfig != "" || kube.context != "") {
				return errors.New("--kubeconfig and --context name a cluster: --local runs without one")
			}
			if local && realMD {
				return errors.New("--real-metadata is for your own cloud cluster, never --local: this machine's metadata service is not the simulation's")
			}
			if _, err := c.resolveToken(); err != nil {
				return err
			}
			logf := func(format string, a ...any) {}
			if verbose {
				logf = func(format string, a ...any) { fmt.Fprintf(cmd.ErrOrStderr(), format+"\n", a...) }
			}
			var backend simulate.Backend
			if local {
				// Victims started before the sensor is watching would be
				// half-known to it (their web server's name, for one):
				// wait for this node's sensor to report in.
				if err := waitForSensor(cmd.Context(), &c, hostname(), time.Minute); err != nil {
					return err
				}
				backend = &simulate.Local{}
			} else {
				cl, err := kube.backend(logf)
				if err != nil {
					return err
				}
				backend = cl
			}
			results, err := simulate.Run(cmd.Context(), simulate.Config{
				Backend:      backend,
				Alerts:       apiAlerts{&c},
				Timeout:      timeout,
				Warmup:       warmup,
				RealMetadata: realMD,
				Logf:         logf,
			}, scenarios)
			if err != nil {
				return err
			}
			if c.output == "json" {
				if err := c.printJSON(cmd.OutOrStdout(), simulationJSON(results)); err != nil {
					return err
				}
			} else {
				printSimulation(cmd.OutOrStdout(), results)
			}
			if err := cmd.Context().Err(); err != nil {
				return fmt.Errorf("simulation interrupted (everything it created is removed): %w", err)
			}
			failed := 0
			for _, r := range results {
				if r.Status == simulate.Fail {
					failed++
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d scenarios did not raise their alerts", failed, len(results))
			}
			return nil
		},
	}
	c.register(cmd)
	f := cmd.Flags()
	f.BoolVar(&local, "local", false, "run the victims as runc containers on this machine (needs root, runc, busybox and a `vigil up`)")
	f.DurationVar(&timeout, "timeout", 60*time.Second, "how long each scenario waits for its alerts after its attack")
	f.DurationVar(&warmup, "warmup", 6*time.Second, "how long the victims run before the first attack, so that the sensor knows their pod and image")
	f.BoolVar(&realMD, "real-metadata", false, "lateral-movement asks your cloud's real metadata service from the victim pod (your own cloud cluster only; default: a fake one on the victim's loopback)")
	f.BoolVarP(&verbose, "verbose", "v", false, "print each attack step and its output to stderr")
	kube.register(cmd)
	cmd.AddCommand(simulateRelayCmd())
	return cmd
}

// apiAlerts reads a victim's alerts from the server's API: the alerts of
// one container (resource=<id>) last seen since the run started.
type apiAlerts struct{ c *clientFlags }

func (a apiAlerts) Alerts(ctx context.Context, containerID string, since time.Time) ([]simulate.Alert, error) {
	q := url.Values{"resource": {containerID}, "since": {since.UTC().Format(time.RFC3339Nano)}, "limit": {"1000"}}
	var alerts []simulate.Alert
	err := a.list(ctx, q, func(al simAlert) {
		if al.ContainerID == containerID {
			alerts = append(alerts, simulate.Alert{Rule: al.Rule, Namespace: al.Namespace, Pod: al.Pod})
		}
	})
	return alerts, err
}

// AuditAlerts implements simulate.AuditAlertSource: the alerts raised
// from the audit log since the run started (source audit, no container):
// those about no workload (type=cluster) and those about a pod of the
// simulation's namespace, each with the API object its evidence names.
func (a apiAlerts) AuditAlerts(ctx context.Context, since time.Time) ([]simulate.Alert, error) {
	var alerts []simulate.Alert
	seen := map[string]bool{}
	for _, q := range []url.Values{{"type": {"cluster"}}, {"namespace": {simulate.Namespace}}} {
		q.Set("since", since.UTC().Format(time.RFC3339Nano))
		q.Set("limit", "1000")
		err := a.list(ctx, q, func(al simAlert) {
			if al.Source != "audit" || al.ContainerID != "" || seen[al.ID] {
				return
			}
			seen[al.ID] = true
			alerts = append(alerts, simulate.Alert{Rule: al.Rule, Namespace: al.Namespace, Pod: al.Pod, Object: auditObject(al.Evidence)})
		})
		if err != nil {
			return nil, err
		}
	}
	return alerts, nil
}

// auditObject names the API object of an audit alert's evidence as
// simulate.ObjectRef does: ka.target.* when the rule kept them, else read
// from the request URI (/api/v1/namespaces/NS/RESOURCE[/NAME],
// /apis/GROUP/VERSION/RESOURCE[/NAME]).
func auditObject(ev map[string]any) string {
	str := func(k string) string { s, _ := ev[k].(string); return s }
	res, ns, name := str("ka.target.resource"), str("ka.target.namespace"), str("ka.target.name")
	if res == "" {
		p, _, _ := strings.Cut(str("ka.uri"), "?")
		parts := strings.Split(strings.Trim(p, "/"), "/")
		switch {
		case len(parts) >= 2 && parts[0] == "api":
			parts = parts[2:]
		case len(parts) >= 3 && parts[0] == "apis":
			parts = parts[3:]
		default:
			parts = nil
		}
		if len(parts) >= 2 && parts[0] == "namespaces" && len(parts) >= 3 {
			ns, parts = parts[1], parts[2:]
		}
		if len(parts) > 0 {
			res = parts[0]
		}
		if len(parts) > 1 && name == "" {
			name = parts[1]
		}
	}
	return simulate.ObjectRef(res, ns, name)
}

type simAlert struct {
	ID          string         `json:"id"`
	Source      string         `json:"source"`
	Rule        string         `json:"rule"`
	ContainerID string         `json:"container_id"`
	Namespace   string         `json:"namespace"`
	Pod         string         `json:"pod"`
	Evidence    map[string]any `json:"evidence"`
}

// list pages through GET /api/v1/alerts?q (at most 100 pages).
func (a apiAlerts) list(ctx context.Context, q url.Values, each func(simAlert)) error {
	for range 100 {
		var page struct {
			Alerts     []simAlert `json:"alerts"`
			NextCursor string     `json:"next_cursor"`
		}
		if err := a.c.call(ctx, "GET", "/api/v1/alerts", q, nil, &page); err != nil {
			return err
		}
		for _, al := range page.Alerts {
			each(al)
		}
		if page.NextCursor == "" {
			return nil
		}
		q.Set("cursor", page.NextCursor)
	}
	return nil
}

// waitForSensor waits until the sensor on node reports to the server as
// installed (eBPF loaded) and has done so recently, or timeout passes.
func waitForSensor(ctx context.Context, c *clientFlags, node string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var out struct {
			Clusters []struct {
				Components []struct {
					Node      string    `json:"node"`
					Component string    `json:"component"`
					State     string    `json:"state"`
					Reason    string    `json:"reason"`
					LastSeen  time.Time `json:"last_seen"`
				} `json:"components"`
			} `json:"clusters"`
		}
		if err := c.call(ctx, "GET", "/api/v1/clusters", nil, nil, &out); err != nil {
			return fmt.Errorf("ask the server for this node's sensor: %w", err)
		}
		state := "not reporting"
		for _, cl := range out.Clusters {
			for _, k := range cl.Components {
				if k.Component != "sensor" || k.Node != node {
					continue
				}
				if k.State == "installed" && time.Since(k.LastSeen) < 2*time.Minute {
					return nil
				}
				state = k.State
				if k.Reason != "" {
					state += ": " + k.Reason
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the sensor on node %s is %s: the local simulation needs `vigil up` (as root) running here against %s", node, state, c.server)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func printSimulation(w io.Writer, results []simulate.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tEXPECTED RULES\tRESULT\tLATENCY")
	for _, r := range results {
		var rules []string
		for _, rr := range r.Rules {
			rules = append(rules, rr.Rule)
		}
		result, latency := r.Status, "-"
		switch r.Status {
		case simulate.Pass:
			latency = formatLatency(r.Latency)
		case simulate.Skipped:
			result = "skipped (" + r.Reason + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Scenario, strings.Join(rules, ","), result, latency)
	}
	tw.Flush()
	for _, r := range results {
		if r.Status != simulate.Fail {
			continue
		}
		fmt.Fprintf(w, "\n%s: %s", r.Scenario, r.Reason)
		if r.ContainerID != "" {
			fmt.Fprintf(w, " (container %s)", r.ContainerID)
		}
		fmt.Fprintln(w)
		for _, rr := range r.Rules {
			if rr.Seen {
				fmt.Fprintf(w, "  %s: seen after %s\n", rr.Rule, formatLatency(rr.Latency))
			}
		}
	}
}

func formatLatency(d time.Duration) string {
	return fmt.Sprintf("%.2fs", d.Seconds())
}

type simulationRule struct {
	Rule      string   `json:"rule"`
	Seen      bool     `json:"seen"`
	LatencyMS *float64 `json:"latency_ms,omitempty"`
}

type simulationResult struct {
	Scenario    string           `json:"scenario"`
	Result      string           `json:"result"`
	Reason      string           `json:"reason,omitempty"`
	ContainerID string           `json:"container_id,omitempty"`
	Namespace   string           `json:"namespace,omitempty"`
	Pod         string           `json:"pod,omitempty"`
	LatencyMS   *float64         `json:"latency_ms,omitempty"`
	Rules       []simulationRule `json:"rules"`
}

func ms(d time.Duration) *float64 {
	v := float64(d.Microseconds()) / 1000
	return &v
}

func simulationJSON(results []simulate.Result) []simulationResult {
	out := []simulationResult{}
	for _, r := range results {
		s := simulationResult{Scenario: r.Scenario, Result: r.Status, Reason: r.Reason, ContainerID: r.ContainerID,
			Namespace: r.Namespace, Pod: r.Pod, Rules: []simulationRule{}}
		if r.Status == simulate.Pass {
			s.LatencyMS = ms(r.Latency)
		}
		for _, rr := range r.Rules {
			sr := simulationRule{Rule: rr.Rule, Seen: rr.Seen}
			if rr.Seen {
				sr.LatencyMS = ms(rr.Latency)
			}
			s.Rules = append(s.Rules, sr)
		}
		out = append(out, s)
	}
	return out
}

// simulateKubeFlags are the cluster backend's flags.
type simulateKubeFlags struct {
	kubeconfig, context     string
	victimImage, relayImage string
	startTimeout            time.Duration
}

func (k *simulateKubeFlags) register(cmd *cobra.Command) {
	tag := "latest"
	if ch, err := install.LoadChart(); err == nil && ch.Metadata != nil && ch.Metadata.AppVersion != "" {
		tag = ch.Metadata.AppVersion
	}
	f := cmd.Flags()
	f.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (default: $KUBECONFIG or ~/.kube/config); not with --local")
	f.StringVar(&k.context, "context", "", "kubeconfig context (default: the current one)")
	f.StringVar(&k.victimImage, "victim-image", "vigil.dev/victim:"+tag, "image of the victim containers (busybox; `make images` builds it with -busybox), pulled IfNotPresent")
	f.StringVar(&k.relayImage, "relay-image", "vigil.dev/vigil:"+tag, "image of the attacker sidecars (the vigil image, as `vigil install` deploys it), pulled IfNotPresent")
	f.DurationVar(&k.startTimeout, "start-timeout", 2*time.Minute, "how long a victim pod may take to run (image pull included)")
}

// backend builds the cluster backend from the kubeconfig.
func (k *simulateKubeFlags) backend(logf func(string, ...any)) (*simulate.Cluster, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = k.kubeconfig
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: k.context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("reach the Kubernetes API (no usable kubeconfig; --local runs without a cluster): %w", err)
	}
	rc.UserAgent = "vigil-simulate"
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("Kubernetes client: %w", err)
	}
	return &simulate.Cluster{Config: rc, Kube: kc, VictimImage: k.victimImage, RelayImage: k.relayImage,
		StartTimeout: k.startTimeout, Logf: logf}, nil
}

// simulateRelayCmd is the attacker sidecar of a cluster victim pod (hidden:
// the cluster backend starts it, users do not).
func simulateRelayCmd() *cobra.Command {
	var (
		listen string
		allow  []string
	)
	cmd := &cobra.Command{
		Use:    "relay",
		Short:  "Relay the simulation's attacker connections inside a victim pod",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("relay: %w", err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "vigil simulate relay: listening on %s\n", l.Addr())
			return simulate.ServeRelay(cmd.Context(), l, simulate.RelayConfig{AllowAddresses: allow,
				Logf: func(format string, a ...any) { fmt.Fprintf(cmd.ErrOrStderr(), format+"\n", a...) }})
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:"+strconv.Itoa(simulate.RelayPort), "address to serve the relay on (the pod's loopback)")
	cmd.Flags().StringArrayVar(&allow, "allow-address", nil, "an address the relay may add to the pod's loopback (repeatable)")
	return cmd
}
