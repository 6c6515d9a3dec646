//! The `kv` capability's rows: [`KvRepository`] over the `plugin_kv`
//! table, every statement filtered by plugin and user.

use async_trait::async_trait;
use sqlx::Row;

use super::db::RunOn;
use super::{Store, db_error, now};
use crate::kv::{KvError, KvQuota, KvRepository};

impl From<super::StoreError> for KvError {
    fn from(_: super::StoreError) -> Self {
        KvError::Unavailable
    }
}

#[async_trait]
impl KvRepository for Store {
    async fn get(&self, plugin: &str, user: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let row = sqlx::query(
            "SELECT value FROM plugin_kv WHERE plugin = $1 AND user_id = $2 AND key = $3",
        )
        .bind(plugin)
        .bind(user)
        .bind(key)
        .fetch_optional_on(&self.db)
        .await
        .map_err(db_error)?;
        Ok(row
            .map(|row| row.try_get::<Vec<u8>, _>("value"))
            .transpose()
            .map_err(db_error)?)
    }

    async fn set(
        &self,
        plugin: &str,
        user: &str,
        key: &str,
        value: &[u8],
        quota: KvQuota,
    ) -> Result<(), KvError> {
        // The quota is checked in the statement itself, against what the
        // pair holds besides this key: a replaced value frees its bytes.
        let query = sqlx::query(
            "INSERT INTO plugin_kv (plugin, user_id, key, value, updated_at) \
             SELECT $1, $2, $3, $4, $5 \
             WHERE (EXISTS (SELECT 1 FROM plugin_kv WHERE plugin = $1 AND user_id = $2 AND key = $3) \
                    OR (SELECT COUNT(*) FROM plugin_kv WHERE plugin = $1 AND user_id = $2) < $6) \
               AND COALESCE((SELECT SUM(LENGTH(value)) FROM plugin_kv \
                    WHERE plugin = $1 AND user_id = $2 AND key <> $3), 0) + $7 <= $8 \
             ON CONFLICT (plugin, user_id, key) \
             DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at \
             RETURNING key",
        )
        .bind(plugin)
        .bind(user)
        .bind(key)
        .bind(value.to_vec())
        .bind(now())
        .bind(i64::from(quota.max_keys))
        .bind(value.len() as i64)
        .bind(i64::try_from(quota.max_bytes).unwrap_or(i64::MAX));
        match self.write_returning(query).await.map_err(db_error)? {
            Some(_) => Ok(()),
            None => Err(KvError::Quota(quota)),
        }
    }

    async fn delete(&self, plugin: &str, user: &str, key: &str) -> Result<bool, KvError> {
        let done = self
            .write(
                sqlx::query(
                    "DELETE FROM plugin_kv WHERE plugin = $1 AND user_id = $2 AND key = $3",
                )
                .bind(plugin)
                .bind(user)
                .bind(key),
            )
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_keys(
        &self,
        plugin: &str,
        user: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, KvError> {
        // A prefix match without LIKE (whose wildcards a key may contain):
        // keys from the prefix up to the first key past every extension of it.
        let rows = sqlx::query(
            "SELECT key FROM plugin_kv WHERE plugin = $1 AND user_id = $2 \
             AND key >= $3 AND SUBSTR(key, 1, LENGTH($3)) = $3 AND key > $4 \
             ORDER BY key LIMIT $5",
        )
        .bind(plugin)
        .bind(user)
        .bind(prefix)
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all_on(&self.db)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|row| row.try_get::<String, _>("key"))
            .collect::<Result<_, _>>()
            .map_err(|err| db_error(err).into())
    }
}

impl Store {
    /// Deletes everything plugin `plugin` stored, for every user; how many
    /// keys there were.
    pub async fn purge_plugin_data(&self, plugin: &str) -> Result<u64, super::StoreError> {
        let done = self
            .write(sqlx::query("DELETE FROM plugin_kv WHERE plugin = $1").bind(plugin))
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected())
    }
}
