package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/sensor"
)

func sensorCmd() *cobra.Command {
	var (
		cfg      sensor.Config
		output   string
		logLevel string
	)
	cmd := &cobra.Command{
		Use:   "sensor",
		Short: "Run the node sensor: process, network and file activity from eBPF, attributed to containers",
		Long: `Run the node sensor. It needs root. With --output jsonl it prints every
event as one JSON object per line on stdout (see DESIGN.md for the shape);
its own diagnostics go to stderr.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "jsonl" {
				return fmt.Errorf("--output %q: only jsonl is supported", output)
			}
			cfg.Log = logger(logLevel)
			cfg.Containers = newContainers(cfg)
			w := bufio.NewWriterSize(os.Stdout, 64<<10)
			enc := json.NewEncoder(w)
			flush := time.NewTicker(200 * time.Millisecond)
			defer flush.Stop()
			err := sensor.New(cfg).Run(cmd.Context(), func(e *event.Event) {
				_ = enc.Encode(e)
				select {
				case <-flush.C:
					_ = w.Flush()
				default:
				}
			})
			if ferr := w.Flush(); err == nil {
				err = ferr
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&output, "output", "o", "jsonl", "where events go: jsonl (JSON lines on stdout)")
	f.StringVar(&cfg.Node, "node", os.Getenv("NODE_NAME"), "node name in events (default: $NODE_NAME or the host name)")
	f.StringVar(&cfg.ProcRoot, "proc", "/proc", "the host's /proc (e.g. /host/proc in a pod)")
	f.Uint32Var(&cfg.RingBufferBytes, "ring-buffer", 8<<20, "kernel-to-user ring buffer size in bytes (a power of two)")
	f.IntVar(&cfg.ProcessCache, "process-cache", 32768, "most processes kept in the process tree")
	f.DurationVar(&cfg.HealthInterval, "health-interval", 30*time.Second, "how often to emit sensor.health events")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}
