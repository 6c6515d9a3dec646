//! Hot reload and the admin API: components swapped under load with zero
//! failed requests, broken builds never serving, removals taking tools away.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::mcp::tool_names;
use crate::support::{TestServer, test_plugins_dir, token};

const ADMIN: &str = "admin-token-for-tests";
const GREETER_MANIFEST: &str = "name = \"greeter\"\nversion = \"1.0.0\"\nkind = \"tool\"\n";

/// Writes `bytes` to `path` the way a deploy should: a temporary file
/// renamed into place.
fn land(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("landing");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn greeter(version: u8) -> Vec<u8> {
    std::fs::read(test_plugins_dir().join(format!("greeter-v{version}.wasm"))).unwrap()
}

/// Calls `greet` over MCP (one JSON-RPC POST) and returns the version that
/// answered, or the failure.
async fn greet(client: &reqwest::Client, server: &TestServer) -> Result<u64, String> {
    let response = client
        .post(server.url("/mcp"))
        .bearer_auth(token("alice"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "greet", "arguments": {}}}))
        .send()
        .await
        .map_err(|err| err.to_string())?;
    let body: Value = response.json().await.map_err(|err| err.to_string())?;
    body["result"]["structuredContent"]["version"]
        .as_u64()
        .filter(|_| body["result"]["isError"] == false)
        .ok_or_else(|| body.to_string())
}

fn start_with_greeter() -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("greeter.wasm"), greeter(1)).unwrap();
    std::fs::write(dir.path().join("greeter.toml"), GREETER_MANIFEST).unwrap();
    let server = TestServer::start_with(dir.path(), &[("WASMGATE_ADMIN_TOKEN", ADMIN)]);
    (dir, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_swap_under_load_with_zero_failed_requests() {
    let _alone = crate::support::exclusive().await;
    let (dir, server) = start_with_greeter();
    let server = Arc::new(server.ready().await);
    let client = reqwest::Client::new();
    assert_eq!(greet(&client, &server).await, Ok(1));

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let callers: Vec<_> = (0..32)
        .map(|_| {
            let (server, stop, served, client) =
                (server.clone(), stop.clone(), served.clone(), client.clone());
            tokio::spawn(async move {
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match greet(&client, &server).await {
                        Ok(1 | 2) => {
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        other => failures.push(format!("{other:?}")),
                    }
                }
                failures
            })
        })
        .collect();

    let wasm = dir.path().join("greeter.wasm");
    let mut worst = Duration::ZERO;
    for swap in 0..20 {
        if swap == 7 || swap == 14 {
            // A broken build lands; the version serving must keep serving.
            let before = greet(&client, &server).await.unwrap();
            land(&wasm, b"\0asm\x0d\0\x01\0 this build is broken");
            tokio::time::sleep(Duration::from_millis(400)).await;
            assert_eq!(
                greet(&client, &server).await,
                Ok(before),
                "a broken build is serving"
            );
        }
        let version = if swap % 2 == 0 { 2 } else { 1 };
        let landed = Instant::now();
        land(&wasm, &greeter(version));
        loop {
            if greet(&client, &server).await == Ok(version as u64) {
                break;
            }
            assert!(
                landed.elapsed() < Duration::from_secs(1),
                "version {version} not serving 1 s after landing (swap {swap})"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        worst = worst.max(landed.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for caller in callers {
        failures.extend(caller.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} failed requests, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(
        served.load(Ordering::Relaxed) > 100,
        "the callers barely ran"
    );
    eprintln!(
        "worst reload latency: {worst:?}, calls served during the storm: {}",
        served.load(Ordering::Relaxed)
    );
}

async fn admin(
    client: &reqwest::Client,
    server: &TestServer,
    method: &str,
    path: &str,
) -> (StatusCode, Value) {
    let response = client
        .request(method.parse().unwrap(), server.url(path))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The `/metrics` page, as text.
async fn metrics(client: &reqwest::Client, server: &TestServer) -> String {
    client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_admin_api_lists_uploads_rejects_and_removes() {
    let (_dir, server) = start_with_greeter();
    let server = server.ready().await;
    let client = reqwest::Client::new();

    let anonymous = client
        .get(server.url("/admin/plugins"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let wrong = client
        .get(server.url("/admin/plugins"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let (status, listed) = admin(&client, &server, "GET", "/admin/plugins").await;
    assert_eq!(status, StatusCode::OK);
    let greeter_entry = &listed["plugins"][0];
    assert_eq!(greeter_entry["name"], "greeter");
    assert_eq!(greeter_entry["tools"], json!(["greet"]));
    assert_eq!(greeter_entry["state"], "active");
    assert_eq!(greeter_entry["sha256"].as_str().unwrap().len(), 64);

    // Upload: echo, as an operator would.
    let upload = |name: &str, wasm: Vec<u8>, manifest: String| {
        let form = reqwest::multipart::Form::new()
            .part(
                "component",
                reqwest::multipart::Part::bytes(wasm).file_name("plugin.wasm"),
            )
            .part("manifest", reqwest::multipart::Part::text(manifest));
        client
            .put(server.url(&format!("/admin/plugins/{name}")))
            .bearer_auth(ADMIN)
            .multipart(form)
            .send()
    };
    let echo_manifest = std::fs::read_to_string(test_plugins_dir().join("echo.toml")).unwrap();
    let echo_wasm = std::fs::read(test_plugins_dir().join("echo.wasm")).unwrap();
    let uploaded = upload("echo", echo_wasm.clone(), echo_manifest.clone())
        .await
        .unwrap();
    assert_eq!(
        uploaded.status(),
        StatusCode::OK,
        "{}",
        uploaded.text().await.unwrap()
    );
    assert_eq!(
        tool_names(&server, &token("alice")).await,
        ["echo", "greet", "noop"]
    );

    // A broken upload is refused before it touches the directory.
    let broken = upload("echo", b"garbage".to_vec(), echo_manifest.clone())
        .await
        .unwrap();
    assert_eq!(broken.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = broken.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_plugin");
    // A tool clash is refused too, naming both plugins.
    let clash = upload(
        "echo-two",
        echo_wasm,
        echo_manifest.replace("name = \"echo\"", "name = \"echo-two\""),
    )
    .await
    .unwrap();
    assert_eq!(clash.status(), StatusCode::CONFLICT);
    let body: Value = clash.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"echo\""),
        "{body}"
    );
    assert_eq!(
        tool_names(&server, &token("alice")).await,
        ["echo", "greet", "noop"]
    );

    // Removing takes its tools away everywhere.
    let (status, _) = admin(&client, &server, "DELETE", "/admin/plugins/greeter").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(tool_names(&server, &token("alice")).await, ["echo", "noop"]);
    let (_, listed) = admin(&client, &server, "GET", "/admin/plugins").await;
    let names: Vec<&str> = listed["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"greeter"), "{listed}");
    let (status, _) = admin(&client, &server, "DELETE", "/admin/plugins/greeter").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, report) = admin(&client, &server, "POST", "/admin/plugins/reload").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        report["plugins"]
            .as_array()
            .unwrap()
            .contains(&json!("echo")),
        "{report}"
    );
}

#[tokio::test]
async fn metrics_count_plugin_calls_requests_and_reloads() {
    let (_dir, server) = start_with_greeter();
    let server = server.ready().await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        greet(&client, &server).await.unwrap();
    }
    admin(&client, &server, "POST", "/admin/plugins/reload").await;
    let text = metrics(&client, &server).await;
    assert!(
        text.contains("wasmgate_plugin_calls_total{plugin=\"greeter\",version=\"1.0.0\"} 3"),
        "{text}"
    );
    assert!(
        text.contains(
            "wasmgate_plugin_call_duration_seconds_count{plugin=\"greeter\",version=\"1.0.0\"} 3"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "wasmgate_http_requests_total{method=\"POST\",route=\"/mcp\",status=\"200\"} 3"
        ),
        "{text}"
    );
    assert!(text.contains("wasmgate_plugin_reloads_total 1"), "{text}");
}

#[tokio::test]
async fn without_an_admin_token_the_admin_api_does_not_exist() {
    let server = TestServer::start(&test_plugins_dir()).ready().await;
    let response = reqwest::Client::new()
        .get(server.url("/admin/plugins"))
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_removed_plugin_leaves_the_models_tool_list() {
    use crate::mock_openai::{MockOpenAi, text};

    let mock = MockOpenAi::start(vec![text("ok"), text("ok")]).await;
    let dir = tempfile::tempdir().unwrap();
    for file in [
        "add-task.wasm",
        "add-task.toml",
        "rules.wasm",
        "rules.toml",
        "openai.wasm",
        "openai.toml",
        "policy.toml",
    ] {
        std::fs::copy(
            crate::support::plugins_dir().join(file),
            dir.path().join(file),
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("greeter.wasm"), greeter(1)).unwrap();
    std::fs::write(dir.path().join("greeter.toml"), GREETER_MANIFEST).unwrap();
    let env: Vec<(&str, String)> = mock.env();
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(("WASMGATE_ADMIN_TOKEN", ADMIN));
    let server = TestServer::start_with(dir.path(), &env).ready().await;
    let client = reqwest::Client::new();
    let chat = || {
        client
            .post(server.url("/api/alice/chat"))
            .bearer_auth(token("alice"))
            .json(&json!({"content": "hello"}))
            .send()
    };
    let tool_names = |request: &Value| -> Vec<String> {
        request["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap().to_string())
            .collect()
    };

    assert_eq!(chat().await.unwrap().status(), StatusCode::OK);
    // The host's own `ask_user` comes first in every turn.
    assert_eq!(
        tool_names(&mock.requests()[0].body),
        ["ask_user", "add_task", "greet"]
    );
    let (status, _) = admin(&client, &server, "DELETE", "/admin/plugins/greeter").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(chat().await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        tool_names(&mock.requests()[1].body),
        ["ask_user", "add_task"]
    );
}

#[tokio::test]
async fn sighup_rescans_the_plugin_directory() {
    let server = TestServer::start(&test_plugins_dir()).ready().await;
    let client = reqwest::Client::new();
    let reloads = async || -> u64 {
        let text = metrics(&client, &server).await;
        text.lines()
            .find_map(|line| line.strip_prefix("wasmgate_plugin_reloads_total "))
            .unwrap_or_else(|| panic!("no reload counter in {text}"))
            .parse()
            .unwrap()
    };
    assert_eq!(reloads().await, 0);

    let sent = std::process::Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    // Nothing in the directory changed, so only the signal can have
    // started a reload; the server is still there to count it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while reloads().await == 0 {
        assert!(Instant::now() < deadline, "SIGHUP started no reload");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(reloads().await, 1);
}
