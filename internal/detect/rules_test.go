package detect

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
)

// Every built-in rule fires on its positive fixtures and stays quiet on
// its negative ones, through the runner `vigil rules test` uses.
func TestBuiltinRules(t *testing.T) {
	rs, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	results, err := BuiltinTests(rs)
	if err != nil {
		t.Error(err)
	}
	for _, r := range results {
		if !r.OK() {
			var fired []string
			for _, a := range r.Fired {
				fired = append(fired, a.Rule)
			}
			t.Errorf("%s: %s: %q: want %d alerts, got %d (err %v; fired: %s)", r.File, r.Rule, r.Case, r.Want, r.Got, r.Err, strings.Join(fired, ", "))
		}
	}
	t.Logf("%d rules, %d cases", len(rs.rules), len(results))
}

// TestRuleFiles checks a work-in-progress set of rule files on their own:
//
//	VIGIL_RULE_FILES=rules/runtime/a.yaml,rules/runtime/b.yaml go test -run TestRuleFiles ./internal/detect/
//
// It loads the shared lists and macros plus the named files (paths relative
// to this package), then runs each file's NAME.test.yaml.
func TestRuleFiles(t *testing.T) {
	env := os.Getenv("VIGIL_RULE_FILES")
	if env == "" {
		t.Skip("set VIGIL_RULE_FILES to check rule files in isolation")
	}
	paths := []string{"rules/lists.yaml", "rules/macros.yaml"}
	paths = append(paths, strings.Split(env, ",")...)
	rs, err := Load(Options{NoBuiltin: true, Paths: paths})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths[2:] {
		if !strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, "lists.yaml") || strings.HasSuffix(p, "macros.yaml") {
			continue
		}
		tp := strings.TrimSuffix(p, ".yaml") + ".test.yaml"
		data, err := os.ReadFile(tp)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		results, err := RunTestFile(rs, tp, data)
		if err != nil {
			t.Error(err)
			continue
		}
		for _, r := range results {
			if !r.OK() {
				t.Errorf("%s: %q: want %d alerts, got %d (err %v)", r.Rule, r.Case, r.Want, r.Got, r.Err)
			}
		}
	}
}

// Options.Kinds loads exactly the rules that look at those kinds (a
// sequence through any of its steps): the sensor's ruleset is every
// runtime rule and no control-plane rule.
func TestLoadKinds(t *testing.T) {
	all, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	node, err := Load(Options{Kinds: event.SensorKinds})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, c := range all.rules {
		if !slices.Contains(c.allKinds(), event.K8sAudit) {
			want = append(want, c.ID)
		}
	}
	var got []string
	for _, r := range node.Rules() {
		got = append(got, r.ID)
	}
	if !slices.Equal(got, want) {
		t.Errorf("rules for the sensor's kinds:\n got %v\nwant %v", got, want)
	}
	if len(got) == 0 || len(got) == len(all.rules) {
		t.Errorf("%d of %d rules loaded: the built-in set should have both runtime and audit rules", len(got), len(all.rules))
	}
	if _, ok := node.byKind[event.K8sAudit]; ok {
		t.Error("the sensor's ruleset indexes k8s.audit events")
	}
}
