package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// run executes the CLI in-process and returns stdout and the error.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := Root()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestRulesListJSON(t *testing.T) {
	out, err := run(t, "rules", "list", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rules []struct {
		ID, Title, Severity, Tactic string
		Enabled                     bool
	}
	if err := json.Unmarshal([]byte(out), &rules); err != nil {
		t.Fatal(err)
	}
	if len(rules) < 40 {
		t.Fatalf("%d built-in rules, want at least 40", len(rules))
	}
	for _, r := range rules {
		if !(strings.HasPrefix(r.ID, "runtime.") || strings.HasPrefix(r.ID, "audit.")) || r.Title == "" || r.Severity == "" || r.Tactic == "" || !r.Enabled {
			t.Errorf("rule %+v", r)
		}
	}
}

func TestRulesTestExamples(t *testing.T) {
	out, err := run(t, "rules", "test", "../../examples/rules")
	if err != nil || !strings.Contains(out, "3 cases, 0 failed") {
		t.Fatalf("err %v:\n%s", err, out)
	}
	// Disabling the rule makes its positive case fail, and the command says so.
	out, err = run(t, "rules", "test", "--disable-rule", "custom.paste-site-download", "../../examples/rules")
	if err == nil || !strings.Contains(out, "FAIL custom.paste-site-download: curl from pastebin") {
		t.Fatalf("err %v:\n%s", err, out)
	}
}

func TestRulesValidateReportsProblems(t *testing.T) {
	dir := t.TempDir()
	bad := "rules:\n  - id: custom.bad\n    title: t\n    description: d\n    severity: severe\n    tactic: Execution\n    kinds: [process.exec]\n    condition: proc.name == 1\n    remediation: r\n"
	if err := os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := run(t, "rules", "validate", dir)
	if err == nil || !strings.Contains(err.Error(), "custom.bad") || !strings.Contains(err.Error(), "severity") ||
		!strings.Contains(err.Error(), "no matching overload") {
		t.Fatalf("err %v", err)
	}
}

// The README's rule and fixture are real: extract them and run them.
func TestReadmeRuleExample(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var rule, fixture string
	for _, block := range strings.Split(string(readme), "```yaml\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		switch {
		case strings.HasPrefix(block, "lists:"):
			rule = block
		case strings.HasPrefix(block, "rule: "):
			fixture = block
		}
	}
	if rule == "" || fixture == "" {
		t.Fatal("README lost its rule or fixture example")
	}
	dir := t.TempDir()
	for name, body := range map[string]string{"paste.yaml": rule, "paste.test.yaml": fixture} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, err := run(t, "rules", "test", dir)
	if err != nil || !strings.Contains(out, "2 cases, 0 failed") {
		t.Fatalf("err %v:\n%s", err, out)
	}
}
