package container

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/vigil-sec/vigil/internal/event"
)

// Enricher adds what a runtime knows about a container to its
// description.
type Enricher interface {
	// Enrich fills in the fields of c it knows and leaves set fields
	// alone; c.ID is set, and Runtime and PodUID when the cgroup path told
	// them. It reports whether it knew the container: a container no
	// enricher knew is asked about again later, as its runtime may not
	// have written its state yet. An error means state was found but
	// could not be read; not knowing a container is not an error.
	// ErrPending means the enricher is still finding out (in the
	// background: Enrich runs on the event path and must not wait on a
	// socket) and wants to be asked again, whatever the others knew.
	// Enrich must be safe for concurrent use.
	Enrich(c *event.Container) (bool, error)
}

// DefaultEnrichers are the enrichers a Resolver uses when Options leaves
// them nil: runc state and OCI bundles, then Docker's own records, all
// read under hostRoot. They read files only; the sensor appends a CRI
// enricher (NewCRI) for what they leave out.
func DefaultEnrichers(hostRoot string) []Enricher {
	return []Enricher{OCI{HostRoot: hostRoot}, Docker{HostRoot: hostRoot}}
}

// StateDir is a runc state directory (runc --root), holding
// <id>/state.json per container, and the runtime that drives runc there.
type StateDir struct {
	Path    string
	Runtime string
}

// DefaultStateDirs lists runc's state directories as runc alone, CRI-O,
// containerd (Kubernetes and default namespaces) and Docker use them.
// Runtime names the runtime only where the directory implies it: runc's
// own root is shared by CRI-O and plain runc, and the cgroup path or the
// bundle's annotations tell those apart first.
func DefaultStateDirs() []StateDir {
	return []StateDir{
		{"/run/containerd/runc/k8s.io", "containerd"},
		{"/run/containerd/runc/default", "containerd"},
		{"/run/docker/runtime-runc/moby", "docker"},
		{"/run/containerd/runc/moby", "docker"},
		{"/run/runc", "runc"},
	}
}

// DefaultBundles lists where runtimes keep OCI bundles, "{id}" standing
// for the container id: containerd's (Kubernetes namespace) and CRI-O's
// and podman's. They are read when no runc state names the bundle, as
// with crun.
func DefaultBundles() []string {
	return []string{
		"/run/containerd/io.containerd.runtime.v2.task/k8s.io/{id}",
		"/run/containers/storage/overlay-containers/{id}/userdata",
		"/var/lib/containers/storage/overlay-containers/{id}/userdata",
	}
}

// OCI enriches from runc's state and the container's OCI bundle:
// state.json gives the bundle and the creation time, the bundle's
// config.json the annotations through which containerd's CRI plugin and
// CRI-O record the container's name, pod, namespace and image.
type OCI struct {
	// HostRoot prefixes every path ("" and "/": none).
	HostRoot string
	// StateDirs are searched for <id>/state.json; nil means
	// DefaultStateDirs().
	StateDirs []StateDir
	// Bundles are tried, in order, when no state.json is found; nil
	// means DefaultBundles().
	Bundles []string
}

// Enrich implements Enricher.
func (o OCI) Enrich(c *event.Container) (bool, error) {
	if !isRuncID(c.ID) {
		return false, nil
	}
	dirs := o.StateDirs
	if dirs == nil {
		dirs = DefaultStateDirs()
	}
	for _, d := range dirs {
		data, err := readState(filepath.Join(o.HostRoot, d.Path, c.ID, "state.json"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return false, err
		}
		st, err := parseRuncState(data)
		if err != nil {
			return false, fmt.Errorf("container %s: %w", c.ID, err)
		}
		if c.StartTime.IsZero() {
			c.StartTime = st.Created
		}
		ann := st.Annotations
		if st.Bundle != "" {
			a, err := o.bundle(st.Bundle)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return true, fmt.Errorf("container %s: %w", c.ID, err)
			}
			ann = mergeLabels(a, ann)
		}
		applyAnnotations(c, ann)
		setEmpty(&c.Runtime, d.Runtime)
		return true, nil
	}
	bundles := o.Bundles
	if bundles == nil {
		bundles = DefaultBundles()
	}
	for _, b := range bundles {
		ann, err := o.bundle(strings.ReplaceAll(b, "{id}", c.ID))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("container %s: %w", c.ID, err)
		}
		applyAnnotations(c, ann)
		return true, nil
	}
	return false, nil
}

// bundle reads the annotations of the bundle at dir (a host path).
func (o OCI) bundle(dir string) (map[string]string, error) {
	data, err := readState(filepath.Join(o.HostRoot, dir, "config.json"))
	if err != nil {
		return nil, err
	}
	return parseBundleConfig(data)
}

// Docker enriches from Docker's own record of a container,
// <data root>/containers/<id>/config.v2.json: its name, image and labels,
// which under cri-dockerd carry the pod's name, namespace and uid.
type Docker struct {
	// HostRoot prefixes DataRoot ("" and "/": none).
	HostRoot string
	// DataRoot is dockerd's --data-root ("": /var/lib/docker).
	DataRoot string
}

// Enrich implements Enricher.
func (d Docker) Enrich(c *event.Container) (bool, error) {
	if !isHexID(c.ID) {
		return false, nil
	}
	root := d.DataRoot
	if root == "" {
		root = "/var/lib/docker"
	}
	data, err := readState(filepath.Join(d.HostRoot, root, "containers", c.ID, "config.v2.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	cfg, err := parseDockerConfig(data)
	if err != nil {
		return false, fmt.Errorf("container %s: %w", c.ID, err)
	}
	applyAnnotations(c, cfg.Labels) // the Kubernetes container name beats k8s_<container>_<pod>_...
	setEmpty(&c.Name, cfg.Name)
	setEmpty(&c.Image, cfg.Image)
	setEmpty(&c.ImageID, cfg.ImageID)
	setEmpty(&c.Runtime, "docker")
	if c.StartTime.IsZero() {
		c.StartTime = cfg.Started
	}
	if c.Labels == nil && len(cfg.Labels) > 0 {
		c.Labels = cfg.Labels
	}
	return true, nil
}

// maxStateFile bounds what is read of one runtime state file; real ones
// are a few tens of kilobytes.
const maxStateFile = 4 << 20

// readState reads a runtime state file of at most maxStateFile bytes.
func readState(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxStateFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxStateFile {
		return nil, fmt.Errorf("read %s: larger than %d bytes", path, maxStateFile)
	}
	return data, nil
}
