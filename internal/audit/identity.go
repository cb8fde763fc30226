package audit

import (
	"slices"
	"strings"

	"github.com/vigil-sec/vigil/internal/event"
)

// Identity classes of a request's user.
const (
	ClassControlPlane   = "control-plane"   // the API server, scheduler, controller manager, their controllers
	ClassNode           = "node"            // kubelets
	ClassSystemAccount  = "system-account"  // service accounts of kube-system and other system namespaces
	ClassServiceAccount = "service-account" // other service accounts: workloads, CI
	ClassAnonymous      = "anonymous"
	ClassUser           = "user" // people and anything else with a credential
)

// systemNamespaces hold the cluster's own components.
var systemNamespaces = []string{"kube-system", "kube-public", "kube-node-lease"}

// Classify tells what kind of identity made a request, so that rules can
// tell the control plane's own traffic from people's.
func Classify(u event.AuditUser) string {
	name := u.Username
	switch {
	case name == "system:anonymous" || slices.Contains(u.Groups, "system:unauthenticated"):
		return ClassAnonymous
	case strings.HasPrefix(name, "system:node:") || slices.Contains(u.Groups, "system:nodes"):
		return ClassNode
	case name == "system:apiserver" || name == "system:kube-scheduler" || name == "system:kube-controller-manager" ||
		name == "system:kube-proxy" || isController(name):
		return ClassControlPlane
	case strings.HasPrefix(name, "system:serviceaccount:"):
		ns, _, _ := strings.Cut(strings.TrimPrefix(name, "system:serviceaccount:"), ":")
		if slices.Contains(systemNamespaces, ns) {
			return ClassSystemAccount
		}
		return ClassServiceAccount
	}
	return ClassUser
}
