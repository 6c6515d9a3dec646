//! `POST /api/{user_id}/chat` end to end: the real binary with the real
//! plugins, the `rules` model or a mock OpenAI server as the model.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::mock_openai::{MockOpenAi, Reply, text, tool_calls};
use crate::support::{TestDatabase, TestServer, plugins_dir, token};

/// A chat client for one user of one server.
struct Chat<'a> {
    server: &'a TestServer,
    user: &'a str,
    client: reqwest::Client,
}

impl<'a> Chat<'a> {
    fn new(server: &'a TestServer, user: &'a str) -> Self {
        Chat {
            server,
            user,
            client: reqwest::Client::new(),
        }
    }

    async fn post(&self, body: Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(self.server.url(&format!("/api/{}/chat", self.user)))
            .bearer_auth(token(self.user))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn say(&self, conversation: Option<i64>, content: &str) -> Value {
        let (status, body) = self
            .post(json!({"content": content, "conversation_id": conversation}))
            .await;
        assert_eq!(status, StatusCode::OK, "{content}: {body}");
        body
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(self.server.url(&format!("/api/{}{path}", self.user)))
            .bearer_auth(token(self.user))
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn tasks(&self) -> Vec<(String, bool)> {
        let (_, tasks) = self.get("/tasks").await;
        tasks
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["title"].as_str().unwrap().to_string(),
                    t["completed"].as_bool().unwrap(),
                )
            })
            .collect()
    }
}

fn env<'a>(pairs: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    pairs.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn calls(reply: &Value) -> Vec<(String, Value)> {
    reply["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["arguments"].clone(),
            )
        })
        .collect()
}

fn owned(rows: &[(&str, bool)]) -> Vec<(String, bool)> {
    rows.iter().map(|(t, c)| (t.to_string(), *c)).collect()
}

#[tokio::test]
async fn the_rules_model_follows_the_spec_table_in_one_conversation() {
    let server = TestServer::start(&plugins_dir()).ready().await;
    let chat = Chat::new(&server, "alice");

    let first = chat.say(None, "Add a task to buy groceries").await;
    let id = first["conversation_id"].as_i64().unwrap();
    assert_eq!(
        calls(&first),
        [("add_task".into(), json!({"title": "Buy groceries"}))]
    );
    assert_eq!(first["tool_calls"][0]["result"]["status"], "created");
    assert!(
        first["response"]
            .as_str()
            .unwrap()
            .contains("Added \"Buy groceries\""),
        "{first}"
    );
    chat.say(Some(id), "Add a task to call mom").await;
    chat.say(Some(id), "Add a task to prepare the team meeting")
        .await;

    let all = chat.say(Some(id), "Show me all my tasks").await;
    assert_eq!(
        calls(&all),
        [("list_tasks".into(), json!({"status": "all"}))]
    );
    assert!(
        all["response"]
            .as_str()
            .unwrap()
            .contains("You have 3 tasks"),
        "{all}"
    );

    let done = chat.say(Some(id), "Mark task 1 as complete").await;
    assert_eq!(
        calls(&done),
        [("complete_task".into(), json!({"task_id": 1}))]
    );

    let pending = chat.say(Some(id), "What's pending?").await;
    assert_eq!(
        calls(&pending),
        [("list_tasks".into(), json!({"status": "pending"}))]
    );
    assert!(
        pending["response"]
            .as_str()
            .unwrap()
            .contains("2 pending tasks"),
        "{pending}"
    );

    let deleted = chat.say(Some(id), "Delete the meeting task").await;
    assert_eq!(
        calls(&deleted),
        [
            ("list_tasks".into(), json!({"status": "all", "limit": 100})),
            ("delete_task".into(), json!({"task_id": 3}))
        ]
    );
    assert!(
        deleted["response"]
            .as_str()
            .unwrap()
            .contains("Deleted \"Prepare the team meeting\""),
        "{deleted}"
    );

    let changed = chat
        .say(Some(id), "Change task 2 to 'Call mom tonight'")
        .await;
    assert_eq!(
        calls(&changed),
        [(
            "update_task".into(),
            json!({"task_id": 2, "title": "Call mom tonight"})
        )]
    );

    let bills = chat.say(Some(id), "I need to remember to pay bills").await;
    assert_eq!(
        calls(&bills),
        [("add_task".into(), json!({"title": "Pay bills"}))]
    );

    let completed = chat.say(Some(id), "What have I completed?").await;
    assert_eq!(
        calls(&completed),
        [("list_tasks".into(), json!({"status": "completed"}))]
    );
    assert!(
        completed["response"]
            .as_str()
            .unwrap()
            .contains("Buy groceries"),
        "{completed}"
    );

    let missing = chat.say(Some(id), "Mark task 42 as complete").await;
    assert_eq!(missing["tool_calls"][0]["is_error"], true);
    assert!(
        missing["response"]
            .as_str()
            .unwrap()
            .contains("task 42 not found"),
        "{missing}"
    );

    assert_eq!(
        chat.tasks().await,
        owned(&[
            ("Buy groceries", true),
            ("Call mom tonight", false),
            ("Pay bills", false)
        ])
    );
    // Every turn went into the one conversation, tool calls included.
    let (_, conversation) = chat.get(&format!("/conversations/{id}")).await;
    let messages = conversation["messages"].as_array().unwrap();
    assert_eq!(messages.iter().filter(|m| m["role"] == "user").count(), 11);
    // User message and reply alternate: a reply folds in its tool rounds.
    for pair in messages.chunks(2) {
        assert_eq!(pair[0]["role"], "user", "{conversation}");
        assert_eq!(pair[1]["role"], "assistant", "{conversation}");
        assert_ne!(pair[1]["content"], "", "no empty bubbles: {conversation}");
    }
    assert!(messages.iter().any(|m| {
        m["tool_calls"]
            .as_array()
            .is_some_and(|calls| calls.iter().any(|c| c["name"] == "delete_task"))
    }));
}

#[tokio::test]
async fn two_parallel_tool_calls_reach_the_model_with_their_results() {
    let mock = MockOpenAi::start(vec![
        tool_calls(&[
            ("call_a", "add_task", json!({"title": "Buy milk"})),
            ("call_b", "add_task", json!({"title": "Walk the dog"})),
        ]),
        text("Added both tasks."),
    ])
    .await;
    let server = TestServer::start_with(&plugins_dir(), &env(&mock.env()))
        .ready()
        .await;
    let chat = Chat::new(&server, "alice");

    let reply = chat.say(None, "Add buy milk and walk the dog").await;
    assert_eq!(reply["response"], "Added both tasks.");
    let records = reply["tool_calls"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    assert!(
        records
            .iter()
            .all(|r| r["is_error"] == false && r["result"]["status"] == "created"),
        "{reply}"
    );
    let mut tasks = chat.tasks().await;
    tasks.sort();
    assert_eq!(
        tasks,
        owned(&[("Buy milk", false), ("Walk the dog", false)])
    );

    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    let first = &requests[0];
    assert_eq!(first.authorization.as_deref(), Some("Bearer sk-test-key"));
    assert_eq!(first.body["model"], "gpt-test");
    assert_eq!(first.body["stream"], false);
    let messages = first.body["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(
        messages.last().unwrap(),
        &json!({"role": "user", "content": "Add buy milk and walk the dog"})
    );
    let tools: Vec<&str> = first.body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    // The host's `ask_user` first, then the plugins' tools.
    assert_eq!(
        tools,
        [
            "ask_user",
            "add_task",
            "complete_task",
            "delete_task",
            "list_tasks",
            "update_task"
        ]
    );
    let add = &first.body["tools"][1]["function"]["parameters"];
    assert_eq!(add["required"], json!(["title"]));
    assert!(add["properties"].get("user_id").is_none());

    // The conversation reads back as /chat answered: the user message, then
    // one reply with both calls as objects, results included.
    let id = reply["conversation_id"].as_i64().unwrap();
    let (_, conversation) = chat.get(&format!("/conversations/{id}")).await;
    let messages = conversation["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{conversation}");
    assert_eq!(messages[0]["content"], "Add buy milk and walk the dog");
    assert_eq!(messages[1]["id"], reply["message_id"]);
    assert_eq!(messages[1]["content"], reply["response"]);
    assert_eq!(messages[1]["tool_calls"], reply["tool_calls"]);
    assert_eq!(
        messages[1]["tool_calls"][0]["arguments"]["title"],
        "Buy milk"
    );
    assert_eq!(conversation["has_more"], false);

    // Paged: one message at a time, by cursor.
    let (_, first) = chat.get(&format!("/conversations/{id}?limit=1")).await;
    assert_eq!(first["messages"].as_array().unwrap().len(), 1);
    assert_eq!(first["has_more"], true);
    let after = first["next_after"].as_i64().unwrap();
    let (_, rest) = chat
        .get(&format!("/conversations/{id}?limit=1&after={after}"))
        .await;
    assert_eq!(rest["messages"][0], messages[1], "{rest}");
    assert_eq!(rest["has_more"], false);
    let (status, _) = chat.get(&format!("/conversations/{id}?limit=0")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The second round carries the assistant's calls and both results.
    let second = requests[1].body["messages"].as_array().unwrap();
    let assistant = &second[second.len() - 3];
    assert_eq!(assistant["role"], "assistant");
    assert_eq!(assistant["tool_calls"].as_array().unwrap().len(), 2);
    for (message, id) in second[second.len() - 2..].iter().zip(["call_a", "call_b"]) {
        assert_eq!(message["role"], "tool");
        assert_eq!(message["tool_call_id"], id);
        let result: Value = serde_json::from_str(message["content"].as_str().unwrap()).unwrap();
        assert_eq!(result["status"], "created");
    }
}

/// Server-sent events of a streamed chat turn, as (event, data) pairs.
async fn stream_chat(server: &TestServer, user: &str, content: &str) -> Vec<(String, Value)> {
    let response = reqwest::Client::new()
        .post(server.url(&format!("/api/{user}/chat")))
        .bearer_auth(token(user))
        .header("accept", "text/event-stream")
        .json(&json!({ "content": content }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.text().await.unwrap();
    body.split("\n\n")
        .filter_map(|frame| {
            let event = frame.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = frame.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((event.to_string(), serde_json::from_str(data).unwrap()))
        })
        .collect()
}

#[tokio::test]
async fn a_streamed_turn_forwards_deltas_and_split_tool_arguments() {
    let chunk = |delta: Value| json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": null}]});
    let mock = MockOpenAi::start(vec![
        Reply::Stream(vec![
            chunk(json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "add_task", "arguments": ""}}]})),
            chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"title\": \"Buy"}}]})),
            chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": " bread\"}"}}]})),
            json!({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        ]),
        Reply::Stream(vec![
            chunk(json!({"role": "assistant", "content": "Added "})),
            chunk(json!({"content": "\"Buy bread\"."})),
            json!({"id": "c", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3}}),
        ]),
    ])
    .await;
    let server = TestServer::start_with(&plugins_dir(), &env(&mock.env()))
        .ready()
        .await;

    let events = stream_chat(&server, "alice", "Add buy bread").await;
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(
        names,
        [
            "start",
            "tool_call",
            "tool_result",
            "delta",
            "delta",
            "done"
        ]
    );
    assert_eq!(events[1].1["arguments"], json!({"title": "Buy bread"}));
    assert_eq!(events[2].1["result"]["title"], "Buy bread");
    assert_eq!(events[3].1["text"], "Added ");
    let done = &events[5].1;
    assert_eq!(done["response"], "Added \"Buy bread\".");
    assert_eq!(mock.requests()[0].body["stream"], true);
    assert_eq!(
        Chat::new(&server, "alice").tasks().await,
        owned(&[("Buy bread", false)])
    );
}

#[tokio::test]
async fn a_restarted_server_continues_the_conversation() {
    let db = TestDatabase::new(crate::support::Backend::Sqlite).await;
    let first = TestServer::start_with(&plugins_dir(), &[("DATABASE_URL", &db.url)])
        .ready()
        .await;
    let id = Chat::new(&first, "alice")
        .say(None, "Add a task to buy milk")
        .await["conversation_id"]
        .as_i64()
        .unwrap();
    drop(first);

    let second = TestServer::start_with(&plugins_dir(), &[("DATABASE_URL", &db.url)])
        .ready()
        .await;
    let chat = Chat::new(&second, "alice");
    let reply = chat.say(Some(id), "Show me all my tasks").await;
    assert_eq!(reply["conversation_id"], id);
    assert!(
        reply["response"].as_str().unwrap().contains("Buy milk"),
        "{reply}"
    );
    let (_, conversation) = chat.get(&format!("/conversations/{id}")).await;
    let users: Vec<&str> = conversation["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["Add a task to buy milk", "Show me all my tasks"]);
    let (_, list) = chat.get("/conversations").await;
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[0]["title"], "Add a task to buy milk");
}

/// A provider failure answers `status` with `code`, and the user message
/// is kept in the conversation.
async fn check_provider_failure(server: &TestServer, status: StatusCode, code: &str) {
    let chat = Chat::new(server, "alice");
    let (got, body) = chat
        .post(json!({"content": "Add a task to buy milk"}))
        .await;
    assert_eq!(got, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("Your message was saved"), "{message}");
    assert!(
        !message.contains("sk-test-key"),
        "the key leaked: {message}"
    );
    let (_, list) = chat.get("/conversations").await;
    let id = list[0]["id"].as_i64().unwrap();
    let (_, conversation) = chat.get(&format!("/conversations/{id}")).await;
    assert_eq!(
        conversation["messages"][0]["content"],
        "Add a task to buy milk"
    );
}

#[tokio::test]
async fn provider_down_slow_or_garbage_is_502_or_504_and_loses_nothing() {
    // Down: nothing listens on the base URL.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let down = TestServer::start_with(
        &plugins_dir(),
        &[
            ("WASMGATE_MODEL", "openai:gpt-test"),
            ("OPENAI_BASE_URL", &format!("http://127.0.0.1:{port}/v1")),
            ("OPENAI_API_KEY", "sk-test-key"),
        ],
    )
    .ready()
    .await;
    check_provider_failure(&down, StatusCode::BAD_GATEWAY, "provider_error").await;

    // Slow: longer than the provider timeout.
    let mock = MockOpenAi::start(vec![]).await;
    mock.always(Reply::Delayed(
        Duration::from_secs(5),
        Box::new(text("too late")),
    ));
    let mock_env = mock.env();
    let mut slow_env = env(&mock_env);
    slow_env.push(("WASMGATE_PROVIDER_TIMEOUT_SECS", "1"));
    let slow = TestServer::start_with(&plugins_dir(), &slow_env)
        .ready()
        .await;
    check_provider_failure(&slow, StatusCode::GATEWAY_TIMEOUT, "provider_timeout").await;

    // Garbage: a 200 that is not a completion.
    let mock = MockOpenAi::start(vec![]).await;
    mock.always(Reply::Raw(200, vec![], "<html>surprise</html>"));
    let garbage = TestServer::start_with(&plugins_dir(), &env(&mock.env()))
        .ready()
        .await;
    check_provider_failure(&garbage, StatusCode::BAD_GATEWAY, "provider_error").await;

    // Failing: a 500 every time, retried a bounded number of times.
    let mock = MockOpenAi::start(vec![]).await;
    mock.always(Reply::Json(
        500,
        json!({"error": {"message": "overloaded"}}),
    ));
    let failing = TestServer::start_with(&plugins_dir(), &env(&mock.env()))
        .ready()
        .await;
    check_provider_failure(&failing, StatusCode::BAD_GATEWAY, "provider_error").await;
    assert_eq!(mock.requests().len(), 3, "three attempts, then give up");
}

#[tokio::test]
async fn a_rate_limited_provider_is_retried_after_retry_after() {
    let mock = MockOpenAi::start(vec![
        Reply::Raw(
            429,
            vec![("retry-after", "1")],
            "{\"error\":{\"message\":\"slow down\"}}",
        ),
        text("Hello there."),
    ])
    .await;
    let server = TestServer::start_with(&plugins_dir(), &env(&mock.env()))
        .ready()
        .await;
    let reply = Chat::new(&server, "alice").say(None, "hi").await;
    assert_eq!(reply["response"], "Hello there.");
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test]
async fn bad_chat_input_is_a_4xx_with_a_json_body() {
    let server = TestServer::start_with(&plugins_dir(), &[("WASMGATE_CHAT_RATE_PER_MINUTE", "12")])
        .ready()
        .await;
    let alice = Chat::new(&server, "alice");
    let bob_conversation = Chat::new(&server, "bob").say(None, "hello").await["conversation_id"]
        .as_i64()
        .unwrap();
    let cases = [
        (json!({"content": ""}), StatusCode::BAD_REQUEST),
        (json!({"content": "   "}), StatusCode::BAD_REQUEST),
        (
            json!({"content": "x".repeat(9000)}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"content": 5}), StatusCode::BAD_REQUEST),
        (
            json!({"content": "hi", "conversation_id": "seven"}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({}), StatusCode::BAD_REQUEST),
        (
            json!({"content": "hi", "conversation_id": 999999}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"content": "hi", "conversation_id": bob_conversation}),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (body, status) in cases {
        let (got, response) = alice.post(body.clone()).await;
        assert_eq!(got, status, "{body}: {response}");
        assert!(response["error"]["code"].is_string(), "{body}: {response}");
    }
    // `message` is accepted as an alias of `content`.
    let (status, _) = alice.post(json!({"message": "hello"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = alice
        .get(&format!("/conversations/{bob_conversation}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn chat_is_rate_limited_per_user() {
    let server = TestServer::start_with(&plugins_dir(), &[("WASMGATE_CHAT_RATE_PER_MINUTE", "2")])
        .ready()
        .await;
    let alice = Chat::new(&server, "alice");
    alice.say(None, "hello").await;
    alice.say(None, "hello").await;
    let response = reqwest::Client::new()
        .post(server.url("/api/alice/chat"))
        .bearer_auth(token("alice"))
        .json(&json!({"content": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait));
    Chat::new(&server, "bob").say(None, "hello").await;
}

#[tokio::test]
async fn the_rules_model_asks_which_task_when_several_match() {
    let server = TestServer::start(&plugins_dir()).ready().await;
    let chat = Chat::new(&server, "alice");
    let id =
        chat.say(None, "Add a task to plan the team meeting").await["conversation_id"].as_i64();
    chat.say(id, "Add a task to send the meeting notes").await;

    // The rules model asks through the host's `ask_user`; the chat API
    // answers with the question as text, an option per line.
    let asked = chat.say(id, "Delete the meeting task").await;
    let options = json!([
        "task 1 \"Plan the team meeting\"",
        "task 2 \"Send the meeting notes\""
    ]);
    assert_eq!(
        calls(&asked),
        [
            ("list_tasks".into(), json!({"status": "all", "limit": 100})),
            (
                "ask_user".into(),
                json!({"question": "Several tasks match \"meeting\". Which one do you mean?",
                    "options": options})
            )
        ]
    );
    assert_eq!(
        asked["response"],
        "Several tasks match \"meeting\". Which one do you mean?\n\
         - task 1 \"Plan the team meeting\"\n\
         - task 2 \"Send the meeting notes\""
    );

    let answered = chat.say(id, "2").await;
    assert_eq!(
        calls(&answered),
        [("delete_task".into(), json!({"task_id": 2}))]
    );
    assert_eq!(
        chat.tasks().await,
        owned(&[("Plan the team meeting", false)])
    );
}
