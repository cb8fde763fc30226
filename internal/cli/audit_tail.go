//go:build !node

package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-sec/vigil/internal/audit"
	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/ship"
)

func auditTailCmd() *cobra.Command {
	var (
		rf             ruleFlags
		sf             shipFlags
		tailer         audit.Tailer
		output         string
		cluster        string
		node           string
		logLevel       string
		updateInterval time.Duration
	)
	cmd := &cobra.Command{
		Use:   "tail --audit-log-path PATH",
		Short: "Follow the API server's audit log and raise control-plane alerts as events arrive",
		Long: `Follow the audit log kube-apiserver writes (--audit-log-path), through its
rotations (audit-<time>.log, gzipped or not), run every k8s.audit rule over
each event and print the alerts as JSON lines on stdout, send them to a
Vigil server (--server), or both. An aggregated alert is written again,
same id, when its count grows. The position in the log is kept in --state,
so a restart reads every event once: the rest of the file it was reading
(even if rotated and gzipped since), then the files rotated after it. On a
first start the current log is read from its beginning. Run it on each
control-plane node; stop it with SIGINT or SIGTERM.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tailer.Path == "" {
				return errors.New("--audit-log-path is required (the API server's --audit-log-path)")
			}
			if output != "json" && output != "none" {
				return fmt.Errorf("-o %q: want json (alerts as JSON lines on stdout) or none (with --server)", output)
			}
			if output == "none" && sf.server == "" {
				return errors.New("-o none without --server: alerts would go nowhere")
			}
			if node == "" {
				node, _ = os.Hostname()
			}
			log := logger(logLevel)
			tailer.Log = log
			rules, err := rf.load(false)
			if err != nil {
				return fmt.Errorf("load rules: %w", err)
			}
			run := auditTailRun{
				tailer: &tailer,
				engine: detect.Config{Rules: rules, Cluster: cluster, UpdateInterval: updateInterval, Log: log},
				stdout: output == "json",
				log:    log,
			}
			if sf.server != "" {
				client, err := sf.open(node, "audit", log)
				if err != nil {
					return err
				}
				defer client.Close()
				run.ship = client
			}
			return run.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&tailer.Path, "audit-log-path", "", "the audit log to follow, as given to kube-apiserver's --audit-log-path")
	f.StringVar(&tailer.StateFile, "state", filepath.Join(defaultDataDir(), "audit-tail.json"), "file keeping the position in the log across restarts (empty: none)")
	f.DurationVar(&tailer.Poll, "poll", audit.DefaultPoll, "how often to look for new lines and rotations")
	_ = f.MarkHidden("poll")
	f.StringVarP(&output, "output", "o", "json", "json (alerts as JSON lines on stdout) or none (with --server)")
	f.StringVar(&cluster, "cluster", "", "cluster name stamped on alerts")
	f.StringVar(&node, "node", os.Getenv("NODE_NAME"), "this node's name, reported to the server (default: $NODE_NAME or the host name)")
	f.DurationVar(&updateInterval, "alert-update-interval", 30*time.Second, "how often an aggregated alert is re-emitted with its new count")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	rf.register(cmd)
	sf.register(cmd)
	// Not the sensor's spool: one client per spool, and a control-plane
	// node may run both.
	sf.spool = filepath.Join(defaultDataDir(), "audit-spool")
	f.Lookup("spool").DefValue = sf.spool
	return cmd
}

// auditTailRun wires the tailer to the engine and the outputs.
type auditTailRun struct {
	tailer *audit.Tailer
	engine detect.Config
	stdout bool
	ship   *ship.Client
	log    *slog.Logger
}

func (r *auditTailRun) run(ctx context.Context, stdout io.Writer) error {
	out := newJSONLines(stdout, 200*time.Millisecond)
	r.engine.Emit = func(a *event.Alert) {
		if r.stdout {
			out.writeNow(a)
		}
		if r.ship != nil {
			r.ship.Alert(a)
		}
	}
	eng := detect.New(r.engine)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Add(1)
	go func() { defer wg.Done(); _ = eng.Run(ctx) }() // re-emits aggregated alerts as counts grow
	if r.ship != nil {
		r.ship.Health(ship.Health{Component: "audit", State: "installed"})
		wg.Add(2)
		go func() { defer wg.Done(); _ = r.ship.Run(ctx) }()
		go func() { defer wg.Done(); syncExceptions(ctx, r.ship, eng, r.log) }()
	}
	r.log.Info("following the audit log", "path", r.tailer.Path, "state", r.tailer.StateFile)
	// As the receiver and replay do: what controllers do is attributed to
	// whoever last wrote the workload, as far as this run has seen.
	lineage := audit.NewLineage()
	st, err := r.tailer.Run(ctx, func(a *event.Audit) error {
		a.Origin = lineage.Observe(a)
		eng.Process(audit.Event(a))
		return nil
	})
	eng.Flush()
	r.log.Info("stopped following the audit log", "events", st.Events, "malformed", st.Malformed,
		"missing_fields", st.Missing, "too_long", st.TooLong, "truncated", st.Truncated,
		"rotations", st.Rotations, "log_truncations", st.Truncations, "lost_files", st.LostFiles)
	if cerr := out.close(); err == nil {
		err = cerr
	}
	return err
}
