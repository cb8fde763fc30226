// Package detect is Vigil's detection engine: events in, alerts out, for
// the node sensor today and the audit-log intake and any later source.
//
// Rules are data (rules/*.yaml, embedded; users add and override their
// own): a condition in CEL over the fields of fields.go, with reusable
// lists and macros, checked when the rules load. Load compiles a Ruleset;
// New wraps it in an Engine whose Process takes one event at a time.
//
// Where an alert is born: Engine.Process dispatches the event to the rules
// of its kind; each rule's matcher runs its native prefilter (prefilter.go)
// and, when the condition needs it, CEL; a match goes through the drift
// policy (drift.go) and the exceptions (exception.go) and is then raised or
// aggregated into the alert already open for that rule, container and
// executable (engine.go). Stateful rules (stateful.go) keep bounded state:
// sequences of steps, bursts, and processes whose CPU time is sampled.
//
// Rule tests (rules/*.test.yaml) are run by the same runner users get from
// `vigil rules test` (testing.go).
package detect
