package posture

import "testing"

// benchDeployment is a realistic Deployment: an init container, an app and
// a sidecar, probes, volumes, a pod security context and annotations.
const benchDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: checkout
  namespace: shop
  labels: {app: checkout, tier: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: checkout}}
  template:
    metadata:
      labels: {app: checkout, tier: web, version: v42}
      annotations:
        container.apparmor.security.beta.kubernetes.io/app: runtime/default
        prometheus.io/scrape: "true"
    spec:
      serviceAccountName: checkout
      securityContext: {runAsNonRoot: true, runAsUser: 10001, fsGroup: 10001, seccompProfile: {type: RuntimeDefault}}
      initContainers:
      - name: migrate
        image: registry.example.com/shop/checkout-migrate:v42
        resources: {limits: {cpu: 200m, memory: 128Mi}}
        securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
      containers:
      - name: app
        image: registry.example.com/shop/checkout:v42
        ports: [{containerPort: 8080, name: http}, {containerPort: 9090, name: metrics}]
        env: [{name: MODE, value: prod}]
        resources: {requests: {cpu: 250m, memory: 256Mi}, limits: {cpu: "1", memory: 512Mi}}
        securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}}
        volumeMounts: [{name: tmp, mountPath: /tmp}, {name: logs, mountPath: /var/log/app, readOnly: true}]
        readinessProbe: {httpGet: {path: /healthz, port: 8080}}
      - name: proxy
        image: registry.example.com/mesh/proxy:1.22
        ports: [{containerPort: 15001}]
        resources: {limits: {cpu: 500m, memory: 128Mi}}
        securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
      volumes:
      - {name: tmp, emptyDir: {}}
      - {name: logs, hostPath: {path: /var/log/checkout}}
`

const benchConfig = `recommendations:
  allowed-container-ports: {mode: deny, parameters: {allowedContainerPorts: ["8080", "9090", "15000-15100"]}}
  allowed-service-ports: {parameters: {allowedServicePorts: ["80", "443"]}}
  least-capabilities: {parameters: {allowedCapabilities: [NET_BIND_SERVICE], requiredDropCapabilities: [NET_RAW]}}
  allowed-host-paths: {parameters: {allowedHostPaths: [{pathPrefix: /var/log, readOnly: true}]}}
  trusted-registries: {mode: deny, parameters: {registries: ['registry\.example\.com/(shop|mesh)', '[^/]+\.azurecr\.io']}}
  pss-restricted: {mode: audit}
`

// BenchmarkEvaluate runs every recommendation (all 14 that apply to pods,
// both Pod Security Standards levels included) on a Deployment that
// passes all but the two Pod Security Standards levels.
func BenchmarkEvaluate(b *testing.B) {
	cfg := parse(b, benchConfig)
	obj := decodeOne(b, benchDeployment)
	rs := Evaluate(cfg, obj)
	if len(rs) != 14 {
		b.Fatalf("%d results, want 14", len(rs))
	}
	for _, r := range rs {
		// The hostPath volume is allowed by allowed-host-paths but no Pod
		// Security Standards level allows one.
		if r.Healthy == (r.Recommendation == PSSBaseline || r.Recommendation == PSSRestricted) {
			b.Fatalf("%s: %v", r.Recommendation, r.Violations)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		Evaluate(cfg, obj)
	}
}
