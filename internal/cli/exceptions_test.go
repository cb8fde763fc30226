package cli

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/server/api"
	"github.com/vigil-sec/vigil/internal/server/store"
	"github.com/vigil-sec/vigil/internal/ship"
)

// An admin suppresses an alert on the server ("not again for this
// workload"); the cluster's sensor pulls the exception and its engine stops
// raising that alert there, and only there.
func TestSuppressReachesTheSensorEngine(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "v.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	admin, _ := st.CreateToken(ctx, "alice", store.RoleAdmin)
	_, cred, err := st.CreateCluster(ctx, "prod-1")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Config{Store: st}).Handler())
	defer srv.Close()

	rs, err := detect.Load(detect.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var alerts []*event.Alert
	eng := detect.New(detect.Config{Rules: rs, Emit: func(a *event.Alert) { alerts = append(alerts, a) }, AggregateWindow: time.Nanosecond})
	pkg := func(ns string) *event.Event {
		return &event.Event{Kind: event.ProcessExec, Time: time.Now(),
			Process:   &event.Process{Pid: 7, Exe: "/usr/bin/apt-get", Args: []string{"apt-get", "install", "-y", "curl"}},
			Container: &event.Container{ID: "c-" + ns, Namespace: ns, Pod: "web-1", Workload: "Deployment/" + ns + "/web", Image: "debian:12"}}
	}
	eng.Process(pkg("shop"))
	if len(alerts) != 1 || alerts[0].Rule != "runtime.package-manager-in-container" {
		t.Fatalf("alerts: %v", alerts)
	}
	client, err := ship.Open(ship.Config{Server: srv.URL, Token: cred, SpoolDir: t.TempDir(), Heartbeat: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := st.Ingest(ctx, mustCluster(t, st, "prod-1"), &ship.Batch{BatchID: "b1", Alerts: []event.Alert{*alerts[0]}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	apiClient := &serverProc{url: srv.URL}
	if code := apiClient.call(t, "POST", "/api/v1/alerts/"+alerts[0].ID+"/suppress", admin, `{"reason":"shop installs at start","scope":"workload"}`, nil); code != 201 {
		t.Fatalf("suppress: %d", code)
	}
	if err := pullExceptions(ctx, client, eng); err != nil {
		t.Fatal(err)
	}

	alerts = nil
	eng.Process(pkg("shop"))
	eng.Process(pkg("billing"))
	if len(alerts) != 1 || alerts[0].Namespace != "billing" {
		var got []string
		for _, a := range alerts {
			got = append(got, a.Namespace)
		}
		t.Fatalf("after the exception: alerts in %v, want only billing", got)
	}
}

func mustCluster(t *testing.T, st *store.Store, name string) string {
	c, err := st.GetCluster(context.Background(), name, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return c.ID
}
