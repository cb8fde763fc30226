package admission

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Defaults of CertsConfig.
const (
	// DefaultCAValidity is long: rotating the CA means changing the
	// caBundle every API server trusts, which Certs does safely but which
	// is still the riskier of the two rotations.
	DefaultCAValidity = 10 * 365 * 24 * time.Hour
	// DefaultCertValidity bounds how long a leaked serving key is useful.
	DefaultCertValidity = 365 * 24 * time.Hour
	// DefaultCAOverlap is how long a new CA sits in the bundle before the
	// serving certificate is signed by it. Registration pushes the new
	// bundle at once and API servers pick it up within seconds; the hour
	// covers a registration that had to be retried, at no cost against a
	// CA that still has a third of its life left.
	DefaultCAOverlap = time.Hour
	// DefaultCheckInterval is how often Run re-reads the Secret: one GET
	// per replica, and the longest another replica's rotation goes unseen.
	DefaultCheckInterval = time.Minute
)

// certBackdate is subtracted from NotBefore of every certificate made, so
// that a peer whose clock is a little behind does not reject it (client-go's
// self-signed certificates do the same).
const certBackdate = time.Hour

// Keys of the Secret besides corev1.TLSCertKey and corev1.TLSPrivateKeyKey.
const (
	caCertKey = "ca.crt" // the CA bundle, the signing CA first
	caKeyKey  = "ca.key" // the signing CA's key
)

// ManagedByLabel and ManagedByValue mark the objects Vigil creates and owns
// (the serving-certificate Secret, the ValidatingWebhookConfiguration).
const (
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "vigil"
)

// CertsConfig configures Certs.
type CertsConfig struct {
	// Client reads and writes the Secret; it needs get, create and update
	// on Secrets in Namespace.
	Client kubernetes.Interface
	// Namespace and SecretName name the Secret (type kubernetes.io/tls,
	// with ca.crt and ca.key besides tls.crt and tls.key) that holds the
	// CA and the serving certificate, so that replicas share them and a
	// restart reuses them.
	Namespace, SecretName string
	// DNSNames and IPAddresses are the serving certificate's SANs: in the
	// cluster the Service's names (svc, svc.ns, svc.ns.svc,
	// svc.ns.svc.cluster.local), out of it the webhook URL's host. At least
	// one is required. A certificate read from the Secret that does not
	// cover all of them is replaced (one that covers more is kept, so
	// replicas configured with fewer names do not fight).
	DNSNames    []string
	IPAddresses []net.IP
	// CAValidity and CertValidity are the lifetimes of the CA and of the
	// serving certificate (0: DefaultCAValidity, DefaultCertValidity).
	// Either is renewed once less than a third of its lifetime (NotBefore
	// to NotAfter) is left: the serving certificate is then re-issued; the
	// CA is rotated in two steps (see Certs).
	CAValidity, CertValidity time.Duration
	// CAOverlap is how long a new CA must have been in the bundle before
	// the serving certificate is re-signed by it (0: DefaultCAOverlap).
	CAOverlap time.Duration
	// CheckInterval is how often Run re-reads the Secret (0:
	// DefaultCheckInterval).
	CheckInterval time.Duration
	// OnRotate is called with the new CA bundle whenever it changes after
	// the first Sync: a CA was added or dropped, or the Secret was
	// regenerated or changed by another replica. It runs on the goroutine
	// of Sync (or Run) and should return quickly. nil ignores rotations.
	OnRotate func(caBundle []byte)
	// Now is the clock (nil: time.Now). Certificates are dated by it.
	Now func() time.Time
	// Log receives a line per certificate made or replaced, with the
	// reason; never key material. nil discards.
	Log *slog.Logger
}

// Certs keeps the webhook's serving certificate and its CA in a Secret and
// serves the current one. It is safe for concurrent use.
//
// A CA is rotated without a moment in which API servers and the webhook
// disagree: the new CA is first added to the bundle (ca.crt) while the
// serving certificate signed by the old one stays, and OnRotate hands the
// bundle of both to the registration; after CAOverlap the serving
// certificate is re-signed by the new CA, which the API servers trust by
// then; the old CA leaves the bundle when it expires. Only a Secret that
// cannot be used (no valid CA and key) is regenerated from scratch, which
// breaks admissions until the API servers have the new bundle.
//
// Replicas may share the Secret: it is created with Create (another
// replica's AlreadyExists wins) and updated with its resourceVersion (on a
// Conflict the other replica's content is re-read and used).
type Certs struct {
	cfg CertsConfig
	log *slog.Logger

	mu      sync.Mutex // serialises Sync
	current atomic.Pointer[loaded]
}

// loaded is what Certs serves between two Syncs.
type loaded struct {
	cert   *tls.Certificate
	bundle []byte
}

// NewCerts checks cfg and returns Certs with nothing loaded yet: call Sync
// (or Run) before serving with GetCertificate or reading CABundle.
func NewCerts(cfg CertsConfig) (*Certs, error) {
	switch {
	case cfg.Client == nil:
		return nil, errors.New("admission: CertsConfig.Client is nil")
	case cfg.Namespace == "" || cfg.SecretName == "":
		return nil, errors.New("admission: CertsConfig.Namespace and SecretName are required")
	case len(cfg.DNSNames) == 0 && len(cfg.IPAddresses) == 0:
		return nil, errors.New("admission: CertsConfig needs DNSNames or IPAddresses for the serving certificate")
	case cfg.CAValidity < 0 || cfg.CertValidity < 0 || cfg.CAOverlap < 0 || cfg.CheckInterval < 0:
		return nil, errors.New("admission: CertsConfig durations must not be negative")
	}
	if cfg.CAValidity == 0 {
		cfg.CAValidity = DefaultCAValidity
	}
	if cfg.CertValidity == 0 {
		cfg.CertValidity = DefaultCertValidity
	}
	if cfg.CAOverlap == 0 {
		cfg.CAOverlap = DefaultCAOverlap
	}
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = DefaultCheckInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("secret", cfg.Namespace+"/"+cfg.SecretName)
	return &Certs{cfg: cfg, log: log}, nil
}

// GetCertificate returns the current serving certificate, for
// tls.Config.GetCertificate. It fails until the first Sync has succeeded.
func (c *Certs) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	l := c.current.Load()
	if l == nil {
		return nil, errors.New("admission: no serving certificate loaded yet")
	}
	return l.cert, nil
}

// CABundle returns the PEM of every CA clients must trust for the current
// and the coming serving certificate (one CA, two during a rotation), for
// the webhook's caBundle; nil before the first Sync. The caller may keep
// and modify it.
func (c *Certs) CABundle() []byte {
	l := c.current.Load()
	if l == nil {
		return nil
	}
	return bytes.Clone(l.bundle)
}

// Run calls Sync now and then every CheckInterval (every 5 s while it
// fails; errors are logged), until ctx is done; it then returns nil.
func (c *Certs) Run(ctx context.Context) error {
	for {
		wait := c.cfg.CheckInterval
		if err := c.Sync(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			c.log.Warn("webhook serving certificate: sync failed", "err", err)
			wait = min(wait, 5*time.Second)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// Sync reads the Secret, creates it or renews what needs renewing (see
// Certs), writes it back, and serves the result. After a conflict with
// another replica it uses the other replica's certificates. An error
// leaves what was served before in place.
func (c *Certs) Sync(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	secrets := c.cfg.Client.CoreV1().Secrets(c.cfg.Namespace)
	for range 5 {
		now := c.cfg.Now()
		sec, err := secrets.Get(ctx, c.cfg.SecretName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			st, err := c.fresh(now)
			if err != nil {
				return err
			}
			sec = &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: c.cfg.SecretName, Namespace: c.cfg.Namespace, Labels: map[string]string{ManagedByLabel: ManagedByValue}},
				Type:       corev1.SecretTypeTLS,
			}
			sec.Data, err = st.encode()
			if err != nil {
				return err
			}
			if _, err := secrets.Create(ctx, sec, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
				continue // another replica was first: use theirs
			} else if err != nil {
				return fmt.Errorf("create secret %s/%s: %w", c.cfg.Namespace, c.cfg.SecretName, err)
			}
			c.log.Info("webhook serving certificate: created CA and certificate",
				"caNotAfter", st.cas[0].NotAfter, "certNotAfter", st.leaf.NotAfter)
			c.serve(st)
			return nil
		}
		if err != nil {
			return fmt.Errorf("read secret %s/%s: %w", c.cfg.Namespace, c.cfg.SecretName, err)
		}
		if sec.Type != corev1.SecretTypeTLS {
			return fmt.Errorf("secret %s/%s has type %s, want %s: delete it or name another", c.cfg.Namespace, c.cfg.SecretName, sec.Type, corev1.SecretTypeTLS)
		}
		st, changes, err := c.renew(sec.Data, now)
		if err != nil {
			return err
		}
		if len(changes) == 0 {
			c.serve(st)
			return nil
		}
		upd := sec.DeepCopy()
		if upd.Data, err = st.encode(); err != nil {
			return err
		}
		if upd.Labels == nil {
			upd.Labels = map[string]string{}
		}
		upd.Labels[ManagedByLabel] = ManagedByValue
		if _, err := secrets.Update(ctx, upd, metav1.UpdateOptions{}); apierrors.IsConflict(err) {
			c.log.Info("webhook serving certificate: another replica changed the secret; re-reading it")
			continue
		} else if err != nil {
			return fmt.Errorf("update secret %s/%s: %w", c.cfg.Namespace, c.cfg.SecretName, err)
		}
		for _, ch := range changes {
			level := slog.LevelInfo
			if strings.HasPrefix(ch, regenerated) {
				level = slog.LevelWarn
			}
			c.log.Log(ctx, level, "webhook serving certificate: "+ch, "caNotAfter", st.cas[0].NotAfter, "certNotAfter", st.leaf.NotAfter)
		}
		c.serve(st)
		return nil
	}
	return fmt.Errorf("secret %s/%s: gave up after 5 conflicting writes", c.cfg.Namespace, c.cfg.SecretName)
}

// serve makes st current and reports a changed bundle.
func (c *Certs) serve(st *certState) {
	cert := &tls.Certificate{Certificate: [][]byte{st.leaf.Raw}, PrivateKey: st.leafKey, Leaf: st.leaf}
	bundle := encodeCerts(st.cas)
	prev := c.current.Swap(&loaded{cert: cert, bundle: bundle})
	if prev != nil && !bytes.Equal(prev.bundle, bundle) && c.cfg.OnRotate != nil {
		c.cfg.OnRotate(bytes.Clone(bundle))
	}
}

// certState is the content of the Secret, decoded.
type certState struct {
	cas     []*x509.Certificate // the bundle; cas[0] signs
	caKey   crypto.Signer       // cas[0]'s key
	leaf    *x509.Certificate
	leafKey crypto.Signer
}

// fresh makes a new CA and a serving certificate signed by it.
func (c *Certs) fresh(now time.Time) (*certState, error) {
	ca, caKey, err := newCA(now, c.cfg.CAValidity)
	if err != nil {
		return nil, err
	}
	st := &certState{cas: []*x509.Certificate{ca}, caKey: caKey}
	return st, c.issue(st, now)
}

// issue replaces st's serving certificate by one signed by st.cas[0].
func (c *Certs) issue(st *certState, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate serving key: %w", err)
	}
	cn := "vigil-webhook"
	if len(c.cfg.DNSNames) > 0 {
		cn = c.cfg.DNSNames[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serialNumber(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-certBackdate),
		NotAfter:              now.Add(c.cfg.CertValidity),
		DNSNames:              c.cfg.DNSNames,
		IPAddresses:           c.cfg.IPAddresses,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, st.cas[0], key.Public(), st.caKey)
	if err != nil {
		return fmt.Errorf("create serving certificate: %w", err)
	}
	if st.leaf, err = x509.ParseCertificate(der); err != nil {
		return fmt.Errorf("parse serving certificate: %w", err)
	}
	st.leafKey = key
	return nil
}

func newCA(now time.Time, validity time.Duration) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serialNumber(),
		Subject:               pkix.Name{CommonName: fmt.Sprintf("vigil-webhook-ca@%d", now.Unix())},
		NotBefore:             now.Add(-certBackdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	return cert, key, nil
}

func serialNumber() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n
}

// renew decodes the Secret's data and returns what it should hold at now,
// with one line per change made (none: keep it as it is). A Secret whose CA
// cannot be used is regenerated from scratch.
func (c *Certs) renew(data map[string][]byte, now time.Time) (*certState, []string, error) {
	st, err := decodeCA(data, now)
	if err != nil {
		st, ferr := c.fresh(now)
		if ferr != nil {
			return nil, nil, ferr
		}
		return st, []string{regenerated + ": " + err.Error()}, nil
	}
	var changes []string

	// CAs other than the signing one stay until they expire: a replica
	// or the API server may still be using them.
	kept := st.cas[:1]
	for _, ca := range st.cas[1:] {
		if now.After(ca.NotAfter) {
			changes = append(changes, fmt.Sprintf("dropped CA %s from the bundle: expired at %s", ca.Subject.CommonName, ca.NotAfter.Format(time.RFC3339)))
			continue
		}
		kept = append(kept, ca)
	}
	st.cas = kept

	// The serving certificate, judged against the signing CA before it
	// is rotated below, so that a certificate renewed in the same pass is
	// signed by a CA the API servers already trust.
	switch reason := c.leafProblem(st, data, now); {
	case reason != "":
		if err := c.issue(st, now); err != nil {
			return nil, nil, err
		}
		changes = append(changes, "issued a new serving certificate: "+reason)
	case st.leaf.CheckSignatureFrom(st.cas[0]) != nil:
		// Signed by an older CA of the bundle: move to the signing CA
		// once the API servers have had time to learn it.
		if created := st.cas[0].NotBefore.Add(certBackdate); !now.Before(created.Add(c.cfg.CAOverlap)) {
			if err := c.issue(st, now); err != nil {
				return nil, nil, err
			}
			changes = append(changes, fmt.Sprintf("re-signed the serving certificate with CA %s, in the bundle since %s", st.cas[0].Subject.CommonName, created.Format(time.RFC3339)))
		}
	case renewalDue(st.leaf, now):
		if err := c.issue(st, now); err != nil {
			return nil, nil, err
		}
		changes = append(changes, "renewed the serving certificate: it expires at "+st.leaf.NotAfter.Format(time.RFC3339))
	}

	if old := st.cas[0]; renewalDue(old, now) {
		ca, key, err := newCA(now, c.cfg.CAValidity)
		if err != nil {
			return nil, nil, err
		}
		st.cas = append([]*x509.Certificate{ca}, st.cas...)
		st.caKey = key
		changes = append(changes, fmt.Sprintf("rotating the CA: %s expires at %s; the new CA %s is added to the bundle and signs the serving certificate after %s",
			old.Subject.CommonName, old.NotAfter.Format(time.RFC3339), ca.Subject.CommonName, c.cfg.CAOverlap))
	}
	return st, changes, nil
}

const regenerated = "regenerated CA and certificate (API servers reject the webhook until they have the new caBundle)"

// renewalDue says whether less than a third of cert's lifetime is left.
func renewalDue(cert *x509.Certificate, now time.Time) bool {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return now.After(cert.NotAfter.Add(-life / 3))
}

// decodeCA decodes and checks the bundle and the signing CA's key.
func decodeCA(data map[string][]byte, now time.Time) (*certState, error) {
	cas, err := parseCerts(data[caCertKey])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", caCertKey, err)
	}
	key, err := parseKey(data[caKeyKey])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", caKeyKey, err)
	}
	ca := cas[0]
	switch {
	case !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0:
		return nil, fmt.Errorf("%s: first certificate %s is not a CA", caCertKey, ca.Subject.CommonName)
	case !publicKeysEqual(ca.PublicKey, key.Public()):
		return nil, fmt.Errorf("%s does not match the first certificate of %s", caKeyKey, caCertKey)
	case now.After(ca.NotAfter):
		return nil, fmt.Errorf("CA %s expired at %s", ca.Subject.CommonName, ca.NotAfter.Format(time.RFC3339))
	case now.Before(ca.NotBefore):
		return nil, fmt.Errorf("CA %s is not valid before %s", ca.Subject.CommonName, ca.NotBefore.Format(time.RFC3339))
	}
	return &certState{cas: cas, caKey: key}, nil
}

// leafProblem decodes the serving certificate into st and says why it
// cannot be served ("" if it can).
func (c *Certs) leafProblem(st *certState, data map[string][]byte, now time.Time) string {
	certs, err := parseCerts(data[corev1.TLSCertKey])
	if err != nil {
		return corev1.TLSCertKey + ": " + err.Error()
	}
	key, err := parseKey(data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return corev1.TLSPrivateKeyKey + ": " + err.Error()
	}
	leaf := certs[0]
	if !publicKeysEqual(leaf.PublicKey, key.Public()) {
		return corev1.TLSPrivateKeyKey + " does not match " + corev1.TLSCertKey
	}
	if now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		return fmt.Sprintf("outside its validity %s to %s", leaf.NotBefore.Format(time.RFC3339), leaf.NotAfter.Format(time.RFC3339))
	}
	signed := false
	for _, ca := range st.cas {
		if !now.After(ca.NotAfter) && leaf.CheckSignatureFrom(ca) == nil {
			signed = true
			break
		}
	}
	if !signed {
		return "not signed by a valid CA of the bundle"
	}
	for _, name := range c.cfg.DNSNames {
		if leaf.VerifyHostname(name) != nil {
			return "does not cover DNS name " + name
		}
	}
	for _, ip := range c.cfg.IPAddresses {
		if !hasIP(leaf.IPAddresses, ip) {
			return "does not cover IP address " + ip.String()
		}
	}
	st.leaf, st.leafKey = leaf, key
	return ""
}

func hasIP(ips []net.IP, ip net.IP) bool {
	for _, x := range ips {
		if x.Equal(ip) {
			return true
		}
	}
	return false
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// parseCerts decodes one or more PEM certificates.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %q, want CERTIFICATE", block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	if len(strings.TrimSpace(string(data))) != 0 {
		return nil, errors.New("trailing data after the PEM certificates")
	}
	return certs, nil
}

// parseKey decodes a PEM private key (PKCS #8, or SEC 1 for EC keys).
func parseKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM private key")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q, want PRIVATE KEY", block.Type)
	}
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported private key type %T", key)
	}
	return signer, nil
}

func encodeCerts(certs []*x509.Certificate) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// encode returns the Secret's data for st.
func (st *certState) encode() (map[string][]byte, error) {
	caKey, err := encodeKey(st.caKey)
	if err != nil {
		return nil, err
	}
	leafKey, err := encodeKey(st.leafKey)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{
		corev1.TLSCertKey:       encodeCerts([]*x509.Certificate{st.leaf}),
		corev1.TLSPrivateKeyKey: leafKey,
		caCertKey:               encodeCerts(st.cas),
		caKeyKey:                caKey,
	}, nil
}
