package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/ship"
)

// adminBinding is alice binding cluster-admin to a service account, as the
// API server's log backend writes it (see the rule's test file).
const adminBinding = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"9d1e-01","stage":"ResponseComplete",` +
	`"requestURI":"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings","verb":"create",` +
	`"user":{"username":"alice","groups":["system:authenticated"]},"sourceIPs":["10.0.0.8"],"userAgent":"kubectl/v1.36.3 (linux/amd64)",` +
	`"objectRef":{"resource":"clusterrolebindings","name":"backdoor","apiGroup":"rbac.authorization.k8s.io","apiVersion":"v1"},` +
	`"responseStatus":{"metadata":{},"code":201},` +
	`"requestObject":{"kind":"ClusterRoleBinding","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"backdoor"},` +
	`"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},` +
	`"subjects":[{"kind":"ServiceAccount","name":"helper","namespace":"default"}]},` +
	`"requestReceivedTimestamp":"2026-03-01T10:00:00.123456Z","stageTimestamp":"2026-03-01T10:00:00.234567Z"}` + "\n"

// benignList is an event no rule cares about.
const benignList = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"9d1e-00","stage":"ResponseComplete",` +
	`"requestURI":"/api/v1/namespaces/shop/pods","verb":"list","user":{"username":"bob"},` +
	`"objectRef":{"resource":"pods","namespace":"shop","apiVersion":"v1"},"responseStatus":{"code":200}}` + "\n"

// syncBuffer is a bytes.Buffer the command writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func appendTo(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// startAuditTail runs `vigil audit tail args...` until the returned stop
// is called; stop fails the test unless the command ends cleanly.
func startAuditTail(t *testing.T, stdout *syncBuffer, args ...string) (stop func()) {
	t.Helper()
	root := Root()
	root.SetArgs(append([]string{"audit", "tail", "--poll", "10ms", "--log-level", "warn"}, args...))
	root.SetOut(stdout)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	stopped := false
	stop = func() {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("vigil audit tail: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("vigil audit tail did not stop after cancel")
		}
	}
	t.Cleanup(stop)
	return stop
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// alertsIn decodes the JSON lines on stdout.
func alertsIn(t *testing.T, out string) []event.Alert {
	t.Helper()
	var alerts []event.Alert
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var a event.Alert
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatalf("stdout line %q: %v", line, err)
		}
		alerts = append(alerts, a)
	}
	return alerts
}

func TestAuditTailPrintsAlerts(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "audit.log")
	if err := os.WriteFile(log, []byte(benignList), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "tail.json")
	var stdout syncBuffer
	stop := startAuditTail(t, &stdout, "--audit-log-path", log, "--state", state, "--cluster", "prod", "-o", "json")
	// Written in two pieces, as a busy API server may leave it for a moment.
	appendTo(t, log, adminBinding[:100])
	time.Sleep(30 * time.Millisecond)
	appendTo(t, log, adminBinding[100:])
	eventually(t, "the cluster-admin alert on stdout", func() bool { return strings.Contains(stdout.String(), "audit.cluster-admin-binding") })
	stop()
	alerts := alertsIn(t, stdout.String())
	if len(alerts) != 1 {
		t.Fatalf("%d alerts, want 1:\n%s", len(alerts), stdout.String())
	}
	a := alerts[0]
	if a.Rule != "audit.cluster-admin-binding" || a.Cluster != "prod" || a.User == nil || a.User.Name != "alice" {
		t.Fatalf("alert %+v", a)
	}
	if _, err := os.Stat(state); err != nil {
		t.Fatalf("no state file after a clean stop: %v", err)
	}

	// A restart reads only what is new.
	var again syncBuffer
	stop = startAuditTail(t, &again, "--audit-log-path", log, "--state", state, "--cluster", "prod")
	appendTo(t, log, strings.Replace(adminBinding, `"9d1e-01"`, `"9d1e-02"`, 1))
	eventually(t, "the second alert", func() bool { return strings.Contains(again.String(), "audit.cluster-admin-binding") })
	stop()
	if n := len(alertsIn(t, again.String())); n != 1 {
		t.Fatalf("after restart %d alerts, want 1 (the new event only):\n%s", n, again.String())
	}
}

func TestAuditTailShipsAlerts(t *testing.T) {
	const token = "vigil_join_0123456789abcdef"
	var mu sync.Mutex
	var shipped []event.Alert
	var health []ship.Health
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, `{"error":"bad credentials"}`, http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case ship.IngestPath:
			b, err := ship.DecodeBatch(r.Body)
			if err != nil {
				http.Error(w, `{"error":"bad batch"}`, http.StatusBadRequest)
				return
			}
			mu.Lock()
			shipped = append(shipped, b.Alerts...)
			health = append(health, b.Health...)
			mu.Unlock()
			w.WriteHeader(http.StatusAccepted)
			w.Write([]byte(`{"accepted":true}`))
		case "/api/v1/exceptions":
			w.Write([]byte(`{"exceptions":[]}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	dir := t.TempDir()
	log := filepath.Join(dir, "audit.log")
	if err := os.WriteFile(log, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout syncBuffer
	stop := startAuditTail(t, &stdout, "--audit-log-path", log, "--state", filepath.Join(dir, "tail.json"),
		"--server", srv.URL, "--token-file", tokenFile, "--spool", filepath.Join(dir, "spool"), "--node", "cp-1", "-o", "none")
	appendTo(t, log, benignList+adminBinding)
	eventually(t, "the alert at the server", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(shipped) > 0
	})
	stop()
	mu.Lock()
	defer mu.Unlock()
	if len(shipped) != 1 || shipped[0].Rule != "audit.cluster-admin-binding" {
		t.Fatalf("shipped %+v", shipped)
	}
	if len(health) == 0 || health[0].Component != "audit" || health[0].Node != "cp-1" {
		t.Fatalf("health %+v: want the audit component of cp-1", health)
	}
	if stdout.String() != "" {
		t.Fatalf("-o none printed %q", stdout.String())
	}
}

func TestAuditTailFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--audit-log-path is required"},
		{[]string{"--audit-log-path", "x", "-o", "table"}, `-o "table"`},
		{[]string{"--audit-log-path", "x", "-o", "none"}, "without --server"},
	} {
		root := Root()
		root.SetArgs(append([]string{"audit", "tail"}, tc.args...))
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
}
