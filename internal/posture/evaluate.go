package posture

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/pod-security-admission/policy"
)

// Result is one recommendation's verdict on one workload.
type Result struct {
	Recommendation string   `json:"recommendation"`
	Workload       Workload `json:"workload"`
	Healthy        bool     `json:"healthy"`
	// Violations says, one line each, which container (or the pod) does
	// what, and how to fix it. Empty when Healthy.
	Violations []string `json:"violations,omitempty"`
	Mode       Mode     `json:"mode"`
}

// Evaluate checks obj against every enabled recommendation that applies to
// it and returns one Result each, in catalog order. Objects Extract does
// not understand, and recommendations whose namespaces, exclusions or label
// selector leave the workload out, give no Result. Services are only
// checked by allowed-service-ports, pods by every other recommendation.
//
// cfg must come from DefaultConfig, ParseConfig or LoadConfig, or have
// passed Validate; Evaluate panics otherwise. It does not modify obj and is
// safe for concurrent use.
func Evaluate(cfg *Config, obj runtime.Object) []Result {
	t, ok := Extract(obj)
	if !ok {
		return nil
	}
	return EvaluateTarget(cfg, &t)
}

// EvaluateTarget is Evaluate on an already extracted Target.
func EvaluateTarget(cfg *Config, t *Target) []Result {
	c := cfg.compiled
	if c == nil {
		panic("posture: Evaluate on a Config that has not passed Validate")
	}
	var cs []container
	if t.Spec != nil {
		cs = containers(t.Spec)
	}
	out := make([]Result, 0, len(c.recs))
	for i := range c.recs {
		r := &c.recs[i]
		if r.rec.Services != (t.Service != nil) || !r.applies(t) {
			continue
		}
		v := r.check(r, t, cs, c.pss)
		out = append(out, Result{Recommendation: r.rec.ID, Workload: t.Workload, Healthy: len(v) == 0, Violations: v, Mode: r.mode})
	}
	return out
}

func (r *compiledRec) applies(t *Target) bool {
	return r.appliesIn(t.Workload.Namespace) && (r.selector == nil || r.selector.Matches(labels.Set(t.Labels)))
}

// appliesIn reports whether the recommendation looks at namespace ns.
func (r *compiledRec) appliesIn(ns string) bool {
	return !contains(r.excludedNamespaces, ns) && (len(r.namespaces) == 0 || contains(r.namespaces, ns))
}

// skip reports whether a container is exempt from container-level checks.
func (r *compiledRec) skip(c *container) bool {
	if contains(r.excludedContainers, c.name) {
		return true
	}
	for _, e := range r.excludedImages {
		if p, ok := strings.CutSuffix(e, "*"); ok {
			if strings.HasPrefix(c.image, p) {
				return true
			}
		} else if c.image == e {
			return true
		}
	}
	return false
}

// container is the part of a container, init container or ephemeral
// container that the checks read.
type container struct {
	what      string // "container", "init container", "ephemeral container"
	name      string
	image     string
	ports     []corev1.ContainerPort
	resources *corev1.ResourceRequirements
	sc        *corev1.SecurityContext
	mounts    []corev1.VolumeMount
}

func (c *container) String() string { return c.what + ` "` + c.name + `"` }

func containers(s *corev1.PodSpec) []container {
	out := make([]container, 0, len(s.InitContainers)+len(s.Containers)+len(s.EphemeralContainers))
	for i := range s.InitContainers {
		c := &s.InitContainers[i]
		out = append(out, container{"init container", c.Name, c.Image, c.Ports, &c.Resources, c.SecurityContext, c.VolumeMounts})
	}
	for i := range s.Containers {
		c := &s.Containers[i]
		out = append(out, container{"container", c.Name, c.Image, c.Ports, &c.Resources, c.SecurityContext, c.VolumeMounts})
	}
	for i := range s.EphemeralContainers {
		c := &s.EphemeralContainers[i].EphemeralContainerCommon
		out = append(out, container{"ephemeral container", c.Name, c.Image, c.Ports, nil, c.SecurityContext, c.VolumeMounts})
	}
	return out
}

type checkFunc = func(r *compiledRec, t *Target, cs []container, pss policy.Evaluator) []string

var checks map[string]checkFunc

func init() {
	// Assigned in init: the check functions refer to compiledRec, whose
	// check field refers back to this table.
	checks = map[string]checkFunc{
		CPUMemoryLimits:       checkLimits,
		NoPrivileged:          checkPrivileged,
		ReadOnlyRootFS:        checkReadOnlyRoot,
		NoPrivilegeEscalation: checkPrivilegeEscalation,
		RunAsNonRoot:          checkRunAsNonRoot,
		NoHostPIDIPC:          checkHostNamespaces,
		LeastCapabilities:     checkCapabilities,
		AllowedHostPaths:      checkHostPaths,
		AllowedContainerPorts: checkContainerPorts,
		AllowedServicePorts:   checkServicePorts,
		NoHostNetworkPorts:    checkHostNetworkPorts,
		AppArmorNotOverridden: checkAppArmor,
		TrustedRegistries:     checkRegistries,
		PSSBaseline:           checkPSS,
		PSSRestricted:         checkPSS,
	}
}
