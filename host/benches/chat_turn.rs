//! Benchmark: chat turns through the real `wasmgate` binary with the
//! `openai` provider pointed at a mock that answers at once on loopback.
//! Each turn makes one tool call (`list_tasks`), so it is two provider
//! rounds, one tool instance, and five writes to SQLite.
//!
//! 64 concurrent clients, then one, for a fixed time each; reports turns/s and the p50/p99
//! of the gateway's overhead: end-to-end latency minus the time the mock
//! spent answering that turn's two requests (measured inside the mock).
//! The load generator shares the machine's two cores with the server.
//!
//! Each run is done with the store's WAL upkeep on and off, alternating, and
//! ends with the WAL's size: what bounding the WAL costs, in one run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use serde_json::{Value, json};

mod support;
use support::quantile;

const CLIENTS: usize = 64;
const WARMUP: Duration = Duration::from_secs(3);
const MEASURE: Duration = Duration::from_secs(10);

fn main() {
    support::block_on(bench());
}

/// The store's WAL upkeep under test, with `WASMGATE_WAL_LIMIT_MIB`: the
/// default, and off (SQLite's own automatic checkpoints only).
const UPKEEP: [(&str, &str); 2] = [("upkeep on (32 MiB)", "32"), ("upkeep off", "0")];
/// Each setting runs this many times, alternating, so drift on a shared
/// machine falls on both alike; the table shows every run and the medians.
const ROUNDS: usize = 2;

async fn bench() {
    let mock_nanos = Arc::new(AtomicU64::new(0));
    let mock_calls = Arc::new(AtomicU64::new(0));
    let base_url = start_mock(mock_nanos.clone(), mock_calls.clone()).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .unwrap();

    println!(
        "chat turns (one tool call each) via the real binary, {} s per row, SQLite, \
         a fresh server per run\n",
        MEASURE.as_secs()
    );
    println!(
        "| WAL upkeep | turns/s @{CLIENTS} | p50 @{CLIENTS} | p99 @{CLIENTS} | turns/s @1 | p50 @1 | p99 @1 | WAL after |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut results: Vec<Vec<Run>> = vec![Vec::new(); UPKEEP.len()];
    for _ in 0..ROUNDS {
        for (setting, (label, limit)) in UPKEEP.iter().enumerate() {
            let server = support::server(&[
                ("WASMGATE_MODEL", "openai:gpt-bench"),
                ("OPENAI_BASE_URL", &base_url),
                ("OPENAI_API_KEY", "sk-bench"),
                ("WASMGATE_WAL_LIMIT_MIB", limit),
            ])
            .await;
            let mut rows = Vec::new();
            // Saturated (64 clients: the overhead is mostly queueing), then
            // one client at a time (the gateway's own time per turn).
            for clients in [CLIENTS, 1] {
                let load = Load {
                    clients,
                    client: &client,
                    base: &server.base,
                    token: &support::token("bench"),
                    mock_nanos: &mock_nanos,
                    mock_calls: &mock_calls,
                };
                run_clients(&load, WARMUP).await;
                let (turns, mut overheads) = run_clients(&load, MEASURE).await;
                overheads.sort();
                rows.push(Row {
                    turns_per_sec: turns as f64 / MEASURE.as_secs_f64(),
                    p50: quantile(&overheads, 0.50),
                    p99: quantile(&overheads, 0.99),
                });
            }
            let size = |name: &str| {
                std::fs::metadata(server.data_dir().join(name))
                    .map_or(0.0, |m| m.len() as f64 / 1e6)
            };
            let run = Run {
                saturated: rows[0],
                single: rows[1],
                wal_mb: size("wasmgate.db-wal"),
                db_mb: size("wasmgate.db"),
            };
            println!("| {label} | {} |", run.cells());
            results[setting].push(run);
        }
    }
    println!("\nmedians over {ROUNDS} runs each, and the ratio off / on:\n");
    let medians: Vec<Run> = results.iter().map(|runs| Run::median(runs)).collect();
    for ((label, _), run) in UPKEEP.iter().zip(&medians) {
        println!("| {label} (median) | {} |", run.cells());
    }
    let (on, off) = (&medians[0], &medians[1]);
    println!(
        "\nthroughput off/on: {:.2} at {CLIENTS} clients, {:.2} at 1; p99 off/on at {CLIENTS}: {:.2}; \
         WAL {:.1} MB with upkeep, {:.1} MB without, beside a {:.1} MB database",
        off.saturated.turns_per_sec / on.saturated.turns_per_sec,
        off.single.turns_per_sec / on.single.turns_per_sec,
        off.saturated.p99.as_secs_f64() / on.saturated.p99.as_secs_f64(),
        on.wal_mb,
        off.wal_mb,
        on.db_mb
    );
}

#[derive(Clone, Copy)]
struct Row {
    turns_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

/// One server's run: the saturated row, the single-client row, and the
/// files it left.
#[derive(Clone, Copy)]
struct Run {
    saturated: Row,
    single: Row,
    wal_mb: f64,
    db_mb: f64,
}

impl Run {
    fn cells(&self) -> String {
        let row = |r: &Row| {
            format!(
                "{:.0} | {:.2} ms | {:.2} ms",
                r.turns_per_sec,
                r.p50.as_secs_f64() * 1e3,
                r.p99.as_secs_f64() * 1e3
            )
        };
        format!(
            "{} | {} | {:.1} MB",
            row(&self.saturated),
            row(&self.single),
            self.wal_mb
        )
    }

    /// The median of each figure on its own (with two runs, their mean).
    fn median(runs: &[Run]) -> Run {
        let mid = |f: &dyn Fn(&Run) -> f64| {
            let mut values: Vec<f64> = runs.iter().map(f).collect();
            values.sort_by(f64::total_cmp);
            let n = values.len();
            (values[(n - 1) / 2] + values[n / 2]) / 2.0
        };
        let row = |pick: &dyn Fn(&Run) -> Row| Row {
            turns_per_sec: mid(&|r| pick(r).turns_per_sec),
            p50: Duration::from_secs_f64(mid(&|r| pick(r).p50.as_secs_f64())),
            p99: Duration::from_secs_f64(mid(&|r| pick(r).p99.as_secs_f64())),
        };
        Run {
            saturated: row(&|r| r.saturated),
            single: row(&|r| r.single),
            wal_mb: mid(&|r| r.wal_mb),
            db_mb: mid(&|r| r.db_mb),
        }
    }
}

/// Where and how hard one row drives the server.
struct Load<'a> {
    clients: usize,
    client: &'a reqwest::Client,
    base: &'a str,
    token: &'a str,
    mock_nanos: &'a AtomicU64,
    mock_calls: &'a AtomicU64,
}

/// Runs all clients for `duration`; returns the turns finished and each
/// turn's overhead. The mock's time is apportioned per turn by its mean.
async fn run_clients(load: &Load<'_>, duration: Duration) -> (usize, Vec<Duration>) {
    let Load {
        clients,
        client,
        base,
        token,
        mock_nanos,
        mock_calls,
    } = *load;
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
