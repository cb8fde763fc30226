package admission_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
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
// kube-apiserver as the agent does: the serving certificate kept by Certs in
// a Secret, the configuration kept by a Keeper (URL webhook, caBundle from
// Certs, failurePolicy Ignore, 5 s timeout, kube-system and the agent's
// namespace left out). It checks what a user sees through client-go:
// denials in deny mode, warnings in audit mode, nothing for healthy
// workloads and excluded namespaces, admissions that keep working through a
// CA rotation, and a cluster that keeps admitting pods when the webhook
// hangs or is gone; and that Unregister leaves nothing behind.
func TestAdmissionKubeAPIServer(t *testing.T) {
	ctx := context.Background()
	unhealthy, healthy := seed(t, "unhealthy.yaml"), seed(t, "healthy.yaml")
	deny, audit := seedConfig(t, posture.Deny), seedConfig(t, posture.Audit)

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

	// The serving certificate. The clock runs ahead of real time when the
	// test says so; the API server checks certificates against real time,
	// so it stays within the hour Certs backdates them by: the CA (75 min,
	// plus that hour) is due for rotation at +30 min.
	var ahead atomic.Int64
	var keeper *admission.Keeper
	certs, err := admission.NewCerts(admission.CertsConfig{
		Client: cs, Namespace: "vigil", SecretName: "vigil-webhook-tls",
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		CAValidity:  75 * time.Minute, CertValidity: 3 * time.Hour, CAOverlap: time.Minute,
		Now:      func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) },
		OnRotate: func([]byte) { keeper.Kick() },
		Log:      testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.Sync(ctx); err != nil {
		t.Fatal(err)
	}

	// The webhook server; which Webhook (or a hanging handler) answers is
	// switched by the test. Without keep-alives every review is a new TLS
	// handshake, so a new serving certificate is in use at once.
	var current atomic.Pointer[http.Handler]
	use := func(h http.Handler) { current.Store(&h) }
	var findings, calls atomic.Int64
	onFindings := func([]posture.Result) { findings.Add(1) }
	use(mustNew(t, admission.Config{Posture: deny, OnFindings: onFindings}))
	mux := http.NewServeMux()
	mux.HandleFunc("/validate", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		(*current.Load()).ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, TLSConfig: &tls.Config{GetCertificate: certs.GetCertificate, MinVersion: tls.VersionTLS12}, ReadHeaderTimeout: 5 * time.Second}
	srv.SetKeepAlivesEnabled(false)
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

	reg := admission.Registration{
		Name:               "vigil",
		URL:                "https://" + ln.Addr().String() + "/validate",
		ExcludedNamespaces: []string{"kube-system", "vigil"},
	}
	keeper, err = admission.NewKeeper(admission.KeeperConfig{Client: cs, Registration: reg, CABundle: certs.CABundle, Interval: time.Hour, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	keepCtx, cancelKeep := context.WithCancel(ctx)
	kept := make(chan error, 1)
	go func() { kept <- keeper.Run(keepCtx) }()
	stopKeeper := sync.OnceFunc(func() {
		cancelKeep()
		if err := <-kept; err != nil {
			t.Errorf("Keeper.Run: %v", err)
		}
	})
	t.Cleanup(stopKeeper)
	vwcs := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	// waitRegistered waits until the stored caBundle is bundle.
	waitRegistered := func(t *testing.T, bundle []byte) *admissionregistrationv1.ValidatingWebhookConfiguration {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			vwc, err := vwcs.Get(ctx, reg.Name, metav1.GetOptions{})
			if err == nil && len(vwc.Webhooks) == 1 && bytes.Equal(vwc.Webhooks[0].ClientConfig.CABundle, bundle) {
				return vwc
			}
			if time.Now().After(deadline) {
				t.Fatalf("caBundle not registered after 15s (last error %v)", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitRegistered(t, certs.CABundle())

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
		before := calls.Load()
		if err := createDeployment(unhealthy["Deployment"], "vigil", false); err != nil {
			t.Fatal(err)
		}
		if n := calls.Load() - before; n != 0 {
			t.Errorf("the webhook was called %d times for the excluded namespace", n)
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

	// deniedNow checks, once, that the webhook answers through the API
	// server: with failurePolicy Ignore a TLS failure would admit.
	deniedNow := func(t *testing.T, when string) {
		t.Helper()
		if err := createDeployment(unhealthy["Deployment"], "shop", true); err == nil || !strings.Contains(err.Error(), "denied the request") {
			t.Fatalf("%s: dry run of the unhealthy deployment gave %v, want a denial", when, err)
		}
	}
	servedLeaf := func(t *testing.T) *x509.Certificate {
		t.Helper()
		c, err := certs.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf
	}

	t.Run("admissions keep working through a CA rotation", func(t *testing.T) {
		use(mustNew(t, admission.Config{Posture: deny}))
		oldBundle, oldLeaf := certs.CABundle(), servedLeaf(t)
		deniedNow(t, "before the rotation")

		// Step 1: the new CA joins the bundle; the old CA's certificate is
		// still served.
		ahead.Store(int64(31 * time.Minute))
		if err := certs.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		bundle := certs.CABundle()
		cas, err := certutilParse(bundle)
		if err != nil || len(cas) != 2 {
			t.Fatalf("bundle after rotation: %d CAs (%v), want 2", len(cas), err)
		}
		if !bytes.HasSuffix(bundle, oldBundle) {
			t.Error("the old CA is not in the bundle")
		}
		if !servedLeaf(t).Equal(oldLeaf) {
			t.Fatal("serving certificate changed with the CA")
		}
		deniedNow(t, "with the new CA added")
		waitRegistered(t, bundle) // OnRotate kicked the Keeper
		deniedNow(t, "with both CAs registered")
		// CAOverlap: the time the API server has to pick up the bundle.
		time.Sleep(2 * time.Second)

		// Step 2: the certificate is re-signed by the new CA, which only
		// the updated caBundle holds.
		ahead.Store(int64(33 * time.Minute))
		if err := certs.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		leaf := servedLeaf(t)
		if leaf.Equal(oldLeaf) || leaf.CheckSignatureFrom(cas[0]) != nil {
			t.Fatal("serving certificate not re-signed by the new CA")
		}
		if !bytes.Equal(certs.CABundle(), bundle) {
			t.Error("bundle changed when re-signing")
		}
		deniedNow(t, "with the new CA's certificate")
	})

	t.Run("the registration is re-asserted", func(t *testing.T) {
		vwc := waitRegistered(t, certs.CABundle())
		r := reg
		r.CABundle = certs.CABundle()
		if err := admission.Register(ctx, cs, r); err != nil {
			t.Fatal(err)
		}
		if again, err := vwcs.Get(ctx, reg.Name, metav1.GetOptions{}); err != nil || again.ResourceVersion != vwc.ResourceVersion {
			t.Errorf("registering the same again wrote it (%v)", err)
		}
		vwc.Webhooks[0].ClientConfig.CABundle = kc.CAData()
		if _, err := vwcs.Update(ctx, vwc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		keeper.Kick()
		waitRegistered(t, certs.CABundle())
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
	t.Run("Unregister leaves no configuration behind", func(t *testing.T) {
		stopKeeper() // or it would register again
		if err := admission.Unregister(ctx, cs, reg.Name); err != nil {
			t.Fatal(err)
		}
		list, err := vwcs.List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range list.Items {
			t.Errorf("configuration %s left", v.Name)
		}
		if err := admission.Unregister(ctx, cs, reg.Name); err != nil {
			t.Errorf("second Unregister: %v", err)
		}
	})
}

// certutilParse parses a PEM bundle.
func certutilParse(bundle []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, bundle = pem.Decode(bundle)
		if block == nil {
			return certs, nil
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
}
