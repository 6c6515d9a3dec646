//! `POST /api/{user_id}/chat` (README, "HTTP API") and the conversation reads.
//!
//! One agent turn per request. By default the answer is one JSON object;
//! with `Accept: text/event-stream` the same turn streams as server-sent
//! events (`start`, `delta`, `tool_call`, `tool_result`, then `done` with
//! the JSON answer, or `error`). Either way the turn runs to the end and is
//! stored even if the client goes away.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header::ACCEPT;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::auth::AuthUser;
use super::{ApiError, AppJson, AppState};
use crate::agent::{
    Agent, AgentError, AgentEvent, EventSink, ToolCallRecord, TurnOutcome, check_message,
};
use crate::store::{Conversation, StoredMessage};

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
    let user = auth.owns(&user)?.to_string();
    check_message(&request.content)?;
    state
        .chat_limiter
        .check(&user)
        .map_err(ApiError::rate_limited)?;
    // A stream starts with 200: say "not found" before it does.
    if let Some(id) = request.conversation_id
        && state.store.conversation(&user, id).await?.is_none()
    {
        return Err(ApiError::not_found(format!("conversation {id} not found")));
    }

    let wants_stream = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let agent = state.agent.clone();
    if wants_stream {
        return Ok(stream_turn(agent, user, request).into_response());
    }
    // Spawned, so that a client that hangs up does not cut the turn short.
    let turn = tokio::spawn(async move {
        agent
            .turn(
                &user,
                request.conversation_id,
                request.content,
                false,
                EventSink::new(None),
            )
            .await
    });
    let outcome = turn
        .await
        .map_err(ApiError::internal)?
        .map_err(agent_error)?;
    Ok(Json(outcome_json(&outcome)).into_response())
}

fn stream_turn(
    agent: Arc<Agent>,
    user: String,
    request: ChatRequest,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let (events_tx, mut events_rx) = mpsc::channel::<AgentEvent>(64);
    let (sse_tx, sse_rx) = mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let turn = tokio::spawn(async move {
            agent
                .turn(
                    &user,
                    request.conversation_id,
                    request.content,
                    true,
                    EventSink::new(Some(events_tx)),
                )
                .await
        });
        while let Some(event) = events_rx.recv().await {
            for event in sse_events(&event) {
                let _ = sse_tx.send(event).await;
            }
        }
        let last = match turn.await {
            Ok(Ok(outcome)) => Event::default()
                .event("done")
                .data(outcome_json(&outcome).to_string()),
            Ok(Err(err)) => error_event(agent_error(err)),
            Err(join) => error_event(ApiError::internal(join)),
        };
        let _ = sse_tx.send(last).await;
    });
    let stream = futures::stream::unfold(sse_rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// The chat page's events for one agent event: none for those it does not
/// show, one per call for tool calls.
fn sse_events(event: &AgentEvent) -> Vec<Event> {
    let sse = |name: &str, data: Value| Event::default().event(name).data(data.to_string());
    match event {
        AgentEvent::Started {
            conversation_id,
            user_message,
        } => vec![sse(
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
        AgentEvent::ReplyStarted { .. } | AgentEvent::ReplyDone { .. } => Vec::new(),
    }
}

fn error_event(error: ApiError) -> Event {
    let body = json!({"error": {"code": error.code, "message": error.message}, "status": error.status.as_u16()});
    Event::default().event("error").data(body.to_string())
}

fn outcome_json(outcome: &TurnOutcome) -> Value {
    json!({
        "conversation_id": outcome.conversation_id,
        "message_id": outcome.message_id,
        "response": outcome.response,
        "tool_calls": outcome.tool_calls.iter().map(record_json).collect::<Vec<_>>(),
    })
}

fn record_json(record: &ToolCallRecord) -> Value {
    json!({
        "id": record.id,
        "name": record.name,
        "arguments": record.arguments,
        "result": record.result,
        "is_error": record.is_error,
    })
}

fn agent_error(error: AgentError) -> ApiError {
    match &error {
        AgentError::ConversationNotFound(_) => ApiError::not_found(error.to_string()),
        AgentError::Store(_) => ApiError::storage_unavailable(),
        AgentError::Provider {
            conversation_id, ..
        } => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "provider_error",
            format!("{error}. Your message was saved in conversation {conversation_id}."),
        ),
        AgentError::ProviderTimeout {
            conversation_id, ..
        } => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "provider_timeout",
            format!("{error}. Your message was saved in conversation {conversation_id}."),
        ),
        // Chat turns are never made cancellable; this is for completeness.
        AgentError::Cancelled { .. } => {
            ApiError::new(StatusCode::CONFLICT, "cancelled", error.to_string())
        }
        AgentError::ProviderMissing(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "provider_unavailable",
            error.to_string(),
        ),
    }
}

/// How many conversations the list returns.
const CONVERSATION_PAGE: i64 = 100;

pub async fn conversations(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(user): Path<String>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let user = auth.owns(&user)?;
    let list = state.store.conversations(user, CONVERSATION_PAGE).await?;
    Ok(Json(list.iter().map(conversation_json).collect()))
}

pub async fn conversation(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((user, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let user = auth.owns(&user)?;
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{id:?} is not a conversation id")))?;
    let conversation = state
        .store
        .conversation(user, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("conversation {id} not found")))?;
    let messages = state.store.recent_messages(id, i64::MAX).await?;
    let mut body = conversation_json(&conversation);
    // Calls that have a result; any other call was cut off by a crash.
    let answered: std::collections::HashSet<&str> = messages
        .iter()
        .filter_map(|m| m.tool_call_id.as_deref())
        .collect();
    // Hidden context (a cancelled reply's note) is for the model only.
    body["messages"] = messages
        .iter()
        .filter(|m| m.role != "hidden")
        .map(|m| {
            let mut json = message_json(m);
            let cut_off = json["tool_calls"].as_array().is_some_and(|calls| {
                calls
                    .iter()
                    .any(|c| !answered.contains(c["id"].as_str().unwrap_or_default()))
            });
            if cut_off {
                json["interrupted"] = json!(true);
            }
            json
        })
        .collect();
    Ok(Json(body))
}

fn conversation_json(conversation: &Conversation) -> Value {
    json!({
        "id": conversation.id,
        "title": conversation.title,
        "created_at": conversation.created_at,
        "updated_at": conversation.updated_at,
    })
}

fn message_json(message: &StoredMessage) -> Value {
    let mut body = json!({
        "id": message.id,
        "role": message.role,
        "content": message.content,
        "created_at": message.created_at,
    });
    if let Some(calls) = message
        .tool_calls
        .as_deref()
        .and_then(|t| serde_json::from_str::<Value>(t).ok())
    {
        body["tool_calls"] = calls;
    }
    if let Some(feedback) = &message.feedback {
        body["feedback"] = json!(feedback);
    }
    if let Some(id) = &message.tool_call_id {
        body["tool_call_id"] = json!(id);
        body["tool_name"] = json!(message.tool_name);
        body["is_error"] = json!(message.is_error);
    }
    body
}
