package admission_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/vigil-sec/vigil/internal/admission"
)

// testClock is a clock the test moves.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock { return &testClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

const (
	testNS     = "vigil"
	testSecret = "vigil-webhook-tls"
	testHost   = "vigil-agent.vigil.svc"
)

var secretsGVR = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}

// bundleRecorder records OnRotate calls.
type bundleRecorder struct {
	mu      sync.Mutex
	bundles [][]byte
}

func (r *bundleRecorder) OnRotate(b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bundles = append(r.bundles, b)
}

func (r *bundleRecorder) take() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.bundles
	r.bundles = nil
	return b
}

func newCerts(t *testing.T, cs *fake.Clientset, clk *testClock, rec *bundleRecorder, mod ...func(*admission.CertsConfig)) *admission.Certs {
	t.Helper()
	cfg := admission.CertsConfig{
		Client: cs, Namespace: testNS, SecretName: testSecret,
		DNSNames:    []string{"vigil-agent", "vigil-agent.vigil", testHost, "vigil-agent.vigil.svc.cluster.local"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		Now:         clk.Now,
		Log:         testLogger(t),
	}
	if rec != nil {
		cfg.OnRotate = rec.OnRotate
	}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := admission.NewCerts(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustSync(t *testing.T, c *admission.Certs) {
	t.Helper()
	if err := c.Sync(context.Background()); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

// served returns the certificate c serves.
func served(t *testing.T, c *admission.Certs) *x509.Certificate {
	t.Helper()
	cert, err := c.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// verify checks that an API server trusting bundle accepts leaf for host
// at now.
func verify(leaf *x509.Certificate, bundle []byte, host string, now time.Time) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(bundle)
	_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: host, CurrentTime: now})
	return err
}

func bundleCerts(t *testing.T, bundle []byte) []*x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	for _, c := range bytes.SplitAfter(bundle, []byte("-----END CERTIFICATE-----\n")) {
		if len(bytes.TrimSpace(c)) == 0 {
			continue
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(c) {
			t.Fatalf("bad PEM in bundle: %q", c)
		}
		p, err := parsePEMCert(c)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, p)
	}
	return certs
}

func getSecret(t *testing.T, cs *fake.Clientset) *corev1.Secret {
	t.Helper()
	s, err := cs.CoreV1().Secrets(testNS).Get(context.Background(), testSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func writes(cs *fake.Clientset) (n int) {
	for _, a := range cs.Actions() {
		if a.GetVerb() == "create" || a.GetVerb() == "update" {
			n++
		}
	}
	return n
}

func TestCertsCreateThenReuse(t *testing.T) {
	cs, clk, rec := fake.NewClientset(), newTestClock(), &bundleRecorder{}
	a := newCerts(t, cs, clk, rec)
	if _, err := a.GetCertificate(nil); err == nil {
		t.Error("GetCertificate before Sync: no error")
	}
	if a.CABundle() != nil {
		t.Error("CABundle before Sync is not nil")
	}
	mustSync(t, a)

	sec := getSecret(t, cs)
	if sec.Type != corev1.SecretTypeTLS || sec.Labels[admission.ManagedByLabel] != admission.ManagedByValue {
		t.Errorf("secret type %q labels %v", sec.Type, sec.Labels)
	}
	for _, k := range []string{"tls.crt", "tls.key", "ca.crt", "ca.key"} {
		if len(sec.Data[k]) == 0 {
			t.Errorf("secret lacks %s", k)
		}
	}
	if !bytes.Equal(sec.Data["ca.crt"], a.CABundle()) {
		t.Error("CABundle is not the secret's ca.crt")
	}
	leaf := served(t, a)
	for _, host := range []string{"vigil-agent", testHost, "vigil-agent.vigil.svc.cluster.local", "127.0.0.1"} {
		if err := verify(leaf, a.CABundle(), host, clk.Now()); err != nil {
			t.Errorf("verify for %s: %v", host, err)
		}
	}
	if got := len(bundleCerts(t, a.CABundle())); got != 1 {
		t.Errorf("bundle has %d CAs, want 1", got)
	}

	// A second replica, or a restart, reuses the secret without writing.
	cs.ClearActions()
	b := newCerts(t, cs, clk, rec)
	mustSync(t, b)
	if !served(t, b).Equal(leaf) || !bytes.Equal(b.CABundle(), a.CABundle()) {
		t.Error("second Certs serves other certificates than the first")
	}
	mustSync(t, a)
	if n := writes(cs); n != 0 {
		t.Errorf("%d writes when nothing was due", n)
	}
	if got := rec.take(); len(got) != 0 {
		t.Errorf("OnRotate called %d times", len(got))
	}
}

func TestCertsRenewsServingCertificate(t *testing.T) {
	cs, clk, rec := fake.NewClientset(), newTestClock(), &bundleRecorder{}
	c := newCerts(t, cs, clk, rec)
	mustSync(t, c)
	old, bundle := served(t, c), c.CABundle()

	// Defaults: 1 year, renewed with a third of it left.
	clk.Add(200 * 24 * time.Hour)
	mustSync(t, c)
	if !served(t, c).Equal(old) {
		t.Fatal("renewed after 200 days")
	}
	clk.Add(50 * 24 * time.Hour)
	mustSync(t, c)
	leaf := served(t, c)
	if leaf.Equal(old) {
		t.Fatal("not renewed after 250 days")
	}
	if !leaf.NotAfter.After(old.NotAfter) {
		t.Errorf("new certificate expires %v, old %v", leaf.NotAfter, old.NotAfter)
	}
	if !bytes.Equal(c.CABundle(), bundle) {
		t.Error("renewing the serving certificate changed the CA bundle")
	}
	if err := verify(leaf, bundle, testHost, clk.Now()); err != nil {
		t.Error(err)
	}
	if !bytes.Equal(getSecret(t, cs).Data["tls.crt"], pemCert(leaf)) {
		t.Error("secret does not hold the renewed certificate")
	}
	if got := rec.take(); len(got) != 0 {
		t.Errorf("OnRotate called %d times", len(got))
	}
}

func TestCertsRotatesCA(t *testing.T) {
	cs, clk, rec := fake.NewClientset(), newTestClock(), &bundleRecorder{}
	c := newCerts(t, cs, clk, rec, func(cfg *admission.CertsConfig) {
		cfg.CAValidity, cfg.CertValidity, cfg.CAOverlap = 90*24*time.Hour, 365*24*time.Hour, 2*time.Hour
	})
	mustSync(t, c)
	oldCA := bundleCerts(t, c.CABundle())[0]
	oldLeaf := served(t, c)

	// 90 days (plus the hour of backdating): rotated with 30 days left.
	clk.Add(61 * 24 * time.Hour)
	mustSync(t, c)
	cas := bundleCerts(t, c.CABundle())
	if len(cas) != 2 || !cas[1].Equal(oldCA) || cas[0].Equal(oldCA) {
		t.Fatalf("bundle after rotation: %d CAs, want the new one and then the old one", len(cas))
	}
	newCA := cas[0]
	if got := rec.take(); len(got) != 1 || !bytes.Equal(got[0], c.CABundle()) {
		t.Errorf("OnRotate: %d calls, want 1 with the new bundle", len(got))
	}
	// The API servers may still hold the old bundle: the certificate served
	// must still be the one the old CA signed.
	if !served(t, c).Equal(oldLeaf) {
		t.Error("serving certificate changed in the same pass as the CA")
	}

	clk.Add(time.Hour)
	mustSync(t, c)
	if !served(t, c).Equal(oldLeaf) {
		t.Error("serving certificate re-signed before CAOverlap")
	}

	clk.Add(time.Hour)
	mustSync(t, c)
	leaf := served(t, c)
	if leaf.CheckSignatureFrom(newCA) != nil {
		t.Fatal("serving certificate not signed by the new CA after CAOverlap")
	}
	if err := verify(leaf, c.CABundle(), testHost, clk.Now()); err != nil {
		t.Error(err)
	}
	if got := rec.take(); len(got) != 0 {
		t.Errorf("re-signing the serving certificate called OnRotate %d times", len(got))
	}

	// The old CA leaves the bundle once it has expired.
	clk.Add(30 * 24 * time.Hour)
	mustSync(t, c)
	if cas := bundleCerts(t, c.CABundle()); len(cas) != 1 || !cas[0].Equal(newCA) {
		t.Errorf("bundle after the old CA expired: %d CAs", len(cas))
	}
	if got := rec.take(); len(got) != 1 {
		t.Errorf("dropping the old CA: OnRotate called %d times, want 1", len(got))
	}
}

// TestCertsLifetime runs two replicas for 25 years of weekly syncs with the
// default validities: whatever either serves verifies against the bundle
// the API server had before the sync and the one it gets after.
func TestCertsLifetime(t *testing.T) {
	cs, clk := fake.NewClientset(), newTestClock()
	replicas := []*admission.Certs{newCerts(t, cs, clk, nil), newCerts(t, cs, clk, nil)}
	var prev []byte
	leaves, bundles := map[string]bool{}, map[string]bool{}
	for week := 0; week < 25*52; week++ {
		for i, c := range replicas {
			if (week+i)%3 == 0 { // the replicas do not sync in step
				mustSync(t, c)
			}
		}
		mustSync(t, replicas[0])
		cur := replicas[0].CABundle()
		for i, c := range replicas {
			if _, err := c.GetCertificate(nil); err != nil {
				continue // not synced yet
			}
			leaf := served(t, c)
			leaves[string(leaf.Raw)] = true
			for _, b := range [][]byte{prev, cur} {
				if b == nil {
					continue
				}
				if err := verify(leaf, b, testHost, clk.Now()); err != nil {
					t.Fatalf("week %d: replica %d's certificate does not verify: %v", week, i, err)
				}
			}
		}
		bundles[string(cur)] = true
		prev = cur
		clk.Add(7 * 24 * time.Hour)
	}
	// 25 years: CA rotations at 6.7, 13.3 and 20 years, each adding a CA
	// that the next expiry leaves alone in the bundle.
	if len(bundles) != 7 {
		t.Errorf("%d different bundles, want 7", len(bundles))
	}
	if len(leaves) < 25 {
		t.Errorf("%d serving certificates in 25 years", len(leaves))
	}
}

func TestCertsReplacesBadSecret(t *testing.T) {
	tests := []struct {
		name    string
		corrupt func(data map[string][]byte, foreign map[string][]byte)
		later   time.Duration // clock moved after the corruption
		newCA   bool          // the CA must be regenerated
	}{
		{name: "serving certificate is not PEM", corrupt: func(d, _ map[string][]byte) { d["tls.crt"] = []byte("junk") }},
		{name: "serving key is missing", corrupt: func(d, _ map[string][]byte) { delete(d, "tls.key") }},
		{name: "serving key does not match", corrupt: func(d, _ map[string][]byte) { d["tls.key"] = d["ca.key"] }},
		{name: "serving certificate from a foreign CA", corrupt: func(d, f map[string][]byte) {
			d["tls.crt"], d["tls.key"] = f["tls.crt"], f["tls.key"]
		}},
		// The other secret's CA is valid and kept; its certificate is
		// re-issued for all the names.
		{name: "serving certificate lacks a name", newCA: true, corrupt: func(d, f map[string][]byte) {
			d["tls.crt"], d["tls.key"] = f["tls.crt"], f["tls.key"]
			d["ca.crt"], d["ca.key"] = f["ca.crt"], f["ca.key"]
		}},
		{name: "CA key is not PEM", corrupt: func(d, _ map[string][]byte) {
			d["ca.key"] = []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
		}, newCA: true},
		{name: "CA key does not match", corrupt: func(d, _ map[string][]byte) { d["ca.key"] = d["tls.key"] }, newCA: true},
		{name: "CA certificate is missing", corrupt: func(d, _ map[string][]byte) { d["ca.crt"] = nil }, newCA: true},
		{name: "CA is not a CA", corrupt: func(d, _ map[string][]byte) { d["ca.crt"], d["ca.key"] = d["tls.crt"], d["tls.key"] }, newCA: true},
		{name: "CA has expired", corrupt: func(map[string][]byte, map[string][]byte) {}, later: 11 * 365 * 24 * time.Hour, newCA: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newTestClock()
			// foreign: another cluster's secret, for fewer names.
			fcs := fake.NewClientset()
			mustSync(t, newCerts(t, fcs, clk, nil, func(cfg *admission.CertsConfig) { cfg.DNSNames = cfg.DNSNames[:1] }))
			foreign := getSecret(t, fcs).Data

			cs, rec := fake.NewClientset(), &bundleRecorder{}
			c := newCerts(t, cs, clk, rec)
			mustSync(t, c)
			oldBundle, oldLeaf := c.CABundle(), served(t, c)

			sec := getSecret(t, cs)
			tt.corrupt(sec.Data, foreign)
			if _, err := cs.CoreV1().Secrets(testNS).Update(context.Background(), sec, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			clk.Add(tt.later)
			mustSync(t, c)

			leaf := served(t, c)
			if leaf.Equal(oldLeaf) {
				t.Error("still serving the old certificate")
			}
			if err := verify(leaf, c.CABundle(), testHost, clk.Now()); err != nil {
				t.Error(err)
			}
			if changed := !bytes.Equal(c.CABundle(), oldBundle); changed != tt.newCA {
				t.Errorf("CA bundle changed: %v, want %v", changed, tt.newCA)
			}
			if got := len(rec.take()); got != map[bool]int{false: 0, true: 1}[tt.newCA] {
				t.Errorf("OnRotate called %d times", got)
			}
			sec = getSecret(t, cs)
			if !bytes.Equal(sec.Data["tls.crt"], pemCert(leaf)) || !bytes.Equal(sec.Data["ca.crt"], c.CABundle()) {
				t.Error("secret does not hold what is served")
			}
			// A restart reads what was written and keeps it.
			again := newCerts(t, cs, clk, nil)
			mustSync(t, again)
			if !served(t, again).Equal(leaf) {
				t.Error("a restart does not accept the replaced secret")
			}
		})
	}
}

func TestCertsRefusesSecretOfOtherType(t *testing.T) {
	cs := fake.NewClientset(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: testSecret, Namespace: testNS},
		Type:       corev1.SecretTypeOpaque,
	})
	if err := newCerts(t, cs, newTestClock(), nil).Sync(context.Background()); err == nil {
		t.Fatal("Sync took over an Opaque secret")
	}
}

// otherReplica returns the secret another replica would write: one created
// at the clock's time, or, given a secret, that secret as synced at it.
func otherReplica(t *testing.T, clk *testClock, from *corev1.Secret) *corev1.Secret {
	t.Helper()
	var objs []runtime.Object
	if from != nil {
		objs = append(objs, from.DeepCopy())
	}
	cs := fake.NewClientset(objs...)
	mustSync(t, newCerts(t, cs, clk, nil))
	return getSecret(t, cs)
}

func TestCertsCreateRaceUsesTheirs(t *testing.T) {
	cs, clk := fake.NewClientset(), newTestClock()
	theirs := otherReplica(t, clk, nil)
	raced := false
	cs.PrependReactor("create", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		if raced {
			return false, nil, nil
		}
		raced = true
		if err := cs.Tracker().Add(theirs); err != nil {
			t.Error(err)
		}
		return true, nil, apierrors.NewAlreadyExists(secretsGVR.GroupResource(), testSecret)
	})
	c := newCerts(t, cs, clk, nil)
	mustSync(t, c)
	if !bytes.Equal(pemCert(served(t, c)), theirs.Data["tls.crt"]) || !bytes.Equal(c.CABundle(), theirs.Data["ca.crt"]) {
		t.Error("not serving the other replica's certificate")
	}
}

func TestCertsUpdateConflictUsesTheirs(t *testing.T) {
	cs, clk := fake.NewClientset(), newTestClock()
	c := newCerts(t, cs, clk, nil)
	mustSync(t, c)

	// Both replicas renew the serving certificate; the other one writes
	// first.
	clk.Add(300 * 24 * time.Hour)
	theirs := otherReplica(t, clk, getSecret(t, cs))
	if bytes.Equal(theirs.Data["tls.crt"], getSecret(t, cs).Data["tls.crt"]) {
		t.Fatal("the other replica did not renew")
	}
	conflicts := 0
	cs.PrependReactor("update", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		if conflicts > 0 {
			return false, nil, nil
		}
		conflicts++
		if err := cs.Tracker().Update(secretsGVR, theirs, testNS); err != nil {
			t.Error(err)
		}
		return true, nil, apierrors.NewConflict(secretsGVR.GroupResource(), testSecret, nil)
	})
	cs.ClearActions()
	mustSync(t, c)
	if conflicts != 1 {
		t.Fatalf("%d conflicts, want 1", conflicts)
	}
	if !bytes.Equal(pemCert(served(t, c)), theirs.Data["tls.crt"]) {
		t.Error("not serving the other replica's certificate")
	}
	if n := writes(cs); n != 1 {
		t.Errorf("%d writes, want only the one that conflicted", n)
	}
}

// TestCertsRunSeesOtherReplica: Run re-reads the secret, so a CA rotated
// by another replica reaches OnRotate.
func TestCertsRunSeesOtherReplica(t *testing.T) {
	cs, clk := fake.NewClientset(), newTestClock()
	rotated := make(chan []byte, 10)
	c := newCerts(t, cs, clk, nil, func(cfg *admission.CertsConfig) {
		cfg.CheckInterval = 10 * time.Millisecond
		cfg.OnRotate = func(b []byte) { rotated <- b }
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for c.CABundle() == nil {
		if time.Now().After(deadline) {
			t.Fatal("Run did not load certificates")
		}
		time.Sleep(5 * time.Millisecond)
	}

	clk.Add(8 * 365 * 24 * time.Hour)
	other := newCerts(t, cs, clk, nil)
	mustSync(t, other) // rotates the CA
	select {
	case b := <-rotated:
		if !bytes.Equal(b, other.CABundle()) || len(bundleCerts(t, b)) != 2 {
			t.Error("OnRotate got another bundle than the other replica wrote")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not see the other replica's rotation")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

func TestNewCertsRefusesBadConfig(t *testing.T) {
	cs := fake.NewClientset()
	for name, cfg := range map[string]admission.CertsConfig{
		"no client":   {Namespace: "ns", SecretName: "s", DNSNames: []string{"a"}},
		"no secret":   {Client: cs, Namespace: "ns", DNSNames: []string{"a"}},
		"no names":    {Client: cs, Namespace: "ns", SecretName: "s"},
		"negative ca": {Client: cs, Namespace: "ns", SecretName: "s", DNSNames: []string{"a"}, CAValidity: -1},
	} {
		if _, err := admission.NewCerts(cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func parsePEMCert(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	return x509.ParseCertificate(block.Bytes)
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// testLogger writes to the test's log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
