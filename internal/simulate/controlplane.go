package simulate

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestNamespace is the namespace whose pods Vigil's control-plane test
// alert (audit.vigil-test-alert) is about; it need not exist.
const TestNamespace = "vigil-alerttest"

func controlPlane() *Scenario {
	return &Scenario{
		ID:           "control-plane",
		Summary:      "queries the test namespace, creates a privileged pod and a cluster-admin binding, deletes events (audit log)",
		Rules:        []string{"audit.privileged-container", "audit.cluster-admin-binding", "audit.events-deleted"},
		NeedsCluster: true,
		ControlPlane: true,
		Run: func(ctx context.Context, s *Session) error {
			api, ok := s.Victim.(*apiVictim)
			if !ok {
				return errors.New("control-plane runs only against a cluster")
			}
			return api.attack(ctx, s)
		},
	}
}

// attack does what an intruder holding a powerful kubeconfig does, each
// object named vigil-sim-*-<random> and removed right after: the audit
// log keeps the requests, which is what the rules read.
func (a *apiVictim) attack(ctx context.Context, s *Session) error {
	kc, ns, suffix := a.kube, a.namespace, randomHex(4)
	labels := map[string]string{}
	for k, v := range Labels {
		labels[k] = v
	}
	cleanup := context.WithoutCancel(ctx)

	// What `kubectl get pods -n vigil-alerttest` asks: Vigil's own test
	// of the audit pipeline (audit.vigil-test-alert, not a threat).
	pods, err := kc.CoreV1().Pods(TestNamespace).List(ctx, metav1.ListOptions{Limit: 10})
	if err != nil {
		return fmt.Errorf("list pods in %s: %w", TestNamespace, err)
	}
	s.Logf("  pods in %s: %d", TestNamespace, len(pods.Items))

	// A privileged pod. It is admitted (the rule is about pods the API
	// server accepted) but never runs: it selects a node label no node
	// has.
	privileged, no := true, false
	grace := int64(0)
	name := Prefix + "privileged-" + suffix
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.PodSpec{
			NodeSelector:                  map[string]string{scenarioLabel: "never-scheduled"},
			AutomountServiceAccountToken:  &no,
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{Name: "privileged", Image: a.image, ImagePullPolicy: corev1.PullIfNotPresent,
				Command: []string{"/bin/sleep", "1"}, SecurityContext: &corev1.SecurityContext{Privileged: &privileged}}},
		},
	}
	s.Step("audit.privileged-container")
	s.Object("pods", ns, name)
	if _, err := kc.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) {
			return fmt.Errorf("the privileged pod was refused (%v): audit.privileged-container is raised for pods the API server admits; "+
				"allow privileged pods in namespace %s (an admission policy denies them) to run this scenario", err, ns)
		}
		return fmt.Errorf("create privileged pod: %w", err)
	}
	s.Logf("  created privileged pod %s/%s (never scheduled)", ns, name)
	if err := kc.CoreV1().Pods(ns).Delete(cleanup, name, metav1.DeleteOptions{GracePeriodSeconds: &grace}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete privileged pod: %w", err)
	}

	// cluster-admin for a throwaway service account, deleted at once.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: Prefix + "admin-" + suffix, Namespace: ns, Labels: labels}}
	if _, err := kc.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create service account: %w", err)
	}
	defer func() { _ = kc.CoreV1().ServiceAccounts(ns).Delete(cleanup, sa.Name, metav1.DeleteOptions{}) }()
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: Prefix + "admin-" + suffix, Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa.Name, Namespace: ns}},
	}
	s.Step("audit.cluster-admin-binding")
	s.Object("clusterrolebindings", "", crb.Name)
	if _, err := kc.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create ClusterRoleBinding to cluster-admin: %w", err)
	}
	s.Logf("  bound cluster-admin to %s/%s (ClusterRoleBinding %s)", ns, sa.Name, crb.Name)
	if err := kc.RbacV1().ClusterRoleBindings().Delete(cleanup, crb.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete ClusterRoleBinding %s: %w", crb.Name, err)
	}

	// An event to hide, then every event of the namespace deleted.
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: Prefix + "event-" + suffix, Namespace: ns, Labels: labels},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: name, APIVersion: "v1"},
		Reason:         "VigilSimulation", Message: "vigil simulate: an event the attacker deletes", Type: corev1.EventTypeWarning,
		FirstTimestamp: metav1.Now(), LastTimestamp: metav1.Now(), Count: 1,
		Source: corev1.EventSource{Component: "vigil-simulate"},
	}
	if _, err := kc.CoreV1().Events(ns).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create event: %w", err)
	}
	s.Step("audit.events-deleted")
	s.Object("events", ns, "")
	if err := kc.CoreV1().Events(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		return fmt.Errorf("delete events in %s: %w", ns, err)
	}
	s.Logf("  deleted the events of namespace %s", ns)
	return nil
}
