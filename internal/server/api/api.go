package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/server/store"
	"github.com/vigil-sec/vigil/internal/ship"
)

// Store is what the API needs of the database; *store.Store implements it.
type Store interface {
	Authenticate(ctx context.Context, secret string) (store.Principal, error)
	CreateCluster(ctx context.Context, name string) (store.Cluster, string, error)
	ListClusters(ctx context.Context, now time.Time) ([]store.Cluster, error)
	GetCluster(ctx context.Context, idOrName string, now time.Time) (store.Cluster, error)
	NoteAudit(ctx context.Context, clusterID string, now time.Time) error
	CreateToken(ctx context.Context, name string, role store.Role) (string, error)
	Ingest(ctx context.Context, clusterID string, b *ship.Batch, now time.Time) (store.IngestResult, error)
	ListAlerts(ctx context.Context, f store.AlertFilter) (store.AlertPage, error)
	CountAlerts(ctx context.Context, f store.AlertFilter) (map[event.Severity]int, error)
	GetAlert(ctx context.Context, id string) (store.Alert, error)
	SetAlertStatus(ctx context.Context, ids []string, status, reason, actor string, now time.Time) (int, error)
	SetStatusByFilter(ctx context.Context, f store.AlertFilter, status, reason, actor string, now time.Time) (int, error)
	AlertChanges(ctx context.Context, id string) ([]store.Change, error)
	CreateException(ctx context.Context, clusterID string, x detect.Exception, actor string) error
	ListExceptions(ctx context.Context, clusterID string) ([]detect.Exception, error)
	ListIncidents(ctx context.Context, cluster string, limit int) ([]store.Incident, error)
	GetIncident(ctx context.Context, id string) (store.Incident, error)
	ListInventory(ctx context.Context, cluster, kind string) ([]store.InventoryRow, error)
	SummarizeFindings(ctx context.Context, cluster string) ([]store.CheckSummary, error)
	ListFindingsPage(ctx context.Context, f store.FindingFilter) (store.FindingPage, error)
	EffectivePostureConfig(ctx context.Context, clusterID string) (store.PostureConfig, error)
	PutPostureConfig(ctx context.Context, clusterID, body, actor string, now time.Time) (store.PostureConfig, error)
	DeletePostureConfig(ctx context.Context, clusterID string) error
}

// Config configures the API.
type Config struct {
	Store Store
	Log   *slog.Logger
	// Alerts receives every alert ingested (new or updated), e.g. for the
	// exporters; nil drops them.
	Alerts func(event.Alert)
	// Exports reports the export outputs' health (no secrets); nil: none.
	Exports func() any
	// Audit runs audit webhook batches through the control-plane rules;
	// nil turns POST /api/v1/audit off.
	Audit AuditHandler
	// Registerer receives the API's metrics; nil means none.
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Body limits: every request body is bounded.
const (
	maxSmallBody = 1 << 20
	maxIngest    = ship.MaxBatchBytes
)

// Server serves the REST API of DESIGN.md. Handler is safe for concurrent use.
type Server struct {
	cfg     Config
	mux     *http.ServeMux
	metrics *metrics
}

// New returns the API server.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Alerts == nil {
		cfg.Alerts = func(event.Alert) {}
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux(), metrics: newMetrics(cfg.Registerer)}
	s.routes()
	return s
}

// Handler returns the API's HTTP handler, with recovery and metrics.
func (s *Server) Handler() http.Handler { return s.recoverer(s.mux) }

func (s *Server) routes() {
	read := []store.Role{store.RoleAdmin, store.RoleReader}
	admin := []store.Role{store.RoleAdmin}
	cluster := []store.Role{store.RoleCluster}
	h := func(pattern string, roles []store.Role, fn func(http.ResponseWriter, *http.Request, store.Principal) error) {
		s.mux.Handle(pattern, s.authed(pattern, roles, fn))
	}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	h("GET /api/v1/alerts", read, s.listAlerts)
	h("GET /api/v1/alerts/counts", read, s.countAlerts)
	h("GET /api/v1/alerts/{id}", read, s.getAlert)
	h("POST /api/v1/alerts/{id}/dismiss", admin, s.setStatus(event.StatusDismissed))
	h("POST /api/v1/alerts/{id}/resolve", admin, s.setStatus(event.StatusResolved))
	h("POST /api/v1/alerts/{id}/reactivate", admin, s.setStatus(event.StatusActive))
	h("POST /api/v1/alerts/{id}/suppress", admin, s.suppress)
	h("POST /api/v1/alerts/dismiss", admin, s.bulkStatus(event.StatusDismissed))
	h("POST /api/v1/alerts/resolve", admin, s.bulkStatus(event.StatusResolved))
	h("GET /api/v1/incidents", read, s.listIncidents)
	h("GET /api/v1/incidents/{id}", read, s.getIncident)
	h("GET /api/v1/recommendations", read, s.listRecommendations)
	h("GET /api/v1/recommendations/{id}", read, s.getRecommendation)
	h("GET /api/v1/inventory", read, s.listInventory)
	h("GET /api/v1/clusters", read, s.listClusters)
	h("POST /api/v1/clusters", admin, s.createCluster)
	h("POST /api/v1/tokens", admin, s.createToken)
	h("GET /api/v1/exports", admin, s.listExports)
	h("GET /api/v1/exceptions", append([]store.Role{store.RoleAdmin}, cluster...), s.listExceptions)
	h("GET /api/v1/posture/config", []store.Role{store.RoleAdmin, store.RoleReader, store.RoleCluster}, s.getPostureConfig)
	h("PUT /api/v1/posture/config", admin, s.putPostureConfig)
	h("DELETE /api/v1/posture/config", admin, s.deletePostureConfig)
	h("POST /api/v1/ingest", cluster, s.ingest)
	h("POST /api/v1/audit", cluster, s.audit)
	s.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
}

// httpError is an error with the status to answer.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, a ...any) error {
	return &httpError{status: status, msg: fmt.Sprintf(format, a...)}
}

// authed authenticates the bearer token, checks the role and runs fn,
// turning its error into the right status and a JSON body.
func (s *Server) authed(route string, roles []store.Role, fn func(http.ResponseWriter, *http.Request, store.Principal) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		defer func() { s.metrics.observe(route, rec.status, time.Since(start)) }()
		var p store.Principal
		secret, ok := bearer(r)
		if !ok {
			cp, certOK := s.certPrincipal(r)
			if !certOK {
				rec.Header().Set("WWW-Authenticate", `Bearer realm="vigil"`)
				writeError(rec, http.StatusUnauthorized, "missing bearer token (or cluster client certificate)")
				return
			}
			p, secret = cp, ""
		}
		var err error
		if secret != "" {
			p, err = s.cfg.Store.Authenticate(r.Context(), secret)
		}
		if err != nil {
			if errors.Is(err, store.ErrUnauthorized) {
				rec.Header().Set("WWW-Authenticate", `Bearer realm="vigil", error="invalid_token"`)
				writeError(rec, http.StatusUnauthorized, "invalid token")
				return
			}
			s.cfg.Log.Error("authenticate", "err", err)
			writeError(rec, http.StatusInternalServerError, "internal error")
			return
		}
		allowed := false
		for _, role := range roles {
			if p.Role == role {
				allowed = true
			}
		}
		if !allowed {
			writeError(rec, http.StatusForbidden, fmt.Sprintf("role %s may not %s %s", p.Role, r.Method, route[strings.IndexByte(route, ' ')+1:]))
			return
		}
		if err := fn(rec, r, p); err != nil {
			s.fail(rec, r, err)
		}
	})
}

// fail answers err: an httpError as is, store sentinels as their status,
// anything else as a 500 without details (they go to the log).
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var he *httpError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &he):
		writeError(w, he.status, he.msg)
	case errors.As(err, &mbe), errors.Is(err, ship.ErrTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, "request body too large")
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not found")
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusConflict, "already exists")
	case errors.Is(err, store.ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusServiceUnavailable, "the query took too long (a text search scans every alert): narrow it with more filters")
	case errors.Is(err, context.Canceled):
		writeError(w, 499, "request cancelled")
	default:
		s.cfg.Log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
	}
}

// recoverer turns a panic into a 500 with a JSON body: never a stack trace
// on the wire.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.cfg.Log.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v))
				writeError(w, http.StatusInternalServerError, "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", false
	}
	return strings.TrimSpace(token), true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// decodeJSON decodes a small request body strictly.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return errorf(http.StatusUnsupportedMediaType, "Content-Type %q: want application/json", ct)
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxSmallBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		if errors.Is(err, io.EOF) {
			return errorf(http.StatusBadRequest, "empty request body: want a JSON object")
		}
		return errorf(http.StatusBadRequest, "bad JSON body: %v", err)
	}
	if dec.More() {
		return errorf(http.StatusBadRequest, "bad JSON body: data after the object")
	}
	return nil
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func queryInt(r *http.Request, name string, def, maxV int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxV {
		return 0, errorf(http.StatusBadRequest, "%s=%q: want a number from 1 to %d", name, s, maxV)
	}
	return n, nil
}
