//! Conversations and their messages: the one conversation model behind the
//! chat API and ChatKit threads.
//!
//! Every read of a conversation filters on its user, so another user's
//! conversation is "not found". Messages are appended one by one as a turn
//! happens, so whatever was acknowledged survives a crash; a streamed reply
//! is appended at its first token and completed when it ends.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, db_error, decode_all, now, returned};

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
    /// `user`, `assistant`, `tool`, or `hidden` (context for the model that
    /// no person sees).
    pub role: String,
    pub content: String,
    /// Assistant messages: JSON `[{"id","name","arguments"}]`.
    pub tool_calls: Option<String>,
    pub tool_call_id: Option<String>,
    pub tool_name: Option<String>,
    pub is_error: bool,
    /// `positive` or `negative`, from the ChatKit widget.
    pub feedback: Option<String>,
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
        "id, role, content, tool_calls, tool_call_id, tool_name, is_error, feedback, created_at"
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
        feedback: row.try_get("feedback")?,
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
        decode_all(&rows, conversation)
    }

    /// Appends a message; a trigger marks the conversation active (see
    /// `migrations/*/0003_touch_conversation.sql`).
    pub async fn append_message(
        &self,
        conversation_id: i64,
        new: NewMessage,
    ) -> Result<StoredMessage, StoreError> {
        let query = sqlx::query(concat!(
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
        .bind(now());
        let row = self.write_returning(query).await.map_err(db_error)?;
        message(&returned(row)?).map_err(db_error)
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
        let mut messages = decode_all(&rows, message)?;
        messages.reverse();
        Ok(messages)
    }
}

/// Which way a page runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
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
            .fetch_all(&self.pool)
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
        let mut tx = self.pool.begin().await.map_err(db_error)?;
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

    /// One message of a conversation.
    pub async fn message(
        &self,
        conversation_id: i64,
        id: i64,
    ) -> Result<Option<StoredMessage>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE conversation_id = $1 AND id = $2"
        ))
        .bind(conversation_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.as_ref().map(message).transpose().map_err(db_error)
    }

    /// Deletes every message after message `id` (for a retry).
    pub async fn delete_messages_after(
        &self,
        conversation_id: i64,
        id: i64,
    ) -> Result<u64, StoreError> {
        let done = self
            .write(
                sqlx::query("DELETE FROM messages WHERE conversation_id = $1 AND id > $2")
                    .bind(conversation_id)
                    .bind(id),
            )
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected())
    }

    /// User and assistant messages (what a person sees) from message `from`
    /// (inclusive) in `order`.
    pub async fn visible_messages(
        &self,
        conversation_id: i64,
        from: Option<i64>,
        limit: i64,
        order: Order,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let query = match order {
            Order::Asc => sqlx::query(concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE conversation_id = $1 AND id >= $2 \
                 AND role IN ('user', 'assistant') ORDER BY id ASC LIMIT $3"
            ))
            .bind(conversation_id)
            .bind(from.unwrap_or(0)),
            Order::Desc => sqlx::query(concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE conversation_id = $1 AND id <= $2 \
                 AND role IN ('user', 'assistant') ORDER BY id DESC LIMIT $3"
            ))
            .bind(conversation_id)
            .bind(from.unwrap_or(i64::MAX)),
        };
        let rows = query
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        decode_all(&rows, message)
    }

    /// The tool results stored after message `first` up to the first
    /// message after `last` that is not a tool result: the answers to the
    /// tool calls of the messages from `first` to `last`, in one read.
    pub async fn tool_results(
        &self,
        conversation_id: i64,
        first: i64,
        last: i64,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE conversation_id = $1 AND role = 'tool' AND id > $2 \
             AND id < COALESCE((SELECT MIN(id) FROM messages \
             WHERE conversation_id = $1 AND id > $3 AND role <> 'tool'), $4) ORDER BY id"
        ))
        .bind(conversation_id)
        .bind(first)
        .bind(last)
        .bind(i64::MAX)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        decode_all(&rows, message)
    }

    /// Rewrites a message begun as a placeholder (a streamed reply).
    pub async fn finish_message(
        &self,
        id: i64,
        content: &str,
        tool_calls: Option<&str>,
    ) -> Result<(), StoreError> {
        self.write(
            sqlx::query("UPDATE messages SET content = $1, tool_calls = $2 WHERE id = $3")
                .bind(content)
                .bind(tool_calls)
                .bind(id),
        )
        .await
        .map_err(db_error)?;
        Ok(())
    }

    /// Deletes one message (an abandoned placeholder).
    pub async fn delete_message(&self, id: i64) -> Result<(), StoreError> {
        self.write(sqlx::query("DELETE FROM messages WHERE id = $1").bind(id))
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Records feedback (`positive`/`negative`) on messages of a
    /// conversation; ids of other conversations are ignored.
    pub async fn set_feedback(
        &self,
        conversation_id: i64,
        ids: &[i64],
        kind: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        for id in ids {
            sqlx::query("UPDATE messages SET feedback = $1 WHERE conversation_id = $2 AND id = $3")
                .bind(kind)
                .bind(conversation_id)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }
}
