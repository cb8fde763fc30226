// Package ship carries what a sensor or agent found to the central server,
// and owns the wire format of that exchange.
//
// The wire format (batch.go) is the body of POST /api/v1/ingest: a Batch of
// alerts, component health, inventory and posture findings under a ULID
// batch id. The server imports this package for the types and for
// DecodeBatch, its strict decoder of untrusted bodies.
//
// The Client (client.go) is fed by the sensor's and the agent's alert,
// health and inventory paths. It merges repeated updates of one alert, cuts
// batches, writes each batch to an on-disk spool (spool.go) before the first
// attempt, and sends the spool in order, retrying with backoff through an
// optional HTTP(S) proxy. A batch leaves the spool only when the server
// acknowledged it or refused it for good, so a crash or an outage of the
// server loses nothing but what the bounded spool had to drop, and a batch
// resent after a lost acknowledgement carries the same batch id. Findings
// and scan completions (Client.ScanComplete) keep the order they were
// queued in, which the server relies on to retire the findings of older
// scanner runs.
package ship
