package detect

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vigil-sec/vigil/internal/event"
)

// TestFile is a rule's fixture file (NAME.test.yaml beside NAME.yaml):
// cases of events in the sensor's JSON shape, written as YAML, and how
// many alerts the rule must raise for each.
type TestFile struct {
	Rule  string     `yaml:"rule"`
	Tests []TestCase `yaml:"tests"`
}

// TestCase is one scenario. Events without a time are one second apart;
// `after: 90s` on an event puts it that long after the previous one.
// Alerts counts the rule's distinct alerts (repeats aggregate into one);
// for sustained_cpu rules it counts the processes the rule starts
// watching, since fixtures have no CPU to sample.
type TestCase struct {
	Name       string           `yaml:"name"`
	Events     []map[string]any `yaml:"events"`
	Alerts     int              `yaml:"alerts"`
	Drift      *DriftPolicy     `yaml:"drift_policy"`
	Exceptions []Exception      `yaml:"exceptions"`
}

// TestResult is the outcome of one case.
type TestResult struct {
	File, Rule, Case string
	Want, Got        int
	// Fired holds every alert the case raised, of any rule.
	Fired []*event.Alert
	Err   error
}

// OK reports whether the case passed.
func (r TestResult) OK() bool { return r.Err == nil && r.Want == r.Got }

// testEpoch is the clock of fixture runs.
var testEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// RunTestFile runs one fixture file against rs.
func RunTestFile(rs *Ruleset, name string, data []byte) ([]TestResult, error) {
	var tf TestFile
	if err := decodeStrict(data, &tf); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if tf.Rule == "" || len(tf.Tests) == 0 {
		return nil, fmt.Errorf("%s: a test file names its rule and has tests", name)
	}
	var rule *compiled
	for _, r := range rs.rules {
		if r.ID == tf.Rule {
			rule = r
		}
	}
	if rule == nil {
		return nil, fmt.Errorf("%s: no rule %s", name, tf.Rule)
	}
	var out []TestResult
	for _, tc := range tf.Tests {
		res := TestResult{File: name, Rule: tf.Rule, Case: tc.Name, Want: tc.Alerts}
		res.Got, res.Fired, res.Err = runCase(rs, rule, tc)
		out = append(out, res)
	}
	return out, nil
}

func runCase(rs *Ruleset, rule *compiled, tc TestCase) (int, []*event.Alert, error) {
	events, err := fixtureEvents(tc.Events)
	if err != nil {
		return 0, nil, err
	}
	for i := range tc.Exceptions {
		if err := tc.Exceptions[i].validate(); err != nil {
			return 0, nil, err
		}
	}
	now := testEpoch
	var fired []*event.Alert
	cfg := Config{
		Rules:      rs,
		Exceptions: tc.Exceptions,
		Cluster:    "test",
		Node:       "node-1",
		Emit:       func(a *event.Alert) { fired = append(fired, a) },
		Now:        func() time.Time { return now },
		kill:       func(string, *event.Process) error { return nil },
	}
	if tc.Drift != nil {
		if err := tc.Drift.Validate(); err != nil {
			return 0, nil, err
		}
		cfg.Drift = *tc.Drift
	}
	e := New(cfg)
	watched := map[uint32]bool{}
	for _, ev := range events {
		now = ev.Time
		e.Process(ev)
		if rule.SustainedCPU != nil {
			for pid, w := range e.cpu {
				if w.rule == rule {
					watched[pid] = true
				}
			}
		}
	}
	if rule.SustainedCPU != nil {
		return len(watched), fired, nil
	}
	ids := map[string]bool{}
	for _, a := range fired {
		if a.Rule == rule.ID {
			ids[a.ID] = true
		}
	}
	return len(ids), fired, nil
}

// fixtureEvents decodes YAML events through their JSON contract.
func fixtureEvents(raw []map[string]any) ([]*event.Event, error) {
	if len(raw) == 0 {
		return nil, errors.New("a test case needs events")
	}
	t := testEpoch
	var out []*event.Event
	for i, m := range raw {
		step := time.Second
		if after, ok := m["after"]; ok {
			s, _ := after.(string)
			d, err := time.ParseDuration(s)
			if err != nil {
				return nil, fmt.Errorf("event %d: after: %v", i+1, err)
			}
			step = d
			delete(m, "after")
		}
		t = t.Add(step)
		b, err := json.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("event %d: %w", i+1, err)
		}
		var ev event.Event
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ev); err != nil {
			return nil, fmt.Errorf("event %d: %w", i+1, err)
		}
		if ev.Kind == "" {
			return nil, fmt.Errorf("event %d: kind is required", i+1)
		}
		if ev.Time.IsZero() {
			ev.Time = t
		} else {
			t = ev.Time
		}
		out = append(out, &ev)
	}
	return out, nil
}

// BuiltinTests runs every built-in rule's fixture file against rs, and
// reports rules that have none or lack a positive or a negative case.
func BuiltinTests(rs *Ruleset) ([]TestResult, error) {
	var out []TestResult
	tested := map[string][2]bool{}
	err := fs.WalkDir(builtinFS, "rules", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".test.yaml") {
			return err
		}
		data, err := builtinFS.ReadFile(p)
		if err != nil {
			return err
		}
		res, err := RunTestFile(rs, "builtin:"+strings.TrimPrefix(p, "rules/"), data)
		if err != nil {
			return err
		}
		for _, r := range res {
			t := tested[r.Rule]
			if r.Want > 0 {
				t[0] = true
			} else {
				t[1] = true
			}
			tested[r.Rule] = t
		}
		out = append(out, res...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, r := range rs.rules {
		if !strings.HasPrefix(r.origin, "builtin:") {
			continue
		}
		if t := tested[r.ID]; !t[0] || !t[1] {
			missing = append(missing, r.ID)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		return out, fmt.Errorf("rules without both a positive and a negative test: %s", strings.Join(missing, ", "))
	}
	return out, nil
}

// TestFilesIn lists the *.test.yaml files under dir.
func TestFilesIn(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".test.yaml") || strings.HasSuffix(p, ".test.yml")) {
			out = append(out, p)
		}
		return err
	})
	sort.Strings(out)
	return out, err
}

// decodeStrict decodes YAML, refusing unknown keys.
func decodeStrict(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	return dec.Decode(v)
}
