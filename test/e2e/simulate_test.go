//go:build e2e_simulate

// This test reuses TestVigilOnNode's helpers (startServer, runLogged,
// waitReady), which are still being written: it is behind a build tag so
// that it can never break that package while they change. Run it as root,
// after `make deps kube`:
//
//	cd test/e2e && go test -tags e2e_simulate -v -count=1 -run TestSimulateOnNode . -timeout 30m
//
// Once TestVigilOnNode settles, `vigil simulate all` belongs in it as a step
// between alert-attribution and uninstall (one node bring-up instead of
// two), and this file goes.

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-sec/vigil/deploy"
	"github.com/vigil-sec/vigil/internal/kubetest"
	"github.com/vigil-sec/vigil/test/e2e/node"
)

// TestSimulateOnNode installs Vigil on a real single-node cluster and runs
// `vigil simulate all` against it: every runtime scenario in a victim pod
// (victim image from hack/images -busybox, attacker sidecar from the vigil
// image) and control-plane through the audit webhook must pass, the
// namespace vigil-simulation must go, and no pod packet may leave the
// machine (the fake metadata service is on the victim pod's loopback).
func TestSimulateOnNode(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	bin := filepath.Join(work, "vigil")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/vigil")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/vigil: %v\n%s", err, out)
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatalf("busybox-static is not installed (the victim image is built from it): %v", err)
	}
	imageDir := filepath.Join(work, "images")
	images := exec.Command("go", "run", "./hack/images", "-out", imageDir, "-arch", "amd64",
		"-bin", "amd64="+bin, "-version", imageTag, "-busybox", busybox)
	images.Dir = root
	images.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=0")
	if out, err := images.CombinedOutput(); err != nil {
		t.Fatalf("go run ./hack/images: %v\n%s", err, out)
	}

	var srv *server
	n := node.Start(t, node.Options{
		AuditPolicy: deploy.AuditPolicy,
		ImageFiles:  []string{filepath.Join(imageDir, "vigil-amd64.tar"), filepath.Join(imageDir, "victim-amd64.tar")},
		BeforeAPIServer: func(n *node.Node) (*kubetest.AuditWebhook, error) {
			var err error
			if srv, err = startServer(t, bin, filepath.Join(work, "server"), n.LogDir()); err != nil {
				return nil, err
			}
			return &kubetest.AuditWebhook{URL: srv.url + "/api/v1/audit", CAData: srv.ca, Token: srv.credential}, nil
		},
	})
	kubeconfig := n.Cluster.Kubeconfig("vigil-e2e-admin", "system:masters")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	vigil := func(logName string, args ...string) (string, error) {
		return runLogged(ctx, filepath.Join(n.LogDir(), logName), bin, srv.caFile, args...)
	}
	cred := filepath.Join(work, "credential")
	if err := os.WriteFile(cred, []byte(srv.credential), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := vigil("vigil-install.log", "install", "--kubeconfig", kubeconfig, "--server", srv.url, "--cluster", clusterName,
		"--credential-file", cred, "--set-file", "serverCA="+srv.caFile, "--set", "image.tag="+imageTag, "--set", "image.pullPolicy=Never"); err != nil {
		t.Fatal(err)
	}
	if err := waitReady(ctx, n.Client); err != nil {
		t.Fatal(err)
	}

	out, err := vigil("vigil-simulate.log", "simulate", "all", "--kubeconfig", kubeconfig, "--server", srv.url, "--token", srv.token,
		"--victim-image", "vigil.dev/victim:"+imageTag, "--relay-image", "vigil.dev/vigil:"+imageTag, "-o", "json", "-v")
	var results []struct {
		Scenario, Result, Reason string
		LatencyMS                *float64 `json:"latency_ms"`
	}
	if i := strings.Index(out, "["); i >= 0 {
		if jerr := json.Unmarshal([]byte(out[i:]), &results); jerr != nil {
			t.Fatalf("vigil simulate -o json: %v\n%s", jerr, out)
		}
	}
	for _, r := range results {
		latency := "-"
		if r.LatencyMS != nil {
			latency = fmt.Sprintf("%.0fms", *r.LatencyMS)
		}
		t.Logf("simulate: %-18s %-6s %s %s", r.Scenario, r.Result, latency, r.Reason)
	}
	if err != nil || len(results) != 8 {
		t.Fatalf("vigil simulate all: %d results, %v\n%s", len(results), err, out)
	}

	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := n.Client.CoreV1().Namespaces().Get(ctx, "vigil-simulation", metav1.GetOptions{}); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("namespace vigil-simulation still there 2 minutes after the simulation")
		}
		time.Sleep(time.Second)
	}
	pod, iface, err := n.EgressPackets()
	if err != nil {
		t.Fatal(err)
	}
	if pod != 0 {
		t.Errorf("%d pod-sourced packets left the machine on %s (which sent %d)", pod, n.EgressIface, iface)
	}
}
