package audit

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

var allBackends = EnableOptions{PolicyFile: DefaultPolicyFile, LogDir: DefaultLogDir, WebhookConfigFile: DefaultWebhookConfigFile}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestEnableGolden pins what enable does to a kubeadm v1.36 manifest.
func TestEnableGolden(t *testing.T) {
	in := readTestdata(t, "kube-apiserver.yaml")
	out, changes, err := EnableChanges(in, allBackends)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "kube-apiserver.enabled.yaml")
	if *update {
		if err := os.WriteFile(golden, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, want) {
		t.Errorf("enabled manifest differs from %s (go test -update to accept):\n%s", golden, Diff(golden, "got", want, out))
	}
	if n := commonLines(splitLines(in), splitLines(out)); n != len(splitLines(in)) {
		t.Errorf("only %d of %d original lines kept", n, len(splitLines(in)))
	}
	if len(changes) != 9+3+3 {
		t.Errorf("%d changes, want 9 flags, 3 volumes, 3 mounts: %v", len(changes), changes)
	}
	for _, c := range changes {
		if c.Replaced() {
			t.Errorf("pristine manifest: unexpected replacement %s", c)
		}
	}
	checkPod(t, out, allBackends)
}

// checkPod decodes the manifest strictly as a core/v1 Pod and checks the
// audit flags and that every mount has exactly one volume.
func checkPod(t *testing.T, manifest []byte, opts EnableOptions) {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(manifest, &v); err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var pod corev1.Pod
	if err := dec.Decode(&pod); err != nil {
		t.Fatalf("not a valid Pod: %v", err)
	}
	c := pod.Spec.Containers[0]
	line := append(slices.Clone(c.Command), c.Args...)
	want := []string{"--audit-policy-file=" + opts.PolicyFile}
	if opts.LogDir != "" {
		want = append(want, "--audit-log-path="+opts.LogDir+"/audit.log", "--audit-log-maxage=30", "--audit-log-maxbackup=10",
			"--audit-log-maxsize=100", "--audit-log-compress", "--audit-log-format=json")
	}
	if opts.WebhookConfigFile != "" {
		want = append(want, "--audit-webhook-config-file="+opts.WebhookConfigFile, "--audit-webhook-batch-max-wait=5s")
	}
	for _, f := range want {
		if n := count(line, f); n != 1 {
			t.Errorf("%s appears %d times on the command line, want once", f, n)
		}
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		if _, dup := volumes[v.Name]; dup {
			t.Errorf("volume %s defined twice", v.Name)
		}
		volumes[v.Name] = v
	}
	paths := map[string]bool{}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		m.MountPath = path.Clean(m.MountPath)
		if paths[m.MountPath] {
			t.Errorf("two mounts at %s", m.MountPath)
		}
		paths[m.MountPath] = true
		if _, ok := volumes[m.Name]; !ok {
			t.Errorf("mount %s: no volume %s", m.MountPath, m.Name)
		}
		mounts[m.MountPath] = m
	}
	for _, m := range wantMounts(opts) {
		vm, ok := mounts[m.path]
		if !ok {
			t.Errorf("nothing mounted at %s", m.path)
			continue
		}
		if vm.ReadOnly != m.readOnly {
			t.Errorf("%s: readOnly %v, want %v", m.path, vm.ReadOnly, m.readOnly)
		}
		hp := volumes[vm.Name].HostPath
		if hp == nil || hp.Path != m.path || hp.Type == nil || string(*hp.Type) != m.hostType {
			t.Errorf("%s: volume %s is %+v, want hostPath %s (%s)", m.path, vm.Name, volumes[vm.Name].VolumeSource, m.path, m.hostType)
		}
	}
}

func count(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

// edited is a kubeadm manifest after a person has been at it: comments,
// blank lines, odd spacing, an earlier hand-made audit setup with other
// values, a flag given as two elements and a duplicate.
const edited = `# kube-apiserver for prod-eu-1. Managed by ops (TICKET-4711).
apiVersion: v1
kind: Pod
metadata:
  labels:
    component: kube-apiserver
    tier: control-plane
  name: kube-apiserver   # do not rename
  namespace: kube-system
spec:
  containers:
  - command:
    - kube-apiserver
    - --advertise-address=10.0.0.10
    - --audit-log-compress=false
    - --audit-log-maxage=7     # one week was enough, said nobody
    - --audit-log-mode=blocking-strict
    - --audit-log-path
    - /var/log/apiserver/audit.log
    - --audit-policy-file=/etc/kubernetes/policies/audit.yaml
    - --audit-log-maxsize=50
    - --audit-log-maxsize=60

    # TLS
    - --tls-cert-file=/etc/kubernetes/pki/apiserver.crt
    - --tls-private-key-file=/etc/kubernetes/pki/apiserver.key
    image: registry.k8s.io/kube-apiserver:v1.36.3
    name: kube-apiserver
    volumeMounts:
    - mountPath: /etc/kubernetes/pki
      name: k8s-certs
      readOnly: true
    - mountPath: /var/log/kubernetes/audit/
      name: audit-log
      readOnly: true
  hostNetwork: true
  volumes:
  - hostPath:
      path: /etc/kubernetes/pki
      type: DirectoryOrCreate
    name: k8s-certs
  - name: audit-log
    hostPath:
      path: /var/log/apiserver
status: {}
`

func TestEnableReplaces(t *testing.T) {
	opts := EnableOptions{PolicyFile: DefaultPolicyFile, LogDir: DefaultLogDir}
	out, changes, err := EnableChanges([]byte(edited), opts)
	if err != nil {
		t.Fatal(err)
	}
	checkPod(t, out, opts)
	got := map[string]Change{}
	for _, c := range changes {
		got[c.Kind+" "+c.Name+" "+c.Old] = c
	}
	for _, want := range []Change{
		{Kind: "flag", Name: "audit-log-compress", Old: "--audit-log-compress=false", New: "--audit-log-compress"},
		{Kind: "flag", Name: "audit-log-maxage", Old: "--audit-log-maxage=7", New: "--audit-log-maxage=30"},
		{Kind: "flag", Name: "audit-log-path", Old: "--audit-log-path /var/log/apiserver/audit.log", New: "--audit-log-path=/var/log/kubernetes/audit/audit.log"},
		{Kind: "flag", Name: "audit-policy-file", Old: "--audit-policy-file=/etc/kubernetes/policies/audit.yaml", New: "--audit-policy-file=/etc/kubernetes/audit-policy.yaml"},
		{Kind: "flag", Name: "audit-log-maxsize", Old: "--audit-log-maxsize=50", New: "--audit-log-maxsize=100"},
		{Kind: "flag", Name: "audit-log-maxsize", Old: "--audit-log-maxsize=60"},
		{Kind: "volumeMount", Name: "audit-log", Old: "/var/log/kubernetes/audit (read-only)", New: "/var/log/kubernetes/audit"},
		{Kind: "volume", Name: "audit-log", Old: "hostPath /var/log/apiserver", New: "hostPath /var/log/kubernetes/audit (DirectoryOrCreate)"},
	} {
		c, ok := got[want.Kind+" "+want.Name+" "+want.Old]
		if !ok || c != want {
			t.Errorf("missing change %s; got %v", want, changes)
		}
		if !c.Replaced() {
			t.Errorf("%s: Replaced() = false", c)
		}
	}
	// Everything Enable had no reason to touch keeps its bytes: comments,
	// blank lines, spacing, the flag it does not manage.
	for _, line := range []string{
		"# kube-apiserver for prod-eu-1. Managed by ops (TICKET-4711).\n",
		"  name: kube-apiserver   # do not rename\n",
		"    - --audit-log-mode=blocking-strict\n",
		"\n",
		"    # TLS\n",
		"  - name: audit-log\n",
	} {
		if !strings.Contains(string(out), line) {
			t.Errorf("line %q lost:\n%s", line, out)
		}
	}
	if strings.Contains(string(out), "one week") {
		t.Errorf("the replaced flag's comment should go with it:\n%s", out)
	}
	again, changes, err := EnableChanges(out, opts)
	if err != nil || len(changes) != 0 || !bytes.Equal(again, out) {
		t.Errorf("second run: err %v, changes %v, same bytes %v", err, changes, bytes.Equal(again, out))
	}
}

// TestEnableIdempotent: a second run with the same options changes nothing,
// whichever backends, and leaves the bytes alone.
func TestEnableIdempotent(t *testing.T) {
	in := readTestdata(t, "kube-apiserver.yaml")
	for _, opts := range []EnableOptions{
		allBackends,
		{PolicyFile: DefaultPolicyFile, LogDir: DefaultLogDir},
		{PolicyFile: DefaultPolicyFile, WebhookConfigFile: DefaultWebhookConfigFile},
		{PolicyFile: "/etc/kubernetes/pki/audit/policy.yaml", LogDir: "/var/log/kube-apiserver/audit", WebhookConfigFile: "/etc/vigil/webhook.kubeconfig"},
	} {
		once, changes, err := EnableChanges(in, opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(changes) == 0 {
			t.Errorf("%+v: first run changed nothing", opts)
		}
		checkPod(t, once, opts)
		twice, changes, err := EnableChanges(once, opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(changes) != 0 || !bytes.Equal(once, twice) {
			t.Errorf("%+v: second run changed %v:\n%s", opts, changes, Diff("once", "twice", once, twice))
		}
	}
}

// TestEnableSwitchBackend: enabling the webhook on a manifest that already
// has the log backend adds the webhook and keeps the log.
func TestEnableSwitchBackend(t *testing.T) {
	in := readTestdata(t, "kube-apiserver.yaml")
	logOnly, err := Enable(in, EnableOptions{PolicyFile: DefaultPolicyFile, LogDir: DefaultLogDir})
	if err != nil {
		t.Fatal(err)
	}
	both, changes, err := EnableChanges(logOnly, EnableOptions{PolicyFile: DefaultPolicyFile, WebhookConfigFile: DefaultWebhookConfigFile})
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 4 {
		t.Errorf("changes %v, want 2 flags, a volume and a mount", changes)
	}
	checkPod(t, both, allBackends)
}

// TestEnableArgs: when the image's entrypoint is the binary and the flags
// are in args, new flags go to args.
func TestEnableArgs(t *testing.T) {
	in := []byte(`apiVersion: v1
kind: Pod
metadata:
  name: kube-apiserver
  namespace: kube-system
spec:
  containers:
  - name: kube-apiserver
    image: registry.k8s.io/kube-apiserver:v1.36.3
    args:
    - --secure-port=6443
    - --tls-cert-file=/etc/kubernetes/pki/apiserver.crt
`)
	opts := EnableOptions{PolicyFile: DefaultPolicyFile, LogDir: DefaultLogDir}
	out, err := Enable(in, opts)
	if err != nil {
		t.Fatal(err)
	}
	checkPod(t, out, opts)
	if strings.Contains(string(out), "command:") {
		t.Errorf("added a command:\n%s", out)
	}
	flags, err := Flags(out)
	if err != nil {
		t.Fatal(err)
	}
	if flags["audit-policy-file"] != DefaultPolicyFile || flags["audit-log-compress"] != "" {
		t.Errorf("Flags = %v", flags)
	}
}

func TestEnableRefuses(t *testing.T) {
	for name, manifest := range map[string]string{
		"empty":              "",
		"not yaml":           "{{{",
		"a list":             "- a\n- b\n",
		"a Deployment":       "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: kube-apiserver}\n",
		"controller-manager": "apiVersion: v1\nkind: Pod\nmetadata: {name: kube-controller-manager}\nspec:\n  containers:\n  - name: kube-controller-manager\n    command: [kube-controller-manager, --v=2]\n",
		"no containers":      "apiVersion: v1\nkind: Pod\nspec: {}\n",
		"two documents":      readTestdataString(t, "kube-apiserver.yaml") + "---\napiVersion: v1\nkind: Pod\n",
	} {
		_, err := Enable([]byte(manifest), allBackends)
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if name != "not yaml" && !strings.Contains(err.Error(), "not a kube-apiserver static pod") {
			t.Errorf("%s: error %q does not say what is wrong", name, err)
		}
		if _, err := Rollback([]byte(manifest)); err == nil {
			t.Errorf("%s: Rollback accepted it", name)
		}
	}
	in := readTestdata(t, "kube-apiserver.yaml")
	for _, opts := range []EnableOptions{
		{LogDir: DefaultLogDir},
		{PolicyFile: DefaultPolicyFile},
		{PolicyFile: "audit-policy.yaml", LogDir: DefaultLogDir},
	} {
		if _, err := Enable(in, opts); err == nil {
			t.Errorf("%+v: no error", opts)
		}
	}
	if out, err := Rollback(in); err != nil || !bytes.Equal(out, in) {
		t.Errorf("Rollback(kubeadm manifest) = %v", err)
	}
}

func readTestdataString(t *testing.T, name string) string { return string(readTestdata(t, name)) }

func TestWebhookKubeconfig(t *testing.T) {
	ca := []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	data, err := WebhookKubeconfig("https://vigil:7777/api/v1/audit", ca, "s3cr3t-t0ken")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.Load(data)
	if err != nil {
		t.Fatalf("client-go cannot load it: %v\n%s", err, data)
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if ctx == nil {
		t.Fatalf("no current context in\n%s", data)
	}
	cl, user := cfg.Clusters[ctx.Cluster], cfg.AuthInfos[ctx.AuthInfo]
	if cl.Server != "https://vigil:7777/api/v1/audit" || !bytes.Equal(cl.CertificateAuthorityData, ca) || user.Token != "s3cr3t-t0ken" {
		t.Errorf("cluster %+v user %+v", cl, user)
	}
	noCA, err := WebhookKubeconfig("https://vigil:7777/api/v1/audit", nil, "t")
	if err != nil || strings.Contains(string(noCA), "certificate-authority") {
		t.Errorf("without a CA: %v\n%s", err, noCA)
	}
	for _, bad := range []struct{ url, token string }{
		{"http://vigil:7777/api/v1/audit", "t"},
		{"vigil:7777", "t"},
		{"https://vigil:7777/api/v1/audit", ""},
		{"https://vigil:7777/api/v1/audit", "two words"},
	} {
		if _, err := WebhookKubeconfig(bad.url, nil, bad.token); err == nil {
			t.Errorf("%q, %q: no error", bad.url, bad.token)
		} else if bad.token != "" && bad.token != "t" && strings.Contains(err.Error(), bad.token) {
			t.Errorf("error shows the token: %v", err)
		}
	}
}

func TestDiff(t *testing.T) {
	a := "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n"
	b := "1\n2\n3\n4\nfour and a half\n5\n6\n7\n8\n9\n10\n11\n"
	want := `--- a
+++ b
@@ -2,6 +2,7 @@
 2
 3
 4
+four and a half
 5
 6
 7
@@ -9,4 +10,3 @@
 9
 10
 11
-12
`
	if got := Diff("a", "b", []byte(a), []byte(b)); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if got := Diff("a", "b", []byte(a), []byte(a)); got != "" {
		t.Errorf("equal inputs: %q", got)
	}
}

// FuzzEnable: any manifest Enable accepts, it turns into one it leaves
// alone the second time.
func FuzzEnable(f *testing.F) {
	f.Add(readTestdata(f, "kube-apiserver.yaml"))
	f.Add([]byte(edited))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := Enable(in, allBackends)
		if err != nil {
			return
		}
		again, changes, err := EnableChanges(out, allBackends)
		if err != nil || len(changes) != 0 || !bytes.Equal(again, out) {
			t.Errorf("not idempotent: err %v changes %v\n%s", err, changes, Diff("once", "twice", out, again))
		}
	})
}
