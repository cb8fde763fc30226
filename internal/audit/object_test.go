package audit

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
)

// auditOf is an event with the given verb, objects and subresource.
func auditOf(verb, subresource, request, response string) *event.Audit {
	a := &event.Audit{AuditID: "x", Stage: "ResponseComplete", Verb: verb, User: event.AuditUser{Username: "alice"},
		ObjectRef: &event.ObjectRef{Resource: "pods", Namespace: "shop", Name: "web-1", Subresource: subresource}}
	if request != "" {
		a.RequestObject = json.RawMessage(request)
	}
	if response != "" {
		a.ResponseObject = json.RawMessage(response)
	}
	return a
}

func mustObject(t *testing.T, a *event.Audit) *Object {
	t.Helper()
	o := ObjectOf(a)
	if o == nil {
		t.Fatalf("no object in %s / %s", a.RequestObject, a.ResponseObject)
	}
	return o
}

const privilegedPod = `{
  "kind": "Pod", "apiVersion": "v1",
  "metadata": {"name": "pwn", "namespace": "shop", "labels": {"app": "pwn"}, "annotations": {"a": "b"}},
  "spec": {
    "hostPID": true, "hostNetwork": true, "serviceAccountName": "helper",
    "securityContext": {"runAsUser": 0, "fsGroup": 2000},
    "volumes": [
      {"name": "host", "hostPath": {"path": "/", "type": "Directory"}},
      {"name": "cfg", "configMap": {"name": "cfg"}},
      {"name": "sock", "hostPath": {"path": "/run/containerd/containerd.sock"}}
    ],
    "containers": [
      {"name": "shell", "image": "alpine:3.20", "command": ["sh"],
       "securityContext": {"privileged": true, "allowPrivilegeEscalation": true,
                           "capabilities": {"add": ["SYS_ADMIN", "cap_net_admin"], "drop": ["ALL"]}},
       "ports": [{"containerPort": 80, "hostPort": 8080, "protocol": "TCP"}, {"containerPort": 81}]},
      {"name": "app", "image": "shop/app:1", "securityContext": {"runAsUser": 1000, "allowPrivilegeEscalation": false}}
    ],
    "initContainers": [{"name": "init", "image": "busybox", "securityContext": {"privileged": false}}],
    "ephemeralContainers": [{"name": "debugger", "image": "busybox", "targetContainerName": "shell"}]
  }
}`

func TestObjectOfPrivilegedPod(t *testing.T) {
	o := mustObject(t, auditOf("create", "", privilegedPod, `{"kind":"Pod","metadata":{"name":"ignored"}}`))
	if o.Kind != "Pod" || o.Name != "pwn" || o.Namespace != "shop" || o.Labels["app"] != "pwn" || o.Annotations["a"] != "b" {
		t.Errorf("metadata %+v", o)
	}
	p := o.Pod
	if p == nil {
		t.Fatal("no pod spec")
	}
	if !p.HostPID || !p.HostNetwork || p.HostIPC || p.ServiceAccount != "helper" {
		t.Errorf("pod %+v", p)
	}
	if !reflect.DeepEqual(p.HostPaths, []string{"/", "/run/containerd/containerd.sock"}) {
		t.Errorf("host paths %q", p.HostPaths)
	}
	want := []Container{
		{Name: "shell", Image: "alpine:3.20", Privileged: true, AllowPrivEsc: true, RunAsRoot: true,
			CapsAdd: []string{"SYS_ADMIN", "NET_ADMIN"}, HostPorts: []string{"8080"}},
		{Name: "app", Image: "shop/app:1", RunAsRoot: false}, // its own runAsUser wins over the pod's
		{Name: "init", Image: "busybox", RunAsRoot: true},
		{Name: "debugger", Image: "busybox", Ephemeral: true, RunAsRoot: true},
	}
	if !reflect.DeepEqual(p.Containers, want) {
		t.Errorf("containers\n got %+v\nwant %+v", p.Containers, want)
	}
	if o.RBAC.RoleRef != "" || o.RBAC.Subjects != nil || o.Service.Type != "" || o.Data != nil || o.CSRSigner != "" {
		t.Errorf("a pod with RBAC, service, data or CSR: %+v", o)
	}
}

func TestObjectOfRunAsRoot(t *testing.T) {
	for _, tc := range []struct {
		name, spec string
		root       bool
	}{
		{"no securityContext", `{"containers":[{"name":"c"}]}`, false},
		{"pod runAsUser 1000", `{"securityContext":{"runAsUser":1000},"containers":[{"name":"c"}]}`, false},
		{"container runAsUser 0", `{"containers":[{"name":"c","securityContext":{"runAsUser":0}}]}`, true},
		{"pod 0, container 1", `{"securityContext":{"runAsUser":0},"containers":[{"name":"c","securityContext":{"runAsUser":1}}]}`, false},
		{"pod 0, container context without runAsUser", `{"securityContext":{"runAsUser":0},"containers":[{"name":"c","securityContext":{"privileged":false}}]}`, true},
	} {
		o := mustObject(t, auditOf("create", "", `{"kind":"Pod","spec":`+tc.spec+`}`, ""))
		if o.Pod == nil || len(o.Pod.Containers) != 1 || o.Pod.Containers[0].RunAsRoot != tc.root {
			t.Errorf("%s: %+v", tc.name, o.Pod)
		}
	}
	// A spec with nothing in it is no pod spec.
	if o := mustObject(t, auditOf("create", "", `{"kind":"Pod","spec":{"restartPolicy":"Always"}}`, "")); o.Pod != nil {
		t.Errorf("empty spec: %+v", o.Pod)
	}
	// A pod with only a hostPath volume, or only hostIPC, has one.
	if o := mustObject(t, auditOf("create", "", `{"kind":"Pod","spec":{"volumes":[{"hostPath":{"path":"/etc"}}]}}`, "")); o.Pod == nil || o.Pod.HostPaths[0] != "/etc" {
		t.Errorf("volume only: %+v", o.Pod)
	}
	if o := mustObject(t, auditOf("create", "", `{"kind":"Pod","spec":{"hostIPC":true}}`, "")); o.Pod == nil || !o.Pod.HostIPC {
		t.Errorf("hostIPC only: %+v", o.Pod)
	}
}

func TestObjectOfWorkloadTemplates(t *testing.T) {
	deployment := `{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"web","namespace":"shop"},
	  "spec":{"replicas":3,"selector":{"matchLabels":{"app":"web"}},"strategy":{"type":"RollingUpdate"},
	    "template":{"metadata":{"labels":{"app":"web"}},"spec":{"hostNetwork":true,"serviceAccountName":"web",
	      "containers":[{"name":"web","image":"nginx:1.27","securityContext":{"privileged":true}}],
	      "volumes":[{"name":"logs","hostPath":{"path":"/var/log"}}]}}}}`
	cronJob := `{"kind":"CronJob","apiVersion":"batch/v1","metadata":{"name":"backup","namespace":"ops"},
	  "spec":{"schedule":"*/5 * * * *","jobTemplate":{"metadata":{},"spec":{"backoffLimit":1,"template":{"spec":{
	    "restartPolicy":"OnFailure","hostPID":true,
	    "containers":[{"name":"backup","image":"evil/miner","securityContext":{"capabilities":{"add":["CAP_SYS_PTRACE"]}}}]}}}}}}`
	statefulSet := `{"kind":"StatefulSet","metadata":{"name":"db"},"spec":{"serviceName":"db",
	  "volumeClaimTemplates":[{"metadata":{"name":"data"},"spec":{"accessModes":["ReadWriteOnce"]}}],
	  "template":{"spec":{"initContainers":[{"name":"chown","image":"busybox","securityContext":{"runAsUser":0}}],"containers":[{"name":"db","image":"postgres"}]}}}}`

	o := mustObject(t, auditOf("create", "", deployment, ""))
	if o.Kind != "Deployment" || o.Name != "web" || o.Pod == nil || !o.Pod.HostNetwork || o.Pod.ServiceAccount != "web" ||
		len(o.Pod.Containers) != 1 || !o.Pod.Containers[0].Privileged || o.Pod.Containers[0].Image != "nginx:1.27" ||
		!reflect.DeepEqual(o.Pod.HostPaths, []string{"/var/log"}) {
		t.Errorf("deployment: %+v %+v", o, o.Pod)
	}
	o = mustObject(t, auditOf("create", "", cronJob, ""))
	if o.Kind != "CronJob" || o.Pod == nil || !o.Pod.HostPID || len(o.Pod.Containers) != 1 ||
		o.Pod.Containers[0].Image != "evil/miner" || !reflect.DeepEqual(o.Pod.Containers[0].CapsAdd, []string{"SYS_PTRACE"}) {
		t.Errorf("cronjob: %+v %+v", o, o.Pod)
	}
	o = mustObject(t, auditOf("create", "", statefulSet, ""))
	if o.Pod == nil || len(o.Pod.Containers) != 2 || o.Pod.Containers[0].Name != "db" || o.Pod.Containers[1].Name != "chown" || !o.Pod.Containers[1].RunAsRoot {
		t.Errorf("statefulset: %+v", o.Pod)
	}
	// A Deployment without a pod template in the body (scale, say) has none.
	if o := mustObject(t, auditOf("create", "", `{"kind":"Deployment","spec":{"replicas":0}}`, "")); o.Pod != nil {
		t.Errorf("deployment without template: %+v", o.Pod)
	}
}

func TestObjectOfPatchReadsResponse(t *testing.T) {
	patch := `{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"web"}],
	  "containers":[{"name":"web","securityContext":{"privileged":true}}]}}}}`
	full := `{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"web","namespace":"shop","labels":{"app":"web"}},
	  "spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.27","securityContext":{"privileged":true}},
	    {"name":"sidecar","image":"envoy"}]}}},"status":{"replicas":3}}`
	o := mustObject(t, auditOf("patch", "", patch, full))
	if o.Kind != "Deployment" || o.Name != "web" || o.Labels["app"] != "web" || o.Pod == nil || len(o.Pod.Containers) != 2 ||
		o.Pod.Containers[0].Image != "nginx:1.27" || !o.Pod.Containers[0].Privileged {
		t.Errorf("patch: %+v %+v", o, o.Pod)
	}
	// Without a response (a Request-level policy), the patch is all there is.
	if o := mustObject(t, auditOf("patch", "", patch, "")); o.Kind != "" || o.Pod == nil || !o.Pod.Containers[0].Privileged {
		t.Errorf("patch without response: %+v", o)
	}
	// A JSON patch is an array: no object.
	if o := ObjectOf(auditOf("patch", "", `[{"op":"replace","path":"/spec/replicas","value":0}]`, "")); o != nil {
		t.Errorf("JSON patch: %+v", o)
	}
	// Subresources read the response: an ephemeral container added by kubectl debug.
	debug := `{"kind":"Pod","metadata":{"name":"web-1"},"spec":{"containers":[{"name":"web","image":"nginx"}],
	  "ephemeralContainers":[{"name":"debugger-x","image":"busybox","securityContext":{"privileged":true}}]}}`
	o = mustObject(t, auditOf("patch", "ephemeralcontainers", `{"spec":{"ephemeralContainers":[{"name":"debugger-x"}]}}`, debug))
	if o.Pod == nil || len(o.Pod.Containers) != 2 || !o.Pod.Containers[1].Ephemeral || !o.Pod.Containers[1].Privileged {
		t.Errorf("ephemeralcontainers: %+v", o.Pod)
	}
	o = mustObject(t, auditOf("update", "status", `{"kind":"Pod","metadata":{"name":"req"}}`, `{"kind":"Pod","metadata":{"name":"resp"}}`))
	if o.Name != "resp" {
		t.Errorf("status subresource read %q", o.Name)
	}
	// A subresource without a response keeps the request.
	o = mustObject(t, auditOf("create", "eviction", `{"kind":"Eviction","metadata":{"name":"web-1"}}`, ""))
	if o.Kind != "Eviction" {
		t.Errorf("eviction: %+v", o)
	}
	// A create without a request object (Metadata level, or a response-only policy) reads the response.
	if o := mustObject(t, auditOf("create", "", "", `{"kind":"Secret","metadata":{"name":"s"},"data":{"token":"eA=="}}`)); o.Kind != "Secret" {
		t.Errorf("response only: %+v", o)
	}
}

func TestObjectOfRBAC(t *testing.T) {
	role := `{"kind":"ClusterRole","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"god"},
	  "rules":[{"apiGroups":["*"],"resources":["*"],"verbs":["*"]},
	           {"nonResourceURLs":["*"],"verbs":["*"]},
	           {"apiGroups":[""],"resources":["secrets","pods/exec"],"verbs":["get","list","*"]}],
	  "aggregationRule":{"clusterRoleSelectors":[{"matchLabels":{"x":"y"}}]}}`
	o := mustObject(t, auditOf("create", "", role, ""))
	if o.Kind != "ClusterRole" || o.Name != "god" {
		t.Errorf("role: %+v", o)
	}
	if !reflect.DeepEqual(o.RBAC.Verbs, []string{"*", "get", "list"}) ||
		!reflect.DeepEqual(o.RBAC.Resources, []string{"*", "secrets", "pods/exec"}) ||
		!reflect.DeepEqual(o.RBAC.APIGroups, []string{"*", ""}) || o.RBAC.RoleRef != "" {
		t.Errorf("rules summed: %+v", o.RBAC)
	}

	binding := `{"kind":"ClusterRoleBinding","metadata":{"name":"backdoor"},
	  "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},
	  "subjects":[{"kind":"ServiceAccount","name":"helper","namespace":"default"},
	              {"kind":"User","apiGroup":"rbac.authorization.k8s.io","name":"alice"},
	              {"kind":"Group","name":"system:authenticated"}]}`
	o = mustObject(t, auditOf("create", "", binding, ""))
	if o.RBAC.RoleRef != "ClusterRole/cluster-admin" ||
		!reflect.DeepEqual(o.RBAC.Subjects, []string{"ServiceAccount:default/helper", "User:alice", "Group:system:authenticated"}) ||
		o.RBAC.Verbs != nil {
		t.Errorf("binding: %+v", o.RBAC)
	}
	// A RoleBinding patched to cluster-admin: the response holds the result.
	o = mustObject(t, auditOf("patch", "", `{"subjects":[{"kind":"User","name":"bob"}]}`,
		`{"kind":"RoleBinding","metadata":{"name":"ops","namespace":"shop"},"roleRef":{"kind":"ClusterRole","name":"cluster-admin"},"subjects":[{"kind":"User","name":"bob"}]}`))
	if o.RBAC.RoleRef != "ClusterRole/cluster-admin" || o.Namespace != "shop" || !reflect.DeepEqual(o.RBAC.Subjects, []string{"User:bob"}) {
		t.Errorf("patched binding: %+v", o)
	}
}

func TestObjectOfService(t *testing.T) {
	svc := `{"kind":"Service","metadata":{"name":"admin","namespace":"shop"},"spec":{"type":"NodePort",
	  "selector":{"app":"admin"},"ports":[{"name":"http","port":80,"targetPort":"http","nodePort":30080,"protocol":"TCP"},
	  {"port":443,"targetPort":8443}]}}`
	o := mustObject(t, auditOf("create", "", svc, ""))
	if o.Service.Type != "NodePort" || !reflect.DeepEqual(o.Service.Ports, []string{"80", "30080", "443"}) || o.Pod != nil {
		t.Errorf("service: %+v", o.Service)
	}
	o = mustObject(t, auditOf("create", "", `{"kind":"Service","spec":{"ports":[{"port":53}]}}`, ""))
	if o.Service.Type != "ClusterIP" || !reflect.DeepEqual(o.Service.Ports, []string{"53"}) {
		t.Errorf("default type: %+v", o.Service)
	}
	o = mustObject(t, auditOf("create", "", `{"kind":"Service","spec":{"type":"LoadBalancer","externalTrafficPolicy":"Local","ports":[{"port":6443,"nodePort":31000}]}}`, ""))
	if o.Service.Type != "LoadBalancer" || !reflect.DeepEqual(o.Service.Ports, []string{"6443", "31000"}) {
		t.Errorf("load balancer: %+v", o.Service)
	}
	// Only Services have an exposure.
	if o := mustObject(t, auditOf("create", "", `{"kind":"Secret","type":"Opaque","spec":{"type":"x"}}`, "")); o.Service.Type != "" {
		t.Errorf("a secret with a service type: %+v", o.Service)
	}
}

func TestObjectOfCSRAndConfigMap(t *testing.T) {
	csr := `{"kind":"CertificateSigningRequest","apiVersion":"certificates.k8s.io/v1","metadata":{"name":"alice-admin"},
	  "spec":{"request":"LS0tLS1CRUdJTi4uLg==","signerName":"kubernetes.io/kube-apiserver-client","expirationSeconds":86400,
	    "usages":["client auth"],"username":"alice","groups":["system:authenticated"]}}`
	o := mustObject(t, auditOf("create", "", csr, ""))
	if o.CSRSigner != "kubernetes.io/kube-apiserver-client" || o.CSRUser != "alice" || o.Pod != nil {
		t.Errorf("csr: %+v", o)
	}
	cm := `{"kind":"ConfigMap","metadata":{"name":"aws-auth","namespace":"kube-system"},"data":{"mapRoles":"- rolearn: x","mapUsers":""}}`
	o = mustObject(t, auditOf("update", "", cm, ""))
	if !reflect.DeepEqual(o.Data, map[string]string{"mapRoles": "", "mapUsers": ""}) {
		t.Errorf("configmap data: %v", o.Data)
	}
}

func TestObjectOfNonObjects(t *testing.T) {
	for _, tc := range []struct{ name, request, response string }{
		{"nothing", "", ""},
		{"array", `[{"kind":"Pod"}]`, ""},
		{"string", `"hello"`, ""},
		{"number", `42`, ""},
		{"null", `null`, ""},
		{"garbage", `{not json`, ""},
		{"truncated", `{"kind":"Pod","spec":{"containers":[`, ""},
	} {
		a := auditOf("create", "", tc.request, tc.response)
		if o := ObjectOf(a); o != nil {
			t.Errorf("%s: %+v", tc.name, o)
		}
	}
	// DeleteOptions and a Status: an object of no interest, harmless.
	for _, body := range []string{
		`{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background","gracePeriodSeconds":0,"preconditions":{"uid":"u"},"dryRun":["All"]}`,
		`{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","details":{"name":"web-1","kind":"pods","uid":"u"}}`,
		// Fields of the wrong type (a custom resource's, say): nil today, or what else decodes.
		`{"kind":"Pod","spec":{"containers":{"name":"x"}}}`,
		`{"kind":"Pod","spec":"x"}`,
		`{"kind":"ClusterRole","rules":{"verbs":["*"]}}`,
		`{"kind":"Widget","spec":{"template":"x","type":{"a":1}},"data":"x"}`,
	} {
		o := ObjectOf(auditOf("delete", "", body, ""))
		if o == nil {
			continue
		}
		if o.Pod != nil || o.RBAC.RoleRef != "" || o.RBAC.Subjects != nil || o.RBAC.Verbs != nil || o.Service.Type != "" || o.Data != nil || o.CSRSigner != "" {
			t.Errorf("%s: %+v", body, o)
		}
	}
	// A delete that logged the deleted object in the response still reads DeleteOptions.
	o := ObjectOf(auditOf("delete", "", `{"kind":"DeleteOptions"}`, privilegedPod))
	if o != nil && o.Pod != nil {
		t.Errorf("delete read the response: %+v", o)
	}
	// No ObjectRef at all.
	a := auditOf("create", "", "", privilegedPod)
	a.ObjectRef = nil
	if o := ObjectOf(a); o == nil || o.Kind != "Pod" {
		t.Errorf("without objectRef: %+v", o)
	}
}

const execURI = "/api/v1/namespaces/shop/pods/web-1/exec?command=sh&command=-c&command=cat%20%2Fvar%2Frun%2Fsecrets%2Fkubernetes.io%2Fserviceaccount%2Ftoken&container=web&stdin=true"

func TestExec(t *testing.T) {
	for _, tc := range []struct{ uri, command, container string }{
		{execURI, "sh -c cat /var/run/secrets/kubernetes.io/serviceaccount/token", "web"},
		// client-go encodes spaces as '+'.
		{"/api/v1/namespaces/shop/pods/web-1/exec?command=sh&command=-c&command=ls+-la+%2F&container=app&stderr=true&stdout=true", "sh -c ls -la /", "app"},
		{"/api/v1/namespaces/shop/pods/web-1/exec?container=a%2Db&stdout=true&command=id", "id", "a-b"},
		{"/api/v1/namespaces/shop/pods/web-1/exec?command=echo&command=1%2B1%3D2", "echo 1+1=2", ""},
		{"/api/v1/namespaces/shop/pods/web-1/exec", "", ""},
		{"/api/v1/namespaces/shop/pods/web-1/exec?", "", ""},
		{"/api/v1/namespaces/shop/pods/web-1/attach?container=web&stdin=true", "", "web"},
		{"/api/v1/namespaces/shop/pods/web-1/log?container=web&follow=true", "", "web"},
		{"", "", ""},
		{"?command", "", ""},
		{"?command=&command=x", " x", ""},
		{"?command=%zz&command=ok&container=%zz", "ok", ""},
		{"?container=first&container=second", "", "first"},
		{"?&&=&command==", "=", ""},
	} {
		a := &event.Audit{RequestURI: tc.uri}
		if got := ExecCommand(a); got != tc.command {
			t.Errorf("ExecCommand(%q) = %q, want %q", tc.uri, got, tc.command)
		}
		if got := ExecContainer(a); got != tc.container {
			t.Errorf("ExecContainer(%q) = %q, want %q", tc.uri, got, tc.container)
		}
	}
}

// kube-apiserver decodes query keys as well as values (url.ParseQuery), so
// a client that percent-encodes the key runs the command all the same; the
// audit log keeps the raw URI: the command must not hide from the rules.
func TestExecEncodedKeys(t *testing.T) {
	a := &event.Audit{RequestURI: "/api/v1/namespaces/shop/pods/web-1/exec?comm%61nd=cat&comm%61nd=%2Fetc%2Fshadow&cont%61iner=web&stdout=true"}
	if got := ExecCommand(a); got != "cat /etc/shadow" {
		t.Errorf("ExecCommand ignores a percent-encoded key: got %q, want %q", got, "cat /etc/shadow")
	}
	if got := ExecContainer(a); got != "web" {
		t.Errorf("ExecContainer = %q, want web", got)
	}
}

func TestObjectOfOwner(t *testing.T) {
	pod := `{"kind":"Pod","metadata":{"name":"web-7d9f4-x2","namespace":"shop","ownerReferences":[
	  {"apiVersion":"v1","kind":"Node","name":"n1","controller":false},
	  {"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-7d9f4","uid":"u","controller":true,"blockOwnerDeletion":true}]},
	  "spec":{"containers":[{"name":"web"}]}}`
	if o := mustObject(t, auditOf("create", "", pod, "")); o.Owner != "ReplicaSet/web-7d9f4" {
		t.Errorf("owner %q", o.Owner)
	}
	// Owners that do not control it are not its owner.
	if o := mustObject(t, auditOf("create", "", `{"kind":"Pod","metadata":{"ownerReferences":[{"kind":"Node","name":"n1"}]}}`, "")); o.Owner != "" {
		t.Errorf("owner %q", o.Owner)
	}
}
