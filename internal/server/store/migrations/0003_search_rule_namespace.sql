-- Search (AlertFilter.Search) reads a dictionary instead of every alert:
-- alert_texts holds each distinct lower-cased "title, rule, executable"
-- once, keyed by a 64-bit digest of the text (searchKey in search.go),
-- and alerts.text_id names its alert's entry. A search matches the small
-- dictionary first, then reads alerts by text_id in the list order.
-- Existing alerts get their text_id from a Go step of this migration
-- (backfillAlertTexts), in the same transaction.
CREATE TABLE alert_texts (
    id   BIGINT PRIMARY KEY,
    text TEXT NOT NULL
);
ALTER TABLE alerts ADD COLUMN text_id BIGINT NOT NULL DEFAULT 0;
CREATE INDEX alerts_text ON alerts (text_id, last_seen, id);

-- A rule within a namespace is how an analyst narrows a noisy rule.
CREATE INDEX alerts_rule_namespace ON alerts (rule, namespace, last_seen, id);
