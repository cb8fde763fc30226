package ship_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/vigil-sec/vigil/internal/posture"
	"github.com/vigil-sec/vigil/internal/ship"
)

const postureToken = "vgl_c_PostureS3cr3t-DoNotLog"

// postureServer stands in for GET /api/v1/posture/config: it answers doc
// (nil: the built-in defaults) with a tag that changes with it, 304 when
// If-None-Match holds the tag, and echoes the token in a refusal, as a
// careless proxy might.
type postureServer struct {
	mu     sync.Mutex
	doc    *string
	tag    string
	status int // when not 0, refuse with it
	gets   int
}

func (s *postureServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gets++
	if r.URL.Path != ship.PostureConfigPath || r.Method != "GET" {
		http.Error(w, `{"error":"no such endpoint"}`, 404)
		return
	}
	if s.status != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(s.status)
		w.Write([]byte(`{"error":"refused ` + r.Header.Get("Authorization") + `"}`))
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+postureToken {
		http.Error(w, `{"error":"invalid token"}`, 401)
		return
	}
	w.Header().Set("ETag", s.tag)
	if r.Header.Get("If-None-Match") == s.tag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if s.doc == nil {
		w.Write([]byte(`{"cluster":"prod-1","source":"builtin","config":{}}`))
		return
	}
	w.Write([]byte(`{"cluster":"prod-1","source":"cluster","config":{},"document":` + quote(*s.doc) + `}`))
}

func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

func (s *postureServer) set(doc *string, tag string) {
	s.mu.Lock()
	s.doc, s.tag = doc, tag
	s.mu.Unlock()
}

func TestFetchPostureConfig(t *testing.T) {
	ps := &postureServer{tag: `"t0"`}
	srv := httptest.NewServer(ps)
	defer srv.Close()
	c, err := ship.Open(ship.Config{Server: srv.URL + "/", Token: postureToken, SpoolDir: t.TempDir(), Heartbeat: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	// Built-in defaults: no document, which ParseConfig turns into them.
	doc, tag, err := c.FetchPostureConfig(ctx, "")
	if err != nil || len(doc) != 0 || tag != `"t0"` {
		t.Fatalf("builtin: %q %q %v", doc, tag, err)
	}
	cfg, err := posture.ParseConfig(doc)
	if err != nil || !cfg.Validated() || cfg.Recommendations["no-privileged"].Mode != posture.DefaultConfig().Recommendations["no-privileged"].Mode {
		t.Fatalf("parse the builtin answer: %v", err)
	}
	if _, got, err := c.FetchPostureConfig(ctx, tag); !errors.Is(err, ship.ErrNotModified) || got != tag {
		t.Fatalf("unchanged: %q %v, want ErrNotModified", got, err)
	}

	// An admin sets the cluster's document: the next poll gets it, as sent.
	own := "# prod\nrecommendations:\n  no-privileged:\n    mode: deny\n"
	ps.set(&own, `"t1"`)
	doc, tag, err = c.FetchPostureConfig(ctx, tag)
	if err != nil || string(doc) != own || tag != `"t1"` {
		t.Fatalf("changed: %q %q %v", doc, tag, err)
	}
	if cfg, err := posture.ParseConfig(doc); err != nil || cfg.Recommendations["no-privileged"].Mode != posture.Deny {
		t.Fatalf("parse: %v", err)
	}
	if _, _, err := c.FetchPostureConfig(ctx, tag); !errors.Is(err, ship.ErrNotModified) {
		t.Fatalf("unchanged again: %v", err)
	}

	// Refusals carry the server's message, never the token.
	for _, status := range []int{401, 403, 500} {
		ps.mu.Lock()
		ps.status = status
		ps.mu.Unlock()
		_, _, err := c.FetchPostureConfig(ctx, "")
		if err == nil || errors.Is(err, ship.ErrNotModified) || strings.Contains(err.Error(), postureToken) ||
			!strings.Contains(err.Error(), "refused") || !strings.Contains(err.Error(), "[REDACTED]") {
			t.Errorf("status %d: %v", status, err)
		}
	}
}

func TestFetchPostureConfigBadAnswers(t *testing.T) {
	for name, body := range map[string]string{
		"not JSON":                   `<html>`,
		"cluster without a document": `{"source":"cluster","config":{}}`,
		"unknown source":             `{"source":"elsewhere","document":"{}"}`,
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(body))
		}))
		c, err := ship.Open(ship.Config{Server: srv.URL, Token: postureToken, SpoolDir: t.TempDir(), Heartbeat: -1})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.FetchPostureConfig(context.Background(), ""); err == nil || !strings.Contains(err.Error(), "bad answer") {
			t.Errorf("%s: %v", name, err)
		}
		c.Close()
		srv.Close()
	}
	// A server that cannot be reached: the error names no token either.
	c, err := ship.Open(ship.Config{Server: "http://127.0.0.1:1", Token: postureToken, SpoolDir: t.TempDir(), Heartbeat: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, _, err := c.FetchPostureConfig(context.Background(), ""); err == nil || strings.Contains(err.Error(), postureToken) {
		t.Fatalf("unreachable: %v", err)
	}
}
