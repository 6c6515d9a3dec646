//! The reference SDK (`openai-chatkit`) parses every answer wasmgate gives,
//! with the operator's image domains set so that threads carry
//! `allowed_image_domains` (ChatKit 1.6.3).

use super::*;

#[tokio::test]
async fn the_reference_sdk_accepts_every_answer() {
    let python = crate::support::python_venv("py-chatkit", "openai-chatkit>=1.6,<1.7").await;
    let domains = [(
        "WASMGATE_CHATKIT_IMAGE_DOMAINS",
        "images.example.com,cdn.example.org",
    )];
    let server = TestServer::start_with(&plugins_dir(), &domains)
        .ready()
        .await;
    let kit = ChatKit::new(&server, "alice");

    // Every request type with a successful answer, and their events.
    let (events, thread) = kit.create("Add a task to buy milk").await;
    let allowed = json!(["images.example.com", "cdn.example.org"]);
    assert_eq!(events[0]["thread"]["allowed_image_domains"], allowed);
    let user_item = events[1]["item"]["id"].clone();
    let mut question = Value::Null;
    for text in [
        "Show my tasks",
        "Add a task to buy oat milk",
        "Delete the milk task",
    ] {
        let events = kit
            .stream(
                "threads.add_user_message",
                json!({"thread_id": thread, "input": input(text)}),
            )
            .await;
        if let Some(asked) = events
            .iter()
            .find(|e| e["item"]["type"] == "structured_input")
        {
            question = asked["item"].clone();
        }
    }
    // Two tasks match "milk": the question, answered as the widget does.
    let answer = json!({"answer": {"values": [question["inputs"][0]["options"][0]["value"]]}});
    kit.stream(
        "threads.add_structured_input",
        json!({"thread_id": thread, "item_id": question["id"],
               "input": {"status": "answered", "answers": answer}}),
    )
    .await;
    kit.stream(
        "threads.add_user_message",
        json!({"thread_id": thread, "input": input("hello")}),
    )
    .await;
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
    let read = kit
        .ok("threads.get_by_id", json!({"thread_id": thread}), "thread")
        .await;
    assert_eq!(read["allowed_image_domains"], allowed);
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
