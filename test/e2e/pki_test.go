package e2e

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net"

	"github.com/vigil-sec/vigil/test/e2e/node"
)

// serverPKI makes a CA and a serving certificate for ip, signed by it: the
// Vigil server serves HTTPS as in production (kube-apiserver sends its
// audit webhook's bearer token over TLS only), and the sensor, agent, CLI
// and kube-apiserver trust that CA.
func serverPKI(ip string) (caPEM, certPEM, keyPEM []byte, err error) {
	return node.IssuePKI("vigil-e2e-server-ca", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "vigil-server"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP(ip)},
	})
}
