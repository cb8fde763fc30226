// Package install puts Vigil into a Kubernetes cluster and takes it out
// again: it renders the Helm chart embedded in the binary
// (deploy/charts/vigil), installs or upgrades it as the Helm release
// "vigil" with Helm's Go SDK, and uninstalls it, webhook configuration
// first, checking that nothing labelled app.kubernetes.io/part-of=vigil is
// left.
//
// `vigil install` and `vigil uninstall` (internal/cli) are its callers;
// `vigil verify` reads the objects it creates, by the names in Names.
//
// Protected settings (the join credential, the proxy URL, the database
// URL, the audit webhook token) reach the cluster only in Secrets; Render's
// callers print manifests through Redact, which blanks every Secret's data.
package install
