//go:build !node

package cli

import (
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
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

const postureConfigPath = "/api/v1/posture/config"

// postureConfigAnswer is the server's answer for a posture configuration.
type postureConfigAnswer struct {
	Cluster   string          `json:"cluster"`
	Source    string          `json:"source"`
	Config    json.RawMessage `json:"config"`
	Document  *string         `json:"document,omitempty"`
	UpdatedAt time.Time       `json:"updated_at,omitzero"`
	UpdatedBy string          `json:"updated_by,omitempty"`
}

// describe is one line about where the configuration comes from.
func (a postureConfigAnswer) describe() string {
	of := "the fleet default"
	if a.Cluster != "" {
		of = "cluster " + a.Cluster
	}
	switch a.Source {
	case "builtin":
		return of + ": Vigil's built-in defaults"
	case "fleet":
		if a.Cluster != "" {
			return fmt.Sprintf("%s: the fleet default, set %s by %s", of, a.UpdatedAt.Format(time.RFC3339), a.UpdatedBy)
		}
	}
	return fmt.Sprintf("%s: set %s by %s", of, a.UpdatedAt.Format(time.RFC3339), a.UpdatedBy)
}

func postureCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "posture", Short: "Workload-protection recommendations on a server"}
	cfg := &cobra.Command{
		Use:   "config",
		Short: "Show, set and reset the posture configuration of the fleet or a cluster",
		Long: `The posture configuration says which workload-protection recommendations run, in
which mode (audit, deny, disabled), with which parameters and exclusions. A cluster's
agent uses the cluster's own document when one is set, else the fleet default, else
Vigil's built-in defaults. Without --cluster these commands act on the fleet default.`,
	}
	cfg.AddCommand(postureGetCmd(), postureSetCmd(), postureResetCmd())
	cmd.AddCommand(cfg)
	return cmd
}

func postureGetCmd() *cobra.Command {
	var c clientFlags
	var cluster string
	cmd := &cobra.Command{
		Use:   "get [--cluster NAME]",
		Short: "Print the effective document (where it comes from goes to stderr); -o json for the server's answer",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := c.checkOutput(); err != nil {
				return err
			}
			var a postureConfigAnswer
			if err := postureRequest(cmd.Context(), &c, http.MethodGet, cluster, "", nil, &a); err != nil {
				return err
			}
			if c.output == "json" {
				return c.printJSON(cmd.OutOrStdout(), a)
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "# "+a.describe())
			if a.Document != nil {
				doc := *a.Document
				if !strings.HasSuffix(doc, "\n") {
					doc += "\n"
				}
				_, err := io.WriteString(cmd.OutOrStdout(), doc)
				return err
			}
			// The built-in defaults as a document to start editing from.
			y, err := yaml.JSONToYAML(a.Config)
			if err != nil {
				return fmt.Errorf("the server's config: %w", err)
			}
			_, err = cmd.OutOrStdout().Write(y)
			return err
		},
	}
	c.register(cmd)
	cmd.Flags().StringVar(&cluster, "cluster", "", "cluster name or id (default: the fleet default)")
	return cmd
}

func postureSetCmd() *cobra.Command {
	var c clientFlags
	var cluster, file string
	cmd := &cobra.Command{
		Use:   "set -f FILE [--cluster NAME]",
		Short: "Store a posture configuration document (YAML or JSON; - reads stdin) for the fleet or a cluster (admin)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := c.checkOutput(); err != nil {
				return err
			}
			if file == "" {
				return errors.New("-f FILE is required (- reads stdin)")
			}
			var doc []byte
			var err error
			if file == "-" {
				doc, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), 2<<20))
			} else {
				doc, err = os.ReadFile(file)
			}
			if err != nil {
				return fmt.Errorf("read the posture config: %w", err)
			}
			ct := "application/yaml"
			if strings.EqualFold(filepath.Ext(file), ".json") {
				ct = "application/json"
			}
			var a postureConfigAnswer
			if err := postureRequest(cmd.Context(), &c, http.MethodPut, cluster, ct, doc, &a); err != nil {
				return err
			}
			if c.output == "json" {
				return c.printJSON(cmd.OutOrStdout(), a)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "posture config of "+a.describe())
			return nil
		},
	}
	c.register(cmd)
	cmd.Flags().StringVar(&cluster, "cluster", "", "cluster name or id (default: the fleet default)")
	cmd.Flags().StringVarP(&file, "file", "f", "", "the document (YAML or JSON, as in `vigil scan --config`); - reads stdin")
	return cmd
}

func postureResetCmd() *cobra.Command {
	var c clientFlags
	var cluster string
	cmd := &cobra.Command{
		Use:   "reset [--cluster NAME]",
		Short: "Remove the fleet's or a cluster's document: the fleet default or the built-in defaults apply again (admin)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := c.checkOutput(); err != nil {
				return err
			}
			var a postureConfigAnswer
			if err := postureRequest(cmd.Context(), &c, http.MethodDelete, cluster, "", nil, &a); err != nil {
				return err
			}
			if c.output == "json" {
				return c.printJSON(cmd.OutOrStdout(), a)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "posture config reset; now "+a.describe())
			return nil
		},
	}
	c.register(cmd)
	cmd.Flags().StringVar(&cluster, "cluster", "", "cluster name or id (default: the fleet default)")
	return cmd
}

// postureRequest sends a posture config request, a document as is (the
// server stores it exactly as sent, comments included).
func postureRequest(ctx context.Context, c *clientFlags, method, cluster, contentType string, body []byte, out any) error {
	var q url.Values
	if cluster != "" {
		q = url.Values{"cluster": {cluster}}
	}
	return c.send(ctx, method, postureConfigPath, q, contentType, body, out)
}
