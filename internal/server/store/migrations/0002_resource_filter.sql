-- The resource filter (AlertFilter.Resource) is keyed by container and
-- node only: a pod, workload or image name is first resolved to the
-- container ids it names through the small containers table, then alerts
-- are read per container id (or by node) in the usual keyset order. Both
-- alert indexes are partial: alerts without a container or node cost
-- nothing in them.
CREATE INDEX alerts_container ON alerts (container_id, last_seen, id, severity, status) WHERE container_id <> '';
CREATE INDEX alerts_node ON alerts (node, last_seen, id, severity, status) WHERE node <> '';

-- One row per container that raised alerts, upserted by ingest once per
-- distinct container of a batch. The lookup indexes lead with the name
-- (a resource filter usually names no cluster), then the cluster.
CREATE TABLE containers (
    cluster_id   TEXT NOT NULL,
    container_id TEXT NOT NULL,
    namespace    TEXT NOT NULL DEFAULT '',
    pod          TEXT NOT NULL DEFAULT '',
    workload     TEXT NOT NULL DEFAULT '',
    image        TEXT NOT NULL DEFAULT '',
    last_seen    BIGINT NOT NULL,
    PRIMARY KEY (cluster_id, container_id)
);
CREATE INDEX containers_container ON containers (container_id);
CREATE INDEX containers_pod ON containers (pod, cluster_id);
CREATE INDEX containers_workload ON containers (workload, cluster_id);
CREATE INDEX containers_image ON containers (image, cluster_id);

-- Backfill from the alerts already stored.
INSERT INTO containers (cluster_id, container_id, namespace, pod, workload, image, last_seen)
    SELECT cluster_id, container_id, MAX(namespace), MAX(pod), MAX(workload), MAX(image), MAX(last_seen)
    FROM alerts WHERE container_id <> '' GROUP BY cluster_id, container_id
    ON CONFLICT DO NOTHING;
