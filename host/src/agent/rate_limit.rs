//! A per-user limit on chat turns: a fixed one-minute window per user,
//! answered with 429 and `Retry-After` when spent.
//!
//! On a store several replicas share (PostgreSQL), the window is counted
//! there, by one atomic upsert per turn, so N replicas allow the rate once,
//! not N times. Otherwise (SQLite: one process) it is counted in memory; a
//! std `Mutex` is right for that: held for a map lookup, never across an
//! await.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::AgentError;
use crate::store::Store;

const WINDOW: Duration = Duration::from_secs(60);
/// Past this many tracked users, expired windows are swept.
const SWEEP_AT: usize = 10_000;

pub struct RateLimiter {
    per_window: u32,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
    /// Where the windows are counted when replicas share them.
    shared: Option<Store>,
}

impl RateLimiter {
    /// `per_minute` turns per user and minute; 0 means no limit. Counted in
    /// `store` when it is one that replicas share.
    pub fn new(per_minute: u32, store: &Store) -> Self {
        RateLimiter {
            per_window: per_minute,
            windows: Mutex::new(HashMap::new()),
            shared: store.is_shared().then(|| store.clone()),
        }
    }

    /// Counts one turn for `user`; [`AgentError::RateLimited`] with the
    /// wait when the window is spent.
    pub async fn check(&self, user: &str) -> Result<(), AgentError> {
        if self.per_window == 0 {
            return Ok(());
        }
        let Some(store) = &self.shared else {
            return self.check_here(user).map_err(AgentError::RateLimited);
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let window_start = now - now.rem_euclid(WINDOW.as_secs() as i64);
        let count = store
            .count_in_window(&format!("chat:{user}"), window_start)
            .await?;
        if count > i64::from(self.per_window) {
            let wait = (window_start + WINDOW.as_secs() as i64 - now).max(1);
            return Err(AgentError::RateLimited(Duration::from_secs(wait as u64)));
        }
        Ok(())
    }

    fn check_here(&self, user: &str) -> Result<(), Duration> {
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
        let limiter = RateLimiter {
            per_window: 2,
            windows: Mutex::new(HashMap::new()),
            shared: None,
        };
        assert!(limiter.check_here("alice").is_ok());
        assert!(limiter.check_here("alice").is_ok());
        let wait = limiter.check_here("alice").unwrap_err();
        assert!(wait > Duration::from_secs(55) && wait <= WINDOW, "{wait:?}");
        assert!(limiter.check_here("bob").is_ok());
    }
}
