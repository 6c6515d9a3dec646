//! The load generator and its mock as processes, against stand-in chat
//! services in this test: what it counts, what it subtracts, and that the
//! open loop shows a queue a slow service builds.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

const LOAD: &str = env!("CARGO_BIN_EXE_wasmgate-load");

/// The mock model as its own process, and its base URL.
async fn start_mock() -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(LOAD)
        .arg("mock")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    tokio::io::BufReader::new(stdout)
        .read_line(&mut line)
        .await
        .unwrap();
    (child, line.trim().to_string())
}

/// How a stand-in service answers a turn.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Asks the model twice, as a turn with one tool call does.
    AsksTheModel,
    /// Refuses every token.
    Refuses,
    /// One turn at a time, each taking this long.
    Serial(Duration),
}

/// A chat service on loopback; returns its base URL and the turns it saw.
async fn start_service(behaviour: Behaviour, mock: String) -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let turns = Arc::new(AtomicU64::new(0));
    let seen = turns.clone();
    let one_at_a_time = Arc::new(tokio::sync::Mutex::new(()));
    let model: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (seen, one_at_a_time, model, mock) = (
                seen.clone(),
                one_at_a_time.clone(),
                model.clone(),
                mock.clone(),
            );
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let (seen, one_at_a_time, model, mock) = (
                        seen.clone(),
                        one_at_a_time.clone(),
                        model.clone(),
                        mock.clone(),
                    );
                    async move {
                        let authorised = request
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .is_some_and(|v| v.starts_with("Bearer ey"));
                        let chat = request.uri().path().starts_with("/api/load-")
                            && request.uri().path().ends_with("/chat");
                        let asked: Value = serde_json::from_slice(
                            &request.into_body().collect().await.unwrap().to_bytes(),
                        )
                        .unwrap();
                        assert_eq!(asked["content"], "Add a task to buy milk");
                        let status = match behaviour {
                            Behaviour::Refuses => StatusCode::UNAUTHORIZED,
                            _ if !authorised || !chat => StatusCode::BAD_REQUEST,
                            Behaviour::AsksTheModel => {
                                let user = json!({"role": "user", "content": "hi"});
                                let tool = json!({"role": "tool", "content": "{}"});
                                for messages in [json!([user]), json!([user, tool])] {
                                    let request = Request::post(format!("{mock}/chat/completions"))
                                        .body(Full::new(Bytes::from(
                                            json!({"messages": messages}).to_string(),
                                        )))
                                        .unwrap();
                                    let answer = model.request(request).await.unwrap();
                                    assert_eq!(answer.status(), StatusCode::OK);
                                    answer.into_body().collect().await.unwrap();
                                }
                                StatusCode::OK
                            }
                            Behaviour::Serial(each) => {
                                let _turn = one_at_a_time.lock().await;
                                tokio::time::sleep(each).await;
                                StatusCode::OK
                            }
                        };
                        seen.fetch_add(1, Ordering::Relaxed);
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from_static(b"{\"response\":\"ok\"}")))
                                .unwrap(),
                        )
                    }
                });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (base, turns)
}

/// Runs the generator; returns its exit status, its JSON report and stderr.
async fn run(args: &[&str]) -> (bool, Value, String) {
    let dir = std::env::temp_dir().join(format!("wasmgate-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let json = dir.join(format!("{}.json", RUNS.fetch_add(1, Ordering::Relaxed)));
    let output = tokio::process::Command::new(LOAD)
        .arg("run")
        .args(args)
        .args(["--secret", "test-secret", "--users", "4", "--warmup", "0"])
        .arg("--json")
        .arg(&json)
        .output()
        .await
        .unwrap();
    let report = std::fs::read(&json)
        .map(|bytes| serde_json::from_slice(&bytes).unwrap())
        .unwrap_or(Value::Null);
    (
        output.status.success(),
        report,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn two_targets_closed_and_open_loop_with_the_mock_subtracted() {
    let (_mock, mock) = start_mock().await;
    let (a, a_turns) = start_service(Behaviour::AsksTheModel, mock.clone()).await;
    let (b, _) = start_service(Behaviour::AsksTheModel, mock.clone()).await;
    let pid = std::process::id().to_string();
    let (ok, report, stderr) = run(&[
        "--target",
        &format!("url={a},name=a,pid={pid}"),
        "--target",
        &format!("url={b},name=b"),
        "--clients",
        "2",
        "--rate",
        "100",
        "--duration",
        "1",
        "--mock",
        &mock,
    ])
    .await;
    assert!(ok, "{stderr}");
    let rows = report["rows"].as_array().unwrap();
    let named: Vec<(&str, &Value)> = rows
        .iter()
        .map(|r| (r["target"].as_str().unwrap(), &r["load"]))
        .collect();
    assert_eq!(
        named,
        [
            ("a", &json!({"clients": 2})),
            ("b", &json!({"clients": 2})),
            ("a", &json!({"rate": 100.0})),
            ("b", &json!({"rate": 100.0})),
        ]
    );
    for row in rows {
        assert_eq!(row["errors"], 0, "{row}");
        assert!(row["turns"].as_u64().unwrap() > 0, "{row}");
        let (p50, overhead) = (
            row["p50_ms"].as_f64().unwrap(),
            row["overhead_p50_ms"].as_f64().unwrap(),
        );
        assert!(overhead <= p50 && overhead > 0.0, "{row}");
    }
    // The open loop sends what the rate asks for, no more and no less.
    let open = rows[2]["turns"].as_u64().unwrap();
    assert!((95..=105).contains(&open), "{open} turns at 100/s for 1 s");
    // Target a's turns all reached it; its CPU is counted, b's (no pid) not.
    let a_counted = rows[0]["turns"].as_u64().unwrap() + open;
    assert_eq!(a_turns.load(Ordering::Relaxed), a_counted);
    assert!(rows[0]["cpu_ms_per_turn"].as_f64().unwrap() > 0.0);
    assert!(rows[1]["cpu_ms_per_turn"].is_null());
    let medians = report["medians"].as_array().unwrap();
    assert_eq!(medians.len(), 4);
}

#[tokio::test]
async fn refused_turns_are_errors_and_fail_the_run() {
    let (_mock, mock) = start_mock().await;
    let (base, _) = start_service(Behaviour::Refuses, mock).await;
    let (ok, report, stderr) =
        run(&["--target", &base, "--clients", "1", "--duration", "0.3"]).await;
    assert!(!ok);
    assert!(stderr.contains("401 Unauthorized"), "{stderr}");
    let row = &report["rows"][0];
    assert_eq!(row["turns"], 0);
    assert!(row["errors"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn the_open_loop_counts_a_queue_from_when_each_turn_was_due() {
    // 20 turns/s of capacity asked for 40: the queue grows all second long.
    // Measured from when each turn went out, every turn would take about
    // 50 ms; measured from when it was due, the last ones waited ~0.5 s.
    let (_mock, mock) = start_mock().await;
    let (base, _) = start_service(Behaviour::Serial(Duration::from_millis(50)), mock).await;
    let (ok, report, stderr) = run(&["--target", &base, "--rate", "40", "--duration", "1"]).await;
    assert!(ok, "{stderr}");
    let row = &report["rows"][0];
    assert_eq!(row["errors"], 0);
    assert_eq!(row["turns"], 40);
    let (p50, max) = (
        row["p50_ms"].as_f64().unwrap(),
        row["max_ms"].as_f64().unwrap(),
    );
    assert!(p50 > 200.0 && max > 800.0, "p50 {p50} ms, max {max} ms");
}
