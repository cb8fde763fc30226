package container

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"

	"github.com/vigil-sec/vigil/internal/kubetest"
)

// KubePods, against a real kube-apiserver and with only the chart's rights
// (get, list and watch pods), answers for its own node's pods by uid, with
// the controlling owner the resolver turns into the workload; it never
// keeps another node's pods, and it sees pods created and deleted after
// it started.
func TestKubePods(t *testing.T) {
	cluster := kubetest.Start(t, kubetest.Options{Users: []kubetest.User{{Name: "sensor"}}})
	admin := cluster.Clientset(kubetest.Admin)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	grantPodReader(ctx, t, admin, "sensor")
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// No controller manager runs to make it, and pods need one.
	if _, err := admin.CoreV1().ServiceAccounts("shop").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	createPod := func(name, app, node string, owner *metav1.OwnerReference) *corev1.Pod {
		t.Helper()
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", Labels: map[string]string{"app": app}},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
		if owner != nil {
			p.OwnerReferences = []metav1.OwnerReference{*owner}
		}
		p, err := admin.CoreV1().Pods("shop").Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	rs := &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-6d4cf56db6", UID: "rs-uid", Controller: new(true)}
	web := createPod("web-6d4cf56db6-x7k2p", "web", "node-a", rs)
	other := createPod("elsewhere", "other", "node-b", nil)

	mc, err := metadata.NewForConfig(cluster.RESTConfig("sensor"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := StartKubePods(ctx, mc, "node-a", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := k.Pod(string(web.UID))
	if !ok || p.Name != web.Name || p.Namespace != "shop" || p.Labels["app"] != "web" || p.OwnerKind != "ReplicaSet" {
		t.Fatalf("Pod(web) = %+v, %v", p, ok)
	}
	if w := WorkloadFromOwners(p.OwnerKind, p.OwnerName); w != "Deployment/web" {
		t.Errorf("workload %q, want Deployment/web", w)
	}
	if _, ok := k.Pod(string(other.UID)); ok {
		t.Error("a pod of another node is in node-a's cache")
	}
	if n := len(k.informer.GetStore().List()); n != 1 {
		t.Errorf("cache holds %d pods, want node-a's 1", n)
	}

	// A pod created later is found once the watch delivers it, and a
	// deleted one goes.
	late := createPod("late", "late", "node-a", nil)
	eventually(t, "the new pod", func() bool { p, ok := k.Pod(string(late.UID)); return ok && p.OwnerKind == "" })
	if err := admin.CoreV1().Pods("shop").Delete(ctx, web.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted pod to go", func() bool { _, ok := k.Pod(string(web.UID)); return !ok })
}

// A sensor without the right to list pods gets a clear error, not a hang.
func TestKubePodsForbidden(t *testing.T) {
	cluster := kubetest.Start(t, kubetest.Options{Users: []kubetest.User{{Name: "nobody"}}})
	mc, err := metadata.NewForConfig(cluster.RESTConfig("nobody"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := StartKubePods(context.Background(), mc, "node-a", 3*time.Second); err == nil {
		t.Fatal("StartKubePods succeeded without the right to list pods")
	}
}

// grantPodReader gives user exactly the chart's sensor ClusterRole: get,
// list and watch pods.
func grantPodReader(ctx context.Context, t *testing.T, admin kubernetes.Interface, user string) {
	t.Helper()
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "vigil-sensor"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}}}}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "vigil-sensor"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: "User", Name: user}}}
	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10 s for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
