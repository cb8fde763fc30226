package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/server/store"
)

// pageNames are the templates that render a whole page inside layout.html.
var pageNames = []string{"login", "error", "alerts", "alert", "incidents", "incident", "recommendations", "recommendation", "inventory", "clusters"}

// parseTemplates parses layout.html with each page, so that each page
// defines its own "title" and "content".
func parseTemplates() (map[string]*template.Template, error) {
	pages := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// view is what every page template gets: the user (nil on the sign-in and
// some error pages), the page's own data and the current path for the
// navigation.
type view struct {
	User *session
	Data any
	Path string
}

// render writes page name, or only its "results" block for an htmx
// request that asks for it, buffering so that a template error becomes a
// clean 500.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, s *session, data any) {
	t := c.pages[name]
	block := "layout.html"
	if r.Header.Get("HX-Request") != "" && t.Lookup("results") != nil {
		block = "results"
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, block, view{User: s, Data: data, Path: r.URL.Path}); err != nil {
		c.cfg.Log.Error("console render", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

var funcs = template.FuncMap{
	"time":     fmtTime,
	"ago":      ago,
	"cmdline":  cmdline,
	"json":     toJSON,
	"resource": resource,
	"sevclass": func(s event.Severity) string { return "sev-" + string(s) },
	"join":     strings.Join,
	"evidence": sortedKV[any],
	"labels":   sortedKV[string],
	"inc":      func(i int) int { return i + 1 },
	"list":     func(s ...string) []string { return s },
	"pathesc":  url.PathEscape,
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// ago is how long before now t was, roughly: "3 min ago".
func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := time.Since(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + " s ago"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + " min ago"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + " h ago"
	}
	return strconv.Itoa(int(d.Hours()/24)) + " days ago"
}

// cmdline joins argv as a shell would read it: arguments with spaces or
// quotes are single-quoted.
func cmdline(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`;&|<>*?()[]{}") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

func toJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// resource is where an alert happened, as the alert list shows it:
// cluster / namespace / pod, or cluster / node for a host process.
func resource(a store.Alert) string {
	parts := []string{a.Cluster}
	switch {
	case a.Pod != "":
		parts = append(parts, a.Namespace, a.Pod)
	case a.Namespace != "":
		parts = append(parts, a.Namespace)
	case a.Node != "":
		parts = append(parts, "node "+a.Node)
	}
	return strings.Join(parts, " / ")
}

type kv struct {
	Key   string
	Value any
}

// sortedKV lists a map's entries by key, for stable tables.
func sortedKV[V any](m map[string]V) []kv {
	out := make([]kv, 0, len(m))
	for k, v := range m {
		out = append(out, kv{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func itoa(i int) string { return strconv.Itoa(i) }
