package container

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

var created = time.Date(2026, 11, 23, 6, 59, 25, 940051544, time.UTC)

// runcStateJSON is a trimmed runc 1.1 state.json.
func runcStateJSON(bundle string, labels ...string) string {
	l, _ := json.Marshal(append([]string{"bundle=" + bundle}, labels...))
	return `{"id":"x","init_process_pid":4502,"init_process_start":1234,"created":"2026-11-23T06:59:25.940051544Z",
"config":{"rootfs":"/r","labels":` + string(l) + `,"cgroups":{"path":"/kubepods/x"}},"rootless":false}`
}

func TestParseRuncState(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    runcState
		wantErr bool
	}{
		{"bundle only", runcStateJSON("/run/b"), runcState{Bundle: "/run/b", Created: created}, false},
		{"annotations in labels", runcStateJSON("/run/b", "io.kubernetes.cri.container-name=web", "k=v=w", "novalue"),
			runcState{Bundle: "/run/b", Created: created, Annotations: map[string]string{"io.kubernetes.cri.container-name": "web", "k": "v=w"}}, false},
		{"bad time", `{"created":"yesterday","config":{"labels":["bundle=/b"]}}`, runcState{Bundle: "/b"}, false},
		{"no config", `{"created":"2026-11-23T06:59:25.940051544Z"}`, runcState{Created: created}, false},
		{"not json", `{"created":`, runcState{}, true},
		{"wrong type", `{"config":{"labels":"bundle=/b"}}`, runcState{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRuncState([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("error = %v, want error %v", err, tc.wantErr)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parseRuncState = %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

const dockerConfigJSON = `{"ID":"` + id + `","Created":"2026-11-20T10:00:00.5Z","Name":"/web",
"Image":"sha256:1111111111111111111111111111111111111111111111111111111111111111",
"State":{"Running":true,"StartedAt":"2026-11-20T10:00:01.25Z"},
"Config":{"Image":"nginx:1.27","Labels":{"maintainer":"nginx"}}}`

func TestParseDockerConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    dockerConfig
		wantErr bool
	}{
		{"running", dockerConfigJSON, dockerConfig{
			Name: "web", Image: "nginx:1.27", ImageID: "sha256:1111111111111111111111111111111111111111111111111111111111111111",
			Started: time.Date(2026, 11, 20, 10, 0, 1, 250e6, time.UTC), Labels: map[string]string{"maintainer": "nginx"},
		}, false},
		{"never started", `{"Name":"/x","Created":"2026-11-20T10:00:00.5Z","State":{"StartedAt":"0001-01-01T00:00:00Z"}}`,
			dockerConfig{Name: "x", Started: time.Date(2026, 11, 20, 10, 0, 0, 500e6, time.UTC)}, false},
		{"empty object", `{}`, dockerConfig{}, false},
		{"not json", `[`, dockerConfig{}, true},
		{"labels not a map", `{"Config":{"Labels":[1]}}`, dockerConfig{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseDockerConfig([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("error = %v, want error %v", err, tc.wantErr)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parseDockerConfig = %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestApplyAnnotations(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    event.Container
		ann  map[string]string
		want event.Container
	}{
		{"containerd", event.Container{ID: id}, map[string]string{
			"io.kubernetes.cri.container-type":    "container",
			"io.kubernetes.cri.container-name":    "web",
			"io.kubernetes.cri.sandbox-name":      "web-7d9f8c6b5-x2x4q",
			"io.kubernetes.cri.sandbox-namespace": "shop",
			"io.kubernetes.cri.sandbox-uid":       uid,
			"io.kubernetes.cri.image-name":        "docker.io/library/nginx:1.27",
		}, event.Container{ID: id, Runtime: "containerd", Name: "web", Pod: "web-7d9f8c6b5-x2x4q", Namespace: "shop", PodUID: uid,
			Image: "docker.io/library/nginx:1.27"}},
		{"cri-o", event.Container{ID: id, Runtime: "cri-o", PodUID: uid}, map[string]string{
			"io.kubernetes.container.name":  "web",
			"io.kubernetes.pod.name":        "web-0",
			"io.kubernetes.pod.namespace":   "shop",
			"io.kubernetes.pod.uid":         "ignored-the-path-said-it",
			"io.kubernetes.cri-o.ImageName": "quay.io/x/web:1",
			"io.kubernetes.cri-o.ImageRef":  "sha256:2222",
			"io.kubernetes.cri-o.Labels":    `{"io.kubernetes.container.name":"web","tier":"front"}`,
		}, event.Container{ID: id, Runtime: "cri-o", Name: "web", Pod: "web-0", Namespace: "shop", PodUID: uid,
			Image: "quay.io/x/web:1", ImageID: "sha256:2222", Labels: map[string]string{"io.kubernetes.container.name": "web", "tier": "front"}}},
		{"cri-o labels not json", event.Container{ID: id}, map[string]string{"io.kubernetes.cri-o.Labels": "{"},
			event.Container{ID: id, Runtime: "cri-o"}},
		{"nothing kubernetes", event.Container{ID: id}, map[string]string{"org.opencontainers.image.title": "x"},
			event.Container{ID: id}},
		{"nil", event.Container{ID: id}, nil, event.Container{ID: id}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			applyAnnotations(&c, tc.ann)
			if !reflect.DeepEqual(c, tc.want) {
				t.Errorf("applyAnnotations = %+v\nwant %+v", c, tc.want)
			}
		})
	}
}

// writeFile writes data at root/path, making its directories.
func writeFile(t *testing.T, root, path, data string) {
	t.Helper()
	p := filepath.Join(root, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestEnrichers(t *testing.T) {
	const runcID = "vigil-test-abc123"
	root := t.TempDir()
	// containerd under Kubernetes: state in containerd's runc root, the
	// bundle in the task directory.
	bundle := "/run/containerd/io.containerd.runtime.v2.task/k8s.io/" + id
	writeFile(t, root, "/run/containerd/runc/k8s.io/"+id+"/state.json", runcStateJSON(bundle))
	writeFile(t, root, bundle+"/config.json", `{"ociVersion":"1.2.0","annotations":{
		"io.kubernetes.cri.container-name":"web","io.kubernetes.cri.sandbox-name":"web-7d9f8c6b5-x2x4q",
		"io.kubernetes.cri.sandbox-namespace":"shop","io.kubernetes.cri.sandbox-uid":"`+uid+`",
		"io.kubernetes.cri.image-name":"docker.io/library/nginx:1.27"}}`)
	// plain runc: state in /run/runc, annotations only in the state labels,
	// the bundle gone.
	writeFile(t, root, "/run/runc/"+runcID+"/state.json", runcStateJSON("/tmp/gone", "io.kubernetes.pod.name=job-x"))
	// CRI-O with crun: no runc state, the bundle in CRI-O's run root.
	crioID := outer
	writeFile(t, root, "/run/containers/storage/overlay-containers/"+crioID+"/userdata/config.json", `{"annotations":{
		"io.kubernetes.container.name":"db","io.kubernetes.pod.name":"db-0","io.kubernetes.pod.namespace":"shop",
		"io.kubernetes.cri-o.ImageName":"quay.io/x/db:2"}}`)
	// Docker: its own record.
	dockerID := "d0000000000000000000000000000000000000000000000000000000000000d0"
	writeFile(t, root, "/var/lib/docker/containers/"+dockerID+"/config.v2.json", dockerConfigJSON)
	// corrupt state
	badID := "b0000000000000000000000000000000000000000000000000000000000000b0"
	writeFile(t, root, "/run/runc/"+badID+"/state.json", "{")

	for _, tc := range []struct {
		name    string
		in      event.Container
		want    event.Container
		known   bool
		wantErr bool
	}{
		{"containerd", event.Container{ID: id, PodUID: uid},
			event.Container{ID: id, Runtime: "containerd", Name: "web", Pod: "web-7d9f8c6b5-x2x4q", Namespace: "shop", PodUID: uid,
				Image: "docker.io/library/nginx:1.27", StartTime: created}, true, false},
		{"runc", event.Container{ID: runcID},
			event.Container{ID: runcID, Runtime: "runc", Pod: "job-x", StartTime: created}, true, false},
		{"cri-o bundle without state", event.Container{ID: crioID, Runtime: "cri-o"},
			event.Container{ID: crioID, Runtime: "cri-o", Name: "db", Pod: "db-0", Namespace: "shop", Image: "quay.io/x/db:2"}, true, false},
		{"docker", event.Container{ID: dockerID, Runtime: "docker"},
			event.Container{ID: dockerID, Runtime: "docker", Name: "web", Image: "nginx:1.27",
				ImageID:   "sha256:1111111111111111111111111111111111111111111111111111111111111111",
				StartTime: time.Date(2026, 11, 20, 10, 0, 1, 250e6, time.UTC), Labels: map[string]string{"maintainer": "nginx"}}, true, false},
		{"unknown", event.Container{ID: "e0000000000000000000000000000000000000000000000000000000000000e0"},
			event.Container{ID: "e0000000000000000000000000000000000000000000000000000000000000e0"}, false, false},
		{"corrupt state", event.Container{ID: badID}, event.Container{ID: badID}, false, true},
		{"id that is a path", event.Container{ID: "../../etc"}, event.Container{ID: "../../etc"}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.in
			known, errs := false, 0
			for _, e := range DefaultEnrichers(root) {
				ok, err := e.Enrich(&c)
				if err != nil {
					t.Logf("%T: %v", e, err)
					errs++
				}
				known = known || ok
			}
			if known != tc.known || (errs > 0) != tc.wantErr {
				t.Errorf("known = %v with %d errors, want %v and error %v", known, errs, tc.known, tc.wantErr)
			}
			if !reflect.DeepEqual(c, tc.want) {
				t.Errorf("enriched\n %+v\nwant %+v", c, tc.want)
			}
		})
	}
}

func FuzzParseRuncState(f *testing.F) {
	f.Add([]byte(runcStateJSON("/run/b", "a=b")))
	f.Add([]byte(`{"config":{"labels":["bundle="]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseRuncState(b)
		if err != nil {
			return
		}
		if _, ok := st.Annotations["bundle"]; ok {
			t.Fatalf("bundle label kept as an annotation: %+v", st)
		}
		if !st.Created.IsZero() && st.Created.Location() != time.UTC {
			t.Fatalf("created time not in UTC: %v", st.Created)
		}
	})
}

func FuzzParseBundleConfig(f *testing.F) {
	f.Add([]byte(`{"annotations":{"io.kubernetes.cri-o.Labels":"{\"a\":\"b\"}","io.kubernetes.pod.name":"p"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ann, err := parseBundleConfig(b)
		if err != nil {
			return
		}
		c := event.Container{ID: id}
		applyAnnotations(&c, ann)
		if c.ID != id {
			t.Fatalf("annotations changed the id: %+v", c)
		}
	})
}

func FuzzParseDockerConfig(f *testing.F) {
	f.Add([]byte(dockerConfigJSON))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := parseDockerConfig(b)
		if err != nil {
			return
		}
		if !json.Valid(b) {
			t.Fatalf("invalid JSON accepted: %q", b)
		}
		if !d.Started.IsZero() && d.Started.Year() <= 1 {
			t.Fatalf("Docker's zero time taken for a start time: %v", d.Started)
		}
	})
}
