package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// Incident chains the alerts of one entity that came close together in
// time: one attack story, e.g. web shell -> download -> drift -> mining in
// one container.
type Incident struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	// Entity names what the alerts are about (a container id,
	// namespace/pod, workload, node, user name or cluster id); EntityKind
	// says which.
	Entity     string         `json:"entity"`
	EntityKind string         `json:"entity_kind"`
	ClusterID  string         `json:"cluster_id"`
	Severity   event.Severity `json:"severity"`
	FirstSeen  time.Time      `json:"first_seen"`
	LastSeen   time.Time      `json:"last_seen"`
	AlertCount int            `json:"alert_count"`
	// Alerts is the timeline, oldest first (at most MaxTimeline); only
	// GetIncident fills it.
	Alerts []Alert `json:"alerts,omitempty"`
}

// MaxTimeline bounds the alerts GetIncident returns.
const MaxTimeline = 1000

const incidentSelect = `SELECT id, title, entity, entity_kind, cluster_id, severity, first_seen, last_seen, alert_count FROM incidents`

func scanIncident(r scanner) (Incident, error) {
	var in Incident
	var rank int
	var first, last, count int64
	if err := r.Scan(&in.ID, &in.Title, &in.Entity, &in.EntityKind, &in.ClusterID, &rank, &first, &last, &count); err != nil {
		return Incident{}, err
	}
	in.Entity = entityName(in.Entity)
	in.Severity = severityOf(rank)
	in.FirstSeen, in.LastSeen = fromTS(first), fromTS(last)
	in.AlertCount = int(count)
	return in, nil
}

// ListIncidents returns the most recently active incidents, of one cluster
// (id or name) or of all when cluster is "". limit defaults to 50 and is
// at most 1000.
func (s *Store) ListIncidents(ctx context.Context, cluster string, limit int) ([]Incident, error) {
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	q := incidentSelect
	var args []any
	if cluster != "" {
		id, ok, err := s.resolveCluster(ctx, cluster)
		if err != nil {
			return nil, fmt.Errorf("list incidents: %w", err)
		}
		if !ok {
			return []Incident{}, nil
		}
		q += " WHERE cluster_id = ?"
		args = append(args, id)
	}
	q += " ORDER BY last_seen DESC, id DESC LIMIT ?"
	args = append(args, limit)
	rows, err := s.r.QueryContext(ctx, s.d.q(q), args...)
	if err != nil {
		return nil, fmt.Errorf("list incidents: %w", err)
	}
	defer rows.Close()
	out := []Incident{}
	for rows.Next() {
		in, err := scanIncident(rows)
		if err != nil {
			return nil, fmt.Errorf("list incidents: %w", err)
		}
		out = append(out, in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list incidents: %w", err)
	}
	return out, nil
}

// IncidentSummary returns an incident without its timeline (Alerts nil).
func (s *Store) IncidentSummary(ctx context.Context, id string) (Incident, error) {
	in, err := scanIncident(s.r.QueryRowContext(ctx, s.d.q(incidentSelect+" WHERE id = ?"), id))
	if errors.Is(err, sql.ErrNoRows) {
		return Incident{}, fmt.Errorf("incident %q: %w", clip(id), ErrNotFound)
	}
	if err != nil {
		return Incident{}, fmt.Errorf("get incident: %w", err)
	}
	return in, nil
}

// GetIncident returns an incident with its timeline.
func (s *Store) GetIncident(ctx context.Context, id string) (Incident, error) {
	in, err := s.IncidentSummary(ctx, id)
	if err != nil {
		return Incident{}, err
	}
	rows, err := s.r.QueryContext(ctx, s.d.q(alertSelect+" WHERE incident_id = ? ORDER BY first_seen, id LIMIT ?"), id, MaxTimeline)
	if err != nil {
		return Incident{}, fmt.Errorf("get incident: %w", err)
	}
	defer rows.Close()
	in.Alerts = []Alert{}
	for rows.Next() {
		a, _, err := scanAlert(rows)
		if err != nil {
			return Incident{}, fmt.Errorf("get incident: %w", err)
		}
		in.Alerts = append(in.Alerts, a)
	}
	if err := rows.Err(); err != nil {
		return Incident{}, fmt.Errorf("get incident: %w", err)
	}
	return in, nil
}
