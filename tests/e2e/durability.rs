//! Nothing acknowledged is lost, and the server holds under hostile
//! clients: a full disk, slow and idle connections, floods, a shutdown
//! with work in flight.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{TestServer, plugins_dir, token};

/// A small tmpfs, mounted for the test and unmounted after. `None` where
/// the test cannot mount one (not root): the test then says so and passes
/// nothing off as checked.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|status| status.success());
        mounted.then_some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the rest of the disk with a file, so the database soon meets a
/// full disk; removing it gives the space back.
fn filler(disk: &Path) -> PathBuf {
    let path = disk.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let block = vec![7u8; 64 * 1024];
    while file.write_all(&block).is_ok() {}
    let _ = file.sync_all();
    path
}

#[tokio::test]
async fn a_full_disk_never_acknowledges_a_write_it_did_not_store() {
    let Some(disk) = SmallDisk::mount("8m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    let url = format!("sqlite://{}", disk.path().join("wasmgate.db").display());
    let server = TestServer::start_with(&plugins_dir(), &[("DATABASE_URL", &url)])
        .ready()
        .await;
    let client = reqwest::Client::new();
    let alice = token("alice");
    let add = |n: usize| {
        client
            .post(server.url("/api/alice/tasks"))
            .bearer_auth(&alice)
            .json(&json!({"title": format!("task {n}"), "description": "d".repeat(900)}))
            .send()
    };
    // Some rows first, then the disk fills up.
    for n in 0..20 {
        assert_eq!(add(n).await.unwrap().status(), 201);
    }
    let filler = filler(disk.path());

    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for n in 20..3_000 {
        let response = add(n).await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match status {
            201 => acknowledged.push(body["id"].as_i64().unwrap()),
            503 => {
                assert_eq!(body["error"]["code"], "storage_unavailable", "{body}");
                refused += 1;
                if refused >= 50 {
                    break;
                }
            }
            other => panic!("a full disk answered {other}: {body}"),
        }
    }
    // First the promise itself: nothing acknowledged is missing.
    assert_all_stored(&server, &acknowledged).await;
    assert!(refused >= 50, "the disk never filled up");
    let ready = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "/readyz said ready with a full disk");
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "storage_unavailable", "{ready}");

    // Space comes back: writes and readiness recover without a restart.
    std::fs::remove_file(filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = add(9_999).await.unwrap();
        if response.status() == 201 {
            acknowledged.push(
                response.json::<Value>().await.unwrap()["id"]
                    .as_i64()
                    .unwrap(),
            );
            break;
        }
        assert!(Instant::now() < deadline, "writes never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    // Every acknowledged id is there, once, after a restart too.
    drop(server);
    let server = TestServer::start_with(&plugins_dir(), &[("DATABASE_URL", &url)])
        .ready()
        .await;
    assert_all_stored(&server, &acknowledged).await;
}

async fn assert_all_stored(server: &TestServer, acknowledged: &[i64]) {
    let stored = server.task_ids("alice").await;
    let unique: std::collections::BTreeSet<i64> = acknowledged.iter().copied().collect();
    assert_eq!(
        unique.len(),
        acknowledged.len(),
        "an id was handed out twice"
    );
    let lost: Vec<&i64> = unique.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged but never stored: {:?}…",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
}

/// Opens a connection and sends half a request head.
fn half_a_head(base: &str) -> std::net::TcpStream {
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    stream
}

#[tokio::test]
async fn slow_headers_are_cut_off_and_health_stays_quick() {
    let _alone = crate::support::exclusive().await;
    let server = TestServer::start_with(&plugins_dir(), &[("WASMGATE_HEADER_TIMEOUT_SECS", "1")])
        .ready()
        .await;
    let slow: Vec<_> = (0..2_000).map(|_| half_a_head(&server.base)).collect();
    let client = reqwest::Client::new();
    let started = Instant::now();
    let health = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    // A liveness bound, not a speed target (those live in the benchmarks).
    let took = started.elapsed();
    eprintln!("/healthz with 2,000 slow heads open: {took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    // Each one was closed: a read sees the end of the stream (or a reset).
    for mut stream in slow {
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 256];
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => {}
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                assert!(text.starts_with("HTTP/1.1 408"), "{text}");
            }
        }
    }
}

#[tokio::test]
async fn past_the_connection_cap_new_connections_are_closed_and_the_rest_served() {
    let server = TestServer::start_with(
        &plugins_dir(),
        &[
            ("WASMGATE_MAX_CONNECTIONS", "32"),
            ("WASMGATE_HEADER_TIMEOUT_SECS", "30"),
        ],
    )
    .ready()
    .await;
    // One kept-alive client, then a flood of idle connections past the cap.
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let flood: Vec<_> = (0..200)
        .filter_map(|_| {
            std::net::TcpStream::connect(server.base.trim_start_matches("http://")).ok()
        })
        .collect();
    for _ in 0..20 {
        let health = client.get(server.url("/healthz")).send().await.unwrap();
        assert_eq!(
            health.status(),
            200,
            "the connection already open was dropped"
        );
    }
    drop(flood);
    // Once the flood is gone, new clients are served again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fresh = reqwest::Client::new();
    assert_eq!(
        fresh
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_served() {
    let server = TestServer::start(&plugins_dir()).ready().await;
    let output = std::process::Command::new("curl")
        .args(["-sS", "--http2-prior-knowledge", "-w", "\n%{http_version}"])
        .arg(server.url("/healthz"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.ends_with("\n2"), "{text}");
    assert!(text.contains("\"ok\""), "{text}");
}

#[tokio::test]
async fn sigterm_exits_within_the_grace_period_with_requests_in_flight_finished() {
    let server = TestServer::start_with(&plugins_dir(), &[("WASMGATE_SHUTDOWN_GRACE_SECS", "2")])
        .ready()
        .await;
    // A half-sent head, and a client that never reads a streamed answer.
    let _half = half_a_head(&server.base);
    let mut stalled =
        std::net::TcpStream::connect(server.base.trim_start_matches("http://")).unwrap();
    let body = json!({"content": "Show me all my tasks"}).to_string();
    write!(
        stalled,
        "POST /api/alice/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Accept: text/event-stream\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        token("alice"),
        body.len()
    )
    .unwrap();
    // A turn in flight when the signal comes finishes.
    let client = reqwest::Client::new();
    let in_flight = client
        .post(server.url("/api/bob/chat"))
        .bearer_auth(token("bob"))
        .json(&json!({"content": "Add a task to buy milk"}))
        .send();
    let started = Instant::now();
    let signal = async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        std::process::Command::new("kill")
            .args(["-TERM", &server.pid().to_string()])
            .status()
            .unwrap();
    };
    let (response, ()) = tokio::join!(in_flight, signal);
    if let Ok(response) = response {
        assert!(response.status().is_success(), "{:?}", response.status());
    }
    let mut server = server;
    let status = server
        .wait_exit(Duration::from_secs(3))
        .expect("the server did not exit within grace + 1 s");
    assert!(status.success(), "exit status {status}");
    eprintln!("exited {:?} after SIGTERM", started.elapsed());
}

#[tokio::test]
async fn kill_9_under_concurrent_writers_loses_nothing_acknowledged() {
    let _alone = crate::support::exclusive().await;
    for backend in crate::support::backends() {
        let db = crate::support::TestDatabase::new(backend).await;
        let env = [
            ("DATABASE_URL", db.url.as_str()),
            ("WASMGATE_CHAT_RATE_PER_MINUTE", "0"),
        ];
        let mut server = TestServer::start_with(&plugins_dir(), &env).ready().await;
        let client = reqwest::Client::new();
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let (client, base) = (client.clone(), server.base.clone());
                tokio::spawn(async move {
                    let user = format!("writer{w}");
                    let mut tasks = Vec::new();
                    let mut turns = Vec::new();
                    for n in 0.. {
                        let request = if n % 4 == 0 {
                            client
                                .post(format!("{base}/api/{user}/chat"))
                                .json(&json!({"content": format!("Add a task to call {n}")}))
                        } else {
                            client
                                .post(format!("{base}/api/{user}/tasks"))
                                .json(&json!({"title": format!("task {n}")}))
                        };
                        let Ok(response) = request.bearer_auth(token(&user)).send().await else {
                            break;
                        };
                        let Ok(body) = response.json::<Value>().await else {
                            break;
                        };
                        if let Some(id) = body["id"].as_i64() {
                            tasks.push(id);
                        }
                        if let Some(conversation) = body["conversation_id"].as_i64() {
                            turns.push((conversation, body["message_id"].as_i64().unwrap()));
                            if let Some(id) = body["tool_calls"][0]["result"]["task_id"].as_i64() {
                                tasks.push(id);
                            }
                        }
                    }
                    (user, tasks, turns)
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        server.kill_now();
        let mut acknowledged = Vec::new();
        for writer in writers {
            acknowledged.push(writer.await.unwrap());
        }
        let server = TestServer::start_with(&plugins_dir(), &env).ready().await;
        let mut checked = 0;
        for (user, tasks, turns) in acknowledged {
            let stored = server.task_ids(&user).await;
            for id in &tasks {
                assert!(
                    stored.contains(id),
                    "{backend:?}: task {id} of {user} was lost"
                );
            }
            for (conversation, message) in &turns {
                let read: Value = client
                    .get(server.url(&format!("/api/{user}/conversations/{conversation}")))
                    .bearer_auth(token(&user))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let ids: Vec<i64> = read["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["id"].as_i64().unwrap())
                    .collect();
                assert!(
                    ids.contains(message),
                    "{backend:?}: reply {message} was lost"
                );
            }
            checked += tasks.len() + turns.len();
        }
        assert!(
            checked > 50,
            "{backend:?}: only {checked} writes were acknowledged"
        );
        eprintln!("{backend:?}: {checked} acknowledged writes all there after kill -9");
    }
}

#[tokio::test]
async fn every_bad_input_gets_a_4xx_with_the_json_error_body() {
    for backend in crate::support::backends() {
        let db = crate::support::TestDatabase::new(backend).await;
        let server = TestServer::start_with(&plugins_dir(), &[("DATABASE_URL", &db.url)])
            .ready()
            .await;
        let client = reqwest::Client::new();
        let alice = token("alice");
        let json_body = |body: &Value| json!(body);
        let cases: Vec<(&str, &str, Option<Value>, Option<&str>)> = vec![
            ("GET", "/api/alice/tasks/%ff", None, None),
            ("GET", "/api/alice/tasks/abc", None, None),
            (
                "GET",
                "/api/alice/tasks?status=all&status=pending",
                None,
                None,
            ),
            ("GET", "/api/alice/tasks?status=done", None, None),
            (
                "POST",
                "/api/alice/tasks",
                Some(json!({"title": "nul \u{0} here"})),
                None,
            ),
            (
                "POST",
                "/api/alice/tasks",
                Some(json!({"title": "ok", "description": "bell \u{7}"})),
                None,
            ),
            ("POST", "/api/alice/tasks", Some(json!({"title": 5})), None),
            ("POST", "/api/alice/tasks", None, Some("{not json")),
            (
                "PUT",
                "/api/alice/tasks/1",
                Some(json!({"title": "x\u{0}"})),
                None,
            ),
            (
                "POST",
                "/api/alice/chat",
                Some(json!({"content": "hi \u{0}"})),
                None,
            ),
            (
                "POST",
                "/api/alice/chat",
                Some(json!({"content": ""})),
                None,
            ),
            (
                "POST",
                "/api/alice/chat",
                Some(json!({"content": "hi", "conversation_id": 999})),
                None,
            ),
            ("GET", "/api/alice/conversations/%ff", None, None),
            (
                "POST",
                "/api/v1/chatkit/sessions/cksess_%00/cancel",
                None,
                None,
            ),
            ("DELETE", "/api/alice/chat", None, None),
            ("GET", "/no/such/route", None, None),
        ];
        for (method, path, body, raw) in cases {
            let mut request = client
                .request(method.parse().unwrap(), server.url(path))
                .bearer_auth(&alice);
            if let Some(body) = &body {
                request = request.json(&json_body(body));
            }
            if let Some(raw) = raw {
                request = request.header("content-type", "application/json").body(raw);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let text = response.text().await.unwrap();
            assert!(
                (400..500).contains(&status),
                "{backend:?} {method} {path}: {status} {text}"
            );
            assert!(
                content_type.starts_with("application/json"),
                "{backend:?} {method} {path}: {content_type} {text}"
            );
            let body: Value = serde_json::from_str(&text).unwrap();
            assert!(body["error"]["code"].is_string(), "{method} {path}: {text}");
            assert!(
                body["error"]["message"].is_string(),
                "{method} {path}: {text}"
            );
        }
        // The control characters are a 422 on both backends, never a 503.
        let nul = client
            .post(server.url("/api/alice/tasks"))
            .bearer_auth(&alice)
            .json(&json!({"title": "a\u{0}b"}))
            .send()
            .await
            .unwrap();
        assert_eq!(nul.status(), 422, "{backend:?}");
        // A streamed turn for a conversation that is not there: 404 before any stream.
        let streamed = client
            .post(server.url("/api/alice/chat"))
            .bearer_auth(&alice)
            .header("accept", "text/event-stream")
            .json(&json!({"content": "hi", "conversation_id": 424242}))
            .send()
            .await
            .unwrap();
        assert_eq!(streamed.status(), 404, "{backend:?}");
    }
}

#[tokio::test]
async fn an_empty_cache_dir_disables_the_cache() {
    let server = TestServer::start_with(&plugins_dir(), &[("WASMGATE_CACHE_DIR", "")])
        .ready()
        .await;
    assert_eq!(
        reqwest::get(server.url("/healthz")).await.unwrap().status(),
        200
    );
    assert!(!server.data_dir().join("cache").exists());
    assert!(!server.data_dir().join("data/cache").exists());
}

#[tokio::test]
async fn a_tool_call_cut_off_by_a_crash_is_answered_as_interrupted() {
    use crate::mock_openai::{MockOpenAi, text};
    use wasmgate::store::{NewMessage, Role, ToolCall};

    // What a crash mid-call leaves: the assistant's call, and no result.
    let db = crate::support::TestDatabase::new(crate::support::Backend::Sqlite).await;
    let store = db.store().await;
    let conversation = store
        .create_conversation("alice", Some("cut"))
        .await
        .unwrap();
    for message in [
        NewMessage::text(Role::User, "Add a task to buy milk"),
        NewMessage {
            tool_calls: vec![ToolCall {
                id: "call_cut".into(),
                name: "add_task".into(),
                arguments: r#"{"title":"Buy milk"}"#.into(),
            }],
            ..NewMessage::text(Role::Assistant, "")
        },
    ] {
        store
            .append_message(conversation.id, message)
            .await
            .unwrap();
    }
    drop(store);

    let mock = MockOpenAi::start(vec![text("Sorry, that was interrupted.")]).await;
    let mut env: Vec<(&str, String)> = mock.env();
    env.push(("DATABASE_URL", db.url.clone()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = TestServer::start_with(&plugins_dir(), &env).ready().await;
    let client = reqwest::Client::new();

    // The conversation read says the turn was cut.
    let read: Value = client
        .get(server.url(&format!("/api/alice/conversations/{}", conversation.id)))
        .bearer_auth(token("alice"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["messages"][1]["interrupted"], true, "{read}");

    // The next turn reaches the model with the call answered, not dangling.
    let response = client
        .post(server.url("/api/alice/chat"))
        .bearer_auth(token("alice"))
        .json(&json!({"content": "Did it work?", "conversation_id": conversation.id}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let sent = &mock.requests()[0].body["messages"];
    let messages = sent.as_array().unwrap();
    let call = messages
        .iter()
        .position(|m| m["tool_calls"][0]["id"] == "call_cut")
        .expect("the cut call is in the history");
    assert_eq!(messages[call + 1]["role"], "tool", "{sent}");
    assert_eq!(messages[call + 1]["tool_call_id"], "call_cut");
    assert!(
        messages[call + 1]["content"]
            .as_str()
            .unwrap()
            .contains("interrupted"),
        "{sent}"
    );
}
