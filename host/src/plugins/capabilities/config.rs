//! `wasmgate:plugin/config`: the settings the operator gives a plugin in
//! the policy, read-only, for plugins granted the `config` capability.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::plugins::bindings::tool::wasmgate::plugin::config as wit;

#[derive(Default)]
pub struct ConfigHost {
    settings: Arc<BTreeMap<String, String>>,
}

impl ConfigHost {
    pub fn new(settings: Arc<BTreeMap<String, String>>) -> Self {
        ConfigHost { settings }
    }
}

impl wit::Host for ConfigHost {
    async fn get(&mut self, key: String) -> Option<String> {
        self.settings.get(&key).cloned()
    }

    async fn all(&mut self) -> Vec<(String, String)> {
        self.settings
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}
