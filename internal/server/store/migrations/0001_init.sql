-- The first schema. Every statement runs unchanged on SQLite and PostgreSQL:
-- times are BIGINT nanoseconds since the Unix epoch (0 = never), severities
-- are SMALLINT ranks (0 informational .. 3 high) so that they sort, JSON
-- documents are TEXT.

CREATE TABLE clusters (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL DEFAULT 0
);

-- Tokens (admin, reader) and cluster join credentials. hash is the hex
-- SHA-256 of the secret; the secret itself is never stored.
CREATE TABLE credentials (
    hash       TEXT PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    cluster_id TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);

CREATE TABLE components (
    cluster_id TEXT NOT NULL,
    node       TEXT NOT NULL,
    component  TEXT NOT NULL,
    state      TEXT NOT NULL,
    reason     TEXT NOT NULL DEFAULT '',
    last_seen  BIGINT NOT NULL,
    health     TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (cluster_id, node, component)
);

-- Batch ids seen recently, per cluster: a retried batch is skipped whole.
CREATE TABLE ingest_batches (
    cluster_id  TEXT NOT NULL,
    batch_id    TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (cluster_id, batch_id)
);
CREATE INDEX ingest_batches_received ON ingest_batches (received_at);

-- Alerts: the columns that filters and sorts use, plus the whole alert as
-- JSON (doc). hit_count, first_seen, last_seen and status are the truth;
-- the copies inside doc are overridden when an alert is read.
CREATE TABLE alerts (
    id            TEXT PRIMARY KEY,
    cluster_id    TEXT NOT NULL,
    rule          TEXT NOT NULL,
    title         TEXT NOT NULL,
    severity      SMALLINT NOT NULL,
    status        TEXT NOT NULL,
    first_seen    BIGINT NOT NULL,
    last_seen     BIGINT NOT NULL,
    hit_count     BIGINT NOT NULL,
    node          TEXT NOT NULL DEFAULT '',
    namespace     TEXT NOT NULL DEFAULT '',
    pod           TEXT NOT NULL DEFAULT '',
    container_id  TEXT NOT NULL DEFAULT '',
    workload      TEXT NOT NULL DEFAULT '',
    image         TEXT NOT NULL DEFAULT '',
    exe           TEXT NOT NULL DEFAULT '',
    incident_id   TEXT NOT NULL DEFAULT '',
    status_reason TEXT NOT NULL DEFAULT '',
    status_by     TEXT NOT NULL DEFAULT '',
    status_at     BIGINT NOT NULL DEFAULT 0,
    doc           TEXT NOT NULL
);
-- Every list is ordered by (sort key DESC, id DESC) and paged by keyset, so
-- each index leads with an equality filter (or none) and goes on with the
-- sort key and id: the default order, a time range, and a filter on
-- cluster, namespace, rule or severity all read just the rows of one page.
-- Severity and status trail the filter indexes: the rows a page skips
-- are skipped in the index, and counts by severity never read the table.
-- (An index leading with status would not narrow much: most alerts share
-- a status.)
CREATE INDEX alerts_last_seen ON alerts (last_seen, id, severity, status);
CREATE INDEX alerts_first_seen ON alerts (first_seen, id);
CREATE INDEX alerts_severity ON alerts (severity, last_seen, id, status);
CREATE INDEX alerts_cluster ON alerts (cluster_id, last_seen, id, severity, status);
CREATE INDEX alerts_namespace ON alerts (namespace, last_seen, id, severity, status);
CREATE INDEX alerts_rule ON alerts (rule, last_seen, id, severity, status);
CREATE INDEX alerts_incident ON alerts (incident_id, first_seen);

CREATE TABLE alert_changes (
    alert_id   TEXT NOT NULL,
    at         BIGINT NOT NULL,
    field      TEXT NOT NULL,
    from_value TEXT NOT NULL,
    to_value   TEXT NOT NULL,
    reason     TEXT NOT NULL DEFAULT '',
    actor      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX alert_changes_alert ON alert_changes (alert_id, at);

-- Incidents chain the alerts of one entity (entity_kind: container, pod,
-- workload, node, user or cluster) that follow each other closely.
CREATE TABLE incidents (
    id          TEXT PRIMARY KEY,
    cluster_id  TEXT NOT NULL,
    entity_kind TEXT NOT NULL,
    entity      TEXT NOT NULL,
    title       TEXT NOT NULL,
    severity    SMALLINT NOT NULL,
    first_seen  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL,
    alert_count BIGINT NOT NULL
);
CREATE INDEX incidents_entity ON incidents (cluster_id, entity, last_seen);
CREATE INDEX incidents_last_seen ON incidents (last_seen, id);

-- Engine exceptions; cluster_id '' applies to every cluster, expires 0
-- never expires. doc is the detect.Exception as JSON.
CREATE TABLE exceptions (
    id         TEXT PRIMARY KEY,
    cluster_id TEXT NOT NULL DEFAULT '',
    expires    BIGINT NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    doc        TEXT NOT NULL
);
CREATE INDEX exceptions_cluster ON exceptions (cluster_id);

CREATE TABLE inventory (
    cluster_id TEXT NOT NULL,
    kind       TEXT NOT NULL,
    namespace  TEXT NOT NULL DEFAULT '',
    name       TEXT NOT NULL,
    node       TEXT NOT NULL DEFAULT '',
    attrs      TEXT NOT NULL DEFAULT '',
    last_seen  BIGINT NOT NULL,
    PRIMARY KEY (cluster_id, kind, namespace, name)
);

CREATE TABLE findings (
    cluster_id TEXT NOT NULL,
    id         TEXT NOT NULL,
    check_id   TEXT NOT NULL,
    resource   TEXT NOT NULL DEFAULT '',
    namespace  TEXT NOT NULL DEFAULT '',
    status     TEXT NOT NULL,
    details    TEXT NOT NULL DEFAULT '',
    last_seen  BIGINT NOT NULL,
    PRIMARY KEY (cluster_id, id)
);
CREATE INDEX findings_check ON findings (check_id, status);
