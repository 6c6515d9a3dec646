//! The audit log end to end: a tool call through each door (chat, ChatKit,
//! MCP) appears once, with its plugin's name, version and digest, the
//! arguments redacted, the outcome and duration; the admin API filters and
//! pages it, and no one else reads it.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::mcp::{call, connect};
use crate::mock_openai::{MockOpenAi, text, tool_calls};
use crate::support::{TestDatabase, TestServer, backends, plugins_dir, token};

const ADMIN: &str = "admin-token-for-audit-tests";

async fn audit(server: &TestServer, query: &str) -> Value {
    let response = reqwest::Client::new()
        .get(server.url(&format!("/admin/audit{query}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{query}");
    response.json().await.unwrap()
}

/// The log once it holds `n` entries (the writer stores in the background).
async fn entries(server: &TestServer, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = audit(server, "").await;
        let entries = page["entries"].as_array().unwrap().clone();
        if entries.len() >= n || Instant::now() > deadline {
            return entries;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn every_door_s_tool_calls_are_audited_once() {
    for backend in backends() {
        let database = TestDatabase::new(backend).await;
        audited_once_on(&database.url).await;
    }
}

async fn audited_once_on(database_url: &str) {
    let mock = MockOpenAi::start(vec![
        tool_calls(&[("call_1", "add_task", json!({"title": "Buy milk"}))]),
        text("Added."),
        tool_calls(&[("call_2", "list_tasks", json!({}))]),
        text("You have one task."),
    ])
    .await;
    let mut env: Vec<(&str, String)> = mock.env();
    env.push(("WASMGATE_ADMIN_TOKEN", ADMIN.into()));
    env.push(("DATABASE_URL", database_url.into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = TestServer::start_with(&plugins_dir(), &env).ready().await;
    let client = reqwest::Client::new();

    // Chat.
    let reply: Value = client
        .post(server.url("/api/alice/chat"))
        .bearer_auth(token("alice"))
        .json(&json!({"content": "Add a task to buy milk"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["response"], "Added.", "{reply}");
    // ChatKit.
    let input = json!({"content": [{"type": "input_text", "text": "What is on my list?"}],
        "attachments": [], "inference_options": {}});
    let stream = client
        .post(server.url("/api/v1/chatkit"))
        .bearer_auth(token("alice"))
        .json(&json!({"type": "threads.create", "params": {"input": input}}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(stream.contains("You have one task."), "{stream}");
    // MCP, with a secret among the arguments.
    let alice = connect(&server, "alice").await;
    call(
        &alice,
        "add_task",
        json!({"title": "Walk the dog", "description": "sk-live0123456789abcdef"}),
    )
    .await;

    let entries = entries(&server, 3).await;
    assert_eq!(entries.len(), 3, "one entry per call: {entries:#?}");
    let doors: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e["door"].as_str().unwrap(), e["tool"].as_str().unwrap()))
        .collect();
    assert_eq!(
        doors,
        [
            ("mcp", "add_task"),
            ("chatkit", "list_tasks"),
            ("chat", "add_task")
        ],
        "newest first"
    );
    for entry in &entries {
        assert_eq!(entry["user"], "alice");
        assert_eq!(entry["outcome"], "ok", "{entry}");
        assert_eq!(entry["version"], "0.1.0");
        assert_eq!(entry["sha256"].as_str().unwrap().len(), 64, "{entry}");
        assert!(entry["duration_us"].as_i64().unwrap() > 0, "{entry}");
        assert_eq!(entry["hosts"], json!([]));
    }
    assert_eq!(entries[0]["plugin"], "add-task");
    assert_eq!(entries[1]["plugin"], "list-tasks");
    assert_eq!(entries[2]["arguments"], json!({"title": "Buy milk"}));
    assert_eq!(
        entries[0]["arguments"],
        json!({"title": "Walk the dog", "description": "[redacted]"}),
        "a credential-looking value is redacted"
    );

    // Filters and pages.
    let only = audit(&server, "?plugin=list-tasks").await;
    assert_eq!(only["entries"].as_array().unwrap().len(), 1);
    assert_eq!(audit(&server, "?user=bob").await["entries"], json!([]));
    let since_later = audit(&server, "?since=2999-01-01T00:00:00Z").await;
    assert_eq!(since_later["entries"], json!([]));
    let first = audit(&server, "?limit=2").await;
    assert_eq!(first["entries"].as_array().unwrap().len(), 2);
    assert_eq!(first["has_more"], true);
    let next = audit(
        &server,
        &format!("?limit=2&before={}", first["next_before"]),
    )
    .await;
    assert_eq!(next["entries"][0], entries[2], "{next}");
    assert_eq!(next["has_more"], false);

    // Only the operator reads it; bad queries are 400.
    for (bearer, query, status) in [
        (token("alice"), "", StatusCode::UNAUTHORIZED),
        (
            ADMIN.to_string(),
            "?since=yesterday",
            StatusCode::BAD_REQUEST,
        ),
        (ADMIN.to_string(), "?limit=0", StatusCode::BAD_REQUEST),
    ] {
        let response = client
            .get(server.url(&format!("/admin/audit{query}")))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{query}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["message"].is_string(), "{body}");
    }
}
