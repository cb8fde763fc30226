package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/server/store"
)

// postureResp is a raw answer of the posture config endpoints.
type postureResp struct {
	status int
	header http.Header
	body   []byte
	// Decoded body (2xx and errors).
	Cluster   string         `json:"cluster"`
	Source    string         `json:"source"`
	Config    map[string]any `json:"config"`
	Document  *string        `json:"document"`
	UpdatedBy string         `json:"updated_by"`
	UpdatedAt string         `json:"updated_at"`
	Error     string         `json:"error"`
}

// posture sends a request to /api/v1/posture/config; header holds extra
// request headers (Content-Type defaults to application/yaml when there is
// a body).
func (e *env) posture(method, query, token, body string, header ...string) postureResp {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+"/api/v1/posture/config"+query, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/yaml")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	r := postureResp{status: resp.StatusCode, header: resp.Header}
	r.body, _ = io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusNotModified {
		return r
	}
	if err := json.Unmarshal(r.body, &r); err != nil {
		e.t.Fatalf("%s %s: %d, body is not JSON: %q", method, query, resp.StatusCode, r.body)
	}
	if resp.StatusCode >= 400 && r.Error == "" {
		e.t.Fatalf("%s %s: %d without an error message: %q", method, query, resp.StatusCode, r.body)
	}
	return r
}

// mode is the mode of recommendation id in the answer's parsed config.
func (r postureResp) mode(id string) string {
	recs, _ := r.Config["recommendations"].(map[string]any)
	rec, _ := recs[id].(map[string]any)
	m, _ := rec["mode"].(string)
	return m
}

func TestPostureConfigFallback(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		check := func(what string, r postureResp, cluster, source, privileged string) {
			t.Helper()
			if r.status != 200 || r.Cluster != cluster || r.Source != source || r.mode("no-privileged") != privileged {
				t.Fatalf("%s: %d cluster=%q source=%q no-privileged=%q %s", what, r.status, r.Cluster, r.Source, r.mode("no-privileged"), r.body)
			}
			if (source == "builtin") != (r.Document == nil) {
				t.Fatalf("%s: document %v with source %s", what, r.Document, source)
			}
		}
		// Nothing stored: Vigil's defaults (no-privileged audits).
		check("builtin", e.posture("GET", "", e.reader, ""), "", "builtin", "audit")
		check("builtin for a cluster", e.posture("GET", "?cluster=prod-1", e.reader, ""), "prod-1", "builtin", "audit")

		fleet := "# every cluster\nrecommendations:\n  no-privileged:\n    mode: deny\n"
		r := e.posture("PUT", "", e.admin, fleet)
		check("put fleet", r, "", "fleet", "deny")
		if *r.Document != fleet || r.UpdatedBy != "alice" || r.UpdatedAt == "" {
			t.Fatalf("put fleet: document %q by %q at %q", *r.Document, r.UpdatedBy, r.UpdatedAt)
		}
		check("fleet for prod-1", e.posture("GET", "?cluster=prod-1", e.admin, ""), "prod-1", "fleet", "deny")
		check("fleet for the cluster credential", e.posture("GET", "", e.clusterA, ""), "prod-1", "fleet", "deny")

		// prod-2's own JSON document, by id; the omitted fields keep
		// Vigil's defaults, not the fleet's.
		own := `{"recommendations": {"no-privileged": {"mode": "disabled"}}}`
		check("put prod-2", e.posture("PUT", "?cluster="+e.clusterBID, e.admin, own, "Content-Type", "application/json"), "prod-2", "cluster", "disabled")
		check("prod-2 reads its own", e.posture("GET", "", e.clusterB, ""), "prod-2", "cluster", "disabled")
		check("prod-1 still the fleet's", e.posture("GET", "", e.clusterA, ""), "prod-1", "fleet", "deny")
		check("the fleet default unchanged", e.posture("GET", "", e.admin, ""), "", "fleet", "deny")

		// Reset: prod-2 back to the fleet's, the fleet back to builtin;
		// resetting again is no error.
		check("reset prod-2", e.posture("DELETE", "?cluster=prod-2", e.admin, ""), "prod-2", "fleet", "deny")
		check("reset prod-2 again", e.posture("DELETE", "?cluster=prod-2", e.admin, ""), "prod-2", "fleet", "deny")
		check("reset fleet", e.posture("DELETE", "", e.admin, ""), "", "builtin", "audit")
		check("prod-2 after both resets", e.posture("GET", "", e.clusterB, ""), "prod-2", "builtin", "audit")
	})
}

func TestPostureConfigRoles(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		doc := "excludedNamespaces: [kube-system]\n"
		for _, c := range []struct {
			name               string
			method, query, tok string
			body               string
			want               int
		}{
			{"no token", "GET", "", "", "", 401},
			{"wrong token", "GET", "", "vgl_a_nope", "", 401},
			{"not a vigil token", "GET", "", "hunter2", "", 401},
			{"reader reads the fleet", "GET", "", e.reader, "", 200},
			{"reader reads a cluster", "GET", "?cluster=prod-2", e.reader, "", 200},
			{"reader cannot set", "PUT", "", e.reader, doc, 403},
			{"reader cannot reset", "DELETE", "", e.reader, "", 403},
			{"cluster reads its own by name", "GET", "?cluster=prod-1", e.clusterA, "", 200},
			{"cluster reads its own by id", "GET", "?cluster=" + e.clusterAID, e.clusterA, "", 200},
			{"cluster cannot read another", "GET", "?cluster=prod-2", e.clusterA, "", 403},
			{"cluster cannot probe for names", "GET", "?cluster=nope", e.clusterA, "", 403},
			{"cluster cannot set", "PUT", "", e.clusterA, doc, 403},
			{"cluster cannot reset", "DELETE", "", e.clusterA, "", 403},
			{"no token cannot set", "PUT", "", "", doc, 401},
			{"unknown cluster", "GET", "?cluster=nope", e.admin, "", 404},
			{"set an unknown cluster", "PUT", "?cluster=nope", e.admin, doc, 404},
			{"reset an unknown cluster", "DELETE", "?cluster=nope", e.admin, "", 404},
			{"admin sets", "PUT", "?cluster=prod-1", e.admin, doc, 200},
		} {
			if r := e.posture(c.method, c.query, c.tok, c.body); r.status != c.want {
				t.Errorf("%s: %s %s: %d, want %d: %s", c.name, c.method, c.query, r.status, c.want, r.body)
			}
		}
		// The 403 tells a cluster nothing about the other cluster.
		if r := e.posture("GET", "?cluster=prod-2", e.clusterA, ""); strings.Contains(string(r.body), "prod-2") {
			t.Errorf("403 names the other cluster: %s", r.body)
		}
	})
}

func TestPostureConfigValidation(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		for _, c := range []struct {
			name, body, ct string
			want           int
			msg            string // in the error
		}{
			{"unknown field", "excludedNamespace: [a]\n", "", 400, "excludedNamespace"},
			{"unknown recommendation", "recommendations:\n  no-such-thing: {mode: deny}\n", "", 400, "recommendations.no-such-thing"},
			{"bad mode", "recommendations:\n  no-privileged: {mode: block}\n", "", 400, "recommendations.no-privileged.mode"},
			{"bad regexp", "recommendations:\n  trusted-registries:\n    parameters: {registries: ['(']}\n", "", 400, "recommendations.trusted-registries.parameters.registries[0]"},
			{"another's parameter", `{"recommendations":{"no-privileged":{"parameters":{"registries":["x"]}}}}`, "application/json", 400, "recommendations.no-privileged.parameters.registries"},
			{"not YAML", "a: [b\n", "", 400, "invalid posture configuration"},
			{"not an object", `[1, 2]`, "application/json", 400, "invalid posture configuration"},
			{"blank", " \n", "", 400, "empty"},
			{"not UTF-8", "excludedNamespaces: [\"\xff\"]\n", "", 400, ""},
			{"form", "a=b", "application/x-www-form-urlencoded", 415, "Content-Type"},
			{"bad content type", "{}", "yaml;;", 415, "Content-Type"},
			{"text/yaml with a charset", "excludedImages: [registry.example.com/x]\n", "text/yaml; charset=utf-8", 200, ""},
			{"no content type", "{}", "-", 200, ""},
		} {
			var hdr []string
			if c.ct == "-" {
				hdr = []string{"Content-Type", ""}
			} else if c.ct != "" {
				hdr = []string{"Content-Type", c.ct}
			}
			r := e.posture("PUT", "?cluster=prod-1", e.admin, c.body, hdr...)
			if r.status != c.want || !strings.Contains(r.Error, c.msg) {
				t.Errorf("%s: %d %q, want %d with %q", c.name, r.status, r.Error, c.want, c.msg)
			}
		}
		// Refused documents stored nothing: the last good one stands.
		if r := e.posture("GET", "?cluster=prod-1", e.admin, ""); r.Document == nil || *r.Document != "{}" {
			t.Fatalf("after the refusals: %s", r.body)
		}

		// Bodies are bounded at 1 MiB: a comment that fills it is a
		// document of defaults; one byte more is 413.
		full := "#" + strings.Repeat("x", store.MaxPostureConfigBytes-1)
		if r := e.posture("PUT", "", e.admin, full); r.status != 200 || r.Source != "fleet" {
			t.Fatalf("1 MiB document: %d %s", r.status, r.Error)
		}
		if r := e.posture("PUT", "", e.admin, full+"x"); r.status != 413 {
			t.Fatalf("1 MiB + 1: %d %s", r.status, r.Error)
		}
	})
}

func TestPostureConfigETag(t *testing.T) {
	e := newEnv(t, "sqlite://"+filepath.Join(t.TempDir(), "vigil.db"))
	first := e.posture("GET", "", e.clusterA, "")
	tag := first.header.Get("ETag")
	if first.status != 200 || !strings.HasPrefix(tag, `"`) || len(tag) < 10 {
		t.Fatalf("GET: %d, ETag %q", first.status, tag)
	}
	for _, inm := range []string{tag, "W/" + tag, `"other", ` + tag, "*"} {
		r := e.posture("GET", "", e.clusterA, "", "If-None-Match", inm)
		if r.status != 304 || len(r.body) != 0 || r.header.Get("ETag") != tag {
			t.Fatalf("If-None-Match %s: %d %q, ETag %q", inm, r.status, r.body, r.header.Get("ETag"))
		}
	}
	if r := e.posture("GET", "", e.clusterA, "", "If-None-Match", `"other"`); r.status != 200 {
		t.Fatalf("another tag: %d", r.status)
	}
	// 304 needs a credential like 200 does.
	if r := e.posture("GET", "", "", "", "If-None-Match", tag); r.status != 401 {
		t.Fatalf("without a credential: %d", r.status)
	}
	// Another cluster's document changes nothing for prod-1.
	if r := e.posture("PUT", "?cluster=prod-2", e.admin, "excludedImages: [registry.example.com/x]\n"); r.status != 200 {
		t.Fatalf("PUT prod-2: %d %s", r.status, r.Error)
	}
	if r := e.posture("GET", "", e.clusterA, "", "If-None-Match", tag); r.status != 304 {
		t.Fatalf("after prod-2 changed: %d", r.status)
	}
	// The fleet default does; PUT answers the new tag.
	put := e.posture("PUT", "", e.admin, "excludedImages: [registry.example.com/y]\n")
	if put.status != 200 {
		t.Fatalf("PUT fleet: %d %s", put.status, put.Error)
	}
	r := e.posture("GET", "", e.clusterA, "", "If-None-Match", tag)
	newTag := r.header.Get("ETag")
	if r.status != 200 || r.Source != "fleet" || newTag == tag || newTag != put.header.Get("ETag") {
		t.Fatalf("after the fleet changed: %d %s, ETag %q (PUT said %q, was %q)", r.status, r.Source, newTag, put.header.Get("ETag"), tag)
	}
	// A reset back to builtin gives the first tag again.
	e.posture("DELETE", "", e.admin, "")
	if r := e.posture("GET", "", e.clusterA, "", "If-None-Match", tag); r.status != 304 {
		t.Fatalf("back to builtin: %d", r.status)
	}
}
