// Command images builds Vigil's container images without a Docker engine:
// the vigil binary, cross-compiled for linux/amd64 and linux/arm64 with
// CGO_ENABLED=0, and beside it vigil-node, the node build (-tags node: the
// sensor alone, which the sensor DaemonSet runs), on an empty base, as a multi-arch OCI image layout
// (build/images/vigil) and one docker-archive tarball per platform
// (build/images/vigil-<arch>.tar) for `ctr -n k8s.io images import`.
// With -busybox it also builds the victim image the simulator and e2e
// tests run (build/images/victim). With -push it pushes the layout's
// index to a registry instead. `make images` and `make push` run it.
//
// Images are reproducible: timestamps come from SOURCE_DATE_EPOCH (the
// Makefile sets the commit time; 0 without it), so the same binaries and
// flags always give the same index digest.
package main

import (
	"context"
	"debug/elf"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// config is everything one run needs; flags fill it.
type config struct {
	Out        string            // output directory: layouts, tarballs, built binaries
	Repo       string            // repository the vigil image is tagged with, e.g. vigil.dev/vigil
	VictimRepo string            // repository of the victim image
	Version    string            // image tag and org.opencontainers.image.version
	Revision   string            // org.opencontainers.image.revision (a commit)
	Source     string            // org.opencontainers.image.source
	Licenses   string            // org.opencontainers.image.licenses (SPDX)
	Created    time.Time         // every timestamp in the images
	Archs      []string          // GOARCHes to build
	Binaries   map[string]string // prebuilt vigil binaries by GOARCH; the rest are built
	NodeBins   map[string]string // prebuilt node builds (-tags node) by GOARCH; the rest are built
	VersionVar string            // if set, the binary is linked with -X VersionVar=Version
	Busybox    string            // a static busybox binary: also build the victim image
}

func main() {
	var cfg config
	var bins, nodeBins binFlag
	var archs, push string
	flag.StringVar(&cfg.Out, "out", "build/images", "output `dir`ectory")
	flag.StringVar(&cfg.Repo, "repo", "vigil.dev/vigil", "repository the vigil image is tagged with")
	flag.StringVar(&cfg.VictimRepo, "victim-repo", "vigil.dev/victim", "repository the victim image is tagged with")
	flag.StringVar(&cfg.Version, "version", "dev", "image tag and version label")
	flag.StringVar(&cfg.Revision, "revision", "", "commit for the revision label")
	flag.StringVar(&cfg.Source, "source", "https://github.com/vigil-sec/vigil", "source label")
	flag.StringVar(&cfg.Licenses, "licenses", "NOASSERTION", "SPDX expression for the licenses label")
	flag.StringVar(&archs, "arch", "amd64,arm64", "comma-separated GOARCHes")
	flag.Var(&bins, "bin", "`arch=path` of a prebuilt vigil binary (repeatable); other arches are built")
	flag.Var(&nodeBins, "node-bin", "`arch=path` of a prebuilt node build of vigil, -tags node (repeatable); other arches are built")
	flag.StringVar(&cfg.VersionVar, "version-var", "", "Go `symbol` set to -version with -ldflags -X (Vigil has none yet)")
	flag.StringVar(&cfg.Busybox, "busybox", "", "`path` of a static busybox: also build the victim image for its architecture")
	flag.StringVar(&push, "push", "", "push the index in -out to `host/repo` (tagged with the layout's version) instead of building")
	flag.Parse()
	cfg.Archs = strings.Split(archs, ",")
	cfg.Binaries, cfg.NodeBins = bins, nodeBins
	var err error
	if cfg.Created, err = sourceDate(os.Getenv("SOURCE_DATE_EPOCH")); err != nil {
		fatal(err)
	}
	ctx := context.Background()
	if push != "" {
		err = pushIndex(ctx, filepath.Join(cfg.Out, "vigil"), push)
	} else {
		err = run(ctx, cfg)
	}
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "images:", err)
	os.Exit(1)
}

// binFlag collects -bin arch=path.
type binFlag map[string]string

func (b *binFlag) String() string { return fmt.Sprint(map[string]string(*b)) }

func (b *binFlag) Set(s string) error {
	arch, p, ok := strings.Cut(s, "=")
	if !ok || arch == "" || p == "" {
		return fmt.Errorf("want arch=path, got %q", s)
	}
	if *b == nil {
		*b = binFlag{}
	}
	(*b)[arch] = p
	return nil
}

// sourceDate parses SOURCE_DATE_EPOCH; empty means the Unix epoch.
func sourceDate(s string) (time.Time, error) {
	if s == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH: %w", err)
	}
	return time.Unix(n, 0).UTC(), nil
}

// run builds the images cfg asks for and writes them under cfg.Out.
func run(ctx context.Context, cfg config) error {
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return err
	}
	tag, err := name.NewTag(cfg.Repo+":"+cfg.Version, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("image name: %w", err)
	}
	labels := map[string]string{
		labelTitle:    "vigil",
		labelSource:   cfg.Source,
		labelVersion:  cfg.Version,
		labelRevision: cfg.Revision,
		labelLicenses: cfg.Licenses,
	}
	if cfg.Revision == "" {
		delete(labels, labelRevision)
	}
	imgs := map[string]v1.Image{}
	for _, arch := range cfg.Archs {
		data, err := vigilBinary(ctx, cfg, arch, "")
		if err != nil {
			return err
		}
		node, err := vigilBinary(ctx, cfg, arch, "node")
		if err != nil {
			return err
		}
		imgs[arch], err = image(spec{
			Arch:       arch,
			Created:    cfg.Created,
			Entrypoint: []string{"/usr/bin/vigil"},
			User:       nonRoot,
			Labels:     labels,
			CreatedBy:  "hack/images: COPY vigil vigil-node /usr/bin/",
			Files: []file{
				{Name: "usr/bin/vigil", Mode: 0o755, Data: data},
				{Name: "usr/bin/vigil-node", Mode: 0o755, Data: node},
			},
		})
		if err != nil {
			return err
		}
	}
	if err := write(cfg.Out, "vigil", tag, labels, imgs); err != nil {
		return err
	}
	if cfg.Busybox != "" {
		return victim(cfg)
	}
	return nil
}

// vigilBinary returns the vigil binary for arch built with tags ("" for
// the full binary, "node" for the node build): the prebuilt one cfg names,
// else one built under cfg.Out.
func vigilBinary(ctx context.Context, cfg config, arch, tags string) ([]byte, error) {
	prebuilt, name := cfg.Binaries, "vigil"
	if tags == "node" {
		prebuilt, name = cfg.NodeBins, "vigil-node"
	}
	bin, ok := prebuilt[arch]
	if !ok {
		bin = filepath.Join(cfg.Out, "bin", name+"-linux-"+arch)
		if err := buildVigil(ctx, arch, tags, bin, cfg); err != nil {
			return nil, err
		}
	}
	return readFile(bin)
}

// buildVigil cross-compiles ./cmd/vigil with build tags for linux/arch
// into out.
func buildVigil(ctx context.Context, arch, tags, out string, cfg config) error {
	ldflags := "-s -w"
	if cfg.VersionVar != "" {
		ldflags += " -X " + cfg.VersionVar + "=" + cfg.Version
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, goCmd(), "build", "-trimpath", "-tags", tags, "-ldflags", ldflags, "-o", out, "./cmd/vigil")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build vigil for %s: %w", arch, err)
	}
	fmt.Fprintf(os.Stderr, "built %s in %s\n", out, time.Since(start).Round(time.Second))
	return nil
}

// goCmd is $GO or the go on PATH (`go run` puts its own toolchain first).
func goCmd() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}

// victim builds the victim image: Debian's busybox-static with the applets
// the simulator's scenarios call, for the architecture of that binary.
func victim(cfg config) error {
	data, err := readFile(cfg.Busybox)
	if err != nil {
		return err
	}
	arch, err := elfArch(cfg.Busybox)
	if err != nil {
		return err
	}
	tag, err := name.NewTag(cfg.VictimRepo+":"+cfg.Version, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("victim image name: %w", err)
	}
	files := []file{
		{Name: "bin/busybox", Mode: 0o755, Data: data},
		{Name: "tmp", Mode: 0o1777, Dir: true},
	}
	for _, applet := range []string{"sh", "httpd", "nc", "wget", "base64"} {
		files = append(files, file{Name: "bin/" + applet, Mode: 0o777, Link: "busybox"})
	}
	labels := map[string]string{
		labelTitle:    "vigil-victim",
		labelSource:   cfg.Source,
		labelVersion:  cfg.Version,
		labelLicenses: "GPL-2.0-only", // busybox
	}
	img, err := image(spec{
		Arch:       arch,
		Created:    cfg.Created,
		Entrypoint: []string{"/bin/sh"},
		Labels:     labels,
		CreatedBy:  "hack/images: COPY busybox /bin/busybox",
		Files:      files,
	})
	if err != nil {
		return err
	}
	return write(cfg.Out, "victim", tag, labels, map[string]v1.Image{arch: img})
}

// elfArch returns the GOARCH of an ELF binary.
func elfArch(p string) (string, error) {
	f, err := elf.Open(p)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", p, err)
	}
	defer f.Close()
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	}
	return "", fmt.Errorf("%s: unsupported machine %s", p, f.Machine)
}

// write stores imgs as an image index in the OCI layout out/base (replacing
// what was there) and each image as out/base-<arch>.tar, tagged tag.
func write(out, base string, tag name.Tag, annotations map[string]string, imgs map[string]v1.Image) error {
	idx, err := index(annotations, imgs)
	if err != nil {
		return err
	}
	dir := filepath.Join(out, base)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("write layout %s: %w", dir, err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		annoRefName:        tag.TagStr(),
		annoContainerdName: tag.Name(),
	})); err != nil {
		return fmt.Errorf("write layout %s: %w", dir, err)
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s %s@%s\n", dir, tag.Name(), d)
	archs := make([]string, 0, len(imgs))
	for a := range imgs {
		archs = append(archs, a)
	}
	sort.Strings(archs)
	for _, a := range archs {
		tf := filepath.Join(out, base+"-"+a+".tar")
		if err := tarball.WriteToFile(tf, tag, imgs[a]); err != nil {
			return fmt.Errorf("write %s: %w", tf, err)
		}
		fmt.Printf("%s %s (linux/%s)\n", tf, tag.Name(), a)
	}
	return nil
}

// pushIndex pushes the image index of the layout dir to repo, tagged with
// the tag the layout records, using the default keychain (docker config,
// credential helpers).
func pushIndex(ctx context.Context, dir, repo string) error {
	idx, tagStr, err := readLayout(dir)
	if err != nil {
		return err
	}
	ref, err := name.NewTag(repo + ":" + tagStr)
	if err != nil {
		return fmt.Errorf("push reference: %w", err)
	}
	if err := remote.WriteIndex(ref, idx, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	d, _ := idx.Digest()
	fmt.Printf("pushed %s@%s\n", ref, d)
	return nil
}

// readLayout returns the one image index in an OCI layout written by write,
// and its tag.
func readLayout(dir string) (v1.ImageIndex, string, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, "", fmt.Errorf("open layout %s (run make images first): %w", dir, err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		return nil, "", err
	}
	m, err := top.IndexManifest()
	if err != nil {
		return nil, "", err
	}
	if len(m.Manifests) != 1 {
		return nil, "", fmt.Errorf("layout %s: want 1 index, found %d entries", dir, len(m.Manifests))
	}
	idx, err := top.ImageIndex(m.Manifests[0].Digest)
	if err != nil {
		return nil, "", fmt.Errorf("layout %s: %w", dir, err)
	}
	return idx, m.Manifests[0].Annotations[annoRefName], nil
}
