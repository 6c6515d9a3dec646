//! Calling into a plugin under its limits.
//!
//! A [`Session`] is one fresh [`Store`] (so one fresh instance) holding one
//! of the plugin's concurrency permits; [`Instances::take`] hands them out.
//! Every entry into the guest through [`Session::run`] gets its own
//! deadline, enforced twice: by epoch interruption while the guest computes
//! (it also yields to the executor at every tick, so a spinning guest never
//! starves other tasks) and by a tokio timeout while it waits in an async
//! host call, where epochs do not fire. Tool calls use a session for one
//! entry; a provider's stream decoder keeps its session for the whole
//! stream.
//!
//! [`Instances::take`]: super::instances::Instances::take

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::ToolError;
use super::bindings::tool::TaskToolPre;
use super::budget::Share;
use super::error::CallError;
use super::host::tasks::TasksHost;
use super::instances::{Instances, Upkeep};
use super::manifest::Limits;
use super::runtime::{Plugin, PluginInstances, Runtime};
use super::state::CallState;

/// One store of one plugin, with its permit. A call running alone starts
/// the plugin's [`Upkeep`] when it first waits in a host call (so the
/// hand-off, a thread wake-up, overlaps the wait), or else when it ends.
/// Its store goes back to the plugin when it drops (see [`Upkeep::retire`]).
pub(super) struct Session {
    /// Always `Some` until dropped.
    store: Option<Store<CallState>>,
    parts: SessionParts,
    owner: Arc<dyn Upkeep>,
    /// Whether this session has still to start the upkeep.
    wake_owner: bool,
}

/// What a session runs under: its plugin's limits, and what admitted it.
pub(super) struct SessionParts {
    pub plugin: Arc<str>,
    pub limits: Limits,
    /// Where long-running guests take turns (see `budget.rs`).
    pub long_running: Arc<Semaphore>,
    /// The plugin's concurrency permit and the call's share of the host's
    /// budget, released with the session.
    pub _admitted: (OwnedSemaphorePermit, Share),
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
        let PluginInstances::Tool(instances) = &plugin.instances else {
            return Err(CallError::UnknownTool(tool.to_string()));
        };
        // The contract promises tools a JSON object; hold callers to it here
        // so no plugin has to defend against anything else. (Valid JSON that
        // starts with `{` is an object; checking so builds no value.)
        let is_object = arguments.trim_start().starts_with('{')
            && serde_json::from_str::<serde::de::IgnoredAny>(arguments).is_ok();
        if !is_object {
            return Err(CallError::Tool(ToolError::InvalidArguments(
                "arguments must be a JSON object".into(),
            )));
        }
        let started = Instant::now();
        let tasks = TasksHost::new(
            user.to_string(),
            self.tasks.clone(),
            self.task_limits.clone(),
            self.write_windows.clone(),
        );
        let result = run_tool(plugin, instances, tasks, tool, arguments).await;
        let timeout = matches!(result, Err(CallError::Deadline { .. }));
        // A tool-reported error is the tool working; count only failures of
        // the plugin itself.
        let failed = matches!(result, Err(ref err) if !matches!(err, CallError::Tool(_)));
        plugin.stats.record(started.elapsed(), failed, timeout);
        result
    }
}

async fn run_tool(
    plugin: &Plugin,
    instances: &Instances<TaskToolPre<CallState>>,
    tasks: TasksHost,
    tool: &str,
    arguments: &str,
) -> Result<serde_json::Value, CallError> {
    let (mut session, instance) = instances.take(tasks).await?;
    let (tool, arguments) = (tool.to_string(), arguments.to_string());
    let output = session
        .run(async |store| {
            instance
                .wasmgate_plugin_tool()
                .call_call(store, &tool, &arguments)
                .await
        })
        .await?
        .map_err(|error| match check_error(plugin, &error) {
            Ok(()) => CallError::Tool(error),
            Err(too_long) => too_long,
        })?;
    check_output(plugin, output.len())?;
    serde_json::from_str(&output).map_err(|err| CallError::InvalidOutput {
        plugin: plugin.name().to_string(),
        message: err.to_string(),
    })
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

/// Longest error message a guest may return (whatever its output limit):
/// errors go to the model and into the conversation, so they stay short.
pub const MAX_ERROR_BYTES: usize = 8 * 1024;

/// An error message longer than [`MAX_ERROR_BYTES`] (or the output limit)
/// is refused like an oversized result.
pub(super) fn check_error(plugin: &Plugin, error: &ToolError) -> Result<(), CallError> {
    let message = match error {
        ToolError::InvalidArguments(m)
        | ToolError::NotFound(m)
        | ToolError::UnknownTool(m)
        | ToolError::Failed(m) => m,
    };
    let limit = plugin
        .manifest
        .limits
        .max_output_bytes
        .min(MAX_ERROR_BYTES as u64);
    if message.len() as u64 > limit {
        return Err(CallError::OutputLimit {
            plugin: plugin.name().to_string(),
            size: message.len(),
            limit,
        });
    }
    Ok(())
}

impl Session {
    pub(super) fn new(
        store: Store<CallState>,
        parts: SessionParts,
        owner: Arc<dyn Upkeep>,
        wake_owner: bool,
    ) -> Self {
        Session {
            store: Some(store),
            parts,
            owner,
            wake_owner,
        }
    }

    /// Runs `body` (one entry into the guest) within the plugin's time
    /// limit, and turns whatever stopped the guest into a [`CallError`].
    pub(super) async fn run<R>(
        &mut self,
        body: impl AsyncFnOnce(&mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let store = self.store.as_mut().expect("a live session has its store");
        let (owner, wake_owner) = (&self.owner, &mut self.wake_owner);
        let on_wait = || {
            if std::mem::take(wake_owner) {
                owner.clone().wake();
            }
        };
        let parts = &self.parts;
        run_guest(
            store,
            &parts.plugin,
            &parts.limits,
            &parts.long_running,
            on_wait,
            body,
        )
        .await
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(store) = self.store.take() {
            self.owner.clone().retire(store, self.wake_owner);
        }
    }
}

/// Runs `body` in `store` within `limits`' time limit, and turns whatever
/// stopped the guest into a [`CallError`]. `on_wait` runs when the guest
/// first waits in an async host call (if it ever does).
///
/// At every epoch tick the guest yields. A guest still running at its second
/// tick is long-running (one that merely straddles a tick is not): from then
/// on it resumes only once it holds one of `long_running`'s permits (given
/// up again at its next tick, and when it returns), so spinning guests take
/// turns on fewer than all the cores and never queue a short call behind
/// them.
pub(super) async fn run_guest<R>(
    store: &mut Store<CallState>,
    plugin: &str,
    limits: &Limits,
    long_running: &Arc<Semaphore>,
    on_wait: impl FnOnce(),
    body: impl AsyncFnOnce(&mut Store<CallState>) -> wasmtime::Result<R>,
) -> Result<R, CallError> {
    let timeout = limits.timeout();
    let deadline = Instant::now() + timeout;
    let turn: Arc<Mutex<Option<OwnedSemaphorePermit>>> = Arc::default();
    let (slots, held) = (long_running.clone(), turn.clone());
    store.set_epoch_deadline(1);
    let mut ticks = 0u32;
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            return Ok(UpdateDeadline::Interrupt);
        }
        ticks += 1;
        if ticks < 2 {
            return Ok(UpdateDeadline::Yield(1));
        }
        // Give the turn up, and wait for the next one.
        drop(lock(&held).take());
        let (slots, held) = (slots.clone(), held.clone());
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                if let Ok(permit) = slots.acquire_owned().await {
                    *lock(&held) = Some(permit);
                }
            }),
        ))
    });

    let outcome = {
        let mut body = std::pin::pin!(body(&mut *store));
        let mut on_wait = Some(on_wait);
        let guest = std::future::poll_fn(|cx| {
            let poll = body.as_mut().poll(cx);
            if poll.is_pending()
                && let Some(on_wait) = on_wait.take()
            {
                on_wait();
            }
            poll
        });
        tokio::time::timeout(timeout, guest).await
    };
    drop(lock(&turn).take());
    let plugin_name = || plugin.to_string();
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Err(_elapsed) => Err(CallError::Deadline {
            plugin: plugin_name(),
            limit: timeout,
        }),
        Ok(Err(err)) => {
            if store.data().limiter.memory_exceeded {
                Err(CallError::MemoryLimit {
                    plugin: plugin_name(),
                    mib: limits.memory_mib,
                })
            } else if err.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
                Err(CallError::Deadline {
                    plugin: plugin_name(),
                    limit: timeout,
                })
            } else {
                tracing::warn!(plugin, error = ?err, "plugin trapped");
                let message = match err.downcast_ref::<Trap>() {
                    Some(trap) => trap.to_string(),
                    None => err.root_cause().to_string(),
                };
                Err(CallError::Trap {
                    plugin: plugin_name(),
                    message,
                })
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
