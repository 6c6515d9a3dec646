-- A fleet of replicas on one PostgreSQL (docs/DEPLOY.md).

-- The plugins installed through the admin API, which every replica serves:
-- an upload or removal on one replica is written here, announced with
-- NOTIFY wasmgate_plugins, and copied into each replica's plugin directory.
-- A removal stays as a row in state 'removed', so that replicas that were
-- away when it happened still remove the plugin when they reconcile.
CREATE TABLE fleet_plugins (
    name        TEXT   PRIMARY KEY,
    state       TEXT   NOT NULL CHECK (state IN ('installed', 'removed')),
    manifest    BYTEA,
    component   BYTEA,
    signature   BYTEA,
    sha256      TEXT,
    updated_at  TEXT   NOT NULL
);

-- Rate-limit windows every replica counts in: a fixed one-minute window
-- per key (e.g. `chat:<user>`), counted by one atomic upsert.
CREATE TABLE rate_windows (
    key           TEXT   PRIMARY KEY,
    window_start  BIGINT NOT NULL,
    count         BIGINT NOT NULL
);
