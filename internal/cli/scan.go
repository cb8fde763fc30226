//go:build !node

package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-sec/vigil/internal/posture"
)

func scanCmd() *cobra.Command {
	var files []string
	var configFile, output string
	var sf shipFlags
	cmd := &cobra.Command{
		Use:   "scan -f PATH [-f PATH...]",
		Short: "Check Kubernetes manifests against the workload-protection recommendations",
		Long: `Read Kubernetes manifests (files, or directories searched recursively for
*.yaml, *.yml and *.json; multi-document YAML, JSON and List kinds; - for
stdin), evaluate every workload (Pod, Deployment, ReplicaSet, StatefulSet,
DaemonSet, Job, CronJob, ReplicationController) and Service against the
workload-protection recommendations, and print the verdicts: a table, JSON
(one result per line), SARIF 2.1.0 or JUnit XML. The same evaluator runs in
the admission webhook and the in-cluster scanner. --config takes a posture
configuration (modes, parameters, exclusions) merged over the defaults.
With --server the results also go to that Vigil server as the cluster's
findings (the console's Recommendations page). Exits with status 1 when any
workload is unhealthy.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch output {
			case "table", "json", "sarif", "junit":
			default:
				return fmt.Errorf("-o %q: want table, json, sarif or junit", output)
			}
			if len(files) == 0 {
				return errors.New("scan: no input; give -f PATH")
			}
			cfg := posture.DefaultConfig()
			if configFile != "" {
				var err error
				if cfg, err = posture.LoadConfig(configFile); err != nil {
					return err
				}
			}
			results, stats, err := scanPaths(cfg, files, cmd.InOrStdin(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if sf.server != "" {
				if err := sendFindings(cmd.Context(), &sf, results); err != nil {
					return err
				}
			}
			out := cmd.OutOrStdout()
			switch output {
			case "json":
				err = writeScanJSON(out, results)
			case "sarif":
				err = writeSARIF(out, results)
			case "junit":
				err = writeJUnit(out, results)
			default:
				err = writeScanTable(out, results)
			}
			if err != nil {
				return err
			}
			unhealthy := 0
			for i := range results {
				if !results[i].Healthy {
					unhealthy++
				}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%d files, %d objects checked, %d results, %d unhealthy\n", stats.files, stats.objects, len(results), unhealthy)
			if unhealthy > 0 {
				return fmt.Errorf("scan: %d of %d results unhealthy", unhealthy, len(results))
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "manifest file or directory (repeatable; - reads stdin)")
	cmd.Flags().StringVar(&configFile, "config", "", "posture configuration file (YAML or JSON)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table, json, sarif or junit")
	sf.register(cmd)
	return cmd
}

// sendFindings ships the results to the server as findings and waits (at
// most a minute) until it has acknowledged them.
func sendFindings(ctx context.Context, sf *shipFlags, results []scanResult) error {
	if sf.spool == filepath.Join(defaultDataDir(), "spool") {
		dir, err := os.MkdirTemp("", "vigil-scan-spool-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		sf.spool = dir // a one-shot scan keeps no spool, nor takes a sensor's
	}
	client, err := sf.open(hostname(), "scan", slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer client.Close()
	rs := make([]posture.Result, len(results))
	for i := range results {
		rs[i] = results[i].Result
	}
	client.Findings(posture.Findings(rs))
	if err := client.Sync(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	go client.Run(ctx)
	for client.Stats().SpoolBatches > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("scan: the server did not take the findings within a minute: %s", client.Stats().LastError)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// scanResult is one recommendation's verdict on one object, with where the
// object came from.
type scanResult struct {
	posture.Result
	File     string // as given, or found under a directory given
	Document int    // 1-based index of the YAML document in File
	Line     int    // first line of that document
}

type scanStats struct{ files, objects int }

func scanPaths(cfg *posture.Config, paths []string, stdin io.Reader, stderr io.Writer) ([]scanResult, scanStats, error) {
	var out []scanResult
	var st scanStats
	for _, p := range paths {
		var files []string
		if p == "-" {
			files = []string{"-"}
		} else {
			info, err := os.Stat(p)
			if err != nil {
				return nil, st, fmt.Errorf("scan: %w", err)
			}
			if !info.IsDir() {
				files = []string{p}
			} else {
				err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
					if err != nil {
						return err
					}
					switch strings.ToLower(filepath.Ext(path)) {
					case ".yaml", ".yml", ".json":
						if !d.IsDir() {
							files = append(files, path)
						}
					}
					return nil
				})
				if err != nil {
					return nil, st, fmt.Errorf("scan: %w", err)
				}
			}
		}
		for _, f := range files {
			var data []byte
			var err error
			if f == "-" {
				data, err = io.ReadAll(stdin)
			} else {
				data, err = os.ReadFile(f)
			}
			if err != nil {
				return nil, st, fmt.Errorf("scan: %w", err)
			}
			st.files++
			for _, d := range splitDocuments(data) {
				objs, err := posture.Decode(d.data)
				if posture.IsNotWorkload(err) {
					fmt.Fprintf(stderr, "%s: document %d: skipped: %v\n", f, d.index, err)
					continue
				}
				if err != nil {
					return nil, st, fmt.Errorf("scan %s: document %d (line %d): %w", f, d.index, d.line, err)
				}
				for _, obj := range objs {
					rs := posture.Evaluate(cfg, obj)
					if rs != nil {
						st.objects++
					}
					for _, r := range rs {
						out = append(out, scanResult{Result: r, File: f, Document: d.index, Line: d.line})
					}
				}
			}
		}
	}
	return out, st, nil
}

type document struct {
	data  []byte
	index int // 1-based, counting only documents with content
	line  int // 1-based line where its content starts
}

// splitDocuments splits a YAML stream at "---" lines. Documents holding
// only comments and blank lines are dropped and not counted. JSON is one
// document.
func splitDocuments(data []byte) []document {
	var out []document
	start, line := 0, 1
	docLine := 0 // first line with content in the current document
	flush := func(end int) {
		if docLine > 0 {
			out = append(out, document{data: data[start:end], index: len(out) + 1, line: docLine})
		}
	}
	for off := 0; off < len(data); line++ {
		end := bytes.IndexByte(data[off:], '\n')
		next := len(data)
		if end >= 0 {
			next = off + end + 1
			end = off + end
		} else {
			end = len(data)
		}
		text := strings.TrimRight(string(data[off:end]), " \t\r")
		if text == "---" || strings.HasPrefix(text, "--- ") {
			flush(off)
			start, docLine = next, 0
		} else if t := strings.TrimSpace(text); docLine == 0 && t != "" && !strings.HasPrefix(t, "#") {
			docLine = line
		}
		off = next
	}
	flush(len(data))
	return out
}

func writeScanTable(w io.Writer, results []scanResult) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKLOAD\tRECOMMENDATION\tMODE\tSTATUS\tVIOLATIONS")
	for i := range results {
		r := &results[i]
		status := "healthy"
		if !r.Healthy {
			status = "unhealthy"
		}
		first := ""
		if len(r.Violations) > 0 {
			first = r.Violations[0]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Workload, r.Recommendation, r.Mode, status, first)
		for _, v := range r.Violations[min(1, len(r.Violations)):] {
			fmt.Fprintf(tw, "\t\t\t\t%s\n", v)
		}
	}
	return tw.Flush()
}

// scanJSON is one line of -o json.
type scanJSON struct {
	File           string       `json:"file"`
	Document       int          `json:"document"`
	Line           int          `json:"line"`
	Workload       string       `json:"workload"`
	Kind           string       `json:"kind"`
	Namespace      string       `json:"namespace"`
	Name           string       `json:"name"`
	Recommendation string       `json:"recommendation"`
	Title          string       `json:"title"`
	Severity       string       `json:"severity"`
	Mode           posture.Mode `json:"mode"`
	Healthy        bool         `json:"healthy"`
	Violations     []string     `json:"violations,omitempty"`
}

func writeScanJSON(w io.Writer, results []scanResult) error {
	enc := json.NewEncoder(w)
	for i := range results {
		r := &results[i]
		rec, _ := posture.Lookup(r.Recommendation)
		if err := enc.Encode(scanJSON{
			File: r.File, Document: r.Document, Line: r.Line,
			Workload: r.Workload.String(), Kind: r.Workload.Kind, Namespace: r.Workload.Namespace, Name: r.Workload.Name,
			Recommendation: r.Recommendation, Title: rec.Title, Severity: string(rec.Severity), Mode: r.Mode,
			Healthy: r.Healthy, Violations: r.Violations,
		}); err != nil {
			return err
		}
	}
	return nil
}
