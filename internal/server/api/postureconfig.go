package api

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/posture"
	"github.com/vigil-sec/vigil/internal/server/store"
)

// Sources of an effective posture configuration.
const (
	postureSourceCluster = "cluster" // the cluster's own document
	postureSourceFleet   = "fleet"   // the fleet-wide default document
	postureSourceBuiltin = "builtin" // nothing stored: posture.DefaultConfig
)

// postureConfigResponse is the answer of GET, PUT and DELETE
// /api/v1/posture/config: the effective configuration of a cluster (or of
// the fleet, Cluster ""), parsed and as stored.
type postureConfigResponse struct {
	Cluster string          `json:"cluster"`
	Source  string          `json:"source"`
	Config  *posture.Config `json:"config"`
	// Document is the stored text, exactly as the admin sent it; absent
	// for builtin. An agent parses it with posture.ParseConfig (an empty
	// document gives the built-in defaults).
	Document  *string   `json:"document,omitempty"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	UpdatedBy string    `json:"updated_by,omitempty"`
}

// postureCluster resolves the cluster= parameter for p: "" for the fleet
// (admin and reader without the parameter), else the cluster's id and
// name. A cluster credential always gets its own cluster; naming another
// is 403 (whether or not it exists).
func (s *Server) postureCluster(r *http.Request, p store.Principal) (id, name string, err error) {
	q := r.URL.Query().Get("cluster")
	if p.Role == store.RoleCluster {
		c, err := s.cfg.Store.GetCluster(r.Context(), p.ClusterID, s.cfg.Now())
		if err != nil {
			return "", "", err
		}
		if q != "" && q != c.ID && q != c.Name {
			return "", "", errorf(http.StatusForbidden, "a cluster credential reads only its own cluster's posture configuration")
		}
		return c.ID, c.Name, nil
	}
	if q == "" {
		return "", "", nil
	}
	c, err := s.cfg.Store.GetCluster(r.Context(), q, s.cfg.Now())
	if err != nil {
		return "", "", err
	}
	return c.ID, c.Name, nil
}

// getPostureConfig answers the effective configuration, or 304 when the
// caller's If-None-Match holds its ETag: an agent polls this cheaply.
func (s *Server) getPostureConfig(w http.ResponseWriter, r *http.Request, p store.Principal) error {
	id, name, err := s.postureCluster(r, p)
	if err != nil {
		return err
	}
	return s.writePostureConfig(w, r, id, name, true)
}

// putPostureConfig stores a YAML or JSON document for the fleet or one
// cluster after posture.ParseConfig accepted it.
func (s *Server) putPostureConfig(w http.ResponseWriter, r *http.Request, p store.Principal) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		switch {
		case err != nil:
			return errorf(http.StatusUnsupportedMediaType, "Content-Type %q: want application/yaml, text/yaml or application/json", clipMsg(ct))
		case mt == "application/yaml", mt == "text/yaml", mt == "application/x-yaml", mt == "text/x-yaml", mt == "application/json":
		default:
			return errorf(http.StatusUnsupportedMediaType, "Content-Type %q: want application/yaml, text/yaml or application/json", clipMsg(ct))
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, store.MaxPostureConfigBytes))
	if err != nil {
		return err // a *http.MaxBytesError is 413
	}
	if strings.TrimSpace(string(body)) == "" {
		return errorf(http.StatusBadRequest, "empty request body: want a posture configuration document (YAML or JSON); DELETE goes back to the defaults")
	}
	if _, err := posture.ParseConfig(body); err != nil {
		return errorf(http.StatusBadRequest, "invalid posture configuration: %s", clipMsg(err.Error()))
	}
	id, name, err := s.postureCluster(r, p)
	if err != nil {
		return err
	}
	if _, err := s.cfg.Store.PutPostureConfig(r.Context(), id, string(body), p.Name, s.cfg.Now()); err != nil {
		return err
	}
	s.cfg.Log.Info("posture config set", "cluster", name, "by", p.Name, "bytes", len(body))
	return s.writePostureConfig(w, r, id, name, false)
}

// deletePostureConfig removes the fleet's or a cluster's document; the
// next level applies. Deleting what is not there is not an error.
func (s *Server) deletePostureConfig(w http.ResponseWriter, r *http.Request, p store.Principal) error {
	id, name, err := s.postureCluster(r, p)
	if err != nil {
		return err
	}
	if err := s.cfg.Store.DeletePostureConfig(r.Context(), id); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	s.cfg.Log.Info("posture config reset", "cluster", name, "by", p.Name)
	return s.writePostureConfig(w, r, id, name, false)
}

// writePostureConfig answers the effective configuration of cluster id
// ("" the fleet) with its ETag; with conditional, a matching If-None-Match
// gets 304 and no body.
func (s *Server) writePostureConfig(w http.ResponseWriter, r *http.Request, id, name string, conditional bool) error {
	resp := postureConfigResponse{Cluster: name, Source: postureSourceBuiltin}
	doc, err := s.cfg.Store.EffectivePostureConfig(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return err
	default:
		resp.Source = postureSourceFleet
		if doc.ClusterID != "" {
			resp.Source = postureSourceCluster
		}
		resp.Document, resp.UpdatedAt, resp.UpdatedBy = &doc.Body, doc.UpdatedAt, doc.UpdatedBy
	}
	etag := postureETag(resp.Source, doc.Body)
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "private, no-cache")
	if conditional && etagMatch(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	if resp.Document == nil {
		resp.Config = posture.DefaultConfig()
	} else if resp.Config, err = posture.ParseConfig([]byte(*resp.Document)); err != nil {
		// Stored documents passed ParseConfig; one that no longer does
		// (a newer Vigil is stricter) must be fixed by an admin, and an
		// agent keeps the configuration it has.
		return errorf(http.StatusConflict, "the stored posture configuration (%s) no longer parses: %s; PUT a corrected one",
			resp.Source, clipMsg(err.Error()))
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// postureETag is a strong validator of the effective document and where it
// came from.
func postureETag(source, body string) string {
	h := sha256.New()
	h.Write([]byte(source))
	h.Write([]byte{0})
	h.Write([]byte(body))
	return `"` + hex.EncodeToString(h.Sum(nil)[:16]) + `"`
}

// etagMatch applies If-None-Match's weak comparison: "*" or any listed tag
// equal to etag once W/ is removed.
func etagMatch(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

// clipMsg bounds text quoted back to the caller.
func clipMsg(s string) string {
	if len(s) > 1000 {
		return s[:1000] + "..."
	}
	return s
}
