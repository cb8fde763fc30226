package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// OCI annotation and label keys the images carry.
const (
	labelSource   = "org.opencontainers.image.source"
	labelVersion  = "org.opencontainers.image.version"
	labelRevision = "org.opencontainers.image.revision"
	labelLicenses = "org.opencontainers.image.licenses"
	labelTitle    = "org.opencontainers.image.title"
	annoRefName   = "org.opencontainers.image.ref.name"
	// containerd names an image it imports from an OCI archive by this annotation.
	annoContainerdName = "io.containerd.image.name"
)

// nonRoot is the default user of the vigil image: the distroless "nonroot"
// id, numeric because the image has no /etc/passwd. The sensor DaemonSet
// overrides it with runAsUser: 0.
const nonRoot = "65532:65532"

// file is one entry of an image layer. Exactly one of Data, Link or Dir is set.
type file struct {
	Name string // path inside the image, without a leading slash
	Mode int64  // permission bits
	Data []byte
	Link string // symlink target
	Dir  bool
}

// layer packs files (and the directories above them) into a gzip-compressed
// OCI layer. Every header has uid/gid 0 and the modification time t, entries
// are sorted, and the gzip header carries no time or name, so the same files
// always give the same digest.
func layer(t time.Time, files ...file) (v1.Layer, error) {
	all := map[string]file{}
	for _, f := range files {
		all[f.Name] = f
		for d := path.Dir(f.Name); d != "." && d != "/"; d = path.Dir(d) {
			if _, ok := all[d]; !ok {
				all[d] = file{Name: d, Mode: 0o755, Dir: true}
			}
		}
	}
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)

	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	for _, n := range names {
		f := all[n]
		h := &tar.Header{Name: f.Name, Mode: f.Mode, ModTime: t, Format: tar.FormatPAX}
		switch {
		case f.Dir:
			h.Typeflag, h.Name = tar.TypeDir, f.Name+"/"
		case f.Link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, f.Link
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("tar header %s: %w", f.Name, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.Data); err != nil {
				return nil, fmt.Errorf("tar %s: %w", f.Name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	b := gz.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// spec describes one single-platform image.
type spec struct {
	Arch       string
	Created    time.Time
	Entrypoint []string
	User       string
	Labels     map[string]string
	CreatedBy  string // the history entry of the one layer
	Files      []file
}

// platform returns the OCI platform of a Go GOARCH on Linux.
func platform(arch string) v1.Platform {
	p := v1.Platform{OS: "linux", Architecture: arch}
	if arch == "arm64" {
		p.Variant = "v8" // what containerd normalizes arm64 to, and what buildx writes
	}
	return p
}

// image builds an OCI image of one layer on an empty base.
func image(s spec) (v1.Image, error) {
	l, err := layer(s.Created, s.Files...)
	if err != nil {
		return nil, fmt.Errorf("layer for %s: %w", s.Arch, err)
	}
	p := platform(s.Arch)
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.ConfigFile(base, &v1.ConfigFile{
		Architecture: p.Architecture,
		Variant:      p.Variant,
		OS:           p.OS,
		Created:      v1.Time{Time: s.Created},
		Config: v1.Config{
			Entrypoint: s.Entrypoint,
			User:       s.User,
			Env:        []string{"PATH=/usr/bin:/bin"},
			WorkingDir: "/",
			Labels:     s.Labels,
		},
		RootFS: v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, err
	}
	return mutate.Append(img, mutate.Addendum{
		Layer:     l,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: s.Created}, CreatedBy: s.CreatedBy},
	})
}

// index puts single-platform images into one OCI image index, annotated
// with the given labels (source, version, ...).
func index(annotations map[string]string, imgs map[string]v1.Image) (v1.ImageIndex, error) {
	archs := make([]string, 0, len(imgs))
	for a := range imgs {
		archs = append(archs, a)
	}
	sort.Strings(archs)
	var adds []mutate.IndexAddendum
	for _, a := range archs {
		p := platform(a)
		adds = append(adds, mutate.IndexAddendum{Add: imgs[a], Descriptor: v1.Descriptor{Platform: &p}})
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	idx = mutate.AppendManifests(idx, adds...)
	ii, ok := mutate.Annotations(idx, annotations).(v1.ImageIndex)
	if !ok {
		return nil, fmt.Errorf("annotate index: unexpected type")
	}
	return ii, nil
}

// readFile reads a binary to put into an image.
func readFile(p string) ([]byte, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read binary: %w", err)
	}
	return b, nil
}
