//go:build !node

package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The node build (-tags node) is what the sensor DaemonSet runs. Its
// footprint on every node is the point of it: it must not link the server,
// console, installer, databases or the Kubernetes typed clients (whose
// package initialisation alone costs tens of MiB of RSS), and it must
// still be a working `vigil sensor`.
func TestNodeBuild(t *testing.T) {
	out, err := exec.Command("go", "list", "-tags", "node", "-deps", "github.com/vigil-sec/vigil/cmd/vigil").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	banned := []string{
		"helm.sh/", "modernc.org/sqlite", "github.com/jackc/pgx", "k8s.io/client-go/kubernetes",
		"k8s.io/api/", "github.com/vigil-sec/vigil/internal/server", "github.com/vigil-sec/vigil/internal/console",
		"github.com/vigil-sec/vigil/internal/install", "github.com/vigil-sec/vigil/internal/posture",
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, b := range banned {
			if strings.HasPrefix(pkg, b) {
				t.Errorf("the node build links %s", pkg)
			}
		}
	}

	bin := filepath.Join(t.TempDir(), "vigil-node")
	if out, err := exec.Command("go", "build", "-tags", "node", "-o", bin, "github.com/vigil-sec/vigil/cmd/vigil").CombinedOutput(); err != nil {
		t.Fatalf("go build -tags node: %v\n%s", err, out)
	}
	help, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("vigil-node --help: %v\n%s", err, help)
	}
	for _, want := range []string{"sensor", "rules"} {
		if !strings.Contains(string(help), "\n  "+want+" ") {
			t.Errorf("the node build has no %q command:\n%s", want, help)
		}
	}
	for _, not := range []string{"server", "up", "install", "agent"} {
		if strings.Contains(string(help), "\n  "+not+" ") {
			t.Errorf("the node build has the %q command:\n%s", not, help)
		}
	}
	if os.Geteuid() != 0 {
		t.Fatal("the node build's sensor loads eBPF programs: run this test as root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sensor := exec.CommandContext(ctx, bin, "sensor", "--output", "jsonl")
	stdout, err := sensor.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	sensor.Stderr = &stderr
	if err := sensor.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sensor.Process.Kill(); _ = sensor.Wait() }()
	marker := "vigil-node-build-" + filepath.Base(t.TempDir())
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	started := false
	for sc.Scan() {
		var e struct {
			Kind    string `json:"kind"`
			Process *struct {
				Args []string `json:"args"`
			} `json:"process"`
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		if e.Kind == "sensor.health" && !started {
			started = true
			if err := exec.Command("/bin/true", marker).Run(); err != nil {
				t.Fatal(err)
			}
		}
		if e.Kind == "process.exec" && e.Process != nil && len(e.Process.Args) == 2 && e.Process.Args[1] == marker {
			return
		}
	}
	t.Fatalf("the node build's sensor never reported `/bin/true %s` (started: %v); stderr:\n%s", marker, started, stderr.String())
}
