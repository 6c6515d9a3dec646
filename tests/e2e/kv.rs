//! The `kv` and `config` capabilities end to end: the `notes` example and
//! the `kv-peek` test plugin in the real binary, called over MCP and
//! through chat. Storage is per plugin and per user, bounded by the
//! operator's quota, kept across restarts and updates, and purged only by
//! the operator.

use reqwest::StatusCode;
use rmcp::model::CallToolResult;
use serde_json::{Value, json};

use crate::mcp::{call, connect};
use crate::mock_openai::{MockOpenAi, text, tool_calls};
use crate::support::{
    TestDatabase, TestServer, backends, stock_plugin_dir, test_plugins_dir, token, workspace_root,
};

const ADMIN: &str = "admin-token-for-kv-tests";

/// The grants an operator adds for the two plugins.
const POLICY: &str = r#"
[plugins.notes]
capabilities = ["kv", "config"]
config = { max_note_chars = "40" }

[plugins.kv-peek]
capabilities = ["kv"]
kv = { max_keys = 3, max_bytes = 100 }
"#;

/// A plugin directory: the stock plugins and policy, `notes` and `kv-peek`,
/// and their grants.
fn plugin_dir() -> tempfile::TempDir {
    let dir = stock_plugin_dir(POLICY);
    let examples = workspace_root().join("target/example-plugins");
    for (from, name) in [(examples, "notes"), (test_plugins_dir(), "kv-peek")] {
        for ext in ["wasm", "toml"] {
            let file = format!("{name}.{ext}");
            std::fs::copy(from.join(&file), dir.path().join(&file)).unwrap();
        }
    }
    dir
}

/// A tool's JSON result, or its error text (`Err`).
fn outcome(result: &CallToolResult) -> Result<Value, String> {
    let text = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<String>();
    if result.is_error == Some(true) {
        Err(text)
    } else {
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

#[tokio::test]
async fn storage_is_per_plugin_and_user_bounded_and_kept() {
    for backend in backends() {
        let database = TestDatabase::new(backend).await;
        let dir = plugin_dir();
        let env = [
            ("DATABASE_URL", database.url.as_str()),
            ("WASMGATE_ADMIN_TOKEN", ADMIN),
        ];
        let server = TestServer::start_with(dir.path(), &env).ready().await;
        let (alice, bob) = (
            connect(&server, "alice").await,
            connect(&server, "bob").await,
        );

        let note = outcome(&call(&alice, "add_note", json!({"text": "buy stamps"})).await);
        assert_eq!(
            note,
            Ok(json!({"id": 1, "text": "buy stamps"})),
            "{backend:?}"
        );
        assert_eq!(
            outcome(&call(&bob, "list_notes", json!({})).await),
            Ok(json!([])),
            "another user's notes"
        );
        // The operator's setting bounds a note (40 characters).
        let long = outcome(&call(&alice, "add_note", json!({"text": "x".repeat(41)})).await);
        assert!(
            long.as_ref()
                .is_err_and(|e| e.contains("1 to 40 characters")),
            "{long:?}"
        );

        // Another plugin reading the same key sees nothing of the notes.
        let peek = outcome(&call(&alice, "kv_peek", json!({"key": "notes"})).await);
        assert_eq!(peek, Ok(Value::Null), "another plugin's key");

        // The quota: 3 keys, then a clear error; 100 bytes over all keys.
        let put = outcome(
            &call(
                &alice,
                "kv_put",
                json!({"prefix": "k", "count": 5, "size": 10}),
            )
            .await,
        )
        .unwrap();
        assert_eq!(put["stored"], 3, "{put}");
        assert_eq!(put["error"], "quota");
        assert!(put["message"].as_str().unwrap().contains("3 keys"), "{put}");
        let replaced = outcome(
            &call(
                &alice,
                "kv_put",
                json!({"prefix": "k", "count": 1, "size": 80}),
            )
            .await,
        )
        .unwrap();
        assert_eq!(
            replaced["stored"], 1,
            "a replaced value frees its bytes: {replaced}"
        );
        let over = outcome(
            &call(
                &alice,
                "kv_put",
                json!({"prefix": "k", "count": 2, "size": 50}),
            )
            .await,
        )
        .unwrap();
        assert_eq!(
            (over["stored"].as_u64(), over["error"].as_str()),
            (Some(1), Some("quota")),
            "{over}"
        );
        // Bob's quota is his own.
        let bobs = outcome(
            &call(
                &bob,
                "kv_put",
                json!({"prefix": "k", "count": 3, "size": 10}),
            )
            .await,
        )
        .unwrap();
        assert_eq!(bobs["stored"], 3, "{bobs}");
        let keys = outcome(&call(&alice, "kv_keys", json!({"prefix": "k"})).await);
        assert_eq!(keys, Ok(json!(["k0", "k1", "k2"])));
        let bad = outcome(&call(&alice, "kv_peek", json!({"key": ""})).await);
        assert!(bad.is_err_and(|e| e.contains("1 to 256 bytes")));
        drop((alice, bob));

        // A restart, then an update of the plugin: the notes are still there.
        drop(server);
        let server = TestServer::start_with(dir.path(), &env).ready().await;
        let manifest = dir.path().join("notes.toml");
        let updated = std::fs::read_to_string(&manifest)
            .unwrap()
            .replace("version = \"0.1.0\"", "version = \"0.2.0\"");
        std::fs::write(&manifest, updated).unwrap();
        let client = reqwest::Client::new();
        let reload = client
            .post(server.url("/admin/plugins/reload"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(reload.status(), StatusCode::OK);
        let listed: Value = client
            .get(server.url("/admin/plugins"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let notes = listed["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "notes")
            .cloned();
        assert_eq!(
            notes.map(|p| p["version"].clone()),
            Some(json!("0.2.0")),
            "{listed}"
        );
        let alice = connect(&server, "alice").await;
        assert_eq!(
            outcome(&call(&alice, "list_notes", json!({})).await),
            Ok(json!([{"id": 1, "text": "buy stamps"}])),
            "{backend:?}: kept across a restart and an update"
        );

        // Only the operator purges, and only that plugin's data.
        let purge = |bearer: String| {
            client
                .delete(server.url("/admin/plugins/notes/data"))
                .bearer_auth(bearer)
                .send()
        };
        assert_eq!(
            purge(token("alice")).await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
        let purged: Value = purge(ADMIN.to_string())
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(purged["deleted_keys"], 1, "{purged}");
        assert_eq!(
            outcome(&call(&alice, "list_notes", json!({})).await),
            Ok(json!([]))
        );
        assert_eq!(
            outcome(&call(&alice, "kv_keys", json!({"prefix": ""})).await),
            Ok(json!(["k0", "k1", "k2"]))
        );
    }
}

#[tokio::test]
async fn notes_work_through_chat() {
    let mock = MockOpenAi::start(vec![
        tool_calls(&[(
            "call_1",
            "add_note",
            json!({"text": "the wifi password is on the fridge"}),
        )]),
        text("Noted."),
        tool_calls(&[("call_2", "list_notes", json!({}))]),
        text("You have one note."),
    ])
    .await;
    let dir = plugin_dir();
    let env: Vec<(&str, String)> = mock.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = TestServer::start_with(dir.path(), &env).ready().await;
    let client = reqwest::Client::new();
    let say = async |content: &str| -> Value {
        client
            .post(server.url("/api/alice/chat"))
            .bearer_auth(token("alice"))
            .json(&json!({ "content": content }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    };
    let added = say("Remember that the wifi password is on the fridge").await;
    assert_eq!(
        added["tool_calls"][0]["result"],
        json!({"id": 1, "text": "the wifi password is on the fridge"}),
        "{added}"
    );
    let listed = say("What are my notes?").await;
    assert_eq!(listed["tool_calls"][0]["result"][0]["id"], 1, "{listed}");
    // The model was offered the notes tools beside the task tools.
    let tools: Vec<String> = mock.requests()[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        tools.iter().any(|t| t == "add_note") && tools.iter().any(|t| t == "add_task"),
        "{tools:?}"
    );
}
