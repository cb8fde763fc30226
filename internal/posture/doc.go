// Package posture is where a workload-protection recommendation is born.
//
// It holds the catalog of recommendations (the 13 of Defender for
// Containers' workload-protection bundle plus the Pod Security Standards
// baseline and restricted levels), their configuration (modes, parameters,
// exclusions) and Evaluate, which checks one Kubernetes object against every
// enabled recommendation and returns one Result per recommendation that
// applies to it.
//
// Evaluate is pure and safe for concurrent use with one Config: the
// admission webhook calls it on every request, the in-cluster scanner on
// every workload it lists, and `vigil scan` on manifests read from disk, so
// all three always agree. Decode turns YAML or JSON into the objects
// Evaluate understands.
package posture
