package detect

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A rule's tactic must be one of ATT&CK's 14 enterprise tactics, by name
// or TA id; the alert carries the canonical name.
func TestTacticValidation(t *testing.T) {
	rule := func(tactic string) string {
		return "rules:\n  - id: custom.t\n    title: t\n    description: d\n    severity: low\n    tactic: " + tactic +
			"\n    kinds: [process.exec]\n    condition: proc.name == \"x\"\n    remediation: r\n"
	}
	load := func(t *testing.T, yaml string) (*Ruleset, error) {
		p := filepath.Join(t.TempDir(), "r.yaml")
		if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return Load(Options{NoBuiltin: true, Paths: []string{p}})
	}
	for in, want := range map[string]string{
		"Execution":              "Execution",
		"TA0004":                 "Privilege Escalation",
		"ta0011":                 "Command and Control",
		"command-and-control":    "Command and Control",
		"\"defense  evasion\"":   "Defense Evasion",
		"Resource Development":   "Resource Development",
		"Reconnaissance":         "Reconnaissance",
		"Exfiltration":           "Exfiltration",
		"TA0040":                 "Impact",
		"\"Credential Access \"": "Credential Access",
	} {
		rs, err := load(t, rule(in))
		if err != nil {
			t.Errorf("tactic %s: %v", in, err)
			continue
		}
		if got := rs.Rules()[0].Tactic; got != want {
			t.Errorf("tactic %s: loaded as %q, want %q", in, got, want)
		}
	}
	for _, bad := range []string{"Exploitation", "Privilege", "TA0099", "Credential Access, Persistence", "T1059"} {
		_, err := load(t, rule("\""+bad+"\""))
		if err == nil || !strings.Contains(err.Error(), "MITRE ATT&CK enterprise tactic") || !strings.Contains(err.Error(), "Command and Control") {
			t.Errorf("tactic %q: err %v, want the list of tactics", bad, err)
		}
	}
	// Every built-in rule already uses a canonical name.
	rs, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs.Rules() {
		if c, ok := canonicalTactic(r.Tactic); !ok || c != r.Tactic {
			t.Errorf("%s: tactic %q", r.ID, r.Tactic)
		}
	}
}

// Disabling an id that does not exist names the flag users type.
func TestLoadUnknownDisable(t *testing.T) {
	_, err := Load(Options{Disable: []string{"runtime.no-such-rule"}})
	if err == nil || !strings.Contains(err.Error(), "--disable-rule runtime.no-such-rule: no such rule") {
		t.Fatalf("err %v", err)
	}
	if _, err := Load(Options{Disable: []string{"runtime.no-such-*"}}); err != nil {
		t.Fatalf("a prefix that matches nothing: %v", err)
	}
}
