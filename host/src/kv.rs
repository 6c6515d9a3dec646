//! Plugin key-value storage: the rules every key and value keeps, the
//! quota an operator sets, and the repository interface the store
//! implements for the `kv` capability.
//!
//! Every method takes the plugin and the user it acts for, both bound by
//! the host; a plugin never names either, so no plugin reads another's keys
//! and no user another's.

use async_trait::async_trait;

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Most keys one `list-keys` returns.
pub const MAX_LISTED_KEYS: u32 = 100;

/// How much one plugin may store for one user, set per plugin in the
/// operator's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KvQuota {
    pub max_keys: u32,
    /// Value bytes over all keys.
    pub max_bytes: u64,
}

impl Default for KvQuota {
    fn default() -> Self {
        KvQuota {
            max_keys: 1_000,
            max_bytes: 1024 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KvError {
    #[error("{0}")]
    Invalid(String),
    #[error("this plugin's storage for the user is full ({} keys, {} bytes at most); delete keys to make room", .0.max_keys, .0.max_bytes)]
    Quota(KvQuota),
    #[error("the key-value store is unavailable")]
    Unavailable,
}

/// Why `key` cannot be a key: 1 to [`MAX_KEY_BYTES`] bytes, no control
/// characters.
pub fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(KvError::Invalid(format!(
            "a key must be 1 to {MAX_KEY_BYTES} bytes"
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(KvError::Invalid(
            "a key must not contain control characters".into(),
        ));
    }
    Ok(())
}

/// Where a plugin's keys live, scoped to (plugin, user).
#[async_trait]
pub trait KvRepository: Send + Sync {
    async fn get(&self, plugin: &str, user: &str, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// Stores `value`, unless that would take the pair past `quota`.
    async fn set(
        &self,
        plugin: &str,
        user: &str,
        key: &str,
        value: &[u8],
        quota: KvQuota,
    ) -> Result<(), KvError>;
    /// Whether the key was there.
    async fn delete(&self, plugin: &str, user: &str, key: &str) -> Result<bool, KvError>;
    /// Up to `limit` keys starting with `prefix`, in byte order, after `after`.
    async fn list_keys(
        &self,
        plugin: &str,
        user: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, KvError>;
}
