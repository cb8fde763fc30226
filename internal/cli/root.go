package cli

import (
	"log/slog"
	"os"
	"path/filepath"

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
	root.AddCommand(commands()...)
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

// defaultDataDir holds Vigil's state on this machine: the server's
// database and admin token, spools and positions.
func defaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/vigil"
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".vigil")
	}
	return ".vigil"
}
