// Package deploy holds the files Vigil installs into a cluster, embedded so
// that the vigil binary carries them: the API server audit policy that
// `vigil audit enable` writes to the control-plane nodes, and the Helm chart
// that `vigil install` installs.
package deploy

import "embed"

// AuditPolicy is Vigil's recommended audit.k8s.io/v1 Policy
// (deploy/audit-policy.yaml). Callers must not modify the slice.
//
//go:embed audit-policy.yaml
var AuditPolicy []byte

// Chart is the Helm chart, under ChartDir (deploy/charts/vigil). Every file
// is included, _helpers.tpl too (embed's "all:" prefix).
//
//go:embed all:charts/vigil
var Chart embed.FS

// ChartDir is the chart's directory inside Chart.
const ChartDir = "charts/vigil"
