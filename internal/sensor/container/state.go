package container

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// runcState is what Vigil reads of runc's <root>/<id>/state.json.
type runcState struct {
	Bundle  string
	Created time.Time
	// Annotations are the OCI spec's annotations, which runc copies into
	// the state's config labels as key=value next to bundle=<path>.
	Annotations map[string]string
}

// parseRuncState parses runc's state.json. The file is runc's internal
// format: fields Vigil does not find are left zero rather than failing.
func parseRuncState(data []byte) (runcState, error) {
	var raw struct {
		Created string `json:"created"`
		Config  struct {
			Labels []string `json:"labels"`
		} `json:"config"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return runcState{}, fmt.Errorf("parse runc state: %w", err)
	}
	st := runcState{Created: parseTime(raw.Created)}
	for _, l := range raw.Config.Labels {
		k, v, ok := strings.Cut(l, "=")
		switch {
		case !ok:
		case k == "bundle":
			st.Bundle = v
		default:
			if st.Annotations == nil {
				st.Annotations = map[string]string{}
			}
			st.Annotations[k] = v
		}
	}
	return st, nil
}

// parseBundleConfig returns the annotations of an OCI bundle's
// config.json (the runtime spec).
func parseBundleConfig(data []byte) (map[string]string, error) {
	var spec struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("parse OCI runtime spec: %w", err)
	}
	return spec.Annotations, nil
}

// dockerConfig is what Vigil reads of Docker's
// <data root>/containers/<id>/config.v2.json.
type dockerConfig struct {
	Name    string // without Docker's leading slash
	Image   string // as given to docker run, e.g. nginx:1.27
	ImageID string // sha256:...
	Started time.Time
	Labels  map[string]string
}

// parseDockerConfig parses Docker's config.v2.json.
func parseDockerConfig(data []byte) (dockerConfig, error) {
	var raw struct {
		Name    string `json:"Name"`
		Image   string `json:"Image"`
		Created string `json:"Created"`
		State   struct {
			StartedAt string `json:"StartedAt"`
		} `json:"State"`
		Config struct {
			Image  string            `json:"Image"`
			Labels map[string]string `json:"Labels"`
		} `json:"Config"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return dockerConfig{}, fmt.Errorf("parse docker container config: %w", err)
	}
	d := dockerConfig{
		Name:    strings.TrimPrefix(raw.Name, "/"),
		Image:   raw.Config.Image,
		ImageID: raw.Image,
		Started: parseTime(raw.State.StartedAt),
		Labels:  raw.Config.Labels,
	}
	if d.Started.IsZero() { // never started: Docker writes year 1
		d.Started = parseTime(raw.Created)
	}
	return d, nil
}

// parseTime reads an RFC 3339 time; the zero time for anything else,
// including Go's zero time as Docker writes it.
func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return time.Time{}
	}
	return t.UTC()
}

// Kubernetes metadata as the runtimes record it: containerd's CRI plugin
// and CRI-O in OCI annotations, cri-dockerd (and dockershim) in Docker
// labels with CRI-O's keys. The first key present wins.
var (
	nameKeys      = []string{"io.kubernetes.cri.container-name", "io.kubernetes.container.name"}
	podKeys       = []string{"io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name"}
	namespaceKeys = []string{"io.kubernetes.cri.sandbox-namespace", "io.kubernetes.pod.namespace"}
	podUIDKeys    = []string{"io.kubernetes.cri.sandbox-uid", "io.kubernetes.pod.uid"}
	imageKeys     = []string{"io.kubernetes.cri.image-name", "io.kubernetes.cri-o.ImageName"}
	imageIDKeys   = []string{"io.kubernetes.cri-o.ImageRef"}
)

// crioLabels is CRI-O's annotation holding the container's labels as a
// JSON object.
const crioLabels = "io.kubernetes.cri-o.Labels"

// applyAnnotations fills the empty fields of c from Kubernetes
// annotations (or Docker labels), and names the runtime when the keys
// give it away.
func applyAnnotations(c *event.Container, a map[string]string) {
	if len(a) == 0 {
		return
	}
	first := func(keys []string) string {
		for _, k := range keys {
			if v := a[k]; v != "" {
				return v
			}
		}
		return ""
	}
	setEmpty(&c.Name, first(nameKeys))
	setEmpty(&c.Pod, first(podKeys))
	setEmpty(&c.Namespace, first(namespaceKeys))
	setEmpty(&c.PodUID, first(podUIDKeys))
	setEmpty(&c.Image, first(imageKeys))
	setEmpty(&c.ImageID, first(imageIDKeys))
	if c.Labels == nil {
		var labels map[string]string
		if json.Unmarshal([]byte(a[crioLabels]), &labels) == nil && len(labels) > 0 {
			c.Labels = labels
		}
	}
	var cri, crio bool
	for k := range a {
		cri = cri || strings.HasPrefix(k, "io.kubernetes.cri.")
		crio = crio || strings.HasPrefix(k, "io.kubernetes.cri-o.")
	}
	switch {
	case cri:
		setEmpty(&c.Runtime, "containerd")
	case crio:
		setEmpty(&c.Runtime, "cri-o")
	}
}

// setEmpty sets *dst to v unless it already has a value.
func setEmpty(dst *string, v string) {
	if *dst == "" {
		*dst = v
	}
}

// mergeLabels returns a new map of dst's labels plus those of src that
// dst does not have; dst itself is not modified.
func mergeLabels(dst, src map[string]string) map[string]string {
	if len(src) == 0 {
		return dst
	}
	out := maps.Clone(src)
	maps.Copy(out, dst)
	return out
}

// stateHasCgroup reports whether runc's state.json places the container in
// the cgroup p (a path below a hierarchy's mount): runc records each
// hierarchy's directory in cgroup_paths.
func stateHasCgroup(data []byte, p string) bool {
	var st struct {
		CgroupPaths map[string]string `json:"cgroup_paths"`
	}
	if json.Unmarshal(data, &st) != nil {
		return false
	}
	for _, dir := range st.CgroupPaths {
		if strings.HasSuffix(dir, p) {
			return true
		}
	}
	return false
}
