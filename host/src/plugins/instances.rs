//! A plugin's instances: how many may run at once, the ones kept ready for
//! the next call, and the finished ones waiting to be torn down.
//!
//! Making an instance (a pool slot, the imports wired in, the guest's own
//! start-up) and tearing one down (resetting its memory for reuse) are most
//! of what a short call costs beyond its own work. So each plugin keeps
//! fresh instances ready ([`READY`]): a call takes one and, once it first
//! waits in a host call (a tool typically waits on the database), wakes a
//! background task that makes the next one and drops the stores of
//! finished calls (a call that never waits wakes it when it ends). Waking
//! it then rather than at the start keeps the hand-off (a thread wake-up,
//! about 10 µs here) off the caller's path.
//! That is for a call running alone; concurrent calls make and drop their
//! own instances inline, as the cores have no idle time to hide the work
//! in. Every instance still serves exactly one call, and its store is
//! dropped after it: nothing one call leaves behind reaches another.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::{Engine, Store};

use super::bindings::provider::{ProviderPlugin, ProviderPluginPre};
use super::bindings::tool::{TaskTool, TaskToolPre};
use super::budget::Share;
use super::budget::{Floor, HostBudget};
use super::capabilities::Bound;
use super::error::{CallError, LoadError};
use super::guest_call::{CallParts, GuestCall, Upkeep, run_guest};
use super::manifest::Limits;
use super::state::CallState;

/// A pre-instantiated component of either world.
pub(super) trait Instantiate: Send + Sync + 'static {
    type Instance: Send + 'static;

    fn instantiate<'a>(
        &'a self,
        store: &'a mut Store<CallState>,
    ) -> impl Future<Output = wasmtime::Result<Self::Instance>> + Send + 'a;
}

impl Instantiate for TaskToolPre<CallState> {
    type Instance = TaskTool;

    fn instantiate<'a>(
        &'a self,
        store: &'a mut Store<CallState>,
    ) -> impl Future<Output = wasmtime::Result<TaskTool>> + Send + 'a {
        self.instantiate_async(store)
    }
}

impl Instantiate for ProviderPluginPre<CallState> {
    type Instance = ProviderPlugin;

    fn instantiate<'a>(
        &'a self,
        store: &'a mut Store<CallState>,
    ) -> impl Future<Output = wasmtime::Result<ProviderPlugin>> + Send + 'a {
        self.instantiate_async(store)
    }
}

/// Fresh instances each plugin keeps ready for calls running alone. Four,
/// not one: the background task that replaces a taken instance is
/// sometimes still at work when the next call comes, the more often the
/// faster the calls. Measured with back-to-back `add_task` calls, the
/// share of calls that found none and instantiated inline: one ready
/// instance 11–24%; two 2–3%, and 2–10% once inserts got faster; four
/// at most 10 in 5,000.
const READY: usize = 4;

pub(super) struct Instances<P: Instantiate> {
    shared: Arc<Shared<P>>,
}

struct Shared<P: Instantiate> {
    pre: P,
    engine: Engine,
    plugin: Arc<str>,
    limits: Limits,
    /// One permit per instance allowed to run at once.
    permits: Arc<Semaphore>,
    budget: Arc<HostBudget>,
    /// This plugin's guaranteed share of the host's budget.
    floor: Floor,
    ready: Mutex<Vec<(Store<CallState>, P::Instance)>>,
    retired: Mutex<Vec<Store<CallState>>>,
    /// Whether the background task is running (at most one per plugin).
    working: AtomicBool,
}

impl<P: Instantiate> Instances<P> {
    pub(super) fn new(
        pre: P,
        engine: &Engine,
        plugin: Arc<str>,
        limits: &Limits,
        budget: &Arc<HostBudget>,
    ) -> Result<Self, LoadError> {
        // One slot more than the ready instances: a finished call's store
        // may still wait for the background task to drop it.
        let floor = budget.reserve(&plugin, limits, READY as u32 + 1)?;
        Ok(Instances {
            shared: Arc::new(Shared {
                pre,
                engine: engine.clone(),
                plugin,
                permits: Arc::new(Semaphore::new(limits.max_concurrency as usize)),
                budget: budget.clone(),
                floor,
                limits: limits.clone(),
                ready: Mutex::new(Vec::new()),
                retired: Mutex::new(Vec::new()),
                working: AtomicBool::new(false),
            }),
        })
    }

    /// A fresh instance for one call bound to `bound`, once one of the
    /// plugin's concurrency slots and a share of the host's budget are free
    /// (waiting at most its timeout for both).
    pub(super) async fn take(&self, bound: Bound) -> Result<(GuestCall, P::Instance), CallError> {
        let shared = &self.shared;
        let admitted = async {
            let permit = shared.permits.clone().acquire_owned().await.ok()?;
            let share = shared
                .budget
                .share(&shared.floor, shared.limits.memory_mib)
                .await;
            Some((permit, share))
        };
        let Ok(Some(permit)) = tokio::time::timeout(shared.limits.timeout(), admitted).await else {
            return Err(CallError::Busy {
                plugin: shared.plugin.to_string(),
            });
        };
        let ready = lock(&shared.ready).pop();
        let alone = shared.alone();
        let owner: Arc<dyn Upkeep> = shared.clone();
        match ready {
            Some((mut store, instance)) => {
                store.data_mut().bind(bound);
                let call = GuestCall::new(store, shared.call_parts(permit), owner, alone);
                Ok((call, instance))
            }
            None => {
                let store = shared.new_store(bound);
                let mut call = GuestCall::new(store, shared.call_parts(permit), owner, alone);
                let instance = call
                    .run(async |store| shared.pre.instantiate(store).await)
                    .await?;
                Ok((call, instance))
            }
        }
    }
}

impl<P: Instantiate> Shared<P> {
    fn call_parts(&self, admitted: (OwnedSemaphorePermit, Share)) -> CallParts {
        CallParts {
            plugin: self.plugin.clone(),
            limits: self.limits.clone(),
            long_running: self.budget.long_running().clone(),
            _admitted: admitted,
        }
    }

    fn new_store(&self, bound: Bound) -> Store<CallState> {
        let state = CallState::new(&self.plugin, &self.limits, bound);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store
    }

    /// Whether the calling guest call is the only one running. Only then does
    /// work off the caller's path pay: with concurrent calls the cores are
    /// busy anyway, and the hand-offs would cost more than they save
    /// (measured: no-op calls from two tasks fell from 46,753/s to 19,421/s).
    fn alone(&self) -> bool {
        self.permits.available_permits() + 1 == self.limits.max_concurrency as usize
    }

    /// Drops retired stores and tops up the ready instances, until nothing is
    /// left to do. A failed instantiation is not retried here: the next call
    /// instantiates inline and reports the failure.
    async fn work(self: Arc<Self>) {
        let mut failed = false;
        loop {
            drop(std::mem::take(&mut *lock(&self.retired)));
            if !failed && lock(&self.ready).len() < READY {
                let mut store = self.new_store(Bound::nobody());
                let made = run_guest(
                    &mut store,
                    &self.plugin,
                    &self.limits,
                    self.budget.long_running(),
                    || {},
                    async |store| self.pre.instantiate(store).await,
                )
                .await;
                match made {
                    Ok(instance) => lock(&self.ready).push((store, instance)),
                    Err(err) => {
                        failed = true;
                        tracing::debug!(plugin = %self.plugin, error = %err, "could not prepare an instance");
                    }
                }
            }
            self.working.store(false, Ordering::Release);
            let pending =
                !lock(&self.retired).is_empty() || (!failed && lock(&self.ready).len() < READY);
            if !pending || self.working.swap(true, Ordering::AcqRel) {
                return;
            }
        }
    }
}

impl<P: Instantiate> Upkeep for Shared<P> {
    /// Starts the background task unless it is running already (or there is
    /// no runtime to run it on, as while the process shuts down).
    fn wake(self: Arc<Self>) {
        if self.working.swap(true, Ordering::AcqRel) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(self.work());
            }
            Err(_) => self.working.store(false, Ordering::Release),
        }
    }

    /// A store retired while other calls run is dropped inline (see
    /// [`Shared::alone`]); else it waits for the background task's next
    /// run, which this call starts if it has not started one already.
    fn retire(self: Arc<Self>, store: Store<CallState>, wake: bool) {
        if self.alone() {
            lock(&self.retired).push(store);
            if wake {
                self.wake();
            }
        } else {
            drop(store);
        }
    }
}

/// The data behind these locks stays consistent even if a holder panicked
/// (every critical section is a single take or push).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
