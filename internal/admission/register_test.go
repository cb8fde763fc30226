package admission

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// TestWebhookRulesMatchKinds keeps the registration's rules and the kinds
// Webhook evaluates the same: a kind added to one but not the other is
// either never sent or sent for nothing.
func TestWebhookRulesMatchKinds(t *testing.T) {
	kindOf := map[string]string{ // resource -> kind
		"pods": "Pod", "pods/ephemeralcontainers": "Pod", "services": "Service",
		"replicationcontrollers": "ReplicationController", "deployments": "Deployment",
		"replicasets": "ReplicaSet", "statefulsets": "StatefulSet", "daemonsets": "DaemonSet",
		"jobs": "Job", "cronjobs": "CronJob",
	}
	registered := map[metav1.GroupVersionKind]bool{}
	for _, r := range webhookRules {
		if !slices.Equal(r.Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}) {
			t.Errorf("rule %v: operations %v, want CREATE and UPDATE", r.Rule, r.Operations)
		}
		if r.Scope == nil || *r.Scope != admissionregistrationv1.NamespacedScope {
			t.Errorf("rule %v: scope is not Namespaced", r.Rule)
		}
		for _, g := range r.APIGroups {
			for _, v := range r.APIVersions {
				for _, res := range r.Resources {
					kind, ok := kindOf[res]
					if !ok {
						t.Errorf("rule for unknown resource %s", res)
						continue
					}
					registered[metav1.GroupVersionKind{Group: g, Version: v, Kind: kind}] = true
				}
			}
		}
	}
	for gvk := range kinds {
		if !registered[gvk] {
			t.Errorf("Webhook evaluates %v, but no rule sends it", gvk)
		}
	}
	for gvk := range registered {
		if _, ok := kinds[gvk]; !ok {
			t.Errorf("a rule sends %v, which Webhook does not evaluate", gvk)
		}
	}
	if !slices.Contains(webhookRules[0].Resources, "pods/ephemeralcontainers") {
		t.Error("no rule for pods/ephemeralcontainers")
	}
}

func testRegistration() Registration {
	path := "/validate"
	return Registration{
		Name:               "vigil",
		Service:            &admissionregistrationv1.ServiceReference{Namespace: "vigil", Name: "vigil-agent", Path: &path},
		ExcludedNamespaces: []string{"vigil", "kube-system", "vigil"},
		CABundle:           []byte("bundle 1"),
	}
}

func vwcWrites(cs *fake.Clientset) (n int) {
	for _, a := range cs.Actions() {
		if a.GetResource().Resource == "validatingwebhookconfigurations" && a.GetVerb() != "get" {
			n++
		}
	}
	return n
}

func TestRegister(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset()
	reg := testRegistration()
	if err := Register(ctx, cs, reg); err != nil {
		t.Fatal(err)
	}
	vwcs := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	got, err := vwcs.Get(ctx, "vigil", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Labels[ManagedByLabel] != ManagedByValue {
		t.Errorf("labels %v", got.Labels)
	}
	if len(got.Webhooks) != 1 {
		t.Fatalf("%d webhooks", len(got.Webhooks))
	}
	w := got.Webhooks[0]
	if w.Name != DefaultWebhookName || *w.FailurePolicy != admissionregistrationv1.Ignore || *w.TimeoutSeconds != DefaultTimeoutSeconds ||
		*w.SideEffects != admissionregistrationv1.SideEffectClassNone || *w.MatchPolicy != admissionregistrationv1.Equivalent ||
		!slices.Equal(w.AdmissionReviewVersions, []string{"v1"}) {
		t.Errorf("webhook %+v", w)
	}
	if s := w.ClientConfig.Service; s == nil || s.Name != "vigil-agent" || *s.Path != "/validate" || *s.Port != 443 || string(w.ClientConfig.CABundle) != "bundle 1" {
		t.Errorf("client config %+v", w.ClientConfig)
	}
	want := []metav1.LabelSelectorRequirement{{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", "vigil"}}}
	if !slices.EqualFunc(w.NamespaceSelector.MatchExpressions, want, func(a, b metav1.LabelSelectorRequirement) bool {
		return a.Key == b.Key && a.Operator == b.Operator && slices.Equal(a.Values, b.Values)
	}) {
		t.Errorf("namespace selector %+v", w.NamespaceSelector)
	}

	// Unchanged: only a read.
	cs.ClearActions()
	if err := Register(ctx, cs, reg); err != nil {
		t.Fatal(err)
	}
	if n := vwcWrites(cs); n != 0 {
		t.Errorf("%d writes re-registering the same", n)
	}

	// Edited by hand, and a new bundle: put back.
	got.Webhooks[0].ClientConfig.CABundle = []byte("edited")
	got.Webhooks[0].Rules = got.Webhooks[0].Rules[:1]
	delete(got.Labels, ManagedByLabel)
	if _, err := vwcs.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	reg.CABundle = []byte("bundle 2")
	if err := Register(ctx, cs, reg); err != nil {
		t.Fatal(err)
	}
	got, _ = vwcs.Get(ctx, "vigil", metav1.GetOptions{})
	if string(got.Webhooks[0].ClientConfig.CABundle) != "bundle 2" || len(got.Webhooks[0].Rules) != len(webhookRules) || got.Labels[ManagedByLabel] != ManagedByValue {
		t.Errorf("not repaired: %+v", got)
	}

	if err := Unregister(ctx, cs, "vigil"); err != nil {
		t.Fatal(err)
	}
	if list, _ := vwcs.List(ctx, metav1.ListOptions{}); len(list.Items) != 0 {
		t.Errorf("%d configurations left", len(list.Items))
	}
	if err := Unregister(ctx, cs, "vigil"); err != nil {
		t.Errorf("Unregister of a missing configuration: %v", err)
	}
}

func TestUnregisterLeavesOthersAlone(t *testing.T) {
	cs := fake.NewClientset(&admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "someone-else"}})
	if err := Unregister(context.Background(), cs, "someone-else"); err == nil || !strings.Contains(err.Error(), "not managed by Vigil") {
		t.Errorf("Unregister of a configuration Vigil does not manage: %v", err)
	}
}

func TestRegisterRefusesBadRegistration(t *testing.T) {
	for name, mod := range map[string]func(*Registration){
		"no name":          func(r *Registration) { r.Name = "" },
		"no bundle":        func(r *Registration) { r.CABundle = nil },
		"service and URL":  func(r *Registration) { r.URL = "https://127.0.0.1:8443/validate" },
		"neither":          func(r *Registration) { r.Service = nil },
		"http URL":         func(r *Registration) { r.Service, r.URL = nil, "http://127.0.0.1/validate" },
		"timeout too long": func(r *Registration) { r.TimeoutSeconds = 31 },
	} {
		reg := testRegistration()
		mod(&reg)
		if err := Register(context.Background(), fake.NewClientset(), reg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestKeeper(t *testing.T) {
	cs := fake.NewClientset()
	var bundle atomic.Pointer[string]
	setBundle := func(s string) { bundle.Store(&s) }
	setBundle("bundle 1")
	getBundle := func() []byte { return []byte(*bundle.Load()) }
	k, err := NewKeeper(KeeperConfig{Client: cs, Registration: testRegistration(), CABundle: getBundle, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	waitBundle := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			got, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "vigil", metav1.GetOptions{})
			if err == nil && string(got.Webhooks[0].ClientConfig.CABundle) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("caBundle not %q after 5s", want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitBundle("bundle 1")
	setBundle("bundle 2")
	k.Kick()
	waitBundle("bundle 2")
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}
