package detect

import (
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The bigram set finds exactly the needles strings.Contains finds.
func TestBigramSet(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	alphabet := "ab -/.c"
	word := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		return string(b)
	}
	for range 2000 {
		var needles []string
		for range 1 + r.IntN(12) {
			needles = append(needles, word(r.IntN(5)))
		}
		set := newBigramSet(needles)
		text := word(r.IntN(40))
		found := map[string]bool{}
		set.visit(text, func(n int) { found[set.needles[n]] = true })
		for _, n := range needles {
			if strings.Contains(text, n) != found[n] {
				t.Fatalf("needles %q, text %q: visit says %q found=%v", needles, text, n, found[n])
			}
		}
		if set.any(text) != containsAny(text, needles) {
			t.Fatalf("needles %q, text %q: any %v", needles, text, set.any(text))
		}
		if !slices.Equal(slices.Sorted(slices.Values(set.needles)), slices.Sorted(slices.Values(needles))) {
			t.Fatalf("needles %q became %q", needles, set.needles)
		}
	}
}

// A text a regexp matches contains the literals it requires.
func TestRequiredLiterals(t *testing.T) {
	for _, c := range []struct {
		re   string
		want string
	}{
		{`(curl|wget)[^|;&]*\|\s*(ba)?sh`, `[[curl wget] [sh] [|]]`},
		{`(?i)ab.*\|`, `[[AB aB Ab ab] [|]]`},
		{`(?i)cUrl.*\|`, `[[|]]`},
		{`base64\s+(-[a-zA-Z]*[dD]|--decode)`, `[[base64] [-] [D d -decode]]`},
		{`a?b*`, `[]`},
		{`x{2,}[0-7]`, `[[x]]`},
	} {
		got := requiredLiterals(c.re)
		if s := fmtList(got); s != c.want {
			t.Errorf("%s: %s, want %s", c.re, s, c.want)
		}
	}
	// On random texts: whenever a rule's regexp matches, the literals are there.
	r := rand.New(rand.NewPCG(5, 6))
	res := []string{`(curl|wget)[^|;&]*\|\s*(sudo\s+)?(\S*/)?((ba|da|z)?sh|python[0-9.]*)(\s|$)`, `base64\s+(-[a-zA-Z]*[dD]|--decode)\b.*\|`, `(^|[^0-9&])>>?\|?\s*(/etc/cron\.|/var/spool/cron)`}
	parts := []string{"curl ", "wget ", "| ", "sh", "bash", "base64 ", "-d", "--decode", " ", "x", ">", ">>", "/etc/cron.", "/var/spool/cron", "python3", "&"}
	for _, src := range res {
		re := regexp.MustCompile(src)
		need := requiredLiterals(src)
		matched := 0
		for range 5000 {
			var b strings.Builder
			for range r.IntN(8) {
				b.WriteString(parts[r.IntN(len(parts))])
			}
			text := b.String()
			if !re.MatchString(text) {
				continue
			}
			matched++
			for _, any := range need {
				if !containsAny(text, any) {
					t.Fatalf("%s matches %q without any of %q", src, text, any)
				}
			}
		}
		if matched == 0 {
			t.Errorf("%s: no random text matched", src)
		}
	}
}

func fmtList(l [][]string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, x := range l {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("[" + strings.Join(x, " ") + "]")
	}
	b.WriteByte(']')
	return b.String()
}

// The index never skips a rule that matches: on every fixture event of
// every built-in rule and on the recorded node events, each rule whose
// condition holds is a candidate.
func TestIndexKeepsMatchingRules(t *testing.T) {
	rs, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	events := append(attackEvents(t), recorded(t)...)
	events = append(events, fixtureCaseEvents(t, "rules", func(TestCase) bool { return true })...)
	var v view
	checked := 0
	for _, ev := range events {
		ix := rs.byKind[ev.Kind]
		if ix == nil {
			continue
		}
		v.reset(ev)
		set := make([]uint64, ix.setWords())
		ix.candidates(&v, set)
		for i, r := range ix.rules {
			if r.steps != nil || !slices.Contains(r.Kinds, ev.Kind) {
				continue
			}
			if r.m.match(&v) {
				checked++
				if set[i>>6]&(1<<(i&63)) == 0 {
					t.Errorf("%s matches but is no candidate: %+v", r.ID, ev.Process)
				}
			}
		}
	}
	if checked < 300 {
		t.Fatalf("only %d matches checked", checked)
	}
}
