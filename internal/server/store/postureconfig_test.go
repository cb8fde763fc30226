package store

import (
	"errors"
	"strings"
	"testing"
)

func TestPostureConfig(t *testing.T) {
	eachDB(t, func(t *testing.T, e env) {
		prod, _ := mustCluster(t, e.Store, "prod-1")
		dev, _ := mustCluster(t, e.Store, "dev-1")

		if _, err := e.EffectivePostureConfig(ctx, prod.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("nothing stored: %v, want ErrNotFound", err)
		}
		if _, err := e.GetPostureConfig(ctx, ""); !errors.Is(err, ErrNotFound) {
			t.Fatalf("no fleet default: %v, want ErrNotFound", err)
		}

		// The fleet default applies to every cluster without its own.
		fleet := "# fleet\nexcludedNamespaces: [kube-system]\n"
		got, err := e.PutPostureConfig(ctx, "", fleet, "alice", t0)
		if err != nil {
			t.Fatal(err)
		}
		if got.ClusterID != "" || got.Body != fleet || !got.UpdatedAt.Equal(t0) || got.UpdatedBy != "alice" {
			t.Fatalf("put fleet: %+v", got)
		}
		for _, id := range []string{"", prod.ID, dev.ID} {
			c, err := e.EffectivePostureConfig(ctx, id)
			if err != nil || c.ClusterID != "" || c.Body != fleet {
				t.Fatalf("effective for %q: %+v, %v", id, c, err)
			}
		}

		// A cluster's own document, by name, wins for that cluster only,
		// and is stored exactly as sent.
		own := "{\"recommendations\": {\"no-privileged\": {\"mode\": \"deny\"}}}  \n"
		if got, err = e.PutPostureConfig(ctx, "prod-1", own, "bob", t0.Add(1)); err != nil || got.ClusterID != prod.ID {
			t.Fatalf("put prod-1: %+v, %v", got, err)
		}
		c, err := e.EffectivePostureConfig(ctx, prod.ID)
		if err != nil || c.ClusterID != prod.ID || c.Body != own || c.UpdatedBy != "bob" || !c.UpdatedAt.Equal(t0.Add(1)) {
			t.Fatalf("effective for prod-1: %+v, %v", c, err)
		}
		if c, err := e.EffectivePostureConfig(ctx, dev.ID); err != nil || c.ClusterID != "" {
			t.Fatalf("effective for dev-1: %+v, %v", c, err)
		}
		if c, err := e.GetPostureConfig(ctx, dev.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("get dev-1's own: %+v, %v", c, err)
		}

		// Put replaces.
		if _, err := e.PutPostureConfig(ctx, prod.ID, "{}", "carol", t0.Add(2)); err != nil {
			t.Fatal(err)
		}
		if c, err := e.GetPostureConfig(ctx, prod.ID); err != nil || c.Body != "{}" || c.UpdatedBy != "carol" {
			t.Fatalf("after replacing: %+v, %v", c, err)
		}

		// Delete falls back to the fleet default, then to nothing.
		if err := e.DeletePostureConfig(ctx, "prod-1"); err != nil {
			t.Fatal(err)
		}
		if c, err := e.EffectivePostureConfig(ctx, prod.ID); err != nil || c.ClusterID != "" {
			t.Fatalf("after deleting prod-1's: %+v, %v", c, err)
		}
		if err := e.DeletePostureConfig(ctx, prod.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("delete again: %v, want ErrNotFound", err)
		}
		if err := e.DeletePostureConfig(ctx, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := e.EffectivePostureConfig(ctx, prod.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("after deleting the fleet default: %v", err)
		}

		// Refusals.
		if _, err := e.PutPostureConfig(ctx, "nope", "{}", "alice", t0); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown cluster: %v", err)
		}
		if err := e.DeletePostureConfig(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("delete for an unknown cluster: %v", err)
		}
		for name, body := range map[string]string{
			"blank":     " \n\t",
			"nul":       "a: b\x00",
			"not utf-8": "a: \xff",
			"too large": strings.Repeat("#", MaxPostureConfigBytes+1),
		} {
			if _, err := e.PutPostureConfig(ctx, "", body, "alice", t0); !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: %v, want ErrInvalid", name, err)
			}
		}
		if _, err := e.GetPostureConfig(ctx, ""); !errors.Is(err, ErrNotFound) {
			t.Errorf("a refused put stored something: %v", err)
		}
		// The largest document fits on both databases.
		big := "#" + strings.Repeat("x", MaxPostureConfigBytes-1)
		if _, err := e.PutPostureConfig(ctx, dev.ID, big, "alice", t0); err != nil {
			t.Fatal(err)
		}
		if c, err := e.GetPostureConfig(ctx, dev.ID); err != nil || c.Body != big {
			t.Fatalf("1 MiB document: %d bytes back, %v", len(c.Body), err)
		}
	})
}
