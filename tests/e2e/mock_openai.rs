//! A mock model server on loopback: the only fake in the suite (the
//! model). It answers `POST /v1/chat/completions` and `POST /v1/responses`
//! (OpenAI) and `POST /v1/messages` (Anthropic) from one script, and records every request it
//! receives, with the headers a key may ride in.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One scripted answer.
#[derive(Clone)]
pub enum Reply {
    /// A JSON body with this status.
    Json(u16, Value),
    /// Raw bytes with this status (and optional headers).
    Raw(u16, Vec<(&'static str, &'static str)>, &'static str),
    /// A server-sent-event stream of these `data:` payloads, in order.
    Stream(Vec<Value>),
    /// Anthropic's and the Responses API's stream: each payload as `event:
    /// <its type>` and `data:`, with no `[DONE]`.
    Events(Vec<Value>),
    /// Waits, then answers with the inner reply.
    Delayed(Duration, Box<Reply>),
}

#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub authorization: Option<String>,
    pub x_api_key: Option<String>,
    pub anthropic_version: Option<String>,
    pub traceparent: Option<String>,
    pub body: Value,
}

#[derive(Clone, Default)]
struct Shared {
    script: Arc<Mutex<VecDeque<Reply>>>,
    /// Answer used when the script is empty.
    fallback: Arc<Mutex<Option<Reply>>>,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

pub struct MockOpenAi {
    pub base_url: String,
    shared: Shared,
}

impl MockOpenAi {
    pub async fn start(script: Vec<Reply>) -> MockOpenAi {
        let shared = Shared::default();
        shared.script.lock().unwrap().extend(script);
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(answer))
            .route("/v1/messages", axum::routing::post(answer))
            .route("/v1/responses", axum::routing::post(answer))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        MockOpenAi {
            base_url: format!("http://{addr}/v1"),
            shared,
        }
    }

    /// Answer every request beyond the script with `reply`.
    pub fn always(&self, reply: Reply) {
        *self.shared.fallback.lock().unwrap() = Some(reply);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Environment for a wasmgate server using this mock as Anthropic.
    pub fn anthropic_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("WASMGATE_MODEL", "anthropic:claude-test".into()),
            ("ANTHROPIC_BASE_URL", self.base_url.clone()),
            ("ANTHROPIC_API_KEY", "sk-ant-test-key".into()),
        ]
    }

    /// Environment for a wasmgate server using this mock as its model.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("WASMGATE_MODEL", "openai:gpt-test".into()),
            ("OPENAI_BASE_URL", self.base_url.clone()),
            ("OPENAI_API_KEY", "sk-test-key".into()),
        ]
    }
}

async fn answer(
    State(shared): State<Shared>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    shared.requests.lock().unwrap().push(Recorded {
        path: uri.path().to_string(),
        authorization: header("authorization"),
        x_api_key: header("x-api-key"),
        anthropic_version: header("anthropic-version"),
        traceparent: header("traceparent"),
        body: serde_json::from_str(&body).unwrap_or(Value::Null),
    });
    let next = shared.script.lock().unwrap().pop_front();
    let reply = next.or_else(|| shared.fallback.lock().unwrap().clone());
    match reply {
        Some(reply) => render(reply).await,
        None => (StatusCode::INTERNAL_SERVER_ERROR, "script exhausted").into_response(),
    }
}

async fn render(reply: Reply) -> Response {
    match reply {
        Reply::Json(status, body) => {
            (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
        }
        Reply::Raw(status, headers, body) => {
            let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
            for (name, value) in headers {
                response.headers_mut().insert(name, value.parse().unwrap());
            }
            response
        }
        Reply::Stream(chunks) => {
            let frames = chunks
                .into_iter()
                .map(|chunk| format!("data: {chunk}\n\n"))
                .chain(["data: [DONE]\n\n".to_string()]);
            let stream = futures::stream::iter(frames).then(|frame| async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok::<_, std::convert::Infallible>(frame)
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(stream))
                .unwrap()
        }
        Reply::Events(events) => {
            let frames = events.into_iter().map(|event| {
                format!(
                    "event: {}\ndata: {event}\n\n",
                    event["type"].as_str().unwrap_or("message")
                )
            });
            let stream = futures::stream::iter(frames).then(|frame| async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                Ok::<_, std::convert::Infallible>(frame)
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(stream))
                .unwrap()
        }
        Reply::Delayed(delay, inner) => {
            tokio::time::sleep(delay).await;
            Box::pin(render(*inner)).await
        }
    }
}

use futures::StreamExt;

/// A non-streamed completion that asks for these tool calls.
pub fn tool_calls(calls: &[(&str, &str, Value)]) -> Reply {
    let calls: Vec<Value> = calls
        .iter()
        .map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}}))
        .collect();
    Reply::Json(
        200,
        json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-test",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": calls}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}
        }),
    )
}

/// A non-streamed completion that answers with text.
pub fn text(content: &str) -> Reply {
    Reply::Json(
        200,
        json!({
            "id": "chatcmpl-2", "object": "chat.completion", "model": "gpt-test",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 70, "completion_tokens": 5, "total_tokens": 75}
        }),
    )
}
