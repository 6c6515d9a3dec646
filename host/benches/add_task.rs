//! Benchmark: `add_task` through the host (registry lookup, a fresh
//! instance, the tool's `tasks.add` capability call, the insert) against the
//! same insert made directly from Rust (`TaskRepository::add`), sequential
//! and with 8 concurrent callers: on a SQLite file always, and on a fresh
//! PostgreSQL database when `WASMGATE_TEST_POSTGRES_URL` names a server.
//!
//! The two paths alternate in short batches and each round's ratio is taken
//! against the batch just before it, so the machine's drift (these machines
//! are shared) cancels out; the table shows medians over the rounds.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use wasmgate::plugins::{AllocatorChoice, Registry, Runtime};
use wasmgate::store::Store;
use wasmgate::tasks::{NewTask, TaskRepository};

mod support;

const BATCH: usize = 1_000;
const ROUNDS: usize = 15;

fn main() {
    support::block_on(async {
        println!(
            "add_task: component path vs direct insert, {ROUNDS} rounds of {BATCH} calls each way\n"
        );
        println!(
            "| database | callers | direct calls/s | component calls/s | direct / component |"
        );
        println!("|---|---|---|---|---|");
        for callers in [1, 8] {
            for backend in support::backends() {
                let database = support::TestDatabase::new(backend).await;
                compare(&format!("{backend:?}"), &database.url, callers).await;
            }
        }
    });
}

/// Prints one row: both paths against the database at `url`.
async fn compare(database: &str, url: &str, callers: usize) {
    let store = Store::connect(url)
        .await
        .unwrap()
        .with_max_tasks_per_user(0);
    let (runtime, registry) = support::runtime(
        AllocatorChoice::Auto,
        "plugins",
        Some(Arc::new(store.clone())),
    )
    .await;
    let (mut direct, mut component, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    // One unmeasured round warms both paths up.
    for round in 0..=ROUNDS {
        let d = run(callers, &store, None).await;
        let c = run(callers, &store, Some((&runtime, &registry))).await;
        if round > 0 {
            direct.push(d);
            component.push(c);
            ratios.push(d / c);
        }
    }
    println!(
        "| {database} | {callers} | {:.0} | {:.0} | {:.2} |",
        median(direct),
        median(component),
        median(ratios)
    );
}

/// Calls per second for `BATCH` adds split over `callers` tasks, through the
/// component when `through` is given, else directly.
async fn run(
    callers: usize,
    store: &Store,
    through: Option<(&Arc<Runtime>, &Arc<Registry>)>,
) -> f64 {
    let started = Instant::now();
    let workers: Vec<_> = (0..callers)
        .map(|worker| {
            let store = store.clone();
            let through = through.map(|(runtime, registry)| (runtime.clone(), registry.clone()));
            tokio::spawn(async move {
                for n in 0..BATCH / callers {
                    let title = format!("task {worker}-{n}");
                    match &through {
                        Some((runtime, registry)) => {
                            let snapshot = registry.snapshot();
                            let (plugin, _) =
                                snapshot.tool("add_task").expect("add_task is loaded");
                            let args = json!({ "title": title }).to_string();
                            runtime
                                .call_tool(plugin, "bench", "add_task", &args)
                                .await
                                .unwrap();
                        }
                        None => {
                            let new = NewTask {
                                title,
                                description: None,
                            };
                            store.add("bench", new).await.unwrap();
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    BATCH as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}
