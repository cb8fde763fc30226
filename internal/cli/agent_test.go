//go:build !node

package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/server/store"
)

// TestAgentAuditWebhook: `vigil agent` takes the API server's audit
// batches (bearer token or client certificate), acknowledges them once the
// alerts are spooled, and the alerts reach the Vigil server as the
// cluster's.
func TestAgentAuditWebhook(t *testing.T) {
	dir := t.TempDir()
	ca, caKey, caCrt, _ := writeCA(t, dir, "ca")
	agentCrt, agentKey := writeServerCert(t, dir, ca, caKey)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := startServer(ctx, serverFlags{addr: "127.0.0.1:0", db: "sqlite://" + filepath.Join(dir, "v.db"), data: dir}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	_, credential, err := srv.store.CreateCluster(ctx, "prod")
	if err != nil {
		t.Fatal(err)
	}
	credFile, tokenFile := filepath.Join(dir, "cluster.credential"), filepath.Join(dir, "audit.token")
	os.WriteFile(credFile, []byte(credential), 0o600)
	const token = "apiserver-webhook-0123456789"
	os.WriteFile(tokenFile, []byte(token+"\n"), 0o600)

	ag, err := startAgent(ctx, agentFlags{addr: "127.0.0.1:0", tlsCert: agentCrt, tlsKey: agentKey, auditTokenFile: tokenFile,
		clientCA: caCrt, cluster: "prod", node: "cp-1",
		ship: shipFlags{server: srv.url, tokenFile: credFile, spool: filepath.Join(dir, "spool")}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); ag.wait(); srv.wait() }()

	roots := x509.NewCertPool()
	roots.AddCert(ca)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}, Timeout: 10 * time.Second}
	post := func(bearer, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", ag.url+"/api/v1/audit", strings.NewReader(body))
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	events := `{"kind":"EventList","items":[{"auditID":"ag1","stage":"ResponseComplete","verb":"create","user":{"username":"alice"},
		"objectRef":{"resource":"clusterrolebindings","name":"x"},"responseStatus":{"code":201},
		"requestObject":{"kind":"ClusterRoleBinding","roleRef":{"kind":"ClusterRole","name":"cluster-admin"}}}]}`
	if code, body := post("wrong-token-0123456789", events); code != http.StatusUnauthorized {
		t.Fatalf("a wrong token: %d %s", code, body)
	}
	if code, body := post("", events); code != http.StatusUnauthorized {
		t.Fatalf("no token: %d %s", code, body)
	}
	if code, body := post(token, `{"kind":"Pod"}`); code != http.StatusBadRequest {
		t.Fatalf("not audit: %d %s", code, body)
	}
	if code, body := post(token, events); code != http.StatusOK || !strings.Contains(body, `"alerts":1`) {
		t.Fatalf("audit batch: %d %s", code, body)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		page, err := srv.store.ListAlerts(ctx, store.AlertFilter{Cluster: "prod", Rule: "audit.cluster-admin-binding"})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Alerts) == 1 && page.Alerts[0].User != nil && page.Alerts[0].User.Name == "alice" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent's alert did not reach the server: %+v", page.Alerts)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
