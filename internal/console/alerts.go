package console

import (
	"crypto/rand"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/server/store"
)

// severities in the order pages show them.
var severities = []event.Severity{event.High, event.Medium, event.Low, event.Informational}

// timeRanges are the choices of the alert list's time filter.
var timeRanges = []struct{ Value, Label string }{
	{"", "Any time"}, {"1h", "Last hour"}, {"24h", "Last 24 hours"}, {"7d", "Last 7 days"}, {"30d", "Last 30 days"},
}

// alertForm is the alert list's filter form, as the query string carries it.
type alertForm struct {
	Severity  []string
	Status    string // active (default), dismissed, resolved or all
	Cluster   string
	Namespace string
	Rule      string
	Type      string // pod, node, cluster or "" (any)
	Resource  string
	Time      string // one of timeRanges
	Q         string
	Sort      string
	Cursor    string
	Page      int
}

func readAlertForm(q url.Values) alertForm {
	f := alertForm{
		Severity: q["severity"], Status: q.Get("status"), Cluster: q.Get("cluster"), Namespace: strings.TrimSpace(q.Get("namespace")),
		Rule: strings.TrimSpace(q.Get("rule")), Type: q.Get("type"), Resource: strings.TrimSpace(q.Get("resource")),
		Time: q.Get("time"), Q: strings.TrimSpace(q.Get("q")), Sort: q.Get("sort"), Cursor: q.Get("cursor"),
	}
	if f.Status == "" {
		f.Status = event.StatusActive
	}
	f.Page, _ = strconv.Atoi(q.Get("page"))
	f.Page = max(f.Page, 1)
	return f
}

// filter is the store filter of the form; bad values give ErrInvalid from
// here or from the store.
func (f alertForm) filter(now time.Time) (store.AlertFilter, error) {
	af := store.AlertFilter{Cluster: f.Cluster, Namespace: f.Namespace, Rule: f.Rule, ResourceType: f.Type,
		Resource: f.Resource, Search: f.Q, Sort: f.Sort, Cursor: f.Cursor}
	for _, v := range f.Severity {
		sev, err := event.ParseSeverity(v)
		if err != nil {
			return af, &pageError{http.StatusBadRequest, "Severity " + strconv.Quote(v) + " is not one of high, medium, low, informational."}
		}
		af.Severity = append(af.Severity, sev)
	}
	if f.Status != "all" {
		af.Status = []string{f.Status}
	}
	switch f.Time {
	case "":
	case "1h", "24h":
		d, _ := time.ParseDuration(f.Time)
		af.Since = now.Add(-d)
	case "7d", "30d":
		days, _ := strconv.Atoi(strings.TrimSuffix(f.Time, "d"))
		af.Since = now.AddDate(0, 0, -days)
	default:
		return af, &pageError{http.StatusBadRequest, "Time range " + strconv.Quote(f.Time) + " is not one the form offers."}
	}
	return af, nil
}

// values is the form as a query string, without the page position.
func (f alertForm) values() url.Values {
	v := url.Values{}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	for _, s := range f.Severity {
		v.Add("severity", s)
	}
	set("status", f.Status)
	set("cluster", f.Cluster)
	set("namespace", f.Namespace)
	set("rule", f.Rule)
	set("type", f.Type)
	set("resource", f.Resource)
	set("time", f.Time)
	set("q", f.Q)
	set("sort", f.Sort)
	return v
}

// HasSeverity tells the template whether a severity box is ticked.
func (f alertForm) HasSeverity(s string) bool { return slices.Contains(f.Severity, s) }

type severityCount struct {
	Severity event.Severity
	Count    int
	Href     string // the list narrowed to this severity
}

type alertsView struct {
	Form       alertForm
	Counts     []severityCount
	Total      int
	Alerts     []store.Alert
	Clusters   []store.Cluster
	TimeRanges any
	Scopes     []string
	Next       string // next page, "" on the last
	First      string // first page, "" when on it
	Refresh    string // what htmx polls to refresh the first page
	Page       int
}

func (c *Console) alerts(w http.ResponseWriter, r *http.Request, s session) error {
	form := readAlertForm(r.URL.Query())
	f, err := form.filter(c.cfg.Now())
	if err != nil {
		return err
	}
	page, err := c.cfg.Store.ListAlerts(r.Context(), f)
	if err != nil {
		return err
	}
	counted := f
	counted.Severity, counted.Cursor = nil, ""
	counts, err := c.cfg.Store.CountAlerts(r.Context(), counted)
	if err != nil {
		return err
	}
	clusters, err := c.cfg.Store.ListClusters(r.Context(), c.cfg.Now())
	if err != nil {
		return err
	}
	v := alertsView{Form: form, Alerts: page.Alerts, Clusters: clusters, TimeRanges: timeRanges, Page: form.Page}
	base := form.values()
	for _, sev := range severities {
		q := cloneValues(base)
		q.Del("severity")
		q.Set("severity", string(sev))
		v.Counts = append(v.Counts, severityCount{Severity: sev, Count: counts[sev], Href: "/alerts?" + q.Encode()})
		v.Total += counts[sev]
	}
	if page.NextCursor != "" {
		q := cloneValues(base)
		q.Set("cursor", page.NextCursor)
		q.Set("page", strconv.Itoa(form.Page+1))
		v.Next = "/alerts?" + q.Encode()
	}
	if form.Cursor != "" {
		v.First = "/alerts?" + base.Encode()
	} else {
		v.Refresh = "/alerts?" + base.Encode()
	}
	c.render(w, r, http.StatusOK, "alerts", &s, v)
	return nil
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vals := range v {
		out[k] = slices.Clone(vals)
	}
	return out
}

// treeNode is one process of an alert's ancestry, root first.
type treeNode struct {
	Depth   int // 0 for the oldest ancestor
	Pid     uint32
	Exe     string
	Cmdline string
	Self    bool // the alert's own process
}

type alertView struct {
	Alert    store.Alert
	Tree     []treeNode
	Changes  []store.Change
	Incident *store.Incident
	Scopes   []string
	Flash    string
}

func (c *Console) alert(w http.ResponseWriter, r *http.Request, s session) error {
	a, err := c.cfg.Store.GetAlert(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	changes, err := c.cfg.Store.AlertChanges(r.Context(), a.ID)
	if err != nil {
		return err
	}
	v := alertView{Alert: a, Tree: processTree(a.Process), Changes: changes, Scopes: store.SuppressScopes}
	if done := r.URL.Query().Get("done"); slices.Contains(doneWords, done) {
		v.Flash = done
	}
	if a.IncidentID != "" {
		inc, err := c.cfg.Store.IncidentSummary(r.Context(), a.IncidentID)
		switch {
		case err == nil:
			v.Incident = &inc
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
	}
	c.render(w, r, http.StatusOK, "alert", &s, v)
	return nil
}

// doneWords are what an action's redirect may report as done.
var doneWords = []string{event.StatusDismissed, event.StatusResolved, event.StatusActive, "suppressed"}

// maxTreeDepth is the deepest indentation the stylesheet has.
const maxTreeDepth = 12

// processTree lays out a process's ancestry from the oldest ancestor down
// to the process itself; the parent carries its command line.
func processTree(p *event.Process) []treeNode {
	if p == nil {
		return nil
	}
	var out []treeNode
	for i := len(p.Ancestry) - 1; i >= 0; i-- {
		a := p.Ancestry[i]
		n := treeNode{Pid: a.Pid, Exe: a.Exe, Cmdline: cmdline(a.Args)}
		if i == 0 && p.Parent != nil && p.Parent.Pid == a.Pid && n.Cmdline == "" {
			n.Cmdline = cmdline(p.Parent.Args)
		}
		out = append(out, n)
	}
	if len(out) == 0 && p.Parent != nil {
		out = append(out, treeNode{Pid: p.Parent.Pid, Exe: p.Parent.Exe, Cmdline: cmdline(p.Parent.Args)})
	}
	out = append(out, treeNode{Pid: p.Pid, Exe: p.Exe, Cmdline: cmdline(p.Args), Self: true})
	for i := range out {
		out[i].Depth = min(i, maxTreeDepth)
	}
	return out
}

// adminOnly refuses a reader: the page offers them no control, and a
// forged form gets this.
func adminOnly(s session) error {
	if !s.Admin() {
		return &pageError{http.StatusForbidden, "Only an admin may change alerts; you are signed in as a reader."}
	}
	return nil
}

const maxReason = 2048

func reason(r *http.Request) (string, error) {
	why := strings.TrimSpace(r.PostFormValue("reason"))
	switch {
	case why == "":
		return "", &pageError{http.StatusBadRequest, "A reason is required."}
	case len(why) > maxReason:
		return "", &pageError{http.StatusBadRequest, "The reason is longer than " + strconv.Itoa(maxReason) + " bytes."}
	}
	return why, nil
}

// action is the common part of an admin's change to an alert: the user
// must be an admin and give a reason; the alert must exist.
func (c *Console) action(r *http.Request, s session) (store.Alert, string, error) {
	if err := adminOnly(s); err != nil {
		return store.Alert{}, "", err
	}
	why, err := reason(r)
	if err != nil {
		return store.Alert{}, "", err
	}
	a, err := c.cfg.Store.GetAlert(r.Context(), r.PathValue("id"))
	return a, why, err
}

// setStatus dismisses, resolves or reactivates an alert (admin only).
func (c *Console) setStatus(w http.ResponseWriter, r *http.Request, s session) error {
	a, why, err := c.action(r, s)
	if err != nil {
		return err
	}
	status := r.PostFormValue("status")
	if status != event.StatusDismissed && status != event.StatusResolved && status != event.StatusActive {
		return &pageError{http.StatusBadRequest, "Status " + strconv.Quote(status) + " is not dismissed, resolved or active."}
	}
	if _, err := c.cfg.Store.SetAlertStatus(r.Context(), []string{a.ID}, status, why, s.Name, c.cfg.Now()); err != nil {
		return err
	}
	http.Redirect(w, r, "/alerts/"+url.PathEscape(a.ID)+"?done="+status, http.StatusSeeOther)
	return nil
}

// suppress makes an engine exception from an alert and dismisses it: the
// console's "suppress similar" (admin only).
func (c *Console) suppress(w http.ResponseWriter, r *http.Request, s session) error {
	a, why, err := c.action(r, s)
	if err != nil {
		return err
	}
	x, err := store.ExceptionFor(a, r.PostFormValue("scope"))
	if err != nil {
		return err
	}
	now := c.cfg.Now()
	x.ID = "x-" + ulid.MustNew(ulid.Timestamp(now), rand.Reader).String()
	x.Reason = why + " (from alert " + a.ID + " by " + s.Name + ")"
	if days, _ := strconv.Atoi(r.PostFormValue("days")); days > 0 {
		x.Expires = now.AddDate(0, 0, min(days, 3650))
	}
	if err := c.cfg.Store.CreateException(r.Context(), a.ClusterID, x, s.Name); err != nil {
		return err
	}
	if _, err := c.cfg.Store.SetAlertStatus(r.Context(), []string{a.ID}, event.StatusDismissed, "suppressed: "+why, s.Name, now); err != nil {
		return err
	}
	http.Redirect(w, r, "/alerts/"+url.PathEscape(a.ID)+"?done=suppressed", http.StatusSeeOther)
	return nil
}
