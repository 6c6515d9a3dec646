//! Conversations: the one conversation model behind the chat API's
//! conversations and ChatKit's threads. Their messages are in
//! [`super::messages`], read as a person sees them in [`super::transcript`].
//!
//! Every read of a conversation filters on its user, so another user's
//! conversation is "not found".

use sqlx::Row;
use sqlx::any::AnyRow;

use super::db::RunOn;
use super::{Order, Store, StoreError, db_error, decode_all, now, returned};

#[derive(Debug, Clone)]
pub struct Conversation {
    pub id: i64,
    pub title: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

fn conversation(row: &AnyRow) -> Result<Conversation, sqlx::Error> {
    Ok(Conversation {
        id: row.try_get("id")?,
        title: row.try_get("title")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    pub async fn create_conversation(
        &self,
        user: &str,
        title: Option<&str>,
    ) -> Result<Conversation, StoreError> {
        let at = now();
        let query = sqlx::query(
            "INSERT INTO conversations (user_id, title, created_at, updated_at) \
             VALUES ($1, $2, $3, $3) RETURNING id, title, created_at, updated_at",
        )
        .bind(user)
        .bind(title)
        .bind(&at);
        let row = self.write_returning(query).await.map_err(db_error)?;
        conversation(&returned(row)?).map_err(db_error)
    }

    /// The user's conversation `id`, or `None` (also for another user's).
    pub async fn conversation(
        &self,
        user: &str,
        id: i64,
    ) -> Result<Option<Conversation>, StoreError> {
        let row = sqlx::query(
            "SELECT id, title, created_at, updated_at FROM conversations \
             WHERE user_id = $1 AND id = $2",
        )
        .bind(user)
        .bind(id)
        .fetch_optional_on(&self.db)
        .await
        .map_err(db_error)?;
        row.as_ref().map(conversation).transpose().map_err(db_error)
    }

    /// The user's conversations, most recently active first.
    pub async fn conversations(
        &self,
        user: &str,
        limit: i64,
    ) -> Result<Vec<Conversation>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, title, created_at, updated_at FROM conversations \
             WHERE user_id = $1 ORDER BY updated_at DESC, id DESC LIMIT $2",
        )
        .bind(user)
        .bind(limit)
        .fetch_all_on(&self.db)
        .await
        .map_err(db_error)?;
        decode_all(&rows, conversation)
    }

    /// The user's most recently active conversation, if they have one.
    pub async fn latest_conversation(
        &self,
        user: &str,
    ) -> Result<Option<Conversation>, StoreError> {
        Ok(self.conversations(user, 1).await?.into_iter().next())
    }
}

impl Store {
    /// A page of the user's conversations by id, after the conversation
    /// `after` (exclusive) in `order`. Stable under inserts, unlike the
    /// activity order of [`Store::conversations`].
    pub async fn conversations_page(
        &self,
        user: &str,
        after: Option<i64>,
        limit: i64,
        order: Order,
    ) -> Result<Vec<Conversation>, StoreError> {
        let query = match order {
            Order::Asc => sqlx::query(
                "SELECT id, title, created_at, updated_at FROM conversations \
                 WHERE user_id = $1 AND id > $2 ORDER BY id ASC LIMIT $3",
            )
            .bind(user)
            .bind(after.unwrap_or(0)),
            Order::Desc => sqlx::query(
                "SELECT id, title, created_at, updated_at FROM conversations \
                 WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
            )
            .bind(user)
            .bind(after.unwrap_or(i64::MAX)),
        };
        let rows = query
            .bind(limit)
            .fetch_all_on(&self.db)
            .await
            .map_err(db_error)?;
        decode_all(&rows, conversation)
    }

    /// Renames the user's conversation; `None` if it is not theirs.
    pub async fn rename_conversation(
        &self,
        user: &str,
        id: i64,
        title: &str,
    ) -> Result<Option<Conversation>, StoreError> {
        let query = sqlx::query(
            "UPDATE conversations SET title = $1 WHERE user_id = $2 AND id = $3 \
             RETURNING id, title, created_at, updated_at",
        )
        .bind(title)
        .bind(user)
        .bind(id);
        let row = self.write_returning(query).await.map_err(db_error)?;
        row.as_ref().map(conversation).transpose().map_err(db_error)
    }

    /// Deletes the user's conversation and its messages; `false` if it is
    /// not theirs.
    pub async fn delete_conversation(&self, user: &str, id: i64) -> Result<bool, StoreError> {
        let mut conn = self.db.acquire().await.map_err(db_error)?;
        let mut tx = sqlx::Connection::begin(&mut *conn)
            .await
            .map_err(db_error)?;
        let owned = sqlx::query("SELECT id FROM conversations WHERE user_id = $1 AND id = $2")
            .bind(user)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?
            .is_some();
        if owned {
            // Explicit, so no backend depends on cascading deletes.
            sqlx::query("DELETE FROM messages WHERE conversation_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            sqlx::query("DELETE FROM conversations WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(owned)
    }
}
