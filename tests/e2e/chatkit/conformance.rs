//! The reference SDK (`openai-chatkit`) parses every answer wasmgate gives.

use super::*;

#[tokio::test]
async fn the_reference_sdk_accepts_every_answer() {
    let python = crate::support::python_venv("py-chatkit", "openai-chatkit>=1.6,<1.7").await;
    let server = TestServer::start(&plugins_dir()).ready().await;
    let kit = ChatKit::new(&server, "alice");

    // Every request type with a successful answer, and their events.
    let (events, thread) = kit.create("Add a task to buy milk").await;
    let user_item = events[1]["item"]["id"].clone();
    for text in ["Show my tasks", "Delete the milk task", "hello"] {
        kit.stream(
            "threads.add_user_message",
            json!({"thread_id": thread, "input": input(text)}),
        )
        .await;
    }
    kit.stream(
        "threads.retry_after_item",
        json!({"thread_id": thread, "item_id": user_item}),
    )
    .await;
    kit.stream(
        "threads.custom_action",
        json!({"thread_id": thread, "action": {"type": "open"}}),
    )
    .await;
    kit.ok("threads.get_by_id", json!({"thread_id": thread}), "thread")
        .await;
    kit.ok(
        "threads.update",
        json!({"thread_id": thread, "title": "Renamed"}),
        "thread",
    )
    .await;
    kit.ok("threads.list", json!({"limit": 1}), "thread_page")
        .await;
    kit.ok(
        "items.list",
        json!({"thread_id": thread, "limit": 2}),
        "item_page",
    )
    .await;
    kit.items(&thread).await;
    kit.ok(
        "items.feedback",
        json!({"thread_id": thread, "item_ids": [user_item], "kind": "negative"}),
        "empty",
    )
    .await;
    kit.ok("threads.delete", json!({"thread_id": thread}), "empty")
        .await;

    let seen = kit.seen.lock().unwrap().clone();
    let kinds: HashSet<&str> = seen.iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.len(), 6, "{kinds:?}");
    let file = crate::support::workspace_root().join("target/chatkit-conformance.jsonl");
    let lines: Vec<String> = seen.iter().map(Value::to_string).collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let script = crate::support::workspace_root().join("tests/python/chatkit_conformance.py");
    let output = tokio::process::Command::new(python)
        .arg(script)
        .arg(&file)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
