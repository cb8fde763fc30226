package detect

import (
	"math/bits"
	"strings"

	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
)

// The rule index picks, for each event, the few rules that can match it,
// so that a benign event costs a handful of lookups instead of a check per
// rule. Each rule is filed under one of its conjuncts that names concrete
// values: proc.name in [...], contains_any(proc.cmdline, [...]),
// file.path.startsWith("..."), proc.drift, ... (an OR of such conjuncts
// files it under all of their values). An event then gathers candidates
// by looking up its values: one map lookup per indexed name field, one
// scan of each indexed text field for all the rules' substrings at once,
// one check per indexed flag. Rules with no such conjunct are always
// candidates. The full matcher still decides: the index only skips rules
// whose filing conjunct cannot hold.

// keyKind says how an indexKey's values are compared with the event.
type keyKind int

const (
	keyEqual  keyKind = iota // the field's value equals one of values (any element for list fields)
	keySubstr                // the field's value contains one of values
	keyFlag                  // the boolean field is true
	keyFunc                  // fn(field) is true (threat-intelligence lookups)
)

// indexKey is one way a conjunct can hold.
type indexKey struct {
	kind   keyKind
	field  *field
	values []string
	fn     func(string) bool // keyFunc
	fnName string
}

// key returns the index keys of conjunct e: it holds only if one of them
// does. ok is false when e cannot be filed.
func (p prefilter) key(e celast.Expr) ([]indexKey, bool) {
	switch e.Kind() {
	case celast.IdentKind, celast.SelectKind:
		if f := p.field(e); f != nil && f.typ == tBool {
			return []indexKey{{kind: keyFlag, field: f}}, true
		}
		return nil, false
	case celast.CallKind:
	default:
		return nil, false
	}
	c := e.AsCall()
	args := c.Args()
	switch c.FunctionName() {
	case "_||_":
		l, ok1 := p.key(args[0])
		r, ok2 := p.key(args[1])
		if !ok1 || !ok2 {
			return nil, false
		}
		return append(l, r...), true
	case "_&&_":
		if k, ok := p.key(args[0]); ok {
			return k, true
		}
		return p.key(args[1])
	case "_==_":
		for _, pair := range [][2]celast.Expr{{args[0], args[1]}, {args[1], args[0]}} {
			f := p.field(pair[0])
			if f == nil {
				continue
			}
			if s, ok := literal[types.String](pair[1]); ok && f.typ == tString {
				return []indexKey{{kind: keyEqual, field: f, values: []string{string(s)}}}, true
			}
			if b, ok := literal[types.Bool](pair[1]); ok && bool(b) && f.typ == tBool {
				return []indexKey{{kind: keyFlag, field: f}}, true
			}
		}
	case "@in":
		f := p.field(args[0])
		items, ok := stringLiterals(args[1])
		if f != nil && f.typ == tString && ok {
			return []indexKey{{kind: keyEqual, field: f, values: items}}, true
		}
	case "any_in":
		f := p.field(args[0])
		items, ok := stringLiterals(args[1])
		if f != nil && f.typ == tList && ok {
			return []indexKey{{kind: keyEqual, field: f, values: items}}, true
		}
	case "contains_any":
		f := p.field(args[0])
		items, ok := stringLiterals(args[1])
		if f != nil && f.typ == tString && ok && minLen(items) >= 2 {
			return []indexKey{{kind: keySubstr, field: f, values: items}}, true
		}
	case "contains", "startsWith", "endsWith":
		if !c.IsMemberFunction() {
			return nil, false
		}
		f := p.field(c.Target())
		s, ok := literal[types.String](args[0])
		if f != nil && f.typ == tString && ok && len(s) >= 2 {
			return []indexKey{{kind: keySubstr, field: f, values: []string{string(s)}}}, true
		}
	default:
		fn, ok := intelFuncs(p.intel)[c.FunctionName()]
		if !ok || len(args) != 1 || c.IsMemberFunction() {
			return nil, false
		}
		if f := p.field(args[0]); f != nil && f.typ == tString {
			return []indexKey{{kind: keyFunc, field: f, fn: fn, fnName: c.FunctionName()}}, true
		}
	}
	return nil, false
}

// firstKeys returns the keys of the first conjunct of e's top-level &&
// chain that can be filed.
func (p prefilter) firstKeys(e celast.Expr) []indexKey {
	if e.Kind() == celast.CallKind && e.AsCall().FunctionName() == "_&&_" {
		for _, a := range e.AsCall().Args() {
			if k := p.firstKeys(a); k != nil {
				return k
			}
		}
		return nil
	}
	if k, ok := p.key(e); ok {
		return k
	}
	return nil
}

func minLen(items []string) int {
	if len(items) == 0 {
		return 0
	}
	m := len(items[0])
	for _, s := range items[1:] {
		m = min(m, len(s))
	}
	return m
}

// kindIndex files the rules of one event kind.
type kindIndex struct {
	rules  []*compiled
	always []int
	equal  []equalIndex
	substr []*substrIndex
	flags  []flagIndex
	funcs  []funcIndex
	words  int // bitset size in uint64s
}

// funcIndex files rules under fn(field): one call per event, whatever the
// number of rules asking.
type funcIndex struct {
	field *field
	fn    func(string) bool
	rules []int
}

type equalIndex struct {
	field *field
	rules map[string][]int
}

type flagIndex struct {
	field *field
	rules []int
}

func newKindIndex(rules []*compiled) *kindIndex {
	ix := &kindIndex{rules: rules, words: (len(rules) + 63) / 64}
	eq := map[*field]map[string][]int{}
	sub := map[*field]*substrIndex{}
	flags := map[*field][]int{}
	funcs := map[string]*funcIndex{}
	var funcOrder []string
	for i, r := range rules {
		keys := r.m.keys
		if r.steps != nil {
			keys = nil // a sequence's steps have conditions of their own
		}
		if len(keys) == 0 {
			ix.always = append(ix.always, i)
			continue
		}
		for _, k := range keys {
			switch k.kind {
			case keyEqual:
				if eq[k.field] == nil {
					eq[k.field] = map[string][]int{}
				}
				for _, v := range k.values {
					eq[k.field][v] = appendOnce(eq[k.field][v], i)
				}
			case keySubstr:
				if sub[k.field] == nil {
					sub[k.field] = &substrIndex{field: k.field}
				}
				for _, v := range k.values {
					sub[k.field].add(v, i)
				}
			case keyFlag:
				flags[k.field] = appendOnce(flags[k.field], i)
			case keyFunc:
				id := k.fnName + "(" + k.field.name + ")"
				if funcs[id] == nil {
					funcs[id] = &funcIndex{field: k.field, fn: k.fn}
					funcOrder = append(funcOrder, id)
				}
				funcs[id].rules = appendOnce(funcs[id].rules, i)
			}
		}
	}
	for _, id := range funcOrder {
		ix.funcs = append(ix.funcs, *funcs[id])
	}
	for _, f := range fields { // a fixed order
		if m, ok := eq[f]; ok {
			ix.equal = append(ix.equal, equalIndex{field: f, rules: m})
		}
		if s, ok := sub[f]; ok {
			s.build()
			ix.substr = append(ix.substr, s)
		}
		if r, ok := flags[f]; ok {
			ix.flags = append(ix.flags, flagIndex{field: f, rules: r})
		}
	}
	return ix
}

func appendOnce(l []int, i int) []int {
	if len(l) > 0 && l[len(l)-1] == i {
		return l
	}
	return append(l, i)
}

// candidates sets in set (len ix.words) the rules that may match v.
func (ix *kindIndex) candidates(v *view, set []uint64) {
	clear(set)
	for _, i := range ix.always {
		set[i>>6] |= 1 << (i & 63)
	}
	for _, e := range ix.equal {
		if e.field.typ == tList {
			for _, s := range e.field.list(v) {
				for _, i := range e.rules[s] {
					set[i>>6] |= 1 << (i & 63)
				}
			}
			continue
		}
		for _, i := range e.rules[e.field.str(v)] {
			set[i>>6] |= 1 << (i & 63)
		}
	}
	for _, s := range ix.substr {
		s.match(s.field.str(v), set)
	}
	for _, f := range ix.flags {
		if f.field.flag(v) {
			for _, i := range f.rules {
				set[i>>6] |= 1 << (i & 63)
			}
		}
	}
	for _, f := range ix.funcs {
		if f.fn(f.field.str(v)) {
			for _, i := range f.rules {
				set[i>>6] |= 1 << (i & 63)
			}
		}
	}
}

// each calls fn for every rule in set, in rule order.
func (ix *kindIndex) each(set []uint64, fn func(*compiled)) {
	for w, word := range set {
		for word != 0 {
			b := bits.TrailingZeros64(word)
			word &= word - 1
			fn(ix.rules[w*64+b])
		}
	}
}

// substrIndex files rules under substrings of one text field.
type substrIndex struct {
	field   *field
	set     *bigramSet
	rules   [][]int // per needle of set
	pending map[string][]int
}

func (s *substrIndex) add(n string, rule int) {
	if s.pending == nil {
		s.pending = map[string][]int{}
	}
	s.pending[n] = appendOnce(s.pending[n], rule)
}

func (s *substrIndex) build() {
	needles := make([]string, 0, len(s.pending))
	for n := range s.pending {
		needles = append(needles, n)
	}
	s.set = newBigramSet(needles)
	for _, n := range s.set.needles {
		s.rules = append(s.rules, s.pending[n])
	}
	s.pending = nil
}

func (s *substrIndex) match(text string, set []uint64) {
	s.set.visit(text, func(n int) {
		for _, r := range s.rules[n] {
			set[r>>6] |= 1 << (r & 63)
		}
	})
}

// bigramSet finds which of many substrings occur in a text in one pass: a
// table of the substrings' first two bytes says where one may start, and
// only there are the substrings starting with those bytes compared. It
// answers contains_any with many needles at a cost that depends on the
// text's length, not on the number of needles.
type bigramSet struct {
	starts   [1 << 16 / 64]uint64
	byPrefix map[uint16][]int // needle indexes by first two bytes
	needles  []string
	short    []int // one-byte and empty needles, checked directly
}

func newBigramSet(needles []string) *bigramSet {
	b := &bigramSet{byPrefix: map[uint16][]int{}, needles: needles}
	for i, n := range needles {
		if len(n) < 2 {
			b.short = append(b.short, i)
			continue
		}
		p := uint16(n[0])<<8 | uint16(n[1])
		b.starts[p>>6] |= 1 << (p & 63)
		b.byPrefix[p] = append(b.byPrefix[p], i)
	}
	return b
}

// any reports whether text contains any needle.
func (b *bigramSet) any(text string) bool {
	for _, i := range b.short {
		if strings.Contains(text, b.needles[i]) {
			return true
		}
	}
	for i := 0; i+1 < len(text); i++ {
		p := uint16(text[i])<<8 | uint16(text[i+1])
		if b.starts[p>>6]&(1<<(p&63)) == 0 {
			continue
		}
		for _, n := range b.byPrefix[p] {
			if strings.HasPrefix(text[i:], b.needles[n]) {
				return true
			}
		}
	}
	return false
}

// visit calls fn with the index of every needle occurrence in text.
func (b *bigramSet) visit(text string, fn func(needle int)) {
	for _, i := range b.short {
		if strings.Contains(text, b.needles[i]) {
			fn(i)
		}
	}
	for i := 0; i+1 < len(text); i++ {
		p := uint16(text[i])<<8 | uint16(text[i+1])
		if b.starts[p>>6]&(1<<(p&63)) == 0 {
			continue
		}
		for _, n := range b.byPrefix[p] {
			if strings.HasPrefix(text[i:], b.needles[n]) {
				fn(n)
			}
		}
	}
}
