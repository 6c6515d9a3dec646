//! What provider rounds cost: each round recorded in the store (for `GET
//! /api/{user}/usage` and the daily budget, which replicas then share) and
//! counted for `/metrics` (tokens per provider, model and kind; a latency
//! histogram per provider).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use time::OffsetDateTime;

use super::AgentError;
use crate::store::{RoundUsage, Store};

/// Upper bounds of the provider latency buckets, in seconds (`le`); a last,
/// implicit bucket is +Inf. Providers take milliseconds to a minute.
pub const LATENCY_BUCKETS: [f64; 11] =
    [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// `/metrics`' view of the rounds. A std `Mutex`: held for a map update,
/// never across an await.
#[derive(Default)]
pub struct LlmMetrics {
    /// (provider, model, `input` | `output`) → tokens.
    tokens: Mutex<BTreeMap<(String, String, &'static str), u64>>,
    latency: Mutex<BTreeMap<String, Latency>>,
}

/// One provider's latency histogram.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    /// Non-cumulative counts per bucket, +Inf last.
    pub buckets: [u64; LATENCY_BUCKETS.len() + 1],
    pub seconds_total: f64,
    pub count: u64,
}

impl LlmMetrics {
    pub fn record(&self, usage: &RoundUsage, took: Duration) {
        {
            let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
            for (kind, count) in [
                ("input", usage.input_tokens),
                ("output", usage.output_tokens),
            ] {
                *tokens
                    .entry((usage.provider.clone(), usage.model.clone(), kind))
                    .or_default() += count;
            }
        }
        let mut latency = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let entry = latency.entry(usage.provider.clone()).or_default();
        let seconds = took.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&le| seconds <= le)
            .unwrap_or(LATENCY_BUCKETS.len());
        entry.buckets[bucket] += 1;
        entry.seconds_total += seconds;
        entry.count += 1;
    }

    pub fn tokens(&self) -> BTreeMap<(String, String, &'static str), u64> {
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn latency(&self) -> BTreeMap<String, Latency> {
        self.latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The operator's daily token budget per user, counted in the store (so
/// every replica sees the same spend). Days are UTC.
pub struct DailyBudget {
    /// Tokens (input and output) a user may spend per day; 0 for no limit.
    pub tokens: u64,
}

impl DailyBudget {
    /// Refuses a turn once `user` has spent today's budget: the turn in
    /// progress may finish over it, the next one waits for the reset.
    pub async fn check(&self, store: &Store, user: &str) -> Result<(), AgentError> {
        if self.tokens == 0 {
            return Ok(());
        }
        let now = OffsetDateTime::now_utc();
        let spent = store.tokens_since(user, &day_start(now)).await?;
        if u64::try_from(spent).unwrap_or(0) >= self.tokens {
            return Err(AgentError::BudgetExceeded {
                budget: self.tokens,
                reset_in: until_next_day(now),
            });
        }
        Ok(())
    }
}

/// Midnight UTC of `now`'s day, in the store's RFC 3339 form.
pub fn day_start(now: OffsetDateTime) -> String {
    now.replace_time(time::Time::MIDNIGHT)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formatting a UTC time as RFC 3339 cannot fail")
}

fn until_next_day(now: OffsetDateTime) -> Duration {
    let next = now.replace_time(time::Time::MIDNIGHT) + time::Duration::days(1);
    let left = next - now;
    Duration::from_secs(left.whole_seconds().max(1) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_is_utc_from_midnight() {
        // 2026-12-01 23:59:30 UTC.
        let now = OffsetDateTime::from_unix_timestamp(1_796_169_570).unwrap();
        assert_eq!(day_start(now), "2026-12-01T00:00:00Z");
        assert_eq!(until_next_day(now), Duration::from_secs(30));
    }
}
