package api

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/vigil-sec/vigil/internal/posture"
	"github.com/vigil-sec/vigil/internal/server/store"
	"github.com/vigil-sec/vigil/internal/ship"
)

// Recommendation is a workload-protection recommendation with the posture
// the clusters' scanners reported for it.
type Recommendation struct {
	ID          string   `json:"id"`
	Title       string   `json:"title"`
	Severity    string   `json:"severity"`
	Description string   `json:"description"`
	Remediation string   `json:"remediation"`
	Parameters  []string `json:"parameters"`
	// Modes are the modes the findings were made in (audit, deny); one,
	// unless clusters are configured differently.
	Modes     []string `json:"modes"`
	Healthy   int      `json:"healthy"`
	Unhealthy int      `json:"unhealthy"`
	// Resources are the unhealthy resources, at most store.MaxSummaryResources.
	Resources []string `json:"unhealthy_resources"`
}

// Recommendations joins the findings' summary with the catalog, in the
// catalog's order; checks the catalog does not know come last, by id.
func Recommendations(ctx context.Context, summarize func(context.Context, string) ([]store.CheckSummary, error), cluster string) ([]Recommendation, error) {
	sums, err := summarize(ctx, cluster)
	if err != nil {
		return nil, err
	}
	byCheck := make(map[string]store.CheckSummary, len(sums))
	for _, c := range sums {
		byCheck[c.Check] = c
	}
	out := []Recommendation{}
	add := func(r Recommendation, c store.CheckSummary) {
		r.Modes, r.Healthy, r.Unhealthy, r.Resources = c.Modes, c.Healthy, c.Unhealthy, c.Resources
		out = append(out, r)
		delete(byCheck, c.Check)
	}
	for _, rec := range posture.Recommendations() {
		if c, ok := byCheck[rec.ID]; ok {
			add(Recommendation{ID: rec.ID, Title: rec.Title, Severity: string(rec.Severity), Description: rec.Description,
				Remediation: rec.Remediation, Parameters: rec.Parameters}, c)
		}
	}
	for _, c := range sums {
		if _, ok := byCheck[c.Check]; ok {
			add(Recommendation{ID: c.Check, Title: c.Check}, c)
		}
	}
	return out, nil
}

// listRecommendations answers the console's Recommendations page and
// `GET /api/v1/recommendations[?cluster=]`.
func (s *Server) listRecommendations(w http.ResponseWriter, r *http.Request, _ store.Principal) error {
	recs, err := Recommendations(r.Context(), s.cfg.Store.SummarizeFindings, r.URL.Query().Get("cluster"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"recommendations": recs})
	return nil
}

// RecommendationDetail is a recommendation with one page of its findings.
type RecommendationDetail struct {
	Recommendation
	Findings   []ResourceFinding `json:"findings"`
	NextCursor string            `json:"next_cursor,omitempty"`
}

// ResourceFinding is one resource's result for a recommendation.
type ResourceFinding struct {
	Cluster    string    `json:"cluster"` // its name
	Resource   string    `json:"resource"`
	Namespace  string    `json:"namespace"`
	Status     string    `json:"status"`
	Mode       string    `json:"mode"`
	Violations []string  `json:"violations"`
	LastSeen   time.Time `json:"last_seen"`
}

// getRecommendation answers `GET /api/v1/recommendations/{id}[?cluster=
// &status=healthy|unhealthy&namespace=&limit=&cursor=]`: the recommendation
// as the list shows it, over the clusters asked for, and one page of its
// findings ordered by resource. An id neither the catalog nor any finding
// knows is 404.
func (s *Server) getRecommendation(w http.ResponseWriter, r *http.Request, _ store.Principal) error {
	q := r.URL.Query()
	id := r.PathValue("id")
	f := store.FindingFilter{Cluster: q.Get("cluster"), Check: id, Status: q.Get("status"), Namespace: q.Get("namespace"), Cursor: q.Get("cursor")}
	if f.Status != "" && f.Status != ship.Healthy && f.Status != ship.Unhealthy {
		return errorf(http.StatusBadRequest, "status %q: want healthy or unhealthy", f.Status)
	}
	var err error
	if f.Limit, err = queryInt(r, "limit", 50, store.MaxFindingsPage); err != nil {
		return err
	}
	page, err := s.cfg.Store.ListFindingsPage(r.Context(), f)
	if err != nil {
		return err
	}
	recs, err := Recommendations(r.Context(), s.cfg.Store.SummarizeFindings, f.Cluster)
	if err != nil {
		return err
	}
	var d RecommendationDetail
	i := slices.IndexFunc(recs, func(rec Recommendation) bool { return rec.ID == id })
	switch rec, known := posture.Lookup(id); {
	case i >= 0:
		d.Recommendation = recs[i]
	case known:
		d.Recommendation = Recommendation{ID: rec.ID, Title: rec.Title, Severity: string(rec.Severity), Description: rec.Description,
			Remediation: rec.Remediation, Parameters: rec.Parameters, Modes: []string{}, Resources: []string{}}
	case len(page.Findings) == 0:
		return errorf(http.StatusNotFound, "no recommendation %q", id)
	default:
		d.Recommendation = Recommendation{ID: id, Title: id, Modes: []string{}, Resources: []string{}}
	}
	var names map[string]string
	if len(page.Findings) > 0 {
		clusters, err := s.cfg.Store.ListClusters(r.Context(), s.cfg.Now())
		if err != nil {
			return err
		}
		names = make(map[string]string, len(clusters))
		for _, c := range clusters {
			names[c.ID] = c.Name
		}
	}
	d.Findings = make([]ResourceFinding, 0, len(page.Findings))
	for _, row := range page.Findings {
		d.Findings = append(d.Findings, ResourceFinding{Cluster: cmp.Or(names[row.ClusterID], row.ClusterID), Resource: row.Resource,
			Namespace: row.Namespace, Status: row.Status, Mode: row.Mode, Violations: Violations(row.Details), LastSeen: row.LastSeen})
	}
	d.NextCursor = page.NextCursor
	writeJSON(w, http.StatusOK, d)
	return nil
}

// Violations is a finding's details.violations as strings: what makes the
// resource fail the check.
func Violations(details map[string]any) []string {
	out := []string{}
	switch v := details["violations"].(type) {
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok {
				out = append(out, s)
			} else if x != nil {
				out = append(out, fmt.Sprint(x))
			}
		}
	case []string:
		out = append(out, v...)
	case string:
		out = append(out, v)
	}
	return out
}
