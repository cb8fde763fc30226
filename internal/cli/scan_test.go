//go:build !node

package cli

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

const (
	seedHealthy   = "../posture/testdata/healthy.yaml"
	seedUnhealthy = "../posture/testdata/unhealthy.yaml"
	seedConfig    = "../posture/testdata/seed-config.yaml"
)

func TestScanSeedHealthy(t *testing.T) {
	out, stderr, err := runSplit(t, "scan", "-f", seedHealthy, "--config", seedConfig)
	if err != nil {
		t.Fatalf("healthy example: %v\n%s\n%s", err, out, stderr)
	}
	if strings.Contains(out, "unhealthy") || !strings.Contains(out, "Deployment/default/redis-healthy-deployment") ||
		!strings.Contains(out, "Service/default/redis-healthy-service") || !strings.Contains(stderr, "14 results, 0 unhealthy") {
		t.Errorf("output:\n%s\n%s", out, stderr)
	}
}

func TestScanSeedUnhealthy(t *testing.T) {
	out, stderr, err := runSplit(t, "scan", "-f", seedUnhealthy, "--config", seedConfig, "-o", "json")
	if err == nil || !strings.Contains(err.Error(), "13 of 14 results unhealthy") {
		t.Fatalf("err = %v, want 13 of 14 unhealthy\n%s", err, stderr)
	}
	var unhealthy []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r scanJSON
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if r.File != seedUnhealthy || r.Document < 1 || r.Line < 1 || r.Title == "" || r.Severity == "" {
			t.Errorf("result %+v", r)
		}
		if !r.Healthy {
			unhealthy = append(unhealthy, r.Recommendation)
		}
	}
	sort.Strings(unhealthy)
	want := []string{"allowed-container-ports", "allowed-host-paths", "allowed-service-ports", "cpu-memory-limits", "least-capabilities",
		"no-host-network-ports", "no-host-pid-ipc", "no-privilege-escalation", "no-privileged", "pss-baseline", "read-only-root-fs", "run-as-non-root", "trusted-registries"}
	if !reflect.DeepEqual(unhealthy, want) {
		t.Errorf("unhealthy %v\nwant      %v", unhealthy, want)
	}
}

func TestScanSARIF(t *testing.T) {
	out, _, err := runSplit(t, "scan", "-f", seedUnhealthy, "-f", seedHealthy, "--config", seedConfig, "-o", "sarif")
	if err == nil {
		t.Fatal("no error for an unhealthy scan")
	}
	var log sarifLog
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&log); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if log.Version != "2.1.0" || !strings.Contains(log.Schema, "sarif-2.1.0") || len(log.Runs) != 1 {
		t.Fatalf("log %+v", log)
	}
	run := log.Runs[0]
	if run.Tool.Driver.Name != "vigil" || len(run.Tool.Driver.Rules) != 15 {
		t.Fatalf("driver %s with %d rules", run.Tool.Driver.Name, len(run.Tool.Driver.Rules))
	}
	for _, r := range run.Tool.Driver.Rules {
		if r.ID == "" || r.ShortDescription.Text == "" || r.FullDescription.Text == "" || r.Help.Text == "" || r.DefaultConfiguration.Level == "" {
			t.Errorf("rule %+v", r)
		}
	}
	// One result per violation: 20 for the unhealthy example (5 of them
	// pss-baseline's), none for the healthy one.
	if len(run.Results) != 20 {
		t.Errorf("%d results, want 20", len(run.Results))
	}
	for _, r := range run.Results {
		rule := run.Tool.Driver.Rules[r.RuleIndex]
		loc := r.Locations[0].PhysicalLocation
		if rule.ID != r.RuleID || r.Level != "warning" || r.Message.Text == "" || loc.ArtifactLocation.URI != seedUnhealthy || loc.Region == nil || loc.Region.StartLine < 1 {
			t.Errorf("result %+v at %+v", r, loc)
		}
	}
	// The Service is the second document: its location is the line after
	// the "---".
	data, _ := os.ReadFile(seedUnhealthy)
	want := strings.Count(string(data[:strings.Index(string(data), "\n---\n")]), "\n") + 3
	for _, r := range run.Results {
		if got := r.Locations[0].PhysicalLocation.Region.StartLine; r.RuleID == "allowed-service-ports" && got != want {
			t.Errorf("service result at line %d, want %d", got, want)
		}
	}
}

func TestScanJUnit(t *testing.T) {
	out, _, err := runSplit(t, "scan", "-f", "../posture/testdata", "--config", seedConfig, "-o", "junit")
	if err == nil {
		t.Fatal("no error for an unhealthy scan")
	}
	if !strings.HasPrefix(out, "<?xml") {
		t.Errorf("no XML header: %.60s", out)
	}
	var doc junitSuites
	if err := xml.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// The directory holds both examples (and the config, which is not a
	// Kubernetes object and is skipped): 4 workloads, 28 cases, 13 failures.
	if doc.Tests != 28 || doc.Failures != 13 || len(doc.Suites) != 4 {
		t.Fatalf("tests %d failures %d suites %d", doc.Tests, doc.Failures, len(doc.Suites))
	}
	for _, s := range doc.Suites {
		fails := 0
		for _, c := range s.Cases {
			if c.Name == "" || c.ClassName != s.Name || c.File == "" {
				t.Errorf("case %+v", c)
			}
			if c.Failure != nil {
				fails++
				if c.Failure.Type != c.Name || c.Failure.Message == "" || strings.TrimSpace(c.Failure.Text) == "" {
					t.Errorf("failure %+v", c.Failure)
				}
			}
		}
		if fails != s.Failures || len(s.Cases) != s.Tests {
			t.Errorf("suite %s: %d/%d failures, %d/%d tests", s.Name, fails, s.Failures, len(s.Cases), s.Tests)
		}
	}
}

func TestScanInputs(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"kube-system"},"spec":{"containers":[{"name":"c","image":"x"}]}}`
	write("sub/list.json", `{"apiVersion":"v1","kind":"List","items":[`+good+`,{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm"}}]}`)
	write("sub/ignored.txt", "not: [yaml")
	write("multi.yml", "# leading comment\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i}\n---\n"+good+"\n")
	// kube-system is excluded by default: nothing to report, exit 0.
	out, stderr, err := runSplit(t, "scan", "-f", dir)
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, out, stderr)
	}
	if !strings.Contains(stderr, "multi.yml: document 1: skipped: networking.k8s.io/v1 Ingress") || !strings.Contains(stderr, "2 files, 2 objects checked, 0 results") {
		t.Errorf("stderr %q", stderr)
	}

	bad := write("bad/deploy.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\n\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: b}\nspec: {replicas: many}\n")
	_, _, err = runSplit(t, "scan", "-f", bad)
	if err == nil || !strings.Contains(err.Error(), bad+": document 2 (line 7)") {
		t.Errorf("err = %v, want it to name the file and document 2", err)
	}
	for _, args := range [][]string{
		{"scan", "-f", filepath.Join(dir, "missing.yaml")},
		{"scan", "-f", dir, "-o", "xml"},
		{"scan"},
		{"scan", "-f", dir, "--config", write("bad-config.yaml", "recommendations: {nope: {}}")},
	} {
		if _, _, err := runSplit(t, args...); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

func TestScanSplitDocuments(t *testing.T) {
	docs := splitDocuments([]byte("---\n# c\n\na: 1\n--- # x\n---\nb: 2\n...\n"))
	if len(docs) != 2 || docs[0].index != 1 || docs[0].line != 4 || docs[1].index != 2 || docs[1].line != 7 {
		t.Errorf("%+v", docs)
	}
}
