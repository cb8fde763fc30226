package detect

import (
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// File is one rules file: reusable lists and macros, rules, and
// exceptions. Later files override earlier ones by name or id.
type File struct {
	Lists      []List      `yaml:"lists"`
	Macros     []Macro     `yaml:"macros"`
	Rules      []Rule      `yaml:"rules"`
	Exceptions []Exception `yaml:"exceptions"`
}

// List is a named list of strings; a condition names it where it wants
// the list literal (proc.name in shell_binaries). Items may name other lists.
type List struct {
	Name  string   `yaml:"name"`
	Items []string `yaml:"items"`
	// Append adds the items to an earlier list of the same name instead of
	// replacing it.
	Append bool `yaml:"append"`
}

// Macro is a named condition fragment, expanded in parentheses wherever a
// condition names it.
type Macro struct {
	Name      string `yaml:"name"`
	Condition string `yaml:"condition"`
}

// Rule is one detection, as written in YAML.
type Rule struct {
	ID          string         `yaml:"id"`
	Title       string         `yaml:"title"`
	Description string         `yaml:"description"`
	Severity    event.Severity `yaml:"severity"`
	Tactic      string         `yaml:"tactic"`
	Techniques  []string       `yaml:"techniques"`
	// Kinds are the event kinds the rule looks at.
	Kinds []event.Kind `yaml:"kinds"`
	// Condition is a CEL expression over the fields of `vigil rules fields`,
	// lists and macros; it must be boolean.
	Condition string `yaml:"condition"`
	// Evidence names the fields copied into the alert.
	Evidence    []string `yaml:"evidence"`
	Remediation string   `yaml:"remediation"`
	Tags        []string `yaml:"tags"`
	// Enabled defaults to true.
	Enabled *bool `yaml:"enabled"`

	// At most one of the stateful forms below.
	Sequence     *Sequence     `yaml:"sequence"`
	Burst        *Burst        `yaml:"burst"`
	SustainedCPU *SustainedCPU `yaml:"sustained_cpu"`
	// Drift marks the rule as binary drift: the drift policy decides per
	// container whether it alerts, stays quiet or also kills the process.
	Drift bool `yaml:"drift"`

	// origin is the file the rule came from, for error messages.
	origin string
}

// allKinds is every kind the rule or its steps look at.
func (r *Rule) allKinds() []event.Kind {
	kinds := slices.Clone(r.Kinds)
	if r.Sequence != nil {
		for _, st := range r.Sequence.Steps {
			for _, k := range st.Kinds {
				if !slices.Contains(kinds, k) {
					kinds = append(kinds, k)
				}
			}
		}
	}
	return kinds
}

// looksAtAny reports whether the rule or a step of its sequence looks at
// one of kinds. A rule that names no kind at all says yes, so that loading
// it reports the mistake.
func (r *Rule) looksAtAny(kinds []event.Kind) bool {
	all := r.allKinds()
	return len(all) == 0 || slices.ContainsFunc(all, func(k event.Kind) bool { return slices.Contains(kinds, k) })
}

// Sequence fires when its steps happen in order, in one container (or one
// host process tree), within Within. The rule's Condition, if any, applies
// to every step; each step adds its own.
type Sequence struct {
	By     string   `yaml:"by"` // container (default), process_tree, or user (k8s.audit events always group by user)
	Within Duration `yaml:"within"`
	Steps  []Step   `yaml:"steps"`
}

// Step is one stage of a sequence. When two steps both have a Key, the
// keys' values must be equal (the file downloaded is the file chmod'ed is
// the file executed).
type Step struct {
	Name      string       `yaml:"name"`
	Kinds     []event.Kind `yaml:"kinds"`
	Condition string       `yaml:"condition"`
	Key       string       `yaml:"key"`
}

// Burst fires when the condition matched Count times (or on Count distinct
// values of Distinct) in one container or host process tree within Within.
type Burst struct {
	By       string   `yaml:"by"`
	Within   Duration `yaml:"within"`
	Count    int      `yaml:"count"`
	Distinct string   `yaml:"distinct"`
}

// SustainedCPU makes a matching exec a suspect: the engine samples the
// process's CPU time from /proc and fires when it used at least Cores
// cores on average over For.
type SustainedCPU struct {
	Cores float64  `yaml:"cores"`
	For   Duration `yaml:"for"`
}

// Exception silences rules where the team decided the behaviour is
// expected. Every non-empty scope field must match (globs with *); an
// exception without any scope is refused.
type Exception struct {
	ID          string            `yaml:"id" json:"id"`
	Rules       []string          `yaml:"rules" json:"rules"` // rule ids or globs; empty means every rule
	Reason      string            `yaml:"reason" json:"reason"`
	Expires     time.Time         `yaml:"expires" json:"expires,omitzero"`
	Cluster     string            `yaml:"cluster" json:"cluster,omitempty"`
	Namespace   string            `yaml:"namespace" json:"namespace,omitempty"`
	Workload    string            `yaml:"workload" json:"workload,omitempty"`
	Image       string            `yaml:"image" json:"image,omitempty"`
	Labels      map[string]string `yaml:"labels" json:"labels,omitempty"`
	ProcessPath string            `yaml:"process_path" json:"process_path,omitempty"`
	Cmdline     string            `yaml:"cmdline" json:"cmdline,omitempty"`
}

// Duration is a time.Duration written as "5m" in YAML.
type Duration time.Duration

// UnmarshalText parses a Go duration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	if v <= 0 {
		return fmt.Errorf("duration %q must be positive", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes d as a Go duration.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

var (
	ruleIDPattern = regexp.MustCompile(`^[a-z][a-z0-9]*(\.[a-z0-9]+(-[a-z0-9]+)*)+$`)
	namePattern   = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
	techPattern   = regexp.MustCompile(`^T\d{4}(\.\d{3})?$`)
)

// IsEnabled reports whether the rule is on (the default).
func (r *Rule) IsEnabled() bool { return r.Enabled == nil || *r.Enabled }
