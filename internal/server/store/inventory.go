package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/ship"
)

// InventoryRow is one inventory item of a cluster as last reported.
type InventoryRow struct {
	ClusterID string `json:"cluster_id"`
	ship.InventoryItem
	LastSeen time.Time `json:"last_seen"`
}

// ListInventory returns the inventory of one cluster (id or name) or of
// all ("") of one kind or all (""), ordered by cluster, kind, namespace
// and name.
func (s *Store) ListInventory(ctx context.Context, cluster, kind string) ([]InventoryRow, error) {
	where, args, none, err := s.clusterKindWhere(ctx, cluster, "kind", kind)
	if err != nil {
		return nil, fmt.Errorf("list inventory: %w", err)
	}
	out := []InventoryRow{}
	if none {
		return out, nil
	}
	rows, err := s.r.QueryContext(ctx, s.d.q(`SELECT cluster_id, kind, namespace, name, node, attrs, last_seen FROM inventory`+
		where+` ORDER BY cluster_id, kind, namespace, name`), args...)
	if err != nil {
		return nil, fmt.Errorf("list inventory: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r InventoryRow
		var attrs string
		var last int64
		if err := rows.Scan(&r.ClusterID, &r.Kind, &r.Namespace, &r.Name, &r.Node, &attrs, &last); err != nil {
			return nil, fmt.Errorf("list inventory: %w", err)
		}
		if attrs != "" {
			if err := json.Unmarshal([]byte(attrs), &r.Attrs); err != nil {
				return nil, fmt.Errorf("list inventory: stored attributes: %w", err)
			}
		}
		r.LastSeen = fromTS(last)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list inventory: %w", err)
	}
	return out, nil
}

// FindingRow is one posture finding of a cluster as last reported.
type FindingRow struct {
	ClusterID string `json:"cluster_id"`
	ship.Finding
	LastSeen time.Time `json:"last_seen"`
}

// ListFindings returns the posture findings of one cluster (id or name) or
// of all (""), of one check or all (""), ordered by cluster, check and
// resource.
func (s *Store) ListFindings(ctx context.Context, cluster, check string) ([]FindingRow, error) {
	where, args, none, err := s.clusterKindWhere(ctx, cluster, "check_id", check)
	if err != nil {
		return nil, fmt.Errorf("list findings: %w", err)
	}
	out := []FindingRow{}
	if none {
		return out, nil
	}
	rows, err := s.r.QueryContext(ctx, s.d.q(`SELECT cluster_id, id, check_id, resource, namespace, status, details, last_seen
		FROM findings`+where+` ORDER BY cluster_id, check_id, resource, id`), args...)
	if err != nil {
		return nil, fmt.Errorf("list findings: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r FindingRow
		var details string
		var last int64
		if err := rows.Scan(&r.ClusterID, &r.ID, &r.Check, &r.Resource, &r.Namespace, &r.Status, &details, &last); err != nil {
			return nil, fmt.Errorf("list findings: %w", err)
		}
		if details != "" {
			if err := json.Unmarshal([]byte(details), &r.Details); err != nil {
				return nil, fmt.Errorf("list findings: stored details: %w", err)
			}
		}
		r.LastSeen = fromTS(last)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list findings: %w", err)
	}
	return out, nil
}

// clusterKindWhere filters on a cluster (id or name, resolved) and one
// more column.
func (s *Store) clusterKindWhere(ctx context.Context, cluster, col, val string) (string, []any, bool, error) {
	var where string
	var args []any
	if cluster != "" {
		id, ok, err := s.resolveCluster(ctx, cluster)
		if err != nil {
			return "", nil, false, err
		}
		if !ok {
			return "", nil, true, nil
		}
		where = " WHERE cluster_id = ?"
		args = append(args, id)
	}
	if val != "" {
		if where == "" {
			where = " WHERE "
		} else {
			where += " AND "
		}
		where += col + " = ?"
		args = append(args, val)
	}
	return where, args, false, nil
}

// CheckSummary is one check's findings over the clusters asked for: how
// many resources pass and fail it, the failing ones (at most
// MaxSummaryResources) and the modes the findings were made in.
type CheckSummary struct {
	Check     string   `json:"check"`
	Healthy   int      `json:"healthy"`
	Unhealthy int      `json:"unhealthy"`
	Resources []string `json:"unhealthy_resources"`
	Modes     []string `json:"modes"`
}

// MaxSummaryResources bounds the failing resources a summary lists.
const MaxSummaryResources = 100

// SummarizeFindings sums the findings of one cluster (id or name) or all
// (""), per check, in check order.
func (s *Store) SummarizeFindings(ctx context.Context, cluster string) ([]CheckSummary, error) {
	rows, err := s.ListFindings(ctx, cluster, "")
	if err != nil {
		return nil, err
	}
	var out []CheckSummary
	idx := map[string]int{}
	for _, r := range rows {
		i, ok := idx[r.Check]
		if !ok {
			i = len(out)
			idx[r.Check] = i
			out = append(out, CheckSummary{Check: r.Check, Resources: []string{}, Modes: []string{}})
		}
		c := &out[i]
		if r.Status == ship.Healthy {
			c.Healthy++
		} else {
			c.Unhealthy++
			if len(c.Resources) < MaxSummaryResources {
				c.Resources = append(c.Resources, r.Resource)
			}
		}
		if m, _ := r.Details["mode"].(string); m != "" && !slices.Contains(c.Modes, m) {
			c.Modes = append(c.Modes, m)
		}
	}
	slices.SortFunc(out, func(a, b CheckSummary) int { return strings.Compare(a.Check, b.Check) })
	return out, nil
}
