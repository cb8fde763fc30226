package posture

import (
	"fmt"
	"path"
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/pod-security-admission/policy"
)

// Each check returns its violations, nil when the workload is healthy.
// The healthy path allocates nothing; messages are built only for
// violations.

func checkLimits(r *compiledRec, _ *Target, cs []container, _ policy.Evaluator) (v []string) {
	for i := range cs {
		c := &cs[i]
		if c.resources == nil || r.skip(c) {
			continue // ephemeral containers may not set resources
		}
		v = limit(v, c, corev1.ResourceCPU, "CPU", r.cpuMax)
		v = limit(v, c, corev1.ResourceMemory, "memory", r.memMax)
	}
	return v
}

func limit(v []string, c *container, name corev1.ResourceName, what string, max *resource.Quantity) []string {
	q, ok := c.resources.Limits[name]
	if !ok {
		hint := ""
		if max != nil {
			hint = " (at most " + max.String() + ")"
		}
		return append(v, fmt.Sprintf("%s has no %s limit; set resources.limits.%s%s", c, what, name, hint))
	}
	if max != nil && q.Cmp(*max) > 0 {
		return append(v, fmt.Sprintf("%s has a %s limit of %s, above the maximum %s; lower resources.limits.%s", c, what, q.String(), max.String(), name))
	}
	return v
}

func checkPrivileged(r *compiledRec, _ *Target, cs []container, _ policy.Evaluator) (v []string) {
	for i := range cs {
		c := &cs[i]
		if c.sc != nil && c.sc.Privileged != nil && *c.sc.Privileged && !r.skip(c) {
			v = append(v, c.String()+" is privileged; remove securityContext.privileged or set it to false")
		}
	}
	return v
}

func checkReadOnlyRoot(r *compiledRec, _ *Target, cs []container, _ policy.Evaluator) (v []string) {
	for i := range cs {
		c := &cs[i]
		if (c.sc == nil || c.sc.ReadOnlyRootFilesystem == nil || !*c.sc.ReadOnlyRootFilesystem) && !r.skip(c) {
			v = append(v, c.String()+" has a writable root filesystem; set securityContext.readOnlyRootFilesystem: true and mount an emptyDir where it must write")
		}
	}
	return v
}

func checkPrivilegeEscalation(r *compiledRec, _ *Target, cs []container, _ policy.Evaluator) (v []string) {
	for i := range cs {
		c := &cs[i]
		if r.skip(c) {
			continue
		}
		switch {
		case c.sc == nil || c.sc.AllowPrivilegeEscalation == nil:
			v = append(v, c.String()+" does not set securityContext.allowPrivilegeEscalation, which defaults to true; set it to false")
		case *c.sc.AllowPrivilegeEscalation:
			v = append(v, c.String()+" allows privilege escalation (securityContext.allowPrivilegeEscalation: true); set it to false")
		}
	}
	return v
}

func checkRunAsNonRoot(r *compiledRec, t *Target, cs []container, _ policy.Evaluator) (v []string) {
	var podUser *int64
	var podNonRoot *bool
	if psc := t.Spec.SecurityContext; psc != nil {
		podUser, podNonRoot = psc.RunAsUser, psc.RunAsNonRoot
	}
	for i := range cs {
		c := &cs[i]
		user, nonRoot := podUser, podNonRoot
		if c.sc != nil {
			if c.sc.RunAsUser != nil {
				user = c.sc.RunAsUser
			}
			if c.sc.RunAsNonRoot != nil {
				nonRoot = c.sc.RunAsNonRoot
			}
		}
		switch {
		case user != nil && *user == 0:
			if !r.skip(c) {
				v = append(v, c.String()+" runs as root (runAsUser: 0); set runAsUser to a non-zero UID and runAsNonRoot: true")
			}
		case user == nil && (nonRoot == nil || !*nonRoot):
			if !r.skip(c) {
				v = append(v, c.String()+" may run as root (neither runAsNonRoot: true nor a non-zero runAsUser is set on it or the pod); set securityContext.runAsNonRoot: true")
			}
		}
	}
	return v
}

func checkHostNamespaces(_ *compiledRec, t *Target, _ []container, _ policy.Evaluator) (v []string) {
	if t.Spec.HostPID {
		v = append(v, "pod shares the host's PID namespace (hostPID: true); remove hostPID")
	}
	if t.Spec.HostIPC {
		v = append(v, "pod shares the host's IPC namespace (hostIPC: true); remove hostIPC")
	}
	return v
}

func checkCapabilities(r *compiledRec, _ *Target, cs []container, _ policy.Evaluator) (v []string) {
	for i := range cs {
		c := &cs[i]
		var add, drop []corev1.Capability
		if c.sc != nil && c.sc.Capabilities != nil {
			add, drop = c.sc.Capabilities.Add, c.sc.Capabilities.Drop
		}
		if len(add) == 0 && len(r.requireDrop) == 0 {
			continue
		}
		if r.skip(c) {
			continue
		}
		if !r.allowAnyCap {
			for _, a := range add {
				if !capIn(r.allowedCaps, string(a)) {
					allowed := "none"
					if len(r.allowedCaps) > 0 {
						allowed = strings.Join(r.allowedCaps, ", ")
					}
					v = append(v, fmt.Sprintf("%s adds capability %s, which is not allowed (allowed: %s); remove it from securityContext.capabilities.add", c, a, allowed))
				}
			}
		}
		if len(r.requireDrop) > 0 && !capIn(capNames(drop), "ALL") {
			var missing []string
			for _, d := range r.requireDrop {
				if !capIn(capNames(drop), d) {
					missing = append(missing, d)
				}
			}
			if len(missing) > 0 {
				v = append(v, fmt.Sprintf("%s does not drop %s; add them (or ALL) to securityContext.capabilities.drop", c, strings.Join(missing, ", ")))
			}
		}
	}
	return v
}

// capNames views a capability list as strings without copying.
type capNames []corev1.Capability

// capIn reports whether the normalised list holds cap: a literal "ALL" in
// the list only matches ALL.
func capIn[L ~[]E, E ~string](list L, cp string) bool {
	for _, x := range list {
		if capEqual(string(x), cp) {
			return true
		}
	}
	return false
}

// capEqual compares capability names case-insensitively, ignoring a CAP_
// prefix on either side, without allocating.
func capEqual(a, b string) bool {
	a, b = trimCap(a), trimCap(b)
	return strings.EqualFold(a, b)
}

func trimCap(s string) string {
	if len(s) > 4 && strings.EqualFold(s[:4], "CAP_") {
		return s[4:]
	}
	return s
}

func checkHostPaths(r *compiledRec, t *Target, cs []container, _ policy.Evaluator) (v []string) {
	for i := range t.Spec.Volumes {
		vol := &t.Spec.Volumes[i]
		if vol.HostPath == nil {
			continue
		}
		p := path.Clean(vol.HostPath.Path)
		matched, readWriteOK := false, false
		var prefix string
		for _, hp := range r.hostPaths {
			if underPrefix(p, hp.PathPrefix) {
				if !matched {
					prefix = hp.PathPrefix
				}
				matched = true
				if !hp.ReadOnly {
					readWriteOK = true
				}
			}
		}
		if !matched {
			allowed := "none"
			if len(r.hostPaths) > 0 {
				ps := make([]string, len(r.hostPaths))
				for j, hp := range r.hostPaths {
					ps[j] = hp.PathPrefix
				}
				allowed = strings.Join(ps, ", ")
			}
			v = append(v, fmt.Sprintf("volume %q mounts host path %s, which is not under an allowed prefix (allowed: %s); use another volume type or allow the path in allowedHostPaths", vol.Name, vol.HostPath.Path, allowed))
			continue
		}
		if readWriteOK {
			continue
		}
		for j := range cs {
			c := &cs[j]
			for k := range c.mounts {
				if m := &c.mounts[k]; m.Name == vol.Name && !m.ReadOnly && !r.skip(c) {
					v = append(v, fmt.Sprintf("%s mounts host path %s (volume %q) read-write, but allowed prefix %s requires read-only; set readOnly: true on the volumeMount", c, vol.HostPath.Path, vol.Name, prefix))
				}
			}
		}
	}
	return v
}

// underPrefix matches by path segment: /var/log is under /var/log and /,
// /var/logs is not under /var/log. Both are clean.
func underPrefix(p, prefix string) bool {
	if prefix == "/" {
		return strings.HasPrefix(p, "/")
	}
	return p == prefix || (strings.HasPrefix(p, prefix) && p[len(prefix)] == '/')
}

func checkContainerPorts(r *compiledRec, _ *Target, cs []container, _ policy.Evaluator) (v []string) {
	for i := range cs {
		c := &cs[i]
		for _, p := range c.ports {
			if !inRanges(r.ports, p.ContainerPort) && !r.skip(c) {
				v = append(v, fmt.Sprintf("%s listens on port %d/%s, which is not allowed (allowed: %s); change containerPort or allow it in allowedContainerPorts", c, p.ContainerPort, proto(p.Protocol), r.portsText))
			}
		}
	}
	return v
}

func checkServicePorts(r *compiledRec, t *Target, _ []container, _ policy.Evaluator) (v []string) {
	for i, p := range t.Service.Spec.Ports {
		if !inRanges(r.ports, p.Port) {
			v = append(v, fmt.Sprintf("service port %d/%s (spec.ports[%d]) is not allowed (allowed: %s); change the port or allow it in allowedServicePorts", p.Port, proto(p.Protocol), i, r.portsText))
		}
	}
	return v
}

func checkHostNetworkPorts(r *compiledRec, t *Target, cs []container, _ policy.Evaluator) (v []string) {
	hostNet := t.Spec.HostNetwork
	if hostNet && !r.allowHostNetwork {
		v = append(v, "pod uses the host's network (hostNetwork: true); remove hostNetwork, or set allowHostNetwork if it must")
	}
	for i := range cs {
		c := &cs[i]
		for _, p := range c.ports {
			hp := p.HostPort
			if hp == 0 && hostNet {
				hp = p.ContainerPort // on the host network every port is a host port
			}
			if hp != 0 && !inRanges(r.ports, hp) && !r.skip(c) {
				v = append(v, fmt.Sprintf("%s binds host port %d/%s, which is not allowed (allowed: %s); remove hostPort or allow it in allowedHostPorts", c, hp, proto(p.Protocol), r.portsText))
			}
		}
	}
	return v
}

func proto(p corev1.Protocol) string {
	if p == "" {
		return "TCP"
	}
	return string(p)
}

const appArmorAnnotationPrefix = "container.apparmor.security.beta.kubernetes.io/"

func checkAppArmor(r *compiledRec, t *Target, cs []container, _ policy.Evaluator) (v []string) {
	var podProfile *corev1.AppArmorProfile
	if t.Spec.SecurityContext != nil {
		podProfile = t.Spec.SecurityContext.AppArmorProfile
	}
	for i := range cs {
		c := &cs[i]
		profile, source := "runtime/default", "unset, which means runtime/default"
		switch {
		case c.sc != nil && c.sc.AppArmorProfile != nil:
			profile, source = appArmorName(c.sc.AppArmorProfile), "securityContext.appArmorProfile"
		case len(t.Meta.Annotations) > 0 && annotation(t.Meta.Annotations, c.name) != "":
			profile, source = annotation(t.Meta.Annotations, c.name), "annotation "+appArmorAnnotationPrefix+c.name
		case podProfile != nil:
			profile, source = appArmorName(podProfile), "pod securityContext.appArmorProfile"
		}
		if !profileAllowed(r.profiles, profile) && !r.skip(c) {
			allowed := "none"
			if len(r.profiles) > 0 {
				allowed = strings.Join(r.profiles, ", ")
			}
			v = append(v, fmt.Sprintf("%s runs under AppArmor profile %s (from %s), which is not allowed (allowed: %s); set securityContext.appArmorProfile.type: RuntimeDefault", c, profile, source, allowed))
		}
	}
	return v
}

// annotation looks up the legacy per-container AppArmor annotation without
// allocating the key.
func annotation(a map[string]string, name string) string {
	var buf [128]byte
	key := append(append(buf[:0], appArmorAnnotationPrefix...), name...)
	return a[string(key)]
}

// appArmorName spells a profile the way the annotation does.
func appArmorName(p *corev1.AppArmorProfile) string {
	switch p.Type {
	case corev1.AppArmorProfileTypeRuntimeDefault:
		return "runtime/default"
	case corev1.AppArmorProfileTypeUnconfined:
		return "unconfined"
	case corev1.AppArmorProfileTypeLocalhost:
		if p.LocalhostProfile != nil {
			return "localhost/" + *p.LocalhostProfile
		}
		return "localhost/"
	}
	return string(p.Type)
}

func profileAllowed(allowed []string, profile string) bool {
	for _, a := range allowed {
		if a == "*" || a == profile || (a == "localhost/*" && strings.HasPrefix(profile, "localhost/") && len(profile) > len("localhost/")) {
			return true
		}
	}
	return false
}

func checkRegistries(r *compiledRec, _ *Target, cs []container, _ policy.Evaluator) (v []string) {
	for i := range cs {
		c := &cs[i]
		if trusted(r.registries, c.image) || r.skip(c) {
			continue
		}
		if len(r.registries) == 0 {
			v = append(v, fmt.Sprintf("%s image %q is not from a trusted registry: none is configured; set registries in the trusted-registries parameters", c, c.image))
			continue
		}
		v = append(v, fmt.Sprintf("%s image %q (repository %s) is not from a trusted registry; pull it from a trusted registry or add its registry to registries", c, c.image, repository(c.image)))
	}
	return v
}

// trusted reports whether one of the anchored expressions matches the
// image's registry, a registry/repository prefix ending at a '/', its
// whole repository, or the whole reference.
func trusted(res []*regexp.Regexp, image string) bool {
	if len(res) == 0 {
		return false
	}
	repo := repository(image)
	for _, re := range res {
		for i := 0; i < len(repo); i++ {
			if repo[i] == '/' && re.MatchString(repo[:i]) {
				return true
			}
		}
		if re.MatchString(repo) || re.MatchString(image) {
			return true
		}
	}
	return false
}

// repository returns an image reference's registry/repository without tag
// or digest, with Docker Hub's implied names made explicit: nginx:1.15 is
// docker.io/library/nginx, bitnami/redis is docker.io/bitnami/redis.
func repository(image string) string {
	if i := strings.IndexByte(image, '@'); i >= 0 {
		image = image[:i]
	}
	slash := strings.LastIndexByte(image, '/')
	if i := strings.LastIndexByte(image, ':'); i > slash {
		image = image[:i]
	}
	first, _, ok := strings.Cut(image, "/")
	switch {
	case !ok:
		return "docker.io/library/" + image
	case !strings.ContainsAny(first, ".:") && first != "localhost":
		return "docker.io/" + image
	}
	return image
}

func checkPSS(r *compiledRec, t *Target, _ []container, pss policy.Evaluator) (v []string) {
	for _, res := range pss.EvaluatePod(r.pssLevel, t.Meta, t.Spec) {
		if res.Allowed {
			continue
		}
		msg := res.ForbiddenReason
		if res.ForbiddenDetail != "" {
			msg += " (" + res.ForbiddenDetail + ")"
		}
		v = append(v, msg)
	}
	return v
}
