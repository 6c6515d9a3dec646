//! `/mcp` with rmcp's own client: the five task tools for the token's user,
//! agreeing with the REST view, and nothing of anyone else's.

use reqwest::StatusCode;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult, object};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

use crate::support::{TestServer, plugins_dir, token};

pub(crate) async fn connect(
    server: &TestServer,
    user: &str,
) -> RunningService<rmcp::RoleClient, ()> {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(server.url("/mcp")).auth_header(token(user)),
    );
    ().serve(transport).await.expect("initialize succeeds")
}

/// The version the test greeter answers with over MCP (null when absent).
pub(crate) async fn greets(server: &TestServer) -> Value {
    let body: Value = reqwest::Client::new()
        .post(server.url("/mcp"))
        .bearer_auth(token("alice"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "greet", "arguments": {}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["result"]["structuredContent"]["version"].clone()
}

/// The tools `tools/list` shows `bearer`: one JSON-RPC POST, no session.
pub(crate) async fn tool_names(server: &TestServer, bearer: &str) -> Vec<String> {
    let body: Value = reqwest::Client::new()
        .post(server.url("/mcp"))
        .bearer_auth(bearer)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

pub(crate) async fn call(
    client: &RunningService<rmcp::RoleClient, ()>,
    tool: &str,
    args: Value,
) -> CallToolResult {
    client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(object(args)))
        .await
        .unwrap_or_else(|err| panic!("{tool}: {err}"))
}

#[tokio::test]
async fn the_task_tools_work_over_mcp_for_the_tokens_user() {
    let server = TestServer::start(&plugins_dir()).ready().await;
    let alice = connect(&server, "alice").await;
    let info = alice.peer_info().expect("the server introduced itself");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("wasmgate")
    );

    let tools = alice.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(
        names,
        [
            "add_task",
            "complete_task",
            "delete_task",
            "list_tasks",
            "update_task"
        ]
    );
    for tool in &tools {
        assert_eq!(tool.input_schema["type"], "object");
        assert!(
            !Value::Object((*tool.input_schema).clone())
                .to_string()
                .contains("user"),
            "{}",
            tool.name
        );
    }

    let added = call(&alice, "add_task", json!({"title": "Buy milk"})).await;
    assert_eq!(added.is_error, Some(false));
    let structured = added.structured_content.clone().unwrap();
    assert_eq!(structured["status"], "created");
    let id = structured["task_id"].as_i64().unwrap();
    let text = added.content[0].as_text().unwrap().text.clone();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), structured);
    call(&alice, "add_task", json!({"title": "Call mom"})).await;

    let done = call(&alice, "complete_task", json!({"task_id": id})).await;
    assert_eq!(done.structured_content.unwrap()["status"], "completed");
    let updated = call(
        &alice,
        "update_task",
        json!({"task_id": id, "title": "Buy oat milk"}),
    )
    .await;
    assert_eq!(updated.structured_content.unwrap()["title"], "Buy oat milk");

    // list_tasks answers a page ({"tasks": [...], "total", …}), and the REST API agrees.
    let listed = call(&alice, "list_tasks", json!({}))
        .await
        .structured_content
        .unwrap();
    let rest: Value = reqwest::Client::new()
        .get(server.url("/api/alice/tasks"))
        .bearer_auth(token("alice"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let over_mcp: Vec<(i64, String, bool)> = listed["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_i64().unwrap(),
                t["title"].as_str().unwrap().into(),
                t["completed"].as_bool().unwrap(),
            )
        })
        .collect();
    let over_rest: Vec<(i64, String, bool)> = rest
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_i64().unwrap(),
                t["title"].as_str().unwrap().into(),
                t["completed"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(over_mcp, over_rest);
    assert_eq!(over_mcp.len(), 2);

    // Bob cannot touch Alice's task: a tool error, not a leak.
    let bob = connect(&server, "bob").await;
    for (tool, args) in [
        ("complete_task", json!({"task_id": id})),
        ("update_task", json!({"task_id": id, "title": "mine now"})),
        ("delete_task", json!({"task_id": id})),
    ] {
        let result = call(&bob, tool, args).await;
        assert_eq!(result.is_error, Some(true), "{tool}");
        assert_eq!(
            result.content[0].as_text().unwrap().text,
            format!("task {id} not found")
        );
    }
    let bobs = call(&bob, "list_tasks", json!({}))
        .await
        .structured_content
        .unwrap();
    assert_eq!(bobs["tasks"], json!([]));
    assert_eq!(bobs["total"], 0);

    let deleted = call(&alice, "delete_task", json!({"task_id": id})).await;
    assert_eq!(deleted.structured_content.unwrap()["status"], "deleted");

    // Bad arguments are a tool error the model can read; an unknown tool is
    // a JSON-RPC error.
    let bad = call(&alice, "add_task", json!({"title": ""})).await;
    assert_eq!(bad.is_error, Some(true));
    let unknown = alice
        .call_tool(CallToolRequestParams::new("launch_rockets").with_arguments(object(json!({}))))
        .await
        .unwrap_err();
    assert!(unknown.to_string().contains("unknown tool"), "{unknown}");
}

#[tokio::test]
async fn mcp_requires_a_token_and_an_allowed_origin() {
    let server = TestServer::start(&plugins_dir()).ready().await;
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let post = |origin: Option<&str>, bearer: Option<String>| {
        let mut request = reqwest::Client::new()
            .post(server.url("/mcp"))
            .header("accept", "application/json, text/event-stream")
            .json(&initialize);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send()
    };

    let anonymous = post(None, None).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let challenge = anonymous.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.ends_with("/.well-known/oauth-protected-resource/mcp\""),
        "{challenge}"
    );
    let bad = post(None, Some("garbage".into())).await.unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);

    let foreign = post(Some("https://evil.example"), Some(token("alice")))
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);

    let local = post(Some("http://localhost:3000"), Some(token("alice")))
        .await
        .unwrap();
    assert_eq!(local.status(), StatusCode::OK);
    let body: Value = local.json().await.unwrap();
    assert_eq!(body["result"]["protocolVersion"], "2025-11-25");
    // A stateless server has no session stream to send list changes on
    // before 2026-07-28, so `initialize` does not promise them.
    assert!(
        body["result"]["capabilities"]["tools"].is_object(),
        "{body}"
    );
    assert_eq!(
        body["result"]["capabilities"]["tools"].get("listChanged"),
        None
    );

    // Older clients get the version they asked for.
    let mut older = initialize.clone();
    older["params"]["protocolVersion"] = json!("2025-03-26");
    let response = reqwest::Client::new()
        .post(server.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .bearer_auth(token("alice"))
        .json(&older)
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["result"]["protocolVersion"], "2025-03-26");
}

#[tokio::test]
async fn the_official_python_client_works_too() {
    let server = TestServer::start(&plugins_dir()).ready().await;
    let script = crate::support::workspace_root().join("tests/python/mcp_client_check.py");
    let python = crate::support::python_venv("py-mcp-client", "mcp==2.3.0").await;
    let output = tokio::process::Command::new(python)
        .arg(script)
        .arg(server.url("/mcp"))
        .arg(token("carol"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["server"], "wasmgate");
    assert_eq!(
        summary["tools"],
        json!([
            "add_task",
            "complete_task",
            "delete_task",
            "list_tasks",
            "update_task"
        ])
    );
    assert_eq!(summary["added"]["status"], "created");
    assert_eq!(summary["listed"]["tasks"][0]["title"], "From Python");
    assert_eq!(summary["missing_is_error"], true);
    assert_eq!(summary["missing_text"], "task 987654 not found");
}

/// The official Python client in its default mode (`server/discover`,
/// 2026-07-28) subscribes to tool list changes and hears of a reload
/// within a second; in legacy mode (`initialize`) it is not promised list
/// changes, which a stateless server could not send on a session stream.
#[tokio::test]
async fn a_subscribed_python_client_hears_of_a_reload_within_a_second() {
    use tokio::io::AsyncBufReadExt;
    const ADMIN: &str = "admin-token-for-mcp-tests";
    let dir = crate::support::stock_plugin_dir("");
    let server = TestServer::start_with(dir.path(), &[("WASMGATE_ADMIN_TOKEN", ADMIN)])
        .ready()
        .await;
    let script = crate::support::workspace_root().join("tests/python/mcp_listen_check.py");
    let python = crate::support::python_venv("py-mcp-client", "mcp==2.3.0").await;
    let run = |mode: &str| {
        tokio::process::Command::new(&python)
            .arg(&script)
            .arg(server.url("/mcp"))
            .arg(token("carol"))
            .arg(mode)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };

    let legacy = run("legacy").wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&legacy.stdout);
    assert!(
        legacy.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&legacy.stderr)
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_ne!(lines[0]["protocol"], "2026-07-28", "{stdout}");
    assert_eq!(lines[0]["list_changed"], false, "{stdout}");
    assert_eq!(lines[1]["listen"], "not supported", "{stdout}");

    let mut modern = run("auto");
    let mut out = tokio::io::BufReader::new(modern.stdout.take().unwrap()).lines();
    let mut next_line = async || -> Value {
        let line = tokio::time::timeout(std::time::Duration::from_secs(60), out.next_line())
            .await
            .expect("the client answers in time")
            .unwrap()
            .expect("the client printed a line");
        serde_json::from_str(&line).unwrap()
    };
    let hello = next_line().await;
    assert_eq!(hello["protocol"], "2026-07-28", "{hello}");
    assert_eq!(hello["list_changed"], true, "{hello}");
    assert_eq!(hello["tools"].as_array().unwrap().len(), 5, "{hello}");
    assert_eq!(next_line().await["subscribed"], true);

    // A reload: the admin API removes a plugin, and the registry swaps.
    let removed = reqwest::Client::new()
        .delete(server.url("/admin/plugins/delete-task"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert!(removed.status().is_success(), "{}", removed.status());
    let swapped = std::time::Instant::now();
    let event = next_line().await;
    let heard = swapped.elapsed();
    assert_eq!(event["event"], "ToolsListChanged", "{event}");
    assert_eq!(
        event["tools"],
        json!(["add_task", "complete_task", "list_tasks", "update_task"])
    );
    assert!(
        heard < std::time::Duration::from_secs(1),
        "heard after {heard:?}"
    );
    let status = modern.wait().await.unwrap();
    assert!(status.success());
}
