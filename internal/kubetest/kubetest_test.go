package kubetest_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/vigil-sec/vigil/internal/kubetest"
)

// auditEvent is the part of an audit.k8s.io/v1 Event these tests read.
type auditEvent struct {
	Stage string `json:"stage"`
	Verb  string `json:"verb"`
	User  struct {
		Username string   `json:"username"`
		Groups   []string `json:"groups"`
	} `json:"user"`
	ObjectRef *struct {
		Resource  string `json:"resource"`
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
}

func (e auditEvent) matches(user, verb, resource, namespace string) bool {
	return e.Stage == "ResponseComplete" && e.User.Username == user && e.Verb == verb &&
		e.ObjectRef != nil && e.ObjectRef.Resource == resource && e.ObjectRef.Namespace == namespace &&
		e.ResponseStatus != nil && e.ResponseStatus.Code/100 == 2
}

// auditSink is an audit webhook receiver that records every event POSTed to
// /api/v1/audit with the right bearer token.
type auditSink struct {
	token string
	mu    sync.Mutex
	recv  []auditEvent
	errs  []string
}

func (s *auditSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/api/v1/audit" {
		http.NotFound(w, r)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+s.token {
		s.fail("bad Authorization header %q", r.Header.Get("Authorization"))
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	var list struct {
		Kind       string       `json:"kind"`
		APIVersion string       `json:"apiVersion"`
		Items      []auditEvent `json:"items"`
	}
	body, err := io.ReadAll(r.Body)
	if err == nil {
		err = json.Unmarshal(body, &list)
	}
	if err != nil || list.Kind != "EventList" || list.APIVersion != "audit.k8s.io/v1" {
		s.fail("bad body (%v): %.200s", err, body)
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.recv = append(s.recv, list.Items...)
	s.mu.Unlock()
}

func (s *auditSink) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, fmt.Sprintf(format, args...))
}

func (s *auditSink) find(match func(auditEvent) bool) (bool, int, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.recv {
		if match(e) {
			return true, len(s.recv), s.errs
		}
	}
	return false, len(s.recv), s.errs
}

func TestAuditWebhookSeesStaticUser(t *testing.T) {
	sink := &auditSink{token: "sink-token"}
	srv := httptest.NewTLSServer(sink)
	t.Cleanup(srv.Close)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})

	c := kubetest.Start(t, kubetest.Options{
		Users: []kubetest.User{{Name: "alice", Groups: []string{"vigil:testers"}}},
		AuditWebhook: &kubetest.AuditWebhook{
			URL:    srv.URL + "/api/v1/audit",
			CAData: caPEM,
			Token:  sink.token,
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	admin := c.Clientset(kubetest.Admin)
	const ns = "audit-test"
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	if _, err := admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "configmap-writer"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create", "get"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create role: %v", err)
	}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "alice-configmap-writer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "configmap-writer"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create role binding: %v", err)
	}

	// Client certificates signed by the cluster CA authenticate too.
	carol, err := kubernetes.NewForConfig(c.CertConfig("carol", "vigil:cert-users"))
	if err != nil {
		t.Fatalf("clientset for carol: %v", err)
	}
	review, err := carol.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("carol's SelfSubjectReview: %v", err)
	}
	if u := review.Status.UserInfo; u.Username != "carol" || !slices.Contains(u.Groups, "vigil:cert-users") {
		t.Fatalf("carol's client certificate authenticated as %+v", u)
	}

	alice := c.Clientset("alice")
	// Alice may not read secrets: checks that RBAC, not a superuser, decides.
	if _, err := alice.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("alice listing secrets: got %v, want Forbidden", err)
	}
	// The RBAC authorizer sees the new binding through an informer: retry
	// Forbidden briefly.
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "hello"}, Data: map[string]string{"k": "v"}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := alice.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
		if err == nil {
			break
		}
		if !apierrors.IsForbidden(err) || time.Now().After(deadline) {
			t.Fatalf("alice creating a ConfigMap: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	deadline = time.Now().Add(10 * time.Second)
	for {
		ok, n, errs := sink.find(func(e auditEvent) bool { return e.matches("alice", "create", "configmaps", ns) })
		if len(errs) > 0 {
			t.Fatalf("audit webhook received bad requests: %v", errs)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audit event for alice creating a ConfigMap within 10s (%d events received)", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestControllerManagerCreatesPods(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{AuditLog: true})
	c.StartControllerManager()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	admin := c.Clientset(kubetest.Admin)
	labels := map[string]string{"app": "web"}
	one := int32(1)
	dep, err := admin.AppsV1().Deployments("default").Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				// Never pulled: there is no kubelet.
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.invalid/web:1"}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create deployment: %v", err)
	}

	var pod corev1.Pod
	deadline := time.Now().Add(60 * time.Second)
	for pod.Name == "" {
		pods, err := admin.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			t.Fatalf("list pods: %v", err)
		}
		for _, p := range pods.Items {
			if owner := metav1.GetControllerOf(&p); owner != nil && owner.Kind == "ReplicaSet" {
				rs, err := admin.AppsV1().ReplicaSets("default").Get(ctx, owner.Name, metav1.GetOptions{})
				if err != nil {
					t.Fatalf("get replica set %s: %v", owner.Name, err)
				}
				if o := metav1.GetControllerOf(rs); o == nil || o.UID != dep.UID {
					t.Fatalf("replica set %s is not controlled by deployment web: %v", rs.Name, o)
				}
				pod = p
			}
		}
		if pod.Name == "" {
			if time.Now().After(deadline) {
				t.Fatalf("no pod of deployment web within 60s")
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	t.Logf("pod %s created, phase %s", pod.Name, pod.Status.Phase)

	// The audit log is written before the response (blocking mode), so the
	// event is there by now; allow a little slack anyway.
	const rsController = "system:serviceaccount:kube-system:replicaset-controller"
	deadline = time.Now().Add(10 * time.Second)
	for {
		found, n, err := scanAuditLog(c.AuditLogPath(), func(e auditEvent) bool {
			return e.matches(rsController, "create", "pods", "default")
		})
		if err != nil {
			t.Fatal(err)
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audit event for %s creating a pod within 10s (%d events in %s)", rsController, n, c.AuditLogPath())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// scanAuditLog reports whether an event in the JSON-lines audit log matches.
// A last line still being written is ignored.
func scanAuditLog(path string, match func(auditEvent) bool) (bool, int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, 0, fmt.Errorf("read audit log: %w", err)
	}
	lines := strings.Split(string(b), "\n")
	lines = lines[:len(lines)-1] // "" after the final newline, or a partial line
	for i, line := range lines {
		var e auditEvent
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			return false, i, fmt.Errorf("audit log line %d: %w", i+1, err)
		}
		if match(e) {
			return true, i + 1, nil
		}
	}
	return false, len(lines), nil
}
