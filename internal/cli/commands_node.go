//go:build node

package cli

import "github.com/spf13/cobra"

// commands of the node build: vigil built with -tags node, which the
// chart's sensor DaemonSet runs. It is the same `vigil sensor` as the full
// binary's, without the server, console, agent, installer and Kubernetes
// typed clients, so a node pays for none of their code or package
// initialisation (see docs/PERFORMANCE.md); `vigil rules` stays for
// checking rule files where they are mounted.
func commands() []*cobra.Command {
	return []*cobra.Command{sensorCmd(), rulesCmd()}
}
