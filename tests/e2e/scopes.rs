//! OAuth scopes: a token's `scope` claim chooses the tools it sees and
//! calls, through MCP, chat and ChatKit alike, and the task routes it may
//! use. A `tasks:read` token gets `list_tasks` only; a tool it may not use
//! is a 403 `insufficient_scope` over MCP (RFC 6750) and unknown to the
//! model in a chat. A token without a `scope` claim keeps every tool.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::mcp::tool_names;
use crate::mock_openai::{MockOpenAi, text, tool_calls};
use crate::support::{TestServer, plugins_dir, scoped_token, token};

const READ_ONLY: &str = "tasks:read";

/// One MCP request as `bearer`.
async fn mcp(server: &TestServer, bearer: &str, method: &str, params: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.url("/mcp"))
        .bearer_auth(bearer)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .unwrap()
}

/// The tools the model was offered in its first request.
fn offered_tools(mock: &MockOpenAi) -> Vec<String> {
    mock.requests()[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_read_token_lists_and_calls_only_list_tasks_over_mcp() {
    let server = TestServer::start(&plugins_dir()).ready().await;
    let reader = scoped_token("alice", READ_ONLY);

    assert_eq!(tool_names(&server, &reader).await, ["list_tasks"]);
    // Without a scope claim: every tool, as before scopes existed.
    assert_eq!(tool_names(&server, &token("alice")).await.len(), 5);
    // `tasks:write` alone: the four that change tasks.
    let writer = scoped_token("alice", "tasks:write");
    assert_eq!(
        tool_names(&server, &writer).await,
        ["add_task", "complete_task", "delete_task", "update_task"]
    );

    let listed = mcp(
        &server,
        &reader,
        "tools/call",
        json!({"name": "list_tasks", "arguments": {}}),
    )
    .await;
    assert_eq!(listed.status(), StatusCode::OK);
    let listed: Value = listed.json().await.unwrap();
    assert_eq!(listed["result"]["isError"], false, "{listed}");

    let refused = mcp(
        &server,
        &reader,
        "tools/call",
        json!({"name": "add_task", "arguments": {"title": "Sneaky"}}),
    )
    .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let challenge = refused.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.starts_with("Bearer error=\"insufficient_scope\", scope=\"tasks:write\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("resource_metadata=\"")
            && challenge.contains("/.well-known/oauth-protected-resource/mcp\""),
        "{challenge}"
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "insufficient_scope", "{body}");
    assert!(
        server.task_ids("alice").await.is_empty(),
        "nothing was added"
    );

    // A scope that names no tool at all leaves none, and the metadata
    // lists the scopes the tools declare.
    assert!(
        tool_names(&server, &scoped_token("alice", "profile"))
            .await
            .is_empty()
    );
    let metadata: Value = reqwest::get(server.url("/.well-known/oauth-protected-resource/mcp"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        metadata["scopes_supported"],
        json!(["tasks:read", "tasks:write"])
    );
}

#[tokio::test]
async fn a_read_token_gets_only_list_tasks_in_a_chat() {
    // The model asks for a tool the token may not use, then for the one it may.
    let mock = MockOpenAi::start(vec![
        tool_calls(&[("call_1", "add_task", json!({"title": "Sneaky"}))]),
        tool_calls(&[("call_2", "list_tasks", json!({}))]),
        text("You have no tasks."),
    ])
    .await;
    let pairs = mock.env();
    let env: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = TestServer::start_with(&plugins_dir(), &env).ready().await;
    let response = reqwest::Client::new()
        .post(server.url("/api/alice/chat"))
        .bearer_auth(scoped_token("alice", READ_ONLY))
        .json(&json!({"content": "Add a sneaky task"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["response"], "You have no tasks.", "{reply}");

    assert_eq!(offered_tools(&mock), ["ask_user", "list_tasks"]);
    let calls = reply["tool_calls"].as_array().unwrap();
    assert_eq!(calls[0]["name"], "add_task");
    assert_eq!(calls[0]["is_error"], true, "{reply}");
    assert_eq!(calls[1]["name"], "list_tasks");
    assert_eq!(calls[1]["is_error"], false, "{reply}");
    assert!(
        server.task_ids("alice").await.is_empty(),
        "nothing was added"
    );
}

#[tokio::test]
async fn a_chatkit_session_keeps_the_scopes_of_the_token_that_made_it() {
    let mock = MockOpenAi::start(vec![text("Hello.")]).await;
    let pairs = mock.env();
    let env: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = TestServer::start_with(&plugins_dir(), &env).ready().await;
    let client = reqwest::Client::new();
    let session: Value = client
        .post(server.url("/api/v1/chatkit/sessions"))
        .bearer_auth(scoped_token("alice", READ_ONLY))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = session["client_secret"].as_str().unwrap();
    let streamed = client
        .post(server.url("/api/v1/chatkit"))
        .bearer_auth(secret)
        .json(&json!({"type": "threads.create", "params": {"input": {
            "content": [{"type": "input_text", "text": "Hi"}],
            "attachments": [], "inference_options": {}}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), StatusCode::OK);
    streamed.text().await.unwrap();
    assert_eq!(offered_tools(&mock), ["ask_user", "list_tasks"]);
}

#[tokio::test]
async fn the_task_routes_need_the_scope_of_what_they_do() {
    let server = TestServer::start(&plugins_dir()).ready().await;
    let client = reqwest::Client::new();
    let tasks = server.url("/api/alice/tasks");

    let reader = scoped_token("alice", READ_ONLY);
    let read = client
        .get(&tasks)
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let write = client
        .post(&tasks)
        .bearer_auth(&reader)
        .json(&json!({"title": "Sneaky"}))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), StatusCode::FORBIDDEN);
    assert!(
        write.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"insufficient_scope\", scope=\"tasks:write\""),
        "{:?}",
        write.headers()
    );
    let body: Value = write.json().await.unwrap();
    assert_eq!(body["error"]["code"], "insufficient_scope");

    let writer = scoped_token("alice", "tasks:write");
    let created = client
        .post(&tasks)
        .bearer_auth(&writer)
        .json(&json!({"title": "Allowed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let denied_read = client
        .get(&tasks)
        .bearer_auth(&writer)
        .send()
        .await
        .unwrap();
    assert_eq!(denied_read.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_policy_can_change_the_scope_a_tool_needs() {
    let dir =
        crate::support::stock_plugin_dir("[plugins.add-task.scopes]\nadd_task = \"tasks:read\"\n");
    let server = TestServer::start(dir.path()).ready().await;
    assert_eq!(
        tool_names(&server, &scoped_token("alice", READ_ONLY)).await,
        ["add_task", "list_tasks"]
    );
}
