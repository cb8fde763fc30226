package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/deploy"
	"github.com/vigil-sec/vigil/internal/audit"
)

const enableToken = "vgl_c1uster-t0ken-never-shown"

// enableNode lays out a control-plane node in a temp dir: the kubeadm
// manifest (mode 0600, as kubeadm writes it), a token and a CA file.
type enableNode struct {
	dir, manifests, manifest, etc, logDir, backup, tokenFile, caFile string
	original                                                         []byte
}

func newEnableNode(t *testing.T) *enableNode {
	t.Helper()
	dir := t.TempDir()
	n := &enableNode{
		dir:       dir,
		manifests: filepath.Join(dir, "etc/kubernetes/manifests"),
		etc:       filepath.Join(dir, "etc/kubernetes"),
		logDir:    filepath.Join(dir, "var/log/kubernetes/audit"),
		backup:    filepath.Join(dir, "var/log/kube-apiserver.yaml.backup"),
		tokenFile: filepath.Join(dir, "token"),
		caFile:    filepath.Join(dir, "ca.crt"),
	}
	n.manifest = filepath.Join(n.manifests, "kube-apiserver.yaml")
	var err error
	if n.original, err = os.ReadFile("../audit/testdata/kube-apiserver.yaml"); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(n.manifests, 0o700); err != nil {
		t.Fatal(err)
	}
	for path, data := range map[string]string{
		n.manifest:  string(n.original),
		n.tokenFile: enableToken + "\n",
		n.caFile:    "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
	} {
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

func (n *enableNode) args(extra ...string) []string {
	return append([]string{"audit", "enable",
		"--manifest", n.manifest, "--policy-dir", n.etc, "--log-dir", n.logDir, "--backup", n.backup,
		"--webhook-url", "https://vigil:7777/api/v1/audit", "--token-file", n.tokenFile, "--ca-file", n.caFile,
	}, extra...)
}

// run runs the CLI and fails the test if the token shows anywhere.
func (n *enableNode) run(t *testing.T, extra ...string) (string, error) {
	t.Helper()
	out, stderr, err := runSplit(t, n.args(extra...)...)
	for _, s := range []string{out, stderr, errString(err)} {
		if strings.Contains(s, enableToken) {
			t.Fatalf("the token was printed:\n%s", s)
		}
	}
	if stderr != "" {
		t.Logf("stderr: %s", stderr)
	}
	return out, err
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (n *enableNode) read(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func (n *enableNode) mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func TestAuditEnable(t *testing.T) {
	n := newEnableNode(t)
	policy := filepath.Join(n.etc, "audit-policy.yaml")
	kubeconfig := filepath.Join(n.etc, "vigil-audit-webhook.kubeconfig")

	// Dry run: the diff and the files, nothing written.
	out, err := n.run(t, "--dry-run")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Would write the audit policy: " + policy,
		"Would write the webhook kubeconfig (holds the token; not shown): " + kubeconfig,
		"Would write the backup of " + n.manifest + ": " + n.backup,
		"--- " + n.manifest + "\n+++ " + n.manifest + " (audit enabled)\n@@ ",
		"+    - --audit-policy-file=" + policy + "\n",
		"+    - --audit-webhook-config-file=" + kubeconfig + "\n",
		"+      path: " + n.logDir + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	if got := n.read(t, n.manifest); !bytes.Equal(got, n.original) {
		t.Error("dry run changed the manifest")
	}
	for _, p := range []string{policy, kubeconfig, n.backup, n.logDir} {
		if exists(p) {
			t.Errorf("dry run created %s", p)
		}
	}

	// Enable.
	out, err = n.run(t)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("enable:\n%s", out)
	want, err := audit.Enable(n.original, audit.EnableOptions{PolicyFile: policy, LogDir: n.logDir, WebhookConfigFile: kubeconfig})
	if err != nil {
		t.Fatal(err)
	}
	if got := n.read(t, n.manifest); !bytes.Equal(got, want) {
		t.Errorf("manifest:\n%s", audit.Diff("want", "got", want, got))
	}
	if m := n.mode(t, n.manifest); m != 0o600 {
		t.Errorf("manifest mode %04o, want 0600 as before", m)
	}
	if got := n.read(t, policy); !bytes.Equal(got, deploy.AuditPolicy) {
		t.Error("policy file is not deploy/audit-policy.yaml")
	}
	if kc := n.read(t, kubeconfig); !bytes.Contains(kc, []byte("token: "+enableToken)) || !bytes.Contains(kc, []byte("server: https://vigil:7777/api/v1/audit")) {
		t.Errorf("kubeconfig lacks the server or the token")
	}
	if m := n.mode(t, kubeconfig); m != 0o600 {
		t.Errorf("kubeconfig mode %04o, want 0600", m)
	}
	if got := n.read(t, n.backup); !bytes.Equal(got, n.original) {
		t.Error("backup is not the original manifest")
	}
	if !exists(n.logDir) {
		t.Error("log directory not created")
	}
	if strings.Contains(out, "! ") {
		t.Errorf("pristine manifest, yet replacements reported:\n%s", out)
	}
	leftovers, _ := filepath.Glob(filepath.Join(n.manifests, ".*"))
	if len(leftovers) > 0 {
		t.Errorf("temporary files left in the static pod directory: %v", leftovers)
	}

	// Again: nothing to do, and it says so.
	enabled := n.read(t, n.manifest)
	out, err = n.run(t)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "Nothing changed") {
		t.Errorf("second run:\n%s", out)
	}
	if got := n.read(t, n.manifest); !bytes.Equal(got, enabled) {
		t.Error("second run changed the manifest")
	}
	if got := n.read(t, n.backup); !bytes.Equal(got, n.original) {
		t.Error("second run replaced the backup")
	}

	// Rollback: dry run first, then for real.
	out, err = n.run(t, "--rollback", "--dry-run")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "Would restore "+n.manifest) || !strings.Contains(out, "-    - --audit-policy-file=") {
		t.Errorf("rollback dry run:\n%s", out)
	}
	if got := n.read(t, n.manifest); !bytes.Equal(got, enabled) {
		t.Error("rollback dry run changed the manifest")
	}
	if _, err = n.run(t, "--rollback"); err != nil {
		t.Fatal(err)
	}
	if got := n.read(t, n.manifest); !bytes.Equal(got, n.original) {
		t.Errorf("rollback did not restore the original bytes:\n%s", audit.Diff("original", "restored", n.original, got))
	}
	if m := n.mode(t, n.manifest); m != 0o600 {
		t.Errorf("manifest mode after rollback %04o, want 0600", m)
	}
	if exists(kubeconfig) {
		t.Error("rollback left the webhook kubeconfig (it holds the token)")
	}
	out, err = n.run(t, "--rollback")
	if err != nil || !strings.HasPrefix(out, "Nothing changed") {
		t.Errorf("second rollback: %v\n%s", err, out)
	}
}

// TestAuditEnableReplaces: a hand-made audit setup is taken over, and what
// was replaced is reported.
func TestAuditEnableReplaces(t *testing.T) {
	n := newEnableNode(t)
	old := strings.Replace(string(n.original), "    - --allow-privileged=true\n",
		"    - --allow-privileged=true\n    - --audit-log-maxage=7\n    - --audit-policy-file=/etc/kubernetes/old-policy.yaml\n", 1)
	if err := os.WriteFile(n.manifest, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := n.run(t, "--webhook-url", "", "--token-file", "", "--ca-file", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"! replace flag audit-log-maxage: --audit-log-maxage=7 -> --audit-log-maxage=30",
		"! replace flag audit-policy-file: --audit-policy-file=/etc/kubernetes/old-policy.yaml -> --audit-policy-file=" + filepath.Join(n.etc, "audit-policy.yaml"),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if exists(filepath.Join(n.etc, "vigil-audit-webhook.kubeconfig")) {
		t.Error("webhook kubeconfig written without --webhook-url")
	}
}

func TestAuditEnableRefuses(t *testing.T) {
	n := newEnableNode(t)
	for name, args := range map[string][]string{
		"backup in the static pod directory": {"--backup", filepath.Join(n.manifests, "kube-apiserver.yaml.backup")},
		"no backend":                         {"--log=false", "--webhook-url", ""},
		"plain http webhook":                 {"--webhook-url", "http://vigil:7777/api/v1/audit"},
		"no token":                           {"--token-file", filepath.Join(n.dir, "missing")},
		"not kube-apiserver":                 {"--manifest", n.caFile},
		"rollback without a backup":          {"--rollback"},
	} {
		if _, err := n.run(t, args...); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if got := n.read(t, n.manifest); !bytes.Equal(got, n.original) {
		t.Error("a refused run changed the manifest")
	}
	if exists(filepath.Join(n.etc, "audit-policy.yaml")) {
		t.Error("a refused run wrote the policy")
	}
}
