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
    assert_eq!(ready["plugins"], 2, "echo and hostile: {ready}");
    assert_eq!(ready["tools"], 7, "{ready}");

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
