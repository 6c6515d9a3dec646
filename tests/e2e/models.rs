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
        reply["response"].as_str().unwrap().contains("Added \"Buy milk\""),
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
