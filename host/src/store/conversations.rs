//! Conversations and their messages: the one conversation model behind the
//! chat API (and, later, ChatKit threads).
//!
//! Every read of a conversation filters on its user, so another user's
//! conversation is "not found". Messages are appended one by one as a turn
//! happens, so whatever was acknowledged survives a crash.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, db_error, now};

#[derive(Debug, Clone)]
pub struct Conversation {
    pub id: i64,
    pub title: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub id: i64,
    /// `user`, `assistant` or `tool`.
    pub role: String,
    pub content: String,
    /// Assistant messages: JSON `[{"id","name","arguments"}]`.
    pub tool_calls: Option<String>,
    pub tool_call_id: Option<String>,
    pub tool_name: Option<String>,
    pub is_error: bool,
    pub created_at: String,
}

/// A message to append.
#[derive(Debug, Clone, Default)]
pub struct NewMessage {
    pub role: &'static str,
    pub content: String,
    pub tool_calls: Option<String>,
    pub tool_call_id: Option<String>,
    pub tool_name: Option<String>,
    pub is_error: bool,
}

macro_rules! message_columns {
    () => {
        "id, role, content, tool_calls, tool_call_id, tool_name, is_error, created_at"
    };
}

fn conversation(row: &AnyRow) -> Result<Conversation, sqlx::Error> {
    Ok(Conversation {
        id: row.try_get("id")?,
        title: row.try_get("title")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn message(row: &AnyRow) -> Result<StoredMessage, sqlx::Error> {
    Ok(StoredMessage {
        id: row.try_get("id")?,
        role: row.try_get("role")?,
        content: row.try_get("content")?,
        tool_calls: row.try_get("tool_calls")?,
        tool_call_id: row.try_get("tool_call_id")?,
        tool_name: row.try_get("tool_name")?,
        is_error: row.try_get::<i64, _>("is_error")? != 0,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    pub async fn create_conversation(
        &self,
        user: &str,
        title: Option<&str>,
    ) -> Result<Conversation, StoreError> {
        let at = now();
        let row = sqlx::query(
            "INSERT INTO conversations (user_id, title, created_at, updated_at) \
             VALUES ($1, $2, $3, $3) RETURNING id, title, created_at, updated_at",
        )
        .bind(user)
        .bind(title)
        .bind(&at)
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        conversation(&row).map_err(db_error)
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
        .fetch_optional(&self.pool)
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
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(conversation)
            .collect::<Result<_, _>>()
            .map_err(db_error)
    }

    /// Appends a message and marks the conversation active.
    pub async fn append_message(
        &self,
        conversation_id: i64,
        new: NewMessage,
    ) -> Result<StoredMessage, StoreError> {
        let at = now();
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let row = sqlx::query(concat!(
            "INSERT INTO messages (conversation_id, role, content, tool_calls, tool_call_id, \
             tool_name, is_error, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ",
            message_columns!()
        ))
        .bind(conversation_id)
        .bind(new.role)
        .bind(&new.content)
        .bind(&new.tool_calls)
        .bind(&new.tool_call_id)
        .bind(&new.tool_name)
        .bind(i64::from(new.is_error))
        .bind(&at)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        sqlx::query("UPDATE conversations SET updated_at = $1 WHERE id = $2")
            .bind(&at)
            .bind(conversation_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        message(&row).map_err(db_error)
    }

    /// The last `limit` messages of a conversation, oldest first.
    pub async fn recent_messages(
        &self,
        conversation_id: i64,
        limit: i64,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE conversation_id = $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(conversation_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let mut messages: Vec<StoredMessage> = rows
            .iter()
            .map(message)
            .collect::<Result<_, _>>()
            .map_err(db_error)?;
        messages.reverse();
        Ok(messages)
    }
}
