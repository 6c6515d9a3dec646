//! The messages of a conversation as stored: one row per message, appended
//! as a turn happens, so whatever was acknowledged survives a crash; a
//! streamed reply is appended at its first token and completed when it ends.
//!
//! This module owns the stored shape: the [`Role`] of a row, and the tool
//! calls of an assistant message, encoded here and decoded here, once.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::db::RunOn;
use super::{Store, StoreError, db_error, decode_all, now, returned};

/// Who a message is from, as the `role` column stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    /// An assistant message: text, tool calls, or both.
    Assistant,
    /// The result of one tool call.
    Tool,
    /// Context for the model that no person sees (a cancelled reply's note).
    Hidden,
}

impl Role {
    /// The stored (and shown) name of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
            Role::Hidden => "hidden",
        }
    }

    fn parse(text: &str) -> Result<Role, sqlx::Error> {
        Ok(match text {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            "hidden" => Role::Hidden,
            other => {
                return Err(sqlx::Error::Decode(
                    format!("unknown message role {other:?}").into(),
                ));
            }
        })
    }
}

/// A tool call an assistant message made, as the model made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// A JSON object as text (models occasionally produce invalid JSON;
    /// what they said is kept).
    pub arguments: String,
}

/// A question an assistant message puts to the person, with the answers
/// to choose from and, once they replied, their answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Question {
    pub question: String,
    pub options: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<Answer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub values: Vec<String>,
    #[serde(default)]
    pub skipped: bool,
}

/// The user message that stands for a skipped question.
pub const SKIPPED: &str = "(I skipped the question.)";

impl Question {
    /// The question as plain text, an option per line: the message's content.
    pub fn text(&self) -> String {
        let mut text = self.question.clone();
        for option in &self.options {
            text.push_str("\n- ");
            text.push_str(option);
        }
        text
    }

    /// The question answered by the user message `reply`.
    pub fn answered_by(&self, reply: &str) -> Question {
        let answer = if reply == SKIPPED {
            Answer {
                values: Vec::new(),
                skipped: true,
            }
        } else {
            Answer {
                values: vec![reply.to_string()],
                skipped: false,
            }
        };
        Question {
            answer: Some(answer),
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    pub id: i64,
    pub role: Role,
    pub content: String,
    /// An assistant message's calls, in the order the model made them.
    pub tool_calls: Vec<ToolCall>,
    /// A tool result: the call it answers, and the tool's name.
    pub tool_call_id: Option<String>,
    pub tool_name: Option<String>,
    pub is_error: bool,
    /// `positive` or `negative`, from the ChatKit widget.
    pub feedback: Option<String>,
    /// An assistant message that asks the person something.
    pub question: Option<Question>,
    pub created_at: String,
}

#[cfg(test)]
impl StoredMessage {
    /// A stored message of `role` with `content` and nothing else, for
    /// tests of the code that reads messages.
    pub fn fixture(id: i64, role: Role, content: &str) -> StoredMessage {
        StoredMessage {
            id,
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            tool_name: None,
            is_error: false,
            feedback: None,
            question: None,
            created_at: format!("t{id}"),
        }
    }
}

/// A message to append.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub role: Role,
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub tool_call_id: Option<String>,
    pub tool_name: Option<String>,
    pub is_error: bool,
    pub question: Option<Question>,
}

impl NewMessage {
    /// A message of `role` with text only.
    pub fn text(role: Role, content: impl Into<String>) -> Self {
        NewMessage {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            tool_name: None,
            is_error: false,
            question: None,
        }
    }

    /// An assistant message asking `question`, its text as content.
    pub fn question(question: Question) -> Self {
        NewMessage {
            question: Some(question.clone()),
            ..NewMessage::text(Role::Assistant, question.text())
        }
    }

    /// The result of call `call_id` to tool `name`.
    pub fn tool_result(call_id: &str, name: &str, content: String, is_error: bool) -> Self {
        NewMessage {
            tool_call_id: Some(call_id.to_string()),
            tool_name: Some(name.to_string()),
            is_error,
            ..NewMessage::text(Role::Tool, content)
        }
    }
}

macro_rules! message_columns {
    () => {
        "id, role, content, tool_calls, tool_call_id, tool_name, is_error, feedback, question, \
         created_at"
    };
}
pub(super) use message_columns;

/// The `tool_calls` column: a JSON array, or NULL for none.
fn encode_calls(calls: &[ToolCall]) -> Option<String> {
    (!calls.is_empty()).then(|| serde_json::to_string(calls).expect("tool calls serialize"))
}

fn encode_question(question: &Question) -> String {
    serde_json::to_string(question).expect("a question serializes")
}

pub(super) fn message(row: &AnyRow) -> Result<StoredMessage, sqlx::Error> {
    let calls: Option<String> = row.try_get("tool_calls")?;
    let tool_calls = match calls.as_deref() {
        None => Vec::new(),
        Some(text) => serde_json::from_str(text).map_err(|err| sqlx::Error::Decode(err.into()))?,
    };
    let question: Option<String> = row.try_get("question")?;
    let question = question
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|err| sqlx::Error::Decode(err.into()))?;
    Ok(StoredMessage {
        id: row.try_get("id")?,
        role: Role::parse(&row.try_get::<String, _>("role")?)?,
        content: row.try_get("content")?,
        tool_calls,
        tool_call_id: row.try_get("tool_call_id")?,
        tool_name: row.try_get("tool_name")?,
        is_error: row.try_get::<i64, _>("is_error")? != 0,
        feedback: row.try_get("feedback")?,
        question,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Appends a message; a trigger marks the conversation active (see
    /// `migrations/*/0003_touch_conversation.sql`).
    pub async fn append_message(
        &self,
        conversation_id: i64,
        new: NewMessage,
    ) -> Result<StoredMessage, StoreError> {
        let query = sqlx::query(concat!(
            "INSERT INTO messages (conversation_id, role, content, tool_calls, tool_call_id, \
             tool_name, is_error, question, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING ",
            message_columns!()
        ))
        .bind(conversation_id)
        .bind(new.role.as_str())
        .bind(new.content)
        .bind(encode_calls(&new.tool_calls))
        .bind(new.tool_call_id)
        .bind(new.tool_name)
        .bind(i64::from(new.is_error))
        .bind(new.question.as_ref().map(encode_question))
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
        .fetch_all_on(&self.db)
        .await
        .map_err(db_error)?;
        let mut messages = decode_all(&rows, message)?;
        messages.reverse();
        Ok(messages)
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
        .fetch_optional_on(&self.db)
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

    /// Rewrites a message begun as a placeholder (a streamed reply).
    pub async fn finish_message(
        &self,
        id: i64,
        content: &str,
        tool_calls: &[ToolCall],
    ) -> Result<(), StoreError> {
        self.write(
            sqlx::query("UPDATE messages SET content = $1, tool_calls = $2 WHERE id = $3")
                .bind(content)
                .bind(encode_calls(tool_calls))
                .bind(id),
        )
        .await
        .map_err(db_error)?;
        Ok(())
    }

    /// Records the answer to the question message `id` asked.
    pub async fn answer_question(&self, id: i64, answered: &Question) -> Result<(), StoreError> {
        self.write(
            sqlx::query("UPDATE messages SET question = $1 WHERE id = $2")
                .bind(encode_question(answered))
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
        let mut conn = self.db.acquire().await.map_err(db_error)?;
        let mut tx = sqlx::Connection::begin(&mut *conn)
            .await
            .map_err(db_error)?;
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
