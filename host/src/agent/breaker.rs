//! Circuit breakers for the model providers of `WASMGATE_MODEL`: a
//! provider that failed (unreachable, 429 or 5xx, or too slow) this many
//! times in a row is skipped for a cool-down, so turns go straight to the
//! next provider in the list instead of waiting out its retries. After the
//! cool-down the next round tries it again; one failure then opens it for
//! another cool-down, one success closes it. A std `Mutex`: held for a map
//! update, never across an await.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Breakers {
    /// Failures in a row that open a breaker; 0 never opens one.
    failures_to_open: u32,
    cool_down: Duration,
    state: Mutex<HashMap<String, Breaker>>,
}

#[derive(Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
}

impl Breakers {
    pub fn new(failures_to_open: u32, cool_down: Duration) -> Breakers {
        Breakers {
            failures_to_open,
            cool_down,
            state: Mutex::new(HashMap::new()),
        }
    }

    /// `None` when `provider` may be tried now; else how long it stays open.
    pub fn open_for(&self, provider: &str) -> Option<Duration> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let until = state.get(provider)?.open_until?;
        until.checked_duration_since(Instant::now())
    }

    pub fn succeeded(&self, provider: &str) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.remove(provider);
    }

    /// Counts a failure; whether it opened the breaker.
    pub fn failed(&self, provider: &str) -> bool {
        if self.failures_to_open == 0 {
            return false;
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let breaker = state.entry(provider.to_string()).or_default();
        breaker.failures += 1;
        let opens = breaker.failures >= self.failures_to_open;
        if opens {
            breaker.open_until = Some(Instant::now() + self.cool_down);
        }
        opens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_in_a_row_and_closes_on_success() {
        let breakers = Breakers::new(2, Duration::from_secs(60));
        assert!(!breakers.failed("a"));
        breakers.succeeded("a");
        assert!(!breakers.failed("a"), "a success resets the count");
        assert!(breakers.failed("a"));
        assert!(breakers.open_for("a").unwrap() > Duration::from_secs(59));
        assert_eq!(breakers.open_for("b"), None);
        breakers.succeeded("a");
        assert_eq!(breakers.open_for("a"), None);
    }

    #[test]
    fn after_the_cool_down_one_failure_reopens_it() {
        let breakers = Breakers::new(1, Duration::ZERO);
        assert!(breakers.failed("a"));
        assert_eq!(breakers.open_for("a"), None, "cooled down: tried again");
        assert!(breakers.failed("a"));
    }
}
