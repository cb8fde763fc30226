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
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/sensor"
	"github.com/vigil-sec/vigil/internal/sensor/container"
	"github.com/vigil-sec/vigil/internal/ship"
)

func sensorCmd() *cobra.Command {
	var (
		cfg         sensor.Config
		output      string
		logLevel    string
		metricsAddr string
		cpuProfile  string
		criSockets  []string
		rf          ruleFlags
		det         detectFlags
		shipFlags   shipFlags
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
			if output != "jsonl" && output != "none" {
				return fmt.Errorf("--output %q: want jsonl (JSON lines on stdout) or none", output)
			}
			if output == "none" && shipFlags.server == "" {
				return errors.New("--output none without --server: events and alerts would go nowhere")
			}
			if cpuProfile != "" {
				stop, err := startCPUProfile(cpuProfile)
				if err != nil {
					return err
				}
				defer stop()
			}
			run := sensorRun{cfg: cfg, rf: rf, det: det, jsonl: output == "jsonl", metricsAddr: metricsAddr, criSockets: criSockets, log: logger(logLevel)}
			if shipFlags.server != "" {
				client, err := shipFlags.open(cfg.Node, "sensor", run.log)
				if err != nil {
					return err
				}
				defer client.Close()
				run.ship = client
			}
			return run.run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&output, "output", "o", "jsonl", "jsonl (events and alerts as JSON lines on stdout) or none (with --server)")
	f.StringVar(&cfg.Node, "node", os.Getenv("NODE_NAME"), "node name in events (default: $NODE_NAME or the host name)")
	f.StringVar(&cfg.ProcRoot, "proc", "/proc", "the host's /proc (e.g. /host/proc in a pod)")
	f.Uint32Var(&cfg.RingBufferBytes, "ring-buffer", 4<<20, "kernel-to-user ring buffer size in bytes (a power of two; user space maps it twice, so it counts double in RSS)")
	f.DurationVar(&cfg.Latency, "latency", 20*time.Millisecond, "longest an event waits in the kernel before the sensor reads it (events are read in batches)")
	f.IntVar(&cfg.ProcessCache, "process-cache", 32768, "most processes kept in the process tree")
	f.DurationVar(&cfg.HealthInterval, "health-interval", 30*time.Second, "how often to emit sensor.health events")
	f.BoolVar(&cfg.DisableEBPF, "no-ebpf", false, "do not load eBPF programs: watch exec, fork and exit through the netlink process connector only")
	f.StringSliceVar(&criSockets, "cri-socket", nil, "the container runtime's CRI socket(s), tried in order, asked (status calls only) about containers whose on-disk runtime state does not name their pod or image; \"none\" turns this off (default: the first of "+strings.Join(container.DefaultCRISockets(), ", ")+" that exists)")
	f.StringVar(&metricsAddr, "metrics-addr", "", "serve Prometheus metrics on this address at /metrics (e.g. 127.0.0.1:9464; empty: off)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&cpuProfile, "cpu-profile", "", "write a Go CPU profile to this file (for performance work)")
	_ = f.MarkHidden("cpu-profile")
	rf.register(cmd)
	det.register(cmd)
	shipFlags.register(cmd)
	return cmd
}

// sensorRun wires the sensor to the engine and the outputs: JSON lines on
// stdout, a server, or both.
type sensorRun struct {
	cfg         sensor.Config
	rf          ruleFlags
	det         detectFlags
	jsonl       bool
	ship        *ship.Client
	metricsAddr string
	criSockets  []string // nil: autodetect
	log         *slog.Logger
}

func (r *sensorRun) run(ctx context.Context) error {
	r.cfg.Log = r.log
	r.cfg.Containers = newContainers(ctx, r.cfg, r.criSockets)
	s := sensor.New(r.cfg)
	if r.metricsAddr != "" {
		stop, err := serveMetrics(r.metricsAddr, s.Collector(), r.log)
		if err != nil {
			return err
		}
		defer stop()
	}
	out := newJSONLines(os.Stdout, 200*time.Millisecond)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	if r.ship != nil {
		wg.Add(1)
		go func() { defer wg.Done(); _ = r.ship.Run(ctx) }()
	}
	users := sensor.NewUsers(r.cfg.ProcRoot) // names the uid, read once an alert is raised
	alert := func(a *event.Alert) {
		users.Attribute(a)
		if r.jsonl {
			out.writeNow(a)
		}
		if r.ship != nil {
			r.ship.Alert(a)
		}
	}
	var eng *detect.Engine
	if !r.det.off {
		var err error
		if eng, err = r.det.engine(&r.rf, r.cfg.Node, r.cfg.ProcRoot, r.log, alert); err != nil {
			return err
		}
		// Compiling the rules leaves several times the engine's own
		// size in garbage; hand it back before the sensor maps its ring
		// buffer, so that it never adds to the sensor's peak RSS.
		debug.FreeOSMemory()
		wg.Add(1)
		go func() { defer wg.Done(); _ = eng.Run(ctx) }()
		if r.ship != nil {
			wg.Add(1)
			go func() { defer wg.Done(); syncExceptions(ctx, r.ship, eng, r.log) }()
		}
	}
	emit := func(e *event.Event) {
		if r.jsonl && (!r.det.alertsOnly || e.Kind == event.SensorHealth) {
			out.write(e)
		}
		if e.Kind == event.SensorHealth && r.ship != nil {
			r.ship.Health(healthOf(e))
		}
		if eng != nil {
			eng.Process(e)
		}
	}
	err := s.Run(ctx, emit)
	if eng != nil {
		eng.Flush()
	}
	if cerr := out.close(); err == nil {
		err = cerr
	}
	return err
}

// exceptionsInterval is how often a sensor pulls the exceptions its
// cluster's admins created from alerts.
const exceptionsInterval = 30 * time.Second

// syncExceptions applies the server's exceptions for this cluster to the
// engine, at start and every exceptionsInterval, until ctx is done. A
// failed pull keeps the last good set.
func syncExceptions(ctx context.Context, client *ship.Client, eng *detect.Engine, log *slog.Logger) {
	t := time.NewTicker(exceptionsInterval)
	defer t.Stop()
	for {
		if err := pullExceptions(ctx, client, eng); err != nil && ctx.Err() == nil {
			log.Warn("could not pull exceptions from the server; keeping the last ones", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pullExceptions fetches the cluster's exceptions once and applies them.
func pullExceptions(ctx context.Context, client *ship.Client, eng *detect.Engine) error {
	var out struct {
		Exceptions []detect.Exception `json:"exceptions"`
	}
	if err := client.Get(ctx, "/api/v1/exceptions", &out); err != nil {
		return err
	}
	eng.SetExceptions(out.Exceptions)
	return nil
}

// healthOf turns a sensor.health event into the component state a server
// shows: installed, or failed with the reason when eBPF could not load.
func healthOf(e *event.Event) ship.Health {
	h := ship.Health{Node: e.Node, Component: "sensor", State: "installed", Health: e.Health, At: e.Time}
	if e.Health != nil && e.Health.Mode != "ebpf" {
		h.State = "degraded"
		h.Reason = strings.Join(e.Health.Warnings, "; ")
	}
	return h
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
