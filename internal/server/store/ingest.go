package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/ship"
)

// IngestResult says what one batch changed.
type IngestResult struct {
	// Duplicate: this cluster already sent a batch with this id; nothing
	// was written.
	Duplicate bool `json:"duplicate"`
	// Alerts is how many alerts were stored (new or updated), NewAlerts how
	// many of them were new. Alerts whose id belongs to another cluster
	// are skipped.
	Alerts    int `json:"alerts"`
	NewAlerts int `json:"new_alerts"`
	Health    int `json:"health"`
	Inventory int `json:"inventory"`
	// Findings is how many findings the batch held (removed ones too),
	// FindingsDeleted how many stored findings it deleted: removed ones
	// and those of scans other than a completed one.
	Findings        int `json:"findings"`
	FindingsDeleted int `json:"findings_deleted"`
}

// IncidentWindow is how close in time an alert must be to an open incident
// of its entity to join it.
const IncidentWindow = 30 * time.Minute

// batchMemory is how long batch ids are remembered. A batch retried after
// that stores nothing new anyway (alerts upsert by id); only the work of
// doing so is saved.
const batchMemory = 7 * 24 * time.Hour

// Ingest stores one batch from a sensor or agent of cluster clusterID, in
// one transaction:
//   - a batch id this cluster already sent: Duplicate, nothing written;
//   - alerts upsert by id: count, last_seen take the maximum, first_seen the
//     minimum, status and incident stay; each alert is stamped with the
//     cluster (its own cluster field is overridden), and an id that belongs
//     to another cluster is skipped, so a credential writes only its own
//     cluster's alerts;
//   - each new alert joins the incident of its entity (container, pod,
//     workload, node, user, else the cluster) whose activity is within
//     IncidentWindow of it, or opens one;
//   - health entries upsert components and are the cluster's heartbeat
//     (last_seen = now);
//   - inventory items upsert by (kind, namespace, name);
//   - findings upsert by id, in batch order: the last finding of an id
//     wins, and a removed one deletes it; then each completed scan deletes
//     the cluster's findings whose scan differs.
//
// An unknown cluster gives ErrNotFound, an invalid batch ErrInvalid.
func (s *Store) Ingest(ctx context.Context, clusterID string, b *ship.Batch, now time.Time) (IngestResult, error) {
	var res IngestResult
	if b == nil || b.BatchID == "" {
		return res, fmt.Errorf("ingest: %w: batch id required", ErrInvalid)
	}
	merged, err := mergeAlerts(b.Alerts)
	if err != nil {
		return res, err
	}
	var clusterName string
	err = s.r.QueryRowContext(ctx, s.d.q("SELECT name FROM clusters WHERE id = ?"), clusterID).Scan(&clusterName)
	if errors.Is(err, sql.ErrNoRows) {
		return res, fmt.Errorf("ingest: cluster %q: %w", clip(clusterID), ErrNotFound)
	}
	if err != nil {
		return res, fmt.Errorf("ingest: %w", err)
	}
	// Encoding happens before the transaction: on SQLite the write lock is
	// held for the database work only.
	alerts, err := prepareAlerts(merged, clusterName)
	if err != nil {
		return res, err
	}

	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return res, fmt.Errorf("ingest: %w", err)
	}
	defer rollback(tx)
	// The row lock serialises the batches of one cluster on PostgreSQL;
	// SQLite has one writer anyway.
	var locked string
	err = tx.QueryRowContext(ctx, s.d.q("SELECT id FROM clusters WHERE id = ?"+s.d.forUpdate()), clusterID).Scan(&locked)
	if errors.Is(err, sql.ErrNoRows) {
		return res, fmt.Errorf("ingest: cluster %q: %w", clip(clusterID), ErrNotFound)
	}
	if err != nil {
		return res, fmt.Errorf("ingest: %w", err)
	}
	r, err := tx.ExecContext(ctx, s.d.q(`INSERT INTO ingest_batches (cluster_id, batch_id, received_at) VALUES (?, ?, ?)
		ON CONFLICT DO NOTHING`), clusterID, b.BatchID, ts(now))
	if err != nil {
		return res, fmt.Errorf("ingest: batch id: %w", err)
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return IngestResult{Duplicate: true}, nil
	}
	if s.ingests.Add(1)%256 == 1 {
		if _, err := tx.ExecContext(ctx, s.d.q("DELETE FROM ingest_batches WHERE received_at < ?"), ts(now.Add(-batchMemory))); err != nil {
			return res, fmt.Errorf("ingest: forget old batch ids: %w", err)
		}
	}

	var texts map[int64]string
	if len(alerts) > 0 {
		if res.Alerts, res.NewAlerts, err = s.ingestAlerts(ctx, tx, clusterID, alerts); err != nil {
			return res, err
		}
		if texts, err = s.ingestTexts(ctx, tx, alerts); err != nil {
			return res, err
		}
	}
	if res.Health, err = s.ingestHealth(ctx, tx, clusterID, b, now); err != nil {
		return res, err
	}
	if res.Inventory, err = s.ingestInventory(ctx, tx, clusterID, b.Inventory, now); err != nil {
		return res, err
	}
	if res.Findings, res.FindingsDeleted, err = s.ingestFindings(ctx, tx, clusterID, b.Findings, b.CompletedScans, now); err != nil {
		return res, err
	}
	if err := tx.Commit(); err != nil {
		return IngestResult{}, fmt.Errorf("ingest: commit: %w", err)
	}
	s.texts.add(texts)
	return res, nil
}

// mergeAlerts validates a batch's alerts and folds repeats of one id into
// one (a statement may touch a row only once).
func mergeAlerts(in []event.Alert) ([]*event.Alert, error) {
	out := make([]*event.Alert, 0, len(in))
	byID := make(map[string]int, len(in))
	for i := range in {
		a := &in[i]
		if a.ID == "" || len(a.ID) > 128 {
			return nil, fmt.Errorf("ingest: %w: alerts[%d].id: 1 to 128 characters required", ErrInvalid, i)
		}
		if a.Severity.Rank() < 0 {
			return nil, fmt.Errorf("ingest: %w: alerts[%d].severity %q", ErrInvalid, i, clip(string(a.Severity)))
		}
		if j, ok := byID[a.ID]; ok {
			o := out[j]
			m := *a
			if o.LastSeen.After(a.LastSeen) {
				m = *o
			}
			m.Count = max(o.Count, a.Count)
			m.FirstSeen = minTime(o.FirstSeen, a.FirstSeen)
			m.LastSeen = maxTime(o.LastSeen, a.LastSeen)
			out[j] = &m
			continue
		}
		byID[a.ID] = len(out)
		c := *a
		out = append(out, &c)
	}
	return out, nil
}

func minTime(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// preparedAlert is an alert ready to be written.
type preparedAlert struct {
	*event.Alert
	doc    string
	count  int64
	exe    string
	text   string // searchText of the alert
	textID int64  // searchKey of text
}

// prepareAlerts stamps the cluster's name on each alert, fills what a
// sender may leave out (count 1, first_seen = last_seen, status active)
// and encodes the documents.
func prepareAlerts(alerts []*event.Alert, clusterName string) ([]preparedAlert, error) {
	out := make([]preparedAlert, len(alerts))
	for i, a := range alerts {
		a.Cluster = clusterName
		if a.Count == 0 {
			a.Count = 1
		}
		if a.LastSeen.IsZero() {
			a.LastSeen = a.FirstSeen
		}
		if a.FirstSeen.IsZero() || a.FirstSeen.After(a.LastSeen) {
			a.FirstSeen = a.LastSeen
		}
		if a.Status == "" {
			a.Status = event.StatusActive // stored only for new alerts
		}
		doc, err := json.Marshal(a)
		if err != nil {
			return nil, fmt.Errorf("ingest alert %s: %w", a.ID, err)
		}
		p := preparedAlert{Alert: a, doc: string(doc), count: math.MaxInt64}
		if a.Count < math.MaxInt64 {
			p.count = int64(a.Count)
		}
		if a.Process != nil {
			p.exe = a.Process.Exe
		}
		p.text = searchText(a.Title, a.Rule, p.exe)
		p.textID = searchKey(p.text)
		out[i] = p
	}
	return out, nil
}

// existingAlert is what ingest needs to know of a stored alert.
type existingAlert struct {
	cluster, incident string
	lastSeen          int64
}

const alertCols = 21

func (s *Store) ingestAlerts(ctx context.Context, tx *sql.Tx, clusterID string, alerts []preparedAlert) (stored, created int, err error) {
	ids := make([]any, len(alerts))
	for i, a := range alerts {
		ids[i] = a.ID
	}
	existing := make(map[string]existingAlert, len(alerts))
	for start := 0; start < len(ids); start += 1000 {
		chunk := ids[start:min(start+1000, len(ids))]
		rows, err := tx.QueryContext(ctx, s.d.q("SELECT id, cluster_id, incident_id, last_seen FROM alerts WHERE id IN ("+inList(len(chunk))+")"), chunk...)
		if err != nil {
			return 0, 0, fmt.Errorf("ingest alerts: %w", err)
		}
		for rows.Next() {
			var id string
			var e existingAlert
			if err := rows.Scan(&id, &e.cluster, &e.incident, &e.lastSeen); err != nil {
				rows.Close()
				return 0, 0, fmt.Errorf("ingest alerts: %w", err)
			}
			existing[id] = e
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return 0, 0, fmt.Errorf("ingest alerts: %w", err)
		}
	}

	var fresh []*event.Alert
	var keep []preparedAlert
	bumps := map[string]int64{} // incident id -> latest last_seen of its updated alerts
	for _, a := range alerts {
		e, ok := existing[a.ID]
		switch {
		case !ok:
			fresh = append(fresh, a.Alert)
			keep = append(keep, a)
		case e.cluster != clusterID:
			// Another cluster's alert: not this credential's to change.
		default:
			keep = append(keep, a)
			if l := ts(a.LastSeen); l > e.lastSeen && e.incident != "" && l > bumps[e.incident] {
				bumps[e.incident] = l
			}
		}
	}

	incidentOf, err := s.linkIncidents(ctx, tx, clusterID, fresh, bumps)
	if err != nil {
		return 0, 0, err
	}

	rowsPer := maxParams / alertCols
	for start := 0; start < len(keep); start += rowsPer {
		chunk := keep[start:min(start+rowsPer, len(keep))]
		args := make([]any, 0, len(chunk)*alertCols)
		for _, a := range chunk {
			args = append(args, a.ID, clusterID, a.Rule, a.Title, a.Severity.Rank(), a.Status,
				ts(a.FirstSeen), ts(a.LastSeen), a.count, a.Node, a.Namespace, a.Pod, a.ContainerID, a.Workload,
				a.Image, a.exe, a.textID, incidentOf[a.ID], "", "", a.doc)
		}
		_, err := tx.ExecContext(ctx, s.d.q(`INSERT INTO alerts (id, cluster_id, rule, title, severity, status,
			first_seen, last_seen, hit_count, node, namespace, pod, container_id, workload,
			image, exe, text_id, incident_id, status_reason, status_by, doc) VALUES `+placeholders(alertCols, len(chunk))+`
			ON CONFLICT (id) DO UPDATE SET
				hit_count = CASE WHEN excluded.hit_count > alerts.hit_count THEN excluded.hit_count ELSE alerts.hit_count END,
				first_seen = CASE WHEN excluded.first_seen < alerts.first_seen THEN excluded.first_seen ELSE alerts.first_seen END,
				last_seen = CASE WHEN excluded.last_seen > alerts.last_seen THEN excluded.last_seen ELSE alerts.last_seen END,
				doc = CASE WHEN excluded.last_seen >= alerts.last_seen THEN excluded.doc ELSE alerts.doc END
			WHERE alerts.cluster_id = excluded.cluster_id`), args...)
		if err != nil {
			return 0, 0, fmt.Errorf("ingest alerts: %w", err)
		}
	}
	if err := s.ingestContainers(ctx, tx, clusterID, keep); err != nil {
		return 0, 0, err
	}
	return len(keep), len(fresh), nil
}

// containerSeenStep is how stale containers.last_seen may be: an hour, in
// nanoseconds.
const containerSeenStep = int64(time.Hour)

// ingestContainers upserts the containers of a batch's alerts, one row per
// distinct container (a batch has tens of containers, not hundreds): they
// are what the resource filter resolves a pod, workload or image to. A row
// is only rewritten when its container was seen containerSeenStep later
// than it says, so most batches write no container row at all.
func (s *Store) ingestContainers(ctx context.Context, tx *sql.Tx, clusterID string, alerts []preparedAlert) error {
	const cols = 7
	idx := map[string]int{}
	var args []any
	for _, a := range alerts {
		if a.ContainerID == "" {
			continue
		}
		last := ts(a.LastSeen)
		if i, ok := idx[a.ContainerID]; ok {
			if last > args[i*cols+6].(int64) {
				args[i*cols+6] = last
			}
			continue
		}
		idx[a.ContainerID] = len(args) / cols
		args = append(args, clusterID, a.ContainerID, a.Namespace, a.Pod, a.Workload, a.Image, last)
	}
	for start := 0; start < len(args); start += cols * 1000 {
		chunk := args[start:min(start+cols*1000, len(args))]
		if _, err := tx.ExecContext(ctx, s.d.q(`INSERT INTO containers (cluster_id, container_id, namespace, pod, workload, image, last_seen)
			VALUES `+placeholders(cols, len(chunk)/cols)+`
			ON CONFLICT (cluster_id, container_id) DO UPDATE SET last_seen = excluded.last_seen
			WHERE containers.last_seen < excluded.last_seen - ?`), append(chunk[:len(chunk):len(chunk)], containerSeenStep)...); err != nil {
			return fmt.Errorf("ingest containers: %w", err)
		}
	}
	return nil
}

// incidentRow is an incident being updated by one batch.
type incidentRow struct {
	id, kind, entity, title string
	severity                int
	first, last, count      int64
	dirty                   bool
}

// linkIncidents chooses the incident of each new alert, updates the
// incidents (new ones, those that gained alerts and those whose alerts
// were seen again, bumps) and returns alert id -> incident id.
func (s *Store) linkIncidents(ctx context.Context, tx *sql.Tx, clusterID string, fresh []*event.Alert, bumps map[string]int64) (map[string]string, error) {
	out := make(map[string]string, len(fresh))
	if len(fresh) == 0 && len(bumps) == 0 {
		return out, nil
	}
	type keyed struct {
		a            *event.Alert
		kind, entity string
	}
	items := make([]keyed, len(fresh))
	entities := map[string]bool{}
	var earliest int64 = math.MaxInt64
	for i, a := range fresh {
		kind, entity := entityOf(a, clusterID)
		items[i] = keyed{a, kind, entity}
		entities[entity] = true
		earliest = min(earliest, ts(a.FirstSeen))
	}
	sort.SliceStable(items, func(i, j int) bool { return items[i].a.FirstSeen.Before(items[j].a.FirstSeen) })

	// Candidates: incidents of these entities active since the earliest new
	// alert minus the window, and the incidents to bump.
	byEntity := map[string][]*incidentRow{}
	byID := map[string]*incidentRow{}
	load := func(q string, args []any) error {
		rows, err := tx.QueryContext(ctx, s.d.q(q), args...)
		if err != nil {
			return fmt.Errorf("ingest: incidents: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var r incidentRow
			if err := rows.Scan(&r.id, &r.kind, &r.entity, &r.title, &r.severity, &r.first, &r.last, &r.count); err != nil {
				return fmt.Errorf("ingest: incidents: %w", err)
			}
			if byID[r.id] != nil {
				continue
			}
			byID[r.id] = &r
			byEntity[r.entity] = append(byEntity[r.entity], &r)
		}
		return rows.Err()
	}
	const cols = "SELECT id, entity_kind, entity, title, severity, first_seen, last_seen, alert_count FROM incidents WHERE "
	ents := make([]any, 0, len(entities))
	for e := range entities {
		ents = append(ents, e)
	}
	for start := 0; start < len(ents); start += 1000 {
		chunk := ents[start:min(start+1000, len(ents))]
		args := append([]any{clusterID, earliest - int64(IncidentWindow)}, chunk...)
		if err := load(cols+"cluster_id = ? AND last_seen >= ? AND entity IN ("+inList(len(chunk))+")", args); err != nil {
			return nil, err
		}
	}
	var bumpIDs []any
	for id := range bumps {
		if byID[id] == nil {
			bumpIDs = append(bumpIDs, id)
		}
	}
	for start := 0; start < len(bumpIDs); start += 1000 {
		chunk := bumpIDs[start:min(start+1000, len(bumpIDs))]
		if err := load(cols+"id IN ("+inList(len(chunk))+")", chunk); err != nil {
			return nil, err
		}
	}

	// Alerts seen again extend their incidents first: a new alert joins an
	// incident that is still going on.
	for id, l := range bumps {
		if r := byID[id]; r != nil && l > r.last {
			r.last = l
			r.dirty = true
		}
	}
	window := int64(IncidentWindow)
	for _, it := range items {
		first, last := ts(it.a.FirstSeen), ts(it.a.LastSeen)
		var best *incidentRow
		for _, r := range byEntity[it.entity] {
			if r.kind != it.kind || first > r.last+window || first < r.first-window {
				continue
			}
			if best == nil || r.last > best.last {
				best = r
			}
		}
		if best == nil {
			best = &incidentRow{
				id: newID(), kind: it.kind, entity: it.entity, title: incidentTitle(it.a, it.kind),
				severity: it.a.Severity.Rank(), first: first, last: last,
			}
			byID[best.id] = best
			byEntity[it.entity] = append(byEntity[it.entity], best)
		}
		best.count++
		best.first = min(best.first, first)
		best.last = max(best.last, last)
		best.severity = max(best.severity, it.a.Severity.Rank())
		best.dirty = true
		out[it.a.ID] = best.id
	}

	var dirty []*incidentRow
	for _, r := range byID {
		if r.dirty {
			dirty = append(dirty, r)
		}
	}
	sort.Slice(dirty, func(i, j int) bool { return dirty[i].id < dirty[j].id }) // a stable lock order
	const icols = 9
	rowsPer := maxParams / icols
	for start := 0; start < len(dirty); start += rowsPer {
		chunk := dirty[start:min(start+rowsPer, len(dirty))]
		args := make([]any, 0, len(chunk)*icols)
		for _, r := range chunk {
			args = append(args, r.id, clusterID, r.kind, r.entity, r.title, r.severity, r.first, r.last, r.count)
		}
		if _, err := tx.ExecContext(ctx, s.d.q(`INSERT INTO incidents (id, cluster_id, entity_kind, entity, title,
			severity, first_seen, last_seen, alert_count) VALUES `+placeholders(icols, len(chunk))+`
			ON CONFLICT (id) DO UPDATE SET severity = excluded.severity, first_seen = excluded.first_seen,
				last_seen = excluded.last_seen, alert_count = excluded.alert_count`), args...); err != nil {
			return nil, fmt.Errorf("ingest: incidents: %w", err)
		}
	}
	return out, nil
}

// Entity kinds of incidents, most specific first.
const (
	EntityContainer = "container"
	EntityPod       = "pod"
	EntityWorkload  = "workload"
	EntityNode      = "node"
	EntityUser      = "user"
	EntityCluster   = "cluster"
)

// entityOf picks the most specific thing an alert is about. The entity
// string carries its kind so that a node and a container of the same name
// never meet.
func entityOf(a *event.Alert, clusterID string) (kind, entity string) {
	switch {
	case a.ContainerID != "":
		return EntityContainer, EntityContainer + ":" + a.ContainerID
	case a.Pod != "":
		return EntityPod, EntityPod + ":" + a.Namespace + "/" + a.Pod
	case a.Workload != "":
		return EntityWorkload, EntityWorkload + ":" + a.Workload
	case a.Node != "":
		return EntityNode, EntityNode + ":" + a.Node
	case a.User != nil && a.User.Name != "":
		return EntityUser, EntityUser + ":" + a.User.Name
	}
	return EntityCluster, EntityCluster + ":" + clusterID
}

// entityName is the entity without its kind prefix.
func entityName(entity string) string {
	_, name, _ := strings.Cut(entity, ":")
	return name
}

// incidentTitle names the entity in words people use, and the first alert.
func incidentTitle(a *event.Alert, kind string) string {
	var where string
	switch kind {
	case EntityContainer:
		switch {
		case a.Pod != "" && a.Container != "":
			where = "container " + a.Container + " of pod " + a.Namespace + "/" + a.Pod
		case a.Pod != "":
			where = "a container of pod " + a.Namespace + "/" + a.Pod
		default:
			id := a.ContainerID
			if len(id) > 12 {
				id = id[:12]
			}
			where = "container " + id
		}
	case EntityPod:
		where = "pod " + a.Namespace + "/" + a.Pod
	case EntityWorkload:
		where = a.Workload
	case EntityNode:
		where = "node " + a.Node
	case EntityUser:
		where = "user " + a.User.Name
	default:
		where = "the cluster"
		if a.Cluster != "" {
			where = "cluster " + a.Cluster
		}
	}
	title := a.Title
	if title == "" {
		title = a.Rule
	}
	return title + " on " + where
}

func (s *Store) ingestHealth(ctx context.Context, tx *sql.Tx, clusterID string, b *ship.Batch, now time.Time) (int, error) {
	if len(b.Health) == 0 {
		return 0, nil
	}
	type key struct{ node, comp string }
	idx := map[key]int{}
	var args []any
	for _, h := range b.Health {
		node := h.Node
		if node == "" {
			node = b.Node
		}
		var health string
		if h.Health != nil {
			j, err := json.Marshal(h.Health)
			if err != nil {
				return 0, fmt.Errorf("ingest health: %w", err)
			}
			health = string(j)
		}
		row := []any{clusterID, node, h.Component, h.State, h.Reason, ts(now), health}
		k := key{node, h.Component}
		if i, ok := idx[k]; ok {
			copy(args[i*7:], row) // the last report of a component wins
			continue
		}
		idx[k] = len(args) / 7
		args = append(args, row...)
	}
	for start := 0; start < len(args); start += 7 * 1000 {
		chunk := args[start:min(start+7*1000, len(args))]
		if _, err := tx.ExecContext(ctx, s.d.q(`INSERT INTO components (cluster_id, node, component, state, reason, last_seen, health)
			VALUES `+placeholders(7, len(chunk)/7)+`
			ON CONFLICT (cluster_id, node, component) DO UPDATE SET state = excluded.state, reason = excluded.reason,
				last_seen = excluded.last_seen, health = excluded.health`), chunk...); err != nil {
			return 0, fmt.Errorf("ingest health: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, s.d.q("UPDATE clusters SET last_seen = ? WHERE id = ? AND last_seen < ?"),
		ts(now), clusterID, ts(now)); err != nil {
		return 0, fmt.Errorf("ingest heartbeat: %w", err)
	}
	return len(b.Health), nil
}

func (s *Store) ingestInventory(ctx context.Context, tx *sql.Tx, clusterID string, items []ship.InventoryItem, now time.Time) (int, error) {
	if len(items) == 0 {
		return 0, nil
	}
	const cols = 7
	type key struct{ kind, ns, name string }
	idx := map[key]int{}
	var args []any
	for _, it := range items {
		var attrs string
		if len(it.Attrs) > 0 {
			j, err := json.Marshal(it.Attrs)
			if err != nil {
				return 0, fmt.Errorf("ingest inventory: %w", err)
			}
			attrs = string(j)
		}
		row := []any{clusterID, it.Kind, it.Namespace, it.Name, it.Node, attrs, ts(now)}
		k := key{it.Kind, it.Namespace, it.Name}
		if i, ok := idx[k]; ok {
			copy(args[i*cols:], row)
			continue
		}
		idx[k] = len(args) / cols
		args = append(args, row...)
	}
	for start := 0; start < len(args); start += cols * 1000 {
		chunk := args[start:min(start+cols*1000, len(args))]
		if _, err := tx.ExecContext(ctx, s.d.q(`INSERT INTO inventory (cluster_id, kind, namespace, name, node, attrs, last_seen)
			VALUES `+placeholders(cols, len(chunk)/cols)+`
			ON CONFLICT (cluster_id, kind, namespace, name) DO UPDATE SET node = excluded.node, attrs = excluded.attrs,
				last_seen = excluded.last_seen`), chunk...); err != nil {
			return 0, fmt.Errorf("ingest inventory: %w", err)
		}
	}
	return len(items), nil
}

// ingestFindings applies a batch's findings (the last one of an id wins:
// stored, or deleted when it is removed), then its completed scans.
func (s *Store) ingestFindings(ctx context.Context, tx *sql.Tx, clusterID string, fs []ship.Finding, completed []string, now time.Time) (n, deleted int, err error) {
	if len(fs) == 0 && len(completed) == 0 {
		return 0, 0, nil
	}
	last := make(map[string]int, len(fs))
	for i, f := range fs {
		last[f.ID] = i
	}
	const cols = 10
	var args []any
	var removed []any
	for i, f := range fs {
		if last[f.ID] != i {
			continue
		}
		if f.Status == ship.Removed {
			removed = append(removed, f.ID)
			continue
		}
		var details string
		if len(f.Details) > 0 {
			j, err := json.Marshal(f.Details)
			if err != nil {
				return 0, 0, fmt.Errorf("ingest findings: %w", err)
			}
			details = string(j)
		}
		mode, _ := f.Details["mode"].(string)
		args = append(args, clusterID, f.ID, f.Check, f.Resource, f.Namespace, f.Status, details, ts(now), f.Scan, mode)
	}
	for start := 0; start < len(args); start += cols * 1000 {
		chunk := args[start:min(start+cols*1000, len(args))]
		if _, err := tx.ExecContext(ctx, s.d.q(`INSERT INTO findings (cluster_id, id, check_id, resource, namespace, status, details, last_seen, scan, mode)
			VALUES `+placeholders(cols, len(chunk)/cols)+`
			ON CONFLICT (cluster_id, id) DO UPDATE SET check_id = excluded.check_id, resource = excluded.resource,
				namespace = excluded.namespace, status = excluded.status, details = excluded.details,
				last_seen = excluded.last_seen, scan = excluded.scan, mode = excluded.mode`), chunk...); err != nil {
			return 0, 0, fmt.Errorf("ingest findings: %w", err)
		}
	}
	for start := 0; start < len(removed); start += 1000 {
		chunk := removed[start:min(start+1000, len(removed))]
		r, err := tx.ExecContext(ctx, s.d.q("DELETE FROM findings WHERE cluster_id = ? AND id IN ("+inList(len(chunk))+")"),
			append([]any{clusterID}, chunk...)...)
		if err != nil {
			return 0, 0, fmt.Errorf("ingest findings: remove: %w", err)
		}
		k, _ := r.RowsAffected()
		deleted += int(k)
	}
	for _, scan := range completed {
		// Two ranges of findings_scan: the completed scan's own rows,
		// usually all of them, are not read.
		for _, cond := range []string{"scan < ?", "scan > ?"} {
			r, err := tx.ExecContext(ctx, s.d.q("DELETE FROM findings WHERE cluster_id = ? AND "+cond), clusterID, scan)
			if err != nil {
				return 0, 0, fmt.Errorf("ingest findings: completed scan: %w", err)
			}
			k, _ := r.RowsAffected()
			deleted += int(k)
		}
	}
	return len(fs), deleted, nil
}
