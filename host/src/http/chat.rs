//! `POST /api/{user_id}/chat` (docs/HTTP-API.md, "Chat").
//!
//! One agent turn per request. By default the answer is one JSON object;
//! with `Accept: text/event-stream` the same turn streams as server-sent
//! events (`start`, `delta`, `tool_call`, `tool_result`, then `done` with
//! the JSON answer, or `error`). Either way the turn runs to the end and is
//! stored even if the client goes away.

use std::convert::Infallible;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::http::header::ACCEPT;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::auth::AuthUser;
use super::error::ErrorBody;
use super::{ApiError, AppJson, AppState};
use crate::agent::{AgentEvent, Delivery, ToolCallRecord, Turn, TurnOutcome, TurnRequest};
use crate::audit::Door;

#[derive(Deserialize, ToSchema)]
pub struct ChatRequest {
    /// What the person says (`message` is accepted too).
    #[serde(alias = "message")]
    #[schema(min_length = 1, max_length = 8000)]
    content: String,
    /// The conversation to continue; a new one when left out.
    conversation_id: Option<i64>,
}

/// A chat turn. With `Accept: text/event-stream` the answer streams as
/// server-sent events (`start`, `delta`, `tool_call`, `tool_result`, then
/// `done` with the JSON below, or `error`; docs/HTTP-API.md).
#[utoipa::path(post, operation_id = "chat", path = "/api/{user_id}/chat", tag = "chat", request_body = ChatRequest,
    params(("user_id" = String, Path, description = "The token's user")),
    responses(
        (status = 200, description = "The turn's reply, or its events when streamed",
            content((ChatReply = "application/json"), (String = "text/event-stream"))),
        (status = 400, response = ErrorBody), (status = 401, response = ErrorBody),
        (status = 403, response = ErrorBody), (status = 404, response = ErrorBody),
        (status = 413, response = ErrorBody), (status = 415, response = ErrorBody),
        (status = 422, response = ErrorBody), (status = 429, response = ErrorBody),
        (status = 502, response = ErrorBody), (status = 503, response = ErrorBody),
        (status = 504, response = ErrorBody)))]
pub async fn chat(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(user): Path<String>,
    headers: HeaderMap,
    AppJson(request): AppJson<ChatRequest>,
) -> Result<Response, ApiError> {
    auth.owns(&user)?;
    let wants_stream = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let delivery = if wants_stream {
        Delivery::Streamed
    } else {
        Delivery::Whole
    };
    let request = TurnRequest::Message {
        conversation_id: request.conversation_id,
        content: request.content,
    };
    // Any reason not to run (a bad message, the limit, an unknown
    // conversation) is answered here, before a stream would start with 200.
    let turn = state
        .agent
        .start(&auth.0, Door::Chat, request, delivery)
        .await?;
    if wants_stream {
        return Ok(stream(turn).into_response());
    }
    Ok(Json(ChatReply::from(&turn.outcome().await?)).into_response())
}

/// The turn as the chat page's events, ending with `done` or `error`.
fn stream(turn: Turn) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let conversation_id = turn.conversation.id;
    let (events, outcome) = turn.split();
    let events = futures::stream::unfold(events, |mut rx| async move {
        rx.recv().await.map(|event| (event, rx))
    })
    .flat_map(move |event| futures::stream::iter(sse_events(conversation_id, &event)));
    let last = futures::stream::once(async move {
        match outcome.await {
            Ok(outcome) => sse("done", to_json(ChatReply::from(&outcome))),
            Err(err) => error_event(err.into()),
        }
    });
    Sse::new(events.chain(last).map(Ok)).keep_alive(KeepAlive::default())
}

fn sse(name: &str, data: Value) -> Event {
    Event::default().event(name).data(data.to_string())
}

/// The chat page's events for one agent event: none for those it does not
/// show, one per call for tool calls.
fn sse_events(conversation_id: i64, event: &AgentEvent) -> Vec<Event> {
    match event {
        AgentEvent::Started { user_message } => vec![sse(
            "start",
            json!({"conversation_id": conversation_id, "user_message_id": user_message.id}),
        )],
        AgentEvent::TextDelta(text) => vec![sse("delta", json!({ "text": text }))],
        AgentEvent::ToolCalls { calls, .. } => calls
            .iter()
            .map(|call| {
                sse(
                    "tool_call",
                    json!({"id": call.id, "name": call.name, "arguments": call.arguments}),
                )
            })
            .collect(),
        AgentEvent::ToolResult(record) => {
            vec![sse("tool_result", to_json(ToolCallBody::from(record)))]
        }
        // A question reads as the reply's text.
        AgentEvent::Asked(message) => vec![sse("delta", json!({ "text": message.content }))],
        AgentEvent::ReplyStarted { .. } | AgentEvent::ReplyDone { .. } => Vec::new(),
    }
}

fn error_event(error: ApiError) -> Event {
    let body = json!({"error": {"code": error.code, "message": error.message}, "status": error.status.as_u16()});
    sse("error", body)
}

/// A finished turn, as `/chat` answers it.
#[derive(Serialize, ToSchema)]
pub struct ChatReply {
    conversation_id: i64,
    /// The reply's id: the last message it stored.
    message_id: i64,
    /// What the assistant said (a question for the person, with its options
    /// one per line, when it asked one).
    response: String,
    tool_calls: Vec<ToolCallBody>,
}

impl From<&TurnOutcome> for ChatReply {
    fn from(outcome: &TurnOutcome) -> Self {
        ChatReply {
            conversation_id: outcome.conversation_id,
            message_id: outcome.message_id,
            response: outcome.response.clone(),
            tool_calls: outcome.tool_calls.iter().map(ToolCallBody::from).collect(),
        }
    }
}

/// A tool call as the chat API shows it, in answers and conversation reads.
#[derive(Serialize, ToSchema)]
pub struct ToolCallBody {
    id: String,
    name: String,
    /// The arguments as the model gave them (a string if not valid JSON).
    arguments: Value,
    /// The tool's result, or `{"error": "…"}`; null if it never finished.
    result: Option<Value>,
    is_error: bool,
}

impl From<&ToolCallRecord> for ToolCallBody {
    fn from(record: &ToolCallRecord) -> Self {
        ToolCallBody {
            id: record.id.clone(),
            name: record.name.clone(),
            arguments: record.arguments.clone(),
            result: record.result.clone(),
            is_error: record.is_error,
        }
    }
}

fn to_json(value: impl Serialize) -> Value {
    serde_json::to_value(value).expect("wire types serialize")
}
