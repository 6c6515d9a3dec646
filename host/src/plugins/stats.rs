//! Call figures per plugin version: counters and a latency histogram,
//! lock-free so the call path pays a few atomic adds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histogram buckets, in seconds (Prometheus
/// `le` labels); a last, implicit bucket is +Inf.
pub const BUCKETS: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0,
];

#[derive(Default)]
pub struct PluginStats {
    calls: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    micros_total: AtomicU64,
    /// Non-cumulative counts per bucket, +Inf last.
    buckets: [AtomicU64; BUCKETS.len() + 1],
}

/// A consistent-enough copy of the figures.
pub struct StatsSnapshot {
    pub calls: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub seconds_total: f64,
    /// Cumulative counts per bucket of [`BUCKETS`], then +Inf.
    pub cumulative: Vec<u64>,
}

impl PluginStats {
    pub fn record(&self, took: Duration, error: bool, timeout: bool) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        if timeout {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
        }
        self.micros_total
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        let seconds = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&le| seconds <= le)
            .unwrap_or(BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let mut running = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|count| {
                running += count.load(Ordering::Relaxed);
                running
            })
            .collect();
        StatsSnapshot {
            calls: self.calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            seconds_total: self.micros_total.load(Ordering::Relaxed) as f64 / 1e6,
            cumulative,
        }
    }
}
