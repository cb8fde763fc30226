package api

import (
	"context"
	"net/http"

	"github.com/vigil-sec/vigil/internal/posture"
	"github.com/vigil-sec/vigil/internal/server/store"
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
