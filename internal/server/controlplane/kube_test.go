package controlplane_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/vigil-sec/vigil/deploy"
	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/kubetest"
	"github.com/vigil-sec/vigil/internal/server/api"
	"github.com/vigil-sec/vigil/internal/server/controlplane"
	"github.com/vigil-sec/vigil/internal/server/store"
)

// TestRealAPIServer runs a real kube-apiserver (and controller manager)
// with Vigil's recommended audit policy and its webhook pointed at Vigil's
// receiver, authenticated with the cluster's credential. Through client-go,
// mallory performs attacks and dev performs the same kinds of operations
// harmlessly (and intruder, with no rights, keeps being refused); the test
// asserts exactly the expected alerts, each attributed to who did it, none
// to dev, and measures how long after the
// request each alert is stored.
func TestRealAPIServer(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "v.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cl, credential, err := st.CreateCluster(ctx, "e2e")
	if err != nil {
		t.Fatal(err)
	}
	rules, err := detect.Load(detect.Options{})
	if err != nil {
		t.Fatal(err)
	}
	det := controlplane.New(controlplane.Config{Rules: rules, Store: st})
	recv := httptest.NewTLSServer(api.New(api.Config{Store: st, Audit: det}).Handler())
	defer recv.Close()
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: recv.Certificate().Raw})

	kc := kubetest.Start(t, kubetest.Options{
		Users: []kubetest.User{
			{Name: "mallory", Groups: []string{"system:masters"}}, // a stolen admin credential
			{Name: "dev", Groups: []string{"developers"}},
			{Name: "intruder"}, // a valid credential with no rights
		},
		AuditPolicy:  deploy.AuditPolicy,
		AuditLog:     true,
		AuditWebhook: &kubetest.AuditWebhook{URL: recv.URL + "/api/v1/audit", CAData: caPEM, Token: credential, BatchMaxWait: 200 * time.Millisecond},
	})
	kc.StartControllerManager()
	admin, mallory, dev := kc.Clientset(kubetest.Admin), kc.Clientset("mallory"), kc.Clientset("dev")

	// Setup as admin: namespaces, dev's rights in shop, a service account.
	for _, ns := range []string{"shop", "vigil-alerttest", "kubernetes-dashboard"} {
		must(t, "namespace "+ns)(admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}))
	}
	must(t, "dev's role binding")(admin.RbacV1().RoleBindings("shop").Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "developers-edit"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "edit"},
		Subjects:   []rbacv1.Subject{{Kind: "Group", Name: "developers", APIGroup: "rbac.authorization.k8s.io"}},
	}, metav1.CreateOptions{}))
	must(t, "service account")(admin.CoreV1().ServiceAccounts("shop").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "web"}}, metav1.CreateOptions{}))
	must(t, "secret")(admin.CoreV1().Secrets("shop").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db"}, StringData: map[string]string{"password": "x"}}, metav1.CreateOptions{}))
	for i := range 10 {
		must(t, "secrets")(admin.CoreV1().Secrets("shop").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("app-%d", i)}}, metav1.CreateOptions{}))
	}
	must(t, "coredns configmap")(admin.CoreV1().ConfigMaps("kube-system").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "coredns"},
		Data: map[string]string{"Corefile": ".:53 {\n    forward . /etc/resolv.conf\n}\n"}}, metav1.CreateOptions{}))

	// dev: ordinary work, the benign twins of the attacks below.
	must(t, "dev deployment")(dev.AppsV1().Deployments("shop").Create(ctx, deployment("web", false), metav1.CreateOptions{}))
	must(t, "dev pod")(dev.CoreV1().Pods("shop").Create(ctx, pod("debug", nil), metav1.CreateOptions{}))
	must(t, "dev lists pods")(dev.CoreV1().Pods("shop").List(ctx, metav1.ListOptions{}))
	must(t, "dev reads a secret")(dev.CoreV1().Secrets("shop").Get(ctx, "db", metav1.GetOptions{}))
	must(t, "dev configmap")(dev.CoreV1().ConfigMaps("shop").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings"}, Data: map[string]string{"a": "b"}}, metav1.CreateOptions{}))

	// mallory: the attacks, each with the alert it must raise.
	type attack struct {
		rule, user string
		at         time.Time
	}
	var attacks []attack
	as := func(user, rule string, f func() error) {
		t.Helper()
		at := time.Now()
		if err := f(); err != nil {
			t.Fatalf("attack for %s: %v", rule, err)
		}
		attacks = append(attacks, attack{rule, user, at})
	}
	do := func(rule string, f func() error) { t.Helper(); as("mallory", rule, f) }
	var saToken string
	do("audit.cluster-admin-binding", func() error {
		_, err := mallory.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "backup-operator"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "web", Namespace: "shop"}},
		}, metav1.CreateOptions{})
		return err
	})
	do("audit.privileged-container", func() error {
		_, err := mallory.AppsV1().Deployments("shop").Create(ctx, deployment("miner", true), metav1.CreateOptions{})
		return err
	})
	do("audit.sensitive-host-mount", func() error {
		_, err := mallory.CoreV1().Pods("shop").Create(ctx, pod("rootfs", []corev1.Volume{{Name: "host",
			VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}), metav1.CreateOptions{})
		return err
	})
	do("audit.secrets-listed-cluster-wide", func() error {
		_, err := mallory.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
		return err
	})
	do("audit.token-request", func() error {
		tr, err := mallory.CoreV1().ServiceAccounts("shop").CreateToken(ctx, "web", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err == nil {
			saToken = tr.Status.Token
		}
		return err
	})
	do("audit.events-deleted", func() error {
		ev, err := admin.CoreV1().Events("shop").Create(ctx, &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "evidence"},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "rootfs"}, Reason: "Started", Message: "m"}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		return mallory.CoreV1().Events("shop").Delete(ctx, ev.Name, metav1.DeleteOptions{})
	})
	do("audit.privileged-impersonation", func() error {
		cfg := rest.CopyConfig(kc.RESTConfig("mallory"))
		cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:admin", Groups: []string{"system:masters"}}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		_, err = cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		return err
	})
	do("audit.vigil-test-alert", func() error {
		_, err := mallory.CoreV1().Pods("vigil-alerttest").List(ctx, metav1.ListOptions{})
		return err
	})

	do("audit.wildcard-role", func() error {
		_, err := mallory.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "everything"},
			Rules: []rbacv1.PolicyRule{{Verbs: []string{"*"}, Resources: []string{"*"}, APIGroups: []string{"*"}}}}, metav1.CreateOptions{})
		return err
	})
	do("audit.miner-image", func() error {
		p := pod("worker", nil)
		p.Spec.Containers[0].Image = "docker.io/xmrig/xmrig:6.21"
		_, err := mallory.CoreV1().Pods("shop").Create(ctx, p, metav1.CreateOptions{})
		return err
	})
	do("audit.host-pid-ipc", func() error {
		p := pod("nsenter", nil)
		p.Spec.HostPID = true
		_, err := mallory.CoreV1().Pods("shop").Create(ctx, p, metav1.CreateOptions{})
		return err
	})
	do("audit.dangerous-capabilities", func() error {
		p := pod("tools", nil)
		p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"SYS_ADMIN"}}}
		_, err := mallory.CoreV1().Pods("shop").Create(ctx, p, metav1.CreateOptions{})
		return err
	})
	do("audit.kube-system-workload", func() error {
		_, err := mallory.AppsV1().Deployments("kube-system").Create(ctx, deployment("kube-metrics-helper", false), metav1.CreateOptions{})
		return err
	})
	do("audit.exposed-dashboard", func() error {
		_, err := mallory.CoreV1().Services("kubernetes-dashboard").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes-dashboard"},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"k8s-app": "kubernetes-dashboard"},
				Ports: []corev1.ServicePort{{Port: 443}}}}, metav1.CreateOptions{})
		return err
	})
	do("audit.coredns-modified", func() error {
		cm, err := mallory.CoreV1().ConfigMaps("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
		if err != nil {
			return err
		}
		cm.Data["Corefile"] = ".:53 {\n    rewrite name bank.example.com evil.example.net\n    forward . /etc/resolv.conf\n}\n"
		_, err = mallory.CoreV1().ConfigMaps("kube-system").Update(ctx, cm, metav1.UpdateOptions{})
		return err
	})
	do("audit.csr-client-cert", func() error {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "backup-admin", Organization: []string{"ops"}}}, key)
		if err != nil {
			return err
		}
		_, err = mallory.CertificatesV1().CertificateSigningRequests().Create(ctx, &certificatesv1.CertificateSigningRequest{
			ObjectMeta: metav1.ObjectMeta{Name: "root-access"},
			Spec: certificatesv1.CertificateSigningRequestSpec{Request: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
				SignerName: "kubernetes.io/kube-apiserver-client", Usages: []certificatesv1.KeyUsage{certificatesv1.UsageClientAuth}},
		}, metav1.CreateOptions{})
		return err
	})
	do("audit.csr-approved", func() error {
		csr, err := mallory.CertificatesV1().CertificateSigningRequests().Get(ctx, "root-access", metav1.GetOptions{})
		if err != nil {
			return err
		}
		csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "KubectlApprove"})
		_, err = mallory.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, "root-access", csr, metav1.UpdateOptions{})
		return err
	})
	do("audit.secret-read-burst", func() error {
		for i := range 10 {
			if _, err := mallory.CoreV1().Secrets("shop").Get(ctx, fmt.Sprintf("app-%d", i), metav1.GetOptions{}); err != nil {
				return err
			}
		}
		return nil
	})
	as("intruder", "audit.forbidden-burst", func() error {
		intruder := kc.Clientset("intruder")
		for i := range 10 {
			_, err := intruder.CoreV1().Secrets("shop").Get(ctx, fmt.Sprintf("app-%d", i), metav1.GetOptions{})
			if !apierrors.IsForbidden(err) {
				return fmt.Errorf("want forbidden, got %v", err)
			}
		}
		return nil
	})
	as("system:serviceaccount:shop:web", "audit.sa-permission-enumeration", func() error {
		cfg := &rest.Config{Host: kc.URL(), BearerToken: saToken, TLSClientConfig: rest.TLSClientConfig{CAData: kc.CAData()},
			UserAgent: "kubectl/v1.36.3 (linux/amd64) kubernetes/6f1b2a3"}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		_, err = cs.AuthorizationV1().SelfSubjectRulesReviews().Create(ctx, &authorizationv1.SelfSubjectRulesReview{
			Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: "shop"}}, metav1.CreateOptions{})
		return err
	})
	do("audit.admission-webhook-changed", func() error {
		ignore, none := admissionv1.Ignore, admissionv1.SideEffectClassNone
		path := "/mutate"
		_, err := mallory.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, &admissionv1.MutatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: "injector"},
			Webhooks: []admissionv1.MutatingWebhook{{Name: "inject.example.com", FailurePolicy: &ignore, SideEffects: &none,
				AdmissionReviewVersions: []string{"v1"},
				ClientConfig:            admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{Namespace: "shop", Name: "injector", Path: &path}},
				NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"never": "matches"}},
				Rules: []admissionv1.RuleWithOperations{{Operations: []admissionv1.OperationType{admissionv1.Create},
					Rule: admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}}}},
		}, metav1.CreateOptions{})
		return err
	})

	// Wait for every expected alert, timing each from its request.
	want := map[string]string{}
	for _, a := range attacks {
		want[a.rule] = a.user
	}
	var alerts []store.Alert
	deadline := time.Now().Add(20 * time.Second)
	seen := map[string]time.Time{}
	for len(seen) < len(want) {
		if time.Now().After(deadline) {
			t.Fatalf("alerts after 20 s: %s\nmissing: %v", summary(alerts), missing(want, seen))
		}
		time.Sleep(50 * time.Millisecond)
		page, err := st.ListAlerts(ctx, store.AlertFilter{Cluster: cl.ID, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		alerts = page.Alerts
		for _, a := range alerts {
			if _, ok := seen[a.Rule]; !ok && want[a.Rule] != "" {
				seen[a.Rule] = time.Now()
			}
		}
	}
	var lat []time.Duration
	for _, a := range attacks {
		d := seen[a.rule].Sub(a.at)
		lat = append(lat, d)
		t.Logf("%-36s stored %v after the request", a.rule, d.Round(time.Millisecond))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("request -> stored alert: median %v, max %v (webhook batch wait 200 ms)", lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))

	// Let late batches in, store the aggregated counts (what Run does
	// every 30 s; a cancelled Run flushes once), then check exactly what
	// was raised.
	flushed, cancel := context.WithCancel(ctx)
	cancel()
	for end := time.Now().Add(15 * time.Second); ; {
		time.Sleep(500 * time.Millisecond)
		if err := det.Run(flushed); err != nil {
			t.Fatal(err)
		}
		page, err := st.ListAlerts(ctx, store.AlertFilter{Cluster: cl.ID, Rule: "audit.privileged-container"})
		if err != nil {
			t.Fatal(err)
		}
		// The Deployment, its ReplicaSet and its two pods.
		if len(page.Alerts) == 1 && page.Alerts[0].Count >= 4 || time.Now().After(end) {
			break
		}
	}
	page, err := st.ListAlerts(ctx, store.AlertFilter{Cluster: cl.ID, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	alerts = page.Alerts
	byRule := map[string][]store.Alert{}
	for _, a := range alerts {
		byRule[a.Rule] = append(byRule[a.Rule], a)
		if want[a.Rule] == "" {
			t.Errorf("unexpected alert %s (user %v): %s", a.Rule, userOf(a), a.Title)
		} else if u := userOf(a); u != want[a.Rule] {
			t.Errorf("alert %s attributed to %q, want %s", a.Rule, u, want[a.Rule])
		}
	}
	for rule := range want {
		if n := len(byRule[rule]); n != 1 {
			t.Errorf("%s: %d alerts, want exactly 1: %s", rule, n, summary(byRule[rule]))
		}
	}
	// The privileged Deployment's controller-made ReplicaSet and pods are
	// its alert's, mallory's.
	if as := byRule["audit.privileged-container"]; len(as) == 1 {
		if as[0].Workload != "Deployment/shop/miner" {
			t.Errorf("privileged-container alert about %q, want Deployment/shop/miner", as[0].Workload)
		}
		// The Deployment, and the ReplicaSet and pods the controllers made
		// of it, counted in the one alert.
		if as[0].Count < 4 {
			t.Errorf("privileged-container count %d: the controllers' ReplicaSet and pods were not counted in", as[0].Count)
		}
		t.Logf("privileged Deployment: one alert, %s's, count %d (the Deployment, its ReplicaSet and pods)", userOf(as[0]), as[0].Count)
	}

	// The API server's own audit log, replayed (vigil audit replay), raises
	// the same alerts.
	replayed, stats, err := controlplane.Replay(rules, "e2e", []string{kc.AuditLogPath()})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Events == 0 || stats.Rejected() != 0 {
		t.Errorf("replaying %s: %+v", kc.AuditLogPath(), stats)
	}
	got := map[string]string{}
	for _, a := range replayed {
		got[a.Rule] = a.User.Name
	}
	for rule, user := range want {
		if got[rule] != user {
			t.Errorf("replay: %s by %q, want %s", rule, got[rule], user)
		}
	}
	if len(got) != len(want) {
		t.Errorf("replay raised %v, want %v", got, want)
	}
}

func deployment(name string, privileged bool) *appsv1.Deployment {
	replicas := int32(2)
	c := corev1.Container{Name: "app", Image: "registry.example.com/shop/" + name + ":1"}
	if privileged {
		c.SecurityContext = &corev1.SecurityContext{Privileged: &privileged}
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{c}}}},
	}
}

func pod(name string, volumes []corev1.Volume) *corev1.Pod {
	c := corev1.Container{Name: "app", Image: "registry.example.com/shop/tools:1"}
	for _, v := range volumes {
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: v.Name, MountPath: "/host"})
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{Containers: []corev1.Container{c}, Volumes: volumes}}
}

// must fails the test when a setup or benign call fails.
func must(t *testing.T, what string) func(any, error) {
	t.Helper()
	return func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
}

func userOf(a store.Alert) string {
	if a.User == nil {
		return ""
	}
	return a.User.Name
}

func summary(as []store.Alert) string {
	var out []string
	for _, a := range as {
		out = append(out, fmt.Sprintf("%s(%s x%d %s)", a.Rule, userOf(a), a.Count, a.Workload))
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

func missing(want map[string]string, seen map[string]time.Time) []string {
	var out []string
	for r := range want {
		if _, ok := seen[r]; !ok {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out
}
