//go:build !node

package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vigil-sec/vigil/internal/sensor"
	"github.com/vigil-sec/vigil/internal/server/store"
	"github.com/vigil-sec/vigil/internal/ship"
)

func upCmd() *cobra.Command {
	var (
		f        serverFlags
		noSensor bool
		rf       ruleFlags
		det      detectFlags
	)
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run Vigil on this machine: server with SQLite, and the sensor when root",
		Long: `Run everything on one machine, the zero-setup way to try Vigil: the
server with an embedded SQLite database in --data, a cluster named "local",
and, when run as root on a kernel with eBPF, the node sensor sending its
alerts to that server. The first admin token is written to DATA/admin.token;
the CLI's client commands (vigil alerts list, ...) find it there.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := logger(f.logLevel)
			if f.db == "" {
				abs, err := filepath.Abs(filepath.Join(f.data, "vigil.db"))
				if err != nil {
					return err
				}
				f.db = "sqlite://" + abs
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			f.rules = rf
			srv, err := startServer(ctx, f, log)
			if err != nil {
				return err
			}
			credential, err := localCluster(ctx, srv.store, f.data)
			if err != nil {
				cancel()
				_ = srv.wait()
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Vigil is up.\n  console:     %s/ (sign in with the admin token)\n  API:         %s/api/v1/alerts\n  audit hook:  %s/api/v1/audit (bearer token: %s)\n  admin token: %s\n  try:         vigil alerts list\n",
				srv.url, srv.url, srv.url, filepath.Join(f.data, "cluster.credential"), srv.token)
			sensorDone := make(chan error, 1)
			switch {
			case noSensor:
				close(sensorDone)
			case os.Geteuid() != 0:
				log.Warn("not root: running the server without the node sensor")
				close(sensorDone)
			default:
				client, err := ship.Open(ship.Config{Server: srv.url, Token: credential, SpoolDir: filepath.Join(f.data, "spool"),
					Node: hostname(), Component: "sensor", Log: log})
				if err != nil {
					cancel()
					_ = srv.wait()
					return err
				}
				defer client.Close()
				run := sensorRun{cfg: sensor.Config{ProcRoot: "/proc"}, rf: rf, det: det, ship: client, log: log}
				go func() { sensorDone <- run.run(ctx) }()
			}
			select {
			case err := <-srv.errc:
				return err
			case err, ok := <-sensorDone:
				if ok && err != nil && !errors.Is(err, context.Canceled) {
					log.Error("the node sensor stopped; the server keeps running", "err", err)
				}
				return srv.wait()
			}
		},
	}
	f.register(cmd, true)
	rf.register(cmd)
	det.register(cmd)
	cmd.Flags().BoolVar(&noSensor, "no-sensor", false, "run the server only")
	return cmd
}

// localCluster returns the credential of the "local" cluster, creating the
// cluster on first start and keeping its credential in DATA/cluster.credential.
func localCluster(ctx context.Context, st *store.Store, data string) (string, error) {
	path := filepath.Join(data, "cluster.credential")
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	_, secret, err := st.CreateCluster(ctx, "local")
	if errors.Is(err, store.ErrConflict) {
		return "", fmt.Errorf("cluster local exists but %s is gone: remove the database or restore the file", path)
	}
	if err != nil {
		return "", fmt.Errorf("create the local cluster: %w", err)
	}
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return "", err
	}
	return secret, nil
}

func hostname() string {
	if n := os.Getenv("NODE_NAME"); n != "" {
		return n
	}
	h, _ := os.Hostname()
	return h
}
