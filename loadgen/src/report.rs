//! What a run reports: one row per target, load and round, and the median
//! of each figure over the rounds with its ratio to the first target's.

use std::time::Duration;

use serde::Serialize;

use crate::drive::Sample;

/// How hard a row drives its target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Load {
    /// A closed loop of this many clients.
    Clients(usize),
    /// An open loop at this many turns per second.
    Rate(f64),
}

impl std::fmt::Display for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Load::Clients(n) => write!(f, "{n} clients"),
            Load::Rate(r) => write!(f, "{r}/s open"),
        }
    }
}

/// One target under one load, in one round. Times are in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub target: String,
    pub load: Load,
    pub turns: usize,
    pub turns_per_sec: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The same, less the mock model's own time per turn (when `--mock`
    /// names it): what the target adds.
    pub overhead_p50_ms: Option<f64>,
    pub overhead_p99_ms: Option<f64>,
    pub errors: u64,
    /// The target process's CPU per answered turn (when its pid is known).
    pub cpu_ms_per_turn: Option<f64>,
    /// The load generator's own, to show it was not the bottleneck.
    pub own_cpu_ms_per_turn: f64,
    /// Open loop: how late the 99th percentile turn left its schedule.
    pub send_lag_p99_ms: Option<f64>,
    /// The first errors, as text.
    pub quoted_errors: Vec<String>,
}

/// What was measured beside the sample, over the same window.
pub struct Window {
    pub target_cpu: Option<Duration>,
    pub own_cpu: Duration,
    /// The mock's time spent answering, per answered turn.
    pub mock_per_turn: Option<Duration>,
}

impl Row {
    pub fn new(target: &str, load: Load, mut sample: Sample, window: Window) -> Row {
        sample.latencies.sort_unstable();
        sample.send_lag.sort_unstable();
        let turns = sample.latencies.len();
        let per_turn = |cpu: Duration| ms(cpu) / turns.max(1) as f64;
        let at = |q| ms(quantile(&sample.latencies, q));
        let less_mock = |q| {
            window
                .mock_per_turn
                .map(|mock| ms(quantile(&sample.latencies, q).saturating_sub(mock)))
        };
        Row {
            target: target.to_string(),
            load,
            turns,
            turns_per_sec: turns as f64 / sample.elapsed.as_secs_f64(),
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            max_ms: at(1.0),
            overhead_p50_ms: less_mock(0.50),
            overhead_p99_ms: less_mock(0.99),
            errors: sample.errors,
            cpu_ms_per_turn: window.target_cpu.map(per_turn),
            own_cpu_ms_per_turn: per_turn(window.own_cpu),
            send_lag_p99_ms: (!sample.send_lag.is_empty())
                .then(|| ms(quantile(&sample.send_lag, 0.99))),
            quoted_errors: sample.quoted,
        }
    }

    pub const HEADER: &'static str = "| target | load | turns/s | p50 | p90 | p99 | max | overhead p50 | overhead p99 | errors | CPU/turn | loadgen CPU/turn |\n|---|---|---|---|---|---|---|---|---|---|---|---|";

    /// The row as a line of the markdown table under [`Row::HEADER`].
    pub fn line(&self) -> String {
        format!(
            "| {} | {} | {:.0} | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | {} | {} | {} | {} | {:.3} ms |",
            self.target,
            self.load,
            self.turns_per_sec,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.max_ms,
            ms_or_dash(self.overhead_p50_ms),
            ms_or_dash(self.overhead_p99_ms),
            self.errors,
            ms_or_dash(self.cpu_ms_per_turn),
            self.own_cpu_ms_per_turn,
        )
    }
}

/// The `q` quantile of sorted `values` (nearest rank); zero when empty.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A figure in milliseconds, or a dash where there is none.
fn ms_or_dash(value: Option<f64>) -> String {
    value.map_or("–".to_string(), |v| format!("{v:.3} ms"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The median of each figure over the rounds of one target and load.
#[derive(Debug, Clone, Serialize)]
pub struct Median {
    pub target: String,
    pub load: Load,
    pub rounds: usize,
    pub turns_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub overhead_p99_ms: Option<f64>,
    pub cpu_ms_per_turn: Option<f64>,
    pub errors: u64,
}

impl Median {
    /// `rows` all of one target and load.
    pub fn of(rows: &[&Row]) -> Median {
        let mid = |f: &dyn Fn(&Row) -> f64| median(rows.iter().map(|r| f(r)).collect());
        let mid_opt = |f: &dyn Fn(&Row) -> Option<f64>| {
            let values: Option<Vec<f64>> = rows.iter().map(|r| f(r)).collect();
            values.map(median)
        };
        Median {
            target: rows[0].target.clone(),
            load: rows[0].load,
            rounds: rows.len(),
            turns_per_sec: mid(&|r| r.turns_per_sec),
            p50_ms: mid(&|r| r.p50_ms),
            p99_ms: mid(&|r| r.p99_ms),
            overhead_p99_ms: mid_opt(&|r| r.overhead_p99_ms),
            cpu_ms_per_turn: mid_opt(&|r| r.cpu_ms_per_turn),
            errors: rows.iter().map(|r| r.errors).sum(),
        }
    }

    pub const HEADER: &'static str = "| target | load | rounds | turns/s | p50 | p99 | overhead p99 | CPU/turn | errors | turns/s ratio | p99 ratio | CPU/turn ratio |\n|---|---|---|---|---|---|---|---|---|---|---|---|";

    /// The line under [`Median::HEADER`], with ratios to `baseline` (the
    /// first target's median under the same load).
    pub fn line(&self, baseline: &Median) -> String {
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "–".to_string(),
        };
        format!(
            "| {} | {} | {} | {:.0} | {:.3} ms | {:.3} ms | {} | {} | {} | {} | {} | {} |",
            self.target,
            self.load,
            self.rounds,
            self.turns_per_sec,
            self.p50_ms,
            self.p99_ms,
            ms_or_dash(self.overhead_p99_ms),
            ms_or_dash(self.cpu_ms_per_turn),
            self.errors,
            ratio(Some(self.turns_per_sec), Some(baseline.turns_per_sec)),
            ratio(Some(self.p99_ms), Some(baseline.p99_ms)),
            ratio(self.cpu_ms_per_turn, baseline.cpu_ms_per_turn),
        )
    }
}

/// The median (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    (values[(n - 1) / 2] + values[n / 2]) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_list(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let sorted = ms_list(&(1..=100).collect::<Vec<_>>());
        assert_eq!(quantile(&sorted, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&sorted, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&sorted, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&ms_list(&[7]), 0.99), Duration::from_millis(7));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn a_row_subtracts_the_mock_and_divides_cpu_by_turns() {
        let sample = Sample {
            latencies: ms_list(&[4, 2, 3, 1]),
            errors: 1,
            elapsed: Duration::from_secs(2),
            ..Sample::default()
        };
        let window = Window {
            target_cpu: Some(Duration::from_millis(8)),
            own_cpu: Duration::from_millis(2),
            mock_per_turn: Some(Duration::from_millis(1)),
        };
        let row = Row::new("a", Load::Clients(2), sample, window);
        assert_eq!(row.turns, 4);
        assert_eq!(row.turns_per_sec, 2.0);
        assert_eq!((row.p50_ms, row.max_ms), (2.0, 4.0));
        assert_eq!(row.overhead_p50_ms, Some(1.0));
        assert_eq!(row.cpu_ms_per_turn, Some(2.0));
        assert_eq!(row.own_cpu_ms_per_turn, 0.5);
        assert_eq!(row.errors, 1);
    }

    #[test]
    fn medians_and_ratios_against_the_first_target() {
        let row = |target: &str, tps: f64, cpu: f64| Row {
            target: target.into(),
            load: Load::Rate(200.0),
            turns: 1,
            turns_per_sec: tps,
            p50_ms: 1.0,
            p90_ms: 1.0,
            p99_ms: 2.0,
            max_ms: 3.0,
            overhead_p50_ms: None,
            overhead_p99_ms: None,
            errors: 0,
            cpu_ms_per_turn: Some(cpu),
            own_cpu_ms_per_turn: 0.1,
            send_lag_p99_ms: None,
            quoted_errors: Vec::new(),
        };
        let (a1, a2, a3) = (
            row("a", 100.0, 2.0),
            row("a", 300.0, 1.0),
            row("a", 200.0, 3.0),
        );
        let a = Median::of(&[&a1, &a2, &a3]);
        assert_eq!((a.turns_per_sec, a.cpu_ms_per_turn), (200.0, Some(2.0)));
        let b1 = row("b", 400.0, 1.0);
        let line = Median::of(&[&b1]).line(&a);
        assert!(line.ends_with("| 2.00 | 1.00 | 0.50 |"), "{line}");
    }
}
