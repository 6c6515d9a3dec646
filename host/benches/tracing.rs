//! Benchmark: the server's CPU per chat turn with traces exported over
//! OTLP/HTTP (protobuf) to a receiver on loopback, against no exporter, in
//! one run, alternating, the median of each.
//!
//! The turn is "Add a task to buy milk" with the offline `rules` model: two
//! provider rounds and one tool call, so a request span, a turn span, two
//! `chat` spans and an `execute_tool` span. CPU is the server process's
//! own (user + system, from `/proc/<pid>/stat`), over the turns measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;

mod support;
use support::{TestServer, token};

const CLIENTS: usize = 8;
const TURNS: usize = 2_000;
const WARM_UP: usize = 200;
const ROUNDS: usize = 3;

fn main() {
    support::block_on(bench());
}

async fn bench() {
    let received = Arc::new(AtomicU64::new(0));
    let counted = received.clone();
    let receiver = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let counted = counted.clone();
            async move {
                counted.fetch_add(body.len() as u64, Ordering::Relaxed);
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });

    let settings: [(&str, Vec<(&str, &str)>); 2] = [
        ("off (no exporter)", vec![]),
        (
            "exported (OTLP/HTTP protobuf)",
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
                ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ],
        ),
    ];
    let mut runs: Vec<Vec<f64>> = vec![Vec::new(); settings.len()];
    for _ in 0..ROUNDS {
        for (index, (_, env)) in settings.iter().enumerate() {
            let server = support::server(env).await;
            turns(&server, WARM_UP).await;
            let before = cpu(server.pid());
            turns(&server, TURNS).await;
            let spent = cpu(server.pid()) - before;
            runs[index].push(spent.as_secs_f64() * 1e3 / TURNS as f64);
        }
    }
    println!(
        "server CPU per chat turn (rules model, add_task: 2 rounds, 1 tool call), {TURNS} turns, {CLIENTS} clients\n"
    );
    println!("| traces | ms per turn (each run) | median |");
    println!("|---|---|---|");
    let mut medians = Vec::new();
    for ((label, _), mut each) in settings.iter().zip(runs) {
        let shown: Vec<String> = each.iter().map(|ms| format!("{ms:.3}")).collect();
        each.sort_by(f64::total_cmp);
        let median = each[each.len() / 2];
        medians.push(median);
        println!("| {label} | {} | {median:.3} |", shown.join(", "));
    }
    println!(
        "\nexported / off: {:.2} ({} KiB of spans received)",
        medians[1] / medians[0],
        received.load(Ordering::Relaxed) / 1024
    );
}

/// `count` turns, `CLIENTS` at a time, each client its own user.
async fn turns(server: &TestServer, count: usize) {
    let client = reqwest::Client::new();
    let left = Arc::new(AtomicU64::new(count as u64));
    let workers: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let (client, left) = (client.clone(), left.clone());
            let url = server.url(&format!("/api/trace{n}/chat"));
            let bearer = token(&format!("trace{n}"));
            tokio::spawn(async move {
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let response = client
                        .post(&url)
                        .bearer_auth(&bearer)
                        .json(&json!({"content": "Add a task to buy milk"}))
                        .send()
                        .await
                        .unwrap();
                    assert!(response.status().is_success(), "{}", response.status());
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
}

/// The process's CPU time so far (user + system).
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command (which may hold spaces) start after ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}
