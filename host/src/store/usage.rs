//! What the provider rounds of chat turns cost (`llm_usage`): one row per
//! round, read back as per-day totals and as the tokens a user spent since
//! a time (the daily budget). Days are UTC, the first ten characters of the
//! RFC 3339 timestamps, the same on both backends.

use sqlx::Row;

use super::db::RunOn;
use super::{Store, StoreError, db_error, decode_all, now};

/// One provider round, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundUsage {
    pub user_id: String,
    pub conversation_id: i64,
    pub message_id: Option<i64>,
    pub provider: String,
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub latency_ms: u64,
}

/// A day's rounds of one provider and model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageDay {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub provider: String,
    pub model: String,
    pub rounds: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

impl Store {
    pub async fn record_usage(&self, usage: &RoundUsage) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO llm_usage (user_id, conversation_id, message_id, provider, model, \
             input_tokens, output_tokens, latency_ms, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(usage.user_id.clone())
        .bind(usage.conversation_id)
        .bind(usage.message_id)
        .bind(usage.provider.clone())
        .bind(usage.model.clone())
        .bind(saturating(usage.input_tokens))
        .bind(saturating(usage.output_tokens))
        .bind(saturating(usage.latency_ms))
        .bind(now());
        self.write(query).await.map_err(db_error)?;
        Ok(())
    }

    /// Input and output tokens `user` spent at or after `since` (RFC 3339).
    pub async fn tokens_since(&self, user: &str, since: &str) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(input_tokens + output_tokens), 0) AS BIGINT) AS spent \
             FROM llm_usage WHERE user_id = $1 AND created_at >= $2",
        )
        .bind(user)
        .bind(since)
        .fetch_one_on(&self.db)
        .await
        .map_err(db_error)?;
        row.try_get("spent").map_err(db_error)
    }

    /// `user`'s rounds at or after `since`, totalled per day, provider and
    /// model, oldest day first.
    pub async fn usage_by_day(&self, user: &str, since: &str) -> Result<Vec<UsageDay>, StoreError> {
        let rows = sqlx::query(
            "SELECT SUBSTR(created_at, 1, 10) AS day, provider, model, \
             CAST(COUNT(*) AS BIGINT) AS rounds, \
             CAST(SUM(input_tokens) AS BIGINT) AS input_tokens, \
             CAST(SUM(output_tokens) AS BIGINT) AS output_tokens \
             FROM llm_usage WHERE user_id = $1 AND created_at >= $2 \
             GROUP BY SUBSTR(created_at, 1, 10), provider, model \
             ORDER BY day, provider, model",
        )
        .bind(user)
        .bind(since)
        .fetch_all_on(&self.db)
        .await
        .map_err(db_error)?;
        decode_all(&rows, |row| {
            Ok(UsageDay {
                day: row.try_get("day")?,
                provider: row.try_get("provider")?,
                model: row.try_get("model")?,
                rounds: row.try_get("rounds")?,
                input_tokens: row.try_get("input_tokens")?,
                output_tokens: row.try_get("output_tokens")?,
            })
        })
    }
}

fn saturating(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
