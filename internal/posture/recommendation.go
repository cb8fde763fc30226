package posture

import (
	"fmt"

	"github.com/vigil-sec/vigil/internal/event"
)

// Mode is what happens to a workload that a recommendation finds unhealthy.
type Mode string

// Modes, as Azure Policy's effect parameter spells them.
const (
	// Audit reports the workload as unhealthy and admits it.
	Audit Mode = "audit"
	// Deny reports it and makes the admission webhook reject it.
	Deny Mode = "deny"
	// Disabled does not evaluate the recommendation at all.
	Disabled Mode = "disabled"
)

// ParseMode accepts audit, deny and disabled.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Audit, Deny, Disabled:
		return m, nil
	}
	return "", fmt.Errorf("mode %q: want audit, deny or disabled", s)
}

// Recommendation ids. They are stable: users write them in configuration
// files, and findings and the console carry them.
const (
	CPUMemoryLimits       = "cpu-memory-limits"
	NoPrivileged          = "no-privileged"
	ReadOnlyRootFS        = "read-only-root-fs"
	NoPrivilegeEscalation = "no-privilege-escalation"
	RunAsNonRoot          = "run-as-non-root"
	NoHostPIDIPC          = "no-host-pid-ipc"
	LeastCapabilities     = "least-capabilities"
	AllowedHostPaths      = "allowed-host-paths"
	AllowedContainerPorts = "allowed-container-ports"
	AllowedServicePorts   = "allowed-service-ports"
	NoHostNetworkPorts    = "no-host-network-ports"
	AppArmorNotOverridden = "apparmor-not-overridden"
	TrustedRegistries     = "trusted-registries"
	PSSBaseline           = "pss-baseline"
	PSSRestricted         = "pss-restricted"
)

// Recommendation describes one check: what it asks for, why, and how to fix
// a workload that fails it.
type Recommendation struct {
	ID          string
	Title       string // Defender's name for it, for the 13 of the bundle
	Description string
	Remediation string
	Severity    event.Severity
	// DefaultMode is the mode when the configuration does not set one.
	DefaultMode Mode
	// Parameters names the keys this recommendation accepts under
	// `parameters:` in the configuration.
	Parameters []string
	// ConfigurationRequired marks recommendations whose defaults leave
	// every workload unhealthy until the user sets the parameters (as in
	// Defender, e.g. the trusted registries).
	ConfigurationRequired bool
	// Services marks the one recommendation that reads Services, not pods.
	Services bool
}

// catalog lists every recommendation in a fixed order: the order of the
// seed's table, then the Pod Security Standards.
var catalog = []Recommendation{
	{
		ID:          CPUMemoryLimits,
		Title:       "Container CPU and memory limits should be enforced",
		Description: "Every container sets CPU and memory limits no larger than the configured maximum, so one workload cannot starve its node (resource exhaustion, denial of service).",
		Remediation: "Set resources.limits.cpu and resources.limits.memory on every container and init container, within cpuLimit and memoryLimit.",
		Severity:    event.Medium,
		DefaultMode: Audit,
		Parameters:  []string{"cpuLimit", "memoryLimit"},
	},
	{
		ID:          NoPrivileged,
		Title:       "Privileged containers should be avoided",
		Description: "A privileged container has every capability and all host devices; escaping to the node is trivial.",
		Remediation: "Remove securityContext.privileged or set it to false.",
		Severity:    event.High,
		DefaultMode: Audit,
	},
	{
		ID:          ReadOnlyRootFS,
		Title:       "Immutable (read-only) root filesystem should be enforced for containers",
		Description: "A writable root filesystem lets an attacker drop and run binaries inside the container.",
		Remediation: "Set securityContext.readOnlyRootFilesystem: true and mount an emptyDir where the application must write.",
		Severity:    event.Medium,
		DefaultMode: Audit,
	},
	{
		ID:          NoPrivilegeEscalation,
		Title:       "Container with privilege escalation should be avoided",
		Description: "Without no_new_privs a process can gain privileges through setuid binaries or file capabilities.",
		Remediation: "Set securityContext.allowPrivilegeEscalation: false on every container.",
		Severity:    event.Medium,
		DefaultMode: Audit,
	},
	{
		ID:          RunAsNonRoot,
		Title:       "Running containers as root user should be avoided",
		Description: "Containers run as a non-root user: root in a container is root on the node after any escape.",
		Remediation: "Set securityContext.runAsNonRoot: true, or a non-zero runAsUser, on the pod or on every container.",
		Severity:    event.Medium,
		DefaultMode: Audit,
	},
	{
		ID:          NoHostPIDIPC,
		Title:       "Containers sharing sensitive host namespaces should be avoided",
		Description: "Sharing the host's PID or IPC namespace exposes every process and shared-memory segment on the node.",
		Remediation: "Remove hostPID and hostIPC from the pod spec or set them to false.",
		Severity:    event.High,
		DefaultMode: Audit,
	},
	{
		ID:                    LeastCapabilities,
		Title:                 "Least privileged Linux capabilities should be enforced for containers",
		Description:           "Containers add only allowed Linux capabilities and drop the required ones.",
		Remediation:           "Remove capabilities that are not in allowedCapabilities from securityContext.capabilities.add, and drop requiredDropCapabilities (or ALL).",
		Severity:              event.Medium,
		DefaultMode:           Audit,
		Parameters:            []string{"allowedCapabilities", "requiredDropCapabilities"},
		ConfigurationRequired: true,
	},
	{
		ID:                    AllowedHostPaths,
		Title:                 "Usage of pod HostPath volume mounts should be restricted to a known list",
		Description:           "hostPath volumes mount only allowed host directories (matched by path segment), read-only where required.",
		Remediation:           "Replace the hostPath volume with another volume type, or add its prefix to allowedHostPaths and mount it readOnly where the entry requires it.",
		Severity:              event.High,
		DefaultMode:           Audit,
		Parameters:            []string{"allowedHostPaths"},
		ConfigurationRequired: true,
	},
	{
		ID:                    AllowedContainerPorts,
		Title:                 "Containers should listen on allowed ports only",
		Description:           "Declared container ports are in the allowed list. Azure deprecated this check because containerPort is informational; it is disabled by default.",
		Remediation:           "Change the container port, or add it to allowedContainerPorts.",
		Severity:              event.Low,
		DefaultMode:           Disabled,
		Parameters:            []string{"allowedContainerPorts"},
		ConfigurationRequired: true,
	},
	{
		ID:                    AllowedServicePorts,
		Title:                 "Services should listen on allowed ports only",
		Description:           "Services expose only allowed ports.",
		Remediation:           "Change the Service's port, or add it to allowedServicePorts.",
		Severity:              event.Medium,
		DefaultMode:           Audit,
		Parameters:            []string{"allowedServicePorts"},
		ConfigurationRequired: true,
		Services:              true,
	},
	{
		ID:                    NoHostNetworkPorts,
		Title:                 "Usage of host networking and ports should be restricted",
		Description:           "Pods do not use the host network, and containers bind only allowed host ports.",
		Remediation:           "Remove hostNetwork and hostPort, or allow them with allowHostNetwork and allowedHostPorts.",
		Severity:              event.High,
		DefaultMode:           Audit,
		Parameters:            []string{"allowHostNetwork", "allowedHostPorts"},
		ConfigurationRequired: true,
	},
	{
		ID:                    AppArmorNotOverridden,
		Title:                 "Overriding or disabling of containers AppArmor profile should be restricted",
		Description:           "Containers run under an allowed AppArmor profile; an unset profile counts as runtime/default.",
		Remediation:           "Set securityContext.appArmorProfile.type: RuntimeDefault (or the legacy container.apparmor.security.beta.kubernetes.io/<container> annotation to runtime/default), or allow the profile in allowedProfiles.",
		Severity:              event.Medium,
		DefaultMode:           Audit,
		Parameters:            []string{"allowedProfiles"},
		ConfigurationRequired: true,
	},
	{
		ID:                    TrustedRegistries,
		Title:                 "Container images should be deployed only from trusted registries",
		Description:           "Every image comes from a trusted registry or repository. Each entry of registries is a regular expression that must match a whole registry/repository prefix (ending at a '/') or the whole image reference.",
		Remediation:           "Pull the image from a trusted registry, or add the registry to registries, e.g. `[^/]+\\.azurecr\\.io` or `registry\\.example\\.com/team`.",
		Severity:              event.High,
		DefaultMode:           Audit,
		Parameters:            []string{"registries"},
		ConfigurationRequired: true,
	},
	{
		ID:          PSSBaseline,
		Title:       "Pods should meet the Pod Security Standards baseline level",
		Description: "The upstream Pod Security Admission checks of the baseline level (k8s.io/pod-security-admission): no known privilege escalations.",
		Remediation: "Fix each violation the upstream check names; see https://kubernetes.io/docs/concepts/security/pod-security-standards/#baseline.",
		Severity:    event.High,
		DefaultMode: Audit,
		Parameters:  []string{"version"},
	},
	{
		ID:          PSSRestricted,
		Title:       "Pods should meet the Pod Security Standards restricted level",
		Description: "The upstream Pod Security Admission checks of the restricted level: current pod-hardening best practice. Stricter than Defender's bundle (it also wants seccomp RuntimeDefault and capabilities drop ALL), so disabled by default.",
		Remediation: "Fix each violation the upstream check names; see https://kubernetes.io/docs/concepts/security/pod-security-standards/#restricted.",
		Severity:    event.Medium,
		DefaultMode: Disabled,
		Parameters:  []string{"version"},
	},
}

// Recommendations returns the catalog, in a fixed order. The caller may
// modify the returned slice.
func Recommendations() []Recommendation {
	out := make([]Recommendation, len(catalog))
	copy(out, catalog)
	return out
}

// Lookup returns the recommendation with the given id.
func Lookup(id string) (Recommendation, bool) {
	if i := index(id); i >= 0 {
		return catalog[i], true
	}
	return Recommendation{}, false
}

func index(id string) int {
	for i := range catalog {
		if catalog[i].ID == id {
			return i
		}
	}
	return -1
}
