package detect

import (
	"testing"
)

// Rules files come from users: any bytes must give rules or an error,
// never a panic or a hang.
func FuzzLoadRules(f *testing.F) {
	f.Add([]byte(testRules))
	f.Add([]byte("lists:\n  - {name: l_a, items: [l_a]}\nrules:\n  - {id: x.y, condition: 'proc.name in l_a'}\n"))
	f.Add([]byte("macros:\n  - {name: m, condition: \"m && m\"}\n"))
	f.Add([]byte("rules:\n  - id: x.y\n    condition: 'proc.cmdline.matches(\"(\")'\n"))
	f.Add([]byte("exceptions:\n  - {id: e, reason: r, image: '[', expires: 2020-01-01T00:00:00Z}\n"))
	in := defaultIntel()
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := parseFile("fuzz.yaml", data)
		if err != nil {
			return
		}
		rs, err := build([]namedFile{{"fuzz.yaml", file}}, nil, in)
		if err != nil {
			return
		}
		// What loads must evaluate without panicking.
		e := New(Config{Rules: rs})
		for _, ev := range eventMix(50) {
			e.Process(ev)
		}
	})
}

// Fixture files come from users too (`vigil rules test`).
func FuzzRuleTestFile(f *testing.F) {
	rs, err := Load(Options{Paths: nil})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("rule: runtime.drift-binary-executed\ntests:\n  - name: a\n    events:\n      - {kind: process.exec, after: 5s, process: {pid: 1, exe: /tmp/x, drift: true}, container: {id: c}}\n    alerts: 1\n"))
	f.Add([]byte("rule: runtime.drift-binary-executed\ntests:\n  - {name: b, events: [{kind: file.open, time: '2026-01-01T00:00:00Z'}], drift_policy: {rules: [{action: block}]}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = RunTestFile(rs, "fuzz.test.yaml", data)
	})
}
