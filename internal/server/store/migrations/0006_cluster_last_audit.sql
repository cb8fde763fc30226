-- When the server last received an audit batch from the cluster's API
-- server (POST /api/v1/audit), so that `vigil verify` can tell whether
-- audit events arrive. Unix nanoseconds like last_seen; 0 means never.
ALTER TABLE clusters ADD COLUMN last_audit BIGINT NOT NULL DEFAULT 0;
