//! `wasmgate:plugin/log`: guest log records into `tracing`, tagged with the
//! plugin's name and capped per call so a chatty plugin cannot flood the log.

use std::sync::Arc;

use crate::plugins::bindings::LogLevel;
use crate::plugins::bindings::tool::wasmgate::plugin::{log, types};

/// Bytes of log text one call may emit; the rest is counted and dropped.
const LOG_BUDGET: usize = 64 * 1024;

pub struct LogHost {
    plugin: Arc<str>,
    remaining: usize,
    dropped: usize,
}

impl LogHost {
    pub fn new(plugin: Arc<str>) -> Self {
        LogHost {
            plugin,
            remaining: LOG_BUDGET,
            dropped: 0,
        }
    }
}

impl Drop for LogHost {
    fn drop(&mut self) {
        if self.dropped > 0 {
            tracing::warn!(plugin = %self.plugin, dropped_bytes = self.dropped, "plugin log over budget");
        }
    }
}

impl log::Host for LogHost {
    async fn log(&mut self, level: LogLevel, message: String) {
        if message.len() > self.remaining {
            self.dropped += message.len();
            return;
        }
        self.remaining -= message.len();
        let plugin = &*self.plugin;
        match level {
            LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            LogLevel::Info => tracing::info!(plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

/// `types` declares only types; linking it needs an (empty) host.
impl types::Host for LogHost {}
