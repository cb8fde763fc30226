package console

import (
	"net/http"
	"slices"
	"sort"

	"github.com/vigil-sec/vigil/internal/server/store"
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
	recs, err := c.cfg.Recommendations(r.Context())
	if err != nil {
		return err
	}
	c.render(w, r, http.StatusOK, "recommendations", &s, map[string]any{"Recommendations": recs})
	return nil
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
