//! The ChatKit door end to end: the real binary, the `rules` model or the
//! mock OpenAI server, and every answer checked against the ChatKit protocol
//! (and, in `conformance`, against the SDK's own types). This file holds the
//! client and the checks the suites share; each suite is one concern.

mod access;
mod conformance;
mod errors;
mod streaming;
mod structured;
mod threads;

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::mock_openai::{MockOpenAi, Reply};
use crate::support::{TestDatabase, TestServer, backends, plugins_dir, token};

/// A ChatKit client with one bearer credential (a JWT or a client secret).
/// Everything it receives is kept, for the conformance check.
struct ChatKit<'a> {
    server: &'a TestServer,
    bearer: String,
    client: reqwest::Client,
    seen: std::sync::Mutex<Vec<Value>>,
}

impl<'a> ChatKit<'a> {
    fn new(server: &'a TestServer, user: &str) -> Self {
        ChatKit::with_bearer(server, token(user))
    }

    fn with_bearer(server: &'a TestServer, bearer: String) -> Self {
        ChatKit {
            server,
            bearer,
            client: reqwest::Client::new(),
            seen: Default::default(),
        }
    }

    fn keep(&self, kind: &str, value: &Value) {
        self.seen
            .lock()
            .unwrap()
            .push(json!({"kind": kind, "value": value}));
    }

    async fn send(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(self.server.url("/api/v1/chatkit"))
            .bearer_auth(&self.bearer)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// A non-streaming request: status and JSON body.
    async fn call(&self, kind: &str, params: Value) -> (StatusCode, Value) {
        let body = json!({"type": kind, "params": params});
        self.keep("request", &body);
        let response = self.send(&body).await;
        let status = response.status();
        if status.is_success() {
            assert_eq!(
                response.headers()["content-type"],
                "application/json",
                "{kind}"
            );
        }
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A successful non-streaming request, its answer kept as `answer_kind`.
    async fn ok(&self, kind: &str, params: Value, answer_kind: &str) -> Value {
        let (status, body) = self.call(kind, params).await;
        assert_eq!(status, StatusCode::OK, "{kind}: {body}");
        self.keep(answer_kind, &body);
        body
    }

    /// A streaming request: every event, in order.
    async fn stream(&self, kind: &str, params: Value) -> Vec<Value> {
        let body = json!({"type": kind, "params": params});
        self.keep("request", &body);
        let response = self.send(&body).await;
        assert_eq!(response.status(), StatusCode::OK, "{kind}");
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let text = response.text().await.unwrap();
        let events = parse_events(&text);
        for event in &events {
            self.keep("event", event);
        }
        events
    }

    /// `threads.create` with `text`: its events and the new thread's id.
    async fn create(&self, text: &str) -> (Vec<Value>, String) {
        let events = self
            .stream("threads.create", json!({"input": input(text)}))
            .await;
        let thread = events[0]["thread"]["id"].as_str().unwrap().to_string();
        (events, thread)
    }

    async fn items(&self, thread: &str) -> Vec<Value> {
        let page = self
            .ok(
                "items.list",
                json!({"thread_id": thread, "order": "asc", "limit": 100}),
                "item_page",
            )
            .await;
        page["data"].as_array().unwrap().clone()
    }
}

/// Runs `test` against a server on each backend: SQLite always, PostgreSQL
/// when `WASMGATE_TEST_POSTGRES_URL` is set.
async fn each_backend<F, Fut>(test: F)
where
    F: Fn(TestServer) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for backend in backends() {
        let db = TestDatabase::new(backend).await;
        let server = TestServer::start_with(&plugins_dir(), &[("DATABASE_URL", &db.url)])
            .ready()
            .await;
        test(server).await;
    }
}

/// `GET /api/{user}{path}` with the user's JWT: the JSON answer.
async fn rest_get(server: &TestServer, user: &str, path: &str) -> Value {
    reqwest::Client::new()
        .get(server.url(&format!("/api/{user}{path}")))
        .bearer_auth(token(user))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The real binary with the `openai` provider pointed at `mock`.
async fn server_for(mock: &MockOpenAi) -> TestServer {
    let env = mock.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestServer::start_with(&plugins_dir(), &env).ready().await
}

/// The `data:` payloads of an SSE body; nothing else may be in it.
fn parse_events(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter(|frame| !frame.is_empty())
        .map(|frame| {
            let data = frame
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("a frame that is not one data line: {frame:?}"));
            assert!(!data.contains('\n'), "one line per event: {frame:?}");
            serde_json::from_str(data).unwrap()
        })
        .collect()
}

fn input(text: &str) -> Value {
    json!({"content": [{"type": "input_text", "text": text}], "attachments": [], "inference_options": {}})
}

/// The text deltas of a streamed turn, in order.
fn deltas(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| e["update"]["delta"].as_str())
        .collect()
}

fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e["type"].as_str().unwrap() {
            "thread.item.updated" => format!("updated:{}", e["update"]["type"].as_str().unwrap()),
            "thread.item.added" | "thread.item.done" => format!(
                "{}:{}",
                e["type"].as_str().unwrap(),
                e["item"]["type"].as_str().unwrap()
            ),
            other => other.to_string(),
        })
        .collect()
}

/// The ChatKit protocol's rules for a reply's events: every added item is done later
/// with the same id, updates only touch open items, item ids are unique,
/// and an assistant message's deltas add up to its final text.
fn check_reply_order(events: &[Value]) {
    let mut open: HashSet<String> = HashSet::new();
    let mut done: HashSet<String> = HashSet::new();
    let mut text = std::collections::HashMap::<String, String>::new();
    for event in events {
        match event["type"].as_str().unwrap() {
            "thread.item.added" => {
                let id = event["item"]["id"].as_str().unwrap().to_string();
                assert!(!done.contains(&id) && open.insert(id), "{event}");
            }
            "thread.item.updated" => {
                let id = event["item_id"].as_str().unwrap();
                assert!(open.contains(id), "update of an item not open: {event}");
                if let Some(delta) = event["update"]["delta"].as_str() {
                    text.entry(id.to_string()).or_default().push_str(delta);
                }
            }
            "thread.item.done" => {
                let item = &event["item"];
                let id = item["id"].as_str().unwrap().to_string();
                open.remove(&id);
                assert!(done.insert(id.clone()), "an item done twice: {event}");
                if item["type"] == "assistant_message" {
                    assert_eq!(
                        item["content"][0]["text"].as_str().unwrap(),
                        text.get(&id).map(String::as_str).unwrap_or_default(),
                        "deltas add up to the text"
                    );
                }
            }
            _ => {}
        }
    }
    assert!(open.is_empty(), "items never done: {open:?}");
}
