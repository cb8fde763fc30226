package admission

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-sec/vigil/internal/posture"
)

// describe names the object under review, and the workload it belongs to
// when that is another: "Pod shop/web-6d4cf56db6-x7k2p (of
// Deployment/shop/web)", or "Deployment/shop/web".
func describe(kind string, m metav1.Object, w posture.Workload) string {
	name := m.GetName()
	if name == "" && m.GetGenerateName() != "" {
		name = m.GetGenerateName() + "*"
	}
	self := posture.Workload{Kind: kind, Namespace: m.GetNamespace(), Name: name}
	if w == self {
		return self.String()
	}
	return kind + " " + self.Namespace + "/" + name + " (of " + w.String() + ")"
}

// denyMessage is the Status message of a denial: every violated deny-mode
// recommendation, its violations and its fix. kubectl prints it after
// `admission webhook "..." denied the request: `.
func denyMessage(subject string, denied []posture.Result) string {
	var b strings.Builder
	noun := "recommendations"
	if len(denied) == 1 {
		noun = "recommendation"
	}
	fmt.Fprintf(&b, "%s violates %d Vigil %s in deny mode:", subject, len(denied), noun)
	for _, r := range denied {
		rec, _ := posture.Lookup(r.Recommendation)
		fmt.Fprintf(&b, "\n[%s] %s", r.Recommendation, rec.Title)
		for _, v := range r.Violations {
			b.WriteString("\n  - ")
			b.WriteString(v)
		}
		if rec.Remediation != "" {
			b.WriteString("\n  fix: ")
			b.WriteString(rec.Remediation)
		}
	}
	return b.String()
}

// The API server keeps at most 4096 runes of warnings per request, from
// every webhook and itself, and drops a warning with a control character.
// Vigil keeps to most of that budget, leaving room for others (the Pod
// Security Admission warning, other webhooks).
const (
	maxWarningRunes      = 3600
	maxWarningItemRunes  = 256
	moreWarningsReserved = 80
)

// warnings returns one short warning per violation that does not deny the
// request: audit-mode ones and, when the request is admitted, deny-mode
// ones the old object already had. When they do not fit the budget, the
// last warning says how many were left out.
func warnings(unhealthy []posture.Result, denied bool) []string {
	var (
		out     []string
		used    int
		omitted int
	)
	for _, r := range unhealthy {
		prefix := "[vigil] " + r.Recommendation + ": "
		if r.Mode == posture.Deny {
			if denied {
				continue // in the denial message
			}
			prefix = "[vigil] " + r.Recommendation + " (deny mode, pre-existing): "
		}
		for _, v := range r.Violations {
			w := clean(prefix + v)
			n := utf8.RuneCountInString(w)
			if omitted > 0 || used+n > maxWarningRunes-moreWarningsReserved {
				omitted++
				continue
			}
			out = append(out, w)
			used += n
		}
	}
	if omitted > 0 {
		out = append(out, fmt.Sprintf("[vigil] %d more findings not shown; `vigil scan` lists them all", omitted))
	}
	return out
}

// clean makes s a warning the API server accepts: no control characters,
// at most maxWarningItemRunes runes.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if utf8.RuneCountInString(s) > maxWarningItemRunes {
		s = string([]rune(s)[:maxWarningItemRunes-1]) + "…"
	}
	return s
}
