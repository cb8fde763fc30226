package posture

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"
)

// Config says which recommendations run, in which mode, with which
// parameters and on which workloads. It is the document users write (YAML or
// JSON), e.g.
//
//	excludedNamespaces: [kube-system, vigil]
//	recommendations:
//	  trusted-registries:
//	    mode: deny
//	    parameters:
//	      registries: ['[^/]+\.azurecr\.io', 'registry\.example\.com/team']
//	  no-privileged:
//	    excludedImages: ["registry.example.com/csi-driver:*"]
//
// Get one from DefaultConfig, ParseConfig or LoadConfig; these return a
// validated Config. A Config changed or built by hand must pass Validate
// before Evaluate sees it, and must not change while Evaluate may run.
type Config struct {
	// ExcludedNamespaces applies to every recommendation that does not set
	// its own. Default: kube-system and vigil.
	ExcludedNamespaces []string `json:"excludedNamespaces"`
	// ExcludedImages applies to every recommendation that does not set its
	// own; see Setting.ExcludedImages.
	ExcludedImages []string `json:"excludedImages,omitempty"`
	// Recommendations maps a recommendation id to its setting. A missing
	// id runs with its defaults.
	Recommendations map[string]*Setting `json:"recommendations"`

	compiled *compiled
}

// Setting configures one recommendation.
type Setting struct {
	Mode Mode `json:"mode"`
	// Namespaces, when not empty, limits the recommendation to these
	// namespaces.
	Namespaces []string `json:"namespaces,omitempty"`
	// ExcludedNamespaces replaces the config-wide list when not nil (an
	// empty list excludes nothing).
	ExcludedNamespaces []string `json:"excludedNamespaces,omitempty"`
	// ExcludedImages exempts containers whose image equals an entry, or
	// starts with it when the entry ends in '*'
	// ("registry.example.com/istio/*"). Not nil replaces the config-wide
	// list. Pod-level checks (host namespaces, host network, hostPath
	// volumes, the Pod Security Standards) do not look at it.
	ExcludedImages []string `json:"excludedImages,omitempty"`
	// ExcludedContainers exempts containers by name.
	ExcludedContainers []string `json:"excludedContainers,omitempty"`
	// LabelSelector limits the recommendation to workloads whose pod
	// labels (a Service's own labels) match.
	LabelSelector *metav1.LabelSelector `json:"labelSelector,omitempty"`
	Parameters    Parameters            `json:"parameters,omitzero"`
}

// Parameters holds every recommendation's parameters; each recommendation
// reads only its own (Recommendation.Parameters names them). Port lists hold
// strings, a port ("443") or an inclusive range ("3000-5000"); an empty
// list allows no port.
type Parameters struct {
	// cpu-memory-limits: the largest limit allowed; empty means any limit
	// will do, as long as there is one.
	CPULimit    string `json:"cpuLimit,omitempty"`
	MemoryLimit string `json:"memoryLimit,omitempty"`
	// least-capabilities: capabilities containers may add ("*" allows any)
	// and capabilities they must drop (dropping ALL satisfies any list).
	// Names are case-insensitive, with or without CAP_.
	AllowedCapabilities      []string `json:"allowedCapabilities,omitempty"`
	RequiredDropCapabilities []string `json:"requiredDropCapabilities,omitempty"`
	// allowed-host-paths: allowed hostPath prefixes; empty allows none.
	AllowedHostPaths []HostPath `json:"allowedHostPaths,omitempty"`
	// allowed-container-ports.
	AllowedContainerPorts []string `json:"allowedContainerPorts,omitempty"`
	// allowed-service-ports.
	AllowedServicePorts []string `json:"allowedServicePorts,omitempty"`
	// no-host-network-ports.
	AllowHostNetwork bool     `json:"allowHostNetwork,omitempty"`
	AllowedHostPorts []string `json:"allowedHostPorts,omitempty"`
	// apparmor-not-overridden: allowed profiles in annotation form
	// (runtime/default, unconfined, localhost/NAME, localhost/* for any
	// local profile, * for any); empty allows none.
	AllowedProfiles []string `json:"allowedProfiles,omitempty"`
	// trusted-registries: regular expressions; an image is trusted when one
	// matches, in full, its registry, a registry/repository prefix ending
	// at a '/', its whole repository, or the whole image reference.
	// Short Docker Hub names are expanded first (nginx is
	// docker.io/library/nginx).
	Registries []string `json:"registries,omitempty"`
	// pss-baseline, pss-restricted: the Pod Security Standards version,
	// "latest" (default) or "v1.N".
	Version string `json:"version,omitempty"`
}

// HostPath is one allowed hostPath prefix. A prefix matches by path
// segment: /var/log allows /var/log and /var/log/pods, not /var/logs.
type HostPath struct {
	PathPrefix string `json:"pathPrefix"`
	// ReadOnly requires every container that mounts the volume to mount it
	// read-only.
	ReadOnly bool `json:"readOnly"`
}

// DefaultNamespaces are excluded from every recommendation by default.
var defaultExcludedNamespaces = []string{"kube-system", "vigil"}

// DefaultConfig returns every recommendation in its default mode with
// Defender's default parameters. Recommendations marked
// ConfigurationRequired leave workloads unhealthy until configured, as in
// Defender (no registry is trusted, no hostPath, service or host port is
// allowed).
func DefaultConfig() *Config {
	c := defaultDocument()
	if err := c.Validate(); err != nil {
		panic("posture: default config is invalid: " + err.Error())
	}
	return c
}

func defaultDocument() *Config {
	c := &Config{
		ExcludedNamespaces: append([]string(nil), defaultExcludedNamespaces...),
		Recommendations:    make(map[string]*Setting, len(catalog)),
	}
	for i := range catalog {
		r := &catalog[i]
		s := &Setting{Mode: r.DefaultMode}
		switch r.ID {
		case CPUMemoryLimits:
			s.Parameters.CPULimit, s.Parameters.MemoryLimit = "32", "64Gi"
		case AppArmorNotOverridden:
			s.Parameters.AllowedProfiles = []string{"runtime/default"}
		case PSSBaseline, PSSRestricted:
			s.Parameters.Version = "latest"
		}
		c.Recommendations[r.ID] = s
	}
	return c
}

// LoadConfig reads a configuration file (YAML or JSON) and returns it
// merged over DefaultConfig and validated.
func LoadConfig(file string) (*Config, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("load posture config: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("load posture config %s: %w", file, err)
	}
	return c, nil
}

// ParseConfig parses a configuration document (YAML or JSON) over
// DefaultConfig: what the document sets replaces the default, field by
// field, and what it leaves out keeps its default. Unknown fields, unknown
// recommendations, parameters of another recommendation, bad modes, regular
// expressions, ports, paths and quantities are errors that name the field.
func ParseConfig(data []byte) (*Config, error) {
	if err := singleDocument(data); err != nil {
		return nil, err
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	var doc struct {
		ExcludedNamespaces *[]string                  `json:"excludedNamespaces"`
		ExcludedImages     *[]string                  `json:"excludedImages"`
		Recommendations    map[string]json.RawMessage `json:"recommendations"`
	}
	if len(bytes.TrimSpace(js)) > 0 && !bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		if err := strictJSON(js, &doc); err != nil {
			return nil, err
		}
	}
	c := defaultDocument()
	if doc.ExcludedNamespaces != nil {
		c.ExcludedNamespaces = *doc.ExcludedNamespaces
	}
	if doc.ExcludedImages != nil {
		c.ExcludedImages = *doc.ExcludedImages
	}
	ids := make([]string, 0, len(doc.Recommendations))
	for id := range doc.Recommendations {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		raw := doc.Recommendations[id]
		rec, ok := Lookup(id)
		if !ok {
			return nil, fmt.Errorf("recommendations.%s: unknown recommendation (known: %s)", id, strings.Join(ids0(), ", "))
		}
		if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			continue
		}
		var keys struct {
			Parameters map[string]json.RawMessage `json:"parameters"`
		}
		if err := json.Unmarshal(raw, &keys); err != nil {
			return nil, fmt.Errorf("recommendations.%s: %w", id, err)
		}
		for k := range keys.Parameters {
			if !contains(rec.Parameters, k) {
				want := "none"
				if len(rec.Parameters) > 0 {
					want = strings.Join(rec.Parameters, ", ")
				}
				return nil, fmt.Errorf("recommendations.%s.parameters.%s: unknown parameter (%s takes: %s)", id, k, id, want)
			}
		}
		if err := strictJSON(raw, c.Recommendations[id]); err != nil {
			return nil, fmt.Errorf("recommendations.%s: %w", id, err)
		}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// singleDocument refuses a stream of several YAML (or JSON) documents,
// which the converter below would silently cut to the first.
func singleDocument(data []byte) error {
	dec := yamlv3.NewDecoder(bytes.NewReader(data))
	var first, second yamlv3.Node
	if err := dec.Decode(&first); err != nil {
		return nil // empty, or malformed: the converter says what is wrong
	}
	if err := dec.Decode(&second); !errors.Is(err, io.EOF) {
		return errors.New("parse: more than one document; a posture configuration is one YAML or JSON document")
	}
	return nil
}

func ids0() []string {
	out := make([]string, len(catalog))
	for i := range catalog {
		out[i] = catalog[i].ID
	}
	return out
}

// strictJSON decodes into v, which keeps the fields the document leaves
// out, rejecting unknown fields and trailing data.
func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return fmt.Errorf("%s: want %s, got %s", te.Field, te.Type, te.Value)
		}
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the document")
	}
	return nil
}

// Validate checks the configuration and prepares it for Evaluate. A
// Setting with an empty Mode takes the recommendation's default; a missing
// Setting runs with the defaults' mode and empty parameters.
func (c *Config) Validate() error {
	cc := &compiled{}
	ev, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		return fmt.Errorf("build pod security evaluator: %w", err)
	}
	cc.pss = ev
	for id := range c.Recommendations {
		if _, ok := Lookup(id); !ok {
			return fmt.Errorf("recommendations.%s: unknown recommendation (known: %s)", id, strings.Join(ids0(), ", "))
		}
	}
	if err := checkNames("excludedNamespaces", c.ExcludedNamespaces); err != nil {
		return err
	}
	if err := checkNames("excludedImages", c.ExcludedImages); err != nil {
		return err
	}
	for i := range catalog {
		rec := &catalog[i]
		s := c.Recommendations[rec.ID]
		if s == nil {
			s = &Setting{Mode: rec.DefaultMode}
		}
		r, err := compileSetting(c, rec, s)
		if err != nil {
			return fmt.Errorf("recommendations.%s.%w", rec.ID, err)
		}
		if r.mode != Disabled {
			cc.recs = append(cc.recs, r)
		}
	}
	c.compiled = cc
	return nil
}

func checkNames(field string, list []string) error {
	for i, s := range list {
		if strings.TrimSpace(s) == "" {
			return fmt.Errorf("%s[%d]: empty", field, i)
		}
	}
	return nil
}

// Validated reports whether Validate succeeded on c (Evaluate needs it).
func (c *Config) Validated() bool { return c != nil && c.compiled != nil }

// compiled is a Config made ready for the hot path: regular expressions
// compiled, ports parsed, names normalised, disabled recommendations gone.
type compiled struct {
	recs []compiledRec
	pss  policy.Evaluator
}

type compiledRec struct {
	rec   *Recommendation
	mode  Mode
	check func(r *compiledRec, t *Target, cs []container, pss policy.Evaluator) []string

	namespaces, excludedNamespaces []string
	excludedImages                 []string
	excludedContainers             []string
	selector                       labels.Selector // nil: every workload

	cpuMax, memMax           *resource.Quantity
	allowAnyCap              bool
	allowedCaps, requireDrop []string // upper case, without CAP_
	hostPaths                []HostPath
	ports                    []portRange
	portsText                string // the allowed ports, for messages
	allowHostNetwork         bool
	profiles                 []string
	registries               []*regexp.Regexp
	pssLevel                 psaapi.LevelVersion
}

// compileSetting returns errors that start with the field name, for the
// caller to prefix with "recommendations.<id>.".
func compileSetting(c *Config, rec *Recommendation, s *Setting) (compiledRec, error) {
	r := compiledRec{rec: rec, mode: s.Mode, check: checks[rec.ID]}
	if r.mode == "" {
		r.mode = rec.DefaultMode
	}
	if _, err := ParseMode(string(r.mode)); err != nil {
		return r, fmt.Errorf("mode: %q: want audit, deny or disabled", r.mode)
	}
	for _, l := range []struct {
		field string
		list  []string
	}{{"namespaces", s.Namespaces}, {"excludedNamespaces", s.ExcludedNamespaces}, {"excludedImages", s.ExcludedImages}, {"excludedContainers", s.ExcludedContainers}} {
		if err := checkNames(l.field, l.list); err != nil {
			return r, err
		}
	}
	r.namespaces = s.Namespaces
	r.excludedNamespaces = c.ExcludedNamespaces
	if s.ExcludedNamespaces != nil {
		r.excludedNamespaces = s.ExcludedNamespaces
	}
	r.excludedImages = c.ExcludedImages
	if s.ExcludedImages != nil {
		r.excludedImages = s.ExcludedImages
	}
	r.excludedContainers = s.ExcludedContainers
	if s.LabelSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(s.LabelSelector)
		if err != nil {
			return r, fmt.Errorf("labelSelector: %w", err)
		}
		if !sel.Empty() {
			r.selector = sel
		}
	}
	p := &s.Parameters
	var err error
	switch rec.ID {
	case CPUMemoryLimits:
		if r.cpuMax, err = quantity("cpuLimit", p.CPULimit); err != nil {
			return r, err
		}
		if r.memMax, err = quantity("memoryLimit", p.MemoryLimit); err != nil {
			return r, err
		}
	case LeastCapabilities:
		for i, cp := range p.AllowedCapabilities {
			if cp == "*" {
				r.allowAnyCap = true
				continue
			}
			n := normCap(cp)
			if n == "" {
				return r, fmt.Errorf("parameters.allowedCapabilities[%d]: empty", i)
			}
			r.allowedCaps = append(r.allowedCaps, n)
		}
		for i, cp := range p.RequiredDropCapabilities {
			n := normCap(cp)
			if n == "" || cp == "*" {
				return r, fmt.Errorf("parameters.requiredDropCapabilities[%d]: %q is not a capability", i, cp)
			}
			r.requireDrop = append(r.requireDrop, n)
		}
	case AllowedHostPaths:
		for i, hp := range p.AllowedHostPaths {
			if !strings.HasPrefix(hp.PathPrefix, "/") {
				return r, fmt.Errorf("parameters.allowedHostPaths[%d].pathPrefix: %q is not an absolute path", i, hp.PathPrefix)
			}
			r.hostPaths = append(r.hostPaths, HostPath{PathPrefix: path.Clean(hp.PathPrefix), ReadOnly: hp.ReadOnly})
		}
	case AllowedContainerPorts:
		r.ports, r.portsText, err = portRanges("parameters.allowedContainerPorts", p.AllowedContainerPorts)
	case AllowedServicePorts:
		r.ports, r.portsText, err = portRanges("parameters.allowedServicePorts", p.AllowedServicePorts)
	case NoHostNetworkPorts:
		r.allowHostNetwork = p.AllowHostNetwork
		r.ports, r.portsText, err = portRanges("parameters.allowedHostPorts", p.AllowedHostPorts)
	case AppArmorNotOverridden:
		for i, pr := range p.AllowedProfiles {
			if pr != "*" && pr != "runtime/default" && pr != "unconfined" && (!strings.HasPrefix(pr, "localhost/") || pr == "localhost/") {
				return r, fmt.Errorf("parameters.allowedProfiles[%d]: %q: want runtime/default, unconfined, localhost/NAME, localhost/* or *", i, pr)
			}
		}
		r.profiles = p.AllowedProfiles
	case TrustedRegistries:
		for i, expr := range p.Registries {
			if expr == "" {
				return r, fmt.Errorf("parameters.registries[%d]: empty", i)
			}
			re, err := regexp.Compile(`^(?:` + expr + `)$`)
			if err != nil {
				return r, fmt.Errorf("parameters.registries[%d]: %w", i, err)
			}
			r.registries = append(r.registries, re)
		}
	case PSSBaseline, PSSRestricted:
		v := p.Version
		if v == "" {
			v = "latest"
		}
		ver, err := psaapi.ParseVersion(v)
		if err != nil {
			return r, fmt.Errorf("parameters.version: %w", err)
		}
		r.pssLevel = psaapi.LevelVersion{Level: psaapi.LevelBaseline, Version: ver}
		if rec.ID == PSSRestricted {
			r.pssLevel.Level = psaapi.LevelRestricted
		}
	}
	return r, err
}

func quantity(field, s string) (*resource.Quantity, error) {
	if s == "" {
		return nil, nil
	}
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return nil, fmt.Errorf("parameters.%s: %q: %w", field, s, err)
	}
	return &q, nil
}

// normCap turns "cap_net_admin" and "NET_ADMIN" into "NET_ADMIN".
func normCap(s string) string {
	s = strings.ToUpper(strings.TrimSpace(s))
	return strings.TrimPrefix(s, "CAP_")
}

type portRange struct{ lo, hi int32 }

func portRanges(field string, list []string) ([]portRange, string, error) {
	out := make([]portRange, 0, len(list))
	for i, s := range list {
		lo, hi, ok := strings.Cut(strings.TrimSpace(s), "-")
		if !ok {
			hi = lo
		}
		l, err1 := strconv.ParseInt(strings.TrimSpace(lo), 10, 32)
		h, err2 := strconv.ParseInt(strings.TrimSpace(hi), 10, 32)
		if err1 != nil || err2 != nil || l < 1 || h > 65535 || l > h {
			return nil, "", fmt.Errorf("%s[%d]: %q: want a port (1-65535) or a range like 3000-5000", field, i, s)
		}
		out = append(out, portRange{int32(l), int32(h)})
	}
	text := strings.Join(list, ", ")
	if text == "" {
		text = "none"
	}
	return out, text, nil
}

func inRanges(rs []portRange, p int32) bool {
	for _, r := range rs {
		if p >= r.lo && p <= r.hi {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// IgnoredNamespaces returns, sorted, the namespaces no enabled
// recommendation looks at: those every enabled recommendation excludes.
// The admission webhook's registration leaves them out, so the API server
// does not even call it there. It panics if c has not passed Validate.
func (c *Config) IgnoredNamespaces() []string {
	if c.compiled == nil {
		panic("posture: IgnoredNamespaces on a Config that has not passed Validate")
	}
	var out []string
	seen := map[string]bool{}
	for _, r := range c.compiled.recs {
		for _, ns := range r.excludedNamespaces {
			if seen[ns] {
				continue
			}
			seen[ns] = true
			if !slices.ContainsFunc(c.compiled.recs, func(r compiledRec) bool { return r.appliesIn(ns) }) {
				out = append(out, ns)
			}
		}
	}
	sort.Strings(out)
	return out
}
