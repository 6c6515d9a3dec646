//! A per-user limit on chat turns: a fixed one-minute window per user,
//! answered with 429 and `Retry-After` when spent.
//!
//! In memory, per process: enough to stop one user from monopolising the
//! provider from one gateway. A std `Mutex` is right here: it is held for a
//! map lookup only, never across an await.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Past this many tracked users, expired windows are swept.
const SWEEP_AT: usize = 10_000;

pub struct RateLimiter {
    per_window: u32,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RateLimiter {
    /// `per_minute` turns per user and minute; 0 means no limit.
    pub fn new(per_minute: u32) -> Self {
        RateLimiter {
            per_window: per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one turn for `user`; `Err(wait)` when the window is spent.
    pub fn check(&self, user: &str) -> Result<(), Duration> {
        if self.per_window == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if windows.len() > SWEEP_AT {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let (start, count) = windows.entry(user.to_string()).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            *start = now;
            *count = 0;
        }
        if *count >= self.per_window {
            return Err(WINDOW.saturating_sub(now.duration_since(*start)));
        }
        *count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_user() {
        let limiter = RateLimiter::new(2);
        assert!(limiter.check("alice").is_ok());
        assert!(limiter.check("alice").is_ok());
        let wait = limiter.check("alice").unwrap_err();
        assert!(wait > Duration::from_secs(55) && wait <= WINDOW, "{wait:?}");
        assert!(limiter.check("bob").is_ok());
        assert!(RateLimiter::new(0).check("alice").is_ok());
    }
}
