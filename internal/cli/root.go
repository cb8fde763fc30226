package cli

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"
)

// Root returns the vigil command tree.
func Root() *cobra.Command {
	root := &cobra.Command{
		Use:           "vigil",
		Short:         "Threat protection for Kubernetes: runtime, control plane and workload hardening",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(sensorCmd(), rulesCmd(), serverCmd(), upCmd(), alertsCmd(), clusterCmd(), auditCmd(), agentCmd(), scanCmd(), postureCmd(), simulateCmd())
	root.AddCommand(verifyCmd())
	root.AddCommand(installCmd(), uninstallCmd())
	return root
}

// logger writes the command's own diagnostics to stderr, so that stdout
// stays machine-readable.
func logger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}
