package pgtest

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"
)

func query(t *testing.T, dsn, q string) string {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v string
	if err := db.QueryRow(q).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestNew(t *testing.T) {
	a, b := New(t), New(t)
	if a == b {
		t.Fatalf("two New calls gave the same database %s", a)
	}
	if v := query(t, a, "SHOW listen_addresses"); v != "" {
		t.Errorf("listen_addresses = %q: the server must not listen on TCP", v)
	}
	if v := query(t, a, "SHOW fsync"); v != "off" {
		t.Errorf("fsync = %q for a throwaway server", v)
	}
}

// TestKeptDir starts a durable server in a directory of our own, writes,
// stops it and starts it again: the data is still there, and Stop leaves
// the directory in place.
func TestKeptDir(t *testing.T) {
	dir, err := os.MkdirTemp("", "vigil-pgkeep-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	srv, err := Start(Options{Dir: dir, Durable: true, Settings: map[string]string{"work_mem": "'8MB'"}})
	if err != nil {
		t.Fatal(err)
	}
	dsn, err := srv.CreateDatabase(ctx, "kept")
	if err != nil {
		srv.Stop()
		t.Fatal(err)
	}
	if v := query(t, dsn, "SHOW fsync"); v != "on" {
		t.Errorf("durable server: fsync = %q", v)
	}
	if v := query(t, dsn, "SHOW work_mem"); v != "8MB" {
		t.Errorf("work_mem = %q", v)
	}
	if _, err := srv.CreateDatabase(ctx, "Bad-Name"); err == nil {
		t.Error("a database name with capitals and '-' was accepted")
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "PG_VERSION")); err != nil {
		t.Fatalf("data directory gone after Stop: %v", err)
	}
	srv, err = Start(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	ok, err := srv.DatabaseExists(ctx, "kept")
	if err != nil || !ok {
		t.Fatalf("database kept after restart: %v %v", ok, err)
	}
	if err := srv.DropDatabase(ctx, "kept"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := srv.DatabaseExists(ctx, "kept"); ok {
		t.Fatal("DropDatabase left it")
	}
}

func TestMain(m *testing.M) { os.Exit(Run(m)) }
