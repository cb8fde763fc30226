package install

import (
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const (
	testCredential = "cred-3f9a1c-SECRET-do-not-print"
	testProxy      = "http://proxyuser:proxy-PASSWORD-xyz@proxy.example:3128"
	testDBURL      = "postgres://vigil:db-PASSWORD-abc@pg.example/vigil"
	testAuditToken = "audit-TOKEN-0123456789abcdef"
)

// rendered is a chart rendered with some values: the raw manifest (with
// secrets, as it goes to the cluster), the printable one, and its objects
// by "Kind/name".
type rendered struct {
	raw, printed string
	objects      map[string]string // "Kind/name" -> document
	order        []string
}

func render(t *testing.T, ns string, vals map[string]any) *rendered {
	t.Helper()
	ch, err := LoadChart()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := Render(ch, ns, vals)
	if err != nil {
		t.Fatal(err)
	}
	printed, err := Manifest(rel)
	if err != nil {
		t.Fatal(err)
	}
	r := &rendered{raw: rel.Manifest, printed: printed, objects: map[string]string{}}
	for _, doc := range strings.Split(rel.Manifest, "\n---\n") {
		var head struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatal(err)
		}
		if head.Kind == "" {
			continue
		}
		key := head.Kind + "/" + head.Metadata.Name
		if _, dup := r.objects[key]; dup {
			t.Fatalf("%s rendered twice", key)
		}
		r.objects[key] = doc
		r.order = append(r.order, key)
	}
	return r
}

// decode decodes the object key into out, failing when it was not rendered.
func (r *rendered) decode(t *testing.T, key string, out any) {
	t.Helper()
	doc, ok := r.objects[key]
	if !ok {
		t.Fatalf("%s not rendered; have %v", key, r.order)
	}
	if err := yaml.UnmarshalStrict([]byte(doc), out); err != nil {
		t.Fatalf("%s: %v", key, err)
	}
}

func baseValues() map[string]any {
	return map[string]any{
		"serverURL":      "https://vigil.example:443",
		"clusterName":    "bar",
		"joinCredential": map[string]any{"value": testCredential},
	}
}

func with(vals map[string]any, kv ...any) map[string]any {
	for i := 0; i < len(kv); i += 2 {
		m := vals
		path := strings.Split(kv[i].(string), ".")
		for _, p := range path[:len(path)-1] {
			next, _ := m[p].(map[string]any)
			if next == nil {
				next = map[string]any{}
				m[p] = next
			}
			m = next
		}
		m[path[len(path)-1]] = kv[i+1]
	}
	return vals
}

// defaultObjects is what the chart creates with default values and a
// credential: the names `vigil verify` and `vigil uninstall` rely on.
var defaultObjects = []string{
	"ServiceAccount/vigil-sensor", "ServiceAccount/vigil-agent",
	"Secret/vigil-join", "ConfigMap/vigil-posture",
	"ClusterRole/vigil-agent", "ClusterRoleBinding/vigil-agent", "Role/vigil-agent", "RoleBinding/vigil-agent",
	"ClusterRole/vigil-sensor", "ClusterRoleBinding/vigil-sensor",
	"Service/vigil-agent", "DaemonSet/vigil-sensor", "Deployment/vigil-agent",
	"ValidatingWebhookConfiguration/vigil",
}

func TestRenderObjects(t *testing.T) {
	for _, tc := range []struct {
		name   string
		vals   map[string]any
		add    []string // besides defaultObjects
		remove []string
	}{
		{name: "default", vals: baseValues()},
		{name: "no credential value", vals: with(baseValues(), "joinCredential.value", ""), remove: []string{"Secret/vigil-join"}},
		{name: "proxy", vals: with(baseValues(), "proxy", testProxy), add: []string{"Secret/vigil-proxy"}},
		{name: "server sqlite", vals: with(baseValues(), "server.enabled", true),
			add: []string{"ServiceAccount/vigil-server", "PersistentVolumeClaim/vigil-server-data", "Deployment/vigil-server", "Service/vigil-server"}},
		{name: "server postgres", vals: with(baseValues(), "server.enabled", true, "server.database.url", testDBURL),
			add: []string{"ServiceAccount/vigil-server", "Secret/vigil-server-db", "Deployment/vigil-server", "Service/vigil-server"}},
		{name: "openshift", vals: with(baseValues(), "distribution", "openshift"), add: []string{"SecurityContextConstraints/vigil-sensor"}},
		{name: "sensor disabled", vals: with(baseValues(), "sensor.enabled", false), remove: []string{"ServiceAccount/vigil-sensor", "DaemonSet/vigil-sensor",
			"ClusterRole/vigil-sensor", "ClusterRoleBinding/vigil-sensor"}},
		{name: "agent disabled", vals: with(baseValues(), "agent.enabled", false),
			remove: []string{"ServiceAccount/vigil-agent", "ConfigMap/vigil-posture", "ClusterRole/vigil-agent", "ClusterRoleBinding/vigil-agent",
				"Role/vigil-agent", "RoleBinding/vigil-agent", "Service/vigil-agent", "Deployment/vigil-agent", "ValidatingWebhookConfiguration/vigil"}},
		{name: "audit webhook", vals: with(baseValues(), "agent.audit.enabled", true, "agent.audit.token", testAuditToken), add: []string{"Secret/vigil-audit-token"}},
		{name: "audit tail", vals: with(baseValues(), "auditTail.enabled", true), add: []string{"ServiceAccount/vigil-audit", "DaemonSet/vigil-audit"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, "vigil", tc.vals)
			want := append(slices.Clone(defaultObjects), tc.add...)
			want = slices.DeleteFunc(want, func(s string) bool { return slices.Contains(tc.remove, s) })
			got := slices.Clone(r.order)
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("objects:\n got %v\nwant %v", got, want)
			}
			for _, key := range r.order {
				var obj struct {
					Metadata struct {
						Namespace string
						Labels    map[string]string
					}
				}
				r.decodeLoose(t, key, &obj)
				l := obj.Metadata.Labels
				if l["app.kubernetes.io/part-of"] != "vigil" || l["app.kubernetes.io/name"] != "vigil" ||
					l["app.kubernetes.io/instance"] != "vigil" || l["app.kubernetes.io/component"] == "" {
					t.Errorf("%s: labels %v lack the app.kubernetes.io set", key, l)
				}
			}
			// Protected settings: in the cluster-bound manifest only inside
			// Secrets, and never in what is printed.
			for _, secret := range []string{testCredential, testProxy, testDBURL, testAuditToken} {
				if strings.Contains(r.printed, secret) || strings.Contains(r.printed, b64(secret)) {
					t.Errorf("the printed manifest contains a protected setting")
				}
				if strings.Contains(r.raw, secret) {
					t.Errorf("a protected setting appears in clear in the manifest (outside a Secret's base64 data)")
				}
			}
		})
	}
}

func (r *rendered) decodeLoose(t *testing.T, key string, out any) {
	t.Helper()
	if err := yaml.Unmarshal([]byte(r.objects[key]), out); err != nil {
		t.Fatalf("%s: %v", key, err)
	}
}

func TestRenderSensor(t *testing.T) {
	r := render(t, "vigil", baseValues())
	var ds appsv1.DaemonSet
	r.decode(t, "DaemonSet/vigil-sensor", &ds)
	pod := ds.Spec.Template.Spec
	if !pod.HostPID || pod.ServiceAccountName != "vigil-sensor" || pod.PriorityClassName != "system-node-critical" {
		t.Errorf("hostPID %v, serviceAccount %q, priorityClass %q", pod.HostPID, pod.ServiceAccountName, pod.PriorityClassName)
	}
	if len(pod.Tolerations) != 1 || pod.Tolerations[0].Operator != corev1.TolerationOpExists || pod.Tolerations[0].Key != "" {
		t.Errorf("tolerations %+v: want one that tolerates every taint", pod.Tolerations)
	}
	c := pod.Containers[0]
	for _, arg := range []string{"sensor", "--server=https://vigil.example:443", "--token-file=/var/run/vigil/join/credential",
		"--cluster=bar", "--node=$(NODE_NAME)", "--output=none", "--proc=/host/proc"} {
		if !slices.Contains(c.Args, arg) {
			t.Errorf("sensor args %v lack %s", c.Args, arg)
		}
	}
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Error("sensor not privileged by default")
	}
	if c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
		t.Errorf("sensor resources %+v: want requests and limits", c.Resources)
	}
	// The node build of the image, not the full binary.
	if !slices.Equal(c.Command, []string{"/usr/bin/vigil-node"}) {
		t.Errorf("sensor command %q, want the node build /usr/bin/vigil-node", c.Command)
	}
	hostPaths := map[string]string{}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	mounted := map[string]bool{}
	for _, m := range c.VolumeMounts {
		if p, ok := hostPaths[m.Name]; ok {
			if !m.ReadOnly {
				t.Errorf("host path %s mounted read-write", p)
			}
			mounted[p] = true
		}
	}
	for _, p := range []string{"/proc", "/sys/fs/cgroup", "/sys/kernel/btf", "/sys/kernel/tracing", "/run/containerd"} {
		if !mounted[p] {
			t.Errorf("host path %s not mounted (have %v)", p, hostPaths)
		}
	}

	r = render(t, "vigil", with(baseValues(), "sensor.privileged", false, "sensor.priorityClassName", ""))
	ds = appsv1.DaemonSet{}
	r.decode(t, "DaemonSet/vigil-sensor", &ds)
	sc := ds.Spec.Template.Spec.Containers[0].SecurityContext
	if *sc.Privileged || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Add, "BPF") || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("sensor.privileged=false: security context %+v", sc)
	}
	if ds.Spec.Template.Spec.PriorityClassName != "" {
		t.Error("priorityClassName not cleared")
	}
}

// TestRenderSensorCRISocket checks sensor.criSocket: the CRI socket's
// directories mounted read-only for autodetection (none twice), one
// socket, or none, and the flag that tells the sensor.
func TestRenderSensorCRISocket(t *testing.T) {
	for _, tc := range []struct {
		value    any // nil: the default
		arg      string
		mounts   map[string]corev1.HostPathType // host path -> type, beyond runtimeStatePaths
		unwanted []string
	}{
		{nil, "", map[string]corev1.HostPathType{"/run/crio": corev1.HostPathDirectoryOrCreate, "/run/k3s/containerd": corev1.HostPathDirectoryOrCreate}, nil},
		{"none", "--cri-socket=none", nil, []string{"/run/crio", "/run/k3s/containerd"}},
		{"/var/run/cri-dockerd.sock", "--cri-socket=/var/run/cri-dockerd.sock", map[string]corev1.HostPathType{"/var/run/cri-dockerd.sock": corev1.HostPathSocket}, []string{"/run/crio", "/var/run"}},
		{"/run/containerd/containerd.sock", "--cri-socket=/run/containerd/containerd.sock", nil, []string{"/run/crio"}},
		{"/var/lib/rancher/crio/crio.sock", "--cri-socket=/var/lib/rancher/crio/crio.sock", map[string]corev1.HostPathType{"/var/lib/rancher/crio": corev1.HostPathDirectoryOrCreate}, nil},
	} {
		t.Run(fmt.Sprint(tc.value), func(t *testing.T) {
			vals := baseValues()
			if tc.value != nil {
				vals = with(vals, "sensor.criSocket", tc.value)
			}
			var ds appsv1.DaemonSet
			render(t, "vigil", vals).decode(t, "DaemonSet/vigil-sensor", &ds)
			pod := ds.Spec.Template.Spec
			c := pod.Containers[0]
			hasArg := slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--cri-socket") })
			if tc.arg == "" && hasArg || tc.arg != "" && !slices.Contains(c.Args, tc.arg) {
				t.Errorf("args %v, want %q", c.Args, tc.arg)
			}
			volumes := map[string]*corev1.HostPathVolumeSource{}
			for _, v := range pod.Volumes {
				if v.HostPath != nil {
					volumes[v.Name] = v.HostPath
				}
			}
			mounted := map[string]corev1.HostPathType{}
			seen := map[string]bool{}
			for _, m := range c.VolumeMounts {
				if seen[m.MountPath] {
					t.Errorf("%s mounted twice", m.MountPath)
				}
				seen[m.MountPath] = true
				if hp := volumes[m.Name]; hp != nil {
					if !m.ReadOnly || strings.HasPrefix(m.Name, "cri") && m.MountPath != hp.Path {
						t.Errorf("host path %s mounted at %s, read-only %v", hp.Path, m.MountPath, m.ReadOnly)
					}
					mounted[hp.Path] = *hp.Type
				}
			}
			if !seen["/run/containerd"] {
				t.Error("/run/containerd (runtime state and containerd's socket) not mounted")
			}
			for p, typ := range tc.mounts {
				if got, ok := mounted[p]; !ok || got != typ {
					t.Errorf("%s: mounted %v as %q, want %q", p, ok, got, typ)
				}
			}
			for _, p := range tc.unwanted {
				if _, ok := mounted[p]; ok {
					t.Errorf("%s mounted", p)
				}
			}
		})
	}
	ch, err := LoadChart()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Render(ch, "vigil", with(baseValues(), "sensor.criSocket", "containerd.sock")); err == nil {
		t.Error("a relative sensor.criSocket passes the schema")
	}
}

func TestRenderAgent(t *testing.T) {
	r := render(t, "sec", with(baseValues(), "failurePolicy", "Fail", "webhookTimeoutSeconds", 7,
		"recommendations", map[string]any{"no-privileged": "deny"}, "excludedNamespaces", []any{"kube-system", "monitoring"}))
	var dep appsv1.Deployment
	r.decode(t, "Deployment/vigil-agent", &dep)
	pod := dep.Spec.Template.Spec
	c := pod.Containers[0]
	for _, arg := range []string{"agent", "--namespace=sec", "--webhook-service=vigil-agent", "--webhook-config=vigil", "--failure-policy=Fail",
		"--webhook-timeout=7s", "--posture-config=/etc/vigil/posture/posture.yaml", "--server=https://vigil.example:443",
		"--token-file=/var/run/vigil/join/credential", "--cluster=bar", "--spool=/var/lib/vigil/agent-spool", "--addr=0.0.0.0:8443"} {
		if !slices.Contains(c.Args, arg) {
			t.Errorf("agent args %v lack %s", c.Args, arg)
		}
	}
	sc := c.SecurityContext
	if sc == nil || !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation ||
		!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("agent security context %+v: want non-root, read-only root, no escalation, drop ALL, RuntimeDefault", sc)
	}

	var svc corev1.Service
	r.decode(t, "Service/vigil-agent", &svc)
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 443 || svc.Spec.Ports[0].TargetPort.IntValue() != 8443 {
		t.Errorf("Service ports %+v: want 443 -> 8443", svc.Spec.Ports)
	}

	var cm corev1.ConfigMap
	r.decode(t, "ConfigMap/vigil-posture", &cm)
	var posture struct {
		ExcludedNamespaces []string                     `json:"excludedNamespaces"`
		Recommendations    map[string]map[string]string `json:"recommendations"`
	}
	if err := yaml.UnmarshalStrict([]byte(cm.Data["posture.yaml"]), &posture); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(posture.ExcludedNamespaces, []string{"kube-system", "monitoring", "sec"}) || posture.Recommendations["no-privileged"]["mode"] != "deny" {
		t.Errorf("posture config %+v", posture)
	}

	// RBAC: exactly what internal/cli/agent_kube_test.go agentRBAC grants.
	read := []string{"get", "list", "watch"}
	wantRules := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods", "services", "replicationcontrollers"}, Verbs: read},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments", "replicasets", "statefulsets", "daemonsets"}, Verbs: read},
		{APIGroups: []string{"batch"}, Resources: []string{"jobs", "cronjobs"}, Verbs: read},
		{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"validatingwebhookconfigurations"}, Verbs: []string{"get", "create", "update"}},
	}
	var cr rbacv1.ClusterRole
	r.decode(t, "ClusterRole/vigil-agent", &cr)
	if !equality.Semantic.DeepEqual(cr.Rules, wantRules) {
		t.Errorf("ClusterRole rules %+v", cr.Rules)
	}
	var role rbacv1.Role
	r.decode(t, "Role/vigil-agent", &role)
	if !equality.Semantic.DeepEqual(role.Rules, []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "create", "update"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "create", "update"}}}) {
		t.Errorf("Role rules %+v", role.Rules)
	}
	var crb rbacv1.ClusterRoleBinding
	r.decode(t, "ClusterRoleBinding/vigil-agent", &crb)
	if len(crb.Subjects) != 1 || crb.Subjects[0].Kind != "ServiceAccount" || crb.Subjects[0].Name != "vigil-agent" || crb.Subjects[0].Namespace != "sec" {
		t.Errorf("ClusterRoleBinding subjects %+v", crb.Subjects)
	}

	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	r.decode(t, "ValidatingWebhookConfiguration/vigil", &vwc)
	w := vwc.Webhooks[0]
	if w.Name != "validate.vigil.dev" || w.ClientConfig.Service == nil || w.ClientConfig.Service.Namespace != "sec" ||
		w.ClientConfig.Service.Name != "vigil-agent" || *w.ClientConfig.Service.Path != "/validate" || *w.ClientConfig.Service.Port != 443 {
		t.Errorf("webhook %s clientConfig %+v", w.Name, w.ClientConfig)
	}
	if len(w.ClientConfig.CABundle) != 0 {
		t.Error("the chart sets caBundle: the agent owns it, and Helm would revert it on upgrade")
	}
	if *w.FailurePolicy != admissionregistrationv1.Fail || *w.TimeoutSeconds != 7 {
		t.Errorf("failurePolicy %s, timeout %d", *w.FailurePolicy, *w.TimeoutSeconds)
	}
	if got := w.NamespaceSelector.MatchExpressions[0].Values; !slices.Equal(got, []string{"kube-system", "monitoring", "sec"}) {
		t.Errorf("webhook skips namespaces %v", got)
	}
}

func TestRenderProtectedSettings(t *testing.T) {
	r := render(t, "vigil", with(baseValues(), "proxy", testProxy, "server.enabled", true, "server.database.url", testDBURL))
	var s corev1.Secret
	r.decode(t, "Secret/vigil-join", &s)
	if string(s.Data["credential"]) != testCredential {
		t.Error("Secret vigil-join does not hold the credential under key credential")
	}
	r.decode(t, "Secret/vigil-proxy", &s)
	if string(s.Data["proxy"]) != testProxy {
		t.Error("Secret vigil-proxy does not hold the proxy URL under key proxy")
	}
	for _, key := range []string{"DaemonSet/vigil-sensor", "Deployment/vigil-agent"} {
		var obj struct {
			Spec struct{ Template corev1.PodTemplateSpec }
		}
		r.decodeLoose(t, key, &obj)
		env := obj.Spec.Template.Spec.Containers[0].Env
		i := slices.IndexFunc(env, func(e corev1.EnvVar) bool { return e.Name == "VIGIL_PROXY" })
		if i < 0 || env[i].Value != "" || env[i].ValueFrom == nil || env[i].ValueFrom.SecretKeyRef == nil || env[i].ValueFrom.SecretKeyRef.Name != "vigil-proxy" {
			t.Errorf("%s: VIGIL_PROXY not taken from the Secret vigil-proxy: %+v", key, env)
		}
	}
	var dep appsv1.Deployment
	r.decode(t, "Deployment/vigil-server", &dep)
	c := dep.Spec.Template.Spec.Containers[0]
	if !slices.Contains(c.Args, "--db=$(VIGIL_DB)") || c.Env[0].ValueFrom.SecretKeyRef.Name != "vigil-server-db" {
		t.Errorf("server database not from the Secret: args %v env %+v", c.Args, c.Env)
	}
	if _, ok := r.objects["PersistentVolumeClaim/vigil-server-data"]; ok {
		t.Error("PostgreSQL server renders a PVC")
	}
	if strings.Count(r.printed, Redacted) != 3 {
		t.Errorf("printed manifest has %d redacted values, want 3 (credential, proxy, database URL)", strings.Count(r.printed, Redacted))
	}
}

func TestRenderServerSQLite(t *testing.T) {
	r := render(t, "vigil", with(baseValues(), "serverURL", "", "server.enabled", true))
	var pvc corev1.PersistentVolumeClaim
	r.decode(t, "PersistentVolumeClaim/vigil-server-data", &pvc)
	if pvc.Annotations["helm.sh/resource-policy"] != "keep" {
		t.Error("the server's PVC is not kept by helm uninstall")
	}
	var ds appsv1.DaemonSet
	r.decode(t, "DaemonSet/vigil-sensor", &ds)
	if !slices.Contains(ds.Spec.Template.Spec.Containers[0].Args, "--server=http://vigil-server.vigil.svc:7777") {
		t.Errorf("without serverURL the sensor should report to the in-cluster server: %v", ds.Spec.Template.Spec.Containers[0].Args)
	}
	var dep appsv1.Deployment
	r.decode(t, "Deployment/vigil-server", &dep)
	if !slices.Contains(dep.Spec.Template.Spec.Containers[0].Args, "--db=sqlite:///var/lib/vigil/vigil.db") ||
		dep.Spec.Template.Spec.Volumes[0].PersistentVolumeClaim.ClaimName != "vigil-server-data" {
		t.Errorf("server not on SQLite on the PVC: %+v", dep.Spec.Template.Spec)
	}
}

func TestRenderOpenShift(t *testing.T) {
	r := render(t, "vigil", with(baseValues(), "distribution", "openshift"))
	var scc struct {
		APIVersion               string   `json:"apiVersion"`
		AllowHostPID             bool     `json:"allowHostPID"`
		AllowPrivilegedContainer bool     `json:"allowPrivilegedContainer"`
		AllowHostDirVolumePlugin bool     `json:"allowHostDirVolumePlugin"`
		Users                    []string `json:"users"`
	}
	r.decodeLoose(t, "SecurityContextConstraints/vigil-sensor", &scc)
	if scc.APIVersion != "security.openshift.io/v1" || !scc.AllowHostPID || !scc.AllowPrivilegedContainer || !scc.AllowHostDirVolumePlugin ||
		!slices.Equal(scc.Users, []string{"system:serviceaccount:vigil:vigil-sensor"}) {
		t.Errorf("SCC %+v", scc)
	}
}

func TestRenderRejects(t *testing.T) {
	ch, err := LoadChart()
	if err != nil {
		t.Fatal(err)
	}
	for name, vals := range map[string]map[string]any{
		"no server":           with(baseValues(), "serverURL", ""),
		"bad mode":            with(baseValues(), "recommendations", map[string]any{"no-privileged": "block"}),
		"bad failure policy":  with(baseValues(), "failurePolicy", "Maybe"),
		"timeout too long":    with(baseValues(), "webhookTimeoutSeconds", 31),
		"unknown value":       with(baseValues(), "sensorr", map[string]any{"enabled": false}),
		"audit without token": with(baseValues(), "agent.audit.enabled", true),
		"short audit token":   with(baseValues(), "agent.audit.enabled", true, "agent.audit.token", "short-SECRET"),
	} {
		if _, err := Render(ch, "vigil", vals); err == nil {
			t.Errorf("%s: rendered", name)
		} else if strings.Contains(err.Error(), testCredential) || strings.Contains(err.Error(), "SECRET") {
			t.Errorf("%s: the error shows the credential", name)
		}
	}
}

// TestRenderGolden pins the default rendering (`vigil install --dry-run
// --server https://vigil.example:443 --cluster bar`, credential given):
// run with -update after changing the chart, and read the diff.
func TestRenderGolden(t *testing.T) {
	r := render(t, "vigil", baseValues())
	golden := filepath.Join("testdata", "default.yaml")
	if *update {
		if err := os.WriteFile(golden, []byte(r.printed+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != r.printed+"\n" {
		t.Errorf("rendering differs from %s; run go test ./internal/install -run Golden -update and review the diff", golden)
	}
}

func TestRedact(t *testing.T) {
	in := "---\n# Source: x/secret.yaml\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  a: " + b64("one") + "\nstringData:\n  b: two\n---\n# Source: x/cm.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: one\n"
	out, err := Redact(in)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, b64("one")) || strings.Contains(out, "two") || strings.Count(out, Redacted) != 2 {
		t.Errorf("Secret not redacted:\n%s", out)
	}
	if !strings.Contains(out, "# Source: x/secret.yaml\n") || !strings.HasSuffix(out, "kind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: one\n") {
		t.Errorf("other content changed:\n%s", out)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestLint runs `helm lint` (Helm's own linter, strict) over the chart's
// directory, with the values a user gives at the least.
func TestLint(t *testing.T) {
	kv, err := chartutil.ParseKubeVersion(RenderKubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	for name, vals := range map[string]map[string]any{
		"default": baseValues(),
		"all on":  with(baseValues(), "server.enabled", true, "distribution", "openshift", "auditTail.enabled", true, "proxy", testProxy),
	} {
		l := lint.AllWithKubeVersion(filepath.Join("..", "..", "deploy", "charts", "vigil"), vals, "vigil", kv)
		for _, m := range l.Messages {
			if m.Severity > support.InfoSev {
				t.Errorf("%s: helm lint: %s", name, m)
			}
		}
	}
}
