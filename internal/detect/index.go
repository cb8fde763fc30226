package detect

import (
	"math/bits"
	"slices"
	"strings"

	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"

	"github.com/vigil-sec/vigil/internal/event"
)

// The rule index picks, for each event, the few rules that can match it,
// so that a benign event costs a handful of lookups instead of a check per
// rule. Each rule is filed, for each event kind, under the conjuncts of its
// condition that name concrete values: proc.name in [...],
// contains_any(proc.cmdline, [...]), file.path.startsWith("..."),
// proc.drift, ... (an OR of such conjuncts files it under all of their
// values); a rule is a candidate only when every one of those conjuncts
// (up to maxKeyGroups) may hold. kind == "..." parts are settled per kind: an
// OR branch for another kind is dropped, one for this kind holds. An event
// then gathers candidates by looking up its values: one map lookup per
// indexed name field, one scan of each indexed text field for all the
// rules' substrings at once, one check per indexed flag. Rules with no
// such conjunct are always candidates. The full matcher still decides: the
// index only skips rules whose filing conjuncts cannot all hold.

// keyKind says how an indexKey's values are compared with the event.
type keyKind int

const (
	keyEqual  keyKind = iota // the field's value equals one of values (any element for list fields)
	keySubstr                // the field's value contains one of values
	keyFlag                  // the boolean field is true
	keyFunc                  // fn(field) is true (threat-intelligence lookups)
	keyTree                  // tree says which keys must hold, per event kind
)

// indexKey is one way a conjunct can hold.
type indexKey struct {
	kind   keyKind
	field  *field
	values []string
	fn     func(string) bool // keyFunc
	fnName string
	tree   *keyNode // keyTree
}

// keyNode is what the index knows of a condition: an and/or tree of the
// keys its parts need, and the event kinds they apply to (kind == "...").
// A part the index cannot file is no node: it may hold for any event.
type keyNode struct {
	op    keyOp
	key   indexKey // keyLeaf
	kinds []string // keyKinds
	kids  []*keyNode
}

type keyOp int

const (
	keyLeaf  keyOp = iota // key must hold
	keyKinds              // the event's kind is one of kinds
	keyAnd                // every kid holds
	keyOr                 // some kid holds
)

// firstKeys returns the index keys of condition e: one keyTree key, or nil
// when no part of it can be filed (the rule is always a candidate).
func (p prefilter) firstKeys(e celast.Expr) []indexKey {
	if n := p.keyTree(e); n != nil {
		return []indexKey{{kind: keyTree, tree: n}}
	}
	return nil
}

// keyTree returns the key tree of e, nil when the index cannot tell
// anything about e.
func (p prefilter) keyTree(e celast.Expr) *keyNode {
	if e.Kind() == celast.CallKind {
		c := e.AsCall()
		switch c.FunctionName() {
		case "_&&_", "_||_":
			l, r := p.keyTree(c.Args()[0]), p.keyTree(c.Args()[1])
			if c.FunctionName() == "_||_" {
				if l == nil || r == nil {
					return nil
				}
				return &keyNode{op: keyOr, kids: []*keyNode{l, r}}
			}
			switch {
			case l == nil:
				return r
			case r == nil:
				return l
			}
			return &keyNode{op: keyAnd, kids: []*keyNode{l, r}}
		case "_==_", "@in":
			if kinds, ok := p.kindValues(c); ok {
				return &keyNode{op: keyKinds, kinds: kinds}
			}
		}
	}
	if k, ok := p.key(e); ok {
		return &keyNode{op: keyLeaf, key: k}
	}
	return nil
}

// kindValues recognises kind == "x", "x" == kind and kind in ["x", ...].
func (p prefilter) kindValues(c celast.CallExpr) ([]string, bool) {
	args := c.Args()
	isKind := func(e celast.Expr) bool { f := p.field(e); return f != nil && f.name == "kind" }
	if c.FunctionName() == "@in" {
		if isKind(args[0]) {
			return stringLiterals(args[1])
		}
		return nil, false
	}
	for _, pair := range [][2]celast.Expr{{args[0], args[1]}, {args[1], args[0]}} {
		if s, ok := literal[types.String](pair[1]); ok && isKind(pair[0]) {
			return []string{string(s)}, true
		}
	}
	return nil, false
}

// key returns the index key of a leaf conjunct e: it holds only if the key
// does. ok is false when e cannot be filed.
func (p prefilter) key(e celast.Expr) (indexKey, bool) {
	switch e.Kind() {
	case celast.IdentKind, celast.SelectKind:
		if f := p.field(e); f != nil && f.typ == tBool {
			return indexKey{kind: keyFlag, field: f}, true
		}
		return indexKey{}, false
	case celast.CallKind:
	default:
		return indexKey{}, false
	}
	c := e.AsCall()
	args := c.Args()
	switch c.FunctionName() {
	case "_==_":
		for _, pair := range [][2]celast.Expr{{args[0], args[1]}, {args[1], args[0]}} {
			f := p.field(pair[0])
			if f == nil {
				continue
			}
			if s, ok := literal[types.String](pair[1]); ok && f.typ == tString {
				return indexKey{kind: keyEqual, field: f, values: []string{string(s)}}, true
			}
			if b, ok := literal[types.Bool](pair[1]); ok && bool(b) && f.typ == tBool {
				return indexKey{kind: keyFlag, field: f}, true
			}
		}
	case "@in":
		f := p.field(args[0])
		items, ok := stringLiterals(args[1])
		if f != nil && f.typ == tString && ok {
			return indexKey{kind: keyEqual, field: f, values: items}, true
		}
	case "any_in":
		f := p.field(args[0])
		items, ok := stringLiterals(args[1])
		if f != nil && f.typ == tList && ok {
			return indexKey{kind: keyEqual, field: f, values: items}, true
		}
	case "contains_any":
		f := p.field(args[0])
		items, ok := stringLiterals(args[1])
		if f != nil && f.typ == tString && ok && minLen(items) >= 2 {
			return indexKey{kind: keySubstr, field: f, values: items}, true
		}
	case "contains", "startsWith", "endsWith":
		if !c.IsMemberFunction() {
			return indexKey{}, false
		}
		f := p.field(c.Target())
		s, ok := literal[types.String](args[0])
		if f != nil && f.typ == tString && ok && len(s) >= 2 {
			return indexKey{kind: keySubstr, field: f, values: []string{string(s)}}, true
		}
	default:
		fn, ok := intelFuncs(p.intel)[c.FunctionName()]
		if !ok || len(args) != 1 || c.IsMemberFunction() {
			return indexKey{}, false
		}
		if f := p.field(args[0]); f != nil && f.typ == tString {
			return indexKey{kind: keyFunc, field: f, fn: fn, fnName: c.FunctionName()}, true
		}
	}
	return indexKey{}, false
}

// keyGroup is a disjunction of keys: one of them holds when the part of
// the condition it stands for does.
type keyGroup []indexKey

// cost ranks groups from the most selective (a threat-intelligence hit,
// a long substring) to the least (a flag such as in_container).
func (g keyGroup) cost() int {
	c := 0
	for _, k := range g {
		switch {
		case k.kind == keyFunc:
		case k.kind == keySubstr && minLen(k.values) >= 3:
			c = max(c, 1)
		case k.kind == keyEqual:
			c = max(c, 2)
		case k.kind == keySubstr:
			c = max(c, 3)
		default:
			c = max(c, 4)
		}
	}
	return c
}

func (g keyGroup) hasFunc() bool {
	return slices.ContainsFunc(g, func(k indexKey) bool { return k.kind == keyFunc })
}

// groups resolves n for events of one kind ("" when unknown) into a
// conjunction of key groups: the condition holds only if some key of every
// group does. never is true when the condition cannot hold for the kind;
// no groups and never false: the index cannot rule the event out.
func (n *keyNode) groups(kind string) (out []keyGroup, never bool) {
	if n == nil {
		return nil, false
	}
	switch n.op {
	case keyLeaf:
		return []keyGroup{{n.key}}, false
	case keyKinds:
		return nil, kind != "" && !slices.Contains(n.kinds, kind)
	case keyAnd:
		for _, k := range n.kids {
			g, nv := k.groups(kind)
			if nv {
				return nil, true
			}
			out = append(out, g...)
		}
		return out, false
	}
	// keyOr: (a1 && a2) || (b1 && b2) implies (a1 || b1) && (a2 || b2), for
	// any pairing; pair the most selective groups of each side.
	var sides [][]keyGroup
	for _, k := range n.kids {
		g, nv := k.groups(kind)
		if nv {
			continue
		}
		if len(g) == 0 {
			return nil, false
		}
		slices.SortStableFunc(g, func(a, b keyGroup) int { return a.cost() - b.cost() })
		sides = append(sides, g)
	}
	if len(sides) == 0 {
		return nil, true
	}
	m := len(sides[0])
	for _, s := range sides[1:] {
		m = min(m, len(s))
	}
	out = make([]keyGroup, m)
	for j := range m {
		for _, s := range sides {
			out[j] = append(out[j], s[j]...)
		}
	}
	return out, false
}

// maxKeyGroups bounds how many groups of one rule the index checks.
const maxKeyGroups = 4

// ruleGroups returns the groups the index files rule r under for kind.
func ruleGroups(r *compiled, kind string) (gs []keyGroup, never bool) {
	if r.steps != nil {
		return nil, false // a sequence's steps have conditions of their own
	}
	for _, k := range r.m.keys {
		if k.kind != keyTree {
			gs = append(gs, keyGroup{k})
			continue
		}
		g, nv := k.tree.groups(kind)
		if nv {
			return nil, true
		}
		gs = append(gs, g...)
	}
	// A threat-intelligence scan of a command line, or substrings so short
	// that they turn up in most command lines (" -", "64"), cost more than
	// they save when other groups already narrow the rule down.
	if cheap := slices.DeleteFunc(slices.Clone(gs), func(g keyGroup) bool { return g.hasFunc() || g.cost() == 3 }); len(cheap) > 0 {
		gs = cheap
	}
	slices.SortStableFunc(gs, func(a, b keyGroup) int { return a.cost() - b.cost() })
	if len(gs) > maxKeyGroups {
		gs = gs[:maxKeyGroups]
	}
	return gs, false
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

// kindIndex files the rules of one event kind. Each rule has up to
// maxKeyGroups groups of keys, all of which must hold; group g of rule i is
// bit g*words*64+i of the candidate set. Lookups set the bits of the
// groups that hold, base has those of groups a rule does not have (and of
// every group of rules the index cannot narrow down), and the rules whose
// bits are set in every group are the candidates.
type kindIndex struct {
	rules  []*compiled
	base   []uint64
	equal  []equalIndex
	substr []*substrIndex
	flags  []flagIndex
	funcs  []funcIndex
	words  int // bitset size of one group in uint64s
	groups int // groups in the candidate set
}

// funcIndex files rules under fn(field): one call per event, whatever the
// number of rules asking.
type funcIndex struct {
	field *field
	fn    func(string) bool
	rules []int
}

// equalIndex files rules under the values of one field. Before hashing a
// value it checks that some filed value has its length and first byte,
// which turns most values (paths among names, file arguments among
// flags) away for the cost of two bit tests.
type equalIndex struct {
	field *field
	rules map[string][]int
	lens  uint64    // bit n: a value of length n (63: 63 or more)
	first [4]uint64 // bit c: a value starting with byte c
	empty bool      // "" is filed
}

func (e *equalIndex) add(v string, bit int) {
	e.rules[v] = appendOnce(e.rules[v], bit)
	e.lens |= 1 << min(len(v), 63)
	if v == "" {
		e.empty = true
		return
	}
	e.first[v[0]>>6] |= 1 << (v[0] & 63)
}

// may reports whether s can be a filed value.
func (e *equalIndex) may(s string) bool {
	if s == "" {
		return e.empty
	}
	return e.lens&(1<<min(len(s), 63)) != 0 && e.first[s[0]>>6]&(1<<(s[0]&63)) != 0
}

type flagIndex struct {
	field *field
	rules []int
}

// setWords is the length of the candidate set candidates fills.
func (ix *kindIndex) setWords() int { return ix.groups * ix.words }

func newKindIndex(kind event.Kind, rules []*compiled) *kindIndex {
	ix := &kindIndex{rules: rules, words: (len(rules) + 63) / 64, groups: 1}
	filed := make([][]keyGroup, len(rules))
	always := make([]bool, len(rules))
	for i, r := range rules {
		gs, never := ruleGroups(r, string(kind))
		switch {
		case never:
		case len(gs) == 0:
			always[i] = true
		default:
			filed[i] = gs
			ix.groups = max(ix.groups, len(gs))
		}
	}
	ix.base = make([]uint64, ix.setWords())
	eq := map[*field]*equalIndex{}
	sub := map[*field]*substrIndex{}
	flags := map[*field][]int{}
	funcs := map[string]*funcIndex{}
	var funcOrder []string
	for i := range rules {
		for g := range ix.groups {
			bit := g*ix.words*64 + i
			if always[i] || g >= len(filed[i]) && filed[i] != nil {
				ix.base[bit>>6] |= 1 << (bit & 63)
				continue
			}
			if filed[i] == nil {
				continue // never a candidate
			}
			for _, k := range filed[i][g] {
				switch k.kind {
				case keyEqual:
					if eq[k.field] == nil {
						eq[k.field] = &equalIndex{field: k.field, rules: map[string][]int{}}
					}
					for _, v := range k.values {
						eq[k.field].add(v, bit)
					}
				case keySubstr:
					if sub[k.field] == nil {
						sub[k.field] = &substrIndex{field: k.field}
					}
					for _, v := range k.values {
						sub[k.field].add(v, bit)
					}
				case keyFlag:
					flags[k.field] = appendOnce(flags[k.field], bit)
				case keyFunc:
					id := k.fnName + "(" + k.field.name + ")"
					if funcs[id] == nil {
						funcs[id] = &funcIndex{field: k.field, fn: k.fn}
						funcOrder = append(funcOrder, id)
					}
					funcs[id].rules = appendOnce(funcs[id].rules, bit)
				}
			}
		}
	}
	for _, id := range funcOrder {
		ix.funcs = append(ix.funcs, *funcs[id])
	}
	for _, f := range fields { // a fixed order
		if e, ok := eq[f]; ok {
			ix.equal = append(ix.equal, *e)
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

// candidates sets in set[:ix.words] the rules that may match v; set has
// ix.setWords() words.
func (ix *kindIndex) candidates(v *view, set []uint64) {
	copy(set, ix.base)
	for i := range ix.equal {
		e := &ix.equal[i]
		if e.field.typ == tList {
			for _, s := range e.field.list(v) {
				if e.may(s) {
					setBits(set, e.rules[s])
				}
			}
			continue
		}
		if s := e.field.str(v); e.may(s) {
			setBits(set, e.rules[s])
		}
	}
	for _, s := range ix.substr {
		s.match(s.field.str(v), set)
	}
	for _, f := range ix.flags {
		if f.field.flag(v) {
			setBits(set, f.rules)
		}
	}
	for _, f := range ix.funcs {
		if f.fn(f.field.str(v)) {
			setBits(set, f.rules)
		}
	}
	w := ix.words
	for g := 1; g < ix.groups; g++ {
		for i, x := range set[g*w : (g+1)*w] {
			set[i] &= x
		}
	}
}

func setBits(set []uint64, bits []int) {
	for _, b := range bits {
		set[b>>6] |= 1 << (b & 63)
	}
}

// each calls fn for every rule in set, in rule order.
func (ix *kindIndex) each(set []uint64, fn func(*compiled)) {
	for w, word := range set[:ix.words] {
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
	s.set.visit(text, func(n int) { setBits(set, s.rules[n]) })
}

// bigramSet finds which of many substrings occur in a text in one pass:
// bitmaps of a hash of the substrings' first two bytes (for two-byte
// substrings) and of their first three say where one may start, a small
// hash table gives the substrings starting with those bytes, and only
// those are compared. It answers contains_any with many needles at a cost
// that depends on the text's length, not on the number of needles.
type bigramSet struct {
	// starts2 and starts3 have 64 bits per needle (512 to 65536), so that
	// a text position passes the filter by a collision about once in 64
	// and a ruleset's hundreds of sets stay small.
	starts2 []uint64      // pairHash of two-byte needles
	starts3 []uint64      // trigramHash of the longer ones
	mask    uint16        // bits in each bitmap, minus one
	table   []bigramEntry // open addressing on the two-byte prefix
	shift   uint32
	needles []string // grouped by prefix
	short   []int    // one-byte and empty needles, checked directly
}

type bigramEntry struct {
	prefix uint16
	lo, hi uint16    // needles[lo:hi] start with prefix
	exact  bool      // one of them is just the prefix
	third  [4]uint64 // third bytes of the longer ones
}

func pairHash(p uint16) uint16 { return uint16(uint32(p) * 0x9E3779B1 >> 16) }

func trigramHash(a, b, c byte) uint16 {
	return uint16((uint32(a)<<16 | uint32(b)<<8 | uint32(c)) * 0x9E3779B1 >> 16)
}

func newBigramSet(needles []string) *bigramSet {
	b := &bigramSet{}
	var long []string
	for _, n := range needles {
		if len(n) < 2 {
			b.short = append(b.short, len(b.needles))
			b.needles = append(b.needles, n)
			continue
		}
		long = append(long, n)
	}
	nbits := 512
	for nbits < 64*len(long) && nbits < 1<<16 {
		nbits <<= 1
	}
	b.starts2, b.starts3, b.mask = make([]uint64, nbits/64), make([]uint64, nbits/64), uint16(nbits-1)
	prefix := func(n string) uint16 { return uint16(n[0])<<8 | uint16(n[1]) }
	slices.SortStableFunc(long, func(x, y string) int { return int(prefix(x)) - int(prefix(y)) })
	distinct := 0
	for i, n := range long {
		if i == 0 || prefix(n) != prefix(long[i-1]) {
			distinct++
		}
	}
	size := 1
	for size < 2*distinct {
		size <<= 1
	}
	b.table = make([]bigramEntry, size)
	b.shift = uint32(32 - bits.Len(uint(size-1)))
	for i := 0; i < len(long); {
		p := prefix(long[i])
		e := bigramEntry{prefix: p, lo: uint16(len(b.needles))}
		for ; i < len(long) && prefix(long[i]) == p; i++ {
			n := long[i]
			if len(n) == 2 {
				e.exact = true
				h := pairHash(p) & b.mask
				b.starts2[h>>6] |= 1 << (h & 63)
			} else {
				e.third[n[2]>>6] |= 1 << (n[2] & 63)
				h := trigramHash(n[0], n[1], n[2]) & b.mask
				b.starts3[h>>6] |= 1 << (h & 63)
			}
			b.needles = append(b.needles, n)
		}
		e.hi = uint16(len(b.needles))
		h := b.hash(p)
		for b.table[h].hi != 0 {
			h = (h + 1) & uint32(size-1)
		}
		b.table[h] = e
	}
	return b
}

func (b *bigramSet) hash(p uint16) uint32 {
	if b.shift >= 32 {
		return 0
	}
	return (uint32(p) * 0x9E3779B1) >> b.shift
}

// entry returns the table entry of prefix p, nil if no needle starts so.
func (b *bigramSet) entry(p uint16) *bigramEntry {
	for h := b.hash(p); ; h = (h + 1) & uint32(len(b.table)-1) {
		switch e := &b.table[h]; {
		case e.hi == 0:
			return nil
		case e.prefix == p:
			return e
		}
	}
}

// at reports, for position i of text, whether a two-byte needle starts
// there (exact) and whether a longer one may (long), and returns the
// prefix's entry when either holds.
func (b *bigramSet) at(text string, i int) (e *bigramEntry, long bool) {
	p := uint16(text[i])<<8 | uint16(text[i+1])
	h2 := pairHash(p) & b.mask
	exact := b.starts2[h2>>6]&(1<<(h2&63)) != 0
	if i+2 < len(text) {
		h := trigramHash(text[i], text[i+1], text[i+2]) & b.mask
		long = b.starts3[h>>6]&(1<<(h&63)) != 0
	}
	if !exact && !long {
		return nil, false
	}
	// A hash collision can send a text's pair or trigram here with no
	// needle starting with its first two bytes.
	if e = b.entry(p); e == nil {
		return nil, false
	}
	if long && e.third[text[i+2]>>6]&(1<<(text[i+2]&63)) == 0 {
		long = false
	}
	return e, long
}

// any reports whether text contains any needle.
func (b *bigramSet) any(text string) bool {
	for _, i := range b.short {
		if strings.Contains(text, b.needles[i]) {
			return true
		}
	}
	for i := 0; i+1 < len(text); i++ {
		e, long := b.at(text, i)
		if e == nil {
			continue
		}
		if e.exact {
			return true
		}
		if long {
			for _, n := range b.needles[e.lo:e.hi] {
				if strings.HasPrefix(text[i:], n) {
					return true
				}
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
		e, long := b.at(text, i)
		if e == nil || !e.exact && !long {
			continue
		}
		for n := int(e.lo); n < int(e.hi); n++ {
			if len(b.needles[n]) == 2 || long && strings.HasPrefix(text[i:], b.needles[n]) {
				fn(n)
			}
		}
	}
}
