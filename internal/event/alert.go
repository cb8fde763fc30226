package event

import (
	"fmt"
	"time"
)

// Severity ranks an alert. The order is informational < low < medium < high.
type Severity string

// Severities, from least to most urgent.
const (
	Informational Severity = "informational"
	Low           Severity = "low"
	Medium        Severity = "medium"
	High          Severity = "high"
)

// Rank orders severities: 0 for informational up to 3 for high, -1 for an
// unknown value.
func (s Severity) Rank() int {
	switch s {
	case Informational:
		return 0
	case Low:
		return 1
	case Medium:
		return 2
	case High:
		return 3
	}
	return -1
}

// ParseSeverity accepts the four severities of the contract.
func ParseSeverity(s string) (Severity, error) {
	if Severity(s).Rank() < 0 {
		return "", fmt.Errorf("severity %q: want informational, low, medium or high", s)
	}
	return Severity(s), nil
}

// Alert statuses.
const (
	StatusActive    = "active"
	StatusDismissed = "dismissed"
	StatusResolved  = "resolved"
)

// Alert is what a rule raised, with everything an analyst needs to act on
// it: the rule's metadata, where it happened and the process behind it.
// Repeated hits of one rule on one container or process update one alert's
// Count and LastSeen instead of raising new ones.
type Alert struct {
	ID          string    `json:"id"`
	Rule        string    `json:"rule"`
	Title       string    `json:"title"`
	Severity    Severity  `json:"severity"`
	Tactic      string    `json:"tactic,omitempty"`
	Techniques  []string  `json:"techniques,omitempty"`
	Status      string    `json:"status"`
	FirstSeen   time.Time `json:"first_seen"`
	LastSeen    time.Time `json:"last_seen"`
	Count       uint64    `json:"count"`
	Source      string    `json:"source,omitempty"`
	Cluster     string    `json:"cluster,omitempty"`
	Node        string    `json:"node,omitempty"`
	Namespace   string    `json:"namespace,omitempty"`
	Pod         string    `json:"pod,omitempty"`
	Container   string    `json:"container,omitempty"`
	ContainerID string    `json:"container_id,omitempty"`
	Image       string    `json:"image,omitempty"`
	Workload    string    `json:"workload,omitempty"`
	// Labels are the pod's labels, for exceptions and filters.
	Labels  map[string]string `json:"labels,omitempty"`
	Process *Process          `json:"process,omitempty"`
	User    *User             `json:"user,omitempty"`
	// Evidence holds the fields the rule asked to keep, by field name.
	Evidence    map[string]any `json:"evidence,omitempty"`
	Description string         `json:"description,omitempty"`
	Remediation string         `json:"remediation,omitempty"`
	// Action is what the engine did beyond alerting: "killed" when drift
	// block mode stopped the process, "kill_failed" when it could not (the
	// cause is in Evidence["kill_error"]).
	Action string `json:"action,omitempty"`
	// Tags carry the rule's tags (maturity, MITRE ids, scope).
	Tags []string `json:"tags,omitempty"`
}

// User is the Kubernetes identity behind a control-plane alert.
type User struct {
	Name   string   `json:"name"`
	Groups []string `json:"groups,omitempty"`
}
