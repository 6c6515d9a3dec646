//! A turn as a ChatKit event stream: the protocol order, tokens from the
//! provider, failures, a client that leaves, a slow answer, a retry.

use super::*;

#[tokio::test]
async fn a_new_thread_streams_in_protocol_order() {
    let server = TestServer::start(&plugins_dir()).ready().await;
    let kit = ChatKit::new(&server, "alice");
    let events = kit
        .stream(
            "threads.create",
            json!({"input": input("Add a task to buy milk")}),
        )
        .await;
    let kinds = types(&events);
    assert_eq!(
        kinds,
        [
            "thread.created",
            "thread.item.done:user_message",
            "stream_options",
            "thread.item.added:workflow",
            "updated:workflow.task.updated",
            "thread.item.done:workflow",
            "thread.item.added:assistant_message",
            "updated:assistant_message.content_part.added",
            "updated:assistant_message.content_part.text_delta",
            "updated:assistant_message.content_part.done",
            "thread.item.done:assistant_message",
        ],
        "{events:#?}"
    );
    check_reply_order(&events);
    let thread = &events[0]["thread"];
    assert_eq!(thread["items"], json!({"data": [], "has_more": false}));
    assert_eq!(thread["title"], "Add a task to buy milk");
    assert_eq!(thread["status"], json!({"type": "active"}));
    assert_eq!(events[2]["stream_options"], json!({"allow_cancel": true}));
    let user = &events[1]["item"];
    assert_eq!(user["thread_id"], thread["id"]);
    assert_eq!(
        user["content"],
        json!([{"type": "input_text", "text": "Add a task to buy milk"}])
    );
    // The reply's item opens empty; its part comes with content_part.added
    // (as the reference SDK's server sends them).
    assert_eq!(events[6]["item"]["content"], json!([]), "{}", events[6]);
    assert_eq!(
        events[7]["update"]["content"],
        json!({"type": "output_text", "text": "", "annotations": []})
    );
    let task = &events[5]["item"]["workflow"]["tasks"][0];
    assert_eq!(task["title"], "add_task");
    assert_eq!(task["status_indicator"], "complete");
    let reply = &events[10]["item"]["content"][0]["text"];
    assert!(reply.as_str().unwrap().contains("Buy milk"), "{reply}");

    // The task is real, and the stored thread reads back as it streamed.
    let tasks = rest_get(&server, "alice", "/tasks").await;
    assert_eq!(tasks[0]["title"], "Buy milk");
    let thread_id = thread["id"].as_str().unwrap();
    let stored = kit.items(thread_id).await;
    let streamed_done: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "thread.item.done")
        .map(|e| &e["item"])
        .collect();
    assert_eq!(stored.iter().collect::<Vec<_>>(), streamed_done);
}

#[tokio::test]
async fn text_streams_token_by_token_from_the_provider() {
    let chunk = |content: &str| json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]});
    let mock = MockOpenAi::start(vec![Reply::Stream(vec![
        chunk("Hello"),
        chunk(", "),
        chunk("Alice"),
        chunk("!"),
    ])])
    .await;
    let server = server_for(&mock).await;
    let kit = ChatKit::new(&server, "alice");
    let events = kit
        .stream("threads.create", json!({"input": input("Say hello")}))
        .await;
    check_reply_order(&events);
    assert_eq!(deltas(&events), ["Hello", ", ", "Alice", "!"]);
    assert_eq!(mock.requests()[0].body["stream"], true);
}

#[tokio::test]
async fn a_failing_provider_ends_the_stream_with_an_error_and_keeps_the_message() {
    let mock = MockOpenAi::start(vec![]).await;
    mock.always(Reply::Json(
        400,
        json!({"error": {"message": "model not found"}}),
    ));
    let server = server_for(&mock).await;
    let kit = ChatKit::new(&server, "alice");
    let events = kit
        .stream(
            "threads.create",
            json!({"input": input("Add a task to buy milk")}),
        )
        .await;
    assert_eq!(
        types(&events),
        [
            "thread.created",
            "thread.item.done:user_message",
            "stream_options",
            "error"
        ]
    );
    let error = events.last().unwrap();
    assert_eq!(error["code"], "custom");
    assert_eq!(error["allow_retry"], true);
    assert!(
        error["message"].as_str().unwrap().contains("saved"),
        "{error}"
    );
    let thread = events[0]["thread"]["id"].as_str().unwrap();
    let items = kit.items(thread).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["type"], "user_message");
}

#[tokio::test]
async fn a_stream_cut_short_is_an_error_not_a_shorter_reply() {
    let event_stream = vec![("content-type", "text/event-stream")];
    // No events at all, then a reply that stops mid-answer: neither a
    // `finish_reason` nor `[DONE]`.
    let mock = MockOpenAi::start(vec![
        Reply::Raw(200, event_stream.clone(), ": nothing to see\n\n"),
        Reply::Raw(
            200,
            event_stream,
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Sure, I will\"},\"finish_reason\":null}]}\n\n",
        ),
    ])
    .await;
    let server = server_for(&mock).await;
    let kit = ChatKit::new(&server, "alice");

    let empty = kit
        .stream("threads.create", json!({"input": input("Add milk")}))
        .await;
    assert_eq!(
        types(&empty),
        [
            "thread.created",
            "thread.item.done:user_message",
            "stream_options",
            "error"
        ]
    );

    let cut = kit
        .stream("threads.create", json!({"input": input("Add bread")}))
        .await;
    assert_eq!(deltas(&cut), ["Sure, I will"]);
    let last = cut.last().unwrap();
    assert_eq!(last["type"], "error", "{cut:?}");
    assert_eq!(last["allow_retry"], true);
}

#[tokio::test]
async fn retry_replaces_everything_after_the_user_message() {
    each_backend(retry_replaces_everything_after_the_user_message_on).await;
}

async fn retry_replaces_everything_after_the_user_message_on(server: TestServer) {
    let kit = ChatKit::new(&server, "alice");
    let (events, thread) = kit.create("Add a task to buy milk").await;
    let user_item = events[1]["item"]["id"].clone();
    let before = kit.items(&thread).await;

    let events = kit
        .stream(
            "threads.retry_after_item",
            json!({"thread_id": thread, "item_id": user_item}),
        )
        .await;
    assert_eq!(types(&events)[0], "stream_options");
    check_reply_order(&events);
    let after = kit.items(&thread).await;
    assert_eq!(after.len(), before.len(), "{after:#?}");
    assert_eq!(after[0], before[0], "the user message stays");
    assert_ne!(after[1]["id"], before[1]["id"], "the answer is new");

    // Only a user message can be retried.
    let (status, body) = kit
        .call(
            "threads.retry_after_item",
            json!({"thread_id": thread, "item_id": after.last().unwrap()["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_and_keeps_the_partial_reply() {
    let chunk = |content: &str| json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]});
    // 400 chunks, 5 ms apart: two seconds of reply.
    let chunks: Vec<Value> = (0..400).map(|i| chunk(&format!("w{i} "))).collect();
    let mock = MockOpenAi::start(vec![
        Reply::Stream(chunks),
        crate::mock_openai::text("Sorry, here is a short one."),
    ])
    .await;
    let server = server_for(&mock).await;
    let kit = ChatKit::new(&server, "alice");

    let response = kit
        .send(&json!({"type": "threads.create", "params": {"input": input("Tell me a story")}}))
        .await;
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while text.matches("text_delta").count() < 5 {
        text.push_str(&String::from_utf8_lossy(
            &body.next().await.unwrap().unwrap(),
        ));
    }
    drop(body);
    let thread = parse_events(text.split("\n\n").next().unwrap())[0]["thread"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The partial reply is stored once the server notices.
    let mut kept = String::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let items = kit.items(&thread).await;
        if let Some(reply) = items.iter().find(|i| i["type"] == "assistant_message") {
            kept = reply["content"][0]["text"].as_str().unwrap().to_string();
            if !kept.is_empty() {
                break;
            }
        }
    }
    assert!(kept.starts_with("w0 w1 w2 w3 w4 "), "{kept:?}");
    assert!(!kept.contains("w399"), "the turn was cancelled: {kept:?}");

    // The next turn works, and the model hears what happened.
    let events = kit
        .stream(
            "threads.add_user_message",
            json!({"thread_id": thread, "input": input("Shorter, please")}),
        )
        .await;
    check_reply_order(&events);
    let sent = &mock.requests()[1].body["messages"];
    let roles: Vec<&str> = sent
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "system", "user"],
        "{sent}"
    );
    assert_eq!(sent[2]["content"].as_str().unwrap(), kept);
    assert!(
        sent[3]["content"].as_str().unwrap().contains("cancelled"),
        "{sent}"
    );
}

#[tokio::test]
async fn a_slow_whole_answer_keeps_the_stream_alive_and_still_shows() {
    // The provider takes longer than the 15 s keep-alive interval, then
    // answers the streamed request whole, as JSON (as some OpenAI-compatible
    // servers do).
    let mock = MockOpenAi::start(vec![Reply::Delayed(
        Duration::from_secs(16),
        Box::new(crate::mock_openai::text("Worth the wait.")),
    )])
    .await;
    let server = server_for(&mock).await;
    let kit = ChatKit::new(&server, "alice");

    let response = kit
        .send(&json!({"type": "threads.create", "params": {"input": input("Hello")}}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.text().await.unwrap();
    let frames: Vec<&str> = body.split("\n\n").filter(|f| !f.is_empty()).collect();
    let first_reply = frames
        .iter()
        .position(|f| f.contains("assistant_message"))
        .expect("the reply streamed");
    let comment = frames
        .iter()
        .position(|f| f.starts_with(':'))
        .expect("a keep-alive comment while the provider was silent");
    assert!(comment < first_reply, "{body}");

    // Without the comments, the stream is the usual one.
    let data: Vec<&str> = frames.into_iter().filter(|f| !f.starts_with(':')).collect();
    let events = parse_events(&data.join("\n\n"));
    check_reply_order(&events);
    let text = events
        .iter()
        .filter(|e| e["type"] == "thread.item.done" && e["item"]["type"] == "assistant_message")
        .find_map(|e| e["item"]["content"][0]["text"].as_str());
    assert_eq!(text, Some("Worth the wait."), "{body}");
}
