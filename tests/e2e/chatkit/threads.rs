//! Threads as the chat API's conversations: both doors on one conversation,
//! paging with cursors, and every JSON request type.

use super::*;

#[tokio::test]
async fn threads_are_the_chat_apis_conversations_both_ways() {
    let server = TestServer::start(&plugins_dir()).ready().await;
    let kit = ChatKit::new(&server, "alice");
    let client = reqwest::Client::new();
    let chat = |body: Value| {
        client
            .post(server.url("/api/alice/chat"))
            .bearer_auth(token("alice"))
            .json(&body)
            .send()
    };

    // Started through /chat, continued through ChatKit.
    let answer: Value = chat(json!({"content": "Add a task to call mom"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let thread = format!("thr_{}", answer["conversation_id"]);
    let thread_first = thread.clone();
    let listed = kit.ok("threads.list", json!({}), "thread_page").await;
    assert_eq!(listed["data"][0]["id"], thread.as_str());
    let events = kit
        .stream(
            "threads.add_user_message",
            json!({"thread_id": thread, "input": input("Show my tasks")}),
        )
        .await;
    assert_eq!(
        types(&events)[..2],
        ["thread.item.done:user_message", "stream_options"]
    );
    check_reply_order(&events);
    let items = kit.items(&thread).await;
    let kinds: Vec<&str> = items.iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "user_message",
            "workflow",
            "assistant_message",
            "user_message",
            "workflow",
            "assistant_message"
        ]
    );
    assert!(
        items[5]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Call mom")
    );

    // Started through ChatKit, continued through /chat.
    let events = kit
        .stream(
            "threads.create",
            json!({"input": input("Add a task to water plants")}),
        )
        .await;
    let thread = events[0]["thread"]["id"].as_str().unwrap();
    let id: i64 = thread.strip_prefix("thr_").unwrap().parse().unwrap();
    let answer: Value = chat(json!({"content": "Mark task 2 as complete", "conversation_id": id}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["conversation_id"], id);
    let conversation = rest_get(&server, "alice", &format!("/conversations/{id}")).await;
    let users: Vec<&str> = conversation["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        users,
        ["Add a task to water plants", "Mark task 2 as complete"]
    );
    // Both doors' turns read back in one shape: each reply with its calls
    // as objects, results included, as /chat answers them.
    let messages = conversation["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4, "{conversation}");
    let streamed = &messages[1];
    assert_eq!(streamed["role"], "assistant");
    assert_eq!(streamed["tool_calls"][0]["name"], "add_task", "{streamed}");
    assert_eq!(
        streamed["tool_calls"][0]["arguments"]["title"],
        "Water plants"
    );
    assert!(
        streamed["tool_calls"][0]["result"].is_object(),
        "{streamed}"
    );
    let reply = events.last().unwrap()["item"].clone();
    assert_eq!(
        streamed["content"], reply["content"][0]["text"],
        "the text the widget was shown"
    );
    assert_eq!(messages[3]["id"], answer["message_id"]);
    assert_eq!(messages[3]["tool_calls"], answer["tool_calls"]);

    // The chat API lists the most recently active first, whichever door.
    let first = thread_first.strip_prefix("thr_").unwrap().to_string();
    let listed = rest_get(&server, "alice", "/conversations").await;
    assert_eq!(listed[0]["id"], id);
    kit.stream(
        "threads.add_user_message",
        json!({"thread_id": thread_first, "input": input("hello")}),
    )
    .await;
    let listed = rest_get(&server, "alice", "/conversations").await;
    assert_eq!(listed[0]["id"].to_string(), first);
}

#[tokio::test]
async fn items_and_threads_page_with_after_cursors() {
    each_backend(items_and_threads_page_with_after_cursors_on).await;
}

async fn items_and_threads_page_with_after_cursors_on(server: TestServer) {
    let kit = ChatKit::new(&server, "alice");
    let (_, thread) = kit.create("Add a task to buy milk").await;
    for text in ["Show my tasks", "Add a task to buy eggs", "hello"] {
        kit.stream(
            "threads.add_user_message",
            json!({"thread_id": thread, "input": input(text)}),
        )
        .await;
    }
    let all = kit.items(&thread).await;
    assert!(all.len() >= 10, "{all:#?}");

    for (order, expected) in [
        ("asc", all.clone()),
        ("desc", all.iter().rev().cloned().collect()),
    ] {
        let mut walked = Vec::new();
        let mut after = Value::Null;
        loop {
            let page = kit
                .ok(
                    "items.list",
                    json!({"thread_id": thread, "limit": 3, "order": order, "after": after}),
                    "item_page",
                )
                .await;
            let data = page["data"].as_array().unwrap();
            assert!(data.len() <= 3);
            walked.extend(data.iter().cloned());
            if page["has_more"] == false {
                assert!(page.get("after").is_none(), "no cursor on the last page");
                break;
            }
            assert_eq!(page["after"], data.last().unwrap()["id"]);
            after = page["after"].clone();
        }
        assert_eq!(walked, expected, "{order}");
    }
    // Default: newest first, 20 at most.
    let page = kit
        .ok("items.list", json!({"thread_id": thread}), "item_page")
        .await;
    assert_eq!(page["data"][0], *all.last().unwrap());

    // Threads: newest first by default, 2 per page.
    for text in ["hello", "hello again"] {
        kit.stream("threads.create", json!({"input": input(text)}))
            .await;
    }
    let first = kit
        .ok("threads.list", json!({"limit": 2}), "thread_page")
        .await;
    assert_eq!(first["has_more"], true);
    assert_eq!(first["data"][0]["title"], "hello again");
    assert_eq!(
        first["data"][0]["items"],
        json!({"data": [], "has_more": false})
    );
    let second = kit
        .ok(
            "threads.list",
            json!({"limit": 2, "after": first["after"]}),
            "thread_page",
        )
        .await;
    assert_eq!(second["has_more"], false);
    assert_eq!(second["data"].as_array().unwrap().len(), 1);
    assert_eq!(second["data"][0]["id"], thread.as_str());
    // A larger page than served is capped, not refused.
    let all = kit
        .ok("threads.list", json!({"limit": 100_000}), "thread_page")
        .await;
    assert_eq!(all["data"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn every_json_request_type_answers() {
    each_backend(every_json_request_type_answers_on).await;
}

async fn every_json_request_type_answers_on(server: TestServer) {
    let kit = ChatKit::new(&server, "alice");
    let (events, thread) = kit.create("Add a task to buy milk").await;

    let got = kit
        .ok("threads.get_by_id", json!({"thread_id": thread}), "thread")
        .await;
    assert_eq!(got["id"], thread.as_str());
    assert_eq!(got["items"]["data"][0]["type"], "user_message");

    let renamed = kit
        .ok(
            "threads.update",
            json!({"thread_id": thread, "title": "Groceries"}),
            "thread",
        )
        .await;
    assert_eq!(renamed["title"], "Groceries");
    let listed = kit.ok("threads.list", json!({}), "thread_page").await;
    assert_eq!(listed["data"][0]["title"], "Groceries");

    let reply = events.last().unwrap()["item"]["id"].clone();
    let answer = kit
        .ok(
            "items.feedback",
            json!({"thread_id": thread, "item_ids": [reply], "kind": "positive"}),
            "empty",
        )
        .await;
    assert_eq!(answer, json!({}));
    let id = thread.strip_prefix("thr_").unwrap();
    let conversation = rest_get(&server, "alice", &format!("/conversations/{id}")).await;
    let rated: Vec<&Value> = conversation["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m.get("feedback").is_some())
        .collect();
    assert_eq!(rated.len(), 1, "{conversation}");
    assert_eq!(rated[0]["feedback"], "positive");
    assert_eq!(rated[0]["role"], "assistant");

    for (kind, params) in [
        (
            "attachments.create",
            json!({"name": "a.png", "size": 3, "mime_type": "image/png"}),
        ),
        ("attachments.delete", json!({"attachment_id": "atc_1"})),
        (
            "input.transcribe",
            json!({"audio_base64": "AAAA", "mime_type": "audio/webm"}),
        ),
        (
            "threads.sync_custom_action",
            json!({"thread_id": thread, "action": {"type": "open"}}),
        ),
        (
            "threads.add_client_tool_output",
            json!({"thread_id": thread, "result": {}}),
        ),
    ] {
        let (status, body) = kit.call(kind, params).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{kind}: {body}");
        assert!(body["error"]["message"].is_string(), "{kind}: {body}");
    }

    let events = kit
        .stream(
            "threads.custom_action",
            json!({"thread_id": thread, "action": {"type": "open", "payload": {"x": 1}}}),
        )
        .await;
    assert_eq!(types(&events), ["stream_options", "notice"]);

    let answer = kit
        .ok("threads.delete", json!({"thread_id": thread}), "empty")
        .await;
    assert_eq!(answer, json!({}));
    let (status, _) = kit
        .call("threads.get_by_id", json!({"thread_id": thread}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
