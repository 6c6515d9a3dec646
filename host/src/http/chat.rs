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
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::AuthUser;
use super::{ApiError, AppJson, AppState};
use crate::agent::{AgentEvent, Delivery, ToolCallRecord, Turn, TurnOutcome, TurnRequest};
use crate::audit::Door;

#[derive(Deserialize)]
pub struct ChatRequest {
    /// The seed's name; `message` is the hackathon spec's.
    #[serde(alias = "message")]
    content: String,
    conversation_id: Option<i64>,
}

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
    Ok(Json(outcome_json(&turn.outcome().await?)).into_response())
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
            Ok(outcome) => sse("done", outcome_json(&outcome)),
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
        AgentEvent::ToolResult(record) => vec![sse("tool_result", record_json(record))],
        // A question reads as the reply's text.
        AgentEvent::Asked(message) => vec![sse("delta", json!({ "text": message.content }))],
        AgentEvent::ReplyStarted { .. } | AgentEvent::ReplyDone { .. } => Vec::new(),
    }
}

fn error_event(error: ApiError) -> Event {
    let body = json!({"error": {"code": error.code, "message": error.message}, "status": error.status.as_u16()});
    sse("error", body)
}

fn outcome_json(outcome: &TurnOutcome) -> Value {
    json!({
        "conversation_id": outcome.conversation_id,
        "message_id": outcome.message_id,
        "response": outcome.response,
        "tool_calls": outcome.tool_calls.iter().map(record_json).collect::<Vec<_>>(),
    })
}

/// A tool call as the chat API shows it, in answers and conversation reads.
pub(super) fn record_json(record: &ToolCallRecord) -> Value {
    json!({
        "id": record.id,
        "name": record.name,
        "arguments": record.arguments,
        "result": record.result,
        "is_error": record.is_error,
    })
}
