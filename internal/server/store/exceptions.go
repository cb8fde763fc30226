package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/detect"
)

// CreateException stores an engine exception for one cluster (id or name),
// or for every cluster when clusterID is "". It needs an id (made when
// empty) and a reason; an id in use gives ErrConflict, an unknown cluster
// ErrNotFound. Sensors and agents pull the exceptions of their cluster with
// ListExceptions.
func (s *Store) CreateException(ctx context.Context, clusterID string, x detect.Exception, actor string) error {
	if x.ID == "" {
		x.ID = "x-" + newID()
	}
	if len(x.ID) > 128 {
		return fmt.Errorf("create exception: %w: id longer than 128 bytes", ErrInvalid)
	}
	if strings.TrimSpace(x.Reason) == "" {
		return fmt.Errorf("create exception %s: %w: a reason is required", x.ID, ErrInvalid)
	}
	if clusterID != "" {
		id, ok, err := s.resolveCluster(ctx, clusterID)
		if err != nil {
			return fmt.Errorf("create exception: %w", err)
		}
		if !ok {
			return fmt.Errorf("create exception: cluster %q: %w", clip(clusterID), ErrNotFound)
		}
		clusterID = id
	}
	doc, err := json.Marshal(x)
	if err != nil {
		return fmt.Errorf("create exception: %w", err)
	}
	res, err := s.w.ExecContext(ctx, s.d.q(`INSERT INTO exceptions (id, cluster_id, expires, created_by, created_at, doc)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`), x.ID, clusterID, ts(x.Expires), actor, ts(time.Now()), string(doc))
	if err != nil {
		return fmt.Errorf("create exception: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("create exception %s: %w", x.ID, ErrConflict)
	}
	return nil
}

// ListExceptions returns the exceptions of one cluster (by id) plus the
// global ones, or only the global ones when clusterID is "". Expired
// exceptions are left out.
func (s *Store) ListExceptions(ctx context.Context, clusterID string) ([]detect.Exception, error) {
	rows, err := s.r.QueryContext(ctx, s.d.q(`SELECT doc FROM exceptions
		WHERE (cluster_id = '' OR cluster_id = ?) AND (expires = 0 OR expires > ?) ORDER BY created_at, id`),
		clusterID, ts(time.Now()))
	if err != nil {
		return nil, fmt.Errorf("list exceptions: %w", err)
	}
	defer rows.Close()
	out := []detect.Exception{}
	for rows.Next() {
		var doc string
		if err := rows.Scan(&doc); err != nil {
			return nil, fmt.Errorf("list exceptions: %w", err)
		}
		var x detect.Exception
		if err := json.Unmarshal([]byte(doc), &x); err != nil {
			return nil, fmt.Errorf("list exceptions: stored document: %w", err)
		}
		out = append(out, x)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list exceptions: %w", err)
	}
	return out, nil
}

// DeleteException removes an exception; ErrNotFound when there is none
// with that id.
func (s *Store) DeleteException(ctx context.Context, id string) error {
	res, err := s.w.ExecContext(ctx, s.d.q("DELETE FROM exceptions WHERE id = ?"), id)
	if err != nil {
		return fmt.Errorf("delete exception: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("exception %q: %w", clip(id), ErrNotFound)
	}
	return nil
}

// Suppression scopes: what an exception made from an alert covers.
const (
	ScopeWorkload  = "workload" // the default
	ScopeNamespace = "namespace"
	ScopeImage     = "image"
	ScopeProcess   = "process" // the executable, in that workload
	ScopeCluster   = "cluster"
)

// SuppressScopes lists the scopes in the order a user is offered them.
var SuppressScopes = []string{ScopeWorkload, ScopeNamespace, ScopeImage, ScopeProcess, ScopeCluster}

// ExceptionFor makes the exception that suppresses alerts like a ("don't
// alert on this again for this workload"): its rule, within scope. The
// caller sets the id, reason and expiry. An alert that names nothing of
// the scope gives ErrInvalid.
func ExceptionFor(a Alert, scope string) (detect.Exception, error) {
	x := detect.Exception{Rules: []string{a.Rule}}
	missing := func(what string) error {
		return fmt.Errorf("%w: the alert names no %s", ErrInvalid, what)
	}
	switch scope {
	case "", ScopeWorkload:
		switch {
		case a.Workload != "":
			x.Workload = a.Workload
		case a.Namespace != "" && a.Pod != "":
			x.Namespace = a.Namespace
		case a.Image != "":
			x.Image = a.Image
		default:
			return x, fmt.Errorf("%w: the alert names no workload; use scope namespace, image, process or cluster", ErrInvalid)
		}
	case ScopeNamespace:
		if a.Namespace == "" {
			return x, missing("namespace")
		}
		x.Namespace = a.Namespace
	case ScopeImage:
		if a.Image == "" {
			return x, missing("image")
		}
		x.Image = a.Image
	case ScopeProcess:
		if a.Process == nil || a.Process.Exe == "" {
			return x, missing("process")
		}
		x.ProcessPath = a.Process.Exe
		x.Workload = a.Workload
	case ScopeCluster:
		x.Cluster = a.Cluster
		if x.Cluster == "" {
			x.Cluster = "*"
		}
	default:
		return x, fmt.Errorf("%w: scope %q (want workload, namespace, image, process or cluster)", ErrInvalid, clip(scope))
	}
	return x, nil
}
