// Package pgtest runs throwaway PostgreSQL servers for tests and
// benchmarks: initdb into a directory, pg_ctl start on a unix socket in that
// directory (no TCP), stop and remove it afterwards. It uses the server
// binaries of Debian's postgresql package (/usr/lib/postgresql/N/bin) or the
// ones on PATH. PostgreSQL refuses to run as root, so when the test runs as
// root the server runs as the "postgres" OS user.
//
// Tests call New for a fresh database. A package with many such tests
// shares one server by running its tests through Run from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }
//
// Without Run, New starts a server per test and stops it in t.Cleanup.
// When PostgreSQL is missing or cannot start, New fails the test: it never
// skips.
package pgtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// Options configure Start.
type Options struct {
	// Dir holds the data directory (Dir/data), the unix socket and the log.
	// Empty: a fresh directory under os.TempDir, removed by Stop. Otherwise
	// the directory is kept: an existing data directory is started again
	// (benchmarks cache seeded databases this way).
	Dir string
	// Durable keeps PostgreSQL's default durability (fsync, synchronous
	// commit, full page writes). Without it those are off, which makes tests
	// faster and is fine for data nobody keeps; benchmarks set it so that
	// their figures mean something.
	Durable bool
	// Settings are extra server settings (name -> value), e.g.
	// "shared_buffers": "512MB".
	Settings map[string]string
}

// Server is a running PostgreSQL. Its superuser is "postgres", trusted over
// the unix socket.
type Server struct {
	dir     string
	temp    bool
	bin     string
	cred    *syscall.Credential
	port    int
	stopped atomic.Bool
}

const port = 5432

// Start initialises (when needed) and starts a server. Stop it with Stop.
func Start(opt Options) (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, port: port}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("pgtest: running as root needs the postgres OS user (apt-get install -y postgresql): %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	if opt.Dir == "" {
		// Directly under the temp dir (world-traversable), not in a test's
		// private TempDir, which the postgres user could not enter. Short,
		// too: a unix socket path has at most 107 bytes.
		d, err := os.MkdirTemp("", "vigil-pg-")
		if err != nil {
			return nil, fmt.Errorf("pgtest: %w", err)
		}
		s.dir, s.temp = d, true
	} else {
		d, err := filepath.Abs(opt.Dir)
		if err != nil {
			return nil, fmt.Errorf("pgtest: %w", err)
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("pgtest: %w", err)
		}
		s.dir = d
	}
	if err := s.start(opt); err != nil {
		if s.temp {
			os.RemoveAll(s.dir)
		}
		return nil, err
	}
	return s, nil
}

func (s *Server) start(opt Options) error {
	if err := s.chown(s.dir); err != nil {
		return err
	}
	data := filepath.Join(s.dir, "data")
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err != nil {
		os.RemoveAll(data) // a half-made data directory from an interrupted initdb
		args := []string{"-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"}
		if s.temp {
			args = append(args, "--no-sync")
		}
		if out, err := s.run("initdb", args...); err != nil {
			return fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
		}
		f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
		_, err = f.WriteString("\ninclude_if_exists = 'vigil.conf'\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
	} else if out, err := s.run("pg_ctl", "-D", data, "status"); err == nil && strings.Contains(string(out), "server is running") {
		// Left running by a run that was killed: restart it with our settings.
		s.run("pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
	}
	settings := map[string]string{
		"listen_addresses":        "''",
		"unix_socket_directories": "'" + s.dir + "'",
		"port":                    strconv.Itoa(s.port),
		"max_connections":         "100",
		"log_min_messages":        "warning",
	}
	if !opt.Durable {
		settings["fsync"] = "off"
		settings["synchronous_commit"] = "off"
		settings["full_page_writes"] = "off"
	}
	for k, v := range opt.Settings {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var conf strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&conf, "%s = %s\n", k, settings[k])
	}
	confPath := filepath.Join(data, "vigil.conf")
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o644); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	if err := s.chown(confPath); err != nil {
		return err
	}
	logPath := filepath.Join(s.dir, "postgres.log")
	if out, err := s.run("pg_ctl", "-D", data, "-l", logPath, "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(logPath)
		if len(log) > 4000 {
			log = log[len(log)-4000:]
		}
		return fmt.Errorf("pgtest: pg_ctl start: %w\n%s\n%s", err, out, log)
	}
	return nil
}

// Stop stops the server and removes its directory unless Options.Dir named
// it. Calling it twice is harmless.
func (s *Server) Stop() error {
	if s.stopped.Swap(true) {
		return nil
	}
	mode := "fast"
	if s.temp {
		mode = "immediate" // nothing to keep
	}
	out, err := s.run("pg_ctl", "-D", filepath.Join(s.dir, "data"), "-m", mode, "-w", "stop")
	if err != nil {
		err = fmt.Errorf("pgtest: pg_ctl stop: %w\n%s", err, out)
	}
	if s.temp {
		if rerr := os.RemoveAll(s.dir); err == nil && rerr != nil {
			err = fmt.Errorf("pgtest: %w", rerr)
		}
	}
	return err
}

// Dir is the server's directory (data, socket, log).
func (s *Server) Dir() string { return s.dir }

// DSN is the postgres:// URL of database db over the unix socket.
func (s *Server) DSN(db string) string {
	q := url.Values{"host": {s.dir}, "port": {strconv.Itoa(s.port)}, "sslmode": {"disable"}}
	return "postgres://postgres@/" + url.PathEscape(db) + "?" + q.Encode()
}

// CreateDatabase creates database name (an SQL identifier: letters, digits,
// underscores) and returns its DSN.
func (s *Server) CreateDatabase(ctx context.Context, name string) (string, error) {
	for _, c := range name {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return "", fmt.Errorf("pgtest: database name %q: use a-z, 0-9 and _", name)
		}
	}
	db, err := sql.Open("pgx", s.DSN("postgres"))
	if err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	return s.DSN(name), nil
}

// DatabaseExists reports whether database name exists.
func (s *Server) DatabaseExists(ctx context.Context, name string) (bool, error) {
	db, err := sql.Open("pgx", s.DSN("postgres"))
	if err != nil {
		return false, fmt.Errorf("pgtest: %w", err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		return false, fmt.Errorf("pgtest: %w", err)
	}
	return n > 0, nil
}

// DropDatabase drops database name if it exists.
func (s *Server) DropDatabase(ctx context.Context, name string) error {
	db, err := sql.Open("pgx", s.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `DROP DATABASE IF EXISTS "`+name+`"`); err != nil {
		return fmt.Errorf("pgtest: drop database %s: %w", name, err)
	}
	return nil
}

var (
	shared struct {
		sync.Mutex
		enabled bool
		srv     *Server
		err     error
	}
	dbSeq atomic.Int64
)

// Run runs the tests of m with one server shared by every New, started on
// first use, and stops it afterwards. Call it from TestMain and pass its
// result to os.Exit.
func Run(m *testing.M) int {
	shared.Lock()
	shared.enabled = true
	shared.Unlock()
	code := m.Run()
	shared.Lock()
	defer shared.Unlock()
	if shared.srv != nil {
		if err := shared.srv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// New returns the DSN of a new, empty database. It fails the test when
// PostgreSQL cannot run here.
func New(t testing.TB) string {
	t.Helper()
	srv := sharedServer(t)
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn, err := srv.CreateDatabase(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

func sharedServer(t testing.TB) *Server {
	shared.Lock()
	defer shared.Unlock()
	if !shared.enabled {
		srv, err := Start(Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := srv.Stop(); err != nil {
				t.Error(err)
			}
		})
		return srv
	}
	if shared.srv == nil && shared.err == nil {
		shared.srv, shared.err = Start(Options{})
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.srv
}

// run runs a server binary as the postgres user when we are root.
func (s *Server) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
		cmd.Env = append(cmd.Env, "HOME="+s.dir, "USER=postgres", "LOGNAME=postgres")
	}
	// pg_ctl start leaves the server running with our stdout/stderr as its
	// own unless it has a log file; CombinedOutput would then wait for the
	// server to exit. The -l flag above avoids that.
	return cmd.CombinedOutput()
}

func (s *Server) chown(path string) error {
	if s.cred == nil {
		return nil
	}
	if err := os.Chown(path, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	return nil
}

// binDir finds initdb and pg_ctl: the newest /usr/lib/postgresql/N/bin,
// else PATH.
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if _, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	return "", errors.New("pgtest: PostgreSQL server binaries not found (apt-get install -y postgresql)")
}
