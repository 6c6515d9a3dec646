//! Benchmark: host capabilities through a component against the same
//! operation made directly from Rust, sequential, in one run:
//!
//! - `kv` get and set (a fresh instance, the guest's host call, the SQLite
//!   statement) against `KvRepository` (tools `kv_peek`, and `kv_put` with
//!   a count of one, of the `kv-peek` test plugin);
//! - an `http` GET of a small page from a loopback server (the guest's
//!   wasi:http request through the host's grant check and client) against
//!   the same GET with reqwest (tool `http_fetch` of `http-probe`).
//!
//! Each round times a batch each way; the table shows medians over the
//! rounds, and the ratio of the two paths.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use wasmgate::kv::{KvQuota, KvRepository};
use wasmgate::plugins::{AllocatorChoice, Plugin, Runtime, RuntimeOptions};
use wasmgate::store::Store;

mod support;

const ROUNDS: usize = 5;
const BATCH: usize = 2_000;

fn main() {
    support::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let store = Store::connect(&url).await.unwrap();
        let runtime = Runtime::new(RuntimeOptions {
            allocator: AllocatorChoice::Auto,
            cache_dir: None,
            tasks: None,
            task_limits: Default::default(),
            kv: Some(Arc::new(store.clone())),
            compile: Default::default(),
            memory_mib: wasmgate::plugins::budget::DEFAULT_MEMORY_MIB,
        })
        .unwrap();
        let plugin = Arc::new(
            runtime
                .load_file(&support::built("test-plugins").join("kv-peek.toml"))
                .await
                .unwrap(),
        );
        let mut probe = runtime
            .load_file(&support::built("test-plugins").join("http-probe.toml"))
            .await
            .unwrap();
        let page = start_page().await;
        Arc::make_mut(&mut probe.grant).hosts = vec![
            page.trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap()
                .to_string(),
        ];
        let probe = Arc::new(probe);
        let quota = KvQuota::default();
        store
            .set("kv-peek", "bench", "k0", b"x", quota)
            .await
            .unwrap();

        println!(
            "capabilities: component path vs direct, {ROUNDS} rounds of {BATCH} calls (kv on SQLite, http to loopback)\n"
        );
        println!("| operation | direct calls/s | component calls/s | direct / component |");
        println!("|---|---|---|---|");
        let client = reqwest::Client::new();
        for op in ["kv get", "kv set", "http get"] {
            let (mut direct, mut component, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
            let tool = if op == "http get" { &probe } else { &plugin };
            let target = Target {
                store: &store,
                client: &client,
                page: &page,
                quota,
            };
            for round in 0..=ROUNDS {
                let d = run(op, &target, None).await;
                let c = run(op, &target, Some((&runtime, tool))).await;
                if round > 0 {
                    direct.push(d);
                    component.push(c);
                    ratios.push(d / c);
                }
            }
            println!(
                "| {op} | {:.0} | {:.0} | {:.2} |",
                median(direct),
                median(component),
                median(ratios)
            );
        }
    });
}

/// What the direct path uses.
struct Target<'a> {
    store: &'a Store,
    client: &'a reqwest::Client,
    page: &'a str,
    quota: KvQuota,
}

/// Calls per second for `BATCH` operations, through the component when
/// `through` is given, else directly.
async fn run(op: &str, target: &Target<'_>, through: Option<(&Runtime, &Arc<Plugin>)>) -> f64 {
    let started = Instant::now();
    for _ in 0..BATCH {
        match (op, through) {
            ("kv get", Some((runtime, plugin))) => {
                let args = json!({"key": "k0"}).to_string();
                runtime
                    .call_tool(plugin, "bench", "kv_peek", &args)
                    .await
                    .unwrap();
            }
            ("kv set", Some((runtime, plugin))) => {
                let args = json!({"prefix": "k", "count": 1, "size": 16}).to_string();
                runtime
                    .call_tool(plugin, "bench", "kv_put", &args)
                    .await
                    .unwrap();
            }
            ("http get", Some((runtime, plugin))) => {
                let args = json!({ "url": target.page }).to_string();
                let answer = runtime
                    .call_tool(plugin, "bench", "http_fetch", &args)
                    .await
                    .unwrap();
                assert_eq!(answer["status"], 200, "{answer}");
            }
            ("kv get", None) => {
                target.store.get("kv-peek", "bench", "k0").await.unwrap();
            }
            ("kv set", None) => {
                target
                    .store
                    .set("kv-peek", "bench", "k0", &[b'x'; 16], target.quota)
                    .await
                    .unwrap();
            }
            _ => {
                let response = target.client.get(target.page).send().await.unwrap();
                assert_eq!(response.status(), 200);
                response.bytes().await.unwrap();
            }
        }
    }
    BATCH as f64 / started.elapsed().as_secs_f64()
}

/// A loopback server answering a small page; its URL.
async fn start_page() -> String {
    let app = axum::Router::new().route(
        "/page",
        axum::routing::get(|| async { "<html><title>bench</title></html>" }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}/page")
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}
