//! Structured input (ChatKit 1.6.4): the rules model's "which one?" when
//! several tasks match becomes a multiple-choice `structured_input` item,
//! and `threads.add_structured_input` answers it and continues the turn.

use super::*;

/// A thread with two meeting tasks, and the question the rules model asks
/// when told to delete "the meeting task": (thread, question item).
async fn asked(kit: &ChatKit<'_>) -> (String, Value) {
    let (_, thread) = kit.create("Add a task to plan the team meeting").await;
    kit.stream(
        "threads.add_user_message",
        json!({"thread_id": thread, "input": input("Add a task to send the meeting notes")}),
    )
    .await;
    let events = kit
        .stream(
            "threads.add_user_message",
            json!({"thread_id": thread, "input": input("Delete the meeting task")}),
        )
        .await;
    let question = events
        .iter()
        .find(|e| e["type"] == "thread.item.done" && e["item"]["type"] == "structured_input")
        .unwrap_or_else(|| panic!("no structured input in {events:#?}"))["item"]
        .clone();
    // The host's `ask_user` is the question, not a workflow task.
    assert!(
        !serde_json::to_string(&events)
            .unwrap()
            .contains("\"title\":\"ask_user\""),
        "{events:#?}"
    );
    (thread, question)
}

#[tokio::test]
async fn a_question_is_a_multiple_choice_item_whose_answer_continues_the_turn() {
    let server = TestServer::start(&plugins_dir()).ready().await;
    let kit = ChatKit::new(&server, "alice");
    let (thread, question) = asked(&kit).await;

    assert_eq!(question["status"], "pending", "{question}");
    let choice = &question["inputs"][0];
    assert_eq!(choice["type"], "multiple_choice");
    assert_eq!(
        choice["question"],
        "Several tasks match \"meeting\". Which one do you mean?"
    );
    assert_eq!(
        choice["options"],
        json!([{"value": "task 1 \"Plan the team meeting\""},
               {"value": "task 2 \"Send the meeting notes\""}])
    );
    assert_eq!(choice["multiple"], false);
    let item_id = question["id"].as_str().unwrap();
    let listed = kit.items(&thread).await;
    assert_eq!(
        listed.last().unwrap(),
        &question,
        "items.list shows it pending"
    );

    let answer = json!({"thread_id": thread, "item_id": item_id, "input": {
        "status": "answered",
        "answers": {choice["id"].as_str().unwrap(): {"values": ["task 2 \"Send the meeting notes\""]}}}});
    let events = kit
        .stream("threads.add_structured_input", answer.clone())
        .await;
    // First the item as answered, then the turn the answer continues.
    assert_eq!(events[0]["type"], "thread.item.replaced", "{events:#?}");
    let replaced = &events[0]["item"];
    assert_eq!(replaced["id"], item_id);
    assert_eq!(replaced["status"], "answered");
    assert_eq!(
        replaced["inputs"][0]["answer"],
        json!({"values": ["task 2 \"Send the meeting notes\""], "skipped": false})
    );
    let said: Vec<&str> = deltas(&events);
    assert!(
        said.concat().contains("Send the meeting notes"),
        "{events:#?}"
    );
    let tasks = rest_get(&server, "alice", "/tasks").await;
    let titles: Vec<&str> = tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Plan the team meeting"]);

    // Stored as answered; a second answer is refused.
    let listed = kit.items(&thread).await;
    let stored = listed.iter().find(|i| i["id"] == item_id).unwrap();
    assert_eq!(stored, replaced);
    let (status, body) = kit.call("threads.add_structured_input", answer).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "bad_request");
}

#[tokio::test]
async fn a_skipped_question_and_a_typed_answer_are_recorded_too() {
    let server = TestServer::start(&plugins_dir()).ready().await;
    let kit = ChatKit::new(&server, "alice");

    // Skipped: the model hears so, and the item says so.
    let (thread, question) = asked(&kit).await;
    let events = kit
        .stream(
            "threads.add_structured_input",
            json!({"thread_id": thread, "item_id": question["id"], "input": {"status": "skipped"}}),
        )
        .await;
    assert_eq!(events[0]["item"]["status"], "skipped", "{events:#?}");
    assert_eq!(
        events[0]["item"]["inputs"][0]["answer"],
        json!({"values": [], "skipped": true})
    );
    assert_eq!(
        rest_get(&server, "alice", "/tasks")
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Typed instead of chosen: the next message is the answer.
    let events = kit
        .stream(
            "threads.add_user_message",
            json!({"thread_id": thread, "input": input("Delete the meeting task")}),
        )
        .await;
    let question = events
        .iter()
        .find(|e| e["item"]["type"] == "structured_input")
        .unwrap()["item"]
        .clone();
    kit.stream(
        "threads.add_user_message",
        json!({"thread_id": thread, "input": input("1")}),
    )
    .await;
    let listed = kit.items(&thread).await;
    let stored = listed.iter().find(|i| i["id"] == question["id"]).unwrap();
    assert_eq!(stored["status"], "answered");
    assert_eq!(stored["inputs"][0]["answer"]["values"], json!(["1"]));
    assert_eq!(
        rest_get(&server, "alice", "/tasks")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Anything but a pending question is refused: a user message, a bad id.
    let user_item = listed.iter().find(|i| i["type"] == "user_message").unwrap();
    for item_id in [
        user_item["id"].clone(),
        json!("msg_999999"),
        json!("nonsense"),
    ] {
        let (status, body) = kit
            .call(
                "threads.add_structured_input",
                json!({"thread_id": thread, "item_id": item_id, "input": {"status": "answered"}}),
            )
            .await;
        assert!(status.is_client_error(), "{item_id}: {status} {body}");
    }
}
