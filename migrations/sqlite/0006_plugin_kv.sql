-- What plugins with the `kv` capability store, one row per key, scoped to
-- (plugin, user) by the host. Kept when a plugin is removed, until the
-- operator purges it.
CREATE TABLE plugin_kv (
    plugin TEXT NOT NULL,
    user_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (plugin, user_id, key)
);
