//! What one call's [`Store`](wasmtime::Store) holds: a WASI context that
//! grants nothing, the resource limiter, and the host capability contexts.
//!
//! A fresh `CallState` is built for every call and dropped with its store,
//! so nothing a plugin does survives into the next call or another user's.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::capabilities::Bound;
use super::capabilities::config::ConfigHost;
use super::capabilities::http::HttpGate;
use super::capabilities::kv::KvHost;
use super::capabilities::log::LogHost;
use super::capabilities::stdio::GuestOutput;
use super::capabilities::tasks::TasksHost;
use super::manifest::Limits;

pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limiter: Limiter,
    pub(super) log: LogHost,
    pub(super) tasks: TasksHost,
    pub(super) kv: KvHost,
    pub(super) config: ConfigHost,
    http_ctx: WasiHttpCtx,
    pub(super) http: HttpGate,
}

impl CallState {
    pub fn new(plugin: &Arc<str>, limits: &Limits, bound: Bound) -> Self {
        // No preopened directories, no environment, no arguments, no
        // network: the builder's defaults, made explicit where it matters.
        let wasi = WasiCtx::builder()
            .stdout(GuestOutput::new(plugin.clone(), "stdout"))
            .stderr(GuestOutput::new(plugin.clone(), "stderr"))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            // Random bytes are made synchronously on the host; a larger
            // request traps instead of stalling a worker thread.
            .max_random_size(64 * 1024)
            .build();
        CallState {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter::new(limits),
            log: LogHost::new(plugin.clone()),
            tasks: bound.tasks,
            kv: bound.kv,
            config: bound.config,
            http_ctx: WasiHttpCtx::new(),
            http: bound.http,
        }
    }

    /// Binds the call to `bound` (an instance made ahead for nobody gets
    /// its caller when a call takes it).
    pub(super) fn bind(&mut self, bound: Bound) {
        self.tasks = bound.tasks;
        self.kv = bound.kv;
        self.config = bound.config;
        self.http = bound.http;
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http_ctx,
            table: &mut self.table,
            hooks: &mut self.http,
        }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// [`StoreLimits`] that remembers when it refused to grow memory, so that the
/// trap that usually follows (a Rust guest aborts when allocation fails) is
/// reported as the memory limit it really is.
pub struct Limiter {
    inner: StoreLimits,
    pub memory_exceeded: bool,
}

impl Limiter {
    fn new(limits: &Limits) -> Self {
        Limiter {
            inner: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes())
                .table_elements(100_000)
                .instances(64)
                .tables(64)
                .memories(8)
                .build(),
            memory_exceeded: false,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum)?;
        self.memory_exceeded |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}
