// Package api is the server's REST API (DESIGN.md): alerts with filters,
// cursor pagination and their lifecycle (dismiss, resolve, reactivate,
// suppress into an engine exception), incidents, inventory, clusters,
// tokens, and the ingest endpoint sensors and agents post batches to.
//
// Every request but /healthz carries a bearer token; the store resolves it
// to a principal whose role (admin, reader, cluster) decides what the
// route allows. Every body is size-limited and strictly decoded; every
// error is a JSON {"error": "..."} with the right status, never a stack
// trace. The store (internal/server/store) is the only state.
package api
