package audit

import (
	"fmt"
	"strings"
)

// Line diffs, for splicing Enable's edits into the original manifest and for
// showing them (vigil audit enable --dry-run). Manifests are a few hundred
// lines, so the plain O(n·m) longest-common-subsequence table is fast
// enough and simple to trust.

type opKind byte

const (
	opEqual opKind = iota
	opDelete
	opInsert
)

type op struct {
	kind opKind
	a, b int // line index in a (equal, delete) and in b (equal, insert)
}

// splitLines splits after each newline; a last line without one is kept.
func splitLines(data []byte) []string {
	if len(data) == 0 {
		return nil
	}
	lines := strings.SplitAfter(string(data), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// lcs returns the table of longest common subsequence lengths of a[i:] and
// b[j:].
func lcs(a, b []string) [][]int {
	t := make([][]int, len(a)+1)
	for i := range t {
		t[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				t[i][j] = t[i+1][j+1] + 1
			} else {
				t[i][j] = max(t[i+1][j], t[i][j+1])
			}
		}
	}
	return t
}

func commonLines(a, b []string) int { return lcs(a, b)[0][0] }

// diffLines returns the edit script from a to b, deletions before
// insertions within a change.
func diffLines(a, b []string) []op {
	t := lcs(a, b)
	var ops []op
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			ops = append(ops, op{opEqual, i, j})
			i++
			j++
		case j == len(b) || (i < len(a) && t[i+1][j] >= t[i][j+1]):
			ops = append(ops, op{opDelete, i, j})
			i++
		default:
			ops = append(ops, op{opInsert, i, j})
			j++
		}
	}
	return ops
}

// merge applies the changes from before to after onto orig, where before is
// orig re-encoded (the same document, possibly formatted differently: blank
// lines dropped, comment spacing normalised). Lines of orig whose encoding
// the edit did not touch are kept verbatim; a stretch of orig that encodes
// differently and was edited is replaced by its edited encoding.
func merge(orig, before, after []string) []byte {
	// What the edit does to each line of before.
	deleted := make([]bool, len(before))
	inserted := make([][]string, len(before)+1) // before line i
	for _, o := range diffLines(before, after) {
		switch o.kind {
		case opDelete:
			deleted[o.a] = true
		case opInsert:
			inserted[o.a] = append(inserted[o.a], after[o.b])
		}
	}
	var out strings.Builder
	emitted := make([]bool, len(before)+1)
	insert := func(i int) {
		if !emitted[i] {
			emitted[i] = true
			for _, l := range inserted[i] {
				out.WriteString(l)
			}
		}
	}
	// Walk orig against before: runs of equal lines, and hunks where
	// orig[o1:o2] was encoded as before[b1:b2].
	ops := diffLines(orig, before)
	for k := 0; k < len(ops); {
		if ops[k].kind == opEqual {
			insert(ops[k].b)
			if !deleted[ops[k].b] {
				out.WriteString(orig[ops[k].a])
			}
			k++
			continue
		}
		o1, b1 := ops[k].a, ops[k].b
		o2, b2 := o1, b1
		for ; k < len(ops) && ops[k].kind != opEqual; k++ {
			if ops[k].kind == opDelete {
				o2 = ops[k].a + 1
			} else {
				b2 = ops[k].b + 1
			}
		}
		dirty := false
		for b := b1; b < b2; b++ {
			dirty = dirty || deleted[b] || (b > b1 && len(inserted[b]) > 0)
		}
		insert(b1)
		if !dirty {
			for o := o1; o < o2; o++ {
				out.WriteString(orig[o])
			}
			continue
		}
		for b := b1; b < b2; b++ {
			insert(b)
			if !deleted[b] {
				out.WriteString(before[b])
			}
		}
	}
	insert(len(before))
	return []byte(out.String())
}

// Diff returns a unified diff (3 lines of context) from a to b, with the
// given file names in its header; "" when they are equal.
func Diff(aName, bName string, a, b []byte) string {
	al, bl := splitLines(a), splitLines(b)
	ops := diffLines(al, bl)
	const context = 3
	var out strings.Builder
	for k := 0; k < len(ops); {
		if ops[k].kind == opEqual {
			k++
			continue
		}
		// A hunk: this change and the ones within 2·context equal lines.
		start := max(k-context, 0)
		end := k
		for end < len(ops) {
			if ops[end].kind != opEqual {
				end++
				continue
			}
			run := end
			for run < len(ops) && ops[run].kind == opEqual {
				run++
			}
			if run == len(ops) || run-end > 2*context {
				end = min(end+context, len(ops))
				break
			}
			end = run
		}
		if out.Len() == 0 {
			fmt.Fprintf(&out, "--- %s\n+++ %s\n", aName, bName)
		}
		var aStart, bStart, aLen, bLen int
		aStart, bStart = ops[start].a, ops[start].b
		for _, o := range ops[start:end] {
			switch o.kind {
			case opEqual:
				aLen++
				bLen++
			case opDelete:
				aLen++
			case opInsert:
				bLen++
			}
		}
		fmt.Fprintf(&out, "@@ -%s +%s @@\n", hunkRange(aStart, aLen), hunkRange(bStart, bLen))
		for _, o := range ops[start:end] {
			switch o.kind {
			case opEqual:
				writeDiffLine(&out, ' ', al[o.a])
			case opDelete:
				writeDiffLine(&out, '-', al[o.a])
			case opInsert:
				writeDiffLine(&out, '+', bl[o.b])
			}
		}
		k = end
	}
	return out.String()
}

// hunkRange formats a hunk's start (1-based; the line before for an empty
// range) and length as diff -u does.
func hunkRange(start, n int) string {
	if n == 0 {
		return fmt.Sprintf("%d,0", start)
	}
	if n == 1 {
		return fmt.Sprintf("%d", start+1)
	}
	return fmt.Sprintf("%d,%d", start+1, n)
}

func writeDiffLine(out *strings.Builder, mark byte, line string) {
	out.WriteByte(mark)
	out.WriteString(line)
	if !strings.HasSuffix(line, "\n") {
		out.WriteString("\n\\ No newline at end of file\n")
	}
}
