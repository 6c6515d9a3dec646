//! `wasmgate plugins check`: accepts every built plugin, rejects what is not
//! one, each with a message that says why.

use std::path::Path;
use std::process::Command;

use crate::support::{plugins_dir, test_plugins_dir};

/// Runs `wasmgate plugins check <file>`: exit success and stdout+stderr.
fn check(file: &Path) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .args(["plugins", "check"])
        .arg(file)
        .env("RUST_LOG", "error")
        .output()
        .expect("the binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn rejects(file: &Path, needle: &str) {
    let (ok, text) = check(file);
    assert!(!ok, "{} was accepted:\n{text}", file.display());
    assert!(
        text.contains(needle),
        "{} rejected without {needle:?}:\n{text}",
        file.display()
    );
}

#[test]
fn accepts_every_built_plugin() {
    let mut checked = 0;
    let examples = crate::support::workspace_root().join("target/example-plugins");
    for dir in [plugins_dir(), test_plugins_dir(), examples] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let has_manifest = path.with_extension("toml").exists();
            // Built to be refused (see hostile.rs).
            let refused = path.file_stem().is_some_and(|s| s == "schema-bomb");
            if path.extension().is_some_and(|e| e == "wasm") && has_manifest && !refused {
                let (ok, text) = check(&path);
                assert!(ok, "{} rejected:\n{text}", path.display());
                assert!(
                    text.contains("ok: a tool plugin") || text.contains("ok: a provider plugin"),
                    "{text}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 11, "only {checked} plugins found");
}

#[test]
fn lists_the_tools_of_a_plugin() {
    let (ok, text) = check(&test_plugins_dir().join("echo.wasm"));
    assert!(ok, "{text}");
    assert!(text.contains("manifest: echo 0.1.0"), "{text}");
    assert!(text.contains("  noop: Does nothing"), "{text}");
    assert!(text.contains("  echo: Returns its arguments"), "{text}");
}

#[test]
fn checks_a_bare_component_without_a_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("my-tool.wasm");
    std::fs::copy(test_plugins_dir().join("echo.wasm"), &bare).unwrap();
    let (ok, text) = check(&bare);
    assert!(ok, "{text}");
    assert!(text.contains("manifest: none"), "{text}");
    assert!(text.contains("noop"), "{text}");
}

#[test]
fn rejects_a_core_module() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("core.wasm");
    // `(module)`: the smallest valid core WebAssembly module.
    std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
    rejects(&module, "core WebAssembly module, not a component");
}

#[test]
fn rejects_a_component_of_another_world() {
    rejects(
        &test_plugins_dir().join("hello-cli.wasm"),
        "exports neither wasmgate:plugin/tool@0.1.0 nor wasmgate:plugin/provider@0.1.0 (it exports: wasi:cli/run",
    );
}

#[test]
fn rejects_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"this is not webassembly at all").unwrap();
    rejects(&garbage, "not a WebAssembly file");

    let truncated = dir.path().join("truncated.wasm");
    let mut bytes = std::fs::read(test_plugins_dir().join("echo.wasm")).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&truncated, bytes).unwrap();
    rejects(&truncated, "does not compile");
}

#[test]
fn rejects_a_missing_file_and_a_bad_manifest() {
    rejects(Path::new("/nonexistent/plugin.wasm"), "cannot read");

    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        test_plugins_dir().join("echo.wasm"),
        dir.path().join("echo.wasm"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("echo.toml"),
        "name = \"echo\"\nversion = \"1\"\nkind = \"tool\"\ncapabilities = [\"network\"]\n",
    )
    .unwrap();
    rejects(&dir.path().join("echo.wasm"), "unknown variant `network`");

    std::fs::write(
        dir.path().join("echo.toml"),
        "name = \"echo\"\nversion = \"1\"\nkind = \"provider\"\n",
    )
    .unwrap();
    rejects(
        &dir.path().join("echo.wasm"),
        "kind = \"provider\" but the component is a tool plugin",
    );
}

#[test]
fn rejects_a_capability_the_manifest_does_not_grant() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        plugins_dir().join("add-task.wasm"),
        dir.path().join("add-task.wasm"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("add-task.toml"),
        "name = \"add-task\"\nversion = \"1\"\nkind = \"tool\"\ncapabilities = [\"log\"]\n",
    )
    .unwrap();
    rejects(
        &dir.path().join("add-task.wasm"),
        "imports wasmgate:plugin/tasks@0.1.0 but its manifest does not grant the `tasks` capability",
    );
}

#[tokio::test]
async fn the_examples_serve_under_the_policy_they_ship_with() {
    // The Python example takes tens of seconds to compile cold (CPython is
    // inside it), past the harness's wait for readiness on a busy machine;
    // its grants are checked below without it. The rest, as shipped:
    let examples = crate::support::workspace_root().join("target/example-plugins");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&examples).unwrap().flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with("search-tasks")
        {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    let server = crate::support::TestServer::start(dir.path()).ready().await;
    let ready: serde_json::Value = reqwest::get(server.url("/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["rejected"], 0, "{ready}");
    let listed: serde_json::Value = reqwest::Client::new()
        .post(server.url("/mcp"))
        .bearer_auth(crate::support::token("alice"))
        .header("accept", "application/json, text/event-stream")
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or_default();
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .map(|tools| tools.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    for tool in [
        "task_stats",
        "add_note",
        "list_notes",
        "delete_note",
        "fetch_title",
    ] {
        assert!(names.contains(&tool), "{tool} in {names:?} ({listed})");
    }
    // The Python example's grants, checked without its compile.
    let read = |name: &str| std::fs::read_to_string(examples.join(name)).unwrap();
    let policy = wasmgate::plugins::Policy::parse(&read("policy.toml")).unwrap();
    let manifest = wasmgate::plugins::Manifest::parse(&read("search-tasks.toml")).unwrap();
    let granted = policy.grant(&manifest, "");
    assert!(
        granted.is_ok(),
        "{:?}",
        granted.err().map(|d| d.to_string())
    );
}
