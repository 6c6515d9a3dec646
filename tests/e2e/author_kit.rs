//! The plugin author's path: `plugins new` gives a crate that builds and
//! passes `plugins check` as it is; `plugins run` tries a tool against
//! in-memory tasks; the example plugin works on a real store.

use std::process::Command;

use serde_json::{Value, json};

use crate::support::{self, TestDatabase, workspace_root};

fn wasmgate(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `plugins new NAME` (with `extra` arguments) in `dir`, built as the author
/// would (sharing the project's guest build cache) and laid out as
/// `dir/NAME.wasm` beside `dir/NAME.toml`; the component's path.
fn generate_and_build(dir: &std::path::Path, name: &str, extra: &[&str]) -> std::path::PathBuf {
    let sdk = workspace_root().join("plugins/sdk");
    let mut args = vec![
        "plugins",
        "new",
        name,
        "--dir",
        dir.to_str().unwrap(),
        "--sdk",
        sdk.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (ok, out, err) = wasmgate(&args);
    assert!(ok, "{out}{err}");
    let crate_dir = dir.join(name);
    let target = workspace_root().join("target/wasm");
    let built = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target)
        .current_dir(&crate_dir)
        .status()
        .unwrap();
    assert!(built.success(), "the generated crate does not build");
    let wasm = dir.join(format!("{name}.wasm"));
    let artifact = format!("wasm32-wasip2/release/{}.wasm", name.replace('-', "_"));
    std::fs::copy(target.join(artifact), &wasm).unwrap();
    std::fs::copy(
        crate_dir.join("plugin.toml"),
        dir.join(format!("{name}.toml")),
    )
    .unwrap();
    wasm
}

#[test]
fn a_new_plugin_builds_and_passes_check_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let sdk = workspace_root().join("plugins/sdk");
    let wasm = generate_and_build(dir.path(), "pet-names", &[]);

    let (ok, out, err) = wasmgate(&["plugins", "check", wasm.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("manifest: pet-names 0.1.0") && out.contains("  pet_names: "),
        "{out}"
    );

    let (ok, out, err) = wasmgate(&[
        "plugins",
        "run",
        wasm.to_str().unwrap(),
        "pet_names",
        r#"{"name": "Rex"}"#,
    ]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!({"greeting": "Hello, Rex!"})
    );

    // A second `new` never overwrites.
    let (ok, _, err) = wasmgate(&[
        "plugins",
        "new",
        "pet-names",
        "--dir",
        dir.path().to_str().unwrap(),
        "--sdk",
        sdk.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("already exists"), "{err}");
}

#[test]
fn a_new_kv_plugin_keeps_a_value_per_user() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = generate_and_build(dir.path(), "remember-me", &["--capability", "kv"]);
    let (ok, out, err) = wasmgate(&["plugins", "check", wasm.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("kv"), "it asks for kv: {out}");
    // `plugins run` backs kv with memory: one run saves and reads back.
    let (ok, out, err) = wasmgate(&[
        "plugins",
        "run",
        wasm.to_str().unwrap(),
        "remember_me",
        r#"{"value": "the blue door"}"#,
    ]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!({"remembered": "the blue door", "saves": 1})
    );
}

#[test]
fn the_harness_runs_a_tool_against_in_memory_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("tasks.json");
    std::fs::write(&fixture, r#"["Buy milk", "Walk the dog"]"#).unwrap();
    let example = workspace_root().join("target/example-plugins/task-stats.wasm");
    let (ok, out, err) = wasmgate(&[
        "plugins",
        "run",
        example.to_str().unwrap(),
        "task_stats",
        "{}",
        "--tasks",
        fixture.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    let stats: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        stats,
        json!({"total": 2, "completed": 0, "pending": 2, "percent_done": 0, "oldest_pending": "Buy milk"})
    );

    let (ok, _, err) = wasmgate(&[
        "plugins",
        "run",
        example.to_str().unwrap(),
        "task_stats",
        "[1]",
    ]);
    assert!(
        !ok && err.contains("arguments must be a JSON object"),
        "{err}"
    );
}

#[tokio::test]
async fn the_example_plugin_summarises_a_real_store() {
    let db = TestDatabase::new(support::Backend::Sqlite).await;
    let store = db.store().await;
    let runtime = support::runtime_with(&store);
    let stats = support::load(
        &runtime,
        &workspace_root().join("target/example-plugins"),
        "task-stats",
    )
    .await;
    use wasmgate::tasks::{NewTask, TaskPatch, TaskRepository};
    for title in ["One", "Two", "Three", "Four"] {
        store
            .add(
                "erin",
                NewTask {
                    title: title.into(),
                    description: None,
                },
            )
            .await
            .unwrap();
    }
    store
        .update(
            "erin",
            1,
            TaskPatch {
                completed: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let summary = runtime
        .call_tool(&stats, "erin", "task_stats", "{}")
        .await
        .unwrap();
    assert_eq!(
        summary,
        json!({"total": 4, "completed": 1, "pending": 3, "percent_done": 25, "oldest_pending": "Two"})
    );
    let nobody = runtime
        .call_tool(&stats, "someone-else", "task_stats", "{}")
        .await
        .unwrap();
    assert_eq!(nobody["total"], 0);
}

#[tokio::test]
async fn a_python_plugin_uses_the_same_contract() {
    let db = TestDatabase::new(support::Backend::Sqlite).await;
    let store = db.store().await;
    let runtime = support::runtime_with(&store);
    let search = support::load(
        &runtime,
        &workspace_root().join("target/example-plugins"),
        "search-tasks",
    )
    .await;
    assert_eq!(search.tools[0].name, "search_tasks");
    use wasmgate::tasks::{NewTask, TaskPatch, TaskRepository};
    for title in ["Buy milk", "Walk the dog", "Milk the cow"] {
        store
            .add(
                "fay",
                NewTask {
                    title: title.into(),
                    description: None,
                },
            )
            .await
            .unwrap();
    }
    store
        .update(
            "fay",
            1,
            TaskPatch {
                completed: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    let pending = runtime
        .call_tool(&search, "fay", "search_tasks", r#"{"query": "MILK"}"#)
        .await
        .unwrap();
    assert_eq!(
        pending["matches"],
        json!([{"id": 3, "title": "Milk the cow", "completed": false}])
    );
    let all = runtime
        .call_tool(
            &search,
            "fay",
            "search_tasks",
            r#"{"query": "milk", "include_completed": true}"#,
        )
        .await
        .unwrap();
    assert_eq!(all["matches"].as_array().unwrap().len(), 2);
    // Its kv: the user's recent queries, newest first, per user.
    assert_eq!(all["recent_queries"], json!(["milk", "MILK"]));
    // Another user sees none of it; bad arguments are a tool error.
    let other = runtime
        .call_tool(&search, "gus", "search_tasks", r#"{"query": "milk"}"#)
        .await
        .unwrap();
    assert_eq!(other["matches"], json!([]));
    assert_eq!(other["recent_queries"], json!(["milk"]), "gus's own");
    let error = runtime
        .call_tool(&search, "fay", "search_tasks", r#"{"query": ""}"#)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("query must be a non-empty string"),
        "{error}"
    );
}

#[test]
fn a_new_http_plugin_reaches_only_the_host_allowed_for_the_run() {
    // A local stub: one response per connection.
    let stub = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = stub.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in stub.incoming().flatten() {
            use std::io::{Read, Write};
            let mut stream = stream;
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
            );
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let wasm = generate_and_build(dir.path(), "page-size", &["--capability", "http"]);
    let url = format!(r#"{{"url": "http://127.0.0.1:{port}/"}}"#);
    let allow = format!("127.0.0.1:{port}");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "plugins",
            "run",
            wasm.to_str().unwrap(),
            "page_size",
            url.as_str(),
        ];
        args.extend_from_slice(extra);
        wasmgate(&args)
    };
    let (ok, out, err) = run(&["--allow-host", &allow]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!({"status": 200, "bytes": 5, "content_type": "text/plain"})
    );
    // Without the grant, the same request fails in the guest, clearly.
    let (ok, out, err) = run(&[]);
    assert!(!ok, "{out}");
    assert!(err.contains("not granted"), "{err}");
}
