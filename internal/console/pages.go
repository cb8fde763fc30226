package console

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/vigil-sec/vigil/internal/server/store"
	"github.com/vigil-sec/vigil/internal/ship"
)

func (c *Console) incidents(w http.ResponseWriter, r *http.Request, s session) error {
	cluster := r.URL.Query().Get("cluster")
	incs, err := c.cfg.Store.ListIncidents(r.Context(), cluster, 200)
	if err != nil {
		return err
	}
	clusters, err := c.cfg.Store.ListClusters(r.Context(), c.cfg.Now())
	if err != nil {
		return err
	}
	c.render(w, r, http.StatusOK, "incidents", &s, map[string]any{
		"Incidents": incs, "Clusters": clusters, "Cluster": cluster, "Names": clusterNames(clusters)})
	return nil
}

func (c *Console) incident(w http.ResponseWriter, r *http.Request, s session) error {
	inc, err := c.cfg.Store.GetIncident(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	clusters, err := c.cfg.Store.ListClusters(r.Context(), c.cfg.Now())
	if err != nil {
		return err
	}
	c.render(w, r, http.StatusOK, "incident", &s, map[string]any{"Incident": inc, "Names": clusterNames(clusters)})
	return nil
}

func clusterNames(cs []store.Cluster) map[string]string {
	m := make(map[string]string, len(cs))
	for _, c := range cs {
		m[c.ID] = c.Name
	}
	return m
}

func (c *Console) recommendations(w http.ResponseWriter, r *http.Request, s session) error {
	cluster := r.URL.Query().Get("cluster")
	recs, err := c.recommendationsIn(r.Context(), cluster)
	if err != nil {
		return err
	}
	clusters, err := c.cfg.Store.ListClusters(r.Context(), c.cfg.Now())
	if err != nil {
		return err
	}
	c.render(w, r, http.StatusOK, "recommendations", &s, map[string]any{
		"Recommendations": recs, "Clusters": clusters, "Cluster": cluster, "Query": clusterQuery(cluster)})
	return nil
}

// recommendationsIn is Config.Recommendations with the counts, modes and
// failing resources of one cluster when cluster is set: the
// recommendations without findings there are left out.
func (c *Console) recommendationsIn(ctx context.Context, cluster string) ([]Recommendation, error) {
	recs, err := c.cfg.Recommendations(ctx)
	if err != nil || cluster == "" {
		return recs, err
	}
	sums, err := c.cfg.Store.SummarizeFindings(ctx, cluster)
	if err != nil {
		return nil, err
	}
	byCheck := make(map[string]store.CheckSummary, len(sums))
	for _, sum := range sums {
		byCheck[sum.Check] = sum
	}
	var out []Recommendation
	for _, rec := range recs {
		if sum, ok := byCheck[rec.ID]; ok {
			rec.Healthy, rec.Unhealthy, rec.Unhealthies, rec.Mode = sum.Healthy, sum.Unhealthy, sum.Resources, strings.Join(sum.Modes, "/")
			out = append(out, rec)
		}
	}
	return out, nil
}

// clusterQuery is "?cluster=..." for links that keep the cluster filter.
func clusterQuery(cluster string) string {
	if cluster == "" {
		return ""
	}
	return "?" + url.Values{"cluster": {cluster}}.Encode()
}

// findingPageSize is how many failing resources a recommendation's page
// lists at a time.
const findingPageSize = 50

// findingView is one failing resource on a recommendation's page.
type findingView struct {
	store.FindingRow
	Cluster    string // its name
	Violations []string
}

// recommendation is one recommendation's page: its description and
// remediation, and its failing resources with their violations, a page at
// a time (cursor), in one cluster or all.
func (c *Console) recommendation(w http.ResponseWriter, r *http.Request, s session) error {
	q := r.URL.Query()
	id, cluster, cursor := r.PathValue("id"), q.Get("cluster"), q.Get("cursor")
	page, err := c.cfg.Store.ListFindingsPage(r.Context(), store.FindingFilter{Cluster: cluster, Check: id, Status: ship.Unhealthy,
		Limit: findingPageSize, Cursor: cursor})
	if errors.Is(err, store.ErrInvalid) {
		return &pageError{http.StatusBadRequest, "The page link is not one this list gave; start again from the first page."}
	}
	if err != nil {
		return err
	}
	all, err := c.cfg.Recommendations(r.Context())
	if err != nil {
		return err
	}
	// The catalog's text, and the counts of the clusters asked for.
	rec := Recommendation{ID: id, Title: id}
	i := slices.IndexFunc(all, func(r Recommendation) bool { return r.ID == id })
	if i >= 0 {
		rec = all[i]
	}
	sums, err := c.cfg.Store.SummarizeFindings(r.Context(), cluster)
	if err != nil {
		return err
	}
	j := slices.IndexFunc(sums, func(s store.CheckSummary) bool { return s.Check == id })
	if i < 0 && j < 0 && len(page.Findings) == 0 {
		return errNotFound
	}
	rec.Healthy, rec.Unhealthy, rec.Mode, rec.Unhealthies = 0, 0, "", nil
	if j >= 0 {
		sum := sums[j]
		rec.Healthy, rec.Unhealthy, rec.Mode, rec.Unhealthies = sum.Healthy, sum.Unhealthy, strings.Join(sum.Modes, "/"), sum.Resources
	}
	clusters, err := c.cfg.Store.ListClusters(r.Context(), c.cfg.Now())
	if err != nil {
		return err
	}
	names := clusterNames(clusters)
	rows := make([]findingView, len(page.Findings))
	for i, f := range page.Findings {
		rows[i] = findingView{FindingRow: f, Cluster: cmp.Or(names[f.ClusterID], f.ClusterID), Violations: violations(f.Details)}
	}
	var first, next string
	self := "/recommendations/" + url.PathEscape(id)
	if cursor != "" {
		first = self + clusterQuery(cluster)
	}
	if page.NextCursor != "" {
		v := url.Values{"cursor": {page.NextCursor}}
		if cluster != "" {
			v.Set("cluster", cluster)
		}
		next = self + "?" + v.Encode()
	}
	c.render(w, r, http.StatusOK, "recommendation", &s, map[string]any{
		"Recommendation": rec, "Findings": rows, "Clusters": clusters, "Cluster": cluster,
		"Query": clusterQuery(cluster), "First": first, "Next": next})
	return nil
}

// violations is a finding's details.violations as text: what makes the
// resource fail.
func violations(details map[string]any) []string {
	var out []string
	switch v := details["violations"].(type) {
	case []any:
		for _, x := range v {
			if x != nil {
				out = append(out, fmt.Sprint(x))
			}
		}
	case string:
		out = append(out, v)
	}
	return out
}

// inventoryKinds are the resource types the Inventory page filters by.
var inventoryKinds = []string{"node", "workload", "pod", "container", "image"}

func (c *Console) inventory(w http.ResponseWriter, r *http.Request, s session) error {
	q := r.URL.Query()
	kind, cluster := q.Get("kind"), q.Get("cluster")
	if kind != "" && kind != "cluster" && !slices.Contains(inventoryKinds, kind) {
		return &pageError{http.StatusBadRequest, "Resource type " + kind + " is not one the page offers."}
	}
	clusters, err := c.cfg.Store.ListClusters(r.Context(), c.cfg.Now())
	if err != nil {
		return err
	}
	var rows []store.InventoryRow
	if kind != "cluster" {
		if rows, err = c.cfg.Store.ListInventory(r.Context(), cluster, kind); err != nil {
			return err
		}
	}
	shown := clusters
	if kind != "" && kind != "cluster" {
		shown = nil
	} else if cluster != "" {
		shown = slices.DeleteFunc(slices.Clone(clusters), func(c store.Cluster) bool { return c.ID != cluster && c.Name != cluster })
	}
	c.render(w, r, http.StatusOK, "inventory", &s, map[string]any{
		"Rows": rows, "Clusters": clusters, "ShownClusters": shown, "Kind": kind, "Cluster": cluster,
		"Kinds": inventoryKinds, "Names": clusterNames(clusters)})
	return nil
}

// clusterView is one cluster on the Clusters page: its components and
// sensor coverage (inventory nodes with and without a sensor reporting).
type clusterView struct {
	store.Cluster
	Covered, Uncovered []string
	Dropped            uint64 // events the sensors lost, summed
}

func (c *Console) clusters(w http.ResponseWriter, r *http.Request, s session) error {
	clusters, err := c.cfg.Store.ListClusters(r.Context(), c.cfg.Now())
	if err != nil {
		return err
	}
	nodes, err := c.cfg.Store.ListInventory(r.Context(), "", "node")
	if err != nil {
		return err
	}
	var out []clusterView
	for _, cl := range clusters {
		v := clusterView{Cluster: cl}
		sensors := map[string]bool{}
		for _, comp := range cl.Components {
			if comp.Component == "sensor" && comp.State != "failed" {
				sensors[comp.Node] = true
			}
			if comp.Health != nil {
				v.Dropped += comp.Health.DroppedTotal
			}
		}
		known := map[string]bool{}
		for _, n := range nodes {
			if n.ClusterID == cl.ID {
				known[n.Name] = true
			}
		}
		for node := range sensors {
			known[node] = true
		}
		for node := range known {
			if sensors[node] {
				v.Covered = append(v.Covered, node)
			} else {
				v.Uncovered = append(v.Uncovered, node)
			}
		}
		sort.Strings(v.Covered)
		sort.Strings(v.Uncovered)
		out = append(out, v)
	}
	c.render(w, r, http.StatusOK, "clusters", &s, map[string]any{"Clusters": out})
	return nil
}
