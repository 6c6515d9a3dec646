//! Benchmark: the `kv` capability through a component (a fresh instance,
//! the guest's `kv.get` or `kv.set` host call, the statement) against the
//! same statement made directly from Rust (`KvRepository`), sequential,
//! on SQLite, in one run.
//!
//! The tools are `kv-peek`'s: `kv_peek` reads a key, `kv_put` with a count
//! of one writes one. Each round times a batch each way; the table shows
//! medians over the rounds, and the ratio of the two paths.

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
        let quota = KvQuota::default();
        store
            .set("kv-peek", "bench", "k0", b"x", quota)
            .await
            .unwrap();

        println!(
            "kv: component path vs direct statement, SQLite, {ROUNDS} rounds of {BATCH} calls\n"
        );
        println!("| operation | direct calls/s | component calls/s | direct / component |");
        println!("|---|---|---|---|");
        for op in ["get", "set"] {
            let (mut direct, mut component, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
            for round in 0..=ROUNDS {
                let d = run(op, &store, None, quota).await;
                let c = run(op, &store, Some((&runtime, &plugin)), quota).await;
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

/// Calls per second for `BATCH` operations, through the component when
/// `through` is given, else directly.
async fn run(
    op: &str,
    store: &Store,
    through: Option<(&Runtime, &Arc<Plugin>)>,
    quota: KvQuota,
) -> f64 {
    let started = Instant::now();
    for _ in 0..BATCH {
        match (op, through) {
            ("get", Some((runtime, plugin))) => {
                let args = json!({"key": "k0"}).to_string();
                runtime
                    .call_tool(plugin, "bench", "kv_peek", &args)
                    .await
                    .unwrap();
            }
            ("set", Some((runtime, plugin))) => {
                let args = json!({"prefix": "k", "count": 1, "size": 16}).to_string();
                runtime
                    .call_tool(plugin, "bench", "kv_put", &args)
                    .await
                    .unwrap();
            }
            ("get", None) => {
                store.get("kv-peek", "bench", "k0").await.unwrap();
            }
            _ => {
                store
                    .set("kv-peek", "bench", "k0", &[b'x'; 16], quota)
                    .await
                    .unwrap();
            }
        }
    }
    BATCH as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}
