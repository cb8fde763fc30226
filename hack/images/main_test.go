package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// fakeConfig returns a config that builds from tiny fake binaries in dir,
// so the tests never compile Vigil.
func fakeConfig(t *testing.T, out string) config {
	t.Helper()
	bins, nodeBins := map[string]string{}, map[string]string{}
	for _, arch := range []string{"amd64", "arm64"} {
		for name, m := range map[string]map[string]string{"vigil": bins, "vigil-node": nodeBins} {
			p := filepath.Join(t.TempDir(), name+"-"+arch)
			if err := os.WriteFile(p, []byte("fake "+name+" for "+arch), 0o644); err != nil {
				t.Fatal(err)
			}
			m[arch] = p
		}
	}
	return config{
		Out:        out,
		Repo:       "vigil.dev/vigil",
		VictimRepo: "vigil.dev/victim",
		Version:    "v1.2.3",
		Revision:   "0123456789abcdef0123456789abcdef01234567",
		Source:     "https://github.com/vigil-sec/vigil",
		Licenses:   "NOASSERTION",
		Created:    time.Unix(1700000000, 0).UTC(),
		Archs:      []string{"amd64", "arm64"},
		Binaries:   bins,
		NodeBins:   nodeBins,
	}
}

// files reads the one layer of img into name -> header, with contents.
func files(t *testing.T, img v1.Image) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 {
		t.Fatalf("got %d layers, want 1", len(ls))
	}
	if mt, _ := ls[0].MediaType(); mt != types.OCILayer {
		t.Errorf("layer media type %s, want %s", mt, types.OCILayer)
	}
	rc, err := ls[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	hs, data := map[string]*tar.Header{}, map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		hs[h.Name] = h
		data[h.Name], _ = io.ReadAll(tr)
	}
	return hs, data
}

func TestVigilImage(t *testing.T) {
	out := t.TempDir()
	cfg := fakeConfig(t, out)
	if err := run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	idx, tag, err := readLayout(filepath.Join(out, "vigil"))
	if err != nil {
		t.Fatal(err)
	}
	if tag != "v1.2.3" {
		t.Errorf("layout tag %q, want v1.2.3", tag)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != types.OCIImageIndex {
		t.Errorf("index media type %s", im.MediaType)
	}
	if im.Annotations[labelVersion] != "v1.2.3" || im.Annotations[labelSource] != cfg.Source {
		t.Errorf("index annotations %v", im.Annotations)
	}
	wantPlatforms := []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64", Variant: "v8"}}
	if len(im.Manifests) != len(wantPlatforms) {
		t.Fatalf("index has %d manifests, want %d", len(im.Manifests), len(wantPlatforms))
	}
	for i, want := range wantPlatforms {
		d := im.Manifests[i]
		if d.Platform == nil || !d.Platform.Equals(want) {
			t.Errorf("manifest %d platform %v, want %v", i, d.Platform, want)
		}
		if d.MediaType != types.OCIManifestSchema1 {
			t.Errorf("manifest %d media type %s", i, d.MediaType)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.OS != "linux" || cf.Architecture != want.Architecture || cf.Variant != want.Variant {
			t.Errorf("config platform %s/%s/%s, want %v", cf.OS, cf.Architecture, cf.Variant, want)
		}
		if got := cf.Config.Entrypoint; len(got) != 1 || got[0] != "/usr/bin/vigil" {
			t.Errorf("entrypoint %q", got)
		}
		if cf.Config.User != "65532:65532" {
			t.Errorf("user %q, want 65532:65532", cf.Config.User)
		}
		if !cf.Created.Time.Equal(cfg.Created) {
			t.Errorf("created %v, want %v", cf.Created, cfg.Created)
		}
		for k, v := range map[string]string{
			labelSource: cfg.Source, labelVersion: "v1.2.3", labelRevision: cfg.Revision, labelLicenses: "NOASSERTION",
		} {
			if cf.Config.Labels[k] != v {
				t.Errorf("label %s = %q, want %q", k, cf.Config.Labels[k], v)
			}
		}
		hs, data := files(t, img)
		for _, bin := range []string{"vigil", "vigil-node"} {
			h := hs["usr/bin/"+bin]
			if h == nil {
				t.Fatalf("no usr/bin/%s in %v", bin, hs)
			}
			if h.Typeflag != tar.TypeReg || h.Mode != 0o755 || h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(cfg.Created) {
				t.Errorf("usr/bin/%s: type %c mode %o uid %d gid %d mtime %v", bin, h.Typeflag, h.Mode, h.Uid, h.Gid, h.ModTime)
			}
			if want := "fake " + bin + " for " + want.Architecture; string(data["usr/bin/"+bin]) != want {
				t.Errorf("usr/bin/%s holds %q, want %q", bin, data["usr/bin/"+bin], want)
			}
		}
		for _, dir := range []string{"usr/", "usr/bin/"} {
			if h := hs[dir]; h == nil || h.Typeflag != tar.TypeDir || h.Mode != 0o755 {
				t.Errorf("directory %s: %+v", dir, h)
			}
		}
		if _, ok := hs["etc/passwd"]; ok || len(hs) != 4 {
			t.Errorf("layer holds %d entries, want usr/, usr/bin/, usr/bin/vigil, usr/bin/vigil-node", len(hs))
		}

		// The per-platform tarball holds the same image under the tag.
		tagged := name.MustParseReference("vigil.dev/vigil:v1.2.3").(name.Tag)
		ti, err := tarball.ImageFromPath(filepath.Join(out, "vigil-"+want.Architecture+".tar"), &tagged)
		if err != nil {
			t.Fatal(err)
		}
		if a, b := mustConfigName(t, ti), mustConfigName(t, img); a != b {
			t.Errorf("tarball config %s, layout config %s", a, b)
		}
	}
}

func mustConfigName(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestReproducible builds twice into different directories: the index
// digest and every output file must come out byte for byte the same.
func TestReproducible(t *testing.T) {
	cfg := fakeConfig(t, t.TempDir())
	var digests []v1.Hash
	var tars [][]byte
	for _, out := range []string{t.TempDir(), t.TempDir()} {
		cfg.Out = out
		if err := run(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		idx, _, err := readLayout(filepath.Join(out, "vigil"))
		if err != nil {
			t.Fatal(err)
		}
		d, err := idx.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d)
		b, err := os.ReadFile(filepath.Join(out, "vigil-arm64.tar"))
		if err != nil {
			t.Fatal(err)
		}
		tars = append(tars, b)
	}
	if digests[0] != digests[1] {
		t.Errorf("index digests differ: %s, %s", digests[0], digests[1])
	}
	if !bytes.Equal(tars[0], tars[1]) {
		t.Errorf("vigil-arm64.tar differs between builds")
	}

	// A different creation time must show in the digest, or the test above proves nothing.
	cfg.Out, cfg.Created = t.TempDir(), cfg.Created.Add(time.Second)
	if err := run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	idx, _, err := readLayout(filepath.Join(cfg.Out, "vigil"))
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := idx.Digest(); d == digests[0] {
		t.Errorf("digest %s did not change with the creation time", d)
	}
}

func TestVictimImage(t *testing.T) {
	// Any ELF binary of this machine stands in for busybox.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	arch, err := elfArch(exe)
	if err != nil {
		t.Skip(err)
	}
	cfg := fakeConfig(t, t.TempDir())
	cfg.Archs, cfg.Busybox = []string{"amd64"}, exe
	if err := run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	idx, tag, err := readLayout(filepath.Join(cfg.Out, "victim"))
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if tag != "v1.2.3" || len(im.Manifests) != 1 || im.Manifests[0].Platform.Architecture != arch {
		t.Fatalf("victim layout: tag %q, manifests %+v", tag, im.Manifests)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.Entrypoint[0] != "/bin/sh" || cf.Config.User != "" {
		t.Errorf("victim entrypoint %q user %q", cf.Config.Entrypoint, cf.Config.User)
	}
	hs, _ := files(t, img)
	if h := hs["bin/busybox"]; h == nil || h.Mode != 0o755 {
		t.Errorf("bin/busybox: %+v", h)
	}
	for _, applet := range []string{"sh", "httpd", "nc", "wget", "base64"} {
		if h := hs["bin/"+applet]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "busybox" {
			t.Errorf("bin/%s: %+v", applet, h)
		}
	}
	if h := hs["tmp/"]; h == nil || h.Mode != 0o1777 {
		t.Errorf("tmp/: %+v", h)
	}
	if _, err := os.Stat(filepath.Join(cfg.Out, "victim-"+arch+".tar")); err != nil {
		t.Error(err)
	}
}

func TestFlags(t *testing.T) {
	var b binFlag
	if err := b.Set("arm64=/tmp/vigil"); err != nil || b["arm64"] != "/tmp/vigil" {
		t.Errorf("Set: %v %v", err, b)
	}
	for _, bad := range []string{"arm64", "=x", "arm64="} {
		if err := b.Set(bad); err == nil {
			t.Errorf("Set(%q) succeeded", bad)
		}
	}
	for _, tc := range []struct {
		in   string
		want int64
		err  bool
	}{{"", 0, false}, {"1700000000", 1700000000, false}, {"yesterday", 0, true}} {
		got, err := sourceDate(tc.in)
		if (err != nil) != tc.err || (!tc.err && got.Unix() != tc.want) {
			t.Errorf("sourceDate(%q) = %v, %v", tc.in, got, err)
		}
	}
	cfg := fakeConfig(t, t.TempDir())
	cfg.Version = "not a tag!"
	if err := run(context.Background(), cfg); err == nil {
		t.Error("run accepted an invalid tag")
	}
}

// TestPush pushes a built layout to an in-memory registry and reads the
// index back by its tag: same digest, both platforms.
func TestPush(t *testing.T) {
	cfg := fakeConfig(t, t.TempDir())
	if err := run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	local, _, err := readLayout(filepath.Join(cfg.Out, "vigil"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	repo := strings.TrimPrefix(srv.URL, "http://") + "/acme/vigil"
	if err := pushIndex(context.Background(), filepath.Join(cfg.Out, "vigil"), repo); err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewTag(repo + ":v1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Index(ref)
	if err != nil {
		t.Fatal(err)
	}
	gd, _ := got.Digest()
	ld, _ := local.Digest()
	if gd != ld {
		t.Errorf("pushed index %s, local %s", gd, ld)
	}
	im, err := got.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		if _, err := got.Image(d.Digest); err != nil {
			t.Errorf("pushed %s: %v", d.Platform, err)
		}
	}
	if len(im.Manifests) != 2 {
		t.Errorf("pushed %d manifests, want 2", len(im.Manifests))
	}

	if err := pushIndex(context.Background(), filepath.Join(t.TempDir(), "none"), repo); err == nil {
		t.Error("pushIndex succeeded without a layout")
	}
}
