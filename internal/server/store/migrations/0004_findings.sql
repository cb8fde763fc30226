-- The findings lifecycle and a summary computed in SQL.
-- scan is the scanner run that last reported a finding ('' for one-off
-- scans): a completed run (ship.Batch.CompletedScans) deletes its
-- cluster's findings of other runs through findings_scan. mode is the
-- finding's details.mode, copied at ingest so that the summary can group
-- by it; rows stored before get theirs from this migration's Go step
-- (backfillFindingModes), since SQLite and PostgreSQL read JSON
-- differently.
ALTER TABLE findings ADD COLUMN scan TEXT NOT NULL DEFAULT '';
ALTER TABLE findings ADD COLUMN mode TEXT NOT NULL DEFAULT '';
CREATE INDEX findings_scan ON findings (cluster_id, scan);
-- Counts per check, status and mode read this index only.
CREATE INDEX findings_mode ON findings (cluster_id, check_id, status, mode);
-- One check's findings of one status in list order (resource, cluster,
-- id), for one cluster and for all: a page and the failing resources of
-- the summary read just their rows (a namespace filter reads the index
-- only).
CREATE INDEX findings_cluster ON findings (cluster_id, check_id, status, resource, id, namespace);
DROP INDEX findings_check;
CREATE INDEX findings_check ON findings (check_id, status, resource, cluster_id, id, namespace);
