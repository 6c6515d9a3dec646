//! The transcript: a conversation as a person reads it, the one read every
//! door renders. User messages and assistant messages in order, each
//! assistant message with its tool calls and their results; tool rows and
//! hidden context are folded in or left out, never shown as messages.

use serde_json::Value;

use super::db::RunOn;
use super::messages::{Role, StoredMessage, ToolCall, message, message_columns};
use super::{Store, StoreError, db_error, decode_all};

/// A tool call with its result, once it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallRecord {
    pub id: String,
    pub name: String,
    /// The arguments as JSON; a model's invalid JSON is kept as a string.
    pub arguments: Value,
    /// The tool's JSON result, or `{"error": "..."}`; `None` until it ran
    /// (or, in a stored transcript, when a crash cut the call off).
    pub result: Option<Value>,
    pub is_error: bool,
}

impl ToolCallRecord {
    /// A call that has not reported yet.
    pub fn pending(call: &ToolCall) -> Self {
        ToolCallRecord {
            id: call.id.clone(),
            name: call.name.clone(),
            arguments: serde_json::from_str(&call.arguments)
                .unwrap_or_else(|_| Value::String(call.arguments.clone())),
            result: None,
            is_error: false,
        }
    }

    /// The call with its result.
    pub fn answered(self, result: Value, is_error: bool) -> Self {
        ToolCallRecord {
            result: Some(result),
            is_error,
            ..self
        }
    }
}

/// One message a person sees.
#[derive(Debug, Clone)]
pub struct TranscriptEntry {
    /// A user or assistant message.
    pub message: StoredMessage,
    /// An assistant message's tool calls, in call order, with their results.
    pub calls: Vec<ToolCallRecord>,
}

impl TranscriptEntry {
    /// Whether a call of this message never got its result (the process
    /// stopped while it ran).
    pub fn interrupted(&self) -> bool {
        self.calls.iter().any(|call| call.result.is_none())
    }
}

/// Which way a page runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

impl Store {
    /// Up to `limit` entries of a conversation from message `from`
    /// (inclusive) in `order`, with the results of their tool calls.
    pub async fn transcript(
        &self,
        conversation_id: i64,
        from: Option<i64>,
        limit: i64,
        order: Order,
    ) -> Result<Vec<TranscriptEntry>, StoreError> {
        let query = match order {
            Order::Asc => sqlx::query(concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE conversation_id = $1 AND id >= $2 \
                 AND role IN ($3, $4) ORDER BY id ASC LIMIT $5"
            ))
            .bind(conversation_id)
            .bind(from.unwrap_or(0)),
            Order::Desc => sqlx::query(concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE conversation_id = $1 AND id <= $2 \
                 AND role IN ($3, $4) ORDER BY id DESC LIMIT $5"
            ))
            .bind(conversation_id)
            .bind(from.unwrap_or(i64::MAX)),
        };
        let rows = query
            .bind(Role::User.as_str())
            .bind(Role::Assistant.as_str())
            .bind(limit)
            .fetch_all_on(&self.db)
            .await
            .map_err(db_error)?;
        let messages = decode_all(&rows, message)?;

        // The results of every call on the page, in one read.
        let calling = || {
            messages
                .iter()
                .filter(|m| !m.tool_calls.is_empty())
                .map(|m| m.id)
        };
        let results = match (calling().min(), calling().max()) {
            (Some(first), Some(last)) => self.tool_results(conversation_id, first, last).await?,
            _ => Vec::new(),
        };
        Ok(messages
            .into_iter()
            .map(|message| {
                let calls = message
                    .tool_calls
                    .iter()
                    .map(|call| answer(call, message.id, &results))
                    .collect();
                TranscriptEntry { message, calls }
            })
            .collect())
    }

    /// The tool results stored after message `first` up to the first
    /// message after `last` that is not a tool result: the answers to the
    /// tool calls of the messages from `first` to `last`.
    async fn tool_results(
        &self,
        conversation_id: i64,
        first: i64,
        last: i64,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE conversation_id = $1 AND role = $5 AND id > $2 \
             AND id < COALESCE((SELECT MIN(id) FROM messages \
             WHERE conversation_id = $1 AND id > $3 AND role <> $5), $4) ORDER BY id"
        ))
        .bind(conversation_id)
        .bind(first)
        .bind(last)
        .bind(i64::MAX)
        .bind(Role::Tool.as_str())
        .fetch_all_on(&self.db)
        .await
        .map_err(db_error)?;
        decode_all(&rows, message)
    }
}

/// `call` of message `asked_in` with its result: the first result for its
/// id stored after that message. (Call ids repeat across rounds with some
/// models, so the nearest one after the asking message is the answer.)
fn answer(call: &ToolCall, asked_in: i64, results: &[StoredMessage]) -> ToolCallRecord {
    let pending = ToolCallRecord::pending(call);
    let result = results
        .iter()
        .find(|r| r.id > asked_in && r.tool_call_id.as_deref() == Some(call.id.as_str()));
    match result {
        Some(row) => {
            let value = serde_json::from_str(&row.content)
                .unwrap_or_else(|_| Value::String(row.content.clone()));
            pending.answered(value, row.is_error)
        }
        None => pending,
    }
}
