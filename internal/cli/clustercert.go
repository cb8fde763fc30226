//go:build !node

package cli

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-sec/vigil/internal/server/api"
)

// clusterCertCmd mints a client certificate that stands for a cluster on
// a server started with --client-ca: for kube-apiserver's audit webhook
// kubeconfig (client-certificate / client-key), or any sensor or agent.
func clusterCertCmd() *cobra.Command {
	var caCert, caKey, out string
	var days int
	cmd := &cobra.Command{
		Use:   "cert NAME",
		Short: "Issue a client certificate for a cluster, signed by your CA (for servers run with --client-ca)",
		Long: `Write NAME.crt and NAME.key (0600) to --out: a client certificate with
CommonName NAME and Organization vigil-cluster, signed by the CA given. A
server started with --client-ca pointing at that CA's certificate takes a
request that presents it as the cluster NAME's (ingest and the audit
webhook only). Nothing is sent anywhere.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if caCert == "" || caKey == "" {
				return errors.New("--ca-cert and --ca-key are required")
			}
			ca, key, err := loadCA(caCert, caKey)
			if err != nil {
				return err
			}
			certPEM, keyPEM, err := issueClusterCert(args[0], ca, key, time.Duration(days)*24*time.Hour)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(out, 0o700); err != nil {
				return err
			}
			crt, k := filepath.Join(out, args[0]+".crt"), filepath.Join(out, args[0]+".key")
			if err := os.WriteFile(k, keyPEM, 0o600); err != nil {
				return err
			}
			if err := os.WriteFile(crt, certPEM, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %s (valid %d days)\n", crt, k, days)
			return nil
		},
	}
	cmd.Flags().StringVar(&caCert, "ca-cert", "", "the CA's certificate (PEM)")
	cmd.Flags().StringVar(&caKey, "ca-key", "", "the CA's private key (PEM: PKCS#8, EC or RSA)")
	cmd.Flags().StringVar(&out, "out", ".", "directory to write NAME.crt and NAME.key to")
	cmd.Flags().IntVar(&days, "days", 365, "validity in days")
	return cmd
}

func loadCA(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	cb, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	block, _ := pem.Decode(cb)
	if block == nil {
		return nil, nil, fmt.Errorf("%s: no PEM certificate", certPath)
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", certPath, err)
	}
	if !ca.IsCA {
		return nil, nil, fmt.Errorf("%s is not a CA certificate", certPath)
	}
	kb, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	block, _ = pem.Decode(kb)
	if block == nil {
		return nil, nil, fmt.Errorf("%s: no PEM key", keyPath) // never print the key itself
	}
	var key any
	switch block.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: not a private key we can read", keyPath)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("%s: not a signing key", keyPath)
	}
	return ca, signer, nil
}

// issueClusterCert makes a P-256 client certificate for cluster name.
func issueClusterCert(name string, ca *x509.Certificate, caKey crypto.Signer, valid time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name, Organization: []string{api.ClusterCertOrg}},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(valid),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}
