// Package store keeps the central server's state in SQL: clusters and their
// components, tokens and cluster credentials, alerts with their status
// history, incidents, engine exceptions, inventory and posture findings.
//
// It speaks database/sql to SQLite (modernc.org/sqlite, pure Go, WAL; the
// default and what `vigil up` uses) or PostgreSQL (pgx, for several server
// replicas sharing one database). One set of migrations (migrations/*.sql,
// embedded, applied in order by Open and recorded in schema_migrations)
// serves both: times are BIGINT nanoseconds since the Unix epoch (0 means
// never), JSON documents are TEXT, upserts are INSERT ... ON CONFLICT, and
// the only differences live in dialect (placeholders, row locks, the
// migration lock).
//
// The API package (internal/server/api) is its reader and writer: ingest
// batches from sensors and agents (ship.Batch) go in through Ingest, the
// console and CLI read alerts, incidents and clusters back.
//
// Secrets: tokens and cluster credentials are "vgl_" + a role letter
// (a admin, r reader, c cluster) + "_" + 32 random bytes in unpadded
// base64url, 49 characters in all; they are returned once and only their
// SHA-256 is stored.
//
// A *Store is safe for concurrent use. On SQLite every write goes through
// one connection (SQLite allows one writer at a time anyway) while reads use
// a small pool that WAL lets run beside it; on PostgreSQL ingest takes a row
// lock on its cluster, so batches of one cluster are stored one after the
// other while different clusters proceed in parallel.
package store
