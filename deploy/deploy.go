// Package deploy holds the files Vigil installs into a cluster, embedded so
// that the vigil binary carries them: the API server audit policy that
// `vigil audit enable` writes to the control-plane nodes.
package deploy

import _ "embed"

// AuditPolicy is Vigil's recommended audit.k8s.io/v1 Policy
// (deploy/audit-policy.yaml). Callers must not modify the slice.
//
//go:embed audit-policy.yaml
var AuditPolicy []byte
