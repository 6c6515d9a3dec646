//! Benchmark: one no-op tool call through the full host path (registry
//! snapshot lookup, fresh store, instantiate, call, drop), with the pooling
//! and the on-demand allocator in the same run.
//!
//! Run with `cargo xtask bench`. A custom harness rather than criterion
//! because the figures that matter are percentiles (p50, p99) and
//! throughput, measured over the same calls.

use std::time::{Duration, Instant};

use wasmgate::plugins::{Allocator, AllocatorChoice};

mod support;

const WARMUP: usize = 2_000;
const CALLS: usize = 20_000;

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    println!("no-op tool call, full host path ({CALLS} calls after {WARMUP} warm-up)\n");
    println!("| allocator | p50 | p99 | calls/s (1 task) | calls/s (2 tasks) |");
    println!("|---|---|---|---|---|");
    let mut p50s = Vec::new();
    for choice in [AllocatorChoice::Pooling, AllocatorChoice::OnDemand] {
        let figures = tokio.block_on(measure(choice));
        println!(
            "| {:?} | {} | {} | {:.0} | {:.0} |",
            figures.allocator,
            micros(figures.p50),
            micros(figures.p99),
            figures.sequential_rate,
            figures.concurrent_rate
        );
        p50s.push(figures.p50);
    }
    println!(
        "\npooling p50 / on-demand p50 = {:.2}",
        p50s[0].as_secs_f64() / p50s[1].as_secs_f64()
    );
}

struct Figures {
    allocator: Allocator,
    p50: Duration,
    p99: Duration,
    sequential_rate: f64,
    concurrent_rate: f64,
}

async fn measure(choice: AllocatorChoice) -> Figures {
    let (runtime, registry) = support::runtime(choice, "test-plugins", None).await;

    let call = {
        let (runtime, registry) = (runtime.clone(), registry.clone());
        move || {
            let (runtime, registry) = (runtime.clone(), registry.clone());
            async move {
                let snapshot = registry.snapshot();
                let (plugin, _) = snapshot
                    .tool("noop")
                    .expect("the echo test plugin is loaded");
                runtime
                    .call_tool(plugin, "bench", "noop", "{}")
                    .await
                    .unwrap();
            }
        }
    };

    for _ in 0..WARMUP {
        call().await;
    }
    let mut samples = Vec::with_capacity(CALLS);
    let started = Instant::now();
    for _ in 0..CALLS {
        let t = Instant::now();
        call().await;
        samples.push(t.elapsed());
    }
    let sequential_rate = CALLS as f64 / started.elapsed().as_secs_f64();
    samples.sort();

    let started = Instant::now();
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                for _ in 0..CALLS / 2 {
                    call().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let concurrent_rate = CALLS as f64 / started.elapsed().as_secs_f64();

    Figures {
        allocator: runtime.allocator(),
        p50: samples[samples.len() / 2],
        p99: samples[samples.len() * 99 / 100],
        sequential_rate,
        concurrent_rate,
    }
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}
