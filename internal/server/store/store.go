package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/oklog/ulid/v2"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"
)

// Sentinel errors; test with errors.Is. Errors that wrap them say more.
var (
	// ErrNotFound: no such alert, cluster, incident, ...
	ErrNotFound = errors.New("not found")
	// ErrUnauthorized: the secret names no token or cluster credential.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrConflict: the name or id is already taken.
	ErrConflict = errors.New("already exists")
	// ErrInvalid: the caller passed a value the store refuses (a bad
	// cluster name, role, status, severity, sort or cursor).
	ErrInvalid = errors.New("invalid argument")
)

// Store is the server's database. Open it with Open and Close it when done;
// it is safe for concurrent use.
type Store struct {
	w       *sql.DB // writes (SQLite: one connection)
	r       *sql.DB // reads (SQLite: a pool beside the writer; PostgreSQL: w)
	d       dialect
	ingests atomic.Uint64
	texts   knownTexts // search dictionary keys already written
	audits  sync.Map   // cluster id -> time.Time of its last NoteAudit write
	// SQLite's checkpointer goroutine: closing ckStop stops it, ckDone is
	// closed when it has.
	ckStop, ckDone chan struct{}
	closeOnce      sync.Once
	closeErr       error
}

//go:embed migrations/*.sql
var migrationFS embed.FS

// Open connects to dsn and applies the migrations that are missing.
// dsn is "sqlite:///abs/path/vigil.db", "sqlite://relative/path.db" or a
// PostgreSQL URL ("postgres://..." or "postgresql://..."). A SQLite file
// is created when missing, its directory is not.
func Open(ctx context.Context, dsn string) (*Store, error) {
	var s *Store
	var err error
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		s, err = openSQLite(dsn)
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		s, err = openPostgres(dsn)
	default:
		return nil, fmt.Errorf("open store: %w: database URL must start with sqlite:// or postgres://", ErrInvalid)
	}
	if err != nil {
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if s.d.sqlite {
		// Gather index statistics where they are missing or stale, so that
		// the planner picks the narrowest index for a filter.
		if _, err := s.w.ExecContext(ctx, "PRAGMA optimize=0x10002"); err != nil {
			s.Close()
			return nil, fmt.Errorf("open store: optimize: %w", err)
		}
	}
	return s, nil
}

// sqlitePath turns the sqlite:// URL into a file path.
func sqlitePath(dsn string) (string, error) {
	p := strings.TrimPrefix(dsn, "sqlite:")
	p = strings.TrimPrefix(p, "//")
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	if p == "" || strings.ContainsAny(p, "?#") {
		return "", fmt.Errorf("open store: %w: bad SQLite URL %q (want sqlite:///abs/path.db or sqlite://rel/path.db)", ErrInvalid, dsn)
	}
	return p, nil
}

func openSQLite(dsn string) (*Store, error) {
	p, err := sqlitePath(dsn)
	if err != nil {
		return nil, err
	}
	common := "_busy_timeout=10000&_journal_mode=WAL&_synchronous=NORMAL" +
		"&_pragma=cache_size(-65536)&_pragma=mmap_size(1073741824)&_pragma=temp_store(MEMORY)"
	// The writer leaves checkpoints to the checkpointer below and does one
	// itself only when the WAL has grown past 400 MB (the checkpointer
	// fell behind).
	w, err := sql.Open("sqlite", "file:"+p+"?"+common+"&_txlock=immediate&_pragma=analysis_limit(1000)&_pragma=wal_autocheckpoint(100000)&_pragma=journal_size_limit(67108864)")
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", p, err)
	}
	// SQLite has one writer at a time: one connection serialises writers in
	// this process, and busy_timeout waits for any other process.
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := w.Ping(); err != nil {
		w.Close()
		return nil, fmt.Errorf("open store %s: %w", p, err)
	}
	r, err := sql.Open("sqlite", "file:"+p+"?"+common+"&_query_only=1")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open store %s: %w", p, err)
	}
	n := max(4, runtime.NumCPU())
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	r.SetConnMaxIdleTime(0)
	ck, err := sql.Open("sqlite", "file:"+p+"?"+common+"&_pragma=wal_autocheckpoint(0)")
	if err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("open store %s: %w", p, err)
	}
	ck.SetMaxOpenConns(1)
	s := &Store{w: w, r: r, d: dialect{sqlite: true}, ckDone: make(chan struct{}), ckStop: make(chan struct{})}
	go s.checkpointer(ck)
	return s, nil
}

// checkpointInterval is how often the checkpointer copies the WAL into the
// database file.
const checkpointInterval = 200 * time.Millisecond

// checkpointer copies committed pages from the WAL into the database file
// on its own connection, beside the writer rather than inside its
// commits: ingest does not wait for it, and a page written by many commits
// in between is copied once. It ends with a full checkpoint when Close
// signals ckStop.
func (s *Store) checkpointer(ck *sql.DB) {
	defer close(s.ckDone)
	defer ck.Close()
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ckStop:
			ck.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
			return
		case <-t.C:
			ck.Exec("PRAGMA wal_checkpoint(PASSIVE)")
		}
	}
}

func openPostgres(dsn string) (*Store, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open store: postgres: %w", err)
	}
	// pgx prepares and caches every statement; after five runs PostgreSQL
	// may switch a prepared statement to a generic plan that ignores the
	// values, e.g. walks the last_seen index for a namespace that holds a
	// handful of alerts. Filters vary too much for that: always plan for
	// the values at hand (planning takes well under a millisecond).
	if _, ok := cfg.RuntimeParams["plan_cache_mode"]; !ok {
		cfg.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store: postgres: %w", err)
	}
	return &Store{w: db, r: db, d: dialect{}}, nil
}

// Close closes the database; calling it again returns the first call's
// result. On SQLite it first updates the planner's statistics (cheap when
// nothing changed) and checkpoints the WAL into the database file.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.d.sqlite {
			s.w.Exec("PRAGMA optimize")
			close(s.ckStop)
			<-s.ckDone
		}
		s.closeErr = s.w.Close()
		if s.r != s.w {
			if err := s.r.Close(); s.closeErr == nil {
				s.closeErr = err
			}
		}
	})
	return s.closeErr
}

// Dialect is "sqlite" or "postgres".
func (s *Store) Dialect() string {
	if s.d.sqlite {
		return "sqlite"
	}
	return "postgres"
}

// dialect is everything that differs between SQLite and PostgreSQL. Queries
// are written with ? placeholders; q rewrites them to $n for PostgreSQL.
type dialect struct{ sqlite bool }

// q rewrites ? placeholders to $1, $2, ... for PostgreSQL. Queries in this
// package put no ? inside string literals.
func (d dialect) q(query string) string {
	if d.sqlite {
		return query
	}
	n := strings.Count(query, "?")
	if n == 0 {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + n*4)
	i := 0
	for _, c := range []byte(query) {
		if c == '?' {
			i++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(i))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// forUpdate locks the selected rows until the transaction ends where the
// database has row locks; SQLite's single writer needs none.
func (d dialect) forUpdate() string {
	if d.sqlite {
		return ""
	}
	return " FOR UPDATE"
}

// maxParams bounds the placeholders of one statement (SQLite allows 32766,
// PostgreSQL 65535).
const maxParams = 30000

// Migrations.

type migration struct {
	version int
	name    string
	sql     string
	// step, when set, runs after the statements in the same transaction:
	// what SQL alone cannot do on both databases.
	step func(context.Context, *sql.Tx, dialect) error
}

// migrationSteps are the Go steps of migrations, by version.
var migrationSteps = map[int]func(context.Context, *sql.Tx, dialect) error{
	3: backfillAlertTexts,
	4: backfillFindingModes,
}

func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("migration %s: name must be NNNN_what.sql", name)
		}
		b, err := migrationFS.ReadFile(path.Join("migrations", name))
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: name, sql: string(b), step: migrationSteps[v]})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s share a version", ms[i-1].name, ms[i].name)
		}
	}
	return ms, nil
}

// SchemaVersion is the newest migration's version followed by a digest of
// every migration's text; benchmarks key their cached databases on it.
func SchemaVersion() string {
	ms, err := migrations()
	if err != nil || len(ms) == 0 {
		return "invalid"
	}
	h := sha256.New()
	for _, m := range ms {
		h.Write([]byte(m.name))
		h.Write([]byte(m.sql))
	}
	return fmt.Sprintf("%d-%s", ms[len(ms)-1].version, hex.EncodeToString(h.Sum(nil))[:12])
}

// statements splits a migration into statements: comment lines are
// dropped, statements end with ';'.
func statements(script string) []string {
	var b strings.Builder
	for _, line := range strings.Split(script, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "--") {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	var out []string
	for _, st := range strings.Split(b.String(), ";") {
		if st = strings.TrimSpace(st); st != "" {
			out = append(out, st)
		}
	}
	return out
}

// migrate applies the missing migrations, each in its own transaction. On
// PostgreSQL an advisory lock keeps replicas that start together from
// applying the same migration twice.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close()
	if !s.d.sqlite {
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(424242001)"); err != nil {
			return fmt.Errorf("migrate: lock: %w", err)
		}
		defer conn.ExecContext(context.Background(), "SELECT pg_advisory_unlock(424242001)")
	}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	applied := map[int]bool{}
	rows, err := conn.QueryContext(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return fmt.Errorf("migrate: %w", err)
		}
		applied[v] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, m := range ms {
		if applied[m.version] {
			continue
		}
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migrate %s: %w", m.name, err)
		}
		for _, st := range statements(m.sql) {
			if _, err := tx.ExecContext(ctx, st); err != nil {
				tx.Rollback()
				return fmt.Errorf("migrate %s: %w\n%s", m.name, err, st)
			}
		}
		if m.step != nil {
			if err := m.step(ctx, tx, s.d); err != nil {
				tx.Rollback()
				return fmt.Errorf("migrate %s: %w", m.name, err)
			}
		}
		if _, err := tx.ExecContext(ctx, s.d.q("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"),
			m.version, m.name, ts(time.Now())); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate %s: %w", m.name, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrate %s: %w", m.name, err)
		}
	}
	return nil
}

// Helpers shared by the files of this package.

// ts is t as nanoseconds since the epoch, 0 for the zero time, clamped to
// what int64 nanoseconds can hold (years 1678 to 2262).
func ts(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	const maxSec = math.MaxInt64/int64(time.Second) - 1
	sec := t.Unix()
	switch {
	case sec >= maxSec:
		return math.MaxInt64
	case sec <= -maxSec:
		return math.MinInt64 + 1
	}
	return t.UnixNano()
}

// fromTS is the inverse of ts, in UTC.
func fromTS(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func newID() string { return ulid.Make().String() }

// placeholders is "(?, ?, ?)" for n columns, repeated for rows rows and
// joined by commas: the VALUES list of a multi-row insert.
func placeholders(cols, rows int) string {
	one := "(" + strings.Repeat("?, ", cols-1) + "?)"
	var b strings.Builder
	b.Grow(rows * (len(one) + 2))
	for i := 0; i < rows; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(one)
	}
	return b.String()
}

// inList is "?, ?, ?" for n values.
func inList(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

// rollback ends tx when a function returns early; after Commit it is a no-op.
func rollback(tx *sql.Tx) { _ = tx.Rollback() }
