package detect

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/vigil-sec/vigil/internal/event"
)

//go:embed rules
var builtinFS embed.FS

// maxRulesFile bounds one rules or fixture file: rules are small, and a
// mistaken path (a log, a binary) should fail fast, not eat memory.
const maxRulesFile = 4 << 20

// Options says which rules to load.
type Options struct {
	// Paths are files or directories of user rules (*.yaml, *.yml; test
	// files *.test.yaml are skipped). They load after the built-in rules
	// and override lists, macros and rules of the same name or id.
	Paths []string
	// Disable turns rules off by id; a trailing * matches a prefix
	// ("runtime.miner-*").
	Disable []string
	// NoBuiltin loads only Paths (for `vigil rules test` on a lone file).
	NoBuiltin bool
	// Intel answers the ti_* functions; nil means the shipped lists.
	Intel Intel
	// Kinds, when set, loads only the rules that look at one of these
	// event kinds: the sensor, which never sees an audit event, does not
	// compile the control-plane rules. Lists and macros load whole.
	Kinds []event.Kind
}

// Ruleset is a loaded, compiled and checked set of rules. It is immutable
// and safe for concurrent use.
type Ruleset struct {
	rules      []*compiled // every rule, disabled ones included, by id
	byKind     map[event.Kind]*kindIndex
	exceptions []Exception
	intel      Intel
	c          *compiler
}

// compiled is a rule ready to evaluate.
type compiled struct {
	Rule
	m        *matcher // the condition (every step's precondition for sequences)
	steps    []*step
	evidence []*field
	distinct func(*view) string
}

type step struct {
	Step
	m   *matcher
	key func(*view) string
}

// Rules returns every loaded rule, disabled ones included, sorted by id.
func (rs *Ruleset) Rules() []Rule {
	out := make([]Rule, len(rs.rules))
	for i, c := range rs.rules {
		out[i] = c.Rule
	}
	return out
}

// Exceptions returns the exceptions the rule files declared.
func (rs *Ruleset) Exceptions() []Exception { return slices.Clone(rs.exceptions) }

// Load reads the built-in rules and opts.Paths, resolves lists and macros,
// and compiles and checks every condition. The error lists every problem
// found, each with its file and rule id.
func Load(opts Options) (*Ruleset, error) {
	var files []namedFile
	if !opts.NoBuiltin {
		b, err := builtinFiles()
		if err != nil {
			return nil, err
		}
		files = append(files, b...)
	}
	for _, p := range opts.Paths {
		u, err := userFiles(p)
		if err != nil {
			return nil, err
		}
		files = append(files, u...)
	}
	in := opts.Intel
	if in == nil {
		in = defaultIntel()
	}
	if len(opts.Kinds) > 0 {
		for i := range files {
			files[i].Rules = slices.DeleteFunc(files[i].Rules, func(r Rule) bool { return !r.looksAtAny(opts.Kinds) })
		}
	}
	return build(files, opts.Disable, in)
}

type namedFile struct {
	name string
	File
}

func builtinFiles() ([]namedFile, error) {
	var out []namedFile
	err := fs.WalkDir(builtinFS, "rules", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !isRulesFile(p) {
			return err
		}
		data, err := builtinFS.ReadFile(p)
		if err != nil {
			return err
		}
		name := "builtin:" + strings.TrimPrefix(p, "rules/")
		f, err := parseFile(name, data) // the origin BuiltinTests recognises
		if err != nil {
			return err
		}
		out = append(out, namedFile{name, f})
		return nil
	})
	return out, err
}

func userFiles(p string) ([]namedFile, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	var paths []string
	if st.IsDir() {
		err = filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && isRulesFile(q) {
				paths = append(paths, q)
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("rules: %w", err)
		}
		sort.Strings(paths)
	} else {
		paths = []string{p}
	}
	var out []namedFile
	for _, q := range paths {
		data, err := readLimited(q)
		if err != nil {
			return nil, err
		}
		f, err := parseFile(q, data)
		if err != nil {
			return nil, err
		}
		out = append(out, namedFile{q, f})
	}
	return out, nil
}

func isRulesFile(p string) bool {
	ext := path.Ext(p)
	return (ext == ".yaml" || ext == ".yml") && !strings.HasSuffix(p, ".test"+ext)
}

func readLimited(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRulesFile+1))
	if err != nil {
		return nil, fmt.Errorf("rules: read %s: %w", p, err)
	}
	if len(data) > maxRulesFile {
		return nil, fmt.Errorf("rules: %s is larger than %d bytes", p, maxRulesFile)
	}
	return data, nil
}

// parseFile decodes one rules file strictly: unknown keys are errors, so
// a misspelt "condtion" does not silently disable a rule.
func parseFile(name string, data []byte) (File, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return File{}, fmt.Errorf("%s: %w", name, err)
	}
	for i := range f.Rules {
		f.Rules[i].origin = name
	}
	return f, nil
}

// build merges files in order and compiles the result.
func build(files []namedFile, disable []string, in Intel) (*Ruleset, error) {
	lists := map[string][]string{}
	macros := map[string]string{}
	rules := map[string]Rule{}
	var exceptions []Exception
	var errs []error
	for _, f := range files {
		for _, l := range f.Lists {
			if !namePattern.MatchString(l.Name) {
				errs = append(errs, fmt.Errorf("%s: list name %q: want lower_snake_case", f.name, l.Name))
				continue
			}
			if fieldByName[l.Name] != nil || strings.Contains(l.Name, ".") {
				errs = append(errs, fmt.Errorf("%s: list %s shadows a field", f.name, l.Name))
				continue
			}
			if l.Append {
				lists[l.Name] = append(lists[l.Name], l.Items...)
			} else {
				lists[l.Name] = append([]string{}, l.Items...)
			}
			if lists[l.Name] == nil {
				lists[l.Name] = []string{} // an empty list is still a list
			}
		}
		for _, m := range f.Macros {
			if !namePattern.MatchString(m.Name) || strings.TrimSpace(m.Condition) == "" {
				errs = append(errs, fmt.Errorf("%s: macro %q needs a lower_snake_case name and a condition", f.name, m.Name))
				continue
			}
			macros[m.Name] = m.Condition
		}
		for _, r := range f.Rules {
			rules[r.ID] = r
		}
		for _, x := range f.Exceptions {
			if err := x.validate(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", f.name, err))
				continue
			}
			exceptions = append(exceptions, x)
		}
	}
	for name := range lists {
		if macros[name] != "" {
			errs = append(errs, fmt.Errorf("%s is both a list and a macro", name))
		}
	}
	c, err := newCompiler(lists, macros, in)
	if err != nil {
		return nil, err
	}
	rs := &Ruleset{byKind: map[event.Kind]*kindIndex{}, exceptions: exceptions, intel: in, c: c}
	enabled := map[event.Kind][]*compiled{}
	ids := make([]string, 0, len(rules))
	for id := range rules {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		r := rules[id]
		if disabled(id, disable) {
			off := false
			r.Enabled = &off
		}
		cr, err := c.compileRule(r)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: rule %s: %w", r.origin, r.ID, err))
			continue
		}
		rs.rules = append(rs.rules, cr)
		if !cr.IsEnabled() {
			continue
		}
		for _, k := range cr.allKinds() {
			enabled[k] = append(enabled[k], cr)
		}
	}
	for k, rules := range enabled {
		rs.byKind[k] = newKindIndex(k, rules)
	}
	for _, d := range disable {
		if !strings.HasSuffix(d, "*") && rules[d].ID == "" {
			errs = append(errs, fmt.Errorf("--disable-rule %s: no such rule", d))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return rs, nil
}

func disabled(id string, disable []string) bool {
	for _, d := range disable {
		if d == id || strings.HasSuffix(d, "*") && strings.HasPrefix(id, strings.TrimSuffix(d, "*")) {
			return true
		}
	}
	return false
}

// compileRule validates r and compiles its conditions.
func (c *compiler) compileRule(r Rule) (*compiled, error) {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if !ruleIDPattern.MatchString(r.ID) {
		bad("id: want a source prefix and a kebab-case name, e.g. runtime.drift-binary-executed")
	}
	if strings.TrimSpace(r.Title) == "" {
		bad("title is required")
	}
	if strings.TrimSpace(r.Description) == "" {
		bad("description is required")
	}
	if r.Severity.Rank() < 0 {
		bad("severity %q: want informational, low, medium or high", r.Severity)
	}
	if r.Tactic == "" {
		bad("tactic is required (a MITRE ATT&CK tactic, e.g. Execution)")
	} else if t, ok := canonicalTactic(r.Tactic); ok {
		r.Tactic = t
	} else {
		bad("tactic %q: want a MITRE ATT&CK enterprise tactic (%s) or its TA id", r.Tactic, tacticNames())
	}
	for _, t := range r.Techniques {
		if !techPattern.MatchString(t) {
			bad("technique %q: want a MITRE id like T1059 or T1059.004", t)
		}
	}
	if strings.TrimSpace(r.Remediation) == "" {
		bad("remediation is required")
	}
	stateful := 0
	for _, on := range []bool{r.Sequence != nil, r.Burst != nil, r.SustainedCPU != nil, r.Drift} {
		if on {
			stateful++
		}
	}
	if stateful > 1 {
		bad("sequence, burst, sustained_cpu and drift exclude each other")
	}
	if r.Sequence == nil && len(r.Kinds) == 0 {
		bad("kinds: name the event kinds the rule looks at")
	}
	for _, k := range r.Kinds {
		if !knownKind(k) {
			bad("kind %q is not an event kind", k)
		}
	}
	cr := &compiled{Rule: r}
	var err error
	if cr.m, err = c.compile(r.Condition); err != nil {
		bad("%v", err)
	}
	for _, name := range r.Evidence {
		f, ok := fieldByName[name]
		if !ok {
			bad("evidence: no field %q (see `vigil rules fields`)", name)
			continue
		}
		cr.evidence = append(cr.evidence, f)
	}
	if s := r.Sequence; s != nil {
		if s.By != "" && s.By != "container" && s.By != "process_tree" && s.By != "user" {
			bad("sequence.by %q: want container, process_tree or user (k8s.audit)", s.By)
		}
		if s.Within <= 0 {
			bad("sequence.within is required")
		}
		if len(s.Steps) < 2 {
			bad("a sequence needs at least two steps")
		}
		for i, st := range s.Steps {
			if len(st.Kinds) == 0 {
				bad("sequence step %d: kinds are required", i+1)
			}
			for _, k := range st.Kinds {
				if !knownKind(k) {
					bad("sequence step %d: kind %q is not an event kind", i+1, k)
				}
			}
			cs := &step{Step: st}
			if cs.m, err = c.compile(st.Condition); err != nil {
				bad("sequence step %d: %v", i+1, err)
			}
			if st.Key != "" {
				if cs.key, err = c.compileString(st.Key); err != nil {
					bad("sequence step %d: key: %v", i+1, err)
				}
			}
			cr.steps = append(cr.steps, cs)
		}
	}
	if b := r.Burst; b != nil {
		if b.By != "" && b.By != "container" && b.By != "process_tree" && b.By != "user" {
			bad("burst.by %q: want container, process_tree or user (k8s.audit)", b.By)
		}
		if b.Within <= 0 || b.Count < 2 {
			bad("burst needs within and a count of at least 2")
		}
		if b.Distinct != "" {
			if cr.distinct, err = c.compileString(b.Distinct); err != nil {
				bad("burst.distinct: %v", err)
			}
		}
	}
	if s := r.SustainedCPU; s != nil {
		if s.Cores <= 0 || s.For <= 0 {
			bad("sustained_cpu needs cores > 0 and for")
		}
		if !slices.Equal(r.Kinds, []event.Kind{event.ProcessExec}) {
			bad("sustained_cpu rules look at process.exec only")
		}
	}
	if r.Drift && !slices.Equal(r.Kinds, []event.Kind{event.ProcessExec}) {
		bad("drift rules look at process.exec only")
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return cr, nil
}

var eventKinds = append(slices.Clone(event.SensorKinds), event.K8sAudit)

func knownKind(k event.Kind) bool { return slices.Contains(eventKinds, k) }
