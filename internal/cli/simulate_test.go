//go:build !node

package cli

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/simulate"
)

// updateGolden reports whether golden files are to be rewritten: -update
// (defined by whichever test file of the package owns it, so that this
// one cannot redefine it) or VIGIL_UPDATE_GOLDEN=1.
func updateGolden() bool {
	if f := flag.Lookup("update"); f != nil && f.Value.String() == "true" {
		return true
	}
	return os.Getenv("VIGIL_UPDATE_GOLDEN") == "1"
}

// `vigil simulate --local all` against `vigil up` on this machine: every
// runtime scenario raises its alerts, attributed to its own container,
// and they reach the server; the cluster-only scenario is skipped; nothing
// the simulation created is left. Runs as root in CI and fails loudly
// where runc or busybox are missing.
func TestSimulateLocalAll(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("vigil simulate --local runs runc containers watched by the eBPF sensor: run this test as root")
	}
	for _, tool := range []string{"runc", "busybox"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: apt-get install runc busybox-static", tool)
		}
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	up := exec.Command(self)
	up.Env = append(os.Environ(), "VIGIL_CLI_TEST_ARGS=up --data "+dir+" --addr "+addr+" --log-level warn")
	up.Stderr = os.Stderr
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = up.Process.Kill(); _ = up.Wait() })
	server := "http://" + addr
	admin := ""
	deadline := time.Now().Add(60 * time.Second)
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "admin.token")); err == nil {
			admin = strings.TrimSpace(string(b))
			out, err := run(t, "cluster", "list", "--server", server, "--token", admin)
			if err == nil && strings.Contains(out, "sensor@") && strings.Contains(out, "=installed") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("vigil up did not report a running sensor within a minute")
		}
		time.Sleep(200 * time.Millisecond)
	}

	out, err := run(t, "simulate", "--local", "all", "--server", server, "--token", admin, "-o", "json", "--timeout", "30s")
	t.Logf("vigil simulate --local all -o json:\n%s", out)
	if err != nil {
		t.Errorf("simulate: %v", err)
	}
	var results []simulationResult
	if err := json.Unmarshal([]byte(out[strings.Index(out, "["):]), &results); err != nil {
		t.Fatalf("simulate -o json: %v", err)
	}
	got := map[string]simulationResult{}
	for _, r := range results {
		got[r.Scenario] = r
	}
	for _, sc := range simulate.All() {
		r, ok := got[sc.ID]
		switch {
		case !ok:
			t.Errorf("%s: no result", sc.ID)
		case sc.NeedsCluster:
			if r.Result != simulate.Skipped {
				t.Errorf("%s: %s, want skipped locally", sc.ID, r.Result)
			}
		case r.Result != simulate.Pass:
			t.Errorf("%s: %s: %s", sc.ID, r.Result, r.Reason)
		case !strings.HasPrefix(r.ContainerID, simulate.Prefix+sc.ID+"-") || r.LatencyMS == nil:
			t.Errorf("%s: container %q, latency %v", sc.ID, r.ContainerID, r.LatencyMS)
		case r.Namespace != simulate.Namespace || r.Pod != simulate.Prefix+sc.ID:
			// After the warm-up the sensor knows the victim's pod from
			// the runtime's state, as it would a real pod's.
			t.Errorf("%s: alerts attributed to pod %q/%q, want %s/%s", sc.ID, r.Namespace, r.Pod, simulate.Namespace, simulate.Prefix+sc.ID)
		default:
			t.Logf("%s: pass in %.0f ms (container %s, pod %s/%s)", sc.ID, *r.LatencyMS, r.ContainerID, r.Namespace, r.Pod)
		}
	}

	// Everything vigil-sim-* is gone: containers, overlays, bundles.
	if out, _ := exec.Command("runc", "list", "-q").Output(); strings.Contains(string(out), simulate.Prefix) {
		t.Errorf("containers left behind: %s", out)
	}
	if m, _ := os.ReadFile("/proc/self/mountinfo"); bytes.Contains(m, []byte(simulate.Prefix)) {
		t.Error("overlay mounts left behind")
	}
	for _, r := range results {
		if dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), r.ContainerID+"-*")); r.ContainerID != "" && len(dirs) > 0 {
			t.Errorf("bundle left behind: %v", dirs)
		}
	}
}

// The table users read, golden-tested: go test ./internal/cli -run
// TestSimulationTable -update (or VIGIL_UPDATE_GOLDEN=1) rewrites it.
func TestSimulationTable(t *testing.T) {
	results := []simulate.Result{
		{Scenario: "webshell", Status: simulate.Pass, Latency: 812 * time.Millisecond, ContainerID: "vigil-sim-webshell-0a1b2c3d",
			Rules: []simulate.RuleResult{{Rule: "runtime.web-shell", Seen: true, Latency: 812 * time.Millisecond}}},
		{Scenario: "crypto", Status: simulate.Fail, Reason: "no alert within 1m0s for runtime.ld-preload", ContainerID: "vigil-sim-crypto-0a1b2c3d",
			Rules: []simulate.RuleResult{{Rule: "runtime.cpu-optimization", Seen: true, Latency: 1200 * time.Millisecond}, {Rule: "runtime.ld-preload"}}},
		{Scenario: "control-plane", Status: simulate.Skipped, Reason: "needs a cluster",
			Rules: []simulate.RuleResult{{Rule: "audit.cluster-admin-binding"}}},
	}
	var b bytes.Buffer
	printSimulation(&b, results)
	golden := filepath.Join("testdata", "simulate.golden")
	if updateGolden() {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if b.String() != string(want) {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

// Without --local the simulation needs a cluster: no usable kubeconfig is
// an error naming --local; --local refuses cluster flags.
func TestSimulateFlags(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-kubeconfig")
	t.Setenv("KUBECONFIG", missing)
	if _, err := run(t, "simulate", "webshell", "--token", "x", "--kubeconfig", missing); err == nil || !strings.Contains(err.Error(), "--local") {
		t.Fatalf("without --local and a kubeconfig: %v", err)
	}
	if _, err := run(t, "simulate", "--local", "webshell", "--token", "x", "--context", "prod"); err == nil || !strings.Contains(err.Error(), "--context") {
		t.Fatalf("--local --context: %v", err)
	}
	if _, err := run(t, "simulate", "--local", "lateral-movement", "--token", "x", "--real-metadata"); err == nil || !strings.Contains(err.Error(), "never --local") {
		t.Fatalf("--local --real-metadata: %v", err)
	}
	if _, err := run(t, "simulate", "--local", "bogus", "--token", "x"); err == nil || !strings.Contains(err.Error(), "unknown scenario") {
		t.Fatalf("unknown scenario: %v", err)
	}
}
