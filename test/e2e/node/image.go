package node

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// busyboxPath is Debian busybox-static's binary, the one program in the
// images the harness builds.
const busyboxPath = "/bin/busybox"

// Images the node imports before the kubelet starts.
const (
	// PauseImage is the CRI sandbox image: busybox sleeping. It needs no
	// more than to hold the pod's namespaces open.
	PauseImage = "vigil.local/e2e/pause:1"
	// BusyboxImage runs `sleep 3600` by default and has busybox's applets
	// (sh, wget, nc, ...) on PATH.
	BusyboxImage = "vigil.local/e2e/busybox:1"
)

// busyboxApplets are linked to busybox in /bin of the busybox images.
var busyboxApplets = []string{"sh", "sleep", "echo", "cat", "ls", "hostname", "wget", "nc", "ip", "ps", "id", "true", "false", "env", "httpd", "mkdir", "ln"}

// Image describes an image built by BuildImage.
type Image struct {
	Ref        string            // e.g. vigil.local/e2e/busybox:1
	Files      map[string]string // path in the image -> file on this machine
	Symlinks   map[string]string // path in the image -> link target
	Entrypoint []string
	Cmd        []string
}

// BusyboxImageSpec is an image of Debian's static busybox with entrypoint
// args (e.g. sleep 3600) under ref.
func BusyboxImageSpec(ref string, entrypoint ...string) Image {
	links := map[string]string{}
	for _, a := range busyboxApplets {
		links["bin/"+a] = "busybox"
	}
	return Image{
		Ref:        ref,
		Files:      map[string]string{"bin/busybox": busyboxPath},
		Symlinks:   links,
		Entrypoint: entrypoint,
	}
}

// BuildImage writes img as a docker-format image tarball (one layer, the
// machine's architecture) to path, ready for `ctr images import`.
func BuildImage(img Image, path string) error {
	ref, err := name.ParseReference(img.Ref)
	if err != nil {
		return fmt.Errorf("image %s: %w", img.Ref, err)
	}
	layerTar, err := layerTar(img)
	if err != nil {
		return fmt.Errorf("image %s: %w", img.Ref, err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return fmt.Errorf("image %s: layer: %w", img.Ref, err)
	}
	image, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return fmt.Errorf("image %s: append layer: %w", img.Ref, err)
	}
	cf, err := image.ConfigFile()
	if err != nil {
		return fmt.Errorf("image %s: config: %w", img.Ref, err)
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = runtime.GOARCH
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cf.Config = v1.Config{
		Entrypoint: img.Entrypoint,
		Cmd:        img.Cmd,
		Env:        []string{"PATH=/bin"},
	}
	image, err = mutate.ConfigFile(image, cf)
	if err != nil {
		return fmt.Errorf("image %s: set config: %w", img.Ref, err)
	}
	if err := tarball.WriteToFile(path, ref, image); err != nil {
		return fmt.Errorf("image %s: write %s: %w", img.Ref, path, err)
	}
	return nil
}

// layerTar builds the image's single layer: its files, its symlinks and the
// directories a container expects.
func layerTar(img Image) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	for _, d := range []string{"bin/", "dev/", "etc/", "proc/", "sys/", "tmp/", "var/", "var/run/"} {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: mode, ModTime: epoch}); err != nil {
			return nil, err
		}
	}
	for _, dst := range slices.Sorted(maps.Keys(img.Files)) {
		src := img.Files[dst]
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", src, err)
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: dst, Mode: 0o755, Size: int64(len(data)), ModTime: epoch}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	for _, dst := range slices.Sorted(maps.Keys(img.Symlinks)) {
		target := img.Symlinks[dst]
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: dst, Linkname: target, Mode: 0o777, ModTime: epoch}); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
