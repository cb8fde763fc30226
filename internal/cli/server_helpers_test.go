//go:build !node

package cli

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// testServer starts `vigil server` with SQLite in dir on a free loopback
// port; it is stopped when the test ends.
func testServer(t *testing.T, dir string) *runningServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := startServer(ctx, serverFlags{addr: "127.0.0.1:0", db: "sqlite://" + filepath.Join(dir, "v.db"), data: dir}, slog.New(slog.DiscardHandler))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); srv.wait() })
	return srv
}

// clusterCredentialFile creates cluster name on srv and writes its join
// credential to a file in dir, whose path it returns.
func clusterCredentialFile(t *testing.T, srv *runningServer, name, dir string) string {
	t.Helper()
	_, credential, err := srv.store.CreateCluster(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, name+".credential")
	if err := os.WriteFile(file, []byte(credential), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}
