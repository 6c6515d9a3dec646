//! Models and what they cost, on the real binary with the mock model:
//! token usage stored per round and read back per day and model (matching
//! what the mock reported, also in `/metrics`), the daily token budget's
//! 429 and its reset at the next UTC day, fallback down `WASMGATE_MODEL`'s
//! list from an unavailable provider (and none from a request the provider
//! refused), and the circuit breaker that skips a provider that keeps
//! failing.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::mock_openai::{MockOpenAi, Reply, text, tool_calls};
use crate::support::{TestServer, plugins_dir, token};

const USER: &str = "alice";

async fn start(mock: &MockOpenAi, extra: &[(&'static str, &str)]) -> TestServer {
    let mut env: Vec<(&str, String)> = mock.env();
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestServer::start_with(&plugins_dir(), &env).ready().await
}

async fn say(
    server: &TestServer,
    content: &str,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let response = reqwest::Client::new()
        .post(server.url(&format!("/api/{USER}/chat")))
        .bearer_auth(token(USER))
        .json(&json!({ "content": content }))
        .send()
        .await
        .unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    (
        status,
        headers,
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn usage(server: &TestServer, query: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .get(server.url(&format!("/api/{USER}/usage{query}")))
        .bearer_auth(token(USER))
        .send()
        .await
        .unwrap();
    (
        response.status(),
        response.json().await.unwrap_or(Value::Null),
    )
}

/// A turn of two rounds: `add_task` (50 in, 10 out), then text (70 in, 5 out).
fn add_task_turn() -> Vec<Reply> {
    vec![
        tool_calls(&[("call_1", "add_task", json!({"title": "Buy milk"}))]),
        text("Added it."),
    ]
}

#[tokio::test]
async fn usage_is_stored_per_round_and_totalled_per_day_and_model() {
    let mock = MockOpenAi::start(add_task_turn()).await;
    let server = start(&mock, &[]).await;
    let (status, _, reply) = say(&server, "Add a task to buy milk").await;
    assert_eq!(status, StatusCode::OK, "{reply}");

    let (status, body) = usage(&server, "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let days = body["days"].as_array().unwrap();
    assert_eq!(days.len(), 1, "{body}");
    assert_eq!(days[0]["provider"], "openai");
    assert_eq!(days[0]["model"], "gpt-test");
    assert_eq!(days[0]["rounds"], 2);
    assert_eq!(days[0]["input_tokens"], 120);
    assert_eq!(days[0]["output_tokens"], 15);
    assert_eq!(body["total"]["input_tokens"], 120);
    assert_eq!(body["today_tokens"], 135);
    assert_eq!(body["daily_budget"], Value::Null);

    // Another user's usage is not this token's.
    let other = reqwest::Client::new()
        .get(server.url("/api/bob/usage"))
        .bearer_auth(token(USER))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::FORBIDDEN);
    // A day to start from, or a bad one.
    let (_, tomorrow) = usage(&server, "?since=2999-01-01").await;
    assert_eq!(tomorrow["days"], json!([]));
    let (status, body) = usage(&server, "?since=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "wasmgate_llm_tokens_total{provider=\"openai\",model=\"gpt-test\",kind=\"input\"} 120",
        "wasmgate_llm_tokens_total{provider=\"openai\",model=\"gpt-test\",kind=\"output\"} 15",
        "wasmgate_llm_round_duration_seconds_count{provider=\"openai\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
}

#[tokio::test]
async fn the_daily_budget_refuses_turns_until_the_next_utc_day() {
    let mock = MockOpenAi::start(add_task_turn()).await;
    mock.always(text("Still here."));
    let server = start(&mock, &[("WASMGATE_USER_DAILY_TOKENS", "100")]).await;
    // The turn in progress may finish over the budget (135 tokens)...
    let (status, _, _) = say(&server, "Add a task to buy milk").await;
    assert_eq!(status, StatusCode::OK);
    // ...the next is refused until midnight UTC, and the model is not asked.
    let asked = mock.requests().len();
    let (status, headers, body) = say(&server, "And another").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "budget_exceeded");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let to_midnight = 86_400 - now % 86_400;
    assert!(
        retry_after.abs_diff(to_midnight) <= 5,
        "Retry-After {retry_after} s, midnight UTC in {to_midnight} s"
    );
    assert_eq!(mock.requests().len(), asked);
    let (_, body) = usage(&server, "").await;
    assert_eq!(body["daily_budget"], 100);

    // The day turns: what was spent counts for yesterday, and turns go on.
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        server.data_dir().join("wasmgate.db").display()
    ))
    .await
    .unwrap();
    sqlx::query("UPDATE llm_usage SET created_at = '2000-01-01T12:00:00Z'")
        .execute(&db)
        .await
        .unwrap();
    let (status, _, body) = say(&server, "And another").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"], "Still here.");
}

#[tokio::test]
async fn an_unavailable_provider_falls_back_to_the_next_and_a_refused_request_does_not() {
    let mock = MockOpenAi::start(vec![]).await;
    mock.always(Reply::Json(
        503,
        json!({"error": {"message": "overloaded", "type": "server_error"}}),
    ));
    let list = [("WASMGATE_MODEL", "openai:gpt-test,rules")];
    let server = start(&mock, &list).await;
    let (status, _, reply) = say(&server, "Add a task to buy milk").await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert!(
        reply["response"]
            .as_str()
            .unwrap()
            .contains("Added \"Buy milk\""),
        "the rules model answered: {reply}"
    );
    assert!(!mock.requests().is_empty(), "openai was asked first");
    let (_, body) = usage(&server, "").await;
    let answered: Vec<&Value> = body["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["provider"])
        .collect();
    assert_eq!(answered, [&json!("rules")], "{body}");

    // A 400 is the request's fault: no other provider is asked.
    let refusing = MockOpenAi::start(vec![]).await;
    refusing.always(Reply::Json(
        400,
        json!({"error": {"message": "bad tool schema", "type": "invalid_request_error"}}),
    ));
    let server = start(&refusing, &list).await;
    let (status, _, body) = say(&server, "Add a task to buy milk").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"]["code"], "provider_error");
    assert_eq!(refusing.requests().len(), 1, "a 400 is not retried");
    let (_, body) = usage(&server, "").await;
    assert_eq!(body["days"], json!([]), "{body}");
}

#[tokio::test]
async fn a_provider_that_keeps_failing_is_skipped_for_its_cool_down() {
    let mock = MockOpenAi::start(vec![]).await;
    mock.always(Reply::Json(503, json!({"error": {"message": "down"}})));
    let server = start(
        &mock,
        &[
            ("WASMGATE_MODEL", "openai:gpt-test,rules"),
            ("WASMGATE_BREAKER_FAILURES", "2"),
            ("WASMGATE_BREAKER_COOLDOWN_SECS", "600"),
        ],
    )
    .await;
    // "What's pending?" takes the rules model two rounds (list_tasks, then
    // the answer), and openai fails each (with its retries): two failures
    // in a row, so from the second turn on openai is not asked at all.
    let mut asked = Vec::new();
    for _ in 0..3 {
        let (status, _, reply) = say(&server, "What's pending?").await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        asked.push(mock.requests().len());
    }
    assert!(asked[0] >= 2, "{asked:?}");
    assert_eq!(
        asked, [asked[0]; 3],
        "the open breaker still sent requests: {asked:?}"
    );
}

/// The mock as Anthropic, and a turn of two tool calls then text.
async fn anthropic(script: Vec<Reply>) -> (MockOpenAi, TestServer) {
    let mock = MockOpenAi::start(script).await;
    let env = mock.anthropic_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = TestServer::start_with(&plugins_dir(), &env).ready().await;
    (mock, server)
}

/// What every request to Anthropic must carry: the key in `x-api-key`
/// only, the API version, the system prompt as its own field.
fn sent_as_anthropic_takes_it(mock: &MockOpenAi) -> Vec<Value> {
    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(request.path, "/v1/messages");
        assert_eq!(request.x_api_key.as_deref(), Some("sk-ant-test-key"));
        assert_eq!(request.authorization, None, "the key went out twice");
        assert_eq!(request.anthropic_version.as_deref(), Some("2023-06-01"));
        assert_eq!(request.body["model"], "claude-test");
        assert!(request.body["max_tokens"].as_u64().unwrap() > 0);
        assert!(
            request.body["system"]
                .as_str()
                .unwrap()
                .contains("task assistant"),
            "{}",
            request.body
        );
        assert!(
            request.body["messages"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| m["role"] == "user" || m["role"] == "assistant"),
            "{}",
            request.body
        );
        let tools = request.body["tools"].as_array().unwrap();
        assert!(
            tools
                .iter()
                .any(|t| t["name"] == "add_task" && t["input_schema"]["type"] == "object")
        );
    }
    // The second round answers both calls in one user turn.
    let messages = requests[1].body["messages"].as_array().unwrap().clone();
    let assistant = &messages[messages.len() - 2];
    let uses: Vec<&Value> = assistant["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .collect();
    assert_eq!(uses.len(), 2, "{assistant}");
    assert_eq!(uses[0]["input"], json!({"title": "Buy milk"}));
    let results = messages.last().unwrap();
    assert_eq!(results["role"], "user");
    let ids: Vec<&Value> = results["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| &b["tool_use_id"])
        .collect();
    assert_eq!(ids, [&json!("toolu_1"), &json!("toolu_2")], "{results}");
    messages
}

async fn both_tasks_added(server: &TestServer) {
    let listed: Value = reqwest::Client::new()
        .get(server.url(&format!("/api/{USER}/tasks")))
        .bearer_auth(token(USER))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut titles: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    titles.sort();
    assert_eq!(titles, ["Buy milk", "Walk the dog"]);
}

#[tokio::test]
async fn the_anthropic_adapter_runs_a_two_tool_call_turn() {
    let (mock, server) = anthropic(vec![
        Reply::Json(200, json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
            "content": [
                {"type": "text", "text": "On it."},
                {"type": "tool_use", "id": "toolu_1", "name": "add_task", "input": {"title": "Buy milk"}},
                {"type": "tool_use", "id": "toolu_2", "name": "add_task", "input": {"title": "Walk the dog"}}
            ],
            "stop_reason": "tool_use", "usage": {"input_tokens": 40, "output_tokens": 12}
        })),
        Reply::Json(200, json!({
            "id": "msg_2", "type": "message", "role": "assistant", "model": "claude-test",
            "content": [{"type": "text", "text": "Added both."}],
            "stop_reason": "end_turn", "usage": {"input_tokens": 90, "output_tokens": 4}
        })),
    ])
    .await;
    let (status, _, reply) = say(&server, "Add buy milk and walk the dog").await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["response"], "Added both.");
    assert_eq!(reply["tool_calls"].as_array().unwrap().len(), 2);
    sent_as_anthropic_takes_it(&mock);
    both_tasks_added(&server).await;

    let (_, body) = usage(&server, "").await;
    assert_eq!(body["days"][0]["provider"], "anthropic");
    assert_eq!(body["days"][0]["model"], "claude-test");
    assert_eq!(body["total"]["input_tokens"], 130);
    assert_eq!(body["total"]["output_tokens"], 16);
}

#[tokio::test]
async fn the_anthropic_adapter_streams_text_and_split_tool_input() {
    let delta = |index: u64, delta: Value| json!({"type": "content_block_delta", "index": index, "delta": delta});
    let tool = |index: u64, id: &str| {
        json!({"type": "content_block_start", "index": index,
        "content_block": {"type": "tool_use", "id": id, "name": "add_task", "input": {}}})
    };
    let (mock, server) = anthropic(vec![
        Reply::Events(vec![
            json!({"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 40, "output_tokens": 1}}}),
            tool(0, "toolu_1"),
            delta(0, json!({"type": "input_json_delta", "partial_json": "{\"title\": \"Buy"})),
            delta(0, json!({"type": "input_json_delta", "partial_json": " milk\"}"})),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "ping"}),
            tool(1, "toolu_2"),
            delta(1, json!({"type": "input_json_delta", "partial_json": "{\"title\": \"Walk the dog\"}"})),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 12}}),
            json!({"type": "message_stop"}),
        ]),
        Reply::Events(vec![
            json!({"type": "message_start", "message": {"id": "msg_2", "usage": {"input_tokens": 90, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            delta(0, json!({"type": "text_delta", "text": "Added "})),
            delta(0, json!({"type": "text_delta", "text": "both."})),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 4}}),
            json!({"type": "message_stop"}),
        ]),
    ])
    .await;
    let response = reqwest::Client::new()
        .post(server.url(&format!("/api/{USER}/chat")))
        .bearer_auth(token(USER))
        .header("accept", "text/event-stream")
        .json(&json!({"content": "Add buy milk and walk the dog"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.text().await.unwrap();
    let deltas: Vec<&str> = body
        .split("\n\n")
        .filter(|frame| frame.starts_with("event: delta"))
        .collect();
    assert_eq!(deltas.len(), 2, "{body}");
    assert!(body.contains("Added both."), "{body}");
    assert!(mock.requests().iter().all(|r| r.body["stream"] == true));
    sent_as_anthropic_takes_it(&mock);
    both_tasks_added(&server).await;
    let (_, usage) = usage(&server, "").await;
    assert_eq!(usage["total"]["input_tokens"], 130);
    assert_eq!(usage["total"]["output_tokens"], 16);
}

/// The mock as the OpenAI Responses API.
async fn responses(script: Vec<Reply>) -> (MockOpenAi, TestServer) {
    let mock = MockOpenAi::start(script).await;
    let mut env = mock.env();
    env[0].1 = "openai-responses:gpt-test".into();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = TestServer::start_with(&plugins_dir(), &env).ready().await;
    (mock, server)
}

/// What every Responses request must carry, and the second round's input:
/// both calls and both their outputs.
fn sent_as_responses_takes_it(mock: &MockOpenAi) {
    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(request.path, "/v1/responses");
        assert_eq!(request.authorization.as_deref(), Some("Bearer sk-test-key"));
        assert_eq!(request.body["model"], "gpt-test");
        assert_eq!(request.body["store"], false);
        assert!(
            request.body["instructions"]
                .as_str()
                .unwrap()
                .contains("task assistant"),
            "{}",
            request.body
        );
        let tools = request.body["tools"].as_array().unwrap();
        assert!(
            tools
                .iter()
                .any(|t| t["type"] == "function" && t["name"] == "add_task")
        );
    }
    let input = requests[1].body["input"].as_array().unwrap();
    let of = |kind: &str| -> Vec<&Value> {
        input
            .iter()
            .filter(|i| i["type"] == kind)
            .map(|i| &i["call_id"])
            .collect()
    };
    let ids = [&json!("call_1"), &json!("call_2")];
    assert_eq!(of("function_call"), ids, "{input:?}");
    assert_eq!(of("function_call_output"), ids, "{input:?}");
}

fn response_with(output: Value, usage: (u64, u64)) -> Value {
    json!({"id": "resp_1", "object": "response", "status": "completed", "model": "gpt-test",
           "output": output, "usage": {"input_tokens": usage.0, "output_tokens": usage.1}})
}

fn two_calls() -> Value {
    json!([
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "add_task", "arguments": "{\"title\": \"Buy milk\"}"},
        {"type": "function_call", "id": "fc_2", "call_id": "call_2", "name": "add_task", "arguments": "{\"title\": \"Walk the dog\"}"}
    ])
}

fn said(text: &str) -> Value {
    json!([{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}])
}

#[tokio::test]
async fn the_responses_adapter_runs_a_two_tool_call_turn() {
    let (mock, server) = responses(vec![
        Reply::Json(200, response_with(two_calls(), (40, 12))),
        Reply::Json(200, response_with(said("Added both."), (90, 4))),
    ])
    .await;
    let (status, _, reply) = say(&server, "Add buy milk and walk the dog").await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["response"], "Added both.");
    sent_as_responses_takes_it(&mock);
    both_tasks_added(&server).await;
    let (_, body) = usage(&server, "").await;
    assert_eq!(body["days"][0]["provider"], "openai-responses");
    assert_eq!(body["total"]["input_tokens"], 130);
    assert_eq!(body["total"]["output_tokens"], 16);
}

#[tokio::test]
async fn the_responses_adapter_streams_text_and_split_arguments() {
    let added = |index: u64, call: &str| {
        json!({"type": "response.output_item.added", "output_index": index,
        "item": {"type": "function_call", "id": format!("fc_{index}"), "call_id": call, "name": "add_task", "arguments": ""}})
    };
    let args = |index: u64, delta: &str| {
        json!({"type": "response.function_call_arguments.delta",
        "output_index": index, "item_id": format!("fc_{index}"), "delta": delta})
    };
    let text = |delta: &str| {
        json!({"type": "response.output_text.delta", "output_index": 0,
        "content_index": 0, "item_id": "msg_1", "delta": delta})
    };
    let completed = |response: Value| json!({"type": "response.completed", "response": response});
    let (mock, server) = responses(vec![
        Reply::Events(vec![
            json!({"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}}),
            added(0, "call_1"),
            args(0, "{\"title\": \"Buy"),
            args(0, " milk\"}"),
            added(1, "call_2"),
            args(1, "{\"title\": \"Walk the dog\"}"),
            completed(response_with(two_calls(), (40, 12))),
        ]),
        Reply::Events(vec![
            text("Added "),
            text("both."),
            completed(response_with(said("Added both."), (90, 4))),
        ]),
    ])
    .await;
    let response = reqwest::Client::new()
        .post(server.url(&format!("/api/{USER}/chat")))
        .bearer_auth(token(USER))
        .header("accept", "text/event-stream")
        .json(&json!({"content": "Add buy milk and walk the dog"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.text().await.unwrap();
    let deltas = body
        .split("\n\n")
        .filter(|frame| frame.starts_with("event: delta"))
        .count();
    assert_eq!(deltas, 2, "{body}");
    assert!(body.contains("Added both."), "{body}");
    assert!(mock.requests().iter().all(|r| r.body["stream"] == true));
    sent_as_responses_takes_it(&mock);
    both_tasks_added(&server).await;
}
