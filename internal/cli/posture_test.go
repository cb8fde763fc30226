package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/posture"
	"github.com/vigil-sec/vigil/internal/server/api"
	"github.com/vigil-sec/vigil/internal/server/store"
)

// runIO runs the CLI with stdin and returns stdout and stderr apart.
func runIO(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := Root()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err = root.Execute()
	return out.String(), errb.String(), err
}

// `vigil posture config get|set|reset` against a server: get prints a
// document that set takes back, --cluster overrides the fleet default,
// reset falls back to it.
func TestPostureConfigCommands(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(dir, "v.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	admin, _ := st.CreateToken(ctx, "alice", store.RoleAdmin)
	reader, _ := st.CreateToken(ctx, "bob", store.RoleReader)
	if _, _, err := st.CreateCluster(ctx, "prod-1"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Config{Store: st}).Handler())
	defer srv.Close()
	t.Setenv("VIGIL_SERVER", "")
	t.Setenv("VIGIL_TOKEN", "")
	pc := func(stdin string, args ...string) (string, string, error) {
		t.Helper()
		return runIO(t, stdin, append(append([]string{"posture", "config"}, args...), "--server", srv.URL, "--token", admin)...)
	}

	// Nothing stored: the built-in defaults, as a document set accepts.
	out, errOut, err := pc("", "get")
	if err != nil || !strings.Contains(errOut, "built-in defaults") {
		t.Fatalf("get: %v\n%s", err, errOut)
	}
	if _, err := posture.ParseConfig([]byte(out)); err != nil || !strings.Contains(out, "no-privileged:") {
		t.Fatalf("the printed defaults do not parse: %v\n%s", err, out)
	}
	defaults := filepath.Join(dir, "defaults.yaml")
	os.WriteFile(defaults, []byte(out), 0o600)
	if out, _, err := pc("", "set", "-f", defaults); err != nil || !strings.Contains(out, "the fleet default: set") || !strings.Contains(out, "by alice") {
		t.Fatalf("set the printed defaults: %v\n%s", err, out)
	}

	// The fleet default from stdin, prod-1's own from a JSON file.
	fleet := "# fleet\nrecommendations:\n  no-privileged: {mode: deny}\n"
	if out, _, err := pc(fleet, "set", "-f", "-"); err != nil || !strings.Contains(out, "the fleet default") {
		t.Fatalf("set from stdin: %v\n%s", err, out)
	}
	own := filepath.Join(dir, "prod-1.json")
	ownDoc := `{"recommendations": {"no-privileged": {"mode": "disabled"}}}` + "\n"
	os.WriteFile(own, []byte(ownDoc), 0o600)
	if out, _, err := pc("", "set", "--cluster", "prod-1", "-f", own); err != nil || !strings.Contains(out, "cluster prod-1: set") {
		t.Fatalf("set prod-1: %v\n%s", err, out)
	}
	if out, _, err := pc("", "get", "--cluster", "prod-1"); err != nil || out != ownDoc {
		t.Fatalf("get prod-1: %v\n%q, want %q", err, out, ownDoc)
	}
	if out, _, err := pc("", "get"); err != nil || out != fleet {
		t.Fatalf("get the fleet default: %v\n%q", err, out)
	}

	// A bad document: the server's message names the field; nothing changes.
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("recommendations:\n  no-privileged: {mode: block}\n"), 0o600)
	if _, _, err := pc("", "set", "--cluster", "prod-1", "-f", bad); err == nil || !strings.Contains(err.Error(), "recommendations.no-privileged.mode") {
		t.Fatalf("set a bad document: %v", err)
	}
	if _, _, err := pc("", "set", "--cluster", "nope", "-f", own); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("set an unknown cluster: %v", err)
	}
	if _, _, err := pc("", "set"); err == nil || !strings.Contains(err.Error(), "-f FILE") {
		t.Fatalf("set without -f: %v", err)
	}
	if _, _, err := runIO(t, "", "posture", "config", "set", "-f", own, "--server", srv.URL, "--token", reader); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("a reader sets: %v", err)
	}

	// Reset prod-1: the fleet default applies to it again.
	if out, _, err := pc("", "reset", "--cluster", "prod-1"); err != nil || !strings.Contains(out, "now cluster prod-1: the fleet default") {
		t.Fatalf("reset prod-1: %v\n%s", err, out)
	}
	out, _, err = pc("", "get", "--cluster", "prod-1", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var a struct {
		Cluster, Source string
		Document        string
		Config          map[string]any
	}
	if err := json.Unmarshal([]byte(out), &a); err != nil || a.Cluster != "prod-1" || a.Source != "fleet" || a.Document != fleet || a.Config == nil {
		t.Fatalf("get -o json after reset: %v\n%s", err, out)
	}
}
