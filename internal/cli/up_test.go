package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// `vigil up` as root: the sensor on this machine raises an alert for a
// real exec, ships it to the server, and the CLI lists it and dismisses it
// with an admin token, while a reader token is refused.
func TestUpSensorToServerToCLI(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("vigil up runs the eBPF sensor: run this test as root")
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
	// Ready when the sensor reported in: the local cluster shows it installed.
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

	miner := filepath.Join(t.TempDir(), "xmrig")
	data, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(miner, data, 0o755); err != nil {
		t.Fatal(err)
	}
	ran := time.Now()
	if err := exec.Command(miner, "--donate-level", "1", "-o", "stratum+tcp://pool.supportxmr.com:3333").Run(); err != nil {
		t.Fatal(err)
	}

	var id string
	deadline = time.Now().Add(30 * time.Second)
	for id == "" {
		out, err := run(t, "alerts", "list", "--server", server, "--token", admin, "--rule", "runtime.crypto-miner-stratum", "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		var page struct {
			Alerts []struct {
				ID      string `json:"id"`
				Cluster string `json:"cluster"`
				Process struct {
					Exe string `json:"exe"`
				} `json:"process"`
			} `json:"alerts"`
		}
		if err := json.Unmarshal([]byte(out), &page); err != nil {
			t.Fatal(err)
		}
		for _, a := range page.Alerts {
			if a.Process.Exe == miner && a.Cluster == "local" {
				id = a.ID
			}
		}
		if id == "" && time.Now().After(deadline) {
			t.Fatalf("no stratum alert for %s reached the server: %s", miner, out)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The console shows it: the list (what the open page polls) and the
	// alert's page with the process.
	consoleSeen := consoleShows(t, server, admin, "/alerts?rule=runtime.crypto-miner-stratum", `data-alert="`+id+`"`)
	t.Logf("miner ran -> alert in the console list: %v", consoleSeen.Sub(ran).Round(time.Millisecond))
	consoleShows(t, server, admin, "/alerts/"+id, miner)

	req, _ := http.NewRequest("POST", server+"/api/v1/tokens", strings.NewReader(`{"name":"viewer","role":"reader"}`))
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		Token string `json:"token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if _, err := run(t, "alerts", "dismiss", id, "--reason", "test", "--server", server, "--token", tok.Token); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("a reader dismissed an alert: %v", err)
	}
	if out, err := run(t, "alerts", "dismiss", id, "--reason", "test binary", "--server", server, "--token", admin); err != nil || !strings.Contains(out, "dismissed") {
		t.Fatalf("admin dismiss: %v %s", err, out)
	}
	out, err := run(t, "alerts", "get", id, "--server", server, "--token", tok.Token, "-o", "json")
	if err != nil || !strings.Contains(out, `"status": "dismissed"`) || !strings.Contains(out, "test binary") {
		t.Fatalf("after dismiss: %v %s", err, out)
	}

	// The audit webhook receiver: the local cluster's credential posts an
	// EventList as kube-apiserver does, and the control-plane alert is
	// there when the answer comes.
	cred, err := os.ReadFile(filepath.Join(dir, "cluster.credential"))
	if err != nil {
		t.Fatal(err)
	}
	body := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"kind":"Event","level":"RequestResponse","auditID":"u1",
		"stage":"ResponseComplete","verb":"create","requestURI":"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
		"user":{"username":"alice"},"objectRef":{"resource":"clusterrolebindings","name":"backdoor","apiGroup":"rbac.authorization.k8s.io"},
		"responseStatus":{"code":201},"requestObject":{"kind":"ClusterRoleBinding","roleRef":{"kind":"ClusterRole","name":"cluster-admin"},
		"subjects":[{"kind":"User","name":"alice"}]}}]}`
	req, _ = http.NewRequest("POST", server+"/api/v1/audit", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(cred)))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	ack, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(ack), `"alerts":1`) {
		t.Fatalf("audit webhook: %s %s", resp.Status, ack)
	}
	out, err = run(t, "alerts", "list", "--server", server, "--token", admin, "--rule", "audit.cluster-admin-binding", "-o", "json")
	if err != nil || !strings.Contains(out, `"name": "alice"`) || !strings.Contains(out, `"cluster": "local"`) {
		t.Fatalf("control-plane alert: %v %s", err, out)
	}
}

// consoleShows signs in to the console with token and reads path until
// the page contains want (for at most 30 s); it returns when it did.
func consoleShows(t *testing.T, server, token, path, want string) time.Time {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := c.PostForm(server+"/login", url.Values{"token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/alerts" {
		t.Fatalf("console sign-in: %s, ended at %s", resp.Status, resp.Request.URL)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := c.Get(server + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && strings.Contains(string(body), want) {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("console %s (%s) does not show %q:\n%s", path, resp.Status, want, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
