//! Calling into a plugin under its limits.
//!
//! A [`Session`] is one fresh [`Store`] (so one fresh instance) holding one
//! of the plugin's concurrency permits. Every entry into the guest through
//! [`Session::run`] gets its own deadline, enforced twice: by epoch
//! interruption while the guest computes (it also yields to the executor at
//! every tick, so a spinning guest never starves other tasks) and by a tokio
//! timeout while it waits in an async host call, where epochs do not fire.
//! Tool calls use a session for one entry; a provider's stream decoder keeps
//! its session for the whole stream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;
use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::ToolError;
use super::error::CallError;
use super::host::tasks::TasksHost;
use super::runtime::{Plugin, PluginPre, Runtime};
use super::state::CallState;

/// One store of one plugin, with its permit and limits.
pub(super) struct Session {
    pub(super) store: Store<CallState>,
    plugin: Arc<str>,
    timeout: Duration,
    memory_mib: u32,
    _permit: OwnedSemaphorePermit,
}

impl Runtime {
    /// Runs tool `tool` of `plugin` for `user` with `arguments` (a JSON
    /// object as text) and returns its JSON result.
    pub async fn call_tool(
        &self,
        plugin: &Plugin,
        user: &str,
        tool: &str,
        arguments: &str,
    ) -> Result<serde_json::Value, CallError> {
        let PluginPre::Tool(pre) = &plugin.pre else {
            return Err(CallError::UnknownTool(tool.to_string()));
        };
        // The contract promises tools a JSON object; hold callers to it here
        // so no plugin has to defend against anything else.
        if !serde_json::from_str::<serde_json::Value>(arguments).is_ok_and(|v| v.is_object()) {
            return Err(CallError::Tool(ToolError::InvalidArguments(
                "arguments must be a JSON object".into(),
            )));
        }
        let started = Instant::now();
        let result = self.run_tool(plugin, pre, user, tool, arguments).await;
        let timeout = matches!(result, Err(CallError::Deadline { .. }));
        // A tool-reported error is the tool working; count only failures of
        // the plugin itself.
        let failed = matches!(result, Err(ref err) if !matches!(err, CallError::Tool(_)));
        plugin.stats.record(started.elapsed(), failed, timeout);
        result
    }

    async fn run_tool(
        &self,
        plugin: &Plugin,
        pre: &super::bindings::tool::TaskToolPre<CallState>,
        user: &str,
        tool: &str,
        arguments: &str,
    ) -> Result<serde_json::Value, CallError> {
        let tasks = TasksHost::new(user.to_string(), self.tasks.clone());
        let mut session = self.session(plugin, tasks).await?;
        let (tool, arguments) = (tool.to_string(), arguments.to_string());
        let output = session
            .run(async |store| {
                let instance = pre.instantiate_async(&mut *store).await?;
                instance
                    .wasmgate_plugin_tool()
                    .call_call(&mut *store, &tool, &arguments)
                    .await
            })
            .await?
            .map_err(CallError::Tool)?;
        check_output(plugin, output.len())?;
        serde_json::from_str(&output).map_err(|err| CallError::InvalidOutput {
            plugin: plugin.name().to_string(),
            message: err.to_string(),
        })
    }

    /// A fresh store for `plugin`, once one of its concurrency slots is free
    /// (waiting at most the plugin's timeout).
    pub(super) async fn session(
        &self,
        plugin: &Plugin,
        tasks: TasksHost,
    ) -> Result<Session, CallError> {
        let timeout = plugin.manifest.limits.timeout();
        let permit =
            match tokio::time::timeout(timeout, plugin.permits.clone().acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                _ => {
                    return Err(CallError::Busy {
                        plugin: plugin.name().to_string(),
                    });
                }
            };
        let state = CallState::new(&plugin.name, &plugin.manifest.limits, tasks);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        Ok(Session {
            store,
            plugin: plugin.name.clone(),
            timeout,
            memory_mib: plugin.manifest.limits.memory_mib,
            _permit: permit,
        })
    }
}

/// A result larger than the manifest allows is refused. (The host already
/// holds it: lifting it was bounded by the guest's memory limit.)
pub(super) fn check_output(plugin: &Plugin, size: usize) -> Result<(), CallError> {
    let limit = plugin.manifest.limits.max_output_bytes;
    if size as u64 > limit {
        return Err(CallError::OutputLimit {
            plugin: plugin.name().to_string(),
            size,
            limit,
        });
    }
    Ok(())
}

impl Session {
    /// Runs `body` (one entry into the guest) within the plugin's time
    /// limit, and turns whatever stopped the guest into a [`CallError`].
    pub(super) async fn run<R>(
        &mut self,
        body: impl AsyncFnOnce(&mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let deadline = Instant::now() + self.timeout;
        self.store.set_epoch_deadline(1);
        self.store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });

        let outcome = tokio::time::timeout(self.timeout, body(&mut self.store)).await;
        let plugin = self.plugin.to_string();
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Err(_elapsed) => Err(CallError::Deadline {
                plugin,
                limit: self.timeout,
            }),
            Ok(Err(err)) => {
                if self.store.data().limiter.memory_exceeded {
                    Err(CallError::MemoryLimit {
                        plugin,
                        mib: self.memory_mib,
                    })
                } else if err.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
                    Err(CallError::Deadline {
                        plugin,
                        limit: self.timeout,
                    })
                } else {
                    tracing::warn!(plugin, error = ?err, "plugin trapped");
                    let message = match err.downcast_ref::<Trap>() {
                        Some(trap) => trap.to_string(),
                        None => err.root_cause().to_string(),
                    };
                    Err(CallError::Trap { plugin, message })
                }
            }
        }
    }
}
