package cli

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-sec/vigil/internal/audit"
	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/server/controlplane"
	"github.com/vigil-sec/vigil/internal/server/store"
	"github.com/vigil-sec/vigil/internal/ship"
)

// agentFlags configure `vigil agent`.
type agentFlags struct {
	addr, tlsCert, tlsKey string
	auditTokenFile        string // the bearer token kube-apiserver's webhook kubeconfig carries
	clientCA              string // or: client certificates signed by this CA
	cluster, node         string
	logLevel              string
	rules                 ruleFlags
	ship                  shipFlags
}

func agentCmd() *cobra.Command {
	var f agentFlags
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "In-cluster agent: the API server's audit webhook, evaluated next to it, alerts shipped to the server",
		Long: `Run in the cluster (the Helm chart's agent Deployment) or on a control-plane
node. It serves the audit webhook at https://ADDR/api/v1/audit for the
cluster's own API server, runs the control-plane rules there, and ships the
alerts to the Vigil server like a sensor (spooled on disk while the server is
unreachable). A batch is acknowledged once its alerts are in the spool. The
API server authenticates with the bearer token in --audit-token-file, or with
a client certificate signed by --client-ca. (Admission control and posture
scanning join it later.)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ag, err := startAgent(cmd.Context(), f, logger(f.logLevel))
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "vigil agent: audit webhook at %s/api/v1/audit\n", ag.url)
			return ag.wait()
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.addr, "addr", "0.0.0.0:8443", "address of the audit webhook (HTTPS)")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "the webhook's certificate (PEM); required")
	fl.StringVar(&f.tlsKey, "tls-key", "", "its key (PEM); required")
	fl.StringVar(&f.auditTokenFile, "audit-token-file", "", "file holding the bearer token the API server's webhook kubeconfig sends")
	fl.StringVar(&f.clientCA, "client-ca", "", "CA (PEM) of client certificates the API server may present instead")
	fl.StringVar(&f.cluster, "cluster", "", "cluster name to stamp on alerts (the server stamps its own too)")
	fl.StringVar(&f.node, "node", "", "node name (default: the host name)")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	f.rules.register(cmd)
	f.ship.register(cmd)
	// Its own spool: a sensor on the same node locks the default one.
	f.ship.spool = filepath.Join(defaultDataDir(), "agent-spool")
	fl.Lookup("spool").DefValue = f.ship.spool
	return cmd
}

// runningAgent is a started agent.
type runningAgent struct {
	url  string
	errc chan error
}

func (a *runningAgent) wait() error { return <-a.errc }

// startAgent serves the audit webhook until ctx is done.
func startAgent(ctx context.Context, f agentFlags, log *slog.Logger) (*runningAgent, error) {
	if f.tlsCert == "" || f.tlsKey == "" {
		return nil, errors.New("--tls-cert and --tls-key are required: the API server sends audit events over HTTPS only")
	}
	if f.auditTokenFile == "" && f.clientCA == "" {
		return nil, errors.New("--audit-token-file or --client-ca is required: the webhook must know its API server")
	}
	if f.ship.server == "" {
		return nil, errors.New("--server is required: where the alerts go")
	}
	var token []byte
	if f.auditTokenFile != "" {
		b, err := os.ReadFile(f.auditTokenFile)
		if err != nil {
			return nil, fmt.Errorf("--audit-token-file: %w", err)
		}
		if token = []byte(strings.TrimSpace(string(b))); len(token) < 16 {
			return nil, errors.New("--audit-token-file: the token is empty or shorter than 16 characters")
		}
	}
	if f.node == "" {
		f.node = hostname()
	}
	rules, err := f.rules.load(false)
	if err != nil {
		return nil, fmt.Errorf("load rules: %w", err)
	}
	client, err := f.ship.open(f.node, "agent", log)
	if err != nil {
		return nil, err
	}
	det := controlplane.New(controlplane.Config{Rules: rules, Store: spoolStore{client}, Log: log})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(`{"status":"ok"}`)) })
	mux.HandleFunc("POST /api/v1/audit", func(w http.ResponseWriter, r *http.Request) {
		if !webhookAuthorized(r, token) {
			http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, audit.MaxBodyBytes))
		if err != nil {
			http.Error(w, `{"error":"request body too large"}`, http.StatusRequestEntityTooLarge)
			return
		}
		res, err := det.Handle(r.Context(), "agent", f.cluster, body)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case errors.Is(err, audit.ErrNotAudit):
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		case err != nil:
			log.Error("audit batch not accepted", "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			json.NewEncoder(w).Encode(map[string]string{"error": "could not spool the alerts; send again"})
		default:
			json.NewEncoder(w).Encode(res)
		}
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if f.clientCA != "" {
		pool, err := loadCAPool(f.clientCA)
		if err != nil {
			client.Close()
			return nil, err
		}
		hs.TLSConfig.ClientAuth, hs.TLSConfig.ClientCAs = tls.VerifyClientCertIfGiven, pool
	}
	l, err := net.Listen("tcp", f.addr)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("--addr: %w", err)
	}
	ag := &runningAgent{url: "https://" + l.Addr().String(), errc: make(chan error, 1)}
	ctx, cancel := context.WithCancel(ctx)
	shipDone, detDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(shipDone); _ = client.Run(ctx) }()
	go func() { defer close(detDone); _ = det.Run(ctx) }()
	go func() {
		err := serveUntilDone(ctx, hs, l, f.tlsCert, f.tlsKey)
		cancel()
		<-detDone
		<-shipDone
		if cerr := client.Close(); err == nil {
			err = cerr
		}
		ag.errc <- err
	}()
	log.Info("vigil agent listening", "url", ag.url, "server", f.ship.server)
	return ag, nil
}

// webhookAuthorized accepts the API server: the expected bearer token, or
// a client certificate the server verified against --client-ca.
func webhookAuthorized(r *http.Request, token []byte) bool {
	if token != nil {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if ok && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), token) == 1 {
			return true
		}
	}
	return r.TLS != nil && len(r.TLS.VerifiedChains) > 0
}

// spoolStore is where the agent's detector stores alerts: the ship client,
// synced to its on-disk spool before the webhook answers.
type spoolStore struct{ c *ship.Client }

func (s spoolStore) Ingest(_ context.Context, _ string, b *ship.Batch, _ time.Time) (store.IngestResult, error) {
	for i := range b.Alerts {
		s.c.Alert(&b.Alerts[i])
	}
	if err := s.c.Sync(); err != nil {
		return store.IngestResult{}, err
	}
	return store.IngestResult{Alerts: len(b.Alerts)}, nil
}

// ListExceptions: the agent applies the rule files' exceptions; the
// server's exceptions reach it in a later version.
func (spoolStore) ListExceptions(context.Context, string) ([]detect.Exception, error) {
	return nil, nil
}
