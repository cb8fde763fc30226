//go:build !node

package cli

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestScanFindingsReachServerAndConsole: `vigil scan --server` sends the
// verdicts as the cluster's findings; the API's recommendations and the
// console's Recommendations page show them, with the unhealthy workload.
func TestScanFindingsReachServerAndConsole(t *testing.T) {
	dir := t.TempDir()
	srv := testServer(t, dir)
	cred := clusterCredentialFile(t, srv, "prod", dir)

	manifests := filepath.Join("..", "posture", "testdata")
	out, err := run(t, "scan", "-f", filepath.Join(manifests, "unhealthy.yaml"), "-f", filepath.Join(manifests, "healthy.yaml"),
		"--server", srv.url, "--token-file", cred, "--spool", filepath.Join(dir, "spool"), "-o", "json")
	if err == nil || !strings.Contains(err.Error(), "unhealthy") {
		t.Fatalf("scan of an unhealthy manifest: %v\n%s", err, out)
	}

	b, _ := os.ReadFile(srv.token)
	admin := strings.TrimSpace(string(b))
	req, _ := http.NewRequest("GET", srv.url+"/api/v1/recommendations", nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Recommendations []struct {
			ID        string   `json:"id"`
			Title     string   `json:"title"`
			Modes     []string `json:"modes"`
			Healthy   int      `json:"healthy"`
			Unhealthy int      `json:"unhealthy"`
			Resources []string `json:"unhealthy_resources"`
		} `json:"recommendations"`
	}
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	found := false
	for _, r := range got.Recommendations {
		if r.ID == "no-privileged" {
			found = true
			if r.Healthy != 1 || r.Unhealthy != 1 || len(r.Resources) != 1 || r.Resources[0] != "Deployment/default/nginx-unhealthy-deployment" ||
				r.Title == "" || len(r.Modes) != 1 || r.Modes[0] != "audit" {
				t.Errorf("no-privileged: %+v", r)
			}
		}
	}
	if !found {
		t.Fatalf("no no-privileged recommendation: %+v", got)
	}
	consoleShows(t, srv.url, admin, "/recommendations", "Deployment/default/nginx-unhealthy-deployment")
}
