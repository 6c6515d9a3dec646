//! A per-user limit on chat turns: a fixed one-minute window per user,
//! answered with 429 and `Retry-After` when spent.
//!
//! Replicas must count in one place, or N of them allow N times the rate:
//! in Redis when `WASMGATE_REDIS_URL` names one (an atomic `INCR` of the
//! window's key), else on a store they share (PostgreSQL: one atomic
//! upsert per turn). One process alone (SQLite) counts in memory; a std
//! `Mutex` is right for that: held for a map lookup, never across an await.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

use super::AgentError;
use crate::store::Store;

/// Where the windows are counted.
#[derive(Clone)]
pub enum Windows {
    /// In this process.
    Local,
    /// In the database the replicas share.
    Store(Store),
    /// In Redis, shared by every replica that names it.
    Redis(ConnectionManager),
}

impl Windows {
    /// Redis when `redis_url` is given (connected now, so a wrong URL stops
    /// the start), else the store when replicas share it, else this process.
    pub async fn connect(redis_url: Option<&str>, store: &Store) -> anyhow::Result<Windows> {
        if let Some(url) = redis_url.filter(|url| !url.trim().is_empty()) {
            let client = redis::Client::open(url.trim())?;
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(Duration::from_secs(1)));
            let manager = ConnectionManager::new_with_config(client, config).await?;
            return Ok(Windows::Redis(manager));
        }
        Ok(if store.is_shared() {
            Windows::Store(store.clone())
        } else {
            Windows::Local
        })
    }
}

const WINDOW: Duration = Duration::from_secs(60);
/// Past this many tracked users, expired windows are swept.
const SWEEP_AT: usize = 10_000;

pub struct RateLimiter {
    per_window: u32,
    /// The windows of [`Windows::Local`], and of Redis while it is away.
    local: Mutex<HashMap<String, (Instant, u32)>>,
    shared: Windows,
}

impl RateLimiter {
    /// `per_minute` turns per user and minute; 0 means no limit.
    pub fn new(per_minute: u32, windows: Windows) -> Self {
        RateLimiter {
            per_window: per_minute,
            local: Mutex::new(HashMap::new()),
            shared: windows,
        }
    }

    /// Counts one turn for `user`; [`AgentError::RateLimited`] with the
    /// wait when the window is spent.
    pub async fn check(&self, user: &str) -> Result<(), AgentError> {
        if self.per_window == 0 {
            return Ok(());
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let window_start = now - now.rem_euclid(WINDOW.as_secs() as i64);
        let key = format!("chat:{user}");
        let count = match &self.shared {
            Windows::Local => return self.check_here(user).map_err(AgentError::RateLimited),
            Windows::Store(store) => store.count_in_window(&key, window_start).await?,
            Windows::Redis(redis) => {
                match count_in_redis(redis.clone(), &key, window_start).await {
                    Ok(count) => count,
                    // A limiter is no reason to stop chatting: while Redis is
                    // away, each replica counts on its own.
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot count the chat rate in Redis; counting in this process");
                        return self.check_here(user).map_err(AgentError::RateLimited);
                    }
                }
            }
        };
        if count > i64::from(self.per_window) {
            let wait = (window_start + WINDOW.as_secs() as i64 - now).max(1);
            return Err(AgentError::RateLimited(Duration::from_secs(wait as u64)));
        }
        Ok(())
    }

    fn check_here(&self, user: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut windows = self
            .local
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

/// Counts one event for `key` in the window starting at `window_start`: the
/// window's own key, incremented and given an expiry in one transaction.
async fn count_in_redis(
    mut redis: ConnectionManager,
    key: &str,
    window_start: i64,
) -> redis::RedisResult<i64> {
    let key = format!("wasmgate:{key}:{window_start}");
    let (count,): (i64,) = redis::pipe()
        .atomic()
        .incr(&key, 1)
        .expire(&key, 2 * WINDOW.as_secs() as i64)
        .ignore()
        .query_async(&mut redis)
        .await?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_user() {
        let limiter = RateLimiter::new(2, Windows::Local);
        assert!(limiter.check_here("alice").is_ok());
        assert!(limiter.check_here("alice").is_ok());
        let wait = limiter.check_here("alice").unwrap_err();
        assert!(wait > Duration::from_secs(55) && wait <= WINDOW, "{wait:?}");
        assert!(limiter.check_here("bob").is_ok());
    }
}
