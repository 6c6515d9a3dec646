//! `wasmgate:plugin/kv`: storage for the calling plugin and user, for
//! plugins granted the `kv` capability.
//!
//! The plugin and the user are bound by the host when the call starts;
//! nothing in the interface names either. Keys and values are checked
//! before anything reaches the store, each call is budgeted (host calls and
//! changes), and the operator's quota for the plugin is enforced by the
//! store in the write itself.

use std::sync::Arc;

use crate::kv::{self, KvError, KvQuota, KvRepository};
use crate::plugins::bindings::tool::wasmgate::plugin::kv as wit;

/// Calls into `kv` per guest call, and changes (set, delete) among them.
const HOST_CALLS_PER_CALL: u32 = 64;
const CHANGES_PER_CALL: u32 = 16;

pub struct KvHost {
    /// `None` for a call that acts for nobody, or a host without a store.
    caller: Option<Caller>,
    host_calls: u32,
    changes: u32,
}

struct Caller {
    plugin: Arc<str>,
    user: String,
    quota: KvQuota,
    repository: Arc<dyn KvRepository>,
}

impl KvHost {
    pub fn for_user(
        plugin: Arc<str>,
        user: String,
        quota: KvQuota,
        repository: Option<Arc<dyn KvRepository>>,
    ) -> Self {
        KvHost {
            caller: repository.map(|repository| Caller {
                plugin,
                user,
                quota,
                repository,
            }),
            host_calls: 0,
            changes: 0,
        }
    }

    pub fn nobody() -> Self {
        KvHost {
            caller: None,
            host_calls: 0,
            changes: 0,
        }
    }

    fn charge(&mut self, change: bool) -> Result<&Caller, wit::KvError> {
        self.host_calls += 1;
        if self.host_calls > HOST_CALLS_PER_CALL {
            return Err(wit::KvError::Invalid(format!(
                "this call has made its {HOST_CALLS_PER_CALL} kv calls"
            )));
        }
        if change {
            self.changes += 1;
            if self.changes > CHANGES_PER_CALL {
                return Err(wit::KvError::Invalid(format!(
                    "this call has made its {CHANGES_PER_CALL} kv changes"
                )));
            }
        }
        self.caller
            .as_ref()
            .ok_or_else(|| wit::KvError::Unavailable("this call acts for no user".into()))
    }
}

fn to_wit(error: KvError) -> wit::KvError {
    match error {
        KvError::Invalid(message) => wit::KvError::Invalid(message),
        KvError::Quota(_) => wit::KvError::Quota(error.to_string()),
        KvError::Unavailable => wit::KvError::Unavailable(error.to_string()),
    }
}

impl wit::Host for KvHost {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, wit::KvError> {
        kv::check_key(&key).map_err(to_wit)?;
        let c = self.charge(false)?;
        c.repository
            .get(&c.plugin, &c.user, &key)
            .await
            .map_err(to_wit)
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), wit::KvError> {
        kv::check_key(&key).map_err(to_wit)?;
        if value.len() > kv::MAX_VALUE_BYTES {
            return Err(wit::KvError::Invalid(format!(
                "a value must be at most {} bytes",
                kv::MAX_VALUE_BYTES
            )));
        }
        let c = self.charge(true)?;
        c.repository
            .set(&c.plugin, &c.user, &key, &value, c.quota)
            .await
            .map_err(to_wit)
    }

    async fn delete(&mut self, key: String) -> Result<bool, wit::KvError> {
        kv::check_key(&key).map_err(to_wit)?;
        let c = self.charge(true)?;
        c.repository
            .delete(&c.plugin, &c.user, &key)
            .await
            .map_err(to_wit)
    }

    async fn list_keys(
        &mut self,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<String>, wit::KvError> {
        if prefix.len() > kv::MAX_KEY_BYTES
            || after.as_ref().is_some_and(|a| a.len() > kv::MAX_KEY_BYTES)
        {
            return Err(wit::KvError::Invalid(format!(
                "a prefix or key must be at most {} bytes",
                kv::MAX_KEY_BYTES
            )));
        }
        let c = self.charge(false)?;
        c.repository
            .list_keys(
                &c.plugin,
                &c.user,
                &prefix,
                after.as_deref(),
                limit.min(kv::MAX_LISTED_KEYS),
            )
            .await
            .map_err(to_wit)
    }
}
