-- Workload-protection (posture) configuration documents, one per cluster
-- plus the fleet-wide default under cluster_id ''. body is the YAML or
-- JSON document exactly as the admin sent it (comments and all); the
-- server validates it with posture.ParseConfig before storing it. A
-- cluster's effective configuration is its own row, else the '' row, else
-- Vigil's built-in defaults.
CREATE TABLE posture_configs (
    cluster_id TEXT PRIMARY KEY,
    body       TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL DEFAULT ''
);
