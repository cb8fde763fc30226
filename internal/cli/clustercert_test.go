//go:build !node

package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCA makes a CA and writes its certificate and PKCS#8 key to dir.
func writeCA(t *testing.T, dir, name string) (*x509.Certificate, *ecdsa.PrivateKey, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	crt, k := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	os.WriteFile(crt, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(k, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	return ca, key, crt, k
}

// writeServerCert issues a serving certificate for 127.0.0.1 from the CA
// and writes it and its key to dir.
func writeServerCert(t *testing.T, dir string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (certFile, keyFile string) {
	t.Helper()
	skey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	stmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "vigil"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	sder, err := x509.CreateCertificate(rand.Reader, stmpl, ca, &skey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	skder, _ := x509.MarshalPKCS8PrivateKey(skey)
	certFile, keyFile = filepath.Join(dir, "srv.crt"), filepath.Join(dir, "srv.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: sder}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: skder}), 0o600)
	return certFile, keyFile
}

// TestClusterClientCertificate: a server started with --client-ca takes a
// client certificate from `vigil cluster cert` as its cluster's (the audit
// webhook, ingest), and nothing else: not for reading alerts, not with
// another Organization, not from another CA.
func TestClusterClientCertificate(t *testing.T) {
	dir := t.TempDir()
	ca, caKey, caCrt, caKeyFile := writeCA(t, dir, "ca")

	srvCrt, srvKey := writeServerCert(t, dir, ca, caKey)

	out, err := run(t, "cluster", "cert", "prod", "--ca-cert", caCrt, "--ca-key", caKeyFile, "--out", dir)
	if err != nil || !strings.Contains(out, "prod.crt") {
		t.Fatalf("cluster cert: %v %s", err, out)
	}
	if fi, err := os.Stat(filepath.Join(dir, "prod.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("prod.key: %v %v", err, fi)
	}
	// A certificate of the same CA for "prod" without Organization
	// vigil-cluster (say, a Kubernetes client certificate).
	mkey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mtmpl := &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "prod", Organization: []string{"system:masters"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	mder, err := x509.CreateCertificate(rand.Reader, mtmpl, ca, &mkey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	mkder, _ := x509.MarshalPKCS8PrivateKey(mkey)
	os.WriteFile(filepath.Join(dir, "masters.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: mder}), 0o644)
	os.WriteFile(filepath.Join(dir, "masters.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: mkder}), 0o600)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := startServer(ctx, serverFlags{addr: "127.0.0.1:0", db: "sqlite://" + filepath.Join(dir, "v.db"), data: dir,
		tlsCert: srvCrt, tlsKey: srvKey, clientCA: caCrt}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); srv.wait() }()
	if _, _, err := srv.store.CreateCluster(ctx, "prod"); err != nil {
		t.Fatal(err)
	}

	roots := x509.NewCertPool()
	roots.AddCert(ca)
	client := func(certFile, keyFile string) *http.Client {
		cfg := &tls.Config{RootCAs: roots}
		if certFile != "" {
			c, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{c}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
	}
	post := func(c *http.Client, path, body string) (int, string) {
		t.Helper()
		resp, err := c.Post(srv.url+path, "application/json", strings.NewReader(body))
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	events := `{"kind":"EventList","items":[{"auditID":"c1","stage":"ResponseComplete","verb":"create","user":{"username":"alice"},
		"objectRef":{"resource":"clusterrolebindings","name":"x"},"responseStatus":{"code":201},
		"requestObject":{"kind":"ClusterRoleBinding","roleRef":{"kind":"ClusterRole","name":"cluster-admin"}}}]}`

	prod := client(filepath.Join(dir, "prod.crt"), filepath.Join(dir, "prod.key"))
	if code, body := post(prod, "/api/v1/audit", events); code != http.StatusOK || !strings.Contains(body, `"alerts":1`) {
		t.Fatalf("audit with the cluster's certificate: %d %s", code, body)
	}
	resp, err := prod.Get(srv.url + "/api/v1/alerts")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a cluster certificate read alerts: %s", resp.Status)
	}
	if code, body := post(client("", ""), "/api/v1/audit", events); code != http.StatusUnauthorized {
		t.Fatalf("no certificate, no token: %d %s", code, body)
	}
	if code, _ := post(client(filepath.Join(dir, "masters.crt"), filepath.Join(dir, "masters.key")), "/api/v1/audit", events); code != http.StatusUnauthorized {
		t.Fatalf("a certificate without O=vigil-cluster: %d", code)
	}
	// Another CA's certificate fails the handshake or is refused.
	_, _, otherCrt, otherKeyFile := writeCA(t, t.TempDir(), "other")
	if out, err := run(t, "cluster", "cert", "prod", "--ca-cert", otherCrt, "--ca-key", otherKeyFile, "--out", filepath.Join(dir, "x")); err != nil {
		t.Fatalf("cluster cert with another CA: %v %s", err, out)
	}
	if code, _ := post(client(filepath.Join(dir, "x", "prod.crt"), filepath.Join(dir, "x", "prod.key")), "/api/v1/audit", events); code == http.StatusOK {
		t.Fatal("a certificate of another CA was taken")
	}
	// A certificate of the right CA for an unknown cluster is refused.
	if out, err := run(t, "cluster", "cert", "staging", "--ca-cert", caCrt, "--ca-key", caKeyFile, "--out", dir); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if code, _ := post(client(filepath.Join(dir, "staging.crt"), filepath.Join(dir, "staging.key")), "/api/v1/audit", events); code != http.StatusUnauthorized {
		t.Fatalf("a certificate for an unknown cluster: %d", code)
	}
}
