package kubetest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// kubeBinDir returns the directory holding the kube-* binaries:
// $VIGIL_KUBE_BIN, else the cache directory hack/kube/build.sh builds into.
func kubeBinDir() (string, error) {
	if d := os.Getenv("VIGIL_KUBE_BIN"); d != "" {
		return d, nil
	}
	script, err := buildScript()
	if err != nil {
		return "", err
	}
	var stderr bytes.Buffer
	cmd := exec.Command(script, "--print-dir")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s --print-dir: %w: %s", script, err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], nil
}

// buildScript finds hack/kube/build.sh in the nearest parent of the working
// directory (go test runs in the package directory) that has one.
func buildScript() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find hack/kube/build.sh: %w", err)
	}
	for {
		p := filepath.Join(dir, "hack", "kube", "build.sh")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("hack/kube/build.sh not found above the working directory; set VIGIL_KUBE_BIN")
		}
		dir = parent
	}
}

// kubeBinary returns the path of a kube-* binary, or an error that says how
// to build it.
func kubeBinary(name string) (string, error) {
	dir, err := kubeBinDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s not found in %s (run `make kube` or hack/kube/build.sh to build it, or set VIGIL_KUBE_BIN): %w", name, dir, err)
	}
	return p, nil
}

// etcdBinary returns $VIGIL_ETCD, else etcd from $PATH or /usr/bin.
func etcdBinary() (string, error) {
	if p := os.Getenv("VIGIL_ETCD"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("etcd"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/bin/etcd"); err == nil {
		return "/usr/bin/etcd", nil
	}
	return "", errors.New("etcd not found on PATH or in /usr/bin: install Debian's etcd-server (hack/install-deps.sh) or set VIGIL_ETCD")
}
