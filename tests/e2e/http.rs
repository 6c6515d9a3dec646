//! The `http` capability end to end: the `http-probe` test plugin and the
//! `fetch-title` example in the real binary, against servers the test
//! starts on loopback. Only granted hosts are reached; a redirect out of
//! the grant, an internal address reached through a name, an oversized
//! response and a slow server each fail cleanly in the guest; the header
//! the operator binds reaches the server and never the guest.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::mcp::{call, connect};
use crate::mock_openai::{MockOpenAi, text, tool_calls};
use crate::support::{TestServer, stock_plugin_dir, test_plugins_dir, token, workspace_root};

const SECRET_VALUE: &str = "s3cr3t-probe-value-0123";
const ADMIN: &str = "admin-token-for-http-tests";

/// The authorization headers the granted server saw.
type Seen = Arc<Mutex<Vec<String>>>;

/// A server on 127.0.0.1: `/page`, `/echo` (every request header, back in
/// the body and in `x-echo-*` headers), `/redirect-out` (to `other`),
/// `/big` (2 MiB) and `/slow` (20 s).
async fn start_server(other: Option<u16>, seen: Seen) -> u16 {
    async fn page() -> impl IntoResponse {
        (
            [("content-type", "text/html")],
            "<html><head><title>Local page</title></head></html>",
        )
    }
    async fn echo(
        State((seen, _)): State<(Seen, Option<u16>)>,
        headers: HeaderMap,
    ) -> impl IntoResponse {
        let all: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect();
        if let Some(auth) = headers.get("authorization") {
            seen.lock()
                .unwrap()
                .push(auth.to_str().unwrap().to_string());
        }
        let mut response = axum::Json(json!(all)).into_response();
        for (name, value) in &all {
            if let (Ok(name), Ok(value)) = (
                axum::http::HeaderName::from_bytes(format!("x-echo-{name}").as_bytes()),
                axum::http::HeaderValue::from_str(value),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
    async fn redirect_out(State((_, other)): State<(Seen, Option<u16>)>) -> impl IntoResponse {
        let to = format!("http://127.0.0.1:{}/page", other.unwrap_or(1));
        (axum::http::StatusCode::FOUND, [("location", to)])
    }
    async fn big() -> impl IntoResponse {
        "x".repeat(2 * 1024 * 1024)
    }
    async fn slow() -> impl IntoResponse {
        tokio::time::sleep(Duration::from_secs(20)).await;
        "late"
    }
    let app = axum::Router::new()
        .route("/page", axum::routing::get(page))
        .route("/echo", axum::routing::get(echo))
        .route("/redirect-out", axum::routing::get(redirect_out))
        .route("/big", axum::routing::get(big))
        .route("/slow", axum::routing::get(slow))
        .with_state((seen, other));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

/// The stock plugins, `http-probe` and `fetch-title`, with manifests asking
/// for the granted server (by address, and by the name `localhost`) and the
/// grants an operator would write.
fn plugin_dir(granted: u16) -> tempfile::TempDir {
    let hosts = format!(r#"hosts = ["127.0.0.1:{granted}", "localhost:{granted}"]"#);
    let grants = format!(
        r#"
[plugins.http-probe]
capabilities = ["http"]
{hosts}
secrets = {{ probe_token = "PROBE_TOKEN" }}
inject = [{{ host = "127.0.0.1:{granted}", header = "authorization", secret = "probe_token", prefix = "Bearer " }}]

[plugins.fetch-title]
capabilities = ["http"]
hosts = ["127.0.0.1:{granted}"]
"#
    );
    let dir = stock_plugin_dir(&grants);
    let examples = workspace_root().join("target/example-plugins");
    for (from, name) in [
        (test_plugins_dir(), "http-probe"),
        (examples, "fetch-title"),
    ] {
        std::fs::copy(
            from.join(format!("{name}.wasm")),
            dir.path().join(format!("{name}.wasm")),
        )
        .unwrap();
    }
    std::fs::write(
        dir.path().join("http-probe.toml"),
        format!("name = \"http-probe\"\nversion = \"0.1.0\"\nkind = \"tool\"\ncapabilities = [\"http\"]\n{hosts}\nsecrets = [\"probe_token\"]\n[limits]\ntimeout_ms = 3000\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("fetch-title.toml"),
        format!("name = \"fetch-title\"\nversion = \"0.1.0\"\nkind = \"tool\"\ncapabilities = [\"http\"]\nhosts = [\"127.0.0.1:{granted}\"]\n"),
    )
    .unwrap();
    dir
}

fn result(value: &rmcp::model::CallToolResult) -> Value {
    let text: String = value
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect();
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

#[tokio::test]
async fn http_reaches_only_the_grant_and_never_leaks_the_secret() {
    let seen: Seen = Arc::default();
    let other = start_server(None, Arc::default()).await;
    let granted = start_server(Some(other), seen.clone()).await;
    let dir = plugin_dir(granted);
    let env = [
        ("PROBE_TOKEN", SECRET_VALUE),
        ("WASMGATE_ADMIN_TOKEN", ADMIN),
    ];
    let server = TestServer::start_with(dir.path(), &env).ready().await;
    let alice = connect(&server, "alice").await;
    let fetch =
        async |url: String| result(&call(&alice, "http_fetch", json!({ "url": url })).await);
    let base = format!("http://127.0.0.1:{granted}");

    let page = fetch(format!("{base}/page")).await;
    assert_eq!(page["status"], 200, "{page}");
    assert!(page["body"].as_str().unwrap().contains("Local page"));

    for (url, error) in [
        (format!("http://127.0.0.1:{other}/page"), "not granted"),
        (format!("{base}/redirect-out"), "not granted"),
        (
            format!("http://localhost:{granted}/page"),
            "non-public address",
        ),
        (format!("{base}/big"), "larger than the host allows"),
    ] {
        let answer = fetch(url.clone()).await;
        assert!(
            answer["error"].as_str().is_some_and(|e| e.contains(error)),
            "{url}: {answer}"
        );
    }

    // The bound header reaches the server; the guest, which reads every
    // header and the body of the echo, sees no trace of it.
    let echoed = fetch(format!("{base}/echo")).await;
    assert_eq!(echoed["status"], 200, "{echoed}");
    assert_eq!(*seen.lock().unwrap(), [format!("Bearer {SECRET_VALUE}")]);
    assert!(
        !echoed.to_string().contains(SECRET_VALUE),
        "leaked: {echoed}"
    );
    assert!(echoed.to_string().contains("[redacted]"), "{echoed}");

    // A slow server is cut off within the call's deadline (3 s here).
    let started = Instant::now();
    let slow = call(&alice, "http_fetch", json!({"url": format!("{base}/slow")})).await;
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(slow.is_error, Some(true), "{slow:?}");

    // The example works over MCP, and the audit log names the host.
    let title = result(
        &call(
            &alice,
            "fetch_title",
            json!({"url": format!("{base}/page")}),
        )
        .await,
    );
    assert_eq!(title["title"], "Local page", "{title}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let entry = loop {
        let log: Value = reqwest::Client::new()
            .get(server.url("/admin/audit?plugin=fetch-title"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(entry) = log["entries"].get(0).cloned() {
            break entry;
        }
        assert!(Instant::now() < deadline, "no audit entry for fetch_title");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        entry["hosts"],
        json!([format!("127.0.0.1:{granted}")]),
        "{entry}"
    );

    // Counted per plugin, host and outcome.
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (host, outcome) in [
        (format!("127.0.0.1:{granted}"), "ok"),
        (format!("127.0.0.1:{other}"), "denied"),
    ] {
        let line = format!(
            "wasmgate_plugin_outbound_requests_total{{plugin=\"http-probe\",host=\"{host}\",outcome=\"{outcome}\"}}"
        );
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
}

#[tokio::test]
async fn fetch_title_works_through_chat() {
    let granted = start_server(None, Arc::default()).await;
    let dir = plugin_dir(granted);
    let url = format!("http://127.0.0.1:{granted}/page");
    let mock = MockOpenAi::start(vec![
        tool_calls(&[("call_1", "fetch_title", json!({ "url": url }))]),
        text("The page is called Local page."),
    ])
    .await;
    let mut env: Vec<(&str, String)> = mock.env();
    env.push(("PROBE_TOKEN", SECRET_VALUE.into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = TestServer::start_with(dir.path(), &env).ready().await;
    let reply: Value = reqwest::Client::new()
        .post(server.url("/api/alice/chat"))
        .bearer_auth(token("alice"))
        .json(&json!({"content": "What is the title of that page?"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        reply["tool_calls"][0]["result"]["title"], "Local page",
        "{reply}"
    );
}
