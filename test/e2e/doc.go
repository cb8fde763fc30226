// Package e2e holds Vigil's end-to-end tests on a real single-node cluster
// (package node brings it up). TestVigilOnNode builds Vigil's binary and
// image, runs `vigil server` on the host at an address pods reach, starts
// the node with kube-apiserver auditing to that server, installs Vigil with
// `vigil install`, checks it with `vigil verify` (every row, both test alerts
// with their Kubernetes attribution), and removes it with `vigil uninstall`.
// docs/E2E.md says how to run it and what each step costs.
package e2e
