package api

import (
	"crypto/rand"
	"net/http"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/server/store"
)

// alertFilter reads the alert filters of DESIGN.md from the query string:
// severity, status, cluster, namespace, rule, resource, type (pod, node
// or cluster), node, q (search),
// since, until (RFC 3339 times, or a duration back from now: since=24h),
// sort, limit and cursor.
func (s *Server) alertFilter(r *http.Request) (store.AlertFilter, error) {
	q := r.URL.Query()
	f := store.AlertFilter{
		Cluster: q.Get("cluster"), Namespace: q.Get("namespace"), Rule: q.Get("rule"),
		Resource: q.Get("resource"), ResourceType: q.Get("type"), Node: q.Get("node"), Search: q.Get("q"), Cursor: q.Get("cursor"),
	}
	for _, v := range splitList(q["severity"]) {
		sev, err := event.ParseSeverity(v)
		if err != nil {
			return f, errorf(http.StatusBadRequest, "severity: %v", err)
		}
		f.Severity = append(f.Severity, sev)
	}
	for _, v := range splitList(q["status"]) {
		if !validStatus(v) {
			return f, errorf(http.StatusBadRequest, "status %q: want active, dismissed or resolved", v)
		}
		f.Status = append(f.Status, v)
	}
	var err error
	if f.Since, err = s.timeParam(q.Get("since")); err != nil {
		return f, errorf(http.StatusBadRequest, "since: %v", err)
	}
	if f.Until, err = s.timeParam(q.Get("until")); err != nil {
		return f, errorf(http.StatusBadRequest, "until: %v", err)
	}
	switch sort := q.Get("sort"); sort {
	case "", "last_seen", "first_seen", "severity":
		f.Sort = sort
	default:
		return f, errorf(http.StatusBadRequest, "sort %q: want last_seen, first_seen or severity", sort)
	}
	if f.Limit, err = queryInt(r, "limit", 50, 1000); err != nil {
		return f, err
	}
	return f, nil
}

func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func validStatus(s string) bool {
	return s == event.StatusActive || s == event.StatusDismissed || s == event.StatusResolved
}

func (s *Server) timeParam(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return s.cfg.Now().Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, errorf(http.StatusBadRequest, "%q: want an RFC 3339 time or a duration such as 24h", v)
	}
	return t, nil
}

type alertList struct {
	Alerts     []store.Alert `json:"alerts"`
	NextCursor string        `json:"next_cursor,omitempty"`
}

func (s *Server) listAlerts(w http.ResponseWriter, r *http.Request, _ store.Principal) error {
	f, err := s.alertFilter(r)
	if err != nil {
		return err
	}
	page, err := s.cfg.Store.ListAlerts(r.Context(), f)
	if err != nil {
		return err
	}
	if page.Alerts == nil {
		page.Alerts = []store.Alert{}
	}
	writeJSON(w, http.StatusOK, alertList{Alerts: page.Alerts, NextCursor: page.NextCursor})
	return nil
}

func (s *Server) countAlerts(w http.ResponseWriter, r *http.Request, _ store.Principal) error {
	f, err := s.alertFilter(r)
	if err != nil {
		return err
	}
	counts, err := s.cfg.Store.CountAlerts(r.Context(), f)
	if err != nil {
		return err
	}
	out := map[string]int{}
	for _, sev := range []event.Severity{event.High, event.Medium, event.Low, event.Informational} {
		out[string(sev)] = counts[sev]
	}
	writeJSON(w, http.StatusOK, map[string]any{"by_severity": out})
	return nil
}

type alertDetail struct {
	store.Alert
	Changes []store.Change `json:"changes"`
}

func (s *Server) getAlert(w http.ResponseWriter, r *http.Request, _ store.Principal) error {
	id := r.PathValue("id")
	a, err := s.cfg.Store.GetAlert(r.Context(), id)
	if err != nil {
		return err
	}
	changes, err := s.cfg.Store.AlertChanges(r.Context(), id)
	if err != nil {
		return err
	}
	if changes == nil {
		changes = []store.Change{}
	}
	writeJSON(w, http.StatusOK, alertDetail{Alert: a, Changes: changes})
	return nil
}

type statusRequest struct {
	Reason string `json:"reason"`
}

const maxReason = 2048

func (req *statusRequest) check() error {
	req.Reason = strings.TrimSpace(req.Reason)
	if req.Reason == "" {
		return errorf(http.StatusBadRequest, "a reason is required")
	}
	if len(req.Reason) > maxReason {
		return errorf(http.StatusBadRequest, "reason longer than %d bytes", maxReason)
	}
	return nil
}

// setStatus dismisses, resolves or reactivates one alert.
func (s *Server) setStatus(status string) func(http.ResponseWriter, *http.Request, store.Principal) error {
	return func(w http.ResponseWriter, r *http.Request, p store.Principal) error {
		var req statusRequest
		if err := decodeJSON(w, r, &req); err != nil {
			return err
		}
		if err := req.check(); err != nil {
			return err
		}
		id := r.PathValue("id")
		if _, err := s.cfg.Store.GetAlert(r.Context(), id); err != nil {
			return err
		}
		if _, err := s.cfg.Store.SetAlertStatus(r.Context(), []string{id}, status, req.Reason, p.Name, s.cfg.Now()); err != nil {
			return err
		}
		a, err := s.cfg.Store.GetAlert(r.Context(), id)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, a)
		return nil
	}
}

type bulkRequest struct {
	Reason string     `json:"reason"`
	Filter bulkFilter `json:"filter"`
	IDs    []string   `json:"ids"`
}

// bulkFilter is the JSON form of the list filters, for bulk changes.
type bulkFilter struct {
	Severity  []event.Severity `json:"severity"`
	Status    []string         `json:"status"`
	Cluster   string           `json:"cluster"`
	Namespace string           `json:"namespace"`
	Rule      string           `json:"rule"`
	Resource  string           `json:"resource"`
	Node      string           `json:"node"`
	Since     time.Time        `json:"since"`
	Until     time.Time        `json:"until"`
}

// bulkStatus dismisses or resolves every alert matching a filter (or a
// list of ids). An empty filter is refused: "dismiss everything" must be
// spelled out.
func (s *Server) bulkStatus(status string) func(http.ResponseWriter, *http.Request, store.Principal) error {
	return func(w http.ResponseWriter, r *http.Request, p store.Principal) error {
		var req bulkRequest
		if err := decodeJSON(w, r, &req); err != nil {
			return err
		}
		sr := statusRequest{Reason: req.Reason}
		if err := sr.check(); err != nil {
			return err
		}
		var n int
		var err error
		if len(req.IDs) > 0 {
			if len(req.IDs) > 10000 {
				return errorf(http.StatusBadRequest, "at most 10000 ids")
			}
			n, err = s.cfg.Store.SetAlertStatus(r.Context(), req.IDs, status, sr.Reason, p.Name, s.cfg.Now())
		} else {
			bf := req.Filter
			for _, sev := range bf.Severity {
				if sev.Rank() < 0 {
					return errorf(http.StatusBadRequest, "severity %q: want informational, low, medium or high", sev)
				}
			}
			for _, st := range bf.Status {
				if !validStatus(st) {
					return errorf(http.StatusBadRequest, "status %q: want active, dismissed or resolved", st)
				}
			}
			if len(bf.Severity) == 0 && len(bf.Status) == 0 && bf.Cluster == "" && bf.Namespace == "" && bf.Rule == "" &&
				bf.Resource == "" && bf.Node == "" && bf.Since.IsZero() && bf.Until.IsZero() {
				return errorf(http.StatusBadRequest, "a bulk change needs ids or a filter")
			}
			f := store.AlertFilter{Severity: bf.Severity, Status: bf.Status, Cluster: bf.Cluster, Namespace: bf.Namespace,
				Rule: bf.Rule, Resource: bf.Resource, Node: bf.Node, Since: bf.Since, Until: bf.Until}
			n, err = s.cfg.Store.SetStatusByFilter(r.Context(), f, status, sr.Reason, p.Name, s.cfg.Now())
		}
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]int{"changed": n})
		return nil
	}
}

type suppressRequest struct {
	// Scope is what the exception covers: workload (default), namespace,
	// image, cluster or process (the executable, in that workload).
	Scope   string    `json:"scope"`
	Reason  string    `json:"reason"`
	Expires time.Time `json:"expires"`
	// Dismiss also dismisses the alert (default true).
	Dismiss *bool `json:"dismiss"`
}

// suppress turns an alert into an engine exception ("don't alert on this
// again for this workload") in one step; sensors pull it from
// GET /api/v1/exceptions.
func (s *Server) suppress(w http.ResponseWriter, r *http.Request, p store.Principal) error {
	var req suppressRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	sr := statusRequest{Reason: req.Reason}
	if err := sr.check(); err != nil {
		return err
	}
	a, err := s.cfg.Store.GetAlert(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	x, err := store.ExceptionFor(a, req.Scope)
	if err != nil {
		return err
	}
	x.ID = "x-" + ulid.MustNew(ulid.Timestamp(s.cfg.Now()), rand.Reader).String()
	x.Reason = sr.Reason + " (from alert " + a.ID + " by " + p.Name + ")"
	x.Expires = req.Expires
	if err := s.cfg.Store.CreateException(r.Context(), a.ClusterID, x, p.Name); err != nil {
		return err
	}
	if req.Dismiss == nil || *req.Dismiss {
		if _, err := s.cfg.Store.SetAlertStatus(r.Context(), []string{a.ID}, event.StatusDismissed, "suppressed: "+sr.Reason, p.Name, s.cfg.Now()); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusCreated, x)
	return nil
}

func (s *Server) listExceptions(w http.ResponseWriter, r *http.Request, p store.Principal) error {
	cluster := r.URL.Query().Get("cluster")
	if p.Role == store.RoleCluster {
		cluster = p.ClusterID // a cluster sees its own exceptions and the global ones, nothing else
	} else if cluster != "" {
		c, err := s.cfg.Store.GetCluster(r.Context(), cluster, s.cfg.Now())
		if err != nil {
			return err
		}
		cluster = c.ID
	}
	xs, err := s.cfg.Store.ListExceptions(r.Context(), cluster)
	if err != nil {
		return err
	}
	if xs == nil {
		xs = []detect.Exception{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"exceptions": xs})
	return nil
}

func (s *Server) listIncidents(w http.ResponseWriter, r *http.Request, _ store.Principal) error {
	limit, err := queryInt(r, "limit", 50, 1000)
	if err != nil {
		return err
	}
	incs, err := s.cfg.Store.ListIncidents(r.Context(), r.URL.Query().Get("cluster"), limit)
	if err != nil {
		return err
	}
	if incs == nil {
		incs = []store.Incident{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"incidents": incs})
	return nil
}

func (s *Server) getIncident(w http.ResponseWriter, r *http.Request, _ store.Principal) error {
	inc, err := s.cfg.Store.GetIncident(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, inc)
	return nil
}

func (s *Server) listInventory(w http.ResponseWriter, r *http.Request, _ store.Principal) error {
	q := r.URL.Query()
	rows, err := s.cfg.Store.ListInventory(r.Context(), q.Get("cluster"), q.Get("kind"))
	if err != nil {
		return err
	}
	if rows == nil {
		rows = []store.InventoryRow{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"inventory": rows})
	return nil
}
