package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/sensor"
)

func sensorCmd() *cobra.Command {
	var (
		cfg         sensor.Config
		output      string
		logLevel    string
		metricsAddr string
		cpuProfile  string
		rf          ruleFlags
		det         detectFlags
	)
	cmd := &cobra.Command{
		Use:   "sensor",
		Short: "Run the node sensor: process, network and file activity from eBPF, attributed to containers",
		Long: `Run the node sensor. It needs root. With --output jsonl it prints every
event and every alert as one JSON object per line on stdout (see DESIGN.md
for the shapes: events have "kind", alerts have "rule"); its own
diagnostics go to stderr. Events go through the detection rules (built in,
plus --rules); an alert is written the moment it is raised, and an
aggregated alert is written again, same id, when its count grows. Interrupt it (SIGINT or SIGTERM) to stop:
it detaches from the kernel, delivers every event already recorded and
prints a last sensor.health event.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "jsonl" {
				return fmt.Errorf("--output %q: only jsonl is supported", output)
			}
			if cpuProfile != "" {
				stop, err := startCPUProfile(cpuProfile)
				if err != nil {
					return err
				}
				defer stop()
			}
			log := logger(logLevel)
			cfg.Log = log
			cfg.Containers = newContainers(cfg)
			s := sensor.New(cfg)
			if metricsAddr != "" {
				stop, err := serveMetrics(metricsAddr, s.Collector(), log)
				if err != nil {
					return err
				}
				defer stop()
			}
			out := newJSONLines(os.Stdout, 200*time.Millisecond)
			emit := out.write
			if !det.off {
				eng, err := det.engine(&rf, cfg.Node, cfg.ProcRoot, log, out.writeNow)
				if err != nil {
					return err
				}
				ctx, cancel := context.WithCancel(cmd.Context())
				done := make(chan struct{})
				go func() { defer close(done); _ = eng.Run(ctx) }()
				defer func() { cancel(); <-done }()
				emit = func(e *event.Event) {
					if !det.alertsOnly || e.Kind == event.SensorHealth {
						out.write(e)
					}
					eng.Process(e)
				}
			}
			err := s.Run(cmd.Context(), emit)
			if cerr := out.close(); err == nil {
				err = cerr
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&output, "output", "o", "jsonl", "where events go: jsonl (JSON lines on stdout)")
	f.StringVar(&cfg.Node, "node", os.Getenv("NODE_NAME"), "node name in events (default: $NODE_NAME or the host name)")
	f.StringVar(&cfg.ProcRoot, "proc", "/proc", "the host's /proc (e.g. /host/proc in a pod)")
	f.Uint32Var(&cfg.RingBufferBytes, "ring-buffer", 8<<20, "kernel-to-user ring buffer size in bytes (a power of two)")
	f.DurationVar(&cfg.Latency, "latency", 20*time.Millisecond, "longest an event waits in the kernel before the sensor reads it (events are read in batches)")
	f.IntVar(&cfg.ProcessCache, "process-cache", 32768, "most processes kept in the process tree")
	f.DurationVar(&cfg.HealthInterval, "health-interval", 30*time.Second, "how often to emit sensor.health events")
	f.BoolVar(&cfg.DisableEBPF, "no-ebpf", false, "do not load eBPF programs: watch exec, fork and exit through the netlink process connector only")
	f.StringVar(&metricsAddr, "metrics-addr", "", "serve Prometheus metrics on this address at /metrics (e.g. 127.0.0.1:9464; empty: off)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&cpuProfile, "cpu-profile", "", "write a Go CPU profile to this file (for performance work)")
	_ = f.MarkHidden("cpu-profile")
	rf.register(cmd)
	det.register(cmd)
	return cmd
}

// jsonLines writes events as JSON lines through a buffer that is flushed
// at least every interval, so a quiet node's last events are not held back.
type jsonLines struct {
	mu   sync.Mutex
	w    *bufio.Writer
	enc  *json.Encoder
	err  error
	stop chan struct{}
	done chan struct{}
}

func newJSONLines(w io.Writer, interval time.Duration) *jsonLines {
	bw := bufio.NewWriterSize(w, 64<<10)
	j := &jsonLines{w: bw, enc: json.NewEncoder(bw), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(j.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-j.stop:
				return
			case <-t.C:
				j.mu.Lock()
				if j.err == nil {
					j.err = j.w.Flush()
				}
				j.mu.Unlock()
			}
		}
	}()
	return j
}

func (j *jsonLines) write(e *event.Event) {
	j.mu.Lock()
	if j.err == nil {
		j.err = j.enc.Encode(e)
	}
	j.mu.Unlock()
}

// writeNow writes v and flushes at once: alerts do not wait for the
// periodic flush.
func (j *jsonLines) writeNow(v any) {
	j.mu.Lock()
	if j.err == nil {
		j.err = j.enc.Encode(v)
	}
	if j.err == nil {
		j.err = j.w.Flush()
	}
	j.mu.Unlock()
}

// close flushes what is left and reports the first write error, such as a
// closed stdout.
func (j *jsonLines) close() error {
	close(j.stop)
	<-j.done
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err == nil {
		j.err = j.w.Flush()
	}
	if j.err != nil {
		return fmt.Errorf("write events: %w", j.err)
	}
	return nil
}

// serveMetrics serves c, with Go runtime and process metrics, at
// http://addr/metrics until stop is called.
func serveMetrics(addr string, c prometheus.Collector, log *slog.Logger) (stop func(), err error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	log.Info("serving metrics", "addr", l.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
