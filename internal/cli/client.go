//go:build !node

package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// clientFlags are every client command's --server, --token and -o. They
// default to a `vigil up` on this machine: its address and the admin token
// it wrote.
type clientFlags struct {
	server string
	token  string
	output string
}

func (c *clientFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&c.server, "server", envOr("VIGIL_SERVER", "http://127.0.0.1:7777"), "server URL (env VIGIL_SERVER)")
	f.StringVar(&c.token, "token", "", "API token (env VIGIL_TOKEN; default: the admin token of a local `vigil up`)")
	f.StringVarP(&c.output, "output", "o", "table", "table or json")
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func (c *clientFlags) resolveToken() (string, error) {
	if c.token != "" {
		return c.token, nil
	}
	if t := os.Getenv("VIGIL_TOKEN"); t != "" {
		return t, nil
	}
	data, err := os.ReadFile(filepath.Join(defaultDataDir(), "admin.token"))
	if err != nil {
		return "", errors.New("no token: pass --token or set VIGIL_TOKEN (a local `vigil up` writes one to its data directory)")
	}
	return strings.TrimSpace(string(data)), nil
}

// call sends a JSON request and decodes the JSON answer into out. A non-2xx
// answer becomes an error carrying the server's message.
func (c *clientFlags) call(ctx context.Context, method, path string, query url.Values, body, out any) error {
	var raw []byte
	contentType := ""
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		raw, contentType = b, "application/json"
	}
	return c.send(ctx, method, path, query, contentType, raw, out)
}

// send is call with a body sent as is (nil: none), e.g. a YAML document.
func (c *clientFlags) send(ctx context.Context, method, path string, query url.Values, contentType string, body []byte, out any) error {
	token, err := c.resolveToken()
	if err != nil {
		return err
	}
	u, err := url.Parse(strings.TrimRight(c.server, "/") + path)
	if err != nil {
		return fmt.Errorf("--server: %w", err)
	}
	u.RawQuery = query.Encode()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("server: %s (%d)", e.Error, resp.StatusCode)
		}
		return fmt.Errorf("server: %s", resp.Status)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

func (c *clientFlags) printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (c *clientFlags) checkOutput() error {
	if c.output != "table" && c.output != "json" {
		return fmt.Errorf("-o %q: want table or json", c.output)
	}
	return nil
}

// alertRow is the part of an alert the table shows.
type alertRow struct {
	ID        string    `json:"id"`
	Rule      string    `json:"rule"`
	Title     string    `json:"title"`
	Severity  string    `json:"severity"`
	Status    string    `json:"status"`
	Cluster   string    `json:"cluster"`
	Namespace string    `json:"namespace"`
	Pod       string    `json:"pod"`
	Node      string    `json:"node"`
	Count     uint64    `json:"count"`
	LastSeen  time.Time `json:"last_seen"`
}

func (a alertRow) resource() string {
	switch {
	case a.Pod != "":
		return a.Cluster + "/" + a.Namespace + "/" + a.Pod
	case a.Node != "":
		return a.Cluster + "/node/" + a.Node
	}
	return a.Cluster
}

func alertsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "alerts", Short: "List, show and dismiss alerts on a server"}
	cmd.AddCommand(alertsListCmd(), alertsGetCmd(), alertsStatusCmd("dismiss"), alertsStatusCmd("resolve"), alertsStatusCmd("reactivate"))
	return cmd
}

func alertsListCmd() *cobra.Command {
	var c clientFlags
	var f struct{ severity, status, cluster, namespace, rule, resource, since, sort, cursor, q string }
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List alerts, newest first, with filters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := c.checkOutput(); err != nil {
				return err
			}
			q := url.Values{}
			for k, v := range map[string]string{"severity": f.severity, "status": f.status, "cluster": f.cluster, "namespace": f.namespace,
				"rule": f.rule, "resource": f.resource, "since": f.since, "sort": f.sort, "cursor": f.cursor, "q": f.q} {
				if v != "" {
					q.Set(k, v)
				}
			}
			q.Set("limit", fmt.Sprint(limit))
			var page struct {
				Alerts     []json.RawMessage `json:"alerts"`
				NextCursor string            `json:"next_cursor"`
			}
			if err := c.call(cmd.Context(), "GET", "/api/v1/alerts", q, nil, &page); err != nil {
				return err
			}
			if c.output == "json" {
				return c.printJSON(cmd.OutOrStdout(), page)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSEVERITY\tSTATUS\tRULE\tRESOURCE\tCOUNT\tLAST SEEN")
			for _, raw := range page.Alerts {
				var a alertRow
				if err := json.Unmarshal(raw, &a); err != nil {
					return err
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", a.ID, a.Severity, a.Status, a.Rule, a.resource(), a.Count, a.LastSeen.Format(time.RFC3339))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if page.NextCursor != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "more: --cursor %s\n", page.NextCursor)
			}
			return nil
		},
	}
	c.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&f.severity, "severity", "", "informational, low, medium, high (comma-separated)")
	fl.StringVar(&f.status, "status", "", "active, dismissed, resolved (comma-separated)")
	fl.StringVar(&f.cluster, "cluster", "", "cluster name")
	fl.StringVar(&f.namespace, "namespace", "", "namespace")
	fl.StringVar(&f.rule, "rule", "", "rule id")
	fl.StringVar(&f.resource, "resource", "", "pod, workload, container id, node or image")
	fl.StringVar(&f.since, "since", "", "RFC 3339 time or a duration back from now (24h)")
	fl.StringVar(&f.sort, "sort", "", "last_seen (default), first_seen or severity")
	fl.StringVar(&f.cursor, "cursor", "", "continue from a previous page")
	fl.StringVar(&f.q, "search", "", "text in the title, rule or process")
	fl.IntVar(&limit, "limit", 50, "alerts per page (at most 1000)")
	return cmd
}

func alertsGetCmd() *cobra.Command {
	var c clientFlags
	cmd := &cobra.Command{
		Use:   "get ID",
		Short: "Show one alert with its history",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := c.checkOutput(); err != nil {
				return err
			}
			var a map[string]any
			if err := c.call(cmd.Context(), "GET", "/api/v1/alerts/"+url.PathEscape(args[0]), nil, nil, &a); err != nil {
				return err
			}
			if c.output == "json" {
				return c.printJSON(cmd.OutOrStdout(), a)
			}
			w := cmd.OutOrStdout()
			for _, k := range []string{"id", "rule", "title", "severity", "status", "tactic", "cluster", "node", "namespace", "pod",
				"container", "image", "workload", "count", "first_seen", "last_seen", "incident_id"} {
				if v, ok := a[k]; ok && v != "" && v != nil {
					fmt.Fprintf(w, "%-12s %v\n", k+":", v)
				}
			}
			if p, ok := a["process"].(map[string]any); ok {
				fmt.Fprintf(w, "%-12s %v %v\n", "process:", p["exe"], p["args"])
			}
			if d, ok := a["description"].(string); ok {
				fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(d))
			}
			if r, ok := a["remediation"].(string); ok {
				fmt.Fprintf(w, "\nRemediation: %s\n", strings.TrimSpace(r))
			}
			return nil
		},
	}
	c.register(cmd)
	return cmd
}

func alertsStatusCmd(verb string) *cobra.Command {
	var c clientFlags
	var reason string
	cmd := &cobra.Command{
		Use:   verb + " ID... --reason TEXT",
		Short: strings.ToUpper(verb[:1]) + verb[1:] + " alerts (admin)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(reason) == "" {
				return errors.New("--reason is required")
			}
			for _, id := range args {
				if err := c.call(cmd.Context(), "POST", "/api/v1/alerts/"+url.PathEscape(id)+"/"+verb, nil,
					map[string]string{"reason": reason}, nil); err != nil {
					return fmt.Errorf("%s: %w", id, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", id, pastTense(verb))
			}
			return nil
		},
	}
	c.register(cmd)
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded with your name)")
	return cmd
}

func pastTense(verb string) string {
	switch verb {
	case "dismiss":
		return "dismissed"
	case "resolve":
		return "resolved"
	}
	return "reactivated"
}

func clusterCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Add and list clusters on a server"}
	var add clientFlags
	addCmd := &cobra.Command{
		Use:   "add NAME",
		Short: "Create a cluster and print its join credential (shown once)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := add.checkOutput(); err != nil {
				return err
			}
			var out struct {
				Cluster    map[string]any `json:"cluster"`
				Credential string         `json:"credential"`
			}
			if err := add.call(cmd.Context(), "POST", "/api/v1/clusters", nil, map[string]string{"name": args[0]}, &out); err != nil {
				return err
			}
			if add.output == "json" {
				return add.printJSON(cmd.OutOrStdout(), out)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cluster %s created\njoin credential (shown once; give it to the cluster's sensors and agent as a Secret):\n%s\n", args[0], out.Credential)
			return nil
		},
	}
	add.register(addCmd)
	var list clientFlags
	listCmd := &cobra.Command{
		Use:   "list",
		Short: "List clusters with their connectivity and components",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := list.checkOutput(); err != nil {
				return err
			}
			var out struct {
				Clusters []struct {
					Name         string    `json:"name"`
					Connectivity string    `json:"connectivity"`
					LastSeen     time.Time `json:"last_seen"`
					Components   []struct {
						Node, Component, State, Reason string
					} `json:"components"`
				} `json:"clusters"`
			}
			var raw json.RawMessage
			if err := list.call(cmd.Context(), "GET", "/api/v1/clusters", nil, nil, &raw); err != nil {
				return err
			}
			if list.output == "json" {
				_, err := cmd.OutOrStdout().Write(append(raw, '\n'))
				return err
			}
			if err := json.Unmarshal(raw, &out); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tCONNECTIVITY\tLAST SEEN\tCOMPONENTS")
			for _, c := range out.Clusters {
				seen := "never"
				if !c.LastSeen.IsZero() {
					seen = c.LastSeen.Format(time.RFC3339)
				}
				var comps []string
				for _, k := range c.Components {
					comps = append(comps, k.Component+"@"+k.Node+"="+k.State)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Name, c.Connectivity, seen, strings.Join(comps, ", "))
			}
			return tw.Flush()
		},
	}
	list.register(listCmd)
	cmd.AddCommand(addCmd, listCmd, clusterCertCmd())
	return cmd
}
