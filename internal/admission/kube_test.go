package admission_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/vigil-sec/vigil/internal/admission"
	"github.com/vigil-sec/vigil/internal/kubetest"
	"github.com/vigil-sec/vigil/internal/posture"
)

// warningLog collects the warnings the API server returns to client-go.
type warningLog struct {
	mu   sync.Mutex
	msgs []string
}

func (l *warningLog) HandleWarningHeader(code int, agent, text string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, text)
}

// take returns Vigil's warnings received since the last call.
func (l *warningLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, m := range l.msgs {
		if strings.HasPrefix(m, "[vigil] ") {
			out = append(out, m)
		}
	}
	l.msgs = nil
	return out
}

// TestAdmissionKubeAPIServer registers the webhook with a real
// kube-apiserver, as the agent does (URL webhook, self-signed CA in
// caBundle, failurePolicy Ignore, 5 s timeout, kube-system left out), and
// checks what a user sees through client-go: denials in deny mode, warnings
// in audit mode, nothing for healthy workloads and excluded namespaces, and
// a cluster that keeps admitting pods when the webhook hangs or is gone.
func TestAdmissionKubeAPIServer(t *testing.T) {
	ctx := context.Background()
	unhealthy, healthy := seed(t, "unhealthy.yaml"), seed(t, "healthy.yaml")
	deny, audit := seedConfig(t, posture.Deny), seedConfig(t, posture.Audit)

	// The webhook server; which Webhook (or a hanging handler) answers is
	// switched by the test.
	caPEM, serving := webhookTLS(t)
	var current atomic.Pointer[http.Handler]
	use := func(h http.Handler) { current.Store(&h) }
	var findings atomic.Int64
	onFindings := func([]posture.Result) { findings.Add(1) }
	use(mustNew(t, admission.Config{Posture: deny, OnFindings: onFindings}))
	mux := http.NewServeMux()
	mux.HandleFunc("/validate", func(w http.ResponseWriter, r *http.Request) { (*current.Load()).ServeHTTP(w, r) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{serving}, MinVersion: tls.VersionTLS12}, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln, "", "") }()
	stopServer := sync.OnceFunc(func() {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("webhook server: %v", err)
		}
	})
	t.Cleanup(stopServer)

	kc := kubetest.Start(t, kubetest.Options{})
	var warnings warningLog
	rc := kc.RESTConfig(kubetest.Admin)
	rc.WarningHandler = &warnings
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"shop", "vigil"} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// No controller manager: make the service account pods default to.
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	timeout, ignore, none := int32(5), admissionregistrationv1.Ignore, admissionregistrationv1.SideEffectClassNone
	url := "https://" + ln.Addr().String() + "/validate"
	_, err = cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "vigil"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "validate.vigil.dev",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caPEM},
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			FailurePolicy:           &ignore,
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system"}},
			}},
			Rules: []admissionregistrationv1.RuleWithOperations{
				{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
					Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}},
				{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
					Rule: admissionregistrationv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"deployments"}}},
			},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("register webhook: %v", err)
	}

	deployment := func(js []byte, ns string) *appsv1.Deployment {
		t.Helper()
		objs, err := posture.Decode(js)
		if err != nil {
			t.Fatal(err)
		}
		d := objs[0].(*appsv1.Deployment)
		d.Namespace = ns
		return d
	}
	createDeployment := func(js []byte, ns string, dry bool) error {
		opts := metav1.CreateOptions{}
		if dry {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		_, err := cs.AppsV1().Deployments(ns).Create(ctx, deployment(js, ns), opts)
		return err
	}

	// The API server picks the configuration up asynchronously: wait until
	// a dry run is denied (which also shows dry runs reach the webhook).
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := createDeployment(unhealthy["Deployment"], "shop", true)
		if err != nil && strings.Contains(err.Error(), "denied the request") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook not in effect after 15s: last dry run gave %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := findings.Load(); n != 0 {
		t.Errorf("OnFindings called %d times by dry runs", n)
	}
	warnings.take()

	t.Run("deny mode rejects the unhealthy deployment", func(t *testing.T) {
		err := createDeployment(unhealthy["Deployment"], "shop", false)
		if !apierrors.IsForbidden(err) {
			t.Fatalf("create: %v, want Forbidden", err)
		}
		msg := err.Error()
		t.Logf("kubectl would print: Error from server (Forbidden): %s", msg)
		for _, s := range []string{`admission webhook "validate.vigil.dev" denied the request`,
			"Deployment/shop/nginx-unhealthy-deployment violates 12 Vigil recommendations in deny mode", "fix: "} {
			if !strings.Contains(msg, s) {
				t.Errorf("message lacks %q", s)
			}
		}
		for _, r := range evaluate(t, deny, unhealthy["Deployment"]) {
			if !strings.Contains(msg, "["+r.Recommendation+"] ") {
				t.Errorf("message does not name %s", r.Recommendation)
			}
			for _, v := range r.Violations {
				if !strings.Contains(msg, v) {
					t.Errorf("message lacks %q", v)
				}
			}
		}
	})

	t.Run("deny mode rejects an unhealthy pod", func(t *testing.T) {
		_, err := cs.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "root-shell"},
			Spec:       corev1.PodSpec{HostPID: true, Containers: []corev1.Container{{Name: "sh", Image: "busybox"}}},
		}, metav1.CreateOptions{})
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "["+posture.NoHostPIDIPC+"]") {
			t.Fatalf("create: %v", err)
		}
	})

	t.Run("deny mode admits the healthy deployment without warnings", func(t *testing.T) {
		if err := createDeployment(healthy["Deployment"], "shop", false); err != nil {
			t.Fatal(err)
		}
		if w := warnings.take(); len(w) != 0 {
			t.Errorf("warnings: %q", w)
		}
	})

	t.Run("an excluded namespace passes in deny mode", func(t *testing.T) {
		if err := createDeployment(unhealthy["Deployment"], "vigil", false); err != nil {
			t.Fatal(err)
		}
		if w := warnings.take(); len(w) != 0 {
			t.Errorf("warnings: %q", w)
		}
	})

	t.Run("audit mode admits the unhealthy deployment with warnings", func(t *testing.T) {
		use(mustNew(t, admission.Config{Posture: audit, OnFindings: onFindings}))
		if err := createDeployment(unhealthy["Deployment"], "shop", false); err != nil {
			t.Fatal(err)
		}
		got := warnings.take()
		t.Logf("kubectl would print:\nWarning: %s", strings.Join(got, "\nWarning: "))
		want := 0
		for _, r := range evaluate(t, audit, unhealthy["Deployment"]) {
			want += len(r.Violations)
			for _, v := range r.Violations {
				w := "[vigil] " + r.Recommendation + ": " + v
				if !contains(got, w) {
					t.Errorf("no warning %q", w)
				}
			}
		}
		if len(got) != want {
			t.Errorf("%d warnings, want %d", len(got), want)
		}
		if n := findings.Load(); n != 1 {
			t.Errorf("OnFindings called %d times, want 1", n)
		}
	})

	pod := func(name string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}}}
	}
	t.Run("a hanging webhook delays pods by at most the timeout", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		use(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		start := time.Now()
		if _, err := cs.CoreV1().Pods("shop").Create(ctx, pod("while-hung"), metav1.CreateOptions{}); err != nil {
			t.Fatalf("create with the webhook hung: %v", err)
		}
		if d := time.Since(start); d < 4*time.Second || d > 9*time.Second {
			t.Errorf("create took %v, want about the 5s timeout", d)
		}
	})

	t.Run("with the webhook stopped, pods are still admitted", func(t *testing.T) {
		stopServer()
		start := time.Now()
		if _, err := cs.CoreV1().Pods("shop").Create(ctx, pod("while-down"), metav1.CreateOptions{}); err != nil {
			t.Fatalf("create with the webhook down: %v", err)
		}
		if d := time.Since(start); d > 6*time.Second {
			t.Errorf("create took %v, want at most the 5s timeout", d)
		}
	})
}

// webhookTLS returns a self-signed CA (PEM, for caBundle) and a serving
// certificate it signed for 127.0.0.1.
func webhookTLS(t testing.TB) ([]byte, tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vigil-webhook-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "vigil-webhook"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
