//! OpenTelemetry traces: the real binary exporting OTLP/HTTP JSON to a
//! receiver the test runs on loopback. A chat turn with a tool call and an
//! MCP call give spans with the GenAI semantic conventions' attributes,
//! continue the caller's `traceparent` and pass it on to the provider;
//! message content is recorded only when the operator turns it on, and the
//! provider key never.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::mock_openai::{MockOpenAi, text, tool_calls};
use crate::support::{TestServer, plugins_dir, token};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// An OTLP/HTTP receiver keeping every JSON export it is sent.
struct Receiver {
    endpoint: String,
    exports: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let exports: Arc<Mutex<Vec<Value>>> = Arc::default();
        let kept = exports.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: String| {
                let kept = kept.clone();
                async move {
                    kept.lock()
                        .unwrap()
                        .push(serde_json::from_str(&body).unwrap_or(json!({"raw": body})));
                    axum::Json(json!({}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { endpoint, exports }
    }

    fn raw(&self) -> String {
        self.exports
            .lock()
            .unwrap()
            .iter()
            .map(Value::to_string)
            .collect()
    }

    /// Every span received so far.
    fn spans(&self) -> Vec<Value> {
        let exports = self.exports.lock().unwrap();
        let mut spans = Vec::new();
        for export in exports.iter() {
            for resource in export["resourceSpans"].as_array().into_iter().flatten() {
                for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                    spans.extend(scope["spans"].as_array().into_iter().flatten().cloned());
                }
            }
        }
        spans
    }

    /// Waits until `done` holds for the spans received.
    async fn wait_for(&self, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        for _ in 0..200 {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the spans never came; received: {:#?}", self.spans());
    }
}

/// A span attribute as text (strings, and integers however encoded).
fn attribute(span: &Value, key: &str) -> Option<String> {
    let value = &span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)?["value"];
    for kind in ["stringValue", "intValue", "boolValue", "doubleValue"] {
        match &value[kind] {
            Value::String(text) => return Some(text.clone()),
            Value::Null => {}
            other => return Some(other.to_string()),
        }
    }
    None
}

fn with<'a>(spans: &'a [Value], key: &str, value: &str) -> Vec<&'a Value> {
    spans
        .iter()
        .filter(|s| attribute(s, key).as_deref() == Some(value))
        .collect()
}

async fn start(receiver: &Receiver, mock: &MockOpenAi, capture: bool) -> TestServer {
    let mut env: Vec<(&str, String)> = mock.env();
    env.extend([
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.clone()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".into()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        (
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
            capture.to_string(),
        ),
    ]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestServer::start_with(&plugins_dir(), &env).ready().await
}

async fn add_milk(server: &TestServer) {
    let response = reqwest::Client::new()
        .post(server.url("/api/alice/chat"))
        .bearer_auth(token("alice"))
        .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
        .json(&json!({"content": "Add a task to buy milk"}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
}

fn turn() -> Vec<crate::mock_openai::Reply> {
    vec![
        tool_calls(&[("call_1", "add_task", json!({"title": "Buy milk"}))]),
        text("Added it."),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_turn_and_an_mcp_call_export_gen_ai_spans() {
    let receiver = Receiver::start().await;
    let mock = MockOpenAi::start(turn()).await;
    let server = start(&receiver, &mock, false).await;
    add_milk(&server).await;
    let listed = crate::mcp::tool_names(&server, &token("alice")).await;
    assert!(listed.contains(&"list_tasks".to_string()));
    let called = reqwest::Client::new()
        .post(server.url("/mcp"))
        .bearer_auth(token("alice"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(&json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "list_tasks", "arguments": {}}}))
        .send()
        .await
        .unwrap();
    assert!(called.status().is_success());

    let spans = receiver
        .wait_for(|spans| {
            with(spans, "gen_ai.tool.name", "list_tasks").len() == 1
                && with(spans, "gen_ai.operation.name", "chat").len() == 2
                && with(spans, "gen_ai.operation.name", "invoke_agent").len() == 1
        })
        .await;

    // The turn's rounds: one client span each, with the model and usage.
    let chats = with(&spans, "gen_ai.operation.name", "chat");
    let mut usage: Vec<(String, String)> = chats
        .iter()
        .map(|s| {
            assert_eq!(s["name"], "chat gpt-test");
            assert_eq!(s["traceId"], TRACE_ID, "the caller's trace is continued");
            assert_eq!(
                attribute(s, "gen_ai.provider.name").as_deref(),
                Some("openai")
            );
            assert_eq!(
                attribute(s, "gen_ai.request.model").as_deref(),
                Some("gpt-test")
            );
            assert_eq!(
                attribute(s, "gen_ai.response.model").as_deref(),
                Some("gpt-test")
            );
            (
                attribute(s, "gen_ai.usage.input_tokens").unwrap(),
                attribute(s, "gen_ai.usage.output_tokens").unwrap(),
            )
        })
        .collect();
    usage.sort();
    assert_eq!(
        usage,
        [("50".into(), "10".into()), ("70".into(), "5".into())]
    );

    // The tool call the model asked for, in the same trace.
    let [add] = with(&spans, "gen_ai.tool.name", "add_task")[..] else {
        panic!("one add_task span: {spans:#?}");
    };
    assert_eq!(add["name"], "execute_tool add_task");
    assert_eq!(add["traceId"], TRACE_ID);
    assert_eq!(
        attribute(add, "gen_ai.operation.name").as_deref(),
        Some("execute_tool")
    );
    assert_eq!(
        attribute(add, "gen_ai.tool.call.id").as_deref(),
        Some("call_1")
    );

    // The MCP call's tool span.
    let mcp = with(&spans, "gen_ai.tool.name", "list_tasks")[0];
    assert_eq!(attribute(mcp, "wasmgate.door").as_deref(), Some("mcp"));

    // Passed on to the provider: its request is part of the trace.
    for request in mock.requests() {
        let parent = request.traceparent.expect("a traceparent to the provider");
        assert!(parent.contains(TRACE_ID), "{parent}");
    }

    // No content without the operator's say-so, and never the key.
    let raw = receiver.raw();
    for absent in [
        "gen_ai.output.messages",
        "gen_ai.tool.call.arguments",
        "Buy milk",
        "sk-test-key",
    ] {
        assert!(!raw.contains(absent), "{absent} was exported");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_content_is_exported_only_when_enabled() {
    let receiver = Receiver::start().await;
    let mock = MockOpenAi::start(turn()).await;
    let server = start(&receiver, &mock, true).await;
    add_milk(&server).await;
    let spans = receiver
        .wait_for(|spans| with(spans, "gen_ai.operation.name", "chat").len() == 2)
        .await;
    let add = with(&spans, "gen_ai.tool.name", "add_task")[0];
    assert!(
        attribute(add, "gen_ai.tool.call.arguments")
            .unwrap()
            .contains("Buy milk")
    );
    assert!(
        attribute(add, "gen_ai.tool.call.result")
            .unwrap()
            .contains("created")
    );
    let answered: Vec<String> = with(&spans, "gen_ai.operation.name", "chat")
        .iter()
        .filter_map(|s| attribute(s, "gen_ai.output.messages"))
        .collect();
    assert!(answered.iter().any(|t| t == "Added it."), "{answered:?}");
    assert!(!receiver.raw().contains("sk-test-key"));
}
