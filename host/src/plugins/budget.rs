//! The host's budgets that every plugin shares: guest memory, instance-pool
//! slots, and the cores that long-running guests may occupy.
//!
//! Each plugin reserves a floor when it loads: memory and slots for
//! [`FLOOR_INSTANCES`] running instances (plus the slots of its ready
//! instances), so whatever its neighbours do, it can always run that many
//! calls. A plugin whose floor does not fit is rejected at load with the
//! figures. Calls beyond the floor take memory and a slot from the shared
//! remainder, waiting within their deadline; one plugin at its limit makes
//! its own calls wait, never another plugin's floor.
//!
//! A guest still running at an epoch tick is CPU-heavy: from then on it
//! runs only while holding one of the [`long-running slots`](HostBudget::long_running),
//! fewer than the cores, so spinning guests leave a core to everything
//! else. Calls that finish within a tick (nearly all) never wait for one.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::LoadError;
use super::manifest::Limits;

/// Running instances each plugin is guaranteed.
pub const FLOOR_INSTANCES: u32 = 2;

/// The default of `WASMGATE_MEMORY_MIB`.
pub const DEFAULT_MEMORY_MIB: u32 = 4096;

pub struct HostBudget {
    memory_mib: u32,
    pool_slots: u32,
    /// MiB of guest memory not reserved by a floor.
    memory: Arc<Semaphore>,
    /// Pool slots not reserved by a floor.
    slots: Arc<Semaphore>,
    /// Long-running guests that may execute at once.
    long_running: Arc<Semaphore>,
}

/// A plugin's floor, held for as long as the plugin is loaded.
pub(super) struct Floor {
    /// One permit per guaranteed running instance.
    instances: Arc<Semaphore>,
    _memory: OwnedSemaphorePermit,
    _slots: OwnedSemaphorePermit,
}

/// What one running instance holds: a floor place or a share of the
/// remainder.
pub(super) enum Share {
    Floor(#[allow(dead_code, reason = "held, not read")] OwnedSemaphorePermit),
    Remainder(
        #[allow(dead_code, reason = "held, not read")] OwnedSemaphorePermit,
        #[allow(dead_code, reason = "held, not read")] OwnedSemaphorePermit,
    ),
}

impl HostBudget {
    /// `memory_mib` of guest memory and `pool_slots` instances in all.
    pub fn new(memory_mib: u32, pool_slots: u32) -> HostBudget {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        HostBudget {
            memory_mib,
            pool_slots,
            memory: Arc::new(Semaphore::new(memory_mib as usize)),
            slots: Arc::new(Semaphore::new(pool_slots as usize)),
            long_running: Arc::new(Semaphore::new(cores.saturating_sub(1).max(1))),
        }
    }

    pub fn memory_mib(&self) -> u32 {
        self.memory_mib
    }

    /// Reserves the floor of a plugin with `limits` and `ready` instances
    /// kept ready, or says why it does not fit.
    pub(super) fn reserve(
        &self,
        plugin: &str,
        limits: &Limits,
        ready: u32,
    ) -> Result<Floor, LoadError> {
        let instances = FLOOR_INSTANCES.min(limits.max_concurrency);
        let memory = instances * limits.memory_mib;
        let slots = instances + ready;
        let over = |what: String| LoadError::Budget {
            plugin: plugin.to_string(),
            message: what,
        };
        let memory = self
            .memory
            .clone()
            .try_acquire_many_owned(memory)
            .map_err(|_| {
                over(format!(
                    "its floor of {instances} instances × {} MiB does not fit the {} MiB of guest \
                 memory left of the host's {} (WASMGATE_MEMORY_MIB)",
                    limits.memory_mib,
                    self.memory.available_permits(),
                    self.memory_mib
                ))
            })?;
        let slots = self
            .slots
            .clone()
            .try_acquire_many_owned(slots)
            .map_err(|_| {
                over(format!(
                    "its {slots} instance slots do not fit the {} left of the pool's {}",
                    self.slots.available_permits(),
                    self.pool_slots
                ))
            })?;
        Ok(Floor {
            instances: Arc::new(Semaphore::new(instances as usize)),
            _memory: memory,
            _slots: slots,
        })
    }

    /// A place for one running instance of `memory_mib`: the plugin's floor
    /// if one is free, else memory and a slot of the remainder, whichever
    /// comes first.
    pub(super) async fn share(&self, floor: &Floor, memory_mib: u32) -> Share {
        if let Ok(permit) = floor.instances.clone().try_acquire_owned() {
            return Share::Floor(permit);
        }
        let (memory, slots) = (self.memory.clone(), self.slots.clone());
        let remainder = async move {
            let memory = memory.acquire_many_owned(memory_mib).await;
            let slot = slots.acquire_owned().await;
            (memory, slot)
        };
        tokio::select! {
            floor = floor.instances.clone().acquire_owned() => {
                Share::Floor(floor.expect("floor semaphores are never closed"))
            }
            (memory, slot) = remainder => Share::Remainder(
                memory.expect("budget semaphores are never closed"),
                slot.expect("budget semaphores are never closed"),
            ),
        }
    }

    /// The slots long-running guests take turns on.
    pub(super) fn long_running(&self) -> &Arc<Semaphore> {
        &self.long_running
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(memory_mib: u32, max_concurrency: u32) -> Limits {
        Limits {
            memory_mib,
            max_concurrency,
            ..Limits::default()
        }
    }

    #[tokio::test]
    async fn floors_are_reserved_and_the_rest_is_shared() {
        let budget = HostBudget::new(256, 100);
        let a = budget.reserve("a", &limits(64, 64), 4).unwrap();
        // 128 MiB left: a second floor of 2 × 64 fits, a third does not.
        let b = budget.reserve("b", &limits(64, 64), 4).unwrap();
        let error = budget.reserve("c", &limits(64, 64), 4).err().unwrap();
        assert!(error.to_string().contains("WASMGATE_MEMORY_MIB"), "{error}");
        // Released with the plugin.
        drop(b);
        let _b = budget.reserve("b", &limits(32, 64), 4).unwrap();

        // `a` runs its floor, then competes for the 64 MiB remainder.
        let first = budget.share(&a, 64).await;
        let second = budget.share(&a, 64).await;
        assert!(matches!(
            (&first, &second),
            (Share::Floor(_), Share::Floor(_))
        ));
        let third = budget.share(&a, 64).await;
        assert!(matches!(third, Share::Remainder(..)));
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(50), budget.share(&a, 64));
        assert!(waiting.await.is_err(), "the remainder is spent");
        drop(first);
        let again =
            tokio::time::timeout(std::time::Duration::from_millis(50), budget.share(&a, 64));
        assert!(matches!(again.await, Ok(Share::Floor(_))));
    }
}
