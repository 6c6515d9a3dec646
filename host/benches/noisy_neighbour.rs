//! Benchmark: a bystander plugin's no-op calls, alone and while another
//! plugin runs 64 spinning calls (each until its deadline, replaced as it
//! ends), in one run. The sandbox promise is that the second row stays near
//! the first: spinning guests take turns on all cores but one.
//!
//! Run with `cargo xtask bench`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmgate::plugins::AllocatorChoice;

mod support;

const CALLS: usize = 2_000;
const SPINNERS: usize = 64;

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let (runtime, registry) =
            support::runtime(AllocatorChoice::Auto, "test-plugins", None).await;
        let snapshot = registry.snapshot();
        let (echo, _) = snapshot
            .tool("noop")
            .expect("the echo test plugin is loaded");
        let (hostile, _) = snapshot
            .tool("spin")
            .expect("the hostile test plugin is loaded");
        let (echo, hostile) = (echo.clone(), hostile.clone());

        let bystander = async || {
            let mut samples = Vec::with_capacity(CALLS);
            for _ in 0..CALLS {
                let t = Instant::now();
                runtime
                    .call_tool(&echo, "bystander", "noop", "{}")
                    .await
                    .unwrap();
                samples.push(t.elapsed());
                // An open pace, not a tight loop: the bystander is a
                // neighbour's occasional call, not a second attacker.
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            samples.sort();
            (samples[CALLS / 2], samples[CALLS * 99 / 100])
        };

        let quiet = bystander().await;
        let running = Arc::new(AtomicBool::new(true));
        let spinners: Vec<_> = (0..SPINNERS)
            .map(|_| {
                let (runtime, hostile, running) =
                    (runtime.clone(), hostile.clone(), running.clone());
                tokio::spawn(async move {
                    while running.load(Ordering::Relaxed) {
                        let _ = runtime.call_tool(&hostile, "mallory", "spin", "{}").await;
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let noisy = bystander().await;
        running.store(false, Ordering::Relaxed);
        for spinner in spinners {
            spinner.await.unwrap();
        }

        println!("noisy neighbour: a bystander's no-op calls ({CALLS}, every 0.5 ms)\n");
        println!("| neighbour | p50 | p99 |");
        println!("|---|---|---|");
        println!("| idle | {} | {} |", micros(quiet.0), micros(quiet.1));
        println!(
            "| {SPINNERS} spinning calls | {} | {} |",
            micros(noisy.0),
            micros(noisy.1)
        );
        println!(
            "\np50 ratio {:.2}, p99 ratio {:.2} (noisy / idle)",
            noisy.0.as_secs_f64() / quiet.0.as_secs_f64(),
            noisy.1.as_secs_f64() / quiet.1.as_secs_f64()
        );
    });
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}
