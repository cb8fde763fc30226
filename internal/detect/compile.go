package detect

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/ext"
	"github.com/google/cel-go/interpreter"
)

// matcher decides whether one event satisfies one condition. pre holds
// native checks that the condition implies (derived from its CEL AST, see
// prefilter.go): they run first and reject almost every benign event
// without allocating. When exact is set they are the whole condition and
// CEL never runs; otherwise CEL, the authority, decides what pre lets by.
type matcher struct {
	src   string
	pre   []pred
	exact bool
	prg   cel.Program
	// keys file the rule in the index (index.go); nil: always a candidate.
	keys []indexKey
}

func (m *matcher) match(v *view) bool {
	for _, p := range m.pre {
		if !p(v) {
			return false
		}
	}
	if m.exact {
		return true
	}
	out, _, err := m.prg.Eval(activation{v})
	if err != nil {
		return false // e.g. a missing map key: the condition does not hold
	}
	b, ok := out.(types.Bool)
	return ok && bool(b)
}

// activation resolves field names for CEL from the view.
type activation struct{ v *view }

func (a activation) ResolveName(name string) (any, bool) {
	f, ok := fieldByName[name]
	if !ok {
		return nil, false
	}
	return f.value(a.v), true
}

func (a activation) Parent() interpreter.Activation { return nil }

// compiler turns condition text into matchers: it expands lists and macros,
// type-checks with CEL and derives the native prefilter.
type compiler struct {
	env    *cel.Env
	lists  map[string][]string
	macros map[string]string
	intel  Intel
}

func newCompiler(lists map[string][]string, macros map[string]string, in Intel) (*compiler, error) {
	in = withTextCache(in)
	opts := []cel.EnvOption{ext.Strings(), cel.OptionalTypes()}
	for _, f := range fields {
		opts = append(opts, cel.Variable(f.name, f.typ.cel()))
	}
	opts = append(opts, functions(in)...)
	env, err := cel.NewEnv(opts...)
	if err != nil {
		return nil, fmt.Errorf("build the CEL environment: %w", err)
	}
	return &compiler{env: env, lists: lists, macros: macros, intel: in}, nil
}

// compile checks src and returns its matcher. An empty condition matches
// every event of the rule's kinds.
func (c *compiler) compile(src string) (*matcher, error) {
	if strings.TrimSpace(src) == "" {
		return &matcher{src: "true", exact: true}, nil
	}
	expanded, err := c.expand(src, nil)
	if err != nil {
		return nil, err
	}
	ast, iss := c.env.Compile(expanded)
	if iss.Err() != nil {
		return nil, fmt.Errorf("condition: %w", iss.Err())
	}
	if ast.OutputType() != cel.BoolType {
		return nil, fmt.Errorf("condition is %s, want bool", ast.OutputType())
	}
	m := &matcher{src: expanded}
	pf := prefilter{ast: ast.NativeRep(), intel: c.intel}
	m.keys = pf.firstKeys(ast.NativeRep().Expr())
	if p, ok := pf.exact(ast.NativeRep().Expr()); ok {
		m.pre, m.exact = []pred{p}, true
		return m, nil
	}
	m.pre = pf.necessary(ast.NativeRep().Expr())
	m.prg, err = c.env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, fmt.Errorf("condition: %w", err)
	}
	return m, nil
}

// compileString checks a string-valued expression (a sequence step's key,
// a burst's distinct field) and returns a function computing it.
func (c *compiler) compileString(src string) (func(*view) string, error) {
	if f, ok := fieldByName[strings.TrimSpace(src)]; ok && f.typ == tString {
		return func(v *view) string { return strings.Clone(f.str(v)) }, nil
	}
	expanded, err := c.expand(src, nil)
	if err != nil {
		return nil, err
	}
	ast, iss := c.env.Compile(expanded)
	if iss.Err() != nil {
		return nil, fmt.Errorf("expression %q: %w", src, iss.Err())
	}
	if ast.OutputType() != cel.StringType {
		return nil, fmt.Errorf("expression %q is %s, want string", src, ast.OutputType())
	}
	prg, err := c.env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, err
	}
	return func(v *view) string {
		out, _, err := prg.Eval(activation{v})
		if err != nil {
			return ""
		}
		s, _ := out.Value().(string)
		return s
	}, nil
}

// expand replaces list names by list literals and macro names by their
// parenthesised conditions, outside string literals and never after a dot
// (so proc.name stays a field). stack guards against macro cycles.
func (c *compiler) expand(src string, stack []string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(src); {
		ch := src[i]
		switch {
		case ch == '"' || ch == '\'':
			j := skipString(src, i)
			b.WriteString(src[i:j])
			i = j
		case isIdentStart(ch):
			j := i + 1
			for j < len(src) && isIdentChar(src[j]) {
				j++
			}
			word := src[i:j]
			afterDot := prevNonSpace(src, i) == '.'
			// r"..." and b"..." are raw and bytes string prefixes.
			if (word == "r" || word == "R" || word == "b" || word == "B" || word == "rb" || word == "br") && j < len(src) && (src[j] == '"' || src[j] == '\'') {
				k := skipString(src, j)
				b.WriteString(src[i:k])
				i = k
				continue
			}
			switch {
			case afterDot:
				b.WriteString(word)
			case c.lists[word] != nil:
				items, err := c.listItems(word, nil)
				if err != nil {
					return "", err
				}
				b.WriteByte('[')
				for k, it := range items {
					if k > 0 {
						b.WriteString(", ")
					}
					b.WriteString(strconv.Quote(it))
				}
				b.WriteByte(']')
			case c.macros[word] != "":
				for _, s := range stack {
					if s == word {
						return "", fmt.Errorf("macro %s refers to itself through %s", word, strings.Join(stack, " -> "))
					}
				}
				inner, err := c.expand(c.macros[word], append(stack, word))
				if err != nil {
					return "", err
				}
				b.WriteByte('(')
				b.WriteString(inner)
				b.WriteByte(')')
			default:
				b.WriteString(word)
			}
			i = j
		default:
			b.WriteByte(ch)
			i++
		}
	}
	return b.String(), nil
}

// listItems resolves a list whose items may name other lists.
func (c *compiler) listItems(name string, stack []string) ([]string, error) {
	for _, s := range stack {
		if s == name {
			return nil, fmt.Errorf("list %s includes itself through %s", name, strings.Join(stack, " -> "))
		}
	}
	var out []string
	for _, it := range c.lists[name] {
		if c.lists[it] != nil {
			sub, err := c.listItems(it, append(stack, name))
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
			continue
		}
		out = append(out, it)
	}
	return out, nil
}

func skipString(s string, i int) int {
	q := s[i]
	triple := i+2 < len(s) && s[i+1] == q && s[i+2] == q
	if triple {
		end := strings.Index(s[i+3:], string([]byte{q, q, q}))
		if end < 0 {
			return len(s)
		}
		return i + 3 + end + 3
	}
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case q:
			return j + 1
		}
	}
	return len(s)
}

func prevNonSpace(s string, i int) byte {
	for i--; i >= 0; i-- {
		if s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r' {
			return s[i]
		}
	}
	return 0
}

func isIdentStart(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isIdentChar(c byte) bool  { return isIdentStart(c) || c >= '0' && c <= '9' }

// functions are Vigil's additions to CEL: string/list helpers whose native
// twins the prefilter uses, and threat-intelligence lookups.
func functions(in Intel) []cel.EnvOption {
	strBool := func(name string, f func(string) bool) cel.EnvOption {
		return cel.Function(name, cel.Overload(name+"_string", []*cel.Type{cel.StringType}, cel.BoolType,
			cel.UnaryBinding(func(v ref.Val) ref.Val {
				s, ok := v.(types.String)
				if !ok {
					return types.NewErr("%s: want a string", name)
				}
				return types.Bool(f(string(s)))
			})))
	}
	opts := []cel.EnvOption{
		cel.Function("contains_any",
			cel.Overload("contains_any_string_list", []*cel.Type{cel.StringType, cel.ListType(cel.StringType)}, cel.BoolType,
				cel.BinaryBinding(func(s, l ref.Val) ref.Val {
					str, ok := s.(types.String)
					if !ok {
						return types.NewErr("contains_any: want a string")
					}
					needles, err := stringList(l)
					if err != nil {
						return types.NewErr("contains_any: %v", err)
					}
					return types.Bool(containsAny(string(str), needles))
				}))),
		cel.Function("image_in",
			cel.Overload("image_in_string_list", []*cel.Type{cel.StringType, cel.ListType(cel.StringType)}, cel.BoolType,
				cel.BinaryBinding(func(s, l ref.Val) ref.Val {
					ref, ok := s.(types.String)
					if !ok {
						return types.NewErr("image_in: want a string")
					}
					names, err := stringList(l)
					if err != nil {
						return types.NewErr("image_in: %v", err)
					}
					return types.Bool(imageIn(string(ref), names))
				}))),
		cel.Function("any_in",
			cel.Overload("any_in_list_list", []*cel.Type{cel.ListType(cel.StringType), cel.ListType(cel.StringType)}, cel.BoolType,
				cel.BinaryBinding(func(a, b ref.Val) ref.Val {
					have, err := stringList(a)
					if err != nil {
						return types.NewErr("any_in: %v", err)
					}
					want, err := stringList(b)
					if err != nil {
						return types.NewErr("any_in: %v", err)
					}
					set := make(map[string]struct{}, len(want))
					for _, w := range want {
						set[w] = struct{}{}
					}
					return types.Bool(anyIn(have, set))
				}))),
		cel.Function("basename",
			cel.Overload("basename_string", []*cel.Type{cel.StringType}, cel.StringType,
				cel.UnaryBinding(func(v ref.Val) ref.Val {
					s, ok := v.(types.String)
					if !ok {
						return types.NewErr("basename: want a string")
					}
					return types.String(basename(string(s)))
				}))),
	}
	for name, f := range intelFuncs(in) {
		opts = append(opts, strBool(name, f))
	}
	opts = append(opts, cel.Function("ti_miner_port",
		cel.Overload("ti_miner_port_int", []*cel.Type{cel.IntType}, cel.BoolType,
			cel.UnaryBinding(func(v ref.Val) ref.Val {
				p, ok := v.(types.Int)
				if !ok {
					return types.NewErr("ti_miner_port: want an int")
				}
				return types.Bool(in.MinerPort(int(p)))
			}))))
	return opts
}

func stringList(v ref.Val) ([]string, error) {
	l, ok := v.(interface {
		Size() ref.Val
		Get(ref.Val) ref.Val
	})
	if !ok {
		return nil, errors.New("want a list of strings")
	}
	n, _ := l.Size().(types.Int)
	out := make([]string, 0, int(n))
	for i := types.Int(0); i < n; i++ {
		s, ok := l.Get(i).(types.String)
		if !ok {
			return nil, errors.New("want a list of strings")
		}
		out = append(out, string(s))
	}
	return out, nil
}

func containsAny(s string, needles []string) bool {
	for _, n := range needles {
		if strings.Contains(s, n) {
			return true
		}
	}
	return false
}

// imageIn reports whether the image reference names any of names (imageNames).
func imageIn(ref string, names []string) bool {
	for _, n := range names {
		if imageNames(ref, n) {
			return true
		}
	}
	return false
}

// imageNames reports whether the image reference names name as whole words:
// name occurs in it between separators ('/', ':', '@', '-', '_', '.') or its
// ends, so "csi" names "registry.k8s.io/sig-storage/csi-provisioner:v5" and
// "docker:27-dind" names "dind", but "csi" does not name "evil/csiminer". A
// name that begins with a registry host ("vigil.dev/vigil") must begin the
// reference. Allow lists of images use it: a plain substring lets any image
// that happens to contain a listed word through.
func imageNames(ref, name string) bool {
	if name == "" {
		return false
	}
	anchored := false
	if i := strings.IndexByte(name, '/'); i > 0 && strings.ContainsAny(name[:i], ".:") {
		anchored = true
	}
	for off := 0; off <= len(ref)-len(name); {
		i := strings.Index(ref[off:], name)
		if i < 0 {
			return false
		}
		i += off
		if anchored && i > 0 {
			return false
		}
		end := i + len(name)
		if (i == 0 || isImageSep(ref[i-1])) && (end == len(ref) || isImageSep(ref[end])) {
			return true
		}
		off = i + 1
	}
	return false
}

func isImageSep(c byte) bool {
	return c == '/' || c == ':' || c == '@' || c == '-' || c == '_' || c == '.'
}

func anyIn(have []string, set map[string]struct{}) bool {
	for _, h := range have {
		if _, ok := set[h]; ok {
			return true
		}
	}
	return false
}
