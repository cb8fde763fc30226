package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/ship"
)

// serverProc is `vigil server` running in a child process.
type serverProc struct {
	cmd  *exec.Cmd
	url  string
	data string
}

func startServerProc(t *testing.T, db, data, addr string) *serverProc {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "VIGIL_CLI_TEST_ARGS=server --db "+db+" --data "+data+" --addr "+addr+" --log-level warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serverProc{cmd: cmd, url: "http://" + addr, data: data}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for range 200 {
		if resp, err := http.Get(p.url + "/healthz"); err == nil {
			resp.Body.Close()
			return p
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("vigil server did not come up")
	return nil
}

func (p *serverProc) kill9(t *testing.T) {
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
}

func (p *serverProc) call(t *testing.T, method, path, token string, body string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, p.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %q", method, path, data)
		}
	}
	return resp.StatusCode
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Kill -9 the server in the middle of a stream of alerts from a sensor's
// client and start it again: every alert arrives, exactly once.
func TestServerKill9LosesNothing(t *testing.T) {
	dir := t.TempDir()
	db := "sqlite://" + filepath.Join(dir, "vigil.db")
	addr := freeAddr(t)
	srv := startServerProc(t, db, dir, addr)
	admin, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	adminToken := strings.TrimSpace(string(admin))
	var created struct {
		Credential string `json:"credential"`
	}
	if code := srv.call(t, "POST", "/api/v1/clusters", adminToken, `{"name":"prod-1"}`, &created); code != 201 {
		t.Fatalf("create cluster: %d", code)
	}

	client, err := ship.Open(ship.Config{Server: srv.url, Token: created.Credential, SpoolDir: filepath.Join(dir, "spool"),
		BatchSize: 50, FlushInterval: 20 * time.Millisecond, Node: "node-1", Component: "sensor"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- client.Run(ctx) }()
	defer func() { cancel(); <-done; client.Close() }()

	const total = 3000
	start := time.Now().UTC()
	for i := range total {
		a := &event.Alert{ID: fmt.Sprintf("01KILL%05d", i), Rule: "runtime.test", Title: "t", Severity: event.High,
			Status: event.StatusActive, FirstSeen: start, LastSeen: start, Count: 1, Node: "node-1"}
		client.Alert(a)
		if i == total/3 {
			// Mid-stream: the server dies without a chance to flush anything.
			for client.Stats().SentAlerts == 0 {
				time.Sleep(5 * time.Millisecond)
			}
			srv.kill9(t)
		}
		if i%100 == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	time.Sleep(300 * time.Millisecond) // the client retries against a dead server, spooling
	srv = startServerProc(t, db, dir, addr)

	deadline := time.Now().Add(60 * time.Second)
	for {
		st := client.Stats()
		if st.SpoolBatches == 0 && st.QueuedAlerts == 0 && st.SentAlerts >= total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not delivered after restart: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := client.Stats(); st.DroppedAlerts != 0 || st.Retries == 0 {
		t.Fatalf("client stats: %+v (want retries, no drops)", st)
	}
	// Every alert is stored exactly once: count 1 each, and all of them.
	seen := map[string]bool{}
	cursor := ""
	for {
		var page struct {
			Alerts []struct {
				ID    string `json:"id"`
				Count int    `json:"count"`
			} `json:"alerts"`
			NextCursor string `json:"next_cursor"`
		}
		path := "/api/v1/alerts?limit=1000"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		if code := srv.call(t, "GET", path, adminToken, "", &page); code != 200 {
			t.Fatalf("list: %d", code)
		}
		for _, a := range page.Alerts {
			if seen[a.ID] || a.Count != 1 {
				t.Fatalf("alert %s stored twice or counted %d times", a.ID, a.Count)
			}
			seen[a.ID] = true
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	if len(seen) != total {
		t.Fatalf("%d of %d alerts stored after kill -9 and restart", len(seen), total)
	}
}
