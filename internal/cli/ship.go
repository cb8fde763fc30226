package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vigil-sec/vigil/internal/ship"
)

// shipFlags send a sensor's or agent's alerts and health to a server.
type shipFlags struct {
	server    string
	token     string
	tokenFile string
	proxy     string
	caFile    string
	spool     string
}

func (s *shipFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&s.server, "server", "", "send alerts and health to this Vigil server (https://host:port)")
	f.StringVar(&s.token, "token", "", "the cluster's join credential (prefer --token-file or VIGIL_TOKEN: flags show in ps)")
	f.StringVar(&s.tokenFile, "token-file", "", "file holding the cluster's join credential")
	f.StringVar(&s.proxy, "proxy", "", "HTTP(S) proxy, http://user:password@host:port (env VIGIL_PROXY)")
	f.StringVar(&s.caFile, "ca-file", "", "CA bundle that signs the server's certificate")
	f.StringVar(&s.spool, "spool", filepath.Join(defaultDataDir(), "spool"), "on-disk spool for batches the server has not acknowledged")
}

func (s *shipFlags) credential() (string, error) {
	switch {
	case s.token != "":
		return s.token, nil
	case s.tokenFile != "":
		data, err := os.ReadFile(s.tokenFile)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		return strings.TrimSpace(string(data)), nil
	case os.Getenv("VIGIL_TOKEN") != "":
		return os.Getenv("VIGIL_TOKEN"), nil
	}
	return "", errors.New("--server needs the cluster's credential: --token-file FILE or VIGIL_TOKEN")
}

// open starts nothing: it returns the client whose Run the caller starts,
// sending as component (sensor, audit) of node.
func (s *shipFlags) open(node, component string, log *slog.Logger) (*ship.Client, error) {
	token, err := s.credential()
	if err != nil {
		return nil, err
	}
	proxy := s.proxy
	if proxy == "" {
		proxy = os.Getenv("VIGIL_PROXY")
	}
	return ship.Open(ship.Config{
		Server:    s.server,
		Token:     token,
		Proxy:     proxy,
		CAFile:    s.caFile,
		SpoolDir:  s.spool,
		Node:      node,
		Component: component,
		Log:       log,
	})
}
