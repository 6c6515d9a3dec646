//! The real binary serves: health, readiness, and JSON errors for every
//! request it cannot route.

use serde_json::Value;

use crate::support::{TestServer, test_plugins_dir};

#[tokio::test]
async fn serves_health_readiness_and_json_errors() {
    let server = TestServer::start(&test_plugins_dir()).ready().await;
    let client = reqwest::Client::new();

    let health = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(health.headers().contains_key("x-request-id"));

    let ready: Value = client
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    // The other test plugins ask for what this directory's (absent)
    // policy does not grant, or are built to be refused.
    assert_eq!(ready["plugins"], 2, "echo and hostile: {ready}");
    assert_eq!(
        ready["tools"], 9,
        "2 echo tools and 7 hostile ones: {ready}"
    );

    let missing = client
        .get(server.url("/no/such/route"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/no/such/route")
    );

    let wrong_method = client.post(server.url("/healthz")).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    let body: Value = wrong_method.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn a_broken_plugin_is_rejected_and_the_rest_serve() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["echo.wasm", "echo.toml"] {
        std::fs::copy(test_plugins_dir().join(file), dir.path().join(file)).unwrap();
    }
    std::fs::write(dir.path().join("broken.wasm"), b"\0asm garbage").unwrap();
    std::fs::write(
        dir.path().join("broken.toml"),
        "name = \"broken\"\nversion = \"1\"\nkind = \"tool\"\n",
    )
    .unwrap();

    let server = TestServer::start(dir.path()).ready().await;
    let ready: Value = reqwest::get(server.url("/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["plugins"], 1, "{ready}");
    assert_eq!(ready["rejected"], 1, "{ready}");
}

#[tokio::test]
async fn dev_mode_prints_a_working_token_for_demo() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .arg("serve")
        .env_remove("BETTER_AUTH_SECRET")
        .env("WASMGATE_LISTEN", "127.0.0.1:0")
        .env("WASMGATE_PLUGINS", crate::support::plugins_dir())
        .env("RUST_LOG", "error")
        .current_dir(data.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = lines
        .next()
        .unwrap()
        .unwrap()
        .replace("wasmgate listening on ", "");
    let dev_line = lines.next().unwrap().unwrap();
    let token = dev_line
        .strip_prefix("dev mode: token for user demo: ")
        .unwrap_or_else(|| panic!("unexpected line {dev_line:?}"))
        .to_string();

    // The default database is a file under ./data, created on first run.
    let response = reqwest::Client::new()
        .get(format!("{base}/api/demo/tasks"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status, 200);
    assert!(data.path().join("data/wasmgate.db").exists());
}

#[tokio::test]
async fn the_token_command_signs_with_the_configured_secret() {
    use std::process::Command;

    let minted = Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .args(["token", "--user", "carol"])
        .env("BETTER_AUTH_SECRET", crate::support::SECRET)
        .output()
        .unwrap();
    assert!(minted.status.success());
    let token = String::from_utf8(minted.stdout).unwrap().trim().to_string();

    let server = TestServer::start(&crate::support::plugins_dir())
        .ready()
        .await;
    let response = reqwest::Client::new()
        .get(server.url("/api/carol/tasks"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let refused = Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .args(["token", "--user", "carol"])
        .env_remove("BETTER_AUTH_SECRET")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("set BETTER_AUTH_SECRET"));
}
