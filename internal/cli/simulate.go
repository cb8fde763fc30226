package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-sec/vigil/internal/simulate"
)

func simulateCmd() *cobra.Command {
	var (
		c       clientFlags
		local   bool
		timeout time.Duration
		verbose bool
		warmup  time.Duration
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

Everything a simulation creates is named vigil-sim-* and removed at the end,
also on failure and on Ctrl-C.`,
		Example: `  sudo vigil simulate --local all
  sudo vigil simulate --local webshell crypto -o json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := c.checkOutput(); err != nil {
				return err
			}
			scenarios, err := simulate.Lookup(args)
			if err != nil {
				return err
			}
			if !local {
				return errors.New("only --local is available: the cluster backend (victim pods in namespace " + simulate.Namespace + ") is not built yet")
			}
			if _, err := c.resolveToken(); err != nil {
				return err
			}
			// Victims started before the sensor is watching would be
			// half-known to it (their web server's name, for one):
			// wait for this node's sensor to report in.
			if err := waitForSensor(cmd.Context(), &c, hostname(), time.Minute); err != nil {
				return err
			}
			logf := func(format string, a ...any) {}
			if verbose {
				logf = func(format string, a ...any) { fmt.Fprintf(cmd.ErrOrStderr(), format+"\n", a...) }
			}
			results, err := simulate.Run(cmd.Context(), simulate.Config{
				Backend: &simulate.Local{},
				Alerts:  apiAlerts{&c},
				Timeout: timeout,
				Warmup:  warmup,
				Logf:    logf,
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
	f.BoolVarP(&verbose, "verbose", "v", false, "print each attack step and its output to stderr")
	return cmd
}

// apiAlerts reads a victim's alerts from the server's API: the alerts of
// one container (resource=<id>) last seen since the run started.
type apiAlerts struct{ c *clientFlags }

func (a apiAlerts) Alerts(ctx context.Context, containerID string, since time.Time) ([]simulate.Alert, error) {
	q := url.Values{"resource": {containerID}, "since": {since.UTC().Format(time.RFC3339Nano)}, "limit": {"1000"}}
	var alerts []simulate.Alert
	for range 100 {
		var page struct {
			Alerts []struct {
				Rule        string `json:"rule"`
				ContainerID string `json:"container_id"`
				Namespace   string `json:"namespace"`
				Pod         string `json:"pod"`
			} `json:"alerts"`
			NextCursor string `json:"next_cursor"`
		}
		if err := a.c.call(ctx, "GET", "/api/v1/alerts", q, nil, &page); err != nil {
			return nil, err
		}
		for _, al := range page.Alerts {
			if al.ContainerID == containerID {
				alerts = append(alerts, simulate.Alert{Rule: al.Rule, Namespace: al.Namespace, Pod: al.Pod})
			}
		}
		if page.NextCursor == "" {
			break
		}
		q.Set("cursor", page.NextCursor)
	}
	return alerts, nil
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
