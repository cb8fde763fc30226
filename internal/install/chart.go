package install

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/release"
	"sigs.k8s.io/yaml"

	"github.com/vigil-sec/vigil/deploy"
)

// Release is the Helm release name Vigil installs as.
const Release = "vigil"

// DefaultNamespace is where Vigil is installed unless told otherwise.
const DefaultNamespace = "vigil"

// PartOfLabel selects every object the chart creates
// (app.kubernetes.io/part-of=vigil).
const PartOfLabel = "app.kubernetes.io/part-of=vigil"

// DefaultExcludeLabel marks a cluster as excluded from onboarding when the
// kube-system namespace carries it (the chart's clusterExcludeLabel).
const DefaultExcludeLabel = "vigil.dev/exclude"

// Names of the objects the chart creates; `vigil verify` looks for them.
const (
	SensorName  = "vigil-sensor"      // DaemonSet and ServiceAccount
	AgentName   = "vigil-agent"       // Deployment, Service, ServiceAccount, ClusterRole(Binding), Role(Binding)
	ServerName  = "vigil-server"      // Deployment, Service, ServiceAccount
	ServerData  = "vigil-server-data" // PersistentVolumeClaim (SQLite)
	WebhookName = "vigil"             // ValidatingWebhookConfiguration
	JoinSecret  = "vigil-join"        // Secret, key credential
	ProxySecret = "vigil-proxy"       // Secret, key proxy
	PostureName = "vigil-posture"     // ConfigMap, key posture.yaml
	// AgentTLSSecret is not in the chart: the agent creates it at run time
	// (its serving certificate), and uninstall removes it.
	AgentTLSSecret = "vigil-agent-tls"
	// ScannerLease is not in the chart either: the agent replicas elect
	// the posture scanner's leader with it; uninstall removes it.
	ScannerLease = "vigil-posture-scanner"
)

// LoadChart loads the chart embedded in the binary.
func LoadChart() (*chart.Chart, error) {
	var files []*loader.BufferedFile
	err := fs.WalkDir(deploy.Chart, deploy.ChartDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(deploy.Chart, p)
		if err != nil {
			return err
		}
		files = append(files, &loader.BufferedFile{Name: strings.TrimPrefix(p, deploy.ChartDir+"/"), Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the embedded chart: %w", err)
	}
	ch, err := loader.LoadFiles(files)
	if err != nil {
		return nil, fmt.Errorf("load the embedded chart: %w", err)
	}
	return ch, nil
}

// RenderKubeVersion is the Kubernetes version Render renders for (Helm's
// own default, 1.20, is older than the chart supports): the version of the
// client-go Vigil is built with.
const RenderKubeVersion = "v1.36.0"

// Render renders the chart with vals for namespace without a cluster (the
// kube version is Helm's default), as `helm template` would. The returned
// release's Manifest holds the protected settings in clear: print it
// through Redact.
func Render(ch *chart.Chart, namespace string, vals map[string]any) (*release.Release, error) {
	in := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	in.DryRun, in.ClientOnly, in.Replace = true, true, true
	in.ReleaseName, in.Namespace = Release, namespace
	in.DisableHooks = true
	kv, err := chartutil.ParseKubeVersion(RenderKubeVersion)
	if err != nil {
		return nil, err
	}
	in.KubeVersion = kv
	rel, err := in.Run(ch, vals)
	if err != nil {
		return nil, fmt.Errorf("render the chart: %w", err)
	}
	return rel, nil
}

// Redacted stands in for every value of a Secret in printed manifests. It
// is not base64, so applying a redacted manifest fails loudly instead of
// storing a wrong credential.
const Redacted = "<redacted>"

// Redact returns a multi-document manifest with the values of every
// Secret's data and stringData replaced by Redacted; other documents are
// returned byte for byte.
func Redact(manifest string) (string, error) {
	docs := strings.Split(manifest, "\n---\n")
	for i, doc := range docs {
		var head struct {
			Kind string `json:"kind"`
		}
		body := doc
		if err := yaml.Unmarshal([]byte(body), &head); err != nil {
			return "", fmt.Errorf("redact: document %d: %w", i, err)
		}
		if head.Kind != "Secret" {
			continue
		}
		// Keep Helm's "# Source:" comment lines.
		var comments []string
		for line := range strings.Lines(doc) {
			if !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "---") {
				break
			}
			comments = append(comments, line)
		}
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(body), &obj); err != nil {
			return "", fmt.Errorf("redact: document %d: %w", i, err)
		}
		for _, field := range []string{"data", "stringData"} {
			m, _ := obj[field].(map[string]any)
			for k := range m {
				m[k] = Redacted
			}
		}
		out, err := yaml.Marshal(obj)
		if err != nil {
			return "", fmt.Errorf("redact: document %d: %w", i, err)
		}
		docs[i] = strings.Join(comments, "") + string(bytes.TrimRight(out, "\n"))
	}
	return strings.Join(docs, "\n---\n"), nil
}

// Manifest is the printable form of a rendered release: its manifest,
// Secrets redacted, as one YAML stream.
func Manifest(rel *release.Release) (string, error) {
	if rel == nil {
		return "", errors.New("no release")
	}
	m, err := Redact(rel.Manifest)
	if err != nil {
		return "", err
	}
	return strings.TrimPrefix(m, "\n"), nil
}

// templateName is the chart-relative template that rendered a document,
// from its "# Source:" line ("" if none).
func templateName(doc string) string {
	for line := range strings.Lines(doc) {
		if s, ok := strings.CutPrefix(strings.TrimSpace(line), "# Source: "); ok {
			return path.Base(s)
		}
	}
	return ""
}

// Object is one object of a rendered manifest.
type Object struct {
	Kind, Namespace, Name string
	// Template is the chart template that rendered it (e.g. agent.yaml).
	Template string
}

func (o Object) String() string {
	if o.Namespace != "" {
		return o.Kind + "/" + o.Namespace + "/" + o.Name
	}
	return o.Kind + "/" + o.Name
}

// Objects lists the objects of a multi-document manifest, in order.
func Objects(manifest string) ([]Object, error) {
	var out []Object
	for i, doc := range strings.Split(manifest, "\n---\n") {
		var head struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			return nil, fmt.Errorf("manifest document %d: %w", i, err)
		}
		if head.Kind == "" {
			continue
		}
		out = append(out, Object{Kind: head.Kind, Namespace: head.Metadata.Namespace, Name: head.Metadata.Name, Template: templateName(doc)})
	}
	return out, nil
}
