package cli

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
)

// runSplit executes the CLI in-process and returns stdout and stderr apart.
func runSplit(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	root := Root()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), errOut.String(), err
}

// auditLog is an API server audit log (--audit-log-path): a cluster-admin
// binding by alice, a benign list, and a line that is not an event.
const auditLog = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"9d1e-01","stage":"ResponseComplete","requestURI":"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings","verb":"create","user":{"username":"alice","groups":["system:authenticated"]},"sourceIPs":["10.0.0.8"],"userAgent":"kubectl/v1.36.3 (linux/amd64)","objectRef":{"resource":"clusterrolebindings","name":"backdoor","apiGroup":"rbac.authorization.k8s.io","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"ClusterRoleBinding","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"backdoor"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},"subjects":[{"kind":"ServiceAccount","name":"helper","namespace":"default"}]},"requestReceivedTimestamp":"2026-03-01T10:00:00.123456Z","stageTimestamp":"2026-03-01T10:00:00.130001Z"}
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"9d1e-02","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/shop/pods?limit=500","verb":"list","user":{"username":"bob"},"objectRef":{"resource":"pods","namespace":"shop","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-03-01T10:00:01.000000Z","stageTimestamp":"2026-03-01T10:00:01.010000Z"}
{"kind":"Event","auditID":
`

func writeAuditLog(t *testing.T) (plain, gz string) {
	t.Helper()
	dir := t.TempDir()
	plain = filepath.Join(dir, "audit.log")
	if err := os.WriteFile(plain, []byte(auditLog), 0o600); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte(auditLog))
	zw.Close()
	gz = filepath.Join(dir, "audit-2026-03-01T10-00-00.000.log.gz")
	if err := os.WriteFile(gz, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return plain, gz
}

func TestAuditReplayJSON(t *testing.T) {
	plain, gz := writeAuditLog(t)
	for _, path := range []string{plain, gz} {
		out, stderr, err := runSplit(t, "audit", "replay", "-o", "json", "--cluster", "prod-1", path)
		if err != nil {
			t.Fatalf("%s: %v\n%s", path, err, stderr)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 1 {
			t.Fatalf("%s: %d lines of output, want 1:\n%s", path, len(lines), out)
		}
		var a event.Alert
		dec := json.NewDecoder(strings.NewReader(lines[0]))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&a); err != nil {
			t.Fatalf("%s: %v: %s", path, err, lines[0])
		}
		if a.Rule != "audit.cluster-admin-binding" || a.User == nil || a.User.Name != "alice" || a.Source != "audit" ||
			a.Cluster != "prod-1" || a.Count != 1 || a.ID == "" || a.Severity != event.High {
			t.Errorf("%s: alert %+v", path, a)
		}
		if !a.FirstSeen.Equal(a.LastSeen) || a.FirstSeen.Format("2006-01-02T15:04:05.000000Z07:00") != "2026-03-01T10:00:00.130001Z" {
			t.Errorf("%s: seen %v .. %v, want the stage time", path, a.FirstSeen, a.LastSeen)
		}
		if !strings.Contains(stderr, "2 events, 1 alerts") || !strings.Contains(stderr, "1 malformed") || !strings.Contains(stderr, "0 missing fields") {
			t.Errorf("%s: summary %q", path, stderr)
		}
	}
}

func TestAuditReplayTable(t *testing.T) {
	plain, _ := writeAuditLog(t)
	out, stderr, err := runSplit(t, "audit", "replay", plain)
	if err != nil {
		t.Fatal(err, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "FIRST SEEN") {
		t.Fatalf("table:\n%s", out)
	}
	for _, want := range []string{"2026-03-01T10:00:00Z", "high", "audit.cluster-admin-binding", "alice", "clusterrolebindings/backdoor", " 1"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("row lacks %q: %s", want, lines[1])
		}
	}
	if !strings.Contains(stderr, "1 malformed") {
		t.Errorf("summary %q", stderr)
	}
}

func TestAuditReplayManyFiles(t *testing.T) {
	plain, gz := writeAuditLog(t)
	// The same binding in two files: one alert, counted twice.
	out, stderr, err := runSplit(t, "audit", "replay", "-o", "json", plain, gz)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var a event.Alert
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &a) != nil || a.Count != 2 {
		t.Fatalf("two files:\n%s", out)
	}
	if !strings.Contains(stderr, "4 events, 1 alerts; skipped: 2 malformed") {
		t.Errorf("summary %q", stderr)
	}
	// Disabled, the rule raises nothing.
	out, stderr, err = runSplit(t, "audit", "replay", "-o", "json", "--disable-rule", "audit.*", plain)
	if err != nil || out != "" || !strings.Contains(stderr, "0 alerts") {
		t.Fatalf("disabled: err %v, out %q, stderr %q", err, out, stderr)
	}
}

func TestAuditReplayErrors(t *testing.T) {
	plain, _ := writeAuditLog(t)
	dir := t.TempDir()
	notGzip := filepath.Join(dir, "x.gz")
	os.WriteFile(notGzip, []byte(auditLog), 0o600)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing file", []string{"audit", "replay", filepath.Join(dir, "nope.log")}, "nope.log"},
		{"missing among good", []string{"audit", "replay", plain, filepath.Join(dir, "nope.log")}, "nope.log"},
		{"not gzip", []string{"audit", "replay", notGzip}, "x.gz"},
		{"no file", []string{"audit", "replay"}, "arg"},
		{"bad output", []string{"audit", "replay", "-o", "yaml", plain}, "yaml"},
	} {
		out, _, err := runSplit(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one naming %q", tc.name, err, tc.want)
		}
		if strings.Contains(out, "audit.cluster-admin-binding") {
			t.Errorf("%s: alerts printed despite the error: %s", tc.name, out)
		}
	}
	// An empty file is no error.
	empty := filepath.Join(dir, "empty.log")
	os.WriteFile(empty, nil, 0o600)
	if out, stderr, err := runSplit(t, "audit", "replay", "-o", "json", empty); err != nil || out != "" || !strings.Contains(stderr, "0 events") {
		t.Fatalf("empty: %v %q %q", err, out, stderr)
	}
}
