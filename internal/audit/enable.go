package audit

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Default paths on a control-plane node, as kubeadm lays it out. Each file
// has the same path on the host and inside the kube-apiserver pod.
const (
	DefaultPolicyFile        = "/etc/kubernetes/audit-policy.yaml"
	DefaultLogDir            = "/var/log/kubernetes/audit"
	DefaultWebhookConfigFile = "/etc/kubernetes/vigil-audit-webhook.kubeconfig"
)

// Settings of the log backend. Rotation keeps at most 10 compressed files
// of 100 MB for 30 days; gzip shrinks audit logs about twelvefold.
const (
	logMaxAge    = "30"
	logMaxBackup = "10"
	logMaxSize   = "100"
	// webhookBatchMaxWait bounds how long kube-apiserver holds events before
	// sending them to Vigil (its default is 30 s).
	webhookBatchMaxWait = "5s"
)

// EnableOptions says where the audit files are. A backend is configured when
// its path is set; at least one must be.
type EnableOptions struct {
	// PolicyFile is the audit policy's path. Required.
	PolicyFile string
	// LogDir, if set, turns the log backend on: kube-apiserver writes
	// LogDir/audit.log, one JSON event a line, and rotates it.
	LogDir string
	// WebhookConfigFile, if set, turns the webhook backend on: a kubeconfig
	// naming the receiver (Vigil's /api/v1/audit) and its credentials.
	WebhookConfigFile string
}

// Change is one edit Enable made to a manifest. Old is empty for an
// addition, New for a removal; both set means an existing setting was
// replaced, which callers should show to the user.
type Change struct {
	Kind     string // "flag", "volume" or "volumeMount"
	Name     string // flag name (without dashes) or volume name
	Old, New string
}

// Replaced reports whether the change overwrote an existing setting.
func (c Change) Replaced() bool { return c.Old != "" }

func (c Change) String() string {
	switch {
	case c.Old == "":
		return fmt.Sprintf("add %s %s: %s", c.Kind, c.Name, c.New)
	case c.New == "":
		return fmt.Sprintf("remove %s %s: %s", c.Kind, c.Name, c.Old)
	}
	return fmt.Sprintf("replace %s %s: %s -> %s", c.Kind, c.Name, c.Old, c.New)
}

// Enable returns the kube-apiserver static pod manifest with auditing turned
// on as opts says. See EnableChanges.
func Enable(manifest []byte, opts EnableOptions) ([]byte, error) {
	out, _, err := EnableChanges(manifest, opts)
	return out, err
}

// EnableChanges returns the kube-apiserver static pod manifest with auditing
// turned on as opts says, and the changes it made. It adds to the
// kube-apiserver container the --audit-* flags of the chosen backends, and a
// hostPath volume and volumeMount for the policy file (read-only), the log
// directory and the webhook kubeconfig (read-only). Flags it sets that are
// already there with another value are replaced, volume mounts at the same
// paths are reused; other --audit-* flags are left alone.
//
// Everything else keeps its bytes: formatting, comments and blank lines of
// the lines it does not change. When nothing needs changing it returns
// manifest itself and no changes, so running it twice gives the same bytes.
// It refuses anything but a single Pod document with a kube-apiserver
// container.
func EnableChanges(manifest []byte, opts EnableOptions) ([]byte, []Change, error) {
	if opts.PolicyFile == "" {
		return nil, nil, errors.New("enable audit: no policy file path")
	}
	if opts.LogDir == "" && opts.WebhookConfigFile == "" {
		return nil, nil, errors.New("enable audit: no backend: set a log directory, a webhook kubeconfig, or both")
	}
	for _, p := range []string{opts.PolicyFile, opts.LogDir, opts.WebhookConfigFile} {
		if p != "" && !path.IsAbs(p) {
			return nil, nil, fmt.Errorf("enable audit: %q is not an absolute path", p)
		}
	}
	pod, err := parseAPIServerPod(manifest)
	if err != nil {
		return nil, nil, err
	}
	var changes []Change
	for _, f := range wantFlags(opts) {
		changes = append(changes, pod.setFlag(f)...)
	}
	for _, m := range wantMounts(opts) {
		c, err := pod.mount(m)
		if err != nil {
			return nil, nil, err
		}
		changes = append(changes, c...)
	}
	if len(changes) == 0 {
		return manifest, nil, nil
	}
	out, err := pod.render(manifest)
	if err != nil {
		return nil, nil, err
	}
	return out, changes, nil
}

// Rollback checks that backup, a manifest saved before Enable changed it, is
// a kube-apiserver static pod, and returns it to be written back.
func Rollback(backup []byte) ([]byte, error) {
	if _, err := parseAPIServerPod(backup); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	return backup, nil
}

// Flags returns the --audit-* flags on the manifest's kube-apiserver
// command line, by name without dashes; a flag without a value maps to "".
func Flags(manifest []byte) (map[string]string, error) {
	pod, err := parseAPIServerPod(manifest)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, it := range pod.flagItems() {
		if name, val, ok := it.parse(); ok && strings.HasPrefix(name, "audit-") {
			out[name] = val
		}
	}
	return out, nil
}

type cmdFlag struct {
	name, value string
	boolean     bool // written as --name alone
}

func wantFlags(opts EnableOptions) []cmdFlag {
	fs := []cmdFlag{{name: "audit-policy-file", value: opts.PolicyFile}}
	if opts.LogDir != "" {
		fs = append(fs,
			cmdFlag{name: "audit-log-path", value: path.Join(opts.LogDir, "audit.log")},
			// json is the default; set because Vigil reads JSON lines and
			// an old --audit-log-format=legacy would defeat it.
			cmdFlag{name: "audit-log-format", value: "json"},
			cmdFlag{name: "audit-log-maxage", value: logMaxAge},
			cmdFlag{name: "audit-log-maxbackup", value: logMaxBackup},
			cmdFlag{name: "audit-log-maxsize", value: logMaxSize},
			cmdFlag{name: "audit-log-compress", value: "true", boolean: true},
		)
	}
	if opts.WebhookConfigFile != "" {
		fs = append(fs,
			cmdFlag{name: "audit-webhook-config-file", value: opts.WebhookConfigFile},
			cmdFlag{name: "audit-webhook-batch-max-wait", value: webhookBatchMaxWait},
		)
	}
	return fs
}

// hostMount is a file or directory of the host mounted at the same path in
// the kube-apiserver container.
type hostMount struct {
	name     string // volume name, when no volume is mounted there yet
	path     string
	hostType string // hostPath type
	readOnly bool
}

func wantMounts(opts EnableOptions) []hostMount {
	// type File, not "": with no type a missing file is created as an
	// empty directory, and kube-apiserver fails with a puzzling error.
	ms := []hostMount{{name: "audit-policy", path: opts.PolicyFile, hostType: "File", readOnly: true}}
	if opts.LogDir != "" {
		ms = append(ms, hostMount{name: "audit-log", path: opts.LogDir, hostType: "DirectoryOrCreate"})
	}
	if opts.WebhookConfigFile != "" {
		ms = append(ms, hostMount{name: "vigil-audit-webhook", path: opts.WebhookConfigFile, hostType: "File", readOnly: true})
	}
	return ms
}

// apiServerPod is a parsed static pod manifest and the nodes Enable edits.
type apiServerPod struct {
	doc       *yaml.Node
	spec      *yaml.Node // mapping
	container *yaml.Node // mapping
}

func parseAPIServerPod(manifest []byte) (*apiServerPod, error) {
	dec := yaml.NewDecoder(bytes.NewReader(manifest))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("not a kube-apiserver static pod: the manifest is empty")
		}
		return nil, fmt.Errorf("parse manifest: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("not a kube-apiserver static pod: the manifest holds more than one YAML document")
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("not a kube-apiserver static pod: the manifest is not a YAML mapping")
	}
	root := doc.Content[0]
	if kind := scalar(get(root, "kind")); kind != "Pod" {
		return nil, fmt.Errorf("not a kube-apiserver static pod: kind is %q, want Pod", kind)
	}
	if v := scalar(get(root, "apiVersion")); v != "v1" {
		return nil, fmt.Errorf("not a kube-apiserver static pod: apiVersion is %q, want v1", v)
	}
	spec := get(root, "spec")
	if spec == nil || spec.Kind != yaml.MappingNode {
		return nil, errors.New("not a kube-apiserver static pod: no spec")
	}
	containers := get(spec, "containers")
	if containers == nil || containers.Kind != yaml.SequenceNode {
		return nil, errors.New("not a kube-apiserver static pod: no containers")
	}
	var byName *yaml.Node
	var names []string
	for _, c := range containers.Content {
		if c.Kind != yaml.MappingNode {
			continue
		}
		names = append(names, scalar(get(c, "name")))
		if cmd := get(c, "command"); cmd != nil && cmd.Kind == yaml.SequenceNode && len(cmd.Content) > 0 &&
			path.Base(cmd.Content[0].Value) == "kube-apiserver" {
			return &apiServerPod{doc: &doc, spec: spec, container: c}, nil
		}
		if scalar(get(c, "name")) == "kube-apiserver" && byName == nil {
			byName = c
		}
	}
	if byName != nil {
		return &apiServerPod{doc: &doc, spec: spec, container: byName}, nil
	}
	return nil, fmt.Errorf("not a kube-apiserver static pod: no container runs kube-apiserver (containers: %s)", strings.Join(names, ", "))
}

// flagItem is one element of the command line.
type flagItem struct {
	seq *yaml.Node
	i   int
}

func (it flagItem) node() *yaml.Node { return it.seq.Content[it.i] }

// parse splits --name=value; for --name alone value is "".
func (it flagItem) parse() (name, value string, ok bool) {
	n := it.node()
	if n.Kind != yaml.ScalarNode || !strings.HasPrefix(n.Value, "--") {
		return "", "", false
	}
	name, value, _ = strings.Cut(strings.TrimPrefix(n.Value, "--"), "=")
	return name, value, true
}

// next is the element after it, if it is a flag's separate value.
func (it flagItem) next() *yaml.Node {
	if it.i+1 >= len(it.seq.Content) {
		return nil
	}
	n := it.seq.Content[it.i+1]
	if n.Kind != yaml.ScalarNode || strings.HasPrefix(n.Value, "-") {
		return nil
	}
	return n
}

// flagItems lists the elements of command (after the binary) and args.
func (p *apiServerPod) flagItems() []flagItem {
	var items []flagItem
	if cmd := get(p.container, "command"); cmd != nil && cmd.Kind == yaml.SequenceNode {
		for i := 1; i < len(cmd.Content); i++ {
			items = append(items, flagItem{cmd, i})
		}
	}
	if args := get(p.container, "args"); args != nil && args.Kind == yaml.SequenceNode {
		for i := range args.Content {
			items = append(items, flagItem{args, i})
		}
	}
	return items
}

// setFlag makes f appear once on the command line with its value.
func (p *apiServerPod) setFlag(f cmdFlag) []Change {
	want := "--" + f.name + "=" + f.value
	if f.boolean {
		want = "--" + f.name
	}
	var changes []Change
	var kept *yaml.Node // the occurrence that stays
	for {
		var (
			at       flagItem
			val      string
			separate bool
			hit      bool
		)
		for _, it := range p.flagItems() {
			name, v, ok := it.parse()
			if !ok || name != f.name || it.node() == kept {
				continue
			}
			at, val, hit = it, v, true
			if !strings.Contains(it.node().Value, "=") && !f.boolean {
				if n := it.next(); n != nil {
					val, separate = n.Value, true
				}
			}
			break
		}
		if !hit {
			break
		}
		old := at.node().Value
		if separate {
			old += " " + val
			at.seq.Content = slices.Delete(at.seq.Content, at.i+1, at.i+2)
		}
		if kept != nil {
			// A later duplicate would override the value just set.
			at.seq.Content = slices.Delete(at.seq.Content, at.i, at.i+1)
			changes = append(changes, Change{Kind: "flag", Name: f.name, Old: old})
			continue
		}
		kept = at.node()
		if !separate && sameValue(f, val, strings.Contains(old, "=")) {
			continue
		}
		kept.Value = want
		// A comment at the end of the line spoke of the old value.
		kept.LineComment = ""
		changes = append(changes, Change{Kind: "flag", Name: f.name, Old: old, New: want})
	}
	if kept != nil {
		return changes
	}
	p.insertFlag(f.name, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: want})
	return append(changes, Change{Kind: "flag", Name: f.name, New: want})
}

func sameValue(f cmdFlag, val string, hasValue bool) bool {
	if !f.boolean {
		return val == f.value
	}
	if !hasValue {
		return true
	}
	b, err := strconv.ParseBool(val)
	return err == nil && b
}

// insertFlag puts a new flag where kubeadm would: the flags are sorted, so
// before the first one that sorts after it, else at the end. It goes to
// args when the flags are there (the binary being the image's entrypoint).
func (p *apiServerPod) insertFlag(name string, n *yaml.Node) {
	seq := get(p.container, "command")
	start := 1
	if args := get(p.container, "args"); args != nil && args.Kind == yaml.SequenceNode {
		if seq == nil || seq.Kind != yaml.SequenceNode || len(seq.Content) <= 1 {
			seq, start = args, 0
		}
	}
	if seq == nil || seq.Kind != yaml.SequenceNode {
		seq = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		set(p.container, "args", seq)
		start = 0
	}
	at := len(seq.Content)
	for i := start; i < len(seq.Content); i++ {
		if name2, _, ok := (flagItem{seq, i}).parse(); ok && name2 > name {
			at = i
			break
		}
	}
	seq.Content = slices.Insert(seq.Content, at, n)
}

// mount makes m's path mounted from the same host path, reusing a volume
// already mounted there.
func (p *apiServerPod) mount(m hostMount) ([]Change, error) {
	var changes []Change
	mounts := get(p.container, "volumeMounts")
	if mounts == nil {
		mounts = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		set(p.container, "volumeMounts", mounts)
	}
	if mounts.Kind != yaml.SequenceNode {
		return nil, errors.New("kube-apiserver container: volumeMounts is not a list")
	}
	var vm *yaml.Node
	for _, c := range mounts.Content {
		if c.Kind == yaml.MappingNode && path.Clean(scalar(get(c, "mountPath"))) == path.Clean(m.path) {
			vm = c
			break
		}
	}
	if vm == nil {
		for _, c := range mounts.Content {
			if c.Kind == yaml.MappingNode && scalar(get(c, "name")) == m.name {
				vm = c
				old := scalar(get(c, "mountPath"))
				set(c, "mountPath", str(m.path))
				changes = append(changes, Change{Kind: "volumeMount", Name: m.name, Old: old, New: m.path})
				break
			}
		}
	}
	name := m.name
	if vm == nil {
		vm = mapping("mountPath", str(m.path), "name", str(m.name))
		if m.readOnly {
			set(vm, "readOnly", boolean(true))
		}
		mounts.Style = 0
		mounts.Content = append(mounts.Content, vm)
		changes = append(changes, Change{Kind: "volumeMount", Name: m.name, New: describeMount(m.path, m.readOnly)})
	} else {
		name = scalar(get(vm, "name"))
		ro := scalar(get(vm, "readOnly")) == "true"
		switch {
		case m.readOnly && !ro:
			set(vm, "readOnly", boolean(true))
			changes = append(changes, Change{Kind: "volumeMount", Name: name, Old: describeMount(m.path, false), New: describeMount(m.path, true)})
		case !m.readOnly && ro:
			del(vm, "readOnly")
			changes = append(changes, Change{Kind: "volumeMount", Name: name, Old: describeMount(m.path, true), New: describeMount(m.path, false)})
		}
	}

	volumes := get(p.spec, "volumes")
	if volumes == nil {
		volumes = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		set(p.spec, "volumes", volumes)
	}
	if volumes.Kind != yaml.SequenceNode {
		return nil, errors.New("pod spec: volumes is not a list")
	}
	newVolume := func() *yaml.Node {
		return mapping("hostPath", mapping("path", str(m.path), "type", str(m.hostType)), "name", str(name))
	}
	want := describeHostPath(m.path, m.hostType)
	for _, v := range volumes.Content {
		if v.Kind != yaml.MappingNode || scalar(get(v, "name")) != name {
			continue
		}
		hp := get(v, "hostPath")
		if hp == nil || hp.Kind != yaml.MappingNode {
			old := "a non-hostPath volume"
			*v = *newVolume()
			return append(changes, Change{Kind: "volume", Name: name, Old: old, New: want}), nil
		}
		old := describeHostPath(scalar(get(hp, "path")), scalar(get(hp, "type")))
		if old != want {
			set(hp, "path", str(m.path))
			set(hp, "type", str(m.hostType))
			changes = append(changes, Change{Kind: "volume", Name: name, Old: old, New: want})
		}
		return changes, nil
	}
	volumes.Style = 0
	volumes.Content = append(volumes.Content, newVolume())
	return append(changes, Change{Kind: "volume", Name: name, New: want}), nil
}

func describeMount(p string, readOnly bool) string {
	if readOnly {
		return p + " (read-only)"
	}
	return p
}

func describeHostPath(p, typ string) string {
	if typ == "" {
		return "hostPath " + p
	}
	return "hostPath " + p + " (" + typ + ")"
}

// render encodes the edited tree and splices the changed lines into the
// original text, so that the lines Enable did not touch keep their bytes.
func (p *apiServerPod) render(orig []byte) ([]byte, error) {
	var best struct {
		before, after []byte
		score         int
	}
	// Encode in the style closest to the original's, so that the diff
	// between the two is as small as possible.
	for _, style := range []struct {
		indent  int
		compact bool
	}{{2, true}, {2, false}, {4, true}, {4, false}} {
		edited, err := encode(p.doc, style.indent, style.compact)
		if err != nil {
			return nil, err
		}
		fresh, err := parseAPIServerPod(orig)
		if err != nil {
			return nil, err
		}
		before, err := encode(fresh.doc, style.indent, style.compact)
		if err != nil {
			return nil, err
		}
		if s := commonLines(splitLines(orig), splitLines(before)); best.before == nil || s > best.score {
			best.before, best.after, best.score = before, edited, s
		}
	}
	out := merge(splitLines(orig), splitLines(best.before), splitLines(best.after))
	// The splice keeps unchanged lines verbatim; if that ever yields a
	// different document (it should not), the plain encoding is the safe
	// answer.
	var a, b any
	if yaml.Unmarshal(out, &a) != nil || yaml.Unmarshal(best.after, &b) != nil || !reflect.DeepEqual(a, b) {
		return best.after, nil
	}
	return out, nil
}

func encode(doc *yaml.Node, indent int, compact bool) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(indent)
	if compact {
		enc.CompactSeqIndent()
	}
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return buf.Bytes(), nil
}

// YAML node helpers.

func get(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func set(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, str(key), v)
}

func del(m *yaml.Node, key string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = slices.Delete(m.Content, i, i+2)
			return
		}
	}
}

func scalar(n *yaml.Node) string {
	if n == nil || n.Kind != yaml.ScalarNode {
		return ""
	}
	return n.Value
}

func str(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

func boolean(b bool) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(b)}
}

func mapping(kv ...any) *yaml.Node {
	m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for i := 0; i+1 < len(kv); i += 2 {
		m.Content = append(m.Content, str(kv[i].(string)), kv[i+1].(*yaml.Node))
	}
	return m
}

// WebhookKubeconfig returns the kubeconfig that --audit-webhook-config-file
// points kube-apiserver at: it POSTs audit.k8s.io/v1 EventLists to server
// (Vigil's https://HOST:PORT/api/v1/audit), verifying it with caPEM (the
// system roots when empty) and sending token as a bearer token. The result
// holds the token: write it with mode 0600 and never print it.
func WebhookKubeconfig(server string, caPEM []byte, token string) ([]byte, error) {
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("webhook URL %q: want https://host[:port]/path", server)
	}
	if token == "" || strings.ContainsAny(token, " \t\r\n") {
		return nil, errors.New("webhook token: empty or contains white space")
	}
	type cluster struct {
		Server                   string `yaml:"server"`
		CertificateAuthorityData string `yaml:"certificate-authority-data,omitempty"`
	}
	type namedCluster struct {
		Name    string  `yaml:"name"`
		Cluster cluster `yaml:"cluster"`
	}
	type user struct {
		Token string `yaml:"token"`
	}
	type namedUser struct {
		Name string `yaml:"name"`
		User user   `yaml:"user"`
	}
	type context struct {
		Cluster string `yaml:"cluster"`
		User    string `yaml:"user"`
	}
	type namedContext struct {
		Name    string  `yaml:"name"`
		Context context `yaml:"context"`
	}
	cfg := struct {
		APIVersion     string         `yaml:"apiVersion"`
		Kind           string         `yaml:"kind"`
		Clusters       []namedCluster `yaml:"clusters"`
		Users          []namedUser    `yaml:"users"`
		Contexts       []namedContext `yaml:"contexts"`
		CurrentContext string         `yaml:"current-context"`
	}{
		APIVersion: "v1",
		Kind:       "Config",
		// The CA is inlined so that the pod needs no second mount for it.
		Clusters:       []namedCluster{{Name: "vigil", Cluster: cluster{Server: server, CertificateAuthorityData: base64.StdEncoding.EncodeToString(caPEM)}}},
		Users:          []namedUser{{Name: "kube-apiserver", User: user{Token: token}}},
		Contexts:       []namedContext{{Name: "vigil", Context: context{Cluster: "vigil", User: "kube-apiserver"}}},
		CurrentContext: "vigil",
	}
	var buf bytes.Buffer
	buf.WriteString("# Written by vigil audit enable: where kube-apiserver sends audit events.\n# Holds a credential: keep it 0600, root-owned.\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	enc.CompactSeqIndent()
	if err := enc.Encode(cfg); err != nil {
		return nil, fmt.Errorf("encode webhook kubeconfig: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode webhook kubeconfig: %w", err)
	}
	return buf.Bytes(), nil
}
