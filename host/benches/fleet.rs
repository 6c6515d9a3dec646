//! Benchmark: a fleet of three replicas of the real binary on one
//! PostgreSQL database (`WASMGATE_TEST_POSTGRES_URL`; without it there is
//! nothing to measure).
//!
//! 1. Rollout: 20 uploads, alternating two versions of a component and the
//!    replica they go to; each is timed from the moment the upload is sent
//!    until every replica's `/readyz` names the new digest.
//! 2. The shared chat rate limiter: turns/s through one replica with the
//!    limit counted in PostgreSQL (one upsert per turn) against the limit
//!    off, alternating, 16 clients of 16 users, the offline `rules` model
//!    (a turn with no tool call, so the limiter's share is as large as it
//!    gets).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod support;
use support::{Backend, TestDatabase, TestServer, built, quantile, token};

const ADMIN: &str = "bench-admin";
const REPLICAS: usize = 3;
const ROLLOUTS: usize = 20;
const CLIENTS: usize = 16;
const MEASURE: Duration = Duration::from_secs(8);
const ROUNDS: usize = 2;

fn main() {
    if std::env::var_os("WASMGATE_TEST_POSTGRES_URL").is_none() {
        println!("fleet: set WASMGATE_TEST_POSTGRES_URL to benchmark a fleet");
        return;
    }
    support::block_on(bench());
}

async fn bench() {
    rollouts().await;
    limiter().await;
}

/// A replica on `db` with its own copy of the stock plugins.
async fn replica(db: &TestDatabase, env: &[(&str, &str)]) -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(built("plugins")).unwrap().flatten() {
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let mut all = vec![
        ("DATABASE_URL", db.url.as_str()),
        ("WASMGATE_ADMIN_TOKEN", ADMIN),
        ("RUST_LOG", "error"),
    ];
    all.extend_from_slice(env);
    let server = TestServer::start_with(dir.path(), &all).ready().await;
    (dir, server)
}

async fn rollouts() {
    let db = TestDatabase::new(Backend::Postgres).await;
    let mut fleet = Vec::new();
    for _ in 0..REPLICAS {
        fleet.push(replica(&db, &[]).await);
    }
    let client = reqwest::Client::new();
    let versions: Vec<(Vec<u8>, String)> = [1, 2]
        .iter()
        .map(|v| {
            let wasm =
                std::fs::read(built("test-plugins").join(format!("greeter-v{v}.wasm"))).unwrap();
            let sha = wasmgate::plugins::sha256_hex(&wasm);
            (wasm, sha)
        })
        .collect();
    let manifest = "name = \"greeter\"\nversion = \"1.0.0\"\nkind = \"tool\"\n";

    let mut took = Vec::new();
    for rollout in 0..ROLLOUTS {
        let (wasm, sha) = &versions[rollout % 2];
        let target = &fleet[rollout % REPLICAS].1;
        let form = reqwest::multipart::Form::new()
            .part("component", reqwest::multipart::Part::bytes(wasm.clone()))
            .part("manifest", reqwest::multipart::Part::text(manifest));
        let started = Instant::now();
        let status = client
            .put(target.url("/admin/plugins/greeter"))
            .bearer_auth(ADMIN)
            .multipart(form)
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "upload {rollout}: {status}");
        loop {
            let mut everywhere = true;
            for (_, server) in &fleet {
                let ready: Value = client
                    .get(server.url("/readyz"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                everywhere &= ready["digests"]["greeter"] == json!(sha);
            }
            if everywhere {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        took.push(started.elapsed());
    }
    took.sort();
    println!(
        "rollout of an upload to {REPLICAS} replicas, {ROLLOUTS} uploads (two versions alternating)\n"
    );
    println!("| p50 | p99 | max |");
    println!("|---|---|---|");
    println!(
        "| {:.0} ms | {:.0} ms | {:.0} ms |\n",
        ms(quantile(&took, 0.5)),
        ms(quantile(&took, 0.99)),
        ms(*took.last().unwrap())
    );
}

async fn limiter() {
    println!(
        "chat turns/s through one replica on PostgreSQL, {CLIENTS} clients, {} s per row\n",
        MEASURE.as_secs()
    );
    println!("| chat limit | turns/s (each run) | median |");
    println!("|---|---|---|");
    let settings = [("shared (counted in PostgreSQL)", "1000000"), ("off", "0")];
    let mut runs: Vec<Vec<f64>> = vec![Vec::new(); settings.len()];
    for _ in 0..ROUNDS {
        for (index, (_, limit)) in settings.iter().enumerate() {
            let db = TestDatabase::new(Backend::Postgres).await;
            let (_dir, server) = replica(&db, &[("WASMGATE_CHAT_RATE_PER_MINUTE", limit)]).await;
            turns(&server, Duration::from_secs(2)).await;
            runs[index].push(turns(&server, MEASURE).await);
        }
    }
    let mut medians = Vec::new();
    for ((label, _), rates) in settings.iter().zip(&mut runs) {
        let each: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
        rates.sort_by(f64::total_cmp);
        let median = (rates[0] + rates[rates.len() - 1]) / 2.0;
        medians.push(median);
        println!("| {label} | {} | {median:.0} |", each.join(", "));
    }
    println!("\noff / shared: {:.2}", medians[1] / medians[0]);
}

/// Turns per second over `span`, `CLIENTS` at a time, each its own user.
async fn turns(server: &TestServer, span: Duration) -> f64 {
    let client = reqwest::Client::new();
    let until = Instant::now() + span;
    let workers: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let (client, url, bearer) = (
                client.clone(),
                server.url(&format!("/api/bench{n}/chat")),
                token(&format!("bench{n}")),
            );
            tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < until {
                    let response = client
                        .post(&url)
                        .bearer_auth(&bearer)
                        .json(&json!({"content": "hello"}))
                        .send()
                        .await
                        .unwrap();
                    assert!(response.status().is_success(), "{}", response.status());
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for worker in workers {
        total += worker.await.unwrap();
    }
    total as f64 / span.as_secs_f64()
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}
