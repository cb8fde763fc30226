//go:build !node

package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/server/controlplane"
)

func auditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Control-plane detection from Kubernetes audit logs",
	}
	cmd.AddCommand(auditReplayCmd(), auditEnableCmd(), auditTailCmd())
	return cmd
}

func auditReplayCmd() *cobra.Command {
	var rf ruleFlags
	var output, cluster string
	cmd := &cobra.Command{
		Use:   "replay FILE...",
		Short: "Run the control-plane rules over audit log files and print the alerts",
		Long: `Read API server audit logs (JSON lines, as --audit-log-path writes them;
.gz files too), run every k8s.audit rule over them in order and print the
alerts: a table, or one JSON object per line with -o json. Repeats of one
rule by one user on one object are one alert with a count. Lines that are
not audit events, or lack required fields, are counted on stderr and
skipped.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o %q: want table or json", output)
			}
			rules, err := rf.load(false)
			if err != nil {
				return err
			}
			alerts, total, err := controlplane.Replay(rules, cluster, args)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%d events, %d alerts; skipped: %d malformed, %d missing fields, %d lines too long; %d truncated\n",
				total.Events, len(alerts), total.Malformed, total.Missing, total.TooLong, total.Truncated)
			out := cmd.OutOrStdout()
			if output == "json" {
				enc := json.NewEncoder(out)
				for i := range alerts {
					if err := enc.Encode(&alerts[i]); err != nil {
						return err
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "FIRST SEEN\tSEVERITY\tRULE\tUSER\tOBJECT\tCOUNT")
			for i := range alerts {
				a := &alerts[i]
				user := ""
				if a.User != nil {
					user = a.User.Name
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", a.FirstSeen.UTC().Format("2006-01-02T15:04:05Z"), a.Severity, a.Rule, user, object(a), a.Count)
			}
			return tw.Flush()
		},
	}
	rf.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json (one alert per line)")
	cmd.Flags().StringVar(&cluster, "cluster", "", "cluster name to stamp on the alerts")
	return cmd
}

// object names what a control-plane alert is about.
func object(a *event.Alert) string {
	var parts []string
	for _, p := range []string{a.Namespace, a.Workload, a.Pod} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	if r, ok := a.Evidence["ka.target.resource"].(string); ok && len(parts) < 2 {
		name, _ := a.Evidence["ka.target.name"].(string)
		parts = append(parts, r+"/"+name)
	}
	return strings.Join(parts, " ")
}
