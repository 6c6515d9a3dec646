//! ChatKit client-secret sessions.
//!
//! A session lets the ChatKit widget act for one user for a short time
//! without holding their JWT. Only the secret's SHA-256 is stored, and the
//! per-session rate limit is counted in the row, so that every replica
//! behind a load balancer checks the same expiry, cancellation and count.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::db::RunOn;
use super::{Store, StoreError, db_error, returned};

#[derive(Debug, Clone)]
pub struct ChatKitSession {
    pub id: String,
    pub user_id: String,
    pub conversation_id: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    pub cancelled: bool,
    pub max_per_minute: i64,
    /// The creating token's `scope` claim; `None` for a token without one.
    pub scopes: Option<String>,
}

macro_rules! session_columns {
    () => {
        "id, user_id, conversation_id, created_at, expires_at, cancelled, max_per_minute, scopes"
    };
}

fn session(row: &AnyRow) -> Result<ChatKitSession, sqlx::Error> {
    Ok(ChatKitSession {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        conversation_id: row.try_get("conversation_id")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        cancelled: row.try_get::<i64, _>("cancelled")? != 0,
        max_per_minute: row.try_get("max_per_minute")?,
        scopes: row.try_get("scopes")?,
    })
}

impl Store {
    /// Stores a new session whose secret hashes to `secret_sha256`.
    pub async fn create_session(
        &self,
        new: &ChatKitSession,
        secret_sha256: &str,
    ) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO chatkit_sessions (id, user_id, conversation_id, secret_sha256, \
             created_at, expires_at, cancelled, max_per_minute, scopes) \
             VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8)",
        )
        .bind(&new.id)
        .bind(&new.user_id)
        .bind(new.conversation_id)
        .bind(secret_sha256)
        .bind(new.created_at)
        .bind(new.expires_at)
        .bind(new.max_per_minute)
        .bind(new.scopes.clone());
        self.write(query).await.map_err(db_error)?;
        Ok(())
    }

    /// The session whose secret hashes to `secret_sha256`, whatever its state.
    pub async fn session_by_secret(
        &self,
        secret_sha256: &str,
    ) -> Result<Option<ChatKitSession>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM chatkit_sessions WHERE secret_sha256 = $1"
        ))
        .bind(secret_sha256)
        .fetch_optional_on(&self.db)
        .await
        .map_err(db_error)?;
        row.as_ref().map(session).transpose().map_err(db_error)
    }

    /// Cancels the user's session `id`; `None` if it is not theirs.
    pub async fn cancel_session(
        &self,
        user: &str,
        id: &str,
    ) -> Result<Option<ChatKitSession>, StoreError> {
        let query = sqlx::query(concat!(
            "UPDATE chatkit_sessions SET cancelled = 1 WHERE user_id = $1 AND id = $2 RETURNING ",
            session_columns!()
        ))
        .bind(user)
        .bind(id);
        let row = self.write_returning(query).await.map_err(db_error)?;
        row.as_ref().map(session).transpose().map_err(db_error)
    }

    /// Deletes sessions that expired before `when` (unix seconds).
    pub async fn delete_sessions_expired_before(&self, when: i64) -> Result<(), StoreError> {
        let query = sqlx::query("DELETE FROM chatkit_sessions WHERE expires_at < $1").bind(when);
        self.write(query).await.map_err(db_error)?;
        Ok(())
    }

    /// Counts one request against session `id`'s one-minute window starting
    /// at or before `now` (unix seconds); returns `(window_start, count)`
    /// after counting.
    pub async fn count_session_request(
        &self,
        id: &str,
        now: i64,
    ) -> Result<(i64, i64), StoreError> {
        // One statement, so concurrent requests on any replica each count once.
        let query = sqlx::query(
            "UPDATE chatkit_sessions SET \
             window_count = CASE WHEN window_start <= $1 - 60 THEN 1 ELSE window_count + 1 END, \
             window_start = CASE WHEN window_start <= $1 - 60 THEN $1 ELSE window_start END \
             WHERE id = $2 RETURNING window_start, window_count",
        )
        .bind(now)
        .bind(id);
        let row = self.write_returning(query).await.map_err(db_error)?;
        let row = returned(row)?;
        Ok((
            row.try_get("window_start").map_err(db_error)?,
            row.try_get("window_count").map_err(db_error)?,
        ))
    }
}
