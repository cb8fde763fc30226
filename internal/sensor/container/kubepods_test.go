package container

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// KubePods answers for its node's pods, by uid, with the controlling owner
// the resolver turns into the workload.
func TestKubePods(t *testing.T) {
	yes := true
	web := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-6d4cf56db6-x7k2p", Namespace: "shop", UID: "u-web",
		Labels:          map[string]string{"app": "web"},
		OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-6d4cf56db6", Controller: &yes}}},
		Spec: corev1.PodSpec{NodeName: "node-a"}}
	client := fake.NewClientset(web)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k, err := StartKubePods(ctx, client, "node-a", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := k.Pod("u-web")
	if !ok || p.Name != web.Name || p.Namespace != "shop" || p.Labels["app"] != "web" || p.OwnerKind != "ReplicaSet" {
		t.Fatalf("Pod(u-web) = %+v, %v", p, ok)
	}
	if w := WorkloadFromOwners(p.OwnerKind, p.OwnerName); w != "Deployment/web" {
		t.Errorf("workload %q, want Deployment/web", w)
	}
	if _, ok := k.Pod("u-other"); ok {
		t.Error("an unknown uid answered")
	}
	// A pod created later is found once the watch delivers it.
	late := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "late", Namespace: "shop", UID: "u-late"}, Spec: corev1.PodSpec{NodeName: "node-a"}}
	if _, err := client.CoreV1().Pods("shop").Create(ctx, late, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if p, ok := k.Pod("u-late"); ok && p.OwnerKind == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the new pod never appeared")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
