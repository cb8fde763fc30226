// Package audittest makes realistic Kubernetes audit traffic for tests
// and benchmarks: what a busy cluster's API server logs, mostly reads and
// lease renewals by the control plane, with a few writes by people.
package audittest

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"time"
)

// Mix returns n audit events (JSON, audit.k8s.io/v1 Event) of a busy
// cluster, deterministic for a seed: 70% reads (get, list, watch) by
// system identities and controllers, 20% lease and status updates by the
// control plane, 8% reads and writes by people and CI, 2% pod and
// workload creations with full pod specs (a few of them risky).
func Mix(n int, seed int64, start time.Time) [][]byte {
	r := rand.New(rand.NewSource(seed))
	out := make([][]byte, 0, n)
	for i := range n {
		at := start.Add(time.Duration(i) * 250 * time.Microsecond)
		var ev map[string]any
		switch p := r.Intn(100); {
		case p < 70:
			ev = systemRead(r, i)
		case p < 90:
			ev = controlPlaneUpdate(r, i)
		case p < 98:
			ev = personRequest(r, i)
		default:
			ev = creation(r, i)
		}
		ev["kind"], ev["apiVersion"], ev["auditID"] = "Event", "audit.k8s.io/v1", fmt.Sprintf("%08x-0000-4000-8000-%012x", seed, i)
		ev["requestReceivedTimestamp"] = at.Format(time.RFC3339Nano)
		ev["stageTimestamp"] = at.Add(3 * time.Millisecond).Format(time.RFC3339Nano)
		if ev["stage"] == nil {
			ev["stage"] = "ResponseComplete"
		}
		b, err := json.Marshal(ev)
		if err != nil {
			panic(err)
		}
		out = append(out, b)
	}
	return out
}

// EventList wraps events as the webhook backend sends them.
func EventList(events [][]byte) []byte {
	items := make([]json.RawMessage, len(events))
	for i, e := range events {
		items[i] = e
	}
	b, _ := json.Marshal(map[string]any{"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": map[string]any{}, "items": items})
	return b
}

var (
	systemUsers = []string{"system:kube-controller-manager", "system:kube-scheduler", "system:node:node-1", "system:node:node-2",
		"system:serviceaccount:kube-system:coredns", "system:serviceaccount:kube-system:replicaset-controller",
		"system:serviceaccount:monitoring:prometheus", "system:apiserver"}
	readResources = []string{"pods", "nodes", "endpoints", "services", "configmaps", "leases", "endpointslices", "namespaces", "secrets"}
	namespaces    = []string{"kube-system", "default", "shop", "monitoring", "payments"}
)

func ref(resource, ns, name, group string) map[string]any {
	m := map[string]any{"resource": resource, "apiVersion": "v1"}
	if ns != "" {
		m["namespace"] = ns
	}
	if name != "" {
		m["name"] = name
	}
	if group != "" {
		m["apiGroup"] = group
	}
	return m
}

func systemRead(r *rand.Rand, i int) map[string]any {
	user := systemUsers[r.Intn(len(systemUsers))]
	res := readResources[r.Intn(len(readResources))]
	verb := []string{"get", "list", "watch"}[r.Intn(3)]
	ns := namespaces[r.Intn(len(namespaces))]
	name := ""
	if verb == "get" {
		name = fmt.Sprintf("%s-%d", res, i%50)
	}
	return map[string]any{"level": "Metadata", "verb": verb, "requestURI": "/api/v1/namespaces/" + ns + "/" + res,
		"user":      map[string]any{"username": user, "groups": []string{"system:authenticated"}},
		"sourceIPs": []string{"10.0.0.1"}, "userAgent": "kube-controller-manager/v1.36.3 (linux/amd64) kubernetes/abc",
		"objectRef": ref(res, ns, name, ""), "responseStatus": map[string]any{"code": 200},
		"annotations": map[string]any{"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""}}
}

func controlPlaneUpdate(r *rand.Rand, i int) map[string]any {
	user := systemUsers[r.Intn(3)]
	return map[string]any{"level": "Metadata", "verb": "update", "requestURI": "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager",
		"user":      map[string]any{"username": user, "groups": []string{"system:authenticated"}},
		"sourceIPs": []string{"10.0.0.1"}, "userAgent": "kube-controller-manager/v1.36.3",
		"objectRef": ref("leases", "kube-system", "kube-controller-manager", "coordination.k8s.io"), "responseStatus": map[string]any{"code": 200}}
}

func personRequest(r *rand.Rand, i int) map[string]any {
	user := []string{"alice@example.com", "bob@example.com", "system:serviceaccount:ci:deployer"}[r.Intn(3)]
	ns := namespaces[1+r.Intn(len(namespaces)-1)]
	switch r.Intn(4) {
	case 0:
		return map[string]any{"level": "Request", "verb": "patch", "requestURI": "/apis/apps/v1/namespaces/" + ns + "/deployments/web",
			"user": map[string]any{"username": user, "groups": []string{"system:authenticated"}}, "sourceIPs": []string{"192.0.2.10"},
			"userAgent": "kubectl/v1.36.3 (linux/amd64)", "objectRef": ref("deployments", ns, "web", "apps"),
			"responseStatus": map[string]any{"code": 200},
			"requestObject":  map[string]any{"spec": map[string]any{"replicas": 3}}}
	case 1:
		return map[string]any{"level": "Metadata", "verb": "get", "requestURI": "/api/v1/namespaces/" + ns + "/pods/web-1/log",
			"user": map[string]any{"username": user}, "sourceIPs": []string{"192.0.2.10"}, "userAgent": "kubectl/v1.36.3",
			"objectRef": ref("pods", ns, "web-1", ""), "responseStatus": map[string]any{"code": 200}}
	default:
		return map[string]any{"level": "Metadata", "verb": "list", "requestURI": "/api/v1/namespaces/" + ns + "/pods",
			"user": map[string]any{"username": user, "groups": []string{"system:authenticated"}}, "sourceIPs": []string{"192.0.2.10"},
			"userAgent": "kubectl/v1.36.3", "objectRef": ref("pods", ns, "", ""), "responseStatus": map[string]any{"code": 200}}
	}
}

func creation(r *rand.Rand, i int) map[string]any {
	ns := namespaces[1+r.Intn(len(namespaces)-1)]
	privileged := r.Intn(20) == 0
	container := map[string]any{"name": "app", "image": fmt.Sprintf("registry.example.com/%s/app:%d", ns, i%7),
		"resources": map[string]any{"limits": map[string]any{"cpu": "500m", "memory": "256Mi"}}}
	if privileged {
		container["securityContext"] = map[string]any{"privileged": true}
	}
	podSpec := map[string]any{"containers": []any{container}, "serviceAccountName": "default"}
	if r.Intn(2) == 0 {
		name := fmt.Sprintf("web-%d", i)
		return map[string]any{"level": "RequestResponse", "verb": "create", "requestURI": "/api/v1/namespaces/" + ns + "/pods",
			"user":      map[string]any{"username": "system:serviceaccount:kube-system:replicaset-controller", "groups": []string{"system:serviceaccounts"}},
			"sourceIPs": []string{"10.0.0.1"}, "userAgent": "kube-controller-manager/v1.36.3",
			"objectRef": ref("pods", ns, name, ""), "responseStatus": map[string]any{"code": 201},
			"requestObject": map[string]any{"kind": "Pod", "apiVersion": "v1",
				"metadata": map[string]any{"name": name, "namespace": ns, "labels": map[string]any{"app": "web"}}, "spec": podSpec}}
	}
	return map[string]any{"level": "RequestResponse", "verb": "create", "requestURI": "/apis/apps/v1/namespaces/" + ns + "/deployments",
		"user": map[string]any{"username": "system:serviceaccount:ci:deployer", "groups": []string{"system:serviceaccounts"}}, "sourceIPs": []string{"192.0.2.20"},
		"userAgent": "helm/3.19", "objectRef": ref("deployments", ns, fmt.Sprintf("app-%d", i), "apps"), "responseStatus": map[string]any{"code": 201},
		"requestObject": map[string]any{"kind": "Deployment", "apiVersion": "apps/v1",
			"metadata": map[string]any{"name": fmt.Sprintf("app-%d", i), "namespace": ns},
			"spec":     map[string]any{"replicas": 2, "template": map[string]any{"metadata": map[string]any{"labels": map[string]any{"app": "x"}}, "spec": podSpec}}}}
}
