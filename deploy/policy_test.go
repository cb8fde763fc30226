package deploy

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/kubernetes/scheme"
)

// policy mirrors audit.k8s.io/v1 Policy (k8s.io/apiserver/pkg/apis/audit/v1).
// It is decoded strictly: kube-apiserver falls back to lenient decoding and
// only logs a warning for an unknown field, so a misspelt key (userGroup,
// resourceName) would silently widen or narrow a rule.
type policy struct {
	APIVersion        string       `yaml:"apiVersion"`
	Kind              string       `yaml:"kind"`
	Metadata          any          `yaml:"metadata"`
	OmitStages        []string     `yaml:"omitStages"`
	OmitManagedFields bool         `yaml:"omitManagedFields"`
	Rules             []policyRule `yaml:"rules"`
}

type policyRule struct {
	Level             string           `yaml:"level"`
	Users             []string         `yaml:"users"`
	UserGroups        []string         `yaml:"userGroups"`
	Verbs             []string         `yaml:"verbs"`
	Resources         []groupResources `yaml:"resources"`
	Namespaces        []string         `yaml:"namespaces"`
	NonResourceURLs   []string         `yaml:"nonResourceURLs"`
	OmitStages        []string         `yaml:"omitStages"`
	OmitManagedFields *bool            `yaml:"omitManagedFields"`
}

type groupResources struct {
	Group         string   `yaml:"group"`
	Resources     []string `yaml:"resources"`
	ResourceNames []string `yaml:"resourceNames"`
}

func loadPolicy(t *testing.T) *policy {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(AuditPolicy))
	dec.KnownFields(true)
	var p policy
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("decode audit-policy.yaml strictly: %v", err)
	}
	return &p
}

var (
	levels     = []string{"None", "Metadata", "Request", "RequestResponse"}
	stages     = []string{"RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"}
	verbs      = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
	dnsSubdom  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	bodyLevels = []string{"Request", "RequestResponse"}
)

// TestPolicyValid applies the checks kube-apiserver makes when it loads
// the file (k8s.io/apiserver/pkg/apis/audit/validation), plus typo guards
// it does not make: unknown verbs and resources would never match.
func TestPolicyValid(t *testing.T) {
	p := loadPolicy(t)
	if p.APIVersion != "audit.k8s.io/v1" || p.Kind != "Policy" {
		t.Errorf("apiVersion/kind = %s/%s, want audit.k8s.io/v1/Policy", p.APIVersion, p.Kind)
	}
	if len(p.Rules) == 0 {
		t.Fatal("no rules: kube-apiserver refuses a policy with 0 rules")
	}
	if !slices.Equal(p.OmitStages, []string{"RequestReceived"}) {
		t.Errorf("omitStages = %v, want [RequestReceived]", p.OmitStages)
	}
	known := knownResources()
	for i, r := range p.Rules {
		where := fmt.Sprintf("rules[%d]", i)
		if !slices.Contains(levels, r.Level) {
			t.Errorf("%s: level %q not one of %v", where, r.Level, levels)
		}
		for _, s := range r.OmitStages {
			if !slices.Contains(stages, s) {
				t.Errorf("%s: omitStage %q not one of %v", where, s, stages)
			}
		}
		for _, u := range r.NonResourceURLs {
			if u != "*" && !strings.HasPrefix(u, "/") {
				t.Errorf("%s: non-resource URL %q must begin with /", where, u)
			}
			if u != "" && strings.Contains(u[:len(u)-1], "*") {
				t.Errorf("%s: non-resource URL %q: * only as the last character", where, u)
			}
		}
		if len(r.NonResourceURLs) > 0 && (len(r.Resources) > 0 || len(r.Namespaces) > 0) {
			t.Errorf("%s: rules cannot apply to both resources and non-resource URLs", where)
		}
		for _, v := range r.Verbs {
			if !slices.Contains(verbs, v) {
				t.Errorf("%s: verb %q is not a Kubernetes verb", where, v)
			}
		}
		for _, gr := range r.Resources {
			if gr.Group != "" && gr.Group != "*" && !dnsSubdom.MatchString(gr.Group) {
				t.Errorf("%s: group %q is not a DNS subdomain", where, gr.Group)
			}
			if len(gr.ResourceNames) > 0 && len(gr.Resources) == 0 {
				t.Errorf("%s: resourceNames need resources", where)
			}
			for _, res := range gr.Resources {
				base, _, _ := strings.Cut(res, "/")
				if base != "*" && !known[gr.Group+"/"+base] {
					t.Errorf("%s: no resource %q in group %q among the built-in kinds (a typo never matches)", where, base, gr.Group)
				}
			}
		}
	}
}

// knownResources lists group/resource for every built-in kind, by the same
// pluralisation the API server uses for built-in types.
func knownResources() map[string]bool {
	known := map[string]bool{}
	for gvk := range scheme.Scheme.AllKnownTypes() {
		if strings.HasSuffix(gvk.Kind, "List") || strings.HasSuffix(gvk.Kind, "Options") || gvk.Version == "__internal" {
			continue
		}
		plural, _ := meta.UnsafeGuessKindToResource(gvk)
		known[gvk.Group+"/"+plural.Resource] = true
	}
	return known
}

// TestPolicyComments checks that every rule says why it is there.
func TestPolicyComments(t *testing.T) {
	var doc yaml.Node
	if err := yaml.Unmarshal(AuditPolicy, &doc); err != nil {
		t.Fatal(err)
	}
	root := doc.Content[0]
	for i := 0; i < len(root.Content); i += 2 {
		if root.Content[i].Value != "rules" {
			continue
		}
		for j, rule := range root.Content[i+1].Content {
			if strings.TrimSpace(rule.HeadComment) == "" {
				t.Errorf("rules[%d] (line %d) has no comment saying why", j, rule.Line)
			}
		}
	}
}

// TestPolicyInvariants checks properties no future edit may break.
func TestPolicyInvariants(t *testing.T) {
	p := loadPolicy(t)
	last := p.Rules[len(p.Rules)-1]
	if last.Level != "Metadata" || len(last.Users)+len(last.UserGroups)+len(last.Verbs)+len(last.Resources)+len(last.Namespaces)+len(last.NonResourceURLs) != 0 {
		t.Errorf("last rule = %+v, want a bare Metadata catch-all", last)
	}
	for i, r := range p.Rules {
		if !slices.Contains(bodyLevels, r.Level) {
			continue
		}
		if len(r.Resources) == 0 {
			t.Errorf("rules[%d]: level %s without resources logs bodies of every kind", i, r.Level)
		}
		for _, gr := range r.Resources {
			if gr.Group == "*" || len(gr.Resources) == 0 || slices.Contains(gr.Resources, "*") {
				t.Errorf("rules[%d]: level %s on a wildcard (%+v) logs bodies of kinds nobody reviewed", i, r.Level, gr)
			}
		}
	}

	// Credentials never reach the log, whoever asks and however.
	identities := []request{
		{user: "alice", groups: []string{"system:authenticated"}},
		{user: "system:anonymous", groups: []string{"system:unauthenticated"}},
		{user: "system:serviceaccount:kube-system:generic-garbage-collector", groups: []string{"system:serviceaccounts", "system:serviceaccounts:kube-system"}},
		{user: "system:node:n1", groups: []string{"system:nodes"}},
		{user: "system:kube-controller-manager"},
	}
	secret := []request{
		{resource: "secrets", ns: "default", name: "db"},
		{resource: "secrets", ns: "kube-system", name: "coredns"},
		{resource: "configmaps", ns: "default", name: "app"},
		{resource: "configmaps", ns: "kube-system", name: "aws-auth"},
		{resource: "serviceaccounts", sub: "token", ns: "default", name: "builder"},
		{group: "authentication.k8s.io", resource: "tokenreviews"},
	}
	for _, id := range identities {
		for _, s := range secret {
			for _, v := range verbs {
				r := s
				r.user, r.groups, r.verb = id.user, id.groups, v
				if got := p.level(r); got != "None" && got != "Metadata" {
					t.Errorf("%s: level %s, want at most Metadata", r, got)
				}
			}
		}
	}
}

// TestPolicyLevels pins the level of the requests the control-plane rules
// read and of the traffic the policy exists to drop.
func TestPolicyLevels(t *testing.T) {
	p := loadPolicy(t)
	alice := []string{"system:authenticated"}
	kubelet := []string{"system:nodes", "system:authenticated"}
	ksys := []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"}
	anon := []string{"system:unauthenticated"}
	for _, tc := range []struct {
		r    request
		want string
	}{
		// Noise.
		{request{user: "system:anonymous", groups: anon, verb: "get", path: "/healthz"}, "None"},
		{request{user: "system:anonymous", groups: anon, verb: "get", path: "/readyz"}, "None"},
		{request{user: "alice", groups: alice, verb: "get", path: "/livez/ping"}, "None"},
		{request{user: "alice", groups: alice, verb: "get", path: "/version"}, "None"},
		{request{user: "prometheus", groups: alice, verb: "get", path: "/metrics"}, "None"},
		{request{user: "system:kube-controller-manager", verb: "get", path: "/apis/apps/v1"}, "None"},
		{request{user: "system:unsecured", verb: "create", resource: "pods", ns: "default"}, "None"},
		{request{user: "system:kube-proxy", verb: "watch", group: "discovery.k8s.io", resource: "endpointslices"}, "None"},
		{request{user: "system:serviceaccount:kube-system:kube-proxy", groups: ksys, verb: "watch", resource: "services"}, "None"},
		{request{user: "system:kube-controller-manager", verb: "watch", resource: "pods"}, "None"},
		{request{user: "system:node:n1", groups: kubelet, verb: "watch", resource: "configmaps", ns: "default"}, "None"},
		{request{user: "system:serviceaccount:kube-system:coredns", groups: ksys, verb: "watch", resource: "secrets"}, "None"},
		{request{user: "system:node:n1", groups: kubelet, verb: "get", resource: "nodes", name: "n1"}, "None"},
		{request{user: "system:node:n1", groups: kubelet, verb: "update", group: "coordination.k8s.io", resource: "leases", ns: "kube-node-lease", name: "n1"}, "None"},
		{request{user: "system:kube-scheduler", verb: "update", group: "coordination.k8s.io", resource: "leases", ns: "kube-system", name: "kube-scheduler"}, "None"},
		{request{user: "system:serviceaccount:kube-system:replicaset-controller", groups: ksys, verb: "create", resource: "events", ns: "shop"}, "None"},
		{request{user: "alice", groups: alice, verb: "list", group: "events.k8s.io", resource: "events", ns: "shop"}, "None"},

		// Anonymous access beyond health probes.
		{request{user: "system:anonymous", groups: anon, verb: "get", path: "/version"}, "Metadata"},
		{request{user: "system:anonymous", groups: anon, verb: "get", path: "/api"}, "Metadata"},
		{request{user: "system:anonymous", groups: anon, verb: "list", resource: "pods"}, "Metadata"},

		// What stays Metadata.
		{request{user: "system:node:n1", groups: kubelet, verb: "patch", resource: "nodes", sub: "status", name: "n1"}, "Metadata"},
		{request{user: "system:node:n1", groups: kubelet, verb: "patch", resource: "pods", sub: "status", ns: "shop", name: "web-1"}, "Metadata"},
		{request{user: "system:node:n1", groups: kubelet, verb: "get", resource: "secrets", ns: "shop", name: "db"}, "Metadata"},
		{request{user: "alice", groups: alice, verb: "create", group: "coordination.k8s.io", resource: "leases", ns: "shop"}, "Metadata"},
		{request{user: "alice", groups: alice, verb: "delete", resource: "events", ns: "shop", name: "web-1.17f"}, "Metadata"},
		{request{user: "alice", groups: alice, verb: "deletecollection", group: "events.k8s.io", resource: "events", ns: "shop"}, "Metadata"},
		{request{user: "alice", groups: alice, verb: "list", resource: "secrets"}, "Metadata"},
		{request{user: "alice", groups: alice, verb: "get", resource: "secrets", ns: "kube-system", name: "bootstrap-token-abcdef"}, "Metadata"},
		{request{user: "system:serviceaccount:kube-system:coredns", groups: ksys, verb: "list", resource: "secrets"}, "Metadata"},
		{request{user: "alice", groups: alice, verb: "create", resource: "serviceaccounts", sub: "token", ns: "kube-system", name: "clusterrole-aggregation-controller"}, "Metadata"},
		{request{user: "alice", groups: alice, verb: "create", resource: "configmaps", ns: "kube-system", name: ""}, "Metadata"},
		{request{user: "alice", groups: alice, verb: "patch", resource: "configmaps", ns: "default", name: "coredns"}, "Metadata"},
		{request{user: "alice", groups: alice, verb: "create", resource: "pods", sub: "exec", ns: "shop", name: "web-1"}, "Metadata"},
		{request{user: "alice", groups: alice, verb: "get", resource: "pods", sub: "exec", ns: "shop", name: "web-1"}, "Metadata"},
		{request{user: "alice", groups: alice, verb: "create", resource: "pods", sub: "attach", ns: "shop", name: "web-1"}, "Metadata"},
		{request{user: "alice", groups: alice, verb: "create", resource: "pods", sub: "portforward", ns: "shop", name: "web-1"}, "Metadata"},
		{request{user: "alice", groups: alice, verb: "get", resource: "nodes", sub: "proxy", name: "n1"}, "Metadata"},
		{request{user: "alice", groups: alice, verb: "get", resource: "pods", ns: "shop", name: "web-1"}, "Metadata"},
		{request{user: "alice", groups: alice, verb: "delete", resource: "pods", ns: "shop", name: "web-1"}, "Metadata"},
		{request{user: "alice", groups: alice, verb: "patch", group: "apps", resource: "deployments", sub: "scale", ns: "shop", name: "web"}, "Metadata"},
		{request{user: "system:serviceaccount:kube-system:deployment-controller", groups: ksys, verb: "update", group: "apps", resource: "deployments", sub: "status", ns: "shop", name: "web"}, "Metadata"},
		{request{user: "alice", groups: alice, verb: "get", group: "rbac.authorization.k8s.io", resource: "clusterroles", name: "admin"}, "Metadata"},
		{request{user: "system:serviceaccount:monitoring:metrics", verb: "create", group: "authorization.k8s.io", resource: "subjectaccessreviews"}, "Metadata"},
		{request{user: "alice", groups: alice, verb: "create", resource: "namespaces"}, "Metadata"},
		{request{user: "alice", groups: alice, verb: "create", group: "apiextensions.k8s.io", resource: "customresourcedefinitions"}, "Metadata"},

		// Bodies the rules inspect.
		{request{user: "alice", groups: alice, verb: "patch", resource: "configmaps", ns: "kube-system", name: "coredns"}, "RequestResponse"},
		{request{user: "alice", groups: alice, verb: "update", resource: "configmaps", ns: "kube-system", name: "coredns-custom"}, "RequestResponse"},
		{request{user: "alice", groups: alice, verb: "create", resource: "pods", ns: "shop"}, "RequestResponse"},
		{request{user: "system:node:n1", groups: kubelet, verb: "create", resource: "pods", ns: "kube-system"}, "RequestResponse"},
		{request{user: "alice", groups: alice, verb: "patch", resource: "pods", sub: "ephemeralcontainers", ns: "shop", name: "web-1"}, "RequestResponse"},
		{request{user: "alice", groups: alice, verb: "create", group: "apps", resource: "daemonsets", ns: "kube-system"}, "RequestResponse"},
		{request{user: "alice", groups: alice, verb: "patch", group: "apps", resource: "deployments", ns: "shop", name: "web"}, "RequestResponse"},
		{request{user: "system:serviceaccount:kube-system:deployment-controller", groups: ksys, verb: "create", group: "apps", resource: "replicasets", ns: "shop"}, "RequestResponse"},
		{request{user: "alice", groups: alice, verb: "create", group: "batch", resource: "cronjobs", ns: "shop"}, "RequestResponse"},
		{request{user: "alice", groups: alice, verb: "update", resource: "services", ns: "kubernetes-dashboard", name: "dashboard"}, "RequestResponse"},
		{request{user: "alice", groups: alice, verb: "create", group: "rbac.authorization.k8s.io", resource: "clusterrolebindings"}, "RequestResponse"},
		{request{user: "alice", groups: alice, verb: "delete", group: "rbac.authorization.k8s.io", resource: "rolebindings", ns: "shop", name: "ops"}, "RequestResponse"},
		{request{user: "alice", groups: alice, verb: "create", group: "admissionregistration.k8s.io", resource: "mutatingwebhookconfigurations"}, "RequestResponse"},
		{request{user: "alice", groups: alice, verb: "delete", group: "admissionregistration.k8s.io", resource: "validatingwebhookconfigurations", name: "gatekeeper"}, "RequestResponse"},
		{request{user: "alice", groups: alice, verb: "create", group: "certificates.k8s.io", resource: "certificatesigningrequests"}, "RequestResponse"},
		{request{user: "alice", groups: alice, verb: "update", group: "certificates.k8s.io", resource: "certificatesigningrequests", sub: "approval", name: "csr-x"}, "RequestResponse"},
		{request{user: "system:serviceaccount:shop:web", verb: "create", group: "authorization.k8s.io", resource: "selfsubjectaccessreviews"}, "RequestResponse"},
		{request{user: "system:serviceaccount:shop:web", verb: "create", group: "authorization.k8s.io", resource: "selfsubjectrulesreviews"}, "RequestResponse"},
		{request{user: "system:serviceaccount:shop:web", verb: "create", group: "authentication.k8s.io", resource: "selfsubjectreviews"}, "RequestResponse"},
	} {
		if got := p.level(tc.r); got != tc.want {
			t.Errorf("%s: level %s, want %s", tc.r, got, tc.want)
		}
	}
}

// request is the part of a request's authorizer attributes the policy
// looks at. path set means a non-resource request.
type request struct {
	user                           string
	groups                         []string
	verb                           string
	group, resource, sub, ns, name string
	path                           string
}

func (r request) String() string {
	if r.path != "" {
		return fmt.Sprintf("%s %s by %s", r.verb, r.path, r.user)
	}
	res := r.resource
	if r.sub != "" {
		res += "/" + r.sub
	}
	if r.group != "" {
		res = r.group + "/" + res
	}
	return fmt.Sprintf("%s %s %s/%s by %s", r.verb, res, r.ns, r.name, r.user)
}

// level evaluates the policy as k8s.io/apiserver/pkg/audit/policy
// (checker.go) does: the first matching rule wins, no match means None.
func (p *policy) level(r request) string {
	for _, rule := range p.Rules {
		if rule.matches(r) {
			return rule.Level
		}
	}
	return "None"
}

func (rule *policyRule) matches(r request) bool {
	if len(rule.Users) > 0 && !slices.Contains(rule.Users, r.user) {
		return false
	}
	if len(rule.UserGroups) > 0 && !slices.ContainsFunc(r.groups, func(g string) bool { return slices.Contains(rule.UserGroups, g) }) {
		return false
	}
	if len(rule.Verbs) > 0 && !slices.Contains(rule.Verbs, r.verb) {
		return false
	}
	if len(rule.Namespaces) > 0 || len(rule.Resources) > 0 {
		if r.path != "" {
			return false
		}
		if len(rule.Namespaces) > 0 && !slices.Contains(rule.Namespaces, r.ns) {
			return false
		}
		if len(rule.Resources) == 0 {
			return true
		}
		combined := r.resource
		if r.sub != "" {
			combined += "/" + r.sub
		}
		for _, gr := range rule.Resources {
			if gr.Group != r.group && gr.Group != "*" {
				continue
			}
			if len(gr.Resources) == 0 {
				return true
			}
			for _, res := range gr.Resources {
				if len(gr.ResourceNames) > 0 && !slices.Contains(gr.ResourceNames, r.name) {
					continue
				}
				if res == combined || res == "*" ||
					(r.sub != "" && res == "*/"+r.sub) ||
					(strings.HasSuffix(res, "/*") && r.resource == strings.TrimSuffix(res, "/*")) {
					return true
				}
			}
		}
		return false
	}
	if len(rule.NonResourceURLs) > 0 {
		if r.path == "" {
			return false
		}
		for _, spec := range rule.NonResourceURLs {
			if spec == "*" || spec == r.path || (strings.HasSuffix(spec, "*") && strings.HasPrefix(r.path, strings.TrimRight(spec, "*"))) {
				return true
			}
		}
		return false
	}
	return true
}
