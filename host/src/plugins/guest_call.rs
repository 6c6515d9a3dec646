//! One guest call: a fresh [`Store`] (so a fresh instance) holding one of
//! its plugin's concurrency permits, entered under the plugin's limits.
//!
//! Every entry into the guest through [`GuestCall::run`] gets its own
//! deadline, enforced twice: by epoch interruption while the guest computes
//! (it also yields to the executor at every tick, so a spinning guest never
//! starves other tasks) and by a tokio timeout while it waits in an async
//! host call, where epochs do not fire. Tool calls use a guest call for one
//! entry; a provider's stream decoder keeps its call for the whole stream.
//!
//! This module knows nothing of where stores come from: the plugin's side
//! ([`Upkeep`], implemented in `instances.rs`) takes them back.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::{Store, Trap, UpdateDeadline};

use super::budget::Share;
use super::error::CallError;
use super::manifest::Limits;
use super::state::CallState;

/// One store of one plugin, with its permit. A call running alone starts
/// the plugin's [`Upkeep`] when it first waits in a host call (so the
/// hand-off, a thread wake-up, overlaps the wait), or else when it ends.
/// Its store goes back to the plugin when it drops (see [`Upkeep::retire`]).
pub(super) struct GuestCall {
    /// Always `Some` until dropped.
    store: Option<Store<CallState>>,
    parts: CallParts,
    owner: Arc<dyn Upkeep>,
    /// Whether this call has still to start the upkeep.
    wake_owner: bool,
}

/// What a guest call runs under: its plugin's limits, and what admitted it.
pub(super) struct CallParts {
    pub plugin: Arc<str>,
    pub limits: Limits,
    /// Where long-running guests take turns (see `budget.rs`).
    pub long_running: Arc<Semaphore>,
    /// The plugin's concurrency permit and the call's share of the host's
    /// budget, released with the call.
    pub _admitted: (OwnedSemaphorePermit, Share),
}

/// The plugin's side of a [`GuestCall`]: the background task a call wakes,
/// and where it hands its store when it is over.
pub(super) trait Upkeep: Send + Sync {
    fn wake(self: Arc<Self>);
    /// Takes the store of a finished call, and wakes the background task
    /// if `wake` (the call has not done so yet).
    fn retire(self: Arc<Self>, store: Store<CallState>, wake: bool);
}

impl GuestCall {
    pub(super) fn new(
        store: Store<CallState>,
        parts: CallParts,
        owner: Arc<dyn Upkeep>,
        wake_owner: bool,
    ) -> Self {
        GuestCall {
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
        let store = self.store.as_mut().expect("a live call has its store");
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

impl Drop for GuestCall {
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
