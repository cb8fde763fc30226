package posture

import (
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// decodeOne decodes a single-object manifest.
func decodeOne(t testing.TB, doc string) runtime.Object {
	t.Helper()
	objs, err := Decode([]byte(doc))
	if err != nil || len(objs) != 1 {
		t.Fatalf("decode: %v (%d objects)\n%s", err, len(objs), doc)
	}
	return objs[0]
}

// pod wraps an indented pod spec body into a Pod manifest.
func pod(spec string) string {
	return "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: shop\n  labels: {app: web}\nspec:\n" + spec
}

func parse(t testing.TB, doc string) *Config {
	t.Helper()
	c, err := ParseConfig([]byte(doc))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, doc)
	}
	return c
}

func result(rs []Result, id string) (Result, bool) {
	for _, r := range rs {
		if r.Recommendation == id {
			return r, true
		}
	}
	return Result{}, false
}

// TestPostureChecks runs each check's parameters and edge cases.
func TestPostureChecks(t *testing.T) {
	const good = `  containers:
  - name: app
    image: registry.example.com/team/app:1.0
`
	tests := []struct {
		name   string
		rec    string
		config string // parameters of rec, YAML indented 6 spaces; "" for defaults
		obj    string
		want   []string // substrings, one per violation; nil means healthy
	}{
		// cpu-memory-limits
		{"limits missing", CPUMemoryLimits, "", pod(good), []string{`container "app" has no CPU limit`, `container "app" has no memory limit`}},
		{"limits within max", CPUMemoryLimits, "cpuLimit: 500m\n      memoryLimit: 1Gi", pod(good + "    resources: {limits: {cpu: 500m, memory: 1Gi}}\n"), nil},
		{"limits above max", CPUMemoryLimits, "cpuLimit: 500m\n      memoryLimit: 1Gi", pod(good + "    resources: {limits: {cpu: '1', memory: 2Gi}}\n"), []string{"CPU limit of 1, above the maximum 500m", "memory limit of 2Gi, above the maximum 1Gi"}},
		{"limits init container too", CPUMemoryLimits, "", pod(good + "    resources: {limits: {cpu: 1, memory: 1Gi}}\n  initContainers:\n  - {name: init, image: x}\n"), []string{`init container "init" has no CPU limit`, `init container "init" has no memory limit`}},
		{"limits not asked of ephemeral containers", CPUMemoryLimits, "", pod(good + "    resources: {limits: {cpu: 1, memory: 1Gi}}\n  ephemeralContainers:\n  - {name: debug, image: busybox}\n"), nil},

		// no-privileged
		{"privileged", NoPrivileged, "", pod(good + "    securityContext: {privileged: true}\n"), []string{`container "app" is privileged`}},
		{"privileged false", NoPrivileged, "", pod(good + "    securityContext: {privileged: false}\n"), nil},
		{"privileged ephemeral", NoPrivileged, "", pod(good + "  ephemeralContainers:\n  - {name: debug, image: busybox, securityContext: {privileged: true}}\n"), []string{`ephemeral container "debug" is privileged`}},
		{"privileged excluded image prefix", NoPrivileged, "", pod("  containers:\n  - {name: csi, image: registry.example.com/csi/driver:2, securityContext: {privileged: true}}\n"), nil},

		// read-only-root-fs
		{"rootfs unset", ReadOnlyRootFS, "", pod(good), []string{`container "app" has a writable root filesystem`}},
		{"rootfs true", ReadOnlyRootFS, "", pod(good + "    securityContext: {readOnlyRootFilesystem: true}\n"), nil},

		// no-privilege-escalation
		{"escalation unset", NoPrivilegeEscalation, "", pod(good), []string{"does not set securityContext.allowPrivilegeEscalation"}},
		{"escalation true", NoPrivilegeEscalation, "", pod(good + "    securityContext: {allowPrivilegeEscalation: true}\n"), []string{"allowPrivilegeEscalation: true"}},
		{"escalation false", NoPrivilegeEscalation, "", pod(good + "    securityContext: {allowPrivilegeEscalation: false}\n"), nil},

		// run-as-non-root, with inheritance from the pod
		{"root by default", RunAsNonRoot, "", pod(good), []string{"may run as root"}},
		{"non-root from the pod", RunAsNonRoot, "", pod("  securityContext: {runAsNonRoot: true}\n" + good), nil},
		{"uid from the pod", RunAsNonRoot, "", pod("  securityContext: {runAsUser: 1000}\n" + good), nil},
		{"container uid 0 overrides pod", RunAsNonRoot, "", pod("  securityContext: {runAsNonRoot: true}\n" + good + "    securityContext: {runAsUser: 0}\n"), []string{"runs as root (runAsUser: 0)"}},
		{"container non-root overrides pod false", RunAsNonRoot, "", pod("  securityContext: {runAsNonRoot: false}\n" + good + "    securityContext: {runAsNonRoot: true}\n"), nil},
		{"init container as root", RunAsNonRoot, "", pod("  securityContext: {runAsUser: 1000}\n" + good + "  initContainers:\n  - {name: init, image: x, securityContext: {runAsUser: 0}}\n"), []string{`init container "init" runs as root`}},

		// no-host-pid-ipc
		{"host pid and ipc", NoHostPIDIPC, "", pod("  hostPID: true\n  hostIPC: true\n" + good), []string{"hostPID: true", "hostIPC: true"}},
		{"host network is another check", NoHostPIDIPC, "", pod("  hostNetwork: true\n" + good), nil},

		// least-capabilities
		{"add not allowed", LeastCapabilities, "", pod(good + "    securityContext: {capabilities: {add: [NET_ADMIN]}}\n"), []string{"adds capability NET_ADMIN, which is not allowed (allowed: none)"}},
		{"add allowed case-insensitive with CAP_", LeastCapabilities, "allowedCapabilities: [cap_net_admin]", pod(good + "    securityContext: {capabilities: {add: [NET_ADMIN]}}\n"), nil},
		{"add ALL violates", LeastCapabilities, "allowedCapabilities: [NET_ADMIN, SYS_TIME]", pod(good + "    securityContext: {capabilities: {add: [ALL]}}\n"), []string{"adds capability ALL"}},
		{"star allows all", LeastCapabilities, "allowedCapabilities: ['*']", pod(good + "    securityContext: {capabilities: {add: [ALL, SYS_ADMIN]}}\n"), nil},
		{"required drop missing", LeastCapabilities, "requiredDropCapabilities: [NET_RAW, SYS_ADMIN]", pod(good + "    securityContext: {capabilities: {drop: [NET_RAW]}}\n"), []string{"does not drop SYS_ADMIN;"}},
		{"required drop unset", LeastCapabilities, "requiredDropCapabilities: [NET_RAW]", pod(good), []string{"does not drop NET_RAW"}},
		{"drop ALL satisfies", LeastCapabilities, "requiredDropCapabilities: [NET_RAW, SYS_ADMIN]", pod(good + "    securityContext: {capabilities: {drop: [all]}}\n"), nil},
		{"drop with CAP_ prefix", LeastCapabilities, "requiredDropCapabilities: [NET_RAW]", pod(good + "    securityContext: {capabilities: {drop: [CAP_NET_RAW]}}\n"), nil},
		{"ephemeral container adds", LeastCapabilities, "", pod(good + "  ephemeralContainers:\n  - {name: debug, image: busybox, securityContext: {capabilities: {add: [SYS_PTRACE]}}}\n"), []string{`ephemeral container "debug" adds capability SYS_PTRACE`}},

		// allowed-host-paths
		{"hostPath none allowed", AllowedHostPaths, "", pod(good + "  volumes:\n  - {name: logs, hostPath: {path: /var/log}}\n"), []string{`volume "logs" mounts host path /var/log, which is not under an allowed prefix (allowed: none)`}},
		{"hostPath under prefix", AllowedHostPaths, "allowedHostPaths: [{pathPrefix: /var/log, readOnly: false}]", pod(good + "  volumes:\n  - {name: logs, hostPath: {path: /var/log/pods}}\n"), nil},
		{"hostPath equal to prefix with slash", AllowedHostPaths, "allowedHostPaths: [{pathPrefix: /var/log/, readOnly: false}]", pod(good + "  volumes:\n  - {name: logs, hostPath: {path: /var/log}}\n"), nil},
		{"hostPath segment not string prefix", AllowedHostPaths, "allowedHostPaths: [{pathPrefix: /var/log, readOnly: false}]", pod(good + "  volumes:\n  - {name: logs, hostPath: {path: /var/logs}}\n"), []string{"host path /var/logs"}},
		{"hostPath dot-dot escapes", AllowedHostPaths, "allowedHostPaths: [{pathPrefix: /var/log, readOnly: false}]", pod(good + "  volumes:\n  - {name: logs, hostPath: {path: /var/log/../../etc}}\n"), []string{"host path /var/log/../../etc"}},
		{"hostPath readOnly required, mounted rw", AllowedHostPaths, "allowedHostPaths: [{pathPrefix: /var/log, readOnly: true}]", pod("  containers:\n  - {name: app, image: x, volumeMounts: [{name: logs, mountPath: /l}]}\n  initContainers:\n  - {name: init, image: x, volumeMounts: [{name: logs, mountPath: /l, readOnly: true}]}\n  volumes:\n  - {name: logs, hostPath: {path: /var/log}}\n"), []string{`container "app" mounts host path /var/log (volume "logs") read-write`}},
		{"hostPath readOnly required, mounted ro", AllowedHostPaths, "allowedHostPaths: [{pathPrefix: /var/log, readOnly: true}]", pod("  containers:\n  - {name: app, image: x, volumeMounts: [{name: logs, mountPath: /l, readOnly: true}]}\n  volumes:\n  - {name: logs, hostPath: {path: /var/log}}\n"), nil},
		{"hostPath root allows all", AllowedHostPaths, "allowedHostPaths: [{pathPrefix: /, readOnly: false}]", pod(good + "  volumes:\n  - {name: s, hostPath: {path: /etc}}\n"), nil},
		{"no hostPath", AllowedHostPaths, "", pod(good + "  volumes:\n  - {name: tmp, emptyDir: {}}\n"), nil},

		// allowed-container-ports (disabled by default: the config enables it)
		{"container port allowed by range", AllowedContainerPorts, "allowedContainerPorts: ['80', '8000-8100']", pod(good + "    ports: [{containerPort: 8080}, {containerPort: 80}]\n"), nil},
		{"container port outside", AllowedContainerPorts, "allowedContainerPorts: ['80', '8000-8100']", pod(good + "    ports: [{containerPort: 8101, protocol: UDP}]\n"), []string{"listens on port 8101/UDP, which is not allowed (allowed: 80, 8000-8100)"}},
		{"init container port", AllowedContainerPorts, "allowedContainerPorts: ['80']", pod(good + "  initContainers:\n  - {name: init, image: x, ports: [{containerPort: 22}]}\n"), []string{`init container "init" listens on port 22/TCP`}},

		// allowed-service-ports
		{"service port allowed", AllowedServicePorts, "allowedServicePorts: ['443', '8000-9000']", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports: [{port: 443}, {port: 8080}]\n", nil},
		{"service port outside", AllowedServicePorts, "allowedServicePorts: ['443']", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports: [{port: 443}, {port: 22}]\n", []string{"service port 22/TCP (spec.ports[1]) is not allowed (allowed: 443)"}},
		{"service port none configured", AllowedServicePorts, "", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports: [{port: 80}]\n", []string{"(allowed: none)"}},

		// no-host-network-ports
		{"host network", NoHostNetworkPorts, "", pod("  hostNetwork: true\n" + good), []string{"hostNetwork: true"}},
		{"host network allowed", NoHostNetworkPorts, "allowHostNetwork: true", pod("  hostNetwork: true\n" + good), nil},
		{"host network makes container ports host ports", NoHostNetworkPorts, "allowHostNetwork: true\n      allowedHostPorts: ['9000-9100']", pod("  hostNetwork: true\n" + good + "    ports: [{containerPort: 9001}, {containerPort: 53, protocol: UDP}]\n"), []string{"binds host port 53/UDP"}},
		{"host port not allowed", NoHostNetworkPorts, "", pod(good + "    ports: [{containerPort: 80, hostPort: 8080}]\n"), []string{"binds host port 8080/TCP, which is not allowed (allowed: none)"}},
		{"host port in range", NoHostNetworkPorts, "allowedHostPorts: ['80', '3000-5000']", pod(good + "    ports: [{containerPort: 80, hostPort: 5000}]\n"), nil},
		{"container port without host port", NoHostNetworkPorts, "", pod(good + "    ports: [{containerPort: 80}]\n"), nil},

		// apparmor-not-overridden
		{"apparmor unset is runtime/default", AppArmorNotOverridden, "", pod(good), nil},
		{"apparmor annotation unconfined", AppArmorNotOverridden, "", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {container.apparmor.security.beta.kubernetes.io/app: unconfined}\nspec:\n" + good, []string{"profile unconfined (from annotation container.apparmor.security.beta.kubernetes.io/app)"}},
		{"apparmor annotation for another container", AppArmorNotOverridden, "", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {container.apparmor.security.beta.kubernetes.io/other: unconfined}\nspec:\n" + good, nil},
		{"apparmor field unconfined", AppArmorNotOverridden, "", pod(good + "    securityContext: {appArmorProfile: {type: Unconfined}}\n"), []string{"profile unconfined (from securityContext.appArmorProfile)"}},
		{"apparmor pod field inherited", AppArmorNotOverridden, "", pod("  securityContext: {appArmorProfile: {type: Unconfined}}\n" + good), []string{"from pod securityContext.appArmorProfile"}},
		{"apparmor container field overrides pod", AppArmorNotOverridden, "", pod("  securityContext: {appArmorProfile: {type: Unconfined}}\n" + good + "    securityContext: {appArmorProfile: {type: RuntimeDefault}}\n"), nil},
		{"apparmor localhost wildcard", AppArmorNotOverridden, "allowedProfiles: [runtime/default, localhost/*]", pod(good + "    securityContext: {appArmorProfile: {type: Localhost, localhostProfile: k8s-nginx}}\n"), nil},
		{"apparmor localhost not listed", AppArmorNotOverridden, "", pod(good + "    securityContext: {appArmorProfile: {type: Localhost, localhostProfile: k8s-nginx}}\n"), []string{"profile localhost/k8s-nginx"}},
		{"apparmor empty list blocks all", AppArmorNotOverridden, "allowedProfiles: []", pod(good), []string{"runtime/default (from unset, which means runtime/default), which is not allowed (allowed: none)"}},

		// trusted-registries, anchored to whole prefixes
		{"registry host", TrustedRegistries, `registries: ['registry\.example\.com']`, pod(good), nil},
		{"registry suffix attack", TrustedRegistries, `registries: ['registry\.example\.com']`, pod("  containers:\n  - {name: app, image: registry.example.com.evil.net/team/app:1}\n"), []string{`image "registry.example.com.evil.net/team/app:1" (repository registry.example.com.evil.net/team/app) is not from a trusted registry`}},
		{"registry repo prefix", TrustedRegistries, `registries: ['registry\.example\.com/team']`, pod(good), nil},
		{"registry repo prefix is by segment", TrustedRegistries, `registries: ['registry\.example\.com/team']`, pod("  containers:\n  - {name: app, image: registry.example.com/teamevil/app}\n"), []string{"teamevil"}},
		{"registry azure-style full regex", TrustedRegistries, `registries: ['^[^\/]+\.azurecr\.io\/.+$']`, pod("  containers:\n  - {name: app, image: 'myreg.azurecr.io/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef'}\n"), nil},
		{"registry docker hub expanded", TrustedRegistries, `registries: ['docker\.io/library']`, pod("  containers:\n  - {name: app, image: nginx:1.15.2}\n  initContainers:\n  - {name: init, image: bitnami/kubectl}\n"), []string{`init container "init" image "bitnami/kubectl" (repository docker.io/bitnami/kubectl)`}},
		{"registry with port", TrustedRegistries, `registries: ['localhost:5000']`, pod("  containers:\n  - {name: app, image: 'localhost:5000/app:v1'}\n"), nil},
		{"registry none configured", TrustedRegistries, "", pod(good), []string{"none is configured"}},
		{"registry ephemeral", TrustedRegistries, `registries: ['registry\.example\.com']`, pod(good + "  ephemeralContainers:\n  - {name: debug, image: busybox}\n"), []string{`ephemeral container "debug" image "busybox"`}},

		// Pod Security Standards
		{"pss baseline ok", PSSBaseline, "", pod(good), nil},
		{"pss baseline upstream messages", PSSBaseline, "", pod("  hostPID: true\n" + good + "    securityContext: {privileged: true}\n"), []string{`host namespaces (hostPID=true)`, `privileged (container "app" must not set securityContext.privileged=true)`}},
		{"pss baseline pinned version", PSSBaseline, "version: v1.25", pod(good), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := "excludedImages: ['registry.example.com/csi/*']\nrecommendations:\n  " + tc.rec + ":\n    mode: audit\n"
			if tc.config != "" {
				doc += "    parameters:\n      " + tc.config + "\n"
			}
			cfg := parse(t, doc)
			res, ok := result(Evaluate(cfg, decodeOne(t, tc.obj)), tc.rec)
			if !ok {
				t.Fatalf("no result for %s", tc.rec)
			}
			if res.Healthy != (tc.want == nil) || len(res.Violations) != len(tc.want) {
				t.Fatalf("healthy=%v violations:\n  %s\nwant %d: %q", res.Healthy, strings.Join(res.Violations, "\n  "), len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(res.Violations[i], w) {
					t.Errorf("violation %d = %q, want it to contain %q", i, res.Violations[i], w)
				}
			}
		})
	}
}

func TestPostureWorkloadExtraction(t *testing.T) {
	ctrl := func(kind, name string) string {
		return "  ownerReferences: [{apiVersion: apps/v1, kind: " + kind + ", name: " + name + ", uid: u1, controller: true}]\n"
	}
	tmpl := "  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: c, image: x}]\n"
	tests := []struct {
		name, doc string
		want      Workload
	}{
		{"deployment", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n" + tmpl, Workload{"Deployment", "shop", "web"}},
		{"default namespace", "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n" + tmpl, Workload{"StatefulSet", "default", "db"}},
		{"daemonset", "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agent, namespace: ns1}\nspec:\n" + tmpl, Workload{"DaemonSet", "ns1", "agent"}},
		{"job", "apiVersion: batch/v1\nkind: Job\nmetadata: {name: once, namespace: ns1}\nspec:\n" + tmpl, Workload{"Job", "ns1", "once"}},
		{"job of cronjob", "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: nightly-2901\n  namespace: ns1\n" + ctrl("CronJob", "nightly") + "spec:\n" + tmpl, Workload{"CronJob", "ns1", "nightly"}},
		{"cronjob", "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly, namespace: ns1}\nspec:\n  schedule: '0 0 * * *'\n  jobTemplate:\n    spec:\n" + "      template:\n        spec:\n          containers: [{name: c, image: x}]\n", Workload{"CronJob", "ns1", "nightly"}},
		{"replicaset of deployment", "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: web-6d4cf56db6\n  namespace: shop\n" + ctrl("Deployment", "web") + "spec:\n" + tmpl, Workload{"Deployment", "shop", "web"}},
		{"bare replicaset", "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: rs, namespace: shop}\nspec:\n" + tmpl, Workload{"ReplicaSet", "shop", "rs"}},
		{"pod of deployment", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-6d4cf56db6-x7k2p\n  namespace: shop\n  labels: {pod-template-hash: 6d4cf56db6}\n" + ctrl("ReplicaSet", "web-6d4cf56db6") + "spec:\n  containers: [{name: c, image: x}]\n", Workload{"Deployment", "shop", "web"}},
		{"pod of bare replicaset", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: rs-x7k2p\n  namespace: shop\n" + ctrl("ReplicaSet", "rs") + "spec:\n  containers: [{name: c, image: x}]\n", Workload{"ReplicaSet", "shop", "rs"}},
		{"pod of statefulset", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: db-0\n  namespace: shop\n" + ctrl("StatefulSet", "db") + "spec:\n  containers: [{name: c, image: x}]\n", Workload{"StatefulSet", "shop", "db"}},
		{"naked pod", pod("  containers: [{name: c, image: x}]\n"), Workload{"Pod", "shop", "p"}},
		{"service", "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: shop}\nspec: {ports: [{port: 80}]}\n", Workload{"Service", "shop", "s"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obj := decodeOne(t, tc.doc)
			got, ok := Extract(obj)
			if !ok || got.Workload != tc.want {
				t.Fatalf("Extract = %+v, %v; want %v", got.Workload, ok, tc.want)
			}
			if got.Service == nil && (got.Spec == nil || len(got.Spec.Containers) != 1 || got.Meta.Namespace != tc.want.Namespace) {
				t.Errorf("spec %v, meta namespace %q", got.Spec, got.Meta.Namespace)
			}
		})
	}
	if _, ok := Extract(&corev1.ConfigMap{}); ok {
		t.Error("Extract(ConfigMap) = true")
	}
}

func TestPostureExclusions(t *testing.T) {
	obj := func(ns string, labels string) runtime.Object {
		return decodeOne(t, "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: "+ns+", labels: {"+labels+"}}\nspec:\n  containers:\n  - {name: app, image: x, securityContext: {privileged: true}}\n  - {name: sidecar, image: 'mesh.example.com/proxy:1', securityContext: {privileged: true}}\n")
	}
	tests := []struct {
		name, config string
		obj          runtime.Object
		want         int // violations; -1 means no result
	}{
		{"default excludes kube-system", "", obj("kube-system", ""), -1},
		{"default excludes vigil", "", obj("vigil", ""), -1},
		{"global list replaced", "excludedNamespaces: []\n", obj("kube-system", ""), 2},
		{"per-recommendation list", "recommendations:\n  no-privileged:\n    excludedNamespaces: [shop]\n", obj("shop", ""), -1},
		{"namespaces include list", "recommendations:\n  no-privileged:\n    namespaces: [prod]\n", obj("shop", ""), -1},
		{"label selector match", "recommendations:\n  no-privileged:\n    labelSelector: {matchLabels: {tier: web}}\n", obj("shop", "tier: web"), 2},
		{"label selector miss", "recommendations:\n  no-privileged:\n    labelSelector: {matchExpressions: [{key: tier, operator: In, values: [web]}]}\n", obj("shop", "tier: db"), -1},
		{"excluded image prefix", "recommendations:\n  no-privileged:\n    excludedImages: ['mesh.example.com/*']\n", obj("shop", ""), 1},
		{"excluded container", "recommendations:\n  no-privileged:\n    excludedContainers: [app]\n", obj("shop", ""), 1},
		{"disabled", "recommendations:\n  no-privileged: {mode: disabled}\n", obj("shop", ""), -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, ok := result(Evaluate(parse(t, tc.config), tc.obj), NoPrivileged)
			switch {
			case tc.want < 0 && ok:
				t.Errorf("got a result %+v, want none", res)
			case tc.want >= 0 && (!ok || len(res.Violations) != tc.want):
				t.Errorf("got %v %q, want %d violations", ok, res.Violations, tc.want)
			}
		})
	}
}

func TestPostureConfig(t *testing.T) {
	bad := []struct{ doc, want string }{
		{"recommendations:\n  no-such-thing: {mode: audit}\n", "recommendations.no-such-thing: unknown recommendation"},
		{"recommendations:\n  no-privileged: {mode: block}\n", `recommendations.no-privileged.mode: "block": want audit, deny or disabled`},
		{"recommendations:\n  trusted-registries:\n    parameters: {registries: ['(unclosed']}\n", "recommendations.trusted-registries.parameters.registries[0]: error parsing regexp"},
		{"recommendations:\n  no-privileged:\n    parameters: {registries: [x]}\n", "recommendations.no-privileged.parameters.registries: unknown parameter (no-privileged takes: none)"},
		{"recommendations:\n  no-privileged: {moed: deny}\n", `unknown field "moed"`},
		{"excludedNamspaces: []\n", `unknown field "excludedNamspaces"`},
		{"recommendations:\n  no-host-network-ports:\n    parameters: {allowedHostPorts: ['0']}\n", "parameters.allowedHostPorts[0]: \"0\": want a port"},
		{"recommendations:\n  allowed-service-ports:\n    parameters: {allowedServicePorts: ['90-80']}\n", "allowedServicePorts[0]"},
		{"recommendations:\n  allowed-host-paths:\n    parameters: {allowedHostPaths: [{pathPrefix: var/log}]}\n", "is not an absolute path"},
		{"recommendations:\n  cpu-memory-limits:\n    parameters: {cpuLimit: lots}\n", "parameters.cpuLimit"},
		{"recommendations:\n  apparmor-not-overridden:\n    parameters: {allowedProfiles: [RuntimeDefault]}\n", "allowedProfiles[0]"},
		{"recommendations:\n  pss-restricted:\n    parameters: {version: '1.x'}\n", "parameters.version"},
		{"recommendations:\n  no-privileged:\n    labelSelector: {matchExpressions: [{key: a, operator: Near}]}\n", "labelSelector"},
		{"recommendations:\n  no-privileged:\n    mode: [deny]\n", "mode: want"},
		{"recommendations: [1, 2]\n", "recommendations"},
		{"excludedNamespaces: [a]\n---\nexcludedNamespaces: [b]\n", "more than one document"},
		{`{"excludedNamespaces": ["a"]} {"excludedNamespaces": ["b"]}`, "more than one document"},
	}
	for _, tc := range bad {
		_, err := ParseConfig([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseConfig(%q) = %v, want an error containing %q", tc.doc, err, tc.want)
		}
	}

	// Merging: what the document sets replaces the default, what it omits
	// keeps it.
	c := parse(t, `{"recommendations": {"cpu-memory-limits": {"mode": "deny", "parameters": {"cpuLimit": "2"}}}}`)
	s := c.Recommendations[CPUMemoryLimits]
	if s.Mode != Deny || s.Parameters.CPULimit != "2" || s.Parameters.MemoryLimit != "64Gi" {
		t.Errorf("merged setting %+v", s)
	}
	if !reflect.DeepEqual(c.ExcludedNamespaces, []string{"kube-system", "vigil"}) {
		t.Errorf("excluded namespaces %v", c.ExcludedNamespaces)
	}
	for _, doc := range []string{"", "# nothing\n", "{}"} {
		if _, err := ParseConfig([]byte(doc)); err != nil {
			t.Errorf("ParseConfig(%q): %v", doc, err)
		}
	}

	// The namespaces no recommendation looks at: those every enabled one
	// excludes.
	ign := parse(t, "excludedNamespaces: [kube-system, vigil, tools]\nrecommendations:\n  no-privileged:\n    excludedNamespaces: [kube-system, vigil]\n")
	if got := ign.IgnoredNamespaces(); !reflect.DeepEqual(got, []string{"kube-system", "vigil"}) {
		t.Errorf("IgnoredNamespaces = %v, want [kube-system vigil] (no-privileged still looks at tools)", got)
	}
	if got := DefaultConfig().IgnoredNamespaces(); !reflect.DeepEqual(got, []string{"kube-system", "vigil"}) {
		t.Errorf("default IgnoredNamespaces = %v", got)
	}

	// Defaults: every recommendation present, in its default mode.
	d := DefaultConfig()
	for _, r := range Recommendations() {
		if d.Recommendations[r.ID] == nil || d.Recommendations[r.ID].Mode != r.DefaultMode {
			t.Errorf("%s: default setting %+v", r.ID, d.Recommendations[r.ID])
		}
	}
	if len(Recommendations()) != 15 {
		t.Errorf("%d recommendations, want 13 + 2", len(Recommendations()))
	}

	// A hand-built config must pass Validate.
	defer func() {
		if recover() == nil {
			t.Error("Evaluate on an unvalidated Config did not panic")
		}
	}()
	Evaluate(&Config{}, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}})
}

// TestPostureSeed evaluates the seed's two example deployments: the
// healthy one passes every recommendation, the unhealthy one fails exactly
// those it violates.
func TestPostureSeed(t *testing.T) {
	seedCfg, err := LoadConfig("testdata/seed-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	verdicts := func(t *testing.T, cfg *Config, file string) (healthy, unhealthy []string) {
		t.Helper()
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range strings.Split(string(data), "\n---\n") {
			for _, obj := range must(Decode([]byte(doc))) {
				for _, r := range Evaluate(cfg, obj) {
					if r.Healthy {
						healthy = append(healthy, r.Recommendation)
					} else {
						unhealthy = append(unhealthy, r.Recommendation)
						t.Logf("%s %s: %s", r.Workload, r.Recommendation, strings.Join(r.Violations, "; "))
					}
				}
			}
		}
		sort.Strings(healthy)
		sort.Strings(unhealthy)
		return healthy, unhealthy
	}
	all13 := []string{AllowedContainerPorts, AllowedHostPaths, AllowedServicePorts, AppArmorNotOverridden, CPUMemoryLimits, LeastCapabilities,
		NoHostNetworkPorts, NoHostPIDIPC, NoPrivilegeEscalation, NoPrivileged, PSSBaseline, ReadOnlyRootFS, RunAsNonRoot, TrustedRegistries}

	healthy, unhealthy := verdicts(t, seedCfg, "testdata/healthy.yaml")
	if len(unhealthy) != 0 || !reflect.DeepEqual(healthy, all13) {
		t.Errorf("healthy example: healthy %v, unhealthy %v", healthy, unhealthy)
	}

	// The unhealthy example violates every recommendation but one: it never
	// touches AppArmor, and an unset profile is runtime/default.
	healthy, unhealthy = verdicts(t, seedCfg, "testdata/unhealthy.yaml")
	want := []string{AllowedContainerPorts, AllowedHostPaths, AllowedServicePorts, CPUMemoryLimits, LeastCapabilities,
		NoHostNetworkPorts, NoHostPIDIPC, NoPrivilegeEscalation, NoPrivileged, PSSBaseline, ReadOnlyRootFS, RunAsNonRoot, TrustedRegistries}
	if !reflect.DeepEqual(unhealthy, want) || !reflect.DeepEqual(healthy, []string{AppArmorNotOverridden}) {
		t.Errorf("unhealthy example: unhealthy %v, healthy %v; want unhealthy %v", unhealthy, healthy, want)
	}

	// With the defaults, as in Defender, the recommendations that need
	// configuration flag the healthy example until configured.
	_, unhealthy = verdicts(t, DefaultConfig(), "testdata/healthy.yaml")
	if !reflect.DeepEqual(unhealthy, []string{AllowedServicePorts, TrustedRegistries}) {
		t.Errorf("healthy example, default config: unhealthy %v", unhealthy)
	}

	// pss-restricted (off by default) is stricter than Defender's bundle.
	_, unhealthy = verdicts(t, parse(t, "recommendations:\n  pss-restricted: {mode: audit}\n  trusted-registries: {mode: disabled}\n  allowed-service-ports: {mode: disabled}\n"), "testdata/healthy.yaml")
	if !reflect.DeepEqual(unhealthy, []string{PSSRestricted}) {
		t.Errorf("healthy example, restricted: unhealthy %v", unhealthy)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
