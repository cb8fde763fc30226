//go:build !node

package cli

import "github.com/spf13/cobra"

// commands are vigil's subcommands. The node build (-tags node, the
// DaemonSet's binary) has only the sensor's: see commands_node.go.
func commands() []*cobra.Command {
	return []*cobra.Command{sensorCmd(), rulesCmd(), serverCmd(), upCmd(), alertsCmd(), clusterCmd(), auditCmd(),
		agentCmd(), scanCmd(), postureCmd(), simulateCmd(), verifyCmd(), installCmd(), uninstallCmd()}
}
