package api

import (
	"net/http"
	"slices"

	"github.com/vigil-sec/vigil/internal/server/store"
)

// ClusterCertOrg is the Organization a client certificate must carry to
// stand for a cluster; its CommonName is the cluster's name. Requiring it
// keeps other certificates of a shared CA (a Kubernetes CA's, say) from
// being taken for a cluster.
const ClusterCertOrg = "vigil-cluster"

// certPrincipal is the cluster a verified client certificate stands for
// (the server asks for certificates only when started with a client CA).
// ok is false when the request carries none, or one that names no known
// cluster.
func (s *Server) certPrincipal(r *http.Request) (p store.Principal, ok bool) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return p, false
	}
	cert := r.TLS.VerifiedChains[0][0]
	if !slices.Contains(cert.Subject.Organization, ClusterCertOrg) || cert.Subject.CommonName == "" {
		return p, false
	}
	c, err := s.cfg.Store.GetCluster(r.Context(), cert.Subject.CommonName, s.cfg.Now())
	if err != nil {
		return p, false
	}
	return store.Principal{ID: "cert:" + cert.SerialNumber.String(), Name: "certificate " + cert.Subject.CommonName,
		Role: store.RoleCluster, ClusterID: c.ID}, true
}
