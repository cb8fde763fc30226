// Package export sends the server's alerts to SIEMs and chat: a generic JSON
// webhook, syslog (RFC 5424, JSON or CEF, over UDP, TCP or TLS), Slack,
// Splunk HEC and Elasticsearch bulk.
//
// The server's ingest path feeds it: every stored (or updated) alert is
// handed to Dispatcher.Submit, which never blocks. The Dispatcher owns
// everything outputs have in common, once: a bounded queue per output, the
// minimum-severity filter, batching, retries with exponential backoff and
// jitter while an endpoint is down (in order), rate limits, health and the
// vigil_export_* metrics. An Output only turns a batch into its
// destination's payload and sends it.
//
// Adding an output is one small file with a pure payload builder (tested
// against golden files under testdata/, refreshed with go test -update) and
// a Send, plus one line in the kinds table of export.go.
//
// Secrets (Config.Secret, a Slack webhook URL, passwords and query values
// in URLs, header values) are write-only: Config.Redacted blanks them, and
// every error an Output returns passes through a scrubber that replaces them,
// so neither Health, the logs nor an API response can contain them.
package export
