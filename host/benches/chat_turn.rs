//! Benchmark: chat turns through the real `wasmgate` binary with the
//! `openai` provider pointed at a mock that answers at once on loopback.
//! Each turn makes one tool call (`list_tasks`), so it is two provider
//! rounds, one tool instance, and five writes to SQLite.
//!
//! 64 concurrent clients, then one, for a fixed time each; reports turns/s and the p50/p99
//! of the gateway's overhead: end-to-end latency minus the time the mock
//! spent answering that turn's two requests (measured inside the mock).
//! The load generator shares the machine's two cores with the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use serde_json::{Value, json};

mod support;
use support::{Server, quantile};

const CLIENTS: usize = 64;
const WARMUP: Duration = Duration::from_secs(3);
const MEASURE: Duration = Duration::from_secs(10);

fn main() {
    support::block_on(bench());
}

async fn bench() {
    let mock_nanos = Arc::new(AtomicU64::new(0));
    let mock_calls = Arc::new(AtomicU64::new(0));
    let base_url = start_mock(mock_nanos.clone(), mock_calls.clone()).await;

    let server = Server::start(&[
        ("WASMGATE_MODEL", "openai:gpt-bench"),
        ("OPENAI_BASE_URL", &base_url),
        ("OPENAI_API_KEY", "sk-bench"),
    ])
    .await;
    let (base, token) = (server.base.clone(), server.token("bench"));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .unwrap();

    println!(
        "chat turns (one tool call each) via the real binary, {} s per row, SQLite\n",
        MEASURE.as_secs()
    );
    println!("| clients | turns/s | overhead p50 | overhead p99 |");
    println!("|---|---|---|---|");
    // Saturated (64 clients: the overhead is mostly queueing), then one
    // client at a time (the gateway's own time per turn).
    for clients in [CLIENTS, 1] {
        // Warm up, then measure: each client runs turns back to back.
        run_clients(
            clients,
            &client,
            &base,
            &token,
            WARMUP,
            &mock_nanos,
            &mock_calls,
        )
        .await;
        let (turns, mut overheads) = run_clients(
            clients,
            &client,
            &base,
            &token,
            MEASURE,
            &mock_nanos,
            &mock_calls,
        )
        .await;
        overheads.sort();
        let pick = |q: f64| quantile(&overheads, q);
        println!(
            "| {clients} | {:.0} | {:.2} ms | {:.2} ms |",
            turns as f64 / MEASURE.as_secs_f64(),
            pick(0.50).as_secs_f64() * 1e3,
            pick(0.99).as_secs_f64() * 1e3
        );
    }
    let size = |name: &str| {
        std::fs::metadata(server.data_dir().join(name)).map_or(0.0, |m| m.len() as f64 / 1e6)
    };
    println!(
        "\nafter both rows: WAL {:.1} MB beside a {:.1} MB database (truncated past 32 MiB by the store)",
        size("bench.db-wal"),
        size("bench.db")
    );
}

/// Runs all clients for `duration`; returns the turns finished and each
/// turn's overhead. The mock's time is apportioned per turn by its mean.
async fn run_clients(
    clients: usize,
    client: &reqwest::Client,
    base: &str,
    token: &str,
    duration: Duration,
    mock_nanos: &AtomicU64,
    mock_calls: &AtomicU64,
) -> (usize, Vec<Duration>) {
    let (nanos_before, calls_before) = (
        mock_nanos.load(Ordering::Relaxed),
        mock_calls.load(Ordering::Relaxed),
    );
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (client, url, token) = (
                client.clone(),
                format!("{base}/api/bench/chat"),
                token.to_string(),
            );
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let started = Instant::now();
                    let response = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&json!({"content": "What's on my list?"}))
                        .send()
                        .await
                        .unwrap();
                    assert!(
                        response.status().is_success(),
                        "{}",
                        response.text().await.unwrap()
                    );
                    response.bytes().await.unwrap();
                    latencies.push(started.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.unwrap());
    }
    let calls = mock_calls.load(Ordering::Relaxed) - calls_before;
    let mock_per_request =
        Duration::from_nanos((mock_nanos.load(Ordering::Relaxed) - nanos_before) / calls.max(1));
    let overheads = latencies
        .iter()
        .map(|l| l.saturating_sub(mock_per_request * 2))
        .collect();
    (latencies.len(), overheads)
}

/// The mock: asks for `list_tasks` when the last message is the user's,
/// answers with text once the tool result is in.
async fn start_mock(nanos: Arc<AtomicU64>, calls: Arc<AtomicU64>) -> String {
    async fn answer(
        State((nanos, calls)): State<(Arc<AtomicU64>, Arc<AtomicU64>)>,
        body: axum::body::Bytes,
    ) -> axum::Json<Value> {
        let started = Instant::now();
        let request: Value = serde_json::from_slice(&body).unwrap();
        let last = request["messages"]
            .as_array()
            .and_then(|m| m.last())
            .cloned()
            .unwrap_or_default();
        let message = if last["role"] == "tool" {
            json!({"role": "assistant", "content": "You have no tasks."})
        } else {
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "list_tasks", "arguments": "{\"status\":\"all\"}"}}]})
        };
        let reply = json!({"id": "x", "object": "chat.completion", "model": "gpt-bench",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]});
        nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        calls.fetch_add(1, Ordering::Relaxed);
        axum::Json(reply)
    }
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(answer))
        .with_state((nanos, calls));
    support::serve_mock(app).await
}
