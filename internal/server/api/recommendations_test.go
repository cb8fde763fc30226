package api_test

import (
	"fmt"
	"net/url"
	"slices"
	"testing"

	"github.com/vigil-sec/vigil/internal/posture"
	"github.com/vigil-sec/vigil/internal/ship"
)

func TestRecommendationDetail(t *testing.T) {
	forEachDB(t, func(t *testing.T, e *env) {
		finding := func(check string, i int, status string) ship.Finding {
			ns := []string{"shop", "dev"}[i%2]
			f := ship.Finding{ID: fmt.Sprintf("%s-%02d", check, i), Check: check, Resource: fmt.Sprintf("Deployment/%s/w%02d", ns, i),
				Namespace: ns, Status: status, Details: map[string]any{"mode": "deny"}}
			if status == ship.Unhealthy {
				f.Details["violations"] = []string{"container web: privileged"}
			}
			return f
		}
		var a, b []ship.Finding
		for i := range 7 {
			status := ship.Healthy
			if i%2 == 0 {
				status = ship.Unhealthy
			}
			a = append(a, finding(posture.NoPrivileged, i, status))
		}
		a = append(a, finding("custom-check", 0, ship.Unhealthy))
		b = append(b, finding(posture.NoPrivileged, 50, ship.Unhealthy))
		if code, body := e.do("POST", "/api/v1/ingest", e.clusterA, &ship.Batch{BatchID: "f1", Findings: a}); code != 200 {
			t.Fatalf("ingest: %d %v", code, body)
		}
		if code, body := e.do("POST", "/api/v1/ingest", e.clusterB, &ship.Batch{BatchID: "f2", Findings: b}); code != 200 {
			t.Fatalf("ingest: %d %v", code, body)
		}

		base := "/api/v1/recommendations/" + posture.NoPrivileged
		code, body := e.do("GET", base+"?status=unhealthy&limit=2", e.reader, nil)
		if code != 200 || body["id"] != posture.NoPrivileged || body["title"] == posture.NoPrivileged || body["unhealthy"] != 5.0 ||
			body["healthy"] != 3.0 || body["description"] == "" {
			t.Fatalf("detail: %d %v", code, body)
		}
		// Page through the unhealthy findings.
		var resources []string
		for page := 0; ; page++ {
			fs := body["findings"].([]any)
			if len(fs) > 2 || page > 5 {
				t.Fatalf("page %d: %v", page, fs)
			}
			for _, x := range fs {
				f := x.(map[string]any)
				if f["status"] != ship.Unhealthy || f["mode"] != "deny" || f["last_seen"] == "" ||
					fmt.Sprint(f["violations"]) != "[container web: privileged]" || f["cluster"] != "prod-1" && f["cluster"] != "prod-2" {
					t.Fatalf("finding %v", f)
				}
				resources = append(resources, f["resource"].(string))
			}
			next, _ := body["next_cursor"].(string)
			if next == "" {
				break
			}
			code, body = e.do("GET", base+"?status=unhealthy&limit=2&cursor="+url.QueryEscape(next), e.reader, nil)
			if code != 200 {
				t.Fatalf("next page: %d %v", code, body)
			}
		}
		want := []string{"Deployment/shop/w00", "Deployment/shop/w02", "Deployment/shop/w04", "Deployment/shop/w06", "Deployment/shop/w50"}
		if !slices.Equal(resources, want) {
			t.Fatalf("resources %v, want %v", resources, want)
		}

		// Filters: cluster (name or id), namespace, status; the counts follow
		// the cluster.
		for _, tc := range []struct {
			query     string
			n         int
			unhealthy float64
		}{
			{"?cluster=prod-2", 1, 1},
			{"?cluster=" + e.clusterAID + "&status=healthy", 3, 4},
			{"?cluster=prod-1&namespace=dev", 3, 4},
			{"", 8, 5},
			{"?cluster=nope", 0, 0},
		} {
			code, body := e.do("GET", base+tc.query, e.admin, nil)
			if code != 200 || len(body["findings"].([]any)) != tc.n || body["unhealthy"] != tc.unhealthy {
				t.Errorf("%s: %d %v", tc.query, code, body)
			}
		}
		// A check the catalog does not know, with findings; a catalog
		// check without findings; neither.
		if code, body := e.do("GET", "/api/v1/recommendations/custom-check", e.reader, nil); code != 200 || body["title"] != "custom-check" ||
			len(body["findings"].([]any)) != 1 {
			t.Errorf("custom check: %d %v", code, body)
		}
		if code, body := e.do("GET", "/api/v1/recommendations/"+posture.ReadOnlyRootFS, e.reader, nil); code != 200 || body["healthy"] != 0.0 ||
			len(body["findings"].([]any)) != 0 || body["modes"] == nil {
			t.Errorf("catalog check without findings: %d %v", code, body)
		}
		if code, _ := e.do("GET", "/api/v1/recommendations/no-such-check", e.reader, nil); code != 404 {
			t.Errorf("unknown: %d", code)
		}
		for _, q := range []string{"?status=removed", "?status=bad", "?limit=0", "?limit=1001", "?limit=x", "?cursor=bogus"} {
			if code, body := e.do("GET", base+q, e.reader, nil); code != 400 {
				t.Errorf("%s: %d %v", q, code, body)
			}
		}
		if code, _ := e.do("GET", base, "", nil); code != 401 {
			t.Errorf("anonymous: %d", code)
		}
		if code, _ := e.do("GET", base, e.clusterA, nil); code != 403 {
			t.Errorf("cluster credential: %d", code)
		}
	})
}
