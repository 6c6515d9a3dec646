//! The one wasmtime [`Engine`] every plugin runs on, and its epoch ticker.
//!
//! The pooling allocator makes instantiation cheap (it reuses pre-reserved
//! memory slots instead of mapping new ones per call), but it reserves a
//! large amount of virtual address space up front. Where that reservation
//! fails (tight `ulimit -v`, some containers) the engine falls back to the
//! on-demand allocator and says so in the log.

use std::time::Duration;

use anyhow::Context;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::manifest::MAX_MEMORY_MIB;

/// How often the epoch advances. Per-call deadlines are checked at this
/// granularity, and a running guest yields to the executor at every tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Component instances the pool holds. The host's budget (`budget.rs`)
/// hands them out, so calls wait for one instead of failing to instantiate.
pub const POOL_INSTANCES: u32 = 1_000;

/// Which instance allocator to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AllocatorChoice {
    /// Pooling if the address space can be reserved, else on-demand.
    Auto,
    Pooling,
    OnDemand,
}

/// The allocator the engine ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    Pooling,
    OnDemand,
}

/// Builds the engine and starts its epoch ticker (a thread that stops when
/// the engine is dropped).
pub fn build(choice: AllocatorChoice) -> anyhow::Result<(Engine, Allocator)> {
    let (engine, allocator) = match choice {
        AllocatorChoice::OnDemand => (new_engine(None)?, Allocator::OnDemand),
        AllocatorChoice::Pooling => (new_engine(Some(pooling_config()))?, Allocator::Pooling),
        AllocatorChoice::Auto => match new_engine(Some(pooling_config())) {
            Ok(engine) => (engine, Allocator::Pooling),
            Err(err) => {
                tracing::warn!(
                    error = %format!("{err:#}"),
                    "pooling allocator unavailable, falling back to on-demand instantiation"
                );
                (new_engine(None)?, Allocator::OnDemand)
            }
        },
    };
    start_epoch_ticker(&engine);
    Ok((engine, allocator))
}

/// An engine configured exactly as `build` configures one for `allocator`
/// (so what it compiles loads there), without the epoch ticker: for the
/// compiler child process.
pub fn for_compiling(allocator: Allocator) -> anyhow::Result<Engine> {
    new_engine_with(
        match allocator {
            Allocator::Pooling => Some(pooling_config()),
            Allocator::OnDemand => None,
        },
        // One core: compiling must never take every core from serving.
        // (The artifact is the same either way.)
        |config| {
            config.parallel_compilation(false);
        },
    )
}

fn pooling_config() -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(POOL_INSTANCES)
        // A Rust wasip2 component has a main module plus a few small shims.
        .total_core_instances(POOL_INSTANCES * 4)
        .total_memories(POOL_INSTANCES)
        .total_tables(POOL_INSTANCES * 4)
        .max_memory_size(MAX_MEMORY_MIB as usize * 1024 * 1024)
        // Keep the start of each slot resident between calls and reset it
        // with memset: cheaper than decommitting it (madvise, with the TLB
        // shootdowns that costs in a multi-threaded process) and faulting it
        // back in. Guests are built with a 64 KiB stack (.cargo/config.toml)
        // so a typical call touches only this window. Measured with
        // `cargo xtask bench`: 64 KiB → 30 µs p50 per no-op call, 128 KiB →
        // 14 µs, 256 KiB → 13 µs, 512 KiB → 14 µs.
        .linear_memory_keep_resident(256 * 1024)
        .table_keep_resident(16 * 1024)
        // Where the kernel has PAGEMAP_SCAN (Linux 6.7+), reset only the
        // pages a call actually dirtied, not the whole window: tearing down
        // a store after an `add_task` call fell from about 15 µs to 10 µs,
        // and the component path's calls/s rose about 4% (`add_task` bench,
        // interleaved runs).
        .pagemap_scan(Enabled::Auto);
    pool
}

fn new_engine(pool: Option<PoolingAllocationConfig>) -> anyhow::Result<Engine> {
    new_engine_with(pool, |_| {})
}

fn new_engine_with(
    pool: Option<PoolingAllocationConfig>,
    adjust: impl FnOnce(&mut Config),
) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        // The plugin worlds are synchronous WIT called through fibers; the
        // component-model-async machinery would only add per-store and
        // per-call bookkeeping (measured: about 10 µs of a tool call).
        .concurrency_support(false);
    if let Some(pool) = pool {
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    adjust(&mut config);
    Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("creating the wasmtime engine")
}

fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning a thread at startup only fails when the OS is out of threads");
}
