//! The ledger of which plugin owns each tool (see
//! `plugins::registry::ToolOwners`).

use std::collections::BTreeMap;

use sqlx::Row;

use super::Store;
use super::db::RunOn;
use crate::plugins::ToolOwners;

#[async_trait::async_trait]
impl ToolOwners for Store {
    async fn load(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let rows = sqlx::query("SELECT tool, plugin FROM tool_owners")
            .fetch_all_on(&self.db)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("tool")?, row.try_get("plugin")?)))
            .collect()
    }

    async fn save(&self, owners: &BTreeMap<String, String>) -> anyhow::Result<()> {
        let mut conn = self.db.acquire().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::query("DELETE FROM tool_owners")
            .execute(&mut *tx)
            .await?;
        // Replicas of a fleet save at the same moment: the last one's
        // ledger wins, rather than a unique violation failing one of them.
        for (tool, plugin) in owners {
            sqlx::query(
                "INSERT INTO tool_owners (tool, plugin) VALUES ($1, $2) \
                 ON CONFLICT (tool) DO UPDATE SET plugin = excluded.plugin",
            )
            .bind(tool)
            .bind(plugin)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
