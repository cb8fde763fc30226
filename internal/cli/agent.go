//go:build !node

package cli

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
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
	"golang.org/x/sync/errgroup"

	"github.com/vigil-sec/vigil/internal/audit"
	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/server/controlplane"
	"github.com/vigil-sec/vigil/internal/server/store"
	"github.com/vigil-sec/vigil/internal/ship"
)

// agentFlags configure `vigil agent`.
type agentFlags struct {
	addr, tlsCert, tlsKey string
	auditTokenFile        string // the bearer token kube-apiserver's webhook kubeconfig sends
	clientCA              string // or: client certificates signed by this CA
	cluster, node         string
	logLevel              string
	rules                 ruleFlags
	ship                  shipFlags
	kube                  kubeFlags
}

func agentCmd() *cobra.Command {
	var f agentFlags
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "In-cluster agent: admission webhook, posture scanner and audit webhook, reporting to the server",
		Long: `Run in the cluster (the Helm chart's agent Deployment). One HTTPS listener
serves:

  /validate       the validating admission webhook: workloads that violate a
                  recommendation in deny mode are rejected with a message that
                  lists every violation and its fix; audit mode admits them
                  with warnings. The agent registers it in a
                  ValidatingWebhookConfiguration (failure policy Ignore by
                  default, so the cluster keeps working when the agent is
                  down) and manages its serving certificate: a self-signed CA
                  and certificate kept in a Secret, rotated before expiry,
                  the CA written into the configuration's caBundle.
  /api/v1/audit   the API server's audit webhook (when --audit-token-file or
                  --client-ca is set): the control-plane rules run here and
                  the alerts are shipped like a sensor's.

The posture scanner lists and watches the cluster's workloads and sends one
finding per workload and recommendation to the server as they change.
Recommendations are configured by --posture-config (a file, e.g. a mounted
ConfigMap, re-read when it changes) and, above it, by the server's
configuration for this cluster (vigil posture config set), polled.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ag, err := startAgent(cmd.Context(), f, logger(f.logLevel))
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "vigil agent: listening at %s (%s)\n", ag.url, strings.Join(ag.serves, ", "))
			return ag.wait()
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.addr, "addr", "0.0.0.0:8443", "address of the HTTPS listener (admission and audit webhooks)")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "serving certificate (PEM); default: a self-managed one kept in the --tls-secret Secret")
	fl.StringVar(&f.tlsKey, "tls-key", "", "its key (PEM)")
	fl.StringVar(&f.auditTokenFile, "audit-token-file", "", "serve the audit webhook: file holding the bearer token the API server's webhook kubeconfig sends")
	fl.StringVar(&f.clientCA, "client-ca", "", "serve the audit webhook: CA (PEM) of client certificates the API server may present instead")
	fl.StringVar(&f.cluster, "cluster", "", "cluster name to stamp on alerts (the server stamps its own too)")
	fl.StringVar(&f.node, "node", "", "node name (default: the host name)")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	f.rules.register(cmd)
	f.ship.register(cmd)
	f.kube.register(cmd)
	// Its own spool: a sensor on the same node locks the default one.
	f.ship.spool = filepath.Join(defaultDataDir(), "agent-spool")
	fl.Lookup("spool").DefValue = f.ship.spool
	return cmd
}

// runningAgent is a started agent.
type runningAgent struct {
	url    string
	serves []string // what the listener serves, for the banner
	errc   chan error
	kube   *kubeParts // nil when admission and posture are off
}

func (a *runningAgent) wait() error { return <-a.errc }

// startAgent serves the agent's parts until ctx is done.
func startAgent(ctx context.Context, f agentFlags, log *slog.Logger) (*runningAgent, error) {
	audit := f.auditTokenFile != "" || f.clientCA != ""
	if !audit && !f.kube.admission && !f.kube.posture {
		return nil, errors.New("nothing to run: enable --admission or --posture, or the audit webhook with --audit-token-file or --client-ca")
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if f.ship.server == "" {
		return nil, errors.New("--server is required: where alerts and findings go")
	}
	if f.node == "" {
		f.node = hostname()
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
	var pool *x509.CertPool
	if f.clientCA != "" {
		var err error
		if pool, err = loadCAPool(f.clientCA); err != nil {
			return nil, err
		}
	}
	l, err := net.Listen("tcp", f.addr)
	if err != nil {
		return nil, fmt.Errorf("--addr: %w", err)
	}
	client, err := f.ship.open(f.node, "agent", log)
	if err != nil {
		l.Close()
		return nil, err
	}
	ag := &runningAgent{url: "https://" + l.Addr().String(), errc: make(chan error, 1)}
	ctx, cancel := context.WithCancel(ctx)
	var g errgroup.Group
	fail := func(err error) (*runningAgent, error) {
		cancel()
		l.Close()
		g.Wait()
		client.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(`{"status":"ok"}`)) })
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		ErrorLog:  slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12}}
	if pool != nil {
		hs.TLSConfig.ClientAuth, hs.TLSConfig.ClientCAs = tls.VerifyClientCertIfGiven, pool
	}
	if f.kube.admission || f.kube.posture {
		kp, err := startKubeParts(ctx, &g, f, client, l.Addr(), log)
		if err != nil {
			return fail(err)
		}
		ag.kube = kp
		if kp.webhook != nil {
			mux.Handle("POST /validate", kp.webhook)
			ag.serves = append(ag.serves, "admission webhook /validate")
		}
		if f.kube.posture {
			ag.serves = append(ag.serves, "posture scanner (when leading)")
		}
		if kp.certs != nil {
			hs.TLSConfig.GetCertificate = kp.certs.GetCertificate
		}
	}
	if audit && f.tlsCert == "" && hs.TLSConfig.GetCertificate == nil {
		return fail(errors.New("--tls-cert and --tls-key are required without --admission: the API server sends audit events over HTTPS only"))
	}
	if audit {
		rules, err := f.rules.load(false)
		if err != nil {
			return fail(fmt.Errorf("load rules: %w", err))
		}
		det := controlplane.New(controlplane.Config{Rules: rules, Store: spoolStore{client}, Log: log})
		g.Go(func() error { return det.Run(ctx) })
		mux.Handle("POST /api/v1/audit", auditHandler(det, token, f.cluster, client, log))
		ag.serves = append(ag.serves, "audit webhook /api/v1/audit")
	}
	shipDone := make(chan struct{})
	go func() { defer close(shipDone); _ = client.Run(ctx) }()
	if hs.TLSConfig.GetCertificate != nil {
		l = tls.NewListener(l, hs.TLSConfig)
	} else if f.tlsCert == "" {
		ag.url = "http://" + l.Addr().String() // only /healthz: nothing else is served
	}
	go func() {
		err := serveUntilDone(ctx, hs, l, f.tlsCert, f.tlsKey)
		cancel()
		if gerr := g.Wait(); err == nil {
			err = gerr
		}
		<-shipDone
		if cerr := client.Close(); err == nil {
			err = cerr
		}
		ag.errc <- err
	}()
	log.Info("vigil agent listening", "url", ag.url, "serves", ag.serves, "server", f.ship.server)
	return ag, nil
}

// auditHandler is the audit webhook: batches from the API server, run
// through the control-plane rules, acknowledged once their alerts are
// spooled.
func auditHandler(det *controlplane.Detector, token []byte, cluster string, client *ship.Client, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !webhookAuthorized(r, token) {
			http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, audit.MaxBodyBytes))
		if err != nil {
			http.Error(w, `{"error":"request body too large"}`, http.StatusRequestEntityTooLarge)
			return
		}
		res, err := det.Handle(r.Context(), "agent", cluster, body)
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
			// The server learns that audit events arrive (vigil verify).
			client.Health(ship.Health{Component: "audit", State: "installed"})
			json.NewEncoder(w).Encode(res)
		}
	}
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
