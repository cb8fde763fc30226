package api

import (
	"net/http"
	"strings"

	"github.com/vigil-sec/vigil/internal/server/store"
)

func (s *Server) listClusters(w http.ResponseWriter, r *http.Request, _ store.Principal) error {
	cs, err := s.cfg.Store.ListClusters(r.Context(), s.cfg.Now())
	if err != nil {
		return err
	}
	if cs == nil {
		cs = []store.Cluster{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"clusters": cs})
	return nil
}

type createClusterRequest struct {
	Name string `json:"name"`
}

// createCluster makes a cluster and its join credential, returned once.
func (s *Server) createCluster(w http.ResponseWriter, r *http.Request, _ store.Principal) error {
	var req createClusterRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Name = strings.TrimSpace(req.Name); req.Name == "" {
		return errorf(http.StatusBadRequest, "name is required")
	}
	c, secret, err := s.cfg.Store.CreateCluster(r.Context(), req.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]any{"cluster": c, "credential": secret})
	return nil
}

type createTokenRequest struct {
	Name string     `json:"name"`
	Role store.Role `json:"role"`
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request, _ store.Principal) error {
	var req createTokenRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if strings.TrimSpace(req.Name) == "" {
		return errorf(http.StatusBadRequest, "name is required")
	}
	if req.Role != store.RoleAdmin && req.Role != store.RoleReader {
		return errorf(http.StatusBadRequest, "role %q: want admin or reader (cluster credentials come from POST /api/v1/clusters)", req.Role)
	}
	secret, err := s.cfg.Store.CreateToken(r.Context(), req.Name, req.Role)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]any{"name": req.Name, "role": req.Role, "token": secret})
	return nil
}

// listExports shows each export output's health: queued, sent, dropped,
// last error (secrets removed by the dispatcher).
func (s *Server) listExports(w http.ResponseWriter, _ *http.Request, _ store.Principal) error {
	var out any = []any{}
	if s.cfg.Exports != nil {
		out = s.cfg.Exports()
	}
	writeJSON(w, http.StatusOK, map[string]any{"exports": out})
	return nil
}
