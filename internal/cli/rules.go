package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/vigil-sec/vigil/internal/detect"
)

// ruleFlags are the flags every command that loads rules shares.
type ruleFlags struct {
	paths   []string
	disable []string
	intel   string
}

func (f *ruleFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringSliceVar(&f.paths, "rules", nil, "rule files or directories to load after the built-in rules (override by id)")
	fl.StringSliceVar(&f.disable, "disable-rule", nil, "rule ids to turn off (a trailing * matches a prefix)")
	fl.StringVar(&f.intel, "intel", "", "threat-intelligence update file merged with the shipped lists")
}

func (f *ruleFlags) load(noBuiltin bool) (*detect.Ruleset, error) {
	return f.loadFor(detect.Options{NoBuiltin: noBuiltin})
}

// loadFor loads the rules with opts completed by the flags.
func (f *ruleFlags) loadFor(opts detect.Options) (*detect.Ruleset, error) {
	opts.Paths, opts.Disable = f.paths, f.disable
	if f.intel != "" {
		in, err := loadIntel(f.intel)
		if err != nil {
			return nil, err
		}
		opts.Intel = in
	}
	return detect.Load(opts)
}

func rulesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "Inspect, validate and test detection rules",
	}
	cmd.AddCommand(rulesListCmd(), rulesValidateCmd(), rulesTestCmd(), rulesFieldsCmd())
	return cmd
}

func rulesListCmd() *cobra.Command {
	var rf ruleFlags
	var output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the rules Vigil would run: built-in, then --rules",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rs, err := rf.load(false)
			if err != nil {
				return err
			}
			rules := rs.Rules()
			switch output {
			case "json":
				type row struct {
					ID          string   `json:"id"`
					Title       string   `json:"title"`
					Severity    string   `json:"severity"`
					Tactic      string   `json:"tactic"`
					Techniques  []string `json:"techniques,omitempty"`
					Kinds       []string `json:"kinds"`
					Enabled     bool     `json:"enabled"`
					Description string   `json:"description"`
				}
				out := make([]row, 0, len(rules))
				for _, r := range rules {
					var kinds []string
					for _, k := range r.Kinds {
						kinds = append(kinds, string(k))
					}
					out = append(out, row{r.ID, r.Title, string(r.Severity), r.Tactic, r.Techniques, kinds, r.IsEnabled(), strings.TrimSpace(r.Description)})
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			case "table":
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSEVERITY\tTACTIC\tENABLED\tTITLE")
				for _, r := range rules {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\n", r.ID, r.Severity, r.Tactic, r.IsEnabled(), r.Title)
				}
				return tw.Flush()
			}
			return fmt.Errorf("-o %q: want table or json", output)
		},
	}
	rf.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}

func rulesValidateCmd() *cobra.Command {
	var rf ruleFlags
	cmd := &cobra.Command{
		Use:   "validate [PATH...]",
		Short: "Check rule files: schema, lists, macros and every CEL condition",
		Long: `Load the built-in rules plus PATH (files or directories) and check
everything: unknown keys, required fields, severities, MITRE ids, lists and
macros, and that every condition compiles to a boolean over known fields.
Prints one line per problem and exits 1 when there is any.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			rf.paths = append(rf.paths, args...)
			rs, err := rf.load(false)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d rules OK\n", len(rs.Rules()))
			return nil
		},
	}
	rf.register(cmd)
	return cmd
}

func rulesTestCmd() *cobra.Command {
	var rf ruleFlags
	var verbose bool
	cmd := &cobra.Command{
		Use:   "test [PATH...]",
		Short: "Run rule fixtures (NAME.test.yaml) and print what fires",
		Long: `Load the built-in rules plus PATH (rule files or directories) and run the
fixture files found: NAME.test.yaml beside each rule file NAME.yaml given,
and every *.test.yaml in the directories given. With no PATH it runs the
built-in rules' own fixtures. Each case prints PASS or FAIL with the alerts
it raised; the exit status is 1 when any case fails.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			rf.paths = append(rf.paths, args...)
			rs, err := rf.load(false)
			if err != nil {
				return err
			}
			var results []detect.TestResult
			if len(args) == 0 {
				results, err = detect.BuiltinTests(rs)
				if err != nil && results == nil {
					return err
				}
			} else {
				for _, tf := range testFilesFor(args) {
					data, err := os.ReadFile(tf)
					if err != nil {
						return err
					}
					res, err := detect.RunTestFile(rs, tf, data)
					if err != nil {
						return err
					}
					results = append(results, res...)
				}
			}
			failed := printResults(cmd.OutOrStdout(), results, verbose)
			if err != nil {
				return err
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d cases failed", failed, len(results))
			}
			return nil
		},
	}
	rf.register(cmd)
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "print the alerts of passing cases too")
	return cmd
}

// testFilesFor finds the fixture files for the rule paths given.
func testFilesFor(paths []string) []string {
	var out []string
	for _, p := range paths {
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			files, _ := detect.TestFilesIn(p)
			out = append(out, files...)
			continue
		}
		if strings.HasSuffix(p, ".test.yaml") || strings.HasSuffix(p, ".test.yml") {
			out = append(out, p)
			continue
		}
		ext := filepath.Ext(p)
		if t := strings.TrimSuffix(p, ext) + ".test" + ext; fileExists(t) {
			out = append(out, t)
		}
	}
	return out
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func printResults(w io.Writer, results []detect.TestResult, verbose bool) int {
	failed := 0
	for _, r := range results {
		status := "PASS"
		if !r.OK() {
			status = "FAIL"
			failed++
		}
		fmt.Fprintf(w, "%s %s: %s (want %d alerts, got %d)\n", status, r.Rule, r.Case, r.Want, r.Got)
		if r.Err != nil {
			fmt.Fprintf(w, "    error: %v\n", r.Err)
		}
		if status == "FAIL" || verbose {
			for _, a := range r.Fired {
				fmt.Fprintf(w, "    fired %s [%s] %s\n", a.Rule, a.Severity, a.Title)
			}
		}
	}
	fmt.Fprintf(w, "%d cases, %d failed\n", len(results), failed)
	return failed
}

func rulesFieldsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "fields",
		Short: "Print the fields, functions and event kinds rule conditions can use",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "FIELD\tTYPE\tMEANING")
			for _, f := range detect.Fields() {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Name, f.Type, f.Doc)
			}
			fmt.Fprintln(tw, "\nFUNCTION\t\tMEANING")
			for _, f := range detect.Functions() {
				fmt.Fprintf(tw, "%s\t\t%s\n", f.Name, f.Doc)
			}
			return tw.Flush()
		},
	}
}
