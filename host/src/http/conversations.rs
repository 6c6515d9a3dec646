//! `GET /api/{user_id}/conversations` and `…/conversations/{id}`
//! (docs/HTTP-API.md, "Conversations"): a conversation read as the chat
//! page shows it, in the shape `/chat` answers with.
//!
//! The store's transcript has one entry per stored message; here the
//! assistant messages of one reply (a message per tool round, then the
//! text) become one reply with all its tool calls, as `/chat` answered it.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::AuthUser;
use super::chat::ToolCallBody;
use super::error::ErrorBody;
use super::{ApiError, AppState};
use crate::store::{Conversation, Order, Role, ToolCallRecord, TranscriptEntry};

/// How many conversations the list returns.
const CONVERSATION_PAGE: i64 = 100;
/// Messages per page of a conversation read, by default and at most.
const DEFAULT_MESSAGES: usize = 50;
const MAX_MESSAGES: usize = 100;

/// A conversation as listed.
#[derive(Serialize, ToSchema)]
pub struct ConversationBody {
    id: i64,
    title: Option<String>,
    created_at: String,
    updated_at: String,
}

impl From<&Conversation> for ConversationBody {
    fn from(conversation: &Conversation) -> Self {
        ConversationBody {
            id: conversation.id,
            title: conversation.title.clone(),
            created_at: conversation.created_at.clone(),
            updated_at: conversation.updated_at.clone(),
        }
    }
}

/// A conversation read: a page of its messages, each reply whole.
#[derive(Serialize, ToSchema)]
pub struct ConversationRead {
    #[serde(flatten)]
    conversation: ConversationBody,
    messages: Vec<MessageBody>,
    has_more: bool,
    /// The `after` of the next page, when there is one.
    next_after: Option<i64>,
}

/// A user message, or a whole reply with the tool calls of all its rounds.
#[derive(Serialize, ToSchema)]
pub struct MessageBody {
    /// For a reply, the last stored message it folds in: the `message_id`
    /// `/chat` answered with, and the cursor past it.
    id: i64,
    /// `user` or `assistant`.
    role: String,
    content: String,
    created_at: String,
    /// A reply's calls (absent for a user message).
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<ToolCallBody>>,
    /// A reply a crash cut off during a tool call.
    #[serde(skip_serializing_if = "Option::is_none")]
    interrupted: Option<bool>,
    /// `positive` or `negative`, from the ChatKit widget.
    #[serde(skip_serializing_if = "Option::is_none")]
    feedback: Option<String>,
}

#[utoipa::path(get, operation_id = "list_conversations", path = "/api/{user_id}/conversations", tag = "conversations",
    params(("user_id" = String, Path, description = "The token's user")),
    responses((status = 200, body = Vec<ConversationBody>, description = "The latest 100, newest first"),
        (status = 401, response = ErrorBody), (status = 403, response = ErrorBody),
        (status = 503, response = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(user): Path<String>,
) -> Result<Json<Vec<ConversationBody>>, ApiError> {
    let user = auth.owns(&user)?;
    let list = state.store.conversations(user, CONVERSATION_PAGE).await?;
    Ok(Json(list.iter().map(ConversationBody::from).collect()))
}

#[derive(Deserialize, IntoParams)]
pub struct PageQuery {
    /// Messages after this one (its `id`, exclusive).
    after: Option<i64>,
    /// 1-100, 50 by default.
    limit: Option<usize>,
}

#[utoipa::path(get, operation_id = "read_conversation", path = "/api/{user_id}/conversations/{id}", tag = "conversations",
    params(("user_id" = String, Path, description = "The token's user"), ("id" = i64, Path), PageQuery),
    responses((status = 200, body = ConversationRead), (status = 400, response = ErrorBody),
        (status = 401, response = ErrorBody), (status = 403, response = ErrorBody),
        (status = 404, response = ErrorBody), (status = 503, response = ErrorBody)))]
pub async fn read(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((user, id)): Path<(String, String)>,
    Query(page): Query<PageQuery>,
) -> Result<Json<ConversationRead>, ApiError> {
    let user = auth.owns(&user)?;
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{id:?} is not a conversation id")))?;
    let limit = match page.limit {
        None => DEFAULT_MESSAGES,
        Some(n @ 1..=MAX_MESSAGES) => n,
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "limit must be between 1 and {MAX_MESSAGES}, not {n}"
            )));
        }
    };
    let conversation = state
        .store
        .conversation(user, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("conversation {id} not found")))?;

    // Read until a message past the page has begun: only then is the
    // page's last reply known to be complete.
    let batch = limit as i64 + 1;
    let mut messages: Vec<Message> = Vec::new();
    let mut from = page.after.map(|after| after.saturating_add(1));
    loop {
        let entries = state.store.transcript(id, from, batch, Order::Asc).await?;
        let exhausted = (entries.len() as i64) < batch;
        from = entries.last().map(|e| e.message.id + 1);
        fold(&mut messages, entries);
        if exhausted || messages.len() > limit {
            break;
        }
    }
    let has_more = messages.len() > limit;
    messages.truncate(limit);
    Ok(Json(ConversationRead {
        conversation: ConversationBody::from(&conversation),
        next_after: has_more.then(|| messages.last().map(|m| m.id)).flatten(),
        messages: messages.iter().map(Message::body).collect(),
        has_more,
    }))
}

/// One message of the read: a user message, or a whole reply.
#[derive(Debug)]
struct Message {
    /// The last stored message it folds in (the reply `/chat` named), so
    /// that it is also the cursor past it.
    id: i64,
    role: Role,
    content: String,
    created_at: String,
    tool_calls: Vec<ToolCallRecord>,
    feedback: Option<String>,
}

impl Message {
    fn body(&self) -> MessageBody {
        let reply = self.role == Role::Assistant;
        MessageBody {
            id: self.id,
            role: self.role.as_str().to_string(),
            content: self.content.clone(),
            created_at: self.created_at.clone(),
            tool_calls: reply.then(|| self.tool_calls.iter().map(ToolCallBody::from).collect()),
            // A call without a result was cut off by a crash.
            interrupted: (reply && self.tool_calls.iter().any(|c| c.result.is_none()))
                .then_some(true),
            feedback: self.feedback.clone(),
        }
    }
}

/// Appends `entries` (in ascending order) to `messages`, folding each run
/// of assistant messages into the reply they make up.
fn fold(messages: &mut Vec<Message>, entries: Vec<TranscriptEntry>) {
    for TranscriptEntry { message, calls } in entries {
        if let Some(reply) = messages.last_mut()
            && reply.role == Role::Assistant
            && message.role == Role::Assistant
        {
            if !message.content.is_empty() {
                if !reply.content.is_empty() {
                    reply.content.push_str("\n\n");
                }
                reply.content.push_str(&message.content);
            }
            reply.id = message.id;
            reply.tool_calls.extend(calls);
            reply.feedback = message.feedback.or(reply.feedback.take());
            continue;
        }
        messages.push(Message {
            id: message.id,
            role: message.role,
            content: message.content,
            created_at: message.created_at,
            tool_calls: calls,
            feedback: message.feedback,
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::store::StoredMessage;

    fn entry(
        id: i64,
        role: Role,
        content: &str,
        calls: &[(&str, Option<Value>)],
    ) -> TranscriptEntry {
        TranscriptEntry {
            message: StoredMessage::fixture(id, role, content),
            calls: calls
                .iter()
                .map(|(id, result)| ToolCallRecord {
                    id: id.to_string(),
                    name: "add_task".into(),
                    arguments: json!({}),
                    result: result.clone(),
                    is_error: false,
                })
                .collect(),
        }
    }

    #[test]
    fn replies_fold_their_rounds() {
        let ok = Some(json!({"id": 1}));
        let cases: Vec<(&str, Vec<Vec<TranscriptEntry>>, Value)> = vec![
            (
                "a tool round and its text are one reply, named by the text's id",
                vec![vec![
                    entry(1, Role::User, "add milk", &[]),
                    entry(2, Role::Assistant, "", &[("a", ok.clone())]),
                    entry(4, Role::Assistant, "Added.", &[]),
                ]],
                json!([
                    {"id": 1, "role": "user", "content": "add milk", "created_at": "t1"},
                    {"id": 4, "role": "assistant", "content": "Added.", "created_at": "t2",
                     "tool_calls": [{"id": "a", "name": "add_task", "arguments": {}, "result": {"id": 1}, "is_error": false}]},
                ]),
            ),
            (
                "a reply split across two reads is still one",
                vec![
                    vec![
                        entry(1, Role::User, "hi", &[]),
                        entry(2, Role::Assistant, "Looking.", &[("a", ok.clone())]),
                    ],
                    vec![entry(4, Role::Assistant, "Done.", &[])],
                ],
                json!([
                    {"id": 1, "role": "user", "content": "hi", "created_at": "t1"},
                    {"id": 4, "role": "assistant", "content": "Looking.\n\nDone.", "created_at": "t2",
                     "tool_calls": [{"id": "a", "name": "add_task", "arguments": {}, "result": {"id": 1}, "is_error": false}]},
                ]),
            ),
            (
                "a call cut off by a crash marks its reply interrupted",
                vec![vec![
                    entry(1, Role::User, "add", &[]),
                    entry(2, Role::Assistant, "", &[("a", None)]),
                    entry(3, Role::User, "again", &[]),
                ]],
                json!([
                    {"id": 1, "role": "user", "content": "add", "created_at": "t1"},
                    {"id": 2, "role": "assistant", "content": "", "created_at": "t2", "interrupted": true,
                     "tool_calls": [{"id": "a", "name": "add_task", "arguments": {}, "result": null, "is_error": false}]},
                    {"id": 3, "role": "user", "content": "again", "created_at": "t3"},
                ]),
            ),
        ];
        for (name, reads, expect) in cases {
            let mut messages = Vec::new();
            for read in reads {
                fold(&mut messages, read);
            }
            let got: Vec<MessageBody> = messages.iter().map(Message::body).collect();
            assert_eq!(serde_json::to_value(got).unwrap(), expect, "{name}");
        }
    }
}
