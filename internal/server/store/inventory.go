package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/ship"
)

// InventoryRow is one inventory item of a cluster as last reported.
type InventoryRow struct {
	ClusterID string `json:"cluster_id"`
	ship.InventoryItem
	LastSeen time.Time `json:"last_seen"`
}

// ListInventory returns the inventory of one cluster (id or name) or of
// all ("") of one kind or all (""), ordered by cluster, kind, namespace
// and name.
func (s *Store) ListInventory(ctx context.Context, cluster, kind string) ([]InventoryRow, error) {
	where, args, none, err := s.clusterKindWhere(ctx, cluster, "kind", kind)
	if err != nil {
		return nil, fmt.Errorf("list inventory: %w", err)
	}
	out := []InventoryRow{}
	if none {
		return out, nil
	}
	rows, err := s.r.QueryContext(ctx, s.d.q(`SELECT cluster_id, kind, namespace, name, node, attrs, last_seen FROM inventory`+
		where+` ORDER BY cluster_id, kind, namespace, name`), args...)
	if err != nil {
		return nil, fmt.Errorf("list inventory: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r InventoryRow
		var attrs string
		var last int64
		if err := rows.Scan(&r.ClusterID, &r.Kind, &r.Namespace, &r.Name, &r.Node, &attrs, &last); err != nil {
			return nil, fmt.Errorf("list inventory: %w", err)
		}
		if attrs != "" {
			if err := json.Unmarshal([]byte(attrs), &r.Attrs); err != nil {
				return nil, fmt.Errorf("list inventory: stored attributes: %w", err)
			}
		}
		r.LastSeen = fromTS(last)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list inventory: %w", err)
	}
	return out, nil
}

// FindingRow is one posture finding of a cluster as last reported. Mode
// is Details["mode"] when that is a string, else "".
type FindingRow struct {
	ClusterID string `json:"cluster_id"`
	ship.Finding
	Mode     string    `json:"mode"`
	LastSeen time.Time `json:"last_seen"`
}

const findingSelect = `SELECT cluster_id, id, check_id, resource, namespace, status, details, last_seen, scan, mode FROM findings`

func scanFinding(rows *sql.Rows) (FindingRow, error) {
	var r FindingRow
	var details string
	var last int64
	if err := rows.Scan(&r.ClusterID, &r.ID, &r.Check, &r.Resource, &r.Namespace, &r.Status, &details, &last, &r.Scan, &r.Mode); err != nil {
		return r, err
	}
	if details != "" {
		if err := json.Unmarshal([]byte(details), &r.Details); err != nil {
			return r, fmt.Errorf("stored details: %w", err)
		}
	}
	r.LastSeen = fromTS(last)
	return r, nil
}

// ListFindings returns the posture findings of one cluster (id or name) or
// of all (""), of one check or all (""), ordered by cluster, check and
// resource.
func (s *Store) ListFindings(ctx context.Context, cluster, check string) ([]FindingRow, error) {
	where, args, none, err := s.clusterKindWhere(ctx, cluster, "check_id", check)
	if err != nil {
		return nil, fmt.Errorf("list findings: %w", err)
	}
	out := []FindingRow{}
	if none {
		return out, nil
	}
	rows, err := s.r.QueryContext(ctx, s.d.q(findingSelect+where+` ORDER BY cluster_id, check_id, resource, id`), args...)
	if err != nil {
		return nil, fmt.Errorf("list findings: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanFinding(rows)
		if err != nil {
			return nil, fmt.Errorf("list findings: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list findings: %w", err)
	}
	return out, nil
}

// clusterKindWhere filters on a cluster (id or name, resolved) and one
// more column.
func (s *Store) clusterKindWhere(ctx context.Context, cluster, col, val string) (string, []any, bool, error) {
	var where string
	var args []any
	if cluster != "" {
		id, ok, err := s.resolveCluster(ctx, cluster)
		if err != nil {
			return "", nil, false, err
		}
		if !ok {
			return "", nil, true, nil
		}
		where = " WHERE cluster_id = ?"
		args = append(args, id)
	}
	if val != "" {
		if where == "" {
			where = " WHERE "
		} else {
			where += " AND "
		}
		where += col + " = ?"
		args = append(args, val)
	}
	return where, args, false, nil
}

// CheckSummary is one check's findings over the clusters asked for: how
// many resources pass and fail it, the failing ones (at most
// MaxSummaryResources) and the modes the findings were made in.
type CheckSummary struct {
	Check     string   `json:"check"`
	Healthy   int      `json:"healthy"`
	Unhealthy int      `json:"unhealthy"`
	Resources []string `json:"unhealthy_resources"`
	Modes     []string `json:"modes"`
}

// MaxSummaryResources bounds the failing resources a summary lists.
const MaxSummaryResources = 100

// SummarizeFindings sums the findings of one cluster (id or name) or all
// (""), per check, in check order. Modes are sorted; the failing resources
// are the first MaxSummaryResources in list order (resource, cluster, id).
// It reads the counts from an index and then at most MaxSummaryResources
// index entries per failing check, however many findings there are.
func (s *Store) SummarizeFindings(ctx context.Context, cluster string) ([]CheckSummary, error) {
	where, args, none, err := s.clusterKindWhere(ctx, cluster, "", "")
	if err != nil {
		return nil, fmt.Errorf("summarize findings: %w", err)
	}
	if none {
		return nil, nil
	}
	// Grouped by cluster too, so that even across clusters the counts are
	// one in-order pass over findings_mode; the clusters are summed here.
	rows, err := s.r.QueryContext(ctx, s.d.q(`SELECT check_id, status, mode, COUNT(*) FROM findings`+where+`
		GROUP BY cluster_id, check_id, status, mode`), args...)
	if err != nil {
		return nil, fmt.Errorf("summarize findings: %w", err)
	}
	var out []CheckSummary
	idx := map[string]int{}
	for rows.Next() {
		var check, status, mode string
		var n int
		if err := rows.Scan(&check, &status, &mode, &n); err != nil {
			rows.Close()
			return nil, fmt.Errorf("summarize findings: %w", err)
		}
		i, ok := idx[check]
		if !ok {
			i = len(out)
			idx[check] = i
			out = append(out, CheckSummary{Check: check, Resources: []string{}, Modes: []string{}})
		}
		c := &out[i]
		if status == ship.Healthy {
			c.Healthy += n
		} else {
			c.Unhealthy += n
		}
		if mode != "" && !slices.Contains(c.Modes, mode) {
			c.Modes = append(c.Modes, mode)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("summarize findings: %w", err)
	}
	slices.SortFunc(out, func(a, b CheckSummary) int { return strings.Compare(a.Check, b.Check) })
	for i := range out {
		c := &out[i]
		slices.Sort(c.Modes)
		if c.Unhealthy == 0 {
			continue
		}
		page, err := s.ListFindingsPage(ctx, FindingFilter{clusterID: clusterArg(args), Check: c.Check, Status: ship.Unhealthy,
			Limit: MaxSummaryResources, resourcesOnly: true})
		if err != nil {
			return nil, fmt.Errorf("summarize findings: %w", err)
		}
		for _, f := range page.Findings {
			c.Resources = append(c.Resources, f.Resource)
		}
	}
	return out, nil
}

// clusterArg is the resolved cluster id of clusterKindWhere's arguments.
func clusterArg(args []any) string {
	if len(args) == 0 {
		return ""
	}
	return args[0].(string)
}

// FindingFilter selects one check's findings for ListFindingsPage.
type FindingFilter struct {
	Cluster   string // id or name; "" for every cluster
	Check     string // required
	Status    string // ship.Healthy, ship.Unhealthy, or "" for both
	Namespace string // "" for every namespace
	// Limit is the page size: 1 to MaxFindingsPage, 0 for 50.
	Limit int
	// Cursor is a previous page's NextCursor.
	Cursor string

	clusterID     string // resolved already (SummarizeFindings)
	resourcesOnly bool   // fill in Resource only
}

// MaxFindingsPage bounds FindingFilter.Limit.
const MaxFindingsPage = 1000

// FindingPage is one page of findings; NextCursor is empty on the last.
type FindingPage struct {
	Findings   []FindingRow `json:"findings"`
	NextCursor string       `json:"next_cursor,omitempty"`
}

// findingCursor is where a page of findings stopped: the last row's
// resource, cluster and id, base64url-encoded JSON, opaque to clients.
type findingCursor struct {
	Resource string `json:"r"`
	Cluster  string `json:"c"`
	ID       string `json:"i"`
}

func (c findingCursor) encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeFindingCursor(s string) (findingCursor, error) {
	var c findingCursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || c.ID == "" || c.Cluster == "" {
		return findingCursor{}, fmt.Errorf("%w: cursor is not one this list gave", ErrInvalid)
	}
	return c, nil
}

// ListFindingsPage returns one page of a check's findings, ordered by
// resource, cluster id and id, and paged by keyset: each page reads its
// own rows from an index (findings_cluster with a cluster, findings_check
// without), however deep it is. A namespace filter is applied to those
// index rows. An unknown cluster gives an empty page, a bad filter or
// cursor ErrInvalid.
func (s *Store) ListFindingsPage(ctx context.Context, f FindingFilter) (FindingPage, error) {
	page := FindingPage{Findings: []FindingRow{}}
	switch {
	case f.Check == "":
		return page, fmt.Errorf("list findings: %w: check required", ErrInvalid)
	case f.Status != "" && f.Status != ship.Healthy && f.Status != ship.Unhealthy:
		return page, fmt.Errorf("list findings: %w: status %q is not healthy or unhealthy", ErrInvalid, clip(f.Status))
	case f.Limit < 0 || f.Limit > MaxFindingsPage:
		return page, fmt.Errorf("list findings: %w: limit %d is not 1 to %d", ErrInvalid, f.Limit, MaxFindingsPage)
	case f.Limit == 0:
		f.Limit = 50
	}
	var cur *findingCursor
	if f.Cursor != "" {
		c, err := decodeFindingCursor(f.Cursor)
		if err != nil {
			return page, fmt.Errorf("list findings: %w", err)
		}
		cur = &c
	}
	clusterID := f.clusterID
	if clusterID == "" && f.Cluster != "" {
		id, ok, err := s.resolveCluster(ctx, f.Cluster)
		if err != nil {
			return page, fmt.Errorf("list findings: %w", err)
		}
		if !ok {
			return page, nil
		}
		clusterID = id
	}
	statuses := []string{f.Status}
	if f.Status == "" {
		statuses = []string{ship.Healthy, ship.Unhealthy}
	}
	rows, err := s.findingsRange(ctx, clusterID, f, statuses, cur, f.Limit+1)
	if err != nil {
		return page, fmt.Errorf("list findings: %w", err)
	}
	if len(rows) > f.Limit {
		rows = rows[:f.Limit]
		last := rows[len(rows)-1]
		page.NextCursor = findingCursor{Resource: last.Resource, Cluster: last.ClusterID, ID: last.ID}.encode()
	}
	page.Findings = append(page.Findings, rows...)
	return page, nil
}

// findingsRange reads up to limit findings of the statuses after cur.
// Each status is one index range in list order; with both, the database
// merges the two ranges (UNION ALL of two limited ranges, then sorted)
// rather than sorting all of the check's findings, and in its own
// collation, which the keyset comparisons use too.
func (s *Store) findingsRange(ctx context.Context, clusterID string, f FindingFilter, statuses []string, cur *findingCursor, limit int) ([]FindingRow, error) {
	cols := findingSelect
	if f.resourcesOnly {
		cols = "SELECT cluster_id, id, resource FROM findings"
	}
	var parts []string
	var args []any
	for _, status := range statuses {
		cond := []string{"check_id = ?", "status = ?"}
		args = append(args, f.Check, status)
		if clusterID != "" {
			cond = append(cond, "cluster_id = ?")
			args = append(args, clusterID)
		}
		if f.Namespace != "" {
			cond = append(cond, "namespace = ?")
			args = append(args, f.Namespace)
		}
		if cur != nil {
			if clusterID != "" {
				// The cluster is fixed: the keyset is (resource, id).
				cond = append(cond, "(resource > ? OR (resource = ? AND id > ?))")
				args = append(args, cur.Resource, cur.Resource, cur.ID)
			} else {
				cond = append(cond, "(resource > ? OR (resource = ? AND (cluster_id > ? OR (cluster_id = ? AND id > ?))))")
				args = append(args, cur.Resource, cur.Resource, cur.Cluster, cur.Cluster, cur.ID)
			}
			// Lets the planner start the index range at the cursor.
			cond = append(cond, "resource >= ?")
			args = append(args, cur.Resource)
		}
		parts = append(parts, cols+" WHERE "+strings.Join(cond, " AND ")+" ORDER BY resource, cluster_id, id LIMIT ?")
		args = append(args, limit)
	}
	query := parts[0]
	if len(parts) > 1 {
		for i, p := range parts {
			parts[i] = fmt.Sprintf("SELECT * FROM (%s) s%d", p, i)
		}
		query = strings.Join(parts, " UNION ALL ") + " ORDER BY resource, cluster_id, id LIMIT ?"
		args = append(args, limit)
	}
	rows, err := s.r.QueryContext(ctx, s.d.q(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []FindingRow
	for rows.Next() {
		var r FindingRow
		if f.resourcesOnly {
			err = rows.Scan(&r.ClusterID, &r.ID, &r.Resource)
		} else {
			r, err = scanFinding(rows)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// backfillFindingModes fills in the mode column (migration 4) of the
// findings stored before it from their details, as ingest does: a string
// details.mode, else ”.
func backfillFindingModes(ctx context.Context, tx *sql.Tx, d dialect) error {
	q := `UPDATE findings SET mode = json_extract(details, '$.mode')
		WHERE details <> '' AND json_type(details, '$.mode') = 'text'`
	if !d.sqlite {
		// CASE: the cast must not see an empty details.
		q = `UPDATE findings SET mode = details::jsonb->>'mode'
			WHERE CASE WHEN details <> '' THEN jsonb_typeof(details::jsonb->'mode') = 'string' ELSE false END`
	}
	_, err := tx.ExecContext(ctx, q)
	return err
}
