//go:build !node

package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/vigil-sec/vigil/internal/console"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/server/api"
	"github.com/vigil-sec/vigil/internal/server/controlplane"
	"github.com/vigil-sec/vigil/internal/server/export"
	"github.com/vigil-sec/vigil/internal/server/store"
)

// serverFlags configure `vigil server` and the server half of `vigil up`.
type serverFlags struct {
	addr      string
	db        string
	data      string
	tlsCert   string
	tlsKey    string
	clientCA  string
	exports   string
	logLevel  string
	adminFile string
	rules     ruleFlags // the control-plane rules (`vigil up` shares the sensor's)
}

func (f *serverFlags) register(cmd *cobra.Command, defaultDB bool) {
	fl := cmd.Flags()
	fl.StringVar(&f.addr, "addr", "127.0.0.1:7777", "address to serve the API, the console and the audit webhook (/api/v1/audit) on")
	if defaultDB {
		fl.StringVar(&f.db, "db", "", "database: sqlite:///path/vigil.db (default: DATA/vigil.db) or postgres://user@host/db")
	} else {
		fl.StringVar(&f.db, "db", "", "database: sqlite:///path/vigil.db or postgres://user@host/db (required)")
	}
	fl.StringVar(&f.data, "data", defaultDataDir(), "data directory: the SQLite database and the first admin token")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "serve HTTPS with this certificate (PEM)")
	fl.StringVar(&f.clientCA, "client-ca", "", "CA bundle (PEM) of client certificates that stand for clusters (O=vigil-cluster, CN=cluster name), e.g. in kube-apiserver's audit webhook kubeconfig; see vigil cluster cert")
	fl.StringVar(&f.tlsKey, "tls-key", "", "and this key (PEM)")
	fl.StringVar(&f.exports, "exports", "", "export outputs: a JSON file with a list of outputs (webhook, syslog, slack, splunk, elasticsearch)")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
}

func serverCmd() *cobra.Command {
	var f serverFlags
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the central server: ingest, storage, the REST API and exports",
		Long: `Run the central server. Sensors and agents post alerts, health and
inventory to /api/v1/ingest with their cluster's credential; people and
scripts use the REST API with tokens (admin or reader). On first start the
server creates an admin token and writes it to DATA/admin.token (0600).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.db == "" {
				return errors.New("--db is required (sqlite:///path/vigil.db or postgres://...)")
			}
			srv, err := startServer(cmd.Context(), f, logger(f.logLevel))
			if err != nil {
				return err
			}
			return srv.wait()
		},
	}
	f.register(cmd, false)
	f.rules.register(cmd)
	return cmd
}

// runningServer is a server started by startServer.
type runningServer struct {
	url   string
	token string // the admin token file's path
	store *store.Store
	errc  chan error
	stop  func()
}

func (s *runningServer) wait() error { return <-s.errc }

// startServer opens the store, bootstraps the first admin token, and
// serves the API until ctx is done.
func startServer(ctx context.Context, f serverFlags, log *slog.Logger) (*runningServer, error) {
	if err := os.MkdirAll(f.data, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	st, err := store.Open(ctx, f.db)
	if err != nil {
		return nil, fmt.Errorf("open the database: %w", err)
	}
	tokenFile := filepath.Join(f.data, "admin.token")
	if err := bootstrapAdmin(ctx, st, tokenFile, log); err != nil {
		st.Close()
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var outputs []export.Config
	if f.exports != "" {
		if outputs, err = loadExports(f.exports); err != nil {
			st.Close()
			return nil, err
		}
	}
	disp, err := export.NewDispatcher(outputs, export.Options{Log: log, Registerer: reg})
	if err != nil {
		st.Close()
		return nil, err
	}
	rules, err := f.rules.load(false)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("control-plane rules: %w", err)
	}
	cp := controlplane.New(controlplane.Config{Rules: rules, Store: st, Log: log, Alerts: disp.Submit})
	a := api.New(api.Config{Store: st, Log: log, Registerer: reg, Alerts: disp.Submit, Audit: cp, Exports: func() any { return disp.Health() }})
	ui, err := console.New(console.Config{Store: st, Log: log, Secure: f.tlsCert != "",
		Recommendations: func(ctx context.Context) ([]console.Recommendation, error) { return consoleRecommendations(ctx, st) }})
	if err != nil {
		st.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/api/", a.Handler())
	mux.Handle("/healthz", a.Handler())
	mux.Handle("/", ui.Handler())
	l, err := net.Listen("tcp", f.addr)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("--addr: %w", err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	if f.clientCA != "" {
		if f.tlsCert == "" {
			st.Close()
			l.Close()
			return nil, errors.New("--client-ca needs --tls-cert and --tls-key: client certificates come over TLS")
		}
		pool, err := loadCAPool(f.clientCA)
		if err != nil {
			st.Close()
			l.Close()
			return nil, err
		}
		// Asked for, not required: browsers and token clients send none.
		hs.TLSConfig = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool, MinVersion: tls.VersionTLS12}
	}
	scheme := "http"
	if f.tlsCert != "" {
		scheme = "https"
	}
	rs := &runningServer{url: scheme + "://" + l.Addr().String(), token: tokenFile, store: st, errc: make(chan error, 1)}
	ctx, cancel := context.WithCancel(ctx)
	dispDone := make(chan struct{})
	go func() { defer close(dispDone); _ = disp.Run(ctx) }()
	cpDone := make(chan struct{})
	go func() { defer close(cpDone); _ = cp.Run(ctx) }()
	go func() {
		err := serveUntilDone(ctx, hs, l, f.tlsCert, f.tlsKey)
		cancel()
		<-dispDone
		<-cpDone
		if cerr := st.Close(); err == nil {
			err = cerr
		}
		rs.errc <- err
	}()
	rs.stop = cancel
	log.Info("vigil server listening", "url", rs.url, "db", redactDSN(f.db))
	return rs, nil
}

// serveUntilDone serves hs on l (over TLS when certFile is set) until ctx
// is done, then shuts it down, giving requests in flight 10 s. A server
// closed that way is not an error.
func serveUntilDone(ctx context.Context, hs *http.Server, l net.Listener, certFile, keyFile string) error {
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	var err error
	if certFile != "" {
		err = hs.ServeTLS(l, certFile, keyFile)
	} else {
		err = hs.Serve(l)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// consoleRecommendations is the API's recommendations, as the console
// shows them.
func consoleRecommendations(ctx context.Context, st *store.Store) ([]console.Recommendation, error) {
	recs, err := api.Recommendations(ctx, st.SummarizeFindings, "")
	if err != nil {
		return nil, err
	}
	out := make([]console.Recommendation, len(recs))
	for i, r := range recs {
		out[i] = console.Recommendation{ID: r.ID, Title: r.Title, Description: r.Description, Remediation: r.Remediation, Mode: strings.Join(r.Modes, "/"), Severity: event.Severity(r.Severity),
			Healthy: r.Healthy, Unhealthy: r.Unhealthy, Parameters: r.Parameters, Unhealthies: r.Resources}
	}
	return out, nil
}

// loadCAPool reads a PEM bundle of CA certificates.
func loadCAPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--client-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("--client-ca %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// bootstrapAdmin creates the first admin token when the token file does
// not exist yet, and writes it there, readable by its owner only.
func bootstrapAdmin(ctx context.Context, st *store.Store, path string, log *slog.Logger) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	secret, err := st.CreateToken(ctx, "admin (bootstrap)", store.RoleAdmin)
	if err != nil {
		return fmt.Errorf("create the first admin token: %w", err)
	}
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("write the first admin token: %w", err)
	}
	log.Info("first admin token written", "file", path)
	return nil
}

// redactDSN hides a database password for logs.
func redactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return dsn
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// loadExports reads export outputs from a JSON file: [{"name":..,"type":..}, ...].
func loadExports(path string) ([]export.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--exports: %w", err)
	}
	var out []export.Config
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("--exports %s: %w", path, err)
	}
	return out, nil
}
