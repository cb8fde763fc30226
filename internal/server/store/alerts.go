package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// Alert is a stored alert: the alert as the engine raised it, with its
// current count, times and status, plus what the server adds.
type Alert struct {
	event.Alert
	ClusterID    string    `json:"cluster_id"`
	IncidentID   string    `json:"incident_id,omitempty"`
	StatusReason string    `json:"status_reason,omitempty"`
	StatusBy     string    `json:"status_by,omitempty"`
	StatusAt     time.Time `json:"status_at,omitzero"`
}

// AlertFilter selects alerts. Empty fields match everything; list fields
// match any of their values.
type AlertFilter struct {
	Severity []event.Severity
	Status   []string
	// Cluster is a cluster id or name.
	Cluster   string
	Namespace string
	Rule      string
	// Resource matches the pod (name or namespace/name), workload,
	// container id, node or image exactly. It is keyed by container and
	// node: a pod, workload or image is resolved through the containers
	// that raised alerts (at most MaxResourceContainers of them), so
	// alerts without a container id match it only by node.
	Resource string
	// ResourceType is what an alert is about: "pod" (a pod or container),
	// "node" (a host process, outside any container) or "cluster" (the
	// control plane: neither); "" is any.
	ResourceType string
	Node         string
	// Search is a case-insensitive substring of the title, rule or
	// process executable, matched against the dictionary of distinct
	// texts (search.go). A list or count with a Search term is bounded by
	// SearchTimeout all the same: past it the call fails with an error
	// wrapping context.DeadlineExceeded (narrow the filter and try again).
	Search string
	// Since and Until bound last_seen (both inclusive).
	Since, Until time.Time
	// Sort is "last_seen" (the default), "first_seen" or "severity" (then
	// last_seen), always newest or most severe first.
	Sort string
	// Limit is the page size: default 50, at most 1000.
	Limit int
	// Cursor is a previous page's NextCursor.
	Cursor string
}

// AlertPage is one page of a list; NextCursor is empty on the last page.
type AlertPage struct {
	Alerts     []Alert `json:"alerts"`
	NextCursor string  `json:"next_cursor,omitempty"`
}

// Resource types of AlertFilter.ResourceType.
const (
	ResourcePod     = "pod"
	ResourceNode    = "node"
	ResourceCluster = "cluster"
)

// Page sizes.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
)

// MaxResourceContainers bounds how many containers a Resource filter
// resolves to; a pod, workload or image naming more is cut there.
const MaxResourceContainers = 500

// SearchTimeout bounds a list or count with a Search term.
const SearchTimeout = 5 * time.Second

// ErrSearchTimeout is the error of a search that ran past SearchTimeout;
// it wraps context.DeadlineExceeded.
var ErrSearchTimeout = fmt.Errorf("search took longer than %v: narrow the filter (%w)", SearchTimeout, context.DeadlineExceeded)

// boundSearch gives a filter with a Search term its deadline.
func boundSearch(ctx context.Context, f AlertFilter) (context.Context, context.CancelFunc) {
	if strings.TrimSpace(f.Search) == "" {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, SearchTimeout)
}

// searchErr turns the error of a query cut by boundSearch's deadline into
// ErrSearchTimeout.
func searchErr(ctx context.Context, parent context.Context, err error) error {
	if err != nil && ctx.Err() != nil && parent.Err() == nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return ErrSearchTimeout
	}
	return err
}

// resourceMatch is what a Resource filter resolved to: container ids and
// a node name ("" for none).
type resourceMatch struct {
	containers []string
	node       string
}

func (m resourceMatch) empty() bool { return len(m.containers) == 0 && m.node == "" }

// resolveResource resolves a Resource filter: a node that has alerts, and
// the containers whose pod (name or namespace/name), workload, image or id
// it names.
func (s *Store) resolveResource(ctx context.Context, r string) (resourceMatch, error) {
	var m resourceMatch
	var one int
	err := s.r.QueryRowContext(ctx, s.d.q("SELECT 1 FROM alerts WHERE node = ? AND node <> '' LIMIT 1"), r).Scan(&one)
	switch {
	case err == nil:
		m.node = r
	case !errors.Is(err, sql.ErrNoRows):
		return m, fmt.Errorf("resource: %w", err)
	}
	q := `SELECT container_id FROM containers WHERE pod = ?
		UNION SELECT container_id FROM containers WHERE workload = ?
		UNION SELECT container_id FROM containers WHERE image = ?
		UNION SELECT container_id FROM containers WHERE container_id = ?`
	args := []any{r, r, r, r}
	if ns, pod, ok := strings.Cut(r, "/"); ok && ns != "" && pod != "" {
		q += " UNION SELECT container_id FROM containers WHERE pod = ? AND namespace = ?"
		args = append(args, pod, ns)
	}
	rows, err := s.r.QueryContext(ctx, s.d.q("SELECT container_id FROM ("+q+") AS c ORDER BY container_id LIMIT ?"), append(args, MaxResourceContainers)...)
	if err != nil {
		return m, fmt.Errorf("resource: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return m, fmt.Errorf("resource: %w", err)
		}
		m.containers = append(m.containers, id)
	}
	if err := rows.Err(); err != nil {
		return m, fmt.Errorf("resource: %w", err)
	}
	return m, nil
}

// streams are the conditions whose results, each in the list order, make
// up the resource filter's matches: one per container, and the node.
func (m resourceMatch) streams() (conds []string, args []any) {
	for _, id := range m.containers {
		conds = append(conds, "container_id = ? AND container_id <> ''")
		args = append(args, id)
	}
	if m.node != "" {
		conds = append(conds, "node = ? AND node <> ''")
		args = append(args, m.node)
	}
	return conds, args
}

// sortKey is one of the orders a list can have; each is backed by an index
// ending in (key columns..., id).
type sortKey struct {
	name    string
	cols    []string // compared and ordered descending, then id
	orderBy string
}

var sorts = map[string]sortKey{
	"last_seen":  {"last_seen", []string{"last_seen"}, "last_seen DESC, id DESC"},
	"first_seen": {"first_seen", []string{"first_seen"}, "first_seen DESC, id DESC"},
	"severity":   {"severity", []string{"severity", "last_seen"}, "severity DESC, last_seen DESC, id DESC"},
}

// cursor is where the previous page stopped: the last row's sort values
// and id. It travels base64url-encoded JSON, opaque to clients.
type cursor struct {
	Sort string  `json:"s"`
	Keys []int64 `json:"k"`
	ID   string  `json:"i"`
}

func (c cursor) encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string, sk sortKey) (cursor, error) {
	var c cursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || c.Sort != sk.name || len(c.Keys) != len(sk.cols) || c.ID == "" {
		return cursor{}, fmt.Errorf("%w: cursor is not one this list gave (or the sort changed)", ErrInvalid)
	}
	return c, nil
}

const alertSelect = `SELECT id, cluster_id, incident_id, status, status_reason, status_by, status_at,
	hit_count, first_seen, last_seen, severity, doc FROM alerts`

// where builds the WHERE clause of f (without cursor). none is true when
// the filter can match nothing (an unknown cluster or resource).
func (s *Store) where(ctx context.Context, f AlertFilter) (clause string, args []any, none bool, err error) {
	var conds []string
	if r := f.Resource; r != "" {
		m, err := s.resolveResource(ctx, r)
		if err != nil {
			return "", nil, false, err
		}
		if m.empty() {
			return "", nil, true, nil
		}
		var or []string
		if len(m.containers) > 0 {
			or = append(or, "(container_id IN ("+inList(len(m.containers))+") AND container_id <> '')")
			for _, id := range m.containers {
				args = append(args, id)
			}
		}
		if m.node != "" {
			or = append(or, "(node = ? AND node <> '')")
			args = append(args, m.node)
		}
		conds = append(conds, "("+strings.Join(or, " OR ")+")")
	}
	if len(f.Severity) > 0 {
		seen := map[int]bool{}
		var ranks []any
		for _, sev := range f.Severity {
			r := sev.Rank()
			if r < 0 {
				return "", nil, false, fmt.Errorf("%w: severity %q", ErrInvalid, clip(string(sev)))
			}
			if !seen[r] {
				seen[r] = true
				ranks = append(ranks, r)
			}
		}
		if len(ranks) < 4 {
			conds = append(conds, "severity IN ("+inList(len(ranks))+")")
			args = append(args, ranks...)
		}
	}
	if len(f.Status) > 0 {
		seen := map[string]bool{}
		var sts []any
		for _, st := range f.Status {
			if !validStatus(st) {
				return "", nil, false, fmt.Errorf("%w: status %q (want active, dismissed or resolved)", ErrInvalid, clip(st))
			}
			if !seen[st] {
				seen[st] = true
				sts = append(sts, st)
			}
		}
		if len(sts) < 3 {
			conds = append(conds, "status IN ("+inList(len(sts))+")")
			args = append(args, sts...)
		}
	}
	if f.Cluster != "" {
		id, ok, err := s.resolveCluster(ctx, f.Cluster)
		if err != nil {
			return "", nil, false, err
		}
		if !ok {
			return "", nil, true, nil
		}
		conds = append(conds, "cluster_id = ?")
		args = append(args, id)
	}
	for _, c := range []struct{ col, v string }{{"namespace", f.Namespace}, {"rule", f.Rule}, {"node", f.Node}} {
		if c.v != "" {
			conds = append(conds, c.col+" = ?")
			args = append(args, c.v)
		}
	}
	switch f.ResourceType {
	case "":
	case ResourcePod:
		conds = append(conds, "(container_id <> '' OR pod <> '')")
	case ResourceNode:
		conds = append(conds, "(container_id = '' AND pod = '' AND node <> '')")
	case ResourceCluster:
		conds = append(conds, "(container_id = '' AND pod = '' AND node = '')")
	default:
		return "", nil, false, fmt.Errorf("%w: resource type %q (want pod, node or cluster)", ErrInvalid, clip(f.ResourceType))
	}
	if q := strings.TrimSpace(f.Search); q != "" {
		cond, vals, none, err := s.searchCond(ctx, q)
		if err != nil || none {
			return "", nil, none, err
		}
		conds = append(conds, cond)
		args = append(args, vals...)
	}
	if !f.Since.IsZero() {
		conds = append(conds, "last_seen >= ?")
		args = append(args, ts(f.Since))
	}
	if !f.Until.IsZero() {
		conds = append(conds, "last_seen <= ?")
		args = append(args, ts(f.Until))
	}
	if len(conds) == 0 {
		return "", args, false, nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args, false, nil
}

var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

func validStatus(s string) bool {
	return s == event.StatusActive || s == event.StatusDismissed || s == event.StatusResolved
}

// ListAlerts returns one page of the alerts f selects, in f.Sort order.
// Pages are cut by keyset (the last row's sort key and id), so paging is
// stable while new alerts arrive: new alerts sort before the pages already
// read and shift nothing. An alert whose last_seen grows while a client
// pages by last_seen moves to the front, where that client does not look.
func (s *Store) ListAlerts(ctx context.Context, f AlertFilter) (AlertPage, error) {
	sctx, cancel := boundSearch(ctx, f)
	defer cancel()
	page, err := s.listAlerts(sctx, f)
	return page, searchErr(sctx, ctx, err)
}

func (s *Store) listAlerts(ctx context.Context, f AlertFilter) (AlertPage, error) {
	if f.Sort == "" {
		f.Sort = "last_seen"
	}
	sk, ok := sorts[f.Sort]
	if !ok {
		return AlertPage{}, fmt.Errorf("list alerts: %w: sort %q (want last_seen, first_seen or severity)", ErrInvalid, clip(f.Sort))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	var cur *cursor
	if f.Cursor != "" {
		c, err := decodeCursor(f.Cursor, sk)
		if err != nil {
			return AlertPage{}, fmt.Errorf("list alerts: %w", err)
		}
		cur = &c
	}
	// Sorting by severity walks the severities from high to low, each
	// with the last_seen order that every filter's index has: four cheap
	// queries at most instead of one sort of every matching row.
	levels := []int{-1}
	if sk.name == "severity" {
		levels = levels[:0]
		for r := 3; r >= 0; r-- {
			if len(f.Severity) == 0 || slices.ContainsFunc(f.Severity, func(s event.Severity) bool { return s.Rank() == r }) {
				levels = append(levels, r)
			}
		}
		for _, sev := range f.Severity {
			if sev.Rank() < 0 {
				return AlertPage{}, fmt.Errorf("list alerts: %w: severity %q", ErrInvalid, clip(string(sev)))
			}
		}
		f.Severity = nil
	}
	// A resource filter is read per container (and node), each in the
	// list order, and merged here.
	var streams []string
	var streamArgs []any
	if f.Resource != "" {
		m, err := s.resolveResource(ctx, f.Resource)
		if err != nil {
			return AlertPage{}, fmt.Errorf("list alerts: %w", err)
		}
		if m.empty() {
			return AlertPage{Alerts: []Alert{}}, nil
		}
		streams, streamArgs = m.streams()
		f.Resource = ""
	} else if term := strings.TrimSpace(f.Search); term != "" {
		// A search of a few texts is read the same way, one stream per
		// text; a broad one (most alerts match) by the usual order.
		keys, broad, err := s.searchTexts(ctx, term)
		if err != nil {
			return AlertPage{}, fmt.Errorf("list alerts: %w", err)
		}
		if len(keys) == 0 && !broad {
			return AlertPage{Alerts: []Alert{}}, nil
		}
		if !broad {
			for _, k := range keys {
				streams = append(streams, "text_id = ?")
				streamArgs = append(streamArgs, k)
			}
			f.Search = ""
		}
	}
	where, args, none, err := s.where(ctx, f)
	if err != nil {
		return AlertPage{}, fmt.Errorf("list alerts: %w", err)
	}
	page := AlertPage{Alerts: make([]Alert, 0, min(limit, 64))}
	if none {
		return page, nil
	}
	sel := alertSelect
	var ranks []int
	for _, lvl := range levels {
		w, a := where, slices.Clone(args)
		and := func(cond string, vals ...any) {
			if w == "" {
				w = " WHERE " + cond
			} else {
				w += " AND " + cond
			}
			a = append(a, vals...)
		}
		orderBy, timeCol := sk.orderBy, sk.cols[0]
		if lvl >= 0 {
			if cur != nil && int64(lvl) > cur.Keys[0] {
				continue // pages already read
			}
			and("severity = ?", lvl)
			if cur != nil && int64(lvl) == cur.Keys[0] {
				cond, vals := keysetCond(sorts["last_seen"], cursor{Keys: cur.Keys[1:], ID: cur.ID})
				and(cond, vals...)
			}
			orderBy, timeCol = sorts["last_seen"].orderBy, "last_seen"
		} else if cur != nil {
			cond, vals := keysetCond(sk, *cur)
			and(cond, vals...)
		}
		need := limit + 1 - len(page.Alerts)
		var got []rankedAlert
		if streams == nil {
			got, err = s.queryAlerts(ctx, sel+w+" ORDER BY "+orderBy+" LIMIT ?", append(a, need))
		} else {
			got, err = s.queryStreams(ctx, w, a, streams, streamArgs, orderBy, timeCol, need)
		}
		if err != nil {
			return AlertPage{}, fmt.Errorf("list alerts: %w", err)
		}
		for _, g := range got {
			page.Alerts = append(page.Alerts, g.Alert)
			ranks = append(ranks, g.rank)
		}
		if len(page.Alerts) > limit {
			break
		}
	}
	if len(page.Alerts) > limit {
		page.Alerts = page.Alerts[:limit]
		last := page.Alerts[limit-1]
		c := cursor{Sort: sk.name, ID: last.ID}
		for _, col := range sk.cols {
			switch col {
			case "last_seen":
				c.Keys = append(c.Keys, ts(last.LastSeen))
			case "first_seen":
				c.Keys = append(c.Keys, ts(last.FirstSeen))
			case "severity":
				c.Keys = append(c.Keys, int64(ranks[limit-1]))
			}
		}
		page.NextCursor = c.encode()
	}
	return page, nil
}

// rankedAlert is an alert read with its severity rank.
type rankedAlert struct {
	Alert
	rank int
}

func (s *Store) queryAlerts(ctx context.Context, query string, args []any) ([]rankedAlert, error) {
	rows, err := s.r.QueryContext(ctx, s.d.q(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []rankedAlert
	for rows.Next() {
		al, rank, err := scanAlert(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, rankedAlert{al, rank})
	}
	return out, rows.Err()
}

// streamsPerQuery is how many streams one statement reads (a UNION ALL of
// one keyset query each).
const streamsPerQuery = 50

// queryStreams reads the first need alerts of each stream (a condition
// added to where), each by its own index range in the list order, and
// merges them: the first need of all, in order, without repeats. The
// streams read only the sort key and id (from the index, when the other
// filters are on severity, status and time); the full rows are read for
// the merged page only.
func (s *Store) queryStreams(ctx context.Context, where string, args []any, streams []string, streamArgs []any,
	orderBy, timeCol string, need int) ([]rankedAlert, error) {
	type keyed struct {
		key int64
		id  string
	}
	var all []keyed
	for start := 0; start < len(streams); start += streamsPerQuery {
		end := min(start+streamsPerQuery, len(streams))
		var q strings.Builder
		var qa []any
		for i := start; i < end; i++ {
			if i > start {
				q.WriteString(" UNION ALL ")
			}
			w := " WHERE " + streams[i]
			if where != "" {
				w = where + " AND " + streams[i]
			}
			fmt.Fprintf(&q, "SELECT * FROM (SELECT %s, id FROM alerts%s ORDER BY %s LIMIT ?) AS s%d", timeCol, w, orderBy, i-start)
			qa = append(qa, args...)
			qa = append(qa, streamArgs[i], need)
		}
		rows, err := s.r.QueryContext(ctx, s.d.q(q.String()), qa...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var k keyed
			if err := rows.Scan(&k.key, &k.id); err != nil {
				rows.Close()
				return nil, err
			}
			all = append(all, k)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(all, func(x, y keyed) int {
		if x.key != y.key {
			if x.key > y.key {
				return -1
			}
			return 1
		}
		return strings.Compare(y.id, x.id)
	})
	all = slices.Compact(all)
	all = all[:min(len(all), need)]
	if len(all) == 0 {
		return nil, nil
	}
	ids := make([]any, len(all))
	pos := make(map[string]int, len(all))
	for i, k := range all {
		ids[i] = k.id
		pos[k.id] = i
	}
	got, err := s.queryAlerts(ctx, alertSelect+" WHERE id IN ("+inList(len(ids))+")", ids)
	if err != nil {
		return nil, err
	}
	out := make([]rankedAlert, len(all))
	n := 0
	for _, g := range got {
		if i, ok := pos[g.ID]; ok {
			out[i] = g
			n++
		}
	}
	if n != len(all) {
		// An alert went away between the two reads (alerts are not
		// deleted today): keep the ones found, in order.
		out = slices.DeleteFunc(out, func(a rankedAlert) bool { return a.ID == "" })
	}
	return out, nil
}

// keysetCond is "rows after the cursor" in the descending order of sk. The
// leading "col <= ?" bounds the index range; the rest is checked on the
// rows in it.
func keysetCond(sk sortKey, c cursor) (string, []any) {
	// (k1, k2, ..., id) < (c1, c2, ..., cid), spelled out:
	// k1 < c1 OR (k1 = c1 AND (k2 < c2 OR (k2 = c2 AND id < cid))).
	args := []any{c.Keys[0]}
	var after func(i int) string
	after = func(i int) string {
		if i == len(sk.cols) {
			args = append(args, c.ID)
			return "id < ?"
		}
		col := sk.cols[i]
		args = append(args, c.Keys[i], c.Keys[i])
		return "(" + col + " < ? OR (" + col + " = ? AND " + after(i+1) + "))"
	}
	cond := sk.cols[0] + " <= ? AND " + after(0)
	return cond, args
}

type scanner interface{ Scan(...any) error }

func scanAlert(r scanner) (Alert, int, error) {
	var a Alert
	var id, status string
	var statusAt, count, first, last int64
	var rank int
	var doc string
	if err := r.Scan(&id, &a.ClusterID, &a.IncidentID, &status, &a.StatusReason, &a.StatusBy, &statusAt,
		&count, &first, &last, &rank, &doc); err != nil {
		return Alert{}, 0, err
	}
	if err := json.Unmarshal([]byte(doc), &a.Alert); err != nil {
		return Alert{}, 0, fmt.Errorf("alert %s: stored document: %w", id, err)
	}
	a.ID = id
	a.Status = status
	a.StatusAt = fromTS(statusAt)
	a.Count = uint64(count)
	a.FirstSeen, a.LastSeen = fromTS(first), fromTS(last)
	return a, rank, nil
}

// CountAlerts counts the alerts f selects by severity (Sort, Limit and
// Cursor are ignored). Every severity has an entry, zero included.
func (s *Store) CountAlerts(ctx context.Context, f AlertFilter) (map[event.Severity]int, error) {
	sctx, cancel := boundSearch(ctx, f)
	defer cancel()
	out, err := s.countAlerts(sctx, f)
	return out, searchErr(sctx, ctx, err)
}

func (s *Store) countAlerts(ctx context.Context, f AlertFilter) (map[event.Severity]int, error) {
	out := map[event.Severity]int{event.Informational: 0, event.Low: 0, event.Medium: 0, event.High: 0}
	where, args, none, err := s.where(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("count alerts: %w", err)
	}
	if none {
		return out, nil
	}
	rows, err := s.r.QueryContext(ctx, s.d.q("SELECT severity, COUNT(*) FROM alerts"+where+" GROUP BY severity"), args...)
	if err != nil {
		return nil, fmt.Errorf("count alerts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var rank, n int
		if err := rows.Scan(&rank, &n); err != nil {
			return nil, fmt.Errorf("count alerts: %w", err)
		}
		out[severityOf(rank)] += n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count alerts: %w", err)
	}
	return out, nil
}

func severityOf(rank int) event.Severity {
	switch rank {
	case 0:
		return event.Informational
	case 1:
		return event.Low
	case 2:
		return event.Medium
	}
	return event.High
}

// GetAlert returns one alert, ErrNotFound if there is none with that id.
func (s *Store) GetAlert(ctx context.Context, id string) (Alert, error) {
	a, _, err := scanAlert(s.r.QueryRowContext(ctx, s.d.q(alertSelect+" WHERE id = ?"), id))
	if errors.Is(err, sql.ErrNoRows) {
		return Alert{}, fmt.Errorf("alert %q: %w", clip(id), ErrNotFound)
	}
	if err != nil {
		return Alert{}, fmt.Errorf("get alert: %w", err)
	}
	return a, nil
}

// Change is one recorded change of an alert: who changed which field from
// what to what, when and why.
type Change struct {
	AlertID string    `json:"alert_id"`
	Field   string    `json:"field"`
	From    string    `json:"from"`
	To      string    `json:"to"`
	Reason  string    `json:"reason,omitempty"`
	Actor   string    `json:"actor"`
	At      time.Time `json:"at"`
}

// SetAlertStatus sets the status (active, dismissed or resolved) of the
// alerts with these ids and records a change for each alert whose status
// changed; it returns how many changed. Alerts already in that status are
// left alone. ErrNotFound when none of the ids exists.
func (s *Store) SetAlertStatus(ctx context.Context, ids []string, status, reason, actor string, now time.Time) (int, error) {
	if !validStatus(status) {
		return 0, fmt.Errorf("set alert status: %w: status %q (want active, dismissed or resolved)", ErrInvalid, clip(status))
	}
	if len(ids) == 0 {
		return 0, nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("set alert status: %w", err)
	}
	defer rollback(tx)
	found := 0
	var changed []any
	var from []string
	for start := 0; start < len(ids); start += 1000 {
		chunk := ids[start:min(start+1000, len(ids))]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		rows, err := tx.QueryContext(ctx, s.d.q("SELECT id, status FROM alerts WHERE id IN ("+inList(len(chunk))+")"+s.d.forUpdate()), args...)
		if err != nil {
			return 0, fmt.Errorf("set alert status: %w", err)
		}
		for rows.Next() {
			var id, st string
			if err := rows.Scan(&id, &st); err != nil {
				rows.Close()
				return 0, fmt.Errorf("set alert status: %w", err)
			}
			found++
			if st != status {
				changed = append(changed, id)
				from = append(from, st)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return 0, fmt.Errorf("set alert status: %w", err)
		}
	}
	if found == 0 {
		return 0, fmt.Errorf("set alert status: alert %q: %w", clip(ids[0]), ErrNotFound)
	}
	at := ts(now)
	for start := 0; start < len(changed); start += 1000 {
		chunk := changed[start:min(start+1000, len(changed))]
		args := append([]any{status, reason, actor, at}, chunk...)
		if _, err := tx.ExecContext(ctx, s.d.q("UPDATE alerts SET status = ?, status_reason = ?, status_by = ?, status_at = ? WHERE id IN ("+
			inList(len(chunk))+")"), args...); err != nil {
			return 0, fmt.Errorf("set alert status: %w", err)
		}
		cargs := make([]any, 0, len(chunk)*7)
		for i, id := range chunk {
			cargs = append(cargs, id, at, "status", from[start+i], status, reason, actor)
		}
		if _, err := tx.ExecContext(ctx, s.d.q("INSERT INTO alert_changes (alert_id, at, field, from_value, to_value, reason, actor) VALUES "+
			placeholders(7, len(chunk))), cargs...); err != nil {
			return 0, fmt.Errorf("set alert status: record change: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("set alert status: %w", err)
	}
	return len(changed), nil
}

// SetStatusByFilter sets the status of every alert f selects (Sort, Limit
// and Cursor are ignored) that is not in it already, records a change for
// each, and returns how many changed. An empty filter selects every alert.
func (s *Store) SetStatusByFilter(ctx context.Context, f AlertFilter, status, reason, actor string, now time.Time) (int, error) {
	if !validStatus(status) {
		return 0, fmt.Errorf("set status by filter: %w: status %q (want active, dismissed or resolved)", ErrInvalid, clip(status))
	}
	where, args, none, err := s.where(ctx, f)
	if err != nil {
		return 0, fmt.Errorf("set status by filter: %w", err)
	}
	if none {
		return 0, nil
	}
	if where == "" {
		where = " WHERE status <> ?"
	} else {
		where += " AND status <> ?"
	}
	args = append(args, status)
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("set status by filter: %w", err)
	}
	defer rollback(tx)
	at := ts(now)
	if !s.d.sqlite {
		// Lock the rows first, so that the change rows and the update
		// below see the same set while ingest goes on.
		if _, err := tx.ExecContext(ctx, s.d.q("SELECT id FROM alerts"+where+" FOR UPDATE"), args...); err != nil {
			return 0, fmt.Errorf("set status by filter: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, s.d.q(`INSERT INTO alert_changes (alert_id, at, field, from_value, to_value, reason, actor)
		SELECT id, ?, 'status', status, ?, ?, ? FROM alerts`+where), append([]any{at, status, reason, actor}, args...)...); err != nil {
		return 0, fmt.Errorf("set status by filter: record changes: %w", err)
	}
	res, err := tx.ExecContext(ctx, s.d.q("UPDATE alerts SET status = ?, status_reason = ?, status_by = ?, status_at = ?"+where),
		append([]any{status, reason, actor, at}, args...)...)
	if err != nil {
		return 0, fmt.Errorf("set status by filter: %w", err)
	}
	n, _ := res.RowsAffected()
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("set status by filter: %w", err)
	}
	return int(n), nil
}

// AlertChanges returns an alert's recorded changes, oldest first.
// ErrNotFound when the alert does not exist.
func (s *Store) AlertChanges(ctx context.Context, id string) ([]Change, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, s.d.q("SELECT COUNT(*) FROM alerts WHERE id = ?"), id).Scan(&n); err != nil {
		return nil, fmt.Errorf("alert changes: %w", err)
	}
	if n == 0 {
		return nil, fmt.Errorf("alert %q: %w", clip(id), ErrNotFound)
	}
	rows, err := s.r.QueryContext(ctx, s.d.q(`SELECT alert_id, at, field, from_value, to_value, reason, actor
		FROM alert_changes WHERE alert_id = ? ORDER BY at`), id)
	if err != nil {
		return nil, fmt.Errorf("alert changes: %w", err)
	}
	defer rows.Close()
	out := []Change{}
	for rows.Next() {
		var c Change
		var at int64
		if err := rows.Scan(&c.AlertID, &at, &c.Field, &c.From, &c.To, &c.Reason, &c.Actor); err != nil {
			return nil, fmt.Errorf("alert changes: %w", err)
		}
		c.At = fromTS(at)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("alert changes: %w", err)
	}
	return out, nil
}
