//! The official MCP conformance suite (`@modelcontextprotocol/conformance`
//! from npm) against `/mcp` of the real binary: the server scenarios that
//! apply to a server offering tools only.
//!
//! Two things stand between the suite and this server, and both are
//! bridged here rather than by weakening the server:
//! - the suite's CLI sends no `Authorization` header, so it talks to a small
//!   proxy this test starts, which adds a bearer token for a test user and
//!   forwards everything else as it came (the `Host` header included, so
//!   the DNS-rebinding scenario still reaches the server's own check);
//! - the package imports `fs.globSync`, which Node has only from 22 on, and
//!   these machines run Node 20: `tests/node/fs-globsync/register.mjs`,
//!   loaded with `node --import`, gives the package an `fs` with the
//!   `glob` package's `globSync` (it does nothing on Node 22 and later).
//!
//! Scenarios left out test features this server does not offer, each with
//! fixed tools the suite expects by name (`test_simple_text`, …), prompts,
//! resources, logging, completion, sampling or elicitation.

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use serde_json::Value;

use crate::support::{TestServer, npm_prefix, plugins_dir, token, workspace_root};

const PACKAGE: &str = "@modelcontextprotocol/conformance@0.1.16";
/// The server scenarios that apply to a tools-only server.
const SCENARIOS: [&str; 4] = [
    "server-initialize",
    "ping",
    "tools-list",
    "dns-rebinding-protection",
];

/// A loopback proxy to `upstream` that adds `Authorization: Bearer token`
/// to requests without one; its base URL.
async fn bearer_proxy(upstream: String, bearer: String) -> String {
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |request: Request| {
        let (client, upstream, bearer) = (client.clone(), upstream.clone(), bearer.clone());
        async move {
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, 16 << 20).await.unwrap();
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let mut headers = parts.headers.clone();
            if !headers.contains_key("authorization") {
                headers.insert("authorization", format!("Bearer {bearer}").parse().unwrap());
            }
            let answer = client
                .request(parts.method, format!("{upstream}{path}"))
                .headers(headers)
                .body(body)
                .send()
                .await
                .unwrap();
            let mut response = Response::builder().status(answer.status());
            for (name, value) in answer.headers() {
                response = response.header(name, value);
            }
            response
                .body(Body::from_stream(answer.bytes_stream()))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://localhost:{}", addr.port())
}

#[tokio::test]
async fn the_official_conformance_scenarios_pass() {
    let server = TestServer::start(&plugins_dir()).ready().await;
    let proxy = bearer_proxy(server.url(""), token("conformance")).await;
    let prefix = npm_prefix("npm-mcp-conformance", &[PACKAGE, "glob@11"]).await;
    let cli = prefix.join("node_modules/@modelcontextprotocol/conformance/dist/index.js");
    let node20_shim = workspace_root().join("tests/node/fs-globsync/register.mjs");

    for scenario in SCENARIOS {
        let results = tempfile::tempdir().unwrap();
        let output = tokio::process::Command::new("node")
            .arg("--import")
            .arg(&node20_shim)
            .arg(&cli)
            .args([
                "server",
                "--url",
                &format!("{proxy}/mcp"),
                "--scenario",
                scenario,
            ])
            .arg("--output-dir")
            .arg(results.path())
            .output()
            .await
            .unwrap();
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "{scenario}:\n{report}");

        // Every check the scenario made, as it saved them: none failed.
        let checks = checks_in(results.path());
        assert!(!checks.is_empty(), "{scenario} saved no checks:\n{report}");
        let failed: Vec<&Value> = checks
            .iter()
            .filter(|check| !matches!(check["status"].as_str(), Some("SUCCESS" | "INFO")))
            .collect();
        assert!(failed.is_empty(), "{scenario}: {failed:#?}\n{report}");
    }
}

/// Every check the suite saved under `dir` (each scenario writes its own
/// checks file, named below).
fn checks_in(dir: &std::path::Path) -> Vec<Value> {
    let mut checks = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            checks.extend(checks_in(&path));
        } else if path.file_name().is_some_and(|name| name == "checks.json") {
            let text = std::fs::read_to_string(&path).unwrap();
            if let Value::Array(found) = serde_json::from_str(&text).unwrap() {
                checks.extend(found);
            }
        }
    }
    checks
}
