//! Benchmark: `add_task` through the host (registry lookup, fresh instance,
//! the tool's `tasks.add` capability call, the insert) against the same
//! insert made directly from Rust (`TaskRepository::add`), in one run, on a
//! fresh SQLite file each. Sequential and with 8 concurrent callers.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use wasmgate::plugins::AllocatorChoice;
use wasmgate::store::Store;
use wasmgate::tasks::{NewTask, TaskRepository};

mod support;

const CALLS: usize = 4_000;
const ROUNDS: usize = 3;

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        println!("add_task: component path vs direct insert, SQLite, {CALLS} calls, median of {ROUNDS} rounds\n");
        println!("| callers | direct calls/s | component calls/s | direct / component |");
        println!("|---|---|---|---|");
        for callers in [1, 8] {
            let mut direct = Vec::new();
            let mut component = Vec::new();
            for _ in 0..ROUNDS {
                direct.push(run(callers, false).await);
                component.push(run(callers, true).await);
            }
            let (direct, component) = (median(direct), median(component));
            println!("| {callers} | {direct:.0} | {component:.0} | {:.2} |", direct / component);
        }
    });
}

/// Calls per second for `CALLS` adds split over `callers` tasks.
async fn run(callers: usize, through_component: bool) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!(
        "sqlite://{}",
        dir.path().join("bench.db").display()
    ))
    .await
    .unwrap();
    let (runtime, registry) = support::runtime(
        AllocatorChoice::Auto,
        "plugins",
        Some(Arc::new(store.clone())),
    )
    .await;

    let started = Instant::now();
    let workers: Vec<_> = (0..callers)
        .map(|worker| {
            let (runtime, registry, store) = (runtime.clone(), registry.clone(), store.clone());
            tokio::spawn(async move {
                for n in 0..CALLS / callers {
                    let title = format!("task {worker}-{n}");
                    if through_component {
                        let snapshot = registry.snapshot();
                        let (plugin, _) = snapshot.tool("add_task").expect("add_task is loaded");
                        let args = json!({ "title": title }).to_string();
                        runtime
                            .call_tool(plugin, "bench", "add_task", &args)
                            .await
                            .unwrap();
                    } else {
                        let new = NewTask {
                            title,
                            description: None,
                        };
                        store.add("bench", new).await.unwrap();
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    CALLS as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}
