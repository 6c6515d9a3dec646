-- Where a fleet plugin installed from an OCI registry came from: the
-- reference asked for (perhaps a tag) and the digest reference it was
-- pulled as (plugins::Pin). Both NULL for an upload.
ALTER TABLE fleet_plugins ADD COLUMN oci_requested TEXT;
ALTER TABLE fleet_plugins ADD COLUMN oci_pinned TEXT;

-- Grants made through the admin API on a fleet (POST
-- /admin/plugins/{name}/grant): one policy entry per plugin, as JSON, which
-- every replica lays over its policy file's entry for that plugin.
-- Announced on wasmgate_plugins like a plugin change.
CREATE TABLE fleet_grants (
    name        TEXT PRIMARY KEY,
    entry       TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
