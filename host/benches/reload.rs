//! Benchmark: hot reload under load, through the real binary.
//!
//! 16 clients call a tool over MCP back to back. First without reloads
//! (baseline), then while its component is swapped 30 times between two
//! versions (the storm). Reports reload latency (file landed → first answer
//! from the new version) p50/p99, and request p99 in the storm against the
//! baseline, measured in the same run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod support;
use support::quantile;

const CLIENTS: usize = 16;
const BASELINE: Duration = Duration::from_secs(5);
const SWAPS: usize = 30;

fn main() {
    support::block_on(bench());
}

async fn bench() {
    let built = support::built("test-plugins");
    let versions = [1, 2].map(|v| std::fs::read(built.join(format!("greeter-v{v}.wasm"))).unwrap());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("greeter.wasm"), &versions[0]).unwrap();
    std::fs::write(
        dir.path().join("greeter.toml"),
        "name = \"greeter\"\nversion = \"1\"\nkind = \"tool\"\n",
    )
    .unwrap();
    let server = support::server(&[("WASMGATE_PLUGINS", dir.path().to_str().unwrap())]).await;
    let (url, token) = (format!("{}/mcp", server.base), support::token("bench"));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS * 2)
        .build()
        .unwrap();

    let baseline = load(&client, &url, &token, async {
        tokio::time::sleep(BASELINE).await
    })
    .await;
    let mut reloads = Vec::new();
    let storm = load(&client, &url, &token, async {
        for swap in 0..SWAPS {
            let version = if swap % 2 == 0 { 2 } else { 1 };
            let path = dir.path().join("greeter.wasm");
            let tmp = path.with_extension("landing");
            std::fs::write(&tmp, &versions[version - 1]).unwrap();
            let landed = Instant::now();
            std::fs::rename(&tmp, &path).unwrap();
            while greet(&client, &url, &token).await != Some(version as u64) {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            reloads.push(landed.elapsed());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    reloads.sort();

    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    let (p99_base, p99_storm) = (quantile(&baseline, 0.99), quantile(&storm, 0.99));
    println!("hot reload under load: {CLIENTS} clients calling a tool over MCP, {SWAPS} swaps\n");
    println!(
        "| reload latency p50 | reload latency p99 | request p99 without reloads | request p99 during the storm | storm / baseline |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} | {:.2} |",
        ms(quantile(&reloads, 0.5)),
        ms(quantile(&reloads, 0.99)),
        ms(p99_base),
        ms(p99_storm),
        p99_storm.as_secs_f64() / p99_base.as_secs_f64()
    );
}

/// Runs the clients until `until` completes; returns every request's latency.
async fn load(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    until: impl Future<Output = ()>,
) -> Vec<Duration> {
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (client, url, token, stop) = (
                client.clone(),
                url.to_string(),
                token.to_string(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    assert!(
                        greet(&client, &url, &token).await.is_some(),
                        "a request failed"
                    );
                    latencies.push(started.elapsed());
                }
                latencies
            })
        })
        .collect();
    until.await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.unwrap());
    }
    all.sort();
    all
}

async fn greet(client: &reqwest::Client, url: &str, token: &str) -> Option<u64> {
    let body: Value = client
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "greet", "arguments": {}}}))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    body["result"]["structuredContent"]["version"].as_u64()
}
