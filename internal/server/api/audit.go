package api

import (
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/vigil-sec/vigil/internal/audit"
	"github.com/vigil-sec/vigil/internal/server/controlplane"
	"github.com/vigil-sec/vigil/internal/server/store"
)

// AuditHandler runs a cluster's audit batches through the control-plane
// rules; *controlplane.Detector implements it.
type AuditHandler interface {
	Handle(ctx context.Context, clusterID, clusterName string, body []byte) (controlplane.Result, error)
}

// audit receives kube-apiserver's audit webhook (an EventList per batch;
// a single Event or a JSON array too), authenticated with the cluster's
// credential as the webhook kubeconfig's bearer token. It answers after
// the alerts the batch raised are stored; malformed or incomplete events
// are counted in the answer and skipped, the rest of the batch is used.
func (s *Server) audit(w http.ResponseWriter, r *http.Request, p store.Principal) error {
	if s.cfg.Audit == nil {
		return errorf(http.StatusNotFound, "this server runs no control-plane detection")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, audit.MaxBodyBytes))
	if err != nil {
		return err
	}
	c, err := s.cfg.Store.GetCluster(r.Context(), p.ClusterID, s.cfg.Now())
	if err != nil {
		return err
	}
	res, err := s.cfg.Audit.Handle(r.Context(), c.ID, c.Name, body)
	s.metrics.audited(res)
	if errors.Is(err, audit.ErrNotAudit) {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	if err != nil {
		return err
	}
	// What `vigil verify` checks: audit events arrive. Not worth failing
	// an acknowledged batch over.
	if err := s.cfg.Store.NoteAudit(r.Context(), c.ID, s.cfg.Now()); err != nil {
		s.cfg.Log.Warn("audit batch", "cluster", c.Name, "err", err)
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
