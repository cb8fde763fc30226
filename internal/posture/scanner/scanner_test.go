package scanner_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/vigil-sec/vigil/internal/kubetest"
	"github.com/vigil-sec/vigil/internal/posture"
	"github.com/vigil-sec/vigil/internal/posture/scanner"
	"github.com/vigil-sec/vigil/internal/ship"
)

// sink applies what the scanner sends the way the server does: findings in
// order (a removed one deletes), then a completed scan drops the findings
// of other scans. It also keeps every finding sent, in order.
type sink struct {
	mu       sync.Mutex
	current  map[string]ship.Finding
	sent     []ship.Finding
	complete []string
}

func newSink() *sink { return &sink{current: map[string]ship.Finding{}} }

func (s *sink) Findings(fs []ship.Finding) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range fs {
		s.sent = append(s.sent, f)
		if f.Status == ship.Removed {
			delete(s.current, f.ID)
		} else {
			s.current[f.ID] = f
		}
	}
}

func (s *sink) ScanComplete(scan string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.complete = append(s.complete, scan)
	for id, f := range s.current {
		if f.Scan != scan {
			delete(s.current, id)
		}
	}
}

// state is "resource check status" for every current finding of the
// resources with one of the prefixes, sorted.
func (s *sink) state(prefixes ...string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, f := range s.current {
		for _, p := range prefixes {
			if strings.HasPrefix(f.Resource, p) {
				out = append(out, f.Resource+" "+f.Check+" "+f.Status)
			}
		}
	}
	sort.Strings(out)
	return out
}

func (s *sink) sentCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sent)
}

// eventually polls cond for up to 20 s.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err = cond(); err == nil {
			return
		}
	}
	t.Fatalf("%s: %v", what, err)
}

func seedConfig(t testing.TB) *posture.Config {
	t.Helper()
	cfg, err := posture.LoadConfig("../testdata/seed-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// seedObjects decodes a seed manifest into its objects, by kind.
func seedObjects(t testing.TB, file string) map[string]runtime.Object {
	t.Helper()
	data, err := os.ReadFile("../testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]runtime.Object{}
	for _, doc := range strings.Split(string(data), "\n---\n") {
		objs, err := posture.Decode([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			out[o.GetObjectKind().GroupVersionKind().Kind] = o
		}
	}
	return out
}

// expected is what posture itself says of obj, in the sink's state form.
func expected(cfg *posture.Config, objs ...runtime.Object) []string {
	var out []string
	for _, o := range objs {
		for _, r := range posture.Evaluate(cfg, o) {
			status := ship.Healthy
			if !r.Healthy {
				status = ship.Unhealthy
			}
			out = append(out, r.Workload.String()+" "+r.Recommendation+" "+status)
		}
	}
	sort.Strings(out)
	return out
}

func same(got, want []string) error {
	if slices.Equal(got, want) {
		return nil
	}
	return fmt.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
}

// TestScannerKubeAPIServer runs the scanner against a real kube-apiserver
// and kube-controller-manager: the seed's healthy and unhealthy workloads
// get exactly the findings posture gives their manifests, named after the
// Deployment (not the ReplicaSets and pods the controllers make); a fix,
// a deletion and a config change send only what changed; excluded
// namespaces give nothing; and a restarted scanner's completed scan
// withdraws what was deleted while it was down.
func TestScannerKubeAPIServer(t *testing.T) {
	cluster := kubetest.Start(t, kubetest.Options{})
	cluster.StartControllerManager()
	client := cluster.Clientset(kubetest.Admin)
	ctx := context.Background()
	cfg := seedConfig(t)

	for _, ns := range []string{"shop", "vigil"} {
		if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	unhealthy, healthy := seedObjects(t, "unhealthy.yaml"), seedObjects(t, "healthy.yaml")
	create := func(ns string, obj runtime.Object) {
		t.Helper()
		var err error
		switch o := obj.DeepCopyObject().(type) {
		case *appsv1.Deployment:
			o.Namespace = ns
			_, err = client.AppsV1().Deployments(ns).Create(ctx, o, metav1.CreateOptions{})
		case *corev1.Service:
			o.Namespace = ns
			_, err = client.CoreV1().Services(ns).Create(ctx, o, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, objs := range []map[string]runtime.Object{unhealthy, healthy} {
		create("shop", objs["Deployment"])
		create("shop", objs["Service"])
		create("vigil", objs["Deployment"]) // excluded by default
	}
	bare := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "debug", Namespace: "shop"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "sh", Image: "busybox",
			SecurityContext: &corev1.SecurityContext{Privileged: new(true)}}}}}
	if _, err := client.CoreV1().Pods("shop").Create(ctx, bare, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The controllers make the ReplicaSets and their pods (unscheduled:
	// there is no scheduler or kubelet, but the pods exist).
	eventually(t, "controller-made pods", func() error {
		pods, err := client.CoreV1().Pods("shop").List(ctx, metav1.ListOptions{})
		if err != nil || len(pods.Items) < 1+3+1 {
			return fmt.Errorf("pods in shop: %d, %v", len(pods.Items), err)
		}
		return nil
	})

	want := expected(cfg, withNS(unhealthy["Deployment"], "shop"), withNS(unhealthy["Service"], "shop"),
		withNS(healthy["Deployment"], "shop"), withNS(healthy["Service"], "shop"), bare)
	if len(want) < 20 || !slices.ContainsFunc(want, func(s string) bool { return strings.HasSuffix(s, ship.Unhealthy) }) {
		t.Fatalf("the seed should give many results, some unhealthy: %v", want)
	}

	out := newSink()
	run := func(cfg *posture.Config, out *sink) (*scanner.Scanner, context.CancelFunc, chan error) {
		s, err := scanner.New(scanner.Config{Client: client, Posture: cfg, Sink: out})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(ctx)
		done, stopped := make(chan error, 1), make(chan struct{})
		go func() { done <- s.Run(ctx); close(stopped) }()
		t.Cleanup(func() {
			cancel()
			select {
			case <-stopped:
			case <-time.After(10 * time.Second):
				t.Error("the scanner did not stop")
			}
		})
		return s, cancel, done
	}
	s, cancel, done := run(cfg, out)
	eventually(t, "first scan", func() error {
		if !s.Stats().Synced {
			return fmt.Errorf("not synced")
		}
		return same(out.state("Deployment/", "Service/shop/", "Pod/", "ReplicaSet/"), want)
	})
	if st := s.Stats(); st.Workloads != 6 || st.Unhealthy == 0 {
		t.Errorf("stats %+v: want 6 workloads (2 Deployments, 3 Services with default/kubernetes, 1 pod) and some unhealthy", st)
	}
	for _, f := range out.sent {
		if f.Scan != s.ScanID() || f.Namespace != "shop" && f.Resource != "Service/default/kubernetes" {
			t.Fatalf("finding %+v: want scan %s in namespace shop", f, s.ScanID())
		}
	}

	// Fixing one thing sends one finding.
	before := out.sentCount()
	dep, err := client.AppsV1().Deployments("shop").Get(ctx, "nginx-unhealthy-deployment", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dep.Spec.Template.Spec.HostIPC, dep.Spec.Template.Spec.HostPID = false, false
	if _, err := client.AppsV1().Deployments("shop").Update(ctx, dep, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	const hostNS = "Deployment/shop/nginx-unhealthy-deployment " + posture.NoHostPIDIPC
	eventually(t, "fix", func() error {
		if !slices.Contains(out.state("Deployment/"), hostNS+" "+ship.Healthy) {
			return fmt.Errorf("%s not healthy yet", hostNS)
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond) // the controllers' own updates must send nothing more
	if n := out.sentCount() - before; n > 3 {
		t.Errorf("a one-field fix sent %d findings; want only those that changed", n)
	}

	// Deleting a workload withdraws its findings.
	if err := client.CoreV1().Pods("shop").Delete(ctx, "debug", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "delete", func() error {
		if got := out.state("Pod/"); len(got) > 0 {
			return fmt.Errorf("still %v", got)
		}
		return nil
	})

	// A config change: disabling a recommendation withdraws its findings.
	off := seedConfig(t)
	off.Recommendations[posture.NoPrivileged].Mode = posture.Disabled
	if err := off.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPosture(off); err != nil {
		t.Fatal(err)
	}
	eventually(t, "config change", func() error {
		for _, f := range out.state("Deployment/") {
			if strings.Contains(f, " "+posture.NoPrivileged+" ") {
				return fmt.Errorf("still %s", f)
			}
		}
		return nil
	})

	// Stopped, a workload is deleted; the next run's completed scan
	// withdraws it.
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := client.AppsV1().Deployments("shop").Delete(ctx, "redis-healthy-deployment", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	s2, _, _ := run(off, out)
	eventually(t, "restart", func() error {
		if !s2.Stats().Synced {
			return fmt.Errorf("not synced")
		}
		for _, f := range out.state("Deployment/") {
			if strings.Contains(f, "redis-healthy-deployment") {
				return fmt.Errorf("still %s", f)
			}
		}
		return nil
	})
	if len(out.state("Deployment/shop/nginx-unhealthy-deployment")) == 0 {
		t.Error("the restarted scanner withdrew a workload that still exists")
	}
}

func withNS(obj runtime.Object, ns string) runtime.Object {
	o := obj.DeepCopyObject()
	o.(metav1.Object).SetNamespace(ns)
	return o
}

// TestScannerPodsOfOtherControllers: pods of a controller the scanner does
// not watch (an Argo Rollout, a custom operator) report as that
// controller; its findings stay while any of its pods exists.
func TestScannerPodsOfOtherControllers(t *testing.T) {
	pod := func(name string) *corev1.Pod {
		yes := true
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop",
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Rollout", Name: "web", UID: "u1", Controller: &yes}}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}}}
	}
	var client kubernetes.Interface = fake.NewClientset(pod("web-1"), pod("web-2"))
	out := newSink()
	s, err := scanner.New(scanner.Config{Client: client, Posture: seedConfig(t), Sink: out})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	eventually(t, "scan", func() error {
		if len(out.state("Rollout/shop/web")) == 0 || !s.Stats().Synced {
			return fmt.Errorf("no findings for Rollout/shop/web")
		}
		return nil
	})
	n := len(out.state("Rollout/shop/web"))
	if err := client.CoreV1().Pods("shop").Delete(ctx, "web-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if got := len(out.state("Rollout/shop/web")); got != n {
		t.Fatalf("one of two pods deleted: %d findings, want %d", got, n)
	}
	if err := client.CoreV1().Pods("shop").Delete(ctx, "web-2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "last pod deleted", func() error {
		if got := out.state("Rollout/"); len(got) > 0 {
			return fmt.Errorf("still %v", got)
		}
		return nil
	})
}
