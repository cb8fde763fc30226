package detect

import (
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
)

// pred is a native check of one event.
type pred func(*view) bool

// prefilter derives native checks from a type-checked condition. It knows
// the forms rules are made of: field comparisons with literals, `in` with a
// list literal, string methods with a literal argument, contains_any,
// image_in, any_in, threat-intelligence lookups on a field, boolean fields, and &&,
// || and ! over those. Each native check has exactly the meaning CEL gives
// the same expression (prefilter_test.go compares them on every built-in
// rule and fixture), so CEL only runs for conditions with other parts.
type prefilter struct {
	ast   *celast.AST
	intel Intel
}

// exact returns a native check equivalent to e, if it has one.
func (p prefilter) exact(e celast.Expr) (pred, bool) {
	switch e.Kind() {
	case celast.LiteralKind:
		if b, ok := e.AsLiteral().(types.Bool); ok {
			v := bool(b)
			return func(*view) bool { return v }, true
		}
	case celast.IdentKind, celast.SelectKind:
		if f := p.field(e); f != nil && f.typ == tBool {
			return f.flag, true
		}
	case celast.CallKind:
		return p.call(e.AsCall())
	}
	return nil, false
}

// necessary returns native checks that must all hold for e to be true:
// every native conjunct of a top-level && chain.
func (p prefilter) necessary(e celast.Expr) []pred {
	if e.Kind() == celast.CallKind && e.AsCall().FunctionName() == "_&&_" {
		var out []pred
		for _, a := range e.AsCall().Args() {
			out = append(out, p.necessary(a)...)
		}
		return out
	}
	if q, ok := p.exact(e); ok {
		return []pred{q}
	}
	return nil
}

// field returns the field an identifier or select resolves to.
func (p prefilter) field(e celast.Expr) *field {
	if ref, ok := p.ast.ReferenceMap()[e.ID()]; ok && ref.Name != "" {
		return fieldByName[ref.Name]
	}
	if e.Kind() == celast.IdentKind {
		return fieldByName[e.AsIdent()]
	}
	return nil
}

func (p prefilter) call(c celast.CallExpr) (pred, bool) {
	args := c.Args()
	switch name := c.FunctionName(); name {
	case "_&&_", "_||_":
		l, ok1 := p.exact(args[0])
		r, ok2 := p.exact(args[1])
		if !ok1 || !ok2 {
			return nil, false
		}
		if name == "_&&_" {
			return func(v *view) bool { return l(v) && r(v) }, true
		}
		return func(v *view) bool { return l(v) || r(v) }, true
	case "!_":
		q, ok := p.exact(args[0])
		if !ok {
			return nil, false
		}
		return func(v *view) bool { return !q(v) }, true
	case "_==_", "_!=_":
		q, ok := p.equal(args[0], args[1])
		if !ok {
			q, ok = p.equal(args[1], args[0])
		}
		if !ok {
			return nil, false
		}
		if name == "_!=_" {
			return func(v *view) bool { return !q(v) }, true
		}
		return q, true
	case "_<_", "_<=_", "_>_", "_>=_":
		f := p.field(args[0])
		n, ok := literal[types.Int](args[1])
		if f == nil || f.typ != tInt || !ok {
			return nil, false
		}
		get, lim := f.num, int64(n)
		switch name {
		case "_<_":
			return func(v *view) bool { return get(v) < lim }, true
		case "_<=_":
			return func(v *view) bool { return get(v) <= lim }, true
		case "_>_":
			return func(v *view) bool { return get(v) > lim }, true
		}
		return func(v *view) bool { return get(v) >= lim }, true
	case "@in":
		return p.in(args[0], args[1])
	case "startsWith", "endsWith", "contains", "matches":
		if !c.IsMemberFunction() {
			return nil, false
		}
		f := p.field(c.Target())
		lit, ok := literal[types.String](args[0])
		if f == nil || f.typ != tString || !ok {
			return nil, false
		}
		get, s := f.str, string(lit)
		switch name {
		case "startsWith":
			return func(v *view) bool { return strings.HasPrefix(get(v), s) }, true
		case "endsWith":
			return func(v *view) bool { return strings.HasSuffix(get(v), s) }, true
		case "contains":
			return func(v *view) bool { return strings.Contains(get(v), s) }, true
		}
		re, err := regexp.Compile(s)
		if err != nil {
			return nil, false
		}
		need := requiredLiterals(s)
		return func(v *view) bool {
			text := get(v)
			for _, any := range need {
				if !containsAny(text, any) {
					return false
				}
			}
			return re.MatchString(text)
		}, true
	case "contains_any":
		f := p.field(args[0])
		needles, ok := stringLiterals(args[1])
		if f == nil || f.typ != tString || !ok {
			return nil, false
		}
		get := f.str
		if len(needles) < 4 {
			return func(v *view) bool { return containsAny(get(v), needles) }, true
		}
		set := newBigramSet(needles)
		return func(v *view) bool { return set.any(get(v)) }, true
	case "image_in":
		f := p.field(args[0])
		names, ok := stringLiterals(args[1])
		if f == nil || f.typ != tString || !ok {
			return nil, false
		}
		get := f.str
		return func(v *view) bool { return imageIn(get(v), names) }, true
	case "any_in":
		f := p.field(args[0])
		items, ok := stringLiterals(args[1])
		if f == nil || f.typ != tList || !ok {
			return nil, false
		}
		set := toSet(items)
		get := f.list
		return func(v *view) bool { return anyIn(get(v), set) }, true
	case "ti_miner_port":
		f := p.field(args[0])
		if f == nil || f.typ != tInt || p.intel == nil {
			return nil, false
		}
		get, in := f.num, p.intel
		return func(v *view) bool { return in.MinerPort(int(get(v))) }, true
	default:
		fn, ok := intelFuncs(p.intel)[name]
		if !ok || len(args) != 1 || c.IsMemberFunction() {
			return nil, false
		}
		f := p.field(args[0])
		if f == nil || f.typ != tString {
			return nil, false
		}
		get := f.str
		return func(v *view) bool { return fn(get(v)) }, true
	}
}

// equal handles field == literal for strings, ints and bools.
func (p prefilter) equal(a, b celast.Expr) (pred, bool) {
	f := p.field(a)
	if f == nil || b.Kind() != celast.LiteralKind {
		return nil, false
	}
	switch lit := b.AsLiteral().(type) {
	case types.String:
		if f.typ != tString {
			return nil, false
		}
		get, s := f.str, string(lit)
		return func(v *view) bool { return get(v) == s }, true
	case types.Int:
		if f.typ != tInt {
			return nil, false
		}
		get, n := f.num, int64(lit)
		return func(v *view) bool { return get(v) == n }, true
	case types.Bool:
		if f.typ != tBool {
			return nil, false
		}
		get, want := f.flag, bool(lit)
		return func(v *view) bool { return get(v) == want }, true
	}
	return nil, false
}

// in handles field in [literals] for string and int fields.
func (p prefilter) in(a, list celast.Expr) (pred, bool) {
	f := p.field(a)
	if f == nil || list.Kind() != celast.ListKind {
		return nil, false
	}
	switch f.typ {
	case tString:
		items, ok := stringLiterals(list)
		if !ok {
			return nil, false
		}
		set, get := toSet(items), f.str
		return func(v *view) bool { _, ok := set[get(v)]; return ok }, true
	case tInt:
		set := map[int64]struct{}{}
		for _, el := range list.AsList().Elements() {
			n, ok := literal[types.Int](el)
			if !ok {
				return nil, false
			}
			set[int64(n)] = struct{}{}
		}
		get := f.num
		return func(v *view) bool { _, ok := set[get(v)]; return ok }, true
	}
	return nil, false
}

func literal[T types.String | types.Int | types.Bool](e celast.Expr) (T, bool) {
	var zero T
	if e.Kind() != celast.LiteralKind {
		return zero, false
	}
	v, ok := e.AsLiteral().(T)
	return v, ok
}

func stringLiterals(e celast.Expr) ([]string, bool) {
	if e.Kind() != celast.ListKind {
		return nil, false
	}
	var out []string
	for _, el := range e.AsList().Elements() {
		s, ok := literal[types.String](el)
		if !ok {
			return nil, false
		}
		out = append(out, string(s))
	}
	return out, true
}

func toSet(items []string) map[string]struct{} {
	set := make(map[string]struct{}, len(items))
	for _, it := range items {
		set[it] = struct{}{}
	}
	return set
}

// requiredLiterals returns substrings a text must contain for the regular
// expression re to match somewhere in it: for each returned list, one of
// its strings. Checking them first is much cheaper than running the
// regexp, which they almost always save on benign command lines. Case-
// folded parts, large character classes and optional parts require
// nothing; nil means nothing is known.
func requiredLiterals(re string) [][]string {
	r, err := syntax.Parse(re, syntax.Perl)
	if err != nil {
		return nil
	}
	need := required(r)
	// The longest strings are the most telling; a few lists suffice.
	slices.SortStableFunc(need, func(a, b []string) int { return minLen(b) - minLen(a) })
	if len(need) > 4 {
		need = need[:4]
	}
	return need
}

func required(r *syntax.Regexp) [][]string {
	switch r.Op {
	case syntax.OpLiteral:
		if slices.Contains(r.Rune, utf8.RuneError) {
			return nil
		}
		if r.Flags&syntax.FoldCase == 0 {
			return [][]string{{string(r.Rune)}}
		}
		// Every spelling the case folding allows, when there are few.
		out := []string{""}
		for _, c := range r.Rune {
			var next []string
			for f := c; ; {
				for _, s := range out {
					next = append(next, s+string(f))
				}
				if f = unicode.SimpleFold(f); f == c {
					break
				}
			}
			if len(next) > 8 {
				return nil
			}
			out = next
		}
		return [][]string{out}
	case syntax.OpCharClass:
		// Pairs of inclusive ranges; a few ASCII bytes at most.
		var out []string
		for i := 0; i+1 < len(r.Rune); i += 2 {
			lo, hi := r.Rune[i], r.Rune[i+1]
			if hi >= utf8.RuneSelf || hi-lo+1 > 4 || len(out)+int(hi-lo+1) > 4 {
				return nil
			}
			for c := lo; c <= hi; c++ {
				out = append(out, string(c))
			}
		}
		if len(out) == 0 {
			return nil
		}
		return [][]string{out}
	case syntax.OpCapture, syntax.OpPlus:
		return required(r.Sub[0])
	case syntax.OpRepeat:
		if r.Min >= 1 {
			return required(r.Sub[0])
		}
	case syntax.OpConcat:
		var out [][]string
		for _, s := range r.Sub {
			out = append(out, required(s)...)
		}
		return out
	case syntax.OpAlternate:
		// One alternative matches: one of the best strings of each.
		var out []string
		for _, s := range r.Sub {
			need := required(s)
			if len(need) == 0 {
				return nil
			}
			best := need[0]
			for _, n := range need[1:] {
				if minLen(n) > minLen(best) {
					best = n
				}
			}
			out = append(out, best...)
		}
		return [][]string{out}
	}
	return nil
}
