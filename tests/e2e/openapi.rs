//! The OpenAPI contract: `GET /openapi.json` is an OpenAPI 3.1 document of
//! every REST route, and schemathesis (PyPI), fuzzing the real binary from
//! it, finds no 5xx, no answer outside its schema and no undocumented
//! status code or content type: first as a user (the user routes), then as
//! the operator (the admin routes, which it may well empty of plugins, so
//! the server runs on a copy of the stock plugins).

use serde_json::Value;

use crate::support::{TestServer, python_venv, stock_plugin_dir, token, workspace_root};

const ADMIN: &str = "admin-token-for-the-contract";

#[tokio::test]
async fn the_document_describes_every_rest_route() {
    let server = TestServer::start(&crate::support::plugins_dir())
        .ready()
        .await;
    let document: Value = reqwest::get(server.url("/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let mut routes: Vec<String> = Vec::new();
    for (path, operations) in document["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            routes.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    routes.sort();
    assert_eq!(
        routes,
        [
            "DELETE /admin/plugins/{name}",
            "DELETE /admin/plugins/{name}/data",
            "DELETE /api/{user_id}/tasks/{id}",
            "GET /admin/audit",
            "GET /admin/plugins",
            "GET /api/{user_id}/conversations",
            "GET /api/{user_id}/conversations/{id}",
            "GET /api/{user_id}/tasks",
            "GET /api/{user_id}/tasks/{id}",
            "GET /api/{user_id}/usage",
            "PATCH /api/{user_id}/tasks/{id}/complete",
            "POST /admin/plugins/reload",
            "POST /admin/plugins/{name}/grant",
            "POST /admin/plugins/{name}/install",
            "POST /api/v1/chatkit/sessions",
            "POST /api/v1/chatkit/sessions/{id}/cancel",
            "POST /api/{user_id}/chat",
            "POST /api/{user_id}/tasks",
            "PUT /admin/plugins/{name}",
            "PUT /api/{user_id}/tasks/{id}",
        ]
    );
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["user"]["scheme"], "bearer");
    assert_eq!(schemes["admin"]["scheme"], "bearer");
}

#[tokio::test]
async fn schemathesis_finds_nothing_wrong() {
    let dir = stock_plugin_dir("");
    let env = [
        ("WASMGATE_ADMIN_TOKEN", ADMIN),
        ("WASMGATE_CHAT_RATE_PER_MINUTE", "0"),
    ];
    let server = TestServer::start_with(dir.path(), &env).ready().await;
    let python = python_venv("py-schemathesis", "schemathesis==4.32.5").await;
    let schemathesis = python.with_file_name("schemathesis");
    let config = workspace_root().join("tests/python/schemathesis.toml");
    let user = format!("Authorization: Bearer {}", token("alice"));
    let admin = format!("Authorization: Bearer {ADMIN}");
    // The user routes first: the admin pass may remove every plugin.
    for (header, tags) in [(&user, "--exclude-tag"), (&admin, "--include-tag")] {
        let output = tokio::process::Command::new(&schemathesis)
            .arg("--no-color")
            .arg("--config-file")
            .arg(&config)
            .arg("run")
            .arg(server.url("/openapi.json"))
            .args(["-H", header, tags, "admin"])
            .args(["--max-examples", "40", "--seed", "1"])
            .output()
            .await
            .unwrap();
        let report = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{tags} admin:\n{report}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(report.contains(" passed"), "{report}");
    }
}
