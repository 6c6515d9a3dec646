//! The audit log's rows (`tool_call_audit`): appended by the audit writer,
//! read by the admin API newest first, pruned past the retention period.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::db::RunOn;
use super::{Store, StoreError, db_error, decode_all};
use crate::audit::AuditEntry;

/// Which entries an admin read returns.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub user: Option<String>,
    pub plugin: Option<String>,
    /// RFC 3339: entries at or after it.
    pub since: Option<String>,
    /// Entries older than this one (its id): the cursor of the next page.
    pub before: Option<i64>,
}

fn entry(row: &AnyRow) -> Result<AuditEntry, sqlx::Error> {
    let json = |column: &str| -> Result<serde_json::Value, sqlx::Error> {
        let text: String = row.try_get(column)?;
        serde_json::from_str(&text).map_err(|err| sqlx::Error::Decode(err.into()))
    };
    let hosts = json("hosts")?;
    Ok(AuditEntry {
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        user: row.try_get("user_id")?,
        door: row.try_get("door")?,
        plugin: row.try_get("plugin")?,
        version: row.try_get("version")?,
        sha256: row.try_get("sha256")?,
        tool: row.try_get("tool")?,
        arguments: json("arguments")?,
        outcome: row.try_get("outcome")?,
        duration_us: row.try_get("duration_us")?,
        hosts: serde_json::from_value(hosts).map_err(|err| sqlx::Error::Decode(err.into()))?,
    })
}

impl Store {
    pub async fn record_tool_call(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO tool_call_audit (at, user_id, door, plugin, version, sha256, tool, \
             arguments, outcome, duration_us, hosts) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&entry.at)
        .bind(&entry.user)
        .bind(&entry.door)
        .bind(&entry.plugin)
        .bind(&entry.version)
        .bind(&entry.sha256)
        .bind(&entry.tool)
        .bind(entry.arguments.to_string())
        .bind(&entry.outcome)
        .bind(entry.duration_us)
        .bind(serde_json::Value::from(entry.hosts.clone()).to_string());
        self.write(query).await.map_err(db_error)?;
        Ok(())
    }

    /// Up to `limit` entries matching `filter`, newest first.
    pub async fn tool_calls(
        &self,
        filter: &AuditFilter,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        // NULL parameters leave their condition out: one static statement.
        let rows = sqlx::query(
            "SELECT id, at, user_id, door, plugin, version, sha256, tool, arguments, outcome, \
             duration_us, hosts FROM tool_call_audit \
             WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR plugin = $2) \
             AND ($3 IS NULL OR at >= $3) AND id < $4 \
             ORDER BY id DESC LIMIT $5",
        )
        .bind(filter.user.as_deref())
        .bind(filter.plugin.as_deref())
        .bind(filter.since.as_deref())
        .bind(filter.before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all_on(&self.db)
        .await
        .map_err(db_error)?;
        decode_all(&rows, entry)
    }

    /// Deletes entries recorded before `cutoff`; how many.
    pub async fn prune_tool_calls(&self, cutoff: time::OffsetDateTime) -> Result<u64, StoreError> {
        let cutoff = cutoff
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|_| StoreError)?;
        let done = self
            .write(sqlx::query("DELETE FROM tool_call_audit WHERE at < $1").bind(cutoff))
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected())
    }
}
