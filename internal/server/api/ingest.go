package api

import (
	"net/http"

	"github.com/vigil-sec/vigil/internal/server/store"
	"github.com/vigil-sec/vigil/internal/ship"
)

// ingest stores a batch from a sensor or agent of the credential's own
// cluster. It answers only after the store committed the batch: a 2xx
// means durably accepted, and a retried batch (same batch_id) is a no-op.
func (s *Server) ingest(w http.ResponseWriter, r *http.Request, p store.Principal) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && ct != "application/json" {
		return errorf(http.StatusUnsupportedMediaType, "Content-Type %q: want application/json", ct)
	}
	b, err := ship.DecodeBatch(http.MaxBytesReader(w, r.Body, maxIngest+1))
	if err != nil {
		if isTooLarge(err) {
			return err
		}
		return errorf(http.StatusBadRequest, "%v", err)
	}
	res, err := s.cfg.Store.Ingest(r.Context(), p.ClusterID, b, s.cfg.Now())
	if err != nil {
		return err
	}
	s.metrics.ingested(res, b)
	if !res.Duplicate {
		for _, a := range b.Alerts {
			a.Cluster = p.Name
			s.cfg.Alerts(a)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"accepted": res})
	return nil
}
