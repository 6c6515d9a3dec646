//! Calling into a plugin under its limits.
//!
//! Each call gets a fresh [`Store`] and instance from the plugin's
//! pre-instantiated component, a memory cap, and a deadline enforced twice:
//! by epoch interruption while the guest computes (it also yields to the
//! executor at every tick, so a spinning guest never starves other tasks)
//! and by a tokio timeout while it waits in an async host call, where epochs
//! do not fire.

use std::time::Instant;

use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::ToolError;
use super::error::CallError;
use super::host::tasks::TasksHost;
use super::runtime::{Plugin, PluginPre, Runtime};
use super::state::CallState;

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
        let tasks = TasksHost::new(user.to_string(), self.tasks.clone());
        let state = CallState::new(&plugin.name, &plugin.manifest.limits, tasks);
        let (tool, arguments) = (tool.to_string(), arguments.to_string());
        let output = self
            .run_guest(plugin, state, async |store| {
                let instance = pre.instantiate_async(&mut *store).await?;
                instance
                    .wasmgate_plugin_tool()
                    .call_call(&mut *store, &tool, &arguments)
                    .await
            })
            .await?
            .map_err(CallError::Tool)?;

        let limit = plugin.manifest.limits.max_output_bytes;
        if output.len() as u64 > limit {
            return Err(CallError::OutputLimit {
                plugin: plugin.name().to_string(),
                size: output.len(),
                limit,
            });
        }
        serde_json::from_str(&output).map_err(|err| CallError::InvalidOutput {
            plugin: plugin.name().to_string(),
            message: err.to_string(),
        })
    }

    /// Runs `body` against a fresh store for `plugin`, within the plugin's
    /// concurrency, memory and time limits, and turns whatever stopped the
    /// guest into a [`CallError`].
    pub(super) async fn run_guest<R>(
        &self,
        plugin: &Plugin,
        state: CallState,
        body: impl AsyncFnOnce(&mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let limit = plugin.manifest.limits.timeout();
        let deadline_error = || CallError::Deadline {
            plugin: plugin.name().to_string(),
            limit,
        };

        // Waiting for a free slot is bounded by the same time as running.
        let _permit = match tokio::time::timeout(limit, plugin.permits.acquire()).await {
            Ok(Ok(permit)) => permit,
            _ => {
                return Err(CallError::Busy {
                    plugin: plugin.name().to_string(),
                });
            }
        };

        let deadline = Instant::now() + limit;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });

        let remaining = deadline.saturating_duration_since(Instant::now());
        let outcome = tokio::time::timeout(remaining, body(&mut store)).await;
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Err(_elapsed) => Err(deadline_error()),
            Ok(Err(err)) => {
                if store.data().limiter.memory_exceeded {
                    Err(CallError::MemoryLimit {
                        plugin: plugin.name().to_string(),
                        mib: plugin.manifest.limits.memory_mib,
                    })
                } else if err.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
                    Err(deadline_error())
                } else {
                    tracing::warn!(plugin = plugin.name(), error = ?err, "plugin trapped");
                    let message = match err.downcast_ref::<Trap>() {
                        Some(trap) => trap.to_string(),
                        None => err.root_cause().to_string(),
                    };
                    Err(CallError::Trap {
                        plugin: plugin.name().to_string(),
                        message,
                    })
                }
            }
        }
    }
}
