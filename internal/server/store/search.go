package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
)

// Search runs against a dictionary of alert texts (alert_texts): the
// distinct "title, rule, executable" of the stored alerts, each once and
// lower-cased. Alerts of one rule share a title and usually a handful of
// executables, so the dictionary holds thousands of rows where the alerts
// number millions; a substring match scans it, then the alerts are read
// through their text_id index in list order.

// searchText is what a search term is matched against for alert a.
func searchText(title, rule, exe string) string {
	return strings.ToLower(title + "\n" + rule + "\n" + exe)
}

// searchKey is the dictionary key of text: the first 8 bytes of its
// SHA-256. Two texts share a key with probability 2^-64 per pair; a
// collision would only make one search show an extra alert.
func searchKey(text string) int64 {
	h := sha256.Sum256([]byte(text))
	return int64(binary.BigEndian.Uint64(h[:8]))
}

// maxSearchTexts bounds how many dictionary entries a search term expands
// to as an IN list; a broader term is matched through a subquery. (A
// variable for tests.)
var maxSearchTexts = 500

// knownTexts remembers dictionary keys this process has written, so that a
// batch only writes the texts it is the first to see. It is a cache: when
// full it is emptied, and a forgotten key costs one more idempotent insert.
type knownTexts struct {
	mu   sync.Mutex
	keys map[int64]struct{}
}

const maxKnownTexts = 100_000

func (k *knownTexts) missing(keys map[int64]string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for key := range keys {
		if _, ok := k.keys[key]; ok {
			delete(keys, key)
		}
	}
}

func (k *knownTexts) add(keys map[int64]string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys == nil || len(k.keys)+len(keys) > maxKnownTexts {
		k.keys = make(map[int64]struct{}, len(keys))
	}
	for key := range keys {
		k.keys[key] = struct{}{}
	}
}

// ingestTexts writes the dictionary entries of a batch that are new. It
// returns the entries it wrote, for the caller to remember once the
// transaction commits.
func (s *Store) ingestTexts(ctx context.Context, tx *sql.Tx, alerts []preparedAlert) (map[int64]string, error) {
	texts := make(map[int64]string)
	for _, a := range alerts {
		texts[a.textID] = a.text
	}
	s.texts.missing(texts)
	const cols = 2
	args := make([]any, 0, cols*len(texts))
	for key, text := range texts {
		args = append(args, key, text)
	}
	for start := 0; start < len(args); start += cols * 1000 {
		chunk := args[start:min(start+cols*1000, len(args))]
		if _, err := tx.ExecContext(ctx, s.d.q("INSERT INTO alert_texts (id, text) VALUES "+
			placeholders(cols, len(chunk)/cols)+" ON CONFLICT (id) DO NOTHING"), chunk...); err != nil {
			return nil, fmt.Errorf("ingest alert texts: %w", err)
		}
	}
	return texts, nil
}

// searchTexts returns the dictionary keys whose text contains term; broad
// is true (and keys nil) when there are more than maxSearchTexts.
func (s *Store) searchTexts(ctx context.Context, term string) (keys []any, broad bool, err error) {
	rows, err := s.r.QueryContext(ctx, s.d.q(`SELECT id FROM alert_texts WHERE text LIKE ? ESCAPE '\' LIMIT ?`),
		searchPattern(term), maxSearchTexts+1)
	if err != nil {
		return nil, false, fmt.Errorf("search: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, false, fmt.Errorf("search: %w", err)
		}
		keys = append(keys, id)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("search: %w", err)
	}
	if len(keys) > maxSearchTexts {
		return nil, true, nil
	}
	return keys, false, nil
}

func searchPattern(term string) string {
	return "%" + likeEscaper.Replace(strings.ToLower(term)) + "%"
}

// searchCond is the WHERE condition of a search term: none is true when
// no stored alert's text contains it. (A list reads a search of a few
// texts as one stream per text instead: see listAlerts.)
func (s *Store) searchCond(ctx context.Context, term string) (cond string, args []any, none bool, err error) {
	keys, broad, err := s.searchTexts(ctx, term)
	switch {
	case err != nil:
		return "", nil, false, err
	case broad:
		return `text_id IN (SELECT id FROM alert_texts WHERE text LIKE ? ESCAPE '\')`, []any{searchPattern(term)}, false, nil
	case len(keys) == 0:
		return "", nil, true, nil
	}
	return "text_id IN (" + inList(len(keys)) + ")", keys, false, nil
}

// backfillAlertTexts gives the alerts stored before migration 3 their
// dictionary entries. It reads the distinct texts, then sets each rule's
// alerts in one UPDATE (through the rule index) choosing the key by title
// and executable, so every alert is written once.
func backfillAlertTexts(ctx context.Context, tx *sql.Tx, d dialect) error {
	rows, err := tx.QueryContext(ctx, "SELECT DISTINCT rule, title, exe FROM alerts ORDER BY rule")
	if err != nil {
		return err
	}
	type text struct{ title, exe string }
	byRule := map[string][]text{}
	var rules []string
	for rows.Next() {
		var rule string
		var t text
		if err := rows.Scan(&rule, &t.title, &t.exe); err != nil {
			rows.Close()
			return err
		}
		if len(byRule[rule]) == 0 {
			rules = append(rules, rule)
		}
		byRule[rule] = append(byRule[rule], t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	const perStmt = 300
	for _, rule := range rules {
		ts := byRule[rule]
		for start := 0; start < len(ts); start += perStmt {
			var b strings.Builder
			var args []any
			b.WriteString("UPDATE alerts SET text_id = CASE")
			for _, t := range ts[start:min(start+perStmt, len(ts))] {
				text := searchText(t.title, rule, t.exe)
				key := searchKey(text)
				if _, err := tx.ExecContext(ctx, d.q("INSERT INTO alert_texts (id, text) VALUES (?, ?) ON CONFLICT (id) DO NOTHING"), key, text); err != nil {
					return err
				}
				b.WriteString(" WHEN title = ? AND exe = ? THEN CAST(? AS BIGINT)")
				args = append(args, t.title, t.exe, key)
			}
			b.WriteString(" ELSE text_id END WHERE rule = ?")
			if _, err := tx.ExecContext(ctx, d.q(b.String()), append(args, rule)...); err != nil {
				return err
			}
		}
	}
	return nil
}
