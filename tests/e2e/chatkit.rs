//! The ChatKit door end to end: the real binary, the `rules` model or the
//! mock OpenAI server, and every answer checked against the ChatKit protocol (and, in
//! `the_reference_sdk_accepts_every_answer`, against the SDK's own types).

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::mock_openai::{MockOpenAi, Reply};
use crate::support::{TestDatabase, TestServer, backends, plugins_dir, token};

/// A ChatKit client with one bearer credential (a JWT or a client secret).
/// Everything it receives is kept, for the conformance check.
struct ChatKit<'a> {
    server: &'a TestServer,
    bearer: String,
    client: reqwest::Client,
    seen: std::sync::Mutex<Vec<Value>>,
}

impl<'a> ChatKit<'a> {
    fn new(server: &'a TestServer, user: &str) -> Self {
        ChatKit::with_bearer(server, token(user))
    }

    fn with_bearer(server: &'a TestServer, bearer: String) -> Self {
        ChatKit {
            server,
            bearer,
            client: reqwest::Client::new(),
            seen: Default::default(),
        }
    }

    fn keep(&self, kind: &str, value: &Value) {
        self.seen
            .lock()
            .unwrap()
            .push(json!({"kind": kind, "value": value}));
    }

    async fn send(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(self.server.url("/api/v1/chatkit"))
            .bearer_auth(&self.bearer)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// A non-streaming request: status and JSON body.
    async fn call(&self, kind: &str, params: Value) -> (StatusCode, Value) {
        let body = json!({"type": kind, "params": params});
        self.keep("request", &body);
        let response = self.send(&body).await;
        let status = response.status();
        if status.is_success() {
            assert_eq!(
                response.headers()["content-type"],
                "application/json",
                "{kind}"
            );
        }
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A successful non-streaming request, its answer kept as `answer_kind`.
    async fn ok(&self, kind: &str, params: Value, answer_kind: &str) -> Value {
        let (status, body) = self.call(kind, params).await;
        assert_eq!(status, StatusCode::OK, "{kind}: {body}");
        self.keep(answer_kind, &body);
        body
    }

    /// A streaming request: every event, in order.
    async fn stream(&self, kind: &str, params: Value) -> Vec<Value> {
        let body = json!({"type": kind, "params": params});
        self.keep("request", &body);
        let response = self.send(&body).await;
        assert_eq!(response.status(), StatusCode::OK, "{kind}");
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let text = response.text().await.unwrap();
        let events = parse_events(&text);
        for event in &events {
            self.keep("event", event);
        }
        events
    }

    /// `threads.create` with `text`: its events and the new thread's id.
    async fn create(&self, text: &str) -> (Vec<Value>, String) {
        let events = self
            .stream("threads.create", json!({"input": input(text)}))
            .await;
        let thread = events[0]["thread"]["id"].as_str().unwrap().to_string();
        (events, thread)
    }

    async fn items(&self, thread: &str) -> Vec<Value> {
        let page = self
            .ok(
                "items.list",
                json!({"thread_id": thread, "order": "asc", "limit": 100}),
                "item_page",
            )
            .await;
        page["data"].as_array().unwrap().clone()
    }
}

/// Runs `test` against a server on each backend: SQLite always, PostgreSQL
/// when `WASMGATE_TEST_POSTGRES_URL` is set.
async fn each_backend<F, Fut>(test: F)
where
    F: Fn(TestServer) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for backend in backends() {
        let db = TestDatabase::new(backend).await;
        let server = TestServer::start_with(&plugins_dir(), &[("DATABASE_URL", &db.url)])
            .ready()
            .await;
        test(server).await;
    }
}

/// `GET /api/{user}{path}` with the user's JWT: the JSON answer.
async fn rest_get(server: &TestServer, user: &str, path: &str) -> Value {
    reqwest::Client::new()
        .get(server.url(&format!("/api/{user}{path}")))
        .bearer_auth(token(user))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The real binary with the `openai` provider pointed at `mock`.
async fn server_for(mock: &MockOpenAi) -> TestServer {
    let env = mock.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestServer::start_with(&plugins_dir(), &env).ready().await
}

/// The `data:` payloads of an SSE body; nothing else may be in it.
fn parse_events(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter(|frame| !frame.is_empty())
        .map(|frame| {
            let data = frame
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("a frame that is not one data line: {frame:?}"));
            assert!(!data.contains('\n'), "one line per event: {frame:?}");
            serde_json::from_str(data).unwrap()
        })
        .collect()
}

fn input(text: &str) -> Value {
    json!({"content": [{"type": "input_text", "text": text}], "attachments": [], "inference_options": {}})
}

/// The text deltas of a streamed turn, in order.
fn deltas(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| e["update"]["delta"].as_str())
        .collect()
}

fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e["type"].as_str().unwrap() {
            "thread.item.updated" => format!("updated:{}", e["update"]["type"].as_str().unwrap()),
            "thread.item.added" | "thread.item.done" => format!(
                "{}:{}",
                e["type"].as_str().unwrap(),
                e["item"]["type"].as_str().unwrap()
            ),
            other => other.to_string(),
        })
        .collect()
}

/// The ChatKit protocol's rules for a reply's events: every added item is done later
/// with the same id, updates only touch open items, item ids are unique,
/// and an assistant message's deltas add up to its final text.
fn check_reply_order(events: &[Value]) {
    let mut open: HashSet<String> = HashSet::new();
    let mut done: HashSet<String> = HashSet::new();
    let mut text = std::collections::HashMap::<String, String>::new();
    for event in events {
        match event["type"].as_str().unwrap() {
            "thread.item.added" => {
                let id = event["item"]["id"].as_str().unwrap().to_string();
                assert!(!done.contains(&id) && open.insert(id), "{event}");
            }
            "thread.item.updated" => {
                let id = event["item_id"].as_str().unwrap();
                assert!(open.contains(id), "update of an item not open: {event}");
                if let Some(delta) = event["update"]["delta"].as_str() {
                    text.entry(id.to_string()).or_default().push_str(delta);
                }
            }
            "thread.item.done" => {
                let item = &event["item"];
                let id = item["id"].as_str().unwrap().to_string();
                open.remove(&id);
                assert!(done.insert(id.clone()), "an item done twice: {event}");
                if item["type"] == "assistant_message" {
                    assert_eq!(
                        item["content"][0]["text"].as_str().unwrap(),
                        text.get(&id).map(String::as_str).unwrap_or_default(),
                        "deltas add up to the text"
                    );
                }
            }
            _ => {}
        }
    }
    assert!(open.is_empty(), "items never done: {open:?}");
}

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

#[tokio::test]
async fn sessions_issue_expire_cancel_and_rate_limit_secrets() {
    each_backend(sessions_issue_expire_cancel_and_rate_limit_secrets_on).await;
}

async fn sessions_issue_expire_cancel_and_rate_limit_secrets_on(server: TestServer) {
    let client = reqwest::Client::new();
    let create = |user: &str, body: Value| {
        client
            .post(server.url("/api/v1/chatkit/sessions"))
            .bearer_auth(token(user))
            .json(&body)
            .send()
    };
    let session: Value = create("alice", json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session["object"], "chatkit.session");
    assert_eq!(session["status"], "active");
    assert_eq!(session["user"], "alice");
    assert_eq!(session["id"], session["session_id"]);
    let secret = session["client_secret"].as_str().unwrap().to_string();

    // The secret works for alice's threads, and only for ChatKit.
    let kit = ChatKit::with_bearer(&server, secret.clone());
    let (_, thread) = kit.create("hello").await;
    let jwt_kit = ChatKit::new(&server, "alice");
    jwt_kit
        .ok("threads.get_by_id", json!({"thread_id": thread}), "thread")
        .await;
    let (status, _) = ChatKit::new(&server, "bob")
        .call("threads.get_by_id", json!({"thread_id": thread}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another user's thread");
    let status = client
        .get(server.url("/api/alice/tasks"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a secret is not a JWT");

    // A session that names no conversation opens the user's latest...
    let id: i64 = thread.strip_prefix("thr_").unwrap().parse().unwrap();
    assert!(session["conversation_id"].is_i64(), "a new one: {session}");
    let latest: Value = create("alice", json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(latest["conversation_id"], id, "{latest}");
    assert_eq!(latest["thread_id"], thread.as_str());
    // ...or, for a user with none, a new one, named by its first message.
    let fresh: Value = create("carol", json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let opened = fresh["thread_id"].as_str().unwrap().to_string();
    assert_eq!(fresh["conversation_id"].to_string(), opened["thr_".len()..]);
    let carol = ChatKit::new(&server, "carol");
    carol
        .stream(
            "threads.add_user_message",
            json!({"thread_id": opened, "input": input("Add a task to call mom")}),
        )
        .await;
    let listed = rest_get(&server, "carol", "/conversations").await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["title"], "Add a task to call mom");

    // Bound to a conversation; bad bodies; another user's conversation.
    let bound: Value = create("alice", json!({"conversation_id": id}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bound["thread_id"], thread.as_str());
    for (user, body, expected) in [
        ("bob", json!({"conversation_id": id}), StatusCode::NOT_FOUND),
        (
            "alice",
            json!({"expires_after": {"anchor": "created_at", "seconds": 0}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "alice",
            json!({"rate_limits": {"max_requests_per_1_minute": "many"}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "alice",
            json!({"expires_after": {"anchor": "now", "seconds": 60}}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let response = create(user, body.clone()).await.unwrap();
        assert_eq!(response.status(), expected, "{body}");
        let error: Value = response.json().await.unwrap();
        assert!(error["error"]["message"].is_string());
    }

    // Cancelled → 401; only its owner can cancel it.
    let cancel = |user: &str, id: &str| {
        client
            .post(server.url(&format!("/api/v1/chatkit/sessions/{id}/cancel")))
            .bearer_auth(token(user))
            .send()
    };
    let id = session["id"].as_str().unwrap();
    assert_eq!(
        cancel("bob", id).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let cancelled: Value = cancel("alice", id).await.unwrap().json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert!(cancelled.get("client_secret").is_none());
    let (status, body) = kit.call("threads.list", json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // Expired → 401.
    let short: Value = create(
        "alice",
        json!({"expires_after": {"anchor": "created_at", "seconds": 2}}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let short_kit = ChatKit::with_bearer(&server, short["client_secret"].as_str().unwrap().into());
    assert_eq!(
        short_kit.call("threads.list", json!({})).await.0,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(
        short_kit.call("threads.list", json!({})).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Rate limited per session → 429 with Retry-After.
    let limited: Value = create(
        "alice",
        json!({"rate_limits": {"max_requests_per_1_minute": 2}}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let limited_kit =
        ChatKit::with_bearer(&server, limited["client_secret"].as_str().unwrap().into());
    for _ in 0..2 {
        assert_eq!(
            limited_kit.call("threads.list", json!({})).await.0,
            StatusCode::OK
        );
    }
    let response = limited_kit
        .send(&json!({"type": "threads.list", "params": {}}))
        .await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));

    // A secret cannot make sessions.
    let status = client
        .post(server.url("/api/v1/chatkit/sessions"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bad_requests_get_clear_json_errors() {
    let server = TestServer::start(&plugins_dir()).ready().await;
    let client = reqwest::Client::new();
    let raw = |bearer: Option<String>, body: &'static str| {
        let mut request = client
            .post(server.url("/api/v1/chatkit"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send()
    };
    let alice = || Some(token("alice"));
    for (bearer, body, expected) in [
        (
            None,
            r#"{"type":"threads.list","params":{}}"#,
            StatusCode::UNAUTHORIZED,
        ),
        (
            Some("garbage".to_string()),
            r#"{"type":"threads.list","params":{}}"#,
            StatusCode::UNAUTHORIZED,
        ),
        (
            Some("cks_unknown".to_string()),
            r#"{"type":"threads.list","params":{}}"#,
            StatusCode::UNAUTHORIZED,
        ),
        (alice(), "{not json", StatusCode::BAD_REQUEST),
        (alice(), r#"{"params":{}}"#, StatusCode::BAD_REQUEST),
        (
            alice(),
            r#"{"type":"threads.explode","params":{}}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            alice(),
            r#"{"type":"threads.create","params":{}}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            alice(),
            r#"{"type":"threads.create","params":{"input":{"content":[{"type":"input_text","text":"  "}]}}}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            alice(),
            r#"{"type":"threads.create","params":{"input":{"content":[{"type":"input_image"}]}}}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            alice(),
            r#"{"type":"items.list","params":{}}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            alice(),
            r#"{"type":"items.list","params":{"thread_id":"thr_1","limit":-1}}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            alice(),
            r#"{"type":"threads.list","params":{"order":"sideways"}}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            alice(),
            r#"{"type":"threads.get_by_id","params":{"thread_id":"thr_999"}}"#,
            StatusCode::NOT_FOUND,
        ),
        (
            alice(),
            r#"{"type":"threads.get_by_id","params":{"thread_id":"nonsense"}}"#,
            StatusCode::NOT_FOUND,
        ),
        (
            alice(),
            r#"{"type":"threads.add_user_message","params":{"thread_id":"thr_999","input":{"content":[{"type":"input_text","text":"hi"}]}}}"#,
            StatusCode::NOT_FOUND,
        ),
    ] {
        let response = raw(bearer, body).await.unwrap();
        assert_eq!(response.status(), expected, "{body}");
        let error: Value = response.json().await.unwrap();
        assert!(error["error"]["message"].is_string(), "{body}: {error}");
    }

    // Too large: 413, still JSON.
    let response = client
        .post(server.url("/api/v1/chatkit"))
        .bearer_auth(token("alice"))
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "payload_too_large");

    // Another user's thread is not found, whatever the request.
    let kit = ChatKit::new(&server, "alice");
    let events = kit
        .stream("threads.create", json!({"input": input("hello")}))
        .await;
    let thread = events[0]["thread"]["id"].clone();
    let user_item = events[1]["item"]["id"].clone();
    let bob = ChatKit::new(&server, "bob");
    for (kind, params) in [
        ("threads.get_by_id", json!({"thread_id": thread})),
        ("items.list", json!({"thread_id": thread})),
        (
            "threads.update",
            json!({"thread_id": thread, "title": "mine"}),
        ),
        ("threads.delete", json!({"thread_id": thread})),
        (
            "items.feedback",
            json!({"thread_id": thread, "item_ids": [user_item], "kind": "negative"}),
        ),
        (
            "threads.add_user_message",
            json!({"thread_id": thread, "input": input("hi")}),
        ),
        (
            "threads.retry_after_item",
            json!({"thread_id": thread, "item_id": user_item}),
        ),
        (
            "threads.custom_action",
            json!({"thread_id": thread, "action": {"type": "x"}}),
        ),
    ] {
        let (status, body) = bob.call(kind, params).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{kind}: {body}");
    }
    // …and still there for its owner.
    kit.ok("threads.get_by_id", json!({"thread_id": thread}), "thread")
        .await;
}

#[tokio::test]
async fn cors_preflight_answers_for_allowed_origins_only() {
    let server = TestServer::start_with(
        &plugins_dir(),
        &[(
            "WASMGATE_ALLOWED_ORIGINS",
            "http://localhost:*,https://app.example",
        )],
    )
    .ready()
    .await;
    let client = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, server.url("/api/v1/chatkit"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    for origin in ["http://localhost:5173", "https://app.example"] {
        let response = preflight(origin).await.unwrap();
        assert!(response.status().is_success(), "{origin}");
        assert_eq!(response.headers()["access-control-allow-origin"], origin);
        let allowed = response.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        assert!(allowed.contains("authorization"), "{allowed}");
    }
    let response = preflight("https://evil.example").await.unwrap();
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-origin")
    );
}

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
