package node

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// CNIBinDir is where Debian's containernetworking-plugins installs the plugins.
const CNIBinDir = "/usr/lib/cni"

// tool is a program the node runs, and the Debian package that has it.
type tool struct{ name, pkg string }

var tools = []tool{
	{"containerd", "containerd"},
	{"containerd-shim-runc-v2", "containerd"},
	{"ctr", "containerd"},
	{"runc", "runc"},
	{"etcd", "etcd-server"},
	{"iptables", "iptables"},
	{"ip6tables", "iptables"},
	{"iptables-save", "iptables"},
	{"nft", "nftables"},
	{"conntrack", "conntrack"},
	{"ip", "iproute2"},
	{"mount", "mount"},
}

// cniPlugins are the CNI plugins the node's network configuration uses.
var cniPlugins = []string{"bridge", "host-local", "loopback"}

// Check returns one line per missing program, CNI plugin or file the node
// needs, each naming the Debian package that provides it; none means the
// machine can run a node. It installs nothing.
func Check() []string {
	var missing []string
	for _, tl := range tools {
		if _, err := lookPath(tl.name); err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", tl.name, tl.pkg))
		}
	}
	for _, p := range cniPlugins {
		if _, err := os.Stat(filepath.Join(CNIBinDir, p)); err != nil {
			missing = append(missing, fmt.Sprintf("CNI plugin %s in %s (Debian package containernetworking-plugins)", p, CNIBinDir))
		}
	}
	if _, err := os.Stat(busyboxPath); err != nil {
		missing = append(missing, fmt.Sprintf("%s (Debian package busybox-static)", busyboxPath))
	}
	return missing
}

// CheckError is Check as an error that says how to fix it, or nil.
func CheckError() error {
	m := Check()
	if len(m) == 0 {
		return nil
	}
	return fmt.Errorf("the machine lacks what a node needs (run hack/install-deps.sh, or `make deps`):\n  %s", strings.Join(m, "\n  "))
}

// lookPath finds a program on PATH or in the sbin directories, which a
// non-login root shell may not have on PATH.
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

// run runs a command to completion and returns its combined output.
func run(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
