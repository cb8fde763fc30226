package console

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/server/store"
)

// Store is what the console reads and changes; *store.Store implements it.
type Store interface {
	Authenticate(ctx context.Context, secret string) (store.Principal, error)
	ListClusters(ctx context.Context, now time.Time) ([]store.Cluster, error)
	ListAlerts(ctx context.Context, f store.AlertFilter) (store.AlertPage, error)
	CountAlerts(ctx context.Context, f store.AlertFilter) (map[event.Severity]int, error)
	GetAlert(ctx context.Context, id string) (store.Alert, error)
	AlertChanges(ctx context.Context, id string) ([]store.Change, error)
	SetAlertStatus(ctx context.Context, ids []string, status, reason, actor string, now time.Time) (int, error)
	CreateException(ctx context.Context, clusterID string, x detect.Exception, actor string) error
	ListIncidents(ctx context.Context, cluster string, limit int) ([]store.Incident, error)
	GetIncident(ctx context.Context, id string) (store.Incident, error)
	IncidentSummary(ctx context.Context, id string) (store.Incident, error)
	ListInventory(ctx context.Context, cluster, kind string) ([]store.InventoryRow, error)
	SummarizeFindings(ctx context.Context, cluster string) ([]store.CheckSummary, error)
	ListFindingsPage(ctx context.Context, f store.FindingFilter) (store.FindingPage, error)
}

// Recommendation is one workload-protection recommendation as the
// Recommendations page shows it, over every cluster (the pages narrow the
// counts to one cluster themselves).
type Recommendation struct {
	ID          string
	Title       string
	Description string // optional, shown on the recommendation's page
	Remediation string // optional, likewise
	Mode        string // audit, deny or disabled (several: "audit/deny")
	Severity    event.Severity
	Healthy     int
	Unhealthy   int
	Parameters  []string // what the recommendation's configuration may set
	Unhealthies []string // the affected resources, e.g. Deployment/shop/web
}

// Config configures the console.
type Config struct {
	Store Store
	Log   *slog.Logger
	// Recommendations lists the workload-protection recommendations; nil
	// means none yet.
	Recommendations func(context.Context) ([]Recommendation, error)
	// Secure marks the session cookie Secure (the server speaks TLS).
	Secure bool
	Now    func() time.Time
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Console serves the web console: server-rendered pages over the same
// store as the REST API, with htmx (vendored in static/) refreshing the
// alert list in place.
type Console struct {
	cfg   Config
	pages map[string]*template.Template
	mux   *http.ServeMux
}

// New returns the console; its Handler serves every path the API does not.
func New(cfg Config) (*Console, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Recommendations == nil {
		cfg.Recommendations = func(context.Context) ([]Recommendation, error) { return nil, nil }
	}
	pages, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, pages: pages, mux: http.NewServeMux()}
	c.routes()
	return c, nil
}

// Handler returns the console's HTTP handler.
func (c *Console) Handler() http.Handler { return securityHeaders(c.mux) }

func (c *Console) routes() {
	static, _ := fs.Sub(staticFS, "static")
	files := http.FileServerFS(static)
	c.mux.Handle("GET /static/", http.StripPrefix("/static/", cacheFor(time.Hour, files)))
	c.mux.HandleFunc("GET /login", c.loginPage)
	c.mux.HandleFunc("POST /login", c.login)
	c.mux.HandleFunc("GET /{$}", c.home)
	page := func(pattern string, fn func(http.ResponseWriter, *http.Request, session) error) {
		c.mux.Handle(pattern, c.signedIn(fn))
	}
	page("POST /logout", c.logout)
	page("GET /alerts", c.alerts)
	page("GET /alerts/{id}", c.alert)
	page("POST /alerts/{id}/status", c.setStatus)
	page("POST /alerts/{id}/suppress", c.suppress)
	page("GET /incidents", c.incidents)
	page("GET /incidents/{id}", c.incident)
	page("GET /recommendations", c.recommendations)
	page("GET /recommendations/{id}", c.recommendation)
	page("GET /inventory", c.inventory)
	page("GET /clusters", c.clusters)
	c.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		var user *session
		if s, err := c.session(r); err == nil {
			user = &s
		}
		c.fail(w, r, user, errNotFound)
	})
}

// home is the console's front door: the sign-in form, or the alerts for
// someone signed in.
func (c *Console) home(w http.ResponseWriter, r *http.Request) {
	if _, err := c.session(r); err != nil {
		c.render(w, r, http.StatusOK, "login", nil, map[string]any{"Next": "/alerts"})
		return
	}
	http.Redirect(w, r, "/alerts", http.StatusSeeOther)
}

// securityHeaders keeps the console's pages to their own origin: scripts
// and styles only from /static, no framing, no sniffing, no caching of
// pages that show alerts.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
			"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		if h.Get("Cache-Control") == "" {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

func cacheFor(d time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age="+itoa(int(d.Seconds())))
		next.ServeHTTP(w, r)
	})
}

// pageError is an error shown to the user with its status.
type pageError struct {
	status int
	msg    string
}

func (e *pageError) Error() string { return e.msg }

var errNotFound = &pageError{http.StatusNotFound, "There is no such page."}

// fail renders err as an error page: a pageError or a store sentinel with
// its status and message, anything else as a 500 whose details go to the
// log only.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	status, msg := http.StatusInternalServerError, "Something went wrong; the server log has the details."
	var pe *pageError
	switch {
	case errors.As(err, &pe):
		status, msg = pe.status, pe.msg
	case errors.Is(err, store.ErrNotFound):
		status, msg = http.StatusNotFound, "Not found: it may have been removed, or the link is wrong."
	case errors.Is(err, store.ErrInvalid):
		status, msg = http.StatusBadRequest, err.Error()
	case errors.Is(err, context.DeadlineExceeded):
		status, msg = http.StatusServiceUnavailable, "The query took too long: narrow it with more filters."
	default:
		c.cfg.Log.Error("console request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	c.render(w, r, status, "error", s, map[string]any{"Status": status, "Message": msg})
}
