package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// Connectivity values of a cluster.
const (
	Connected = "connected" // a heartbeat within HeartbeatWindow
	Offline   = "offline"   // heartbeats stopped
	Pending   = "pending"   // never heard from
)

// HeartbeatWindow is how recent a cluster's last heartbeat must be for it
// to count as connected.
const HeartbeatWindow = 5 * time.Minute

// Cluster is a Kubernetes cluster that sends to this server.
type Cluster struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	// LastSeen is the last heartbeat (a health entry in a batch); zero if
	// never.
	LastSeen     time.Time `json:"last_seen,omitzero"`
	Connectivity string    `json:"connectivity"`
	// LastAudit is when the server last received an audit batch from the
	// cluster's API server (NoteAudit), to within auditNoteStep; zero if
	// never. Audit events the agent or `vigil audit tail` receive do not
	// move it: they arrive as alerts.
	LastAudit  time.Time   `json:"last_audit,omitzero"`
	Components []Component `json:"components"`
}

// Component is one sensor or agent of a cluster as it last reported.
type Component struct {
	Node      string        `json:"node,omitempty"`
	Component string        `json:"component"`
	State     string        `json:"state"`
	Reason    string        `json:"reason,omitempty"`
	LastSeen  time.Time     `json:"last_seen"`
	Health    *event.Health `json:"health,omitempty"`
}

// clusterName is a DNS-1123 label: what kubectl contexts and Helm release
// names are made of.
var clusterName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// CreateCluster registers a cluster and returns it with its join
// credential, which is not stored and cannot be shown again. The name is a
// DNS-1123 label (lower-case letters, digits and '-', at most 63); a name
// in use gives ErrConflict.
func (s *Store) CreateCluster(ctx context.Context, name string) (Cluster, string, error) {
	if !clusterName.MatchString(name) {
		return Cluster{}, "", fmt.Errorf("create cluster: %w: name %q must be a DNS-1123 label (a-z, 0-9 and '-', at most 63, no '-' at either end)", ErrInvalid, clip(name))
	}
	now := time.Now().UTC()
	c := Cluster{ID: newID(), Name: name, CreatedAt: now, Connectivity: Pending, Components: []Component{}}
	secret, hash, err := newSecret(RoleCluster)
	if err != nil {
		return Cluster{}, "", err
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return Cluster{}, "", fmt.Errorf("create cluster: %w", err)
	}
	defer rollback(tx)
	res, err := tx.ExecContext(ctx, s.d.q(`INSERT INTO clusters (id, name, created_at, last_seen) VALUES (?, ?, ?, 0)
		ON CONFLICT DO NOTHING`), c.ID, c.Name, ts(now))
	if err != nil {
		return Cluster{}, "", fmt.Errorf("create cluster: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Cluster{}, "", fmt.Errorf("create cluster %s: %w", name, ErrConflict)
	}
	if _, err := tx.ExecContext(ctx, s.d.q(`INSERT INTO credentials (hash, id, name, role, cluster_id, created_at)
		VALUES (?, ?, ?, ?, ?, ?)`), hash, newID(), name, string(RoleCluster), c.ID, ts(now)); err != nil {
		return Cluster{}, "", fmt.Errorf("create cluster: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return Cluster{}, "", fmt.Errorf("create cluster: %w", err)
	}
	return c, secret, nil
}

// ListClusters returns every cluster by name with its components;
// connectivity is judged at now.
func (s *Store) ListClusters(ctx context.Context, now time.Time) ([]Cluster, error) {
	return s.clusters(ctx, "", now)
}

// GetCluster finds a cluster by id or name.
func (s *Store) GetCluster(ctx context.Context, idOrName string, now time.Time) (Cluster, error) {
	if idOrName == "" {
		return Cluster{}, fmt.Errorf("cluster: %w", ErrNotFound)
	}
	cs, err := s.clusters(ctx, idOrName, now)
	if err != nil {
		return Cluster{}, err
	}
	if len(cs) == 0 {
		return Cluster{}, fmt.Errorf("cluster %q: %w", clip(idOrName), ErrNotFound)
	}
	return cs[0], nil
}

func (s *Store) clusters(ctx context.Context, idOrName string, now time.Time) ([]Cluster, error) {
	q := "SELECT id, name, created_at, last_seen, last_audit FROM clusters"
	cq := "SELECT cluster_id, node, component, state, reason, last_seen, health FROM components"
	var args []any
	if idOrName != "" {
		q += " WHERE id = ? OR name = ?"
		cq += " WHERE cluster_id IN (SELECT id FROM clusters WHERE id = ? OR name = ?)"
		args = []any{idOrName, idOrName}
	}
	q += " ORDER BY name"
	cq += " ORDER BY cluster_id, node, component"
	rows, err := s.r.QueryContext(ctx, s.d.q(q), args...)
	if err != nil {
		return nil, fmt.Errorf("list clusters: %w", err)
	}
	defer rows.Close()
	out := []Cluster{}
	byID := map[string]int{}
	for rows.Next() {
		var c Cluster
		var created, last, lastAudit int64
		if err := rows.Scan(&c.ID, &c.Name, &created, &last, &lastAudit); err != nil {
			return nil, fmt.Errorf("list clusters: %w", err)
		}
		c.CreatedAt, c.LastSeen, c.LastAudit = fromTS(created), fromTS(last), fromTS(lastAudit)
		c.Connectivity = connectivity(c.LastSeen, now)
		c.Components = []Component{}
		byID[c.ID] = len(out)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list clusters: %w", err)
	}
	rows.Close()
	if len(out) == 0 {
		return out, nil
	}
	crows, err := s.r.QueryContext(ctx, s.d.q(cq), args...)
	if err != nil {
		return nil, fmt.Errorf("list components: %w", err)
	}
	defer crows.Close()
	for crows.Next() {
		var cid, health string
		var last int64
		var c Component
		if err := crows.Scan(&cid, &c.Node, &c.Component, &c.State, &c.Reason, &last, &health); err != nil {
			return nil, fmt.Errorf("list components: %w", err)
		}
		c.LastSeen = fromTS(last)
		if health != "" {
			var h event.Health
			if json.Unmarshal([]byte(health), &h) == nil {
				c.Health = &h
			}
		}
		if i, ok := byID[cid]; ok {
			out[i].Components = append(out[i].Components, c)
		}
	}
	if err := crows.Err(); err != nil {
		return nil, fmt.Errorf("list components: %w", err)
	}
	return out, nil
}

// auditNoteStep is how stale clusters.last_audit may be: the API server
// sends a batch every second or so, and one write per batch would cost the
// SQLite writer for nothing.
const auditNoteStep = 10 * time.Second

// NoteAudit records that an audit batch from cluster clusterID arrived at
// now (Cluster.LastAudit). It writes at most once per auditNoteStep per
// cluster; safe for concurrent use.
func (s *Store) NoteAudit(ctx context.Context, clusterID string, now time.Time) error {
	if prev, ok := s.audits.Load(clusterID); ok && now.Sub(prev.(time.Time)) < auditNoteStep {
		return nil
	}
	s.audits.Store(clusterID, now)
	if _, err := s.w.ExecContext(ctx, s.d.q("UPDATE clusters SET last_audit = ? WHERE id = ? AND last_audit < ?"),
		ts(now), clusterID, ts(now)); err != nil {
		s.audits.Delete(clusterID)
		return fmt.Errorf("note audit batch: %w", err)
	}
	return nil
}

func connectivity(last, now time.Time) string {
	switch {
	case last.IsZero():
		return Pending
	case now.Sub(last) <= HeartbeatWindow:
		return Connected
	}
	return Offline
}

// resolveCluster turns a cluster id or name into its id; ok is false when
// no cluster matches.
func (s *Store) resolveCluster(ctx context.Context, idOrName string) (id string, ok bool, err error) {
	err = s.r.QueryRowContext(ctx, s.d.q("SELECT id FROM clusters WHERE id = ? OR name = ? ORDER BY id LIMIT 1"),
		idOrName, idOrName).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("find cluster: %w", err)
	}
	return id, true, nil
}

// clip shortens a caller's value before it is quoted in an error.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
