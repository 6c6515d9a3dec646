//! What the replicas of a fleet share through PostgreSQL: the plugins
//! installed through the admin API (`fleet_plugins`) and the grants made
//! through it (`fleet_grants`), both announced with `NOTIFY`, and
//! rate-limit windows (`rate_windows`). SQLite serves one
//! process, which keeps both to itself; these methods are for PostgreSQL.

use sqlx::Row;

use super::db::RunOn;
use super::{Store, StoreError, db_error, decode_all, now};
use crate::plugins::{Pin, PluginFiles};

/// The channel a change of the plugin set is announced on.
pub const PLUGINS_CHANNEL: &str = "wasmgate_plugins";

/// One row of the shared plugin set, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetPlugin {
    pub name: String,
    /// The component's; `None` once removed.
    pub sha256: Option<String>,
    /// When it was last installed or removed: a new value for every change,
    /// a new signature for the same component included.
    pub updated_at: String,
}

impl Store {
    /// Whether this store is one that several processes share.
    pub fn is_shared(&self) -> bool {
        self.backend == super::Backend::Postgres
    }

    /// Installs (or replaces) a plugin for the whole fleet, and tells the
    /// other replicas.
    pub async fn fleet_install(
        &self,
        name: &str,
        files: &PluginFiles,
        sha256: &str,
    ) -> Result<(), StoreError> {
        let query = sqlx::query(
            "WITH put AS (INSERT INTO fleet_plugins \
             (name, state, manifest, component, signature, sha256, updated_at, \
             oci_requested, oci_pinned) \
             VALUES ($1, 'installed', $2, $3, $4, $5, $6, $8, $9) \
             ON CONFLICT (name) DO UPDATE SET state = 'installed', manifest = $2, \
             component = $3, signature = $4, sha256 = $5, updated_at = $6, \
             oci_requested = $8, oci_pinned = $9 RETURNING name) \
             SELECT pg_notify($7, name) FROM put",
        )
        .bind(name)
        .bind(files.manifest.clone())
        .bind(files.wasm.clone())
        .bind(files.signature.clone())
        .bind(sha256)
        .bind(now())
        .bind(PLUGINS_CHANNEL)
        .bind(files.pin.as_ref().map(|pin| pin.requested.clone()))
        .bind(files.pin.as_ref().map(|pin| pin.pinned.clone()));
        self.write(query).await.map_err(db_error)?;
        Ok(())
    }

    /// Removes a plugin from the whole fleet, and tells the other replicas.
    pub async fn fleet_remove(&self, name: &str) -> Result<(), StoreError> {
        let query = sqlx::query(
            "WITH gone AS (INSERT INTO fleet_plugins (name, state, updated_at) \
             VALUES ($1, 'removed', $2) \
             ON CONFLICT (name) DO UPDATE SET state = 'removed', manifest = NULL, \
             component = NULL, signature = NULL, sha256 = NULL, updated_at = $2, \
             oci_requested = NULL, oci_pinned = NULL RETURNING name) \
             SELECT pg_notify($3, name) FROM gone",
        )
        .bind(name)
        .bind(now())
        .bind(PLUGINS_CHANNEL);
        self.write(query).await.map_err(db_error)?;
        Ok(())
    }

    /// The shared plugin set, without the bytes.
    pub async fn fleet_plugins(&self) -> Result<Vec<FleetPlugin>, StoreError> {
        let rows = sqlx::query("SELECT name, sha256, updated_at FROM fleet_plugins ORDER BY name")
            .fetch_all_on(&self.db)
            .await
            .map_err(db_error)?;
        decode_all(&rows, |row| {
            Ok(FleetPlugin {
                name: row.try_get("name")?,
                sha256: row.try_get("sha256")?,
                updated_at: row.try_get("updated_at")?,
            })
        })
    }

    /// An installed plugin's files, to be written at `manifest_path`, if it
    /// is installed as `sha256` (it may have changed since it was listed).
    pub async fn fleet_files(
        &self,
        name: &str,
        sha256: &str,
        manifest_path: std::path::PathBuf,
    ) -> Result<Option<PluginFiles>, StoreError> {
        let row = sqlx::query(
            "SELECT manifest, component, signature, oci_requested, oci_pinned FROM fleet_plugins \
             WHERE name = $1 AND sha256 = $2 AND state = 'installed'",
        )
        .bind(name)
        .bind(sha256)
        .fetch_optional_on(&self.db)
        .await
        .map_err(db_error)?;
        row.map(|row| {
            let requested: Option<String> = row.try_get("oci_requested")?;
            let pinned: Option<String> = row.try_get("oci_pinned")?;
            Ok(PluginFiles {
                manifest_path,
                manifest: row.try_get("manifest")?,
                wasm: row.try_get("component")?,
                signature: row.try_get("signature")?,
                pin: requested
                    .zip(pinned)
                    .map(|(requested, pinned)| Pin { requested, pinned }),
            })
        })
        .transpose()
        .map_err(db_error)
    }

    /// Stores the fleet's grant for plugin `name` (a policy entry as JSON),
    /// and tells the other replicas.
    pub async fn fleet_grant(&self, name: &str, entry: &str) -> Result<(), StoreError> {
        let query = sqlx::query(
            "WITH put AS (INSERT INTO fleet_grants (name, entry, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET entry = $2, updated_at = $3 RETURNING name) \
             SELECT pg_notify($4, name) FROM put",
        )
        .bind(name)
        .bind(entry)
        .bind(now())
        .bind(PLUGINS_CHANNEL);
        self.write(query).await.map_err(db_error)?;
        Ok(())
    }

    /// The fleet's grants: plugin name → policy entry (JSON).
    pub async fn fleet_grants(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT name, entry FROM fleet_grants ORDER BY name")
            .fetch_all_on(&self.db)
            .await
            .map_err(db_error)?;
        decode_all(&rows, |row| {
            Ok((row.try_get("name")?, row.try_get("entry")?))
        })
    }

    /// Counts one event for `key` in the one-minute window starting at
    /// `window_start` (unix seconds); the count so far in it.
    pub async fn count_in_window(&self, key: &str, window_start: i64) -> Result<i64, StoreError> {
        let query = sqlx::query(
            "INSERT INTO rate_windows (key, window_start, count) VALUES ($1, $2, 1) \
             ON CONFLICT (key) DO UPDATE SET \
             count = CASE WHEN rate_windows.window_start = $2 THEN rate_windows.count + 1 ELSE 1 END, \
             window_start = $2 \
             RETURNING count",
        )
        .bind(key)
        .bind(window_start);
        let row = self.write_returning(query).await.map_err(db_error)?;
        super::returned(row)?.try_get("count").map_err(db_error)
    }
}
