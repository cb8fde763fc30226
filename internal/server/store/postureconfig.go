package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxPostureConfigBytes bounds a stored posture configuration document.
const MaxPostureConfigBytes = 1 << 20

// PostureConfig is a workload-protection configuration document as an
// admin stored it, for one cluster or, with ClusterID "", for the fleet.
// The store keeps Body as text and does not parse it: the API validates it
// with posture.ParseConfig before PutPostureConfig.
type PostureConfig struct {
	ClusterID string    `json:"cluster_id"`
	Body      string    `json:"body"`
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by"`
}

// GetPostureConfig returns the document stored for exactly clusterID (an
// id; "" is the fleet default); ErrNotFound when there is none.
func (s *Store) GetPostureConfig(ctx context.Context, clusterID string) (PostureConfig, error) {
	return s.postureConfig(ctx, "SELECT cluster_id, body, updated_at, updated_by FROM posture_configs WHERE cluster_id = ?", clusterID)
}

// EffectivePostureConfig returns the document that applies to clusterID
// (an id): its own when set, else the fleet default (ClusterID ""). With
// clusterID "" it is the fleet default. ErrNotFound when neither is
// stored, i.e. Vigil's built-in defaults apply. One query, so a
// concurrent Put or Delete is seen entirely or not at all.
func (s *Store) EffectivePostureConfig(ctx context.Context, clusterID string) (PostureConfig, error) {
	// '' sorts before any id: the cluster's own row comes first.
	return s.postureConfig(ctx, `SELECT cluster_id, body, updated_at, updated_by FROM posture_configs
		WHERE cluster_id IN ('', ?) ORDER BY cluster_id DESC LIMIT 1`, clusterID)
}

func (s *Store) postureConfig(ctx context.Context, query, clusterID string) (PostureConfig, error) {
	var c PostureConfig
	var at int64
	err := s.r.QueryRowContext(ctx, s.d.q(query), clusterID).Scan(&c.ClusterID, &c.Body, &at, &c.UpdatedBy)
	if errors.Is(err, sql.ErrNoRows) {
		return PostureConfig{}, fmt.Errorf("posture config %q: %w", clip(clusterID), ErrNotFound)
	}
	if err != nil {
		return PostureConfig{}, fmt.Errorf("get posture config: %w", err)
	}
	c.UpdatedAt = fromTS(at)
	return c, nil
}

// PutPostureConfig stores (replaces) the document of a cluster (id or
// name) or, with clusterID "", the fleet default, recorded as written by
// actor at now. The body must be UTF-8 text without NUL bytes, not blank,
// and at most MaxPostureConfigBytes (else ErrInvalid); an unknown cluster
// gives ErrNotFound. It returns what was stored, keyed by the cluster's id.
func (s *Store) PutPostureConfig(ctx context.Context, clusterID, body, actor string, now time.Time) (PostureConfig, error) {
	switch {
	case len(body) > MaxPostureConfigBytes:
		return PostureConfig{}, fmt.Errorf("put posture config: %w: document larger than %d bytes", ErrInvalid, MaxPostureConfigBytes)
	case strings.TrimSpace(body) == "":
		return PostureConfig{}, fmt.Errorf("put posture config: %w: empty document", ErrInvalid)
	case !utf8.ValidString(body) || strings.IndexByte(body, 0) >= 0:
		// PostgreSQL's TEXT takes neither; refuse both on SQLite too.
		return PostureConfig{}, fmt.Errorf("put posture config: %w: the document must be UTF-8 text without NUL bytes", ErrInvalid)
	}
	if clusterID != "" {
		id, ok, err := s.resolveCluster(ctx, clusterID)
		if err != nil {
			return PostureConfig{}, fmt.Errorf("put posture config: %w", err)
		}
		if !ok {
			return PostureConfig{}, fmt.Errorf("put posture config: cluster %q: %w", clip(clusterID), ErrNotFound)
		}
		clusterID = id
	}
	c := PostureConfig{ClusterID: clusterID, Body: body, UpdatedAt: fromTS(ts(now)), UpdatedBy: actor}
	_, err := s.w.ExecContext(ctx, s.d.q(`INSERT INTO posture_configs (cluster_id, body, updated_at, updated_by) VALUES (?, ?, ?, ?)
		ON CONFLICT (cluster_id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at, updated_by = excluded.updated_by`),
		c.ClusterID, c.Body, ts(now), c.UpdatedBy)
	if err != nil {
		return PostureConfig{}, fmt.Errorf("put posture config: %w", err)
	}
	return c, nil
}

// DeletePostureConfig removes the document of a cluster (id or name) or,
// with clusterID "", the fleet default, so that the next level applies
// (fleet default, then built-in defaults). ErrNotFound when the cluster
// is unknown or nothing was stored for it.
func (s *Store) DeletePostureConfig(ctx context.Context, clusterID string) error {
	if clusterID != "" {
		id, ok, err := s.resolveCluster(ctx, clusterID)
		if err != nil {
			return fmt.Errorf("delete posture config: %w", err)
		}
		if !ok {
			return fmt.Errorf("delete posture config: cluster %q: %w", clip(clusterID), ErrNotFound)
		}
		clusterID = id
	}
	res, err := s.w.ExecContext(ctx, s.d.q("DELETE FROM posture_configs WHERE cluster_id = ?"), clusterID)
	if err != nil {
		return fmt.Errorf("delete posture config: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("posture config %q: %w", clip(clusterID), ErrNotFound)
	}
	return nil
}
