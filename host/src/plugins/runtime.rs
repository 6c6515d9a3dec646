//! The plugin runtime: the engine, the compiled-component cache, and the
//! linkers that decide what a plugin may import.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

use super::bindings;
use super::budget::HostBudget;
use super::cache::ComponentCache;
use super::capabilities::http::Outbound;
use super::capabilities::tasks::{TaskLimits, WriteWindows};
use super::compile::{CompileMode, Compiler};
use super::engine::{self, Allocator, AllocatorChoice};
use super::instances::Instances;
use super::manifest::{Capability, Manifest, PluginKind};
use super::policy::Grant;
use super::state::CallState;
use super::stats::PluginStats;
use crate::kv::KvRepository;
use crate::tasks::TaskRepository;

/// Everything needed to load and call plugins. Cheap to share behind an
/// `Arc`; holds no per-plugin state.
pub struct Runtime {
    pub(super) engine: Engine,
    allocator: Allocator,
    pub(super) cache: ComponentCache,
    pub(super) compiler: Compiler,
    pub(super) budget: Arc<HostBudget>,
    /// Where the `tasks` capability reads and writes; `None` in tools-only
    /// setups (benchmarks, `plugins check`), where it answers `unavailable`.
    pub(super) tasks: Option<Arc<dyn TaskRepository>>,
    pub(super) task_limits: Arc<TaskLimits>,
    pub(super) write_windows: Arc<WriteWindows>,
    /// Where the `kv` capability stores; `None` answers `unavailable`.
    pub(super) kv: Option<Arc<dyn KvRepository>>,
    /// The client every `http` request goes out through.
    pub(super) outbound: Arc<Outbound>,
}

pub struct RuntimeOptions {
    pub allocator: AllocatorChoice,
    /// Where compiled components are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    pub tasks: Option<Arc<dyn TaskRepository>>,
    /// What calls may ask of the `tasks` capability.
    pub task_limits: TaskLimits,
    pub kv: Option<Arc<dyn KvRepository>>,
    /// How components are compiled (the server: in a child, under a budget).
    pub compile: CompileMode,
    /// Guest memory all running instances may use together, in MiB.
    pub memory_mib: u32,
}

/// A loaded, validated plugin, ready to be called. Immutable: a new version
/// of the plugin is a new `Plugin`.
pub struct Plugin {
    pub manifest: Manifest,
    /// Hex sha256 of the component file.
    pub sha256: String,
    /// The tools it offers (empty for providers).
    pub tools: Vec<ToolSpec>,
    pub loaded_at: SystemTime,
    /// The manifest it was loaded from, when it came from the plugin directory.
    pub origin: Option<PathBuf>,
    /// Fingerprint of its files (see `PluginFiles::fingerprint`).
    pub(super) source: String,
    /// Its signature's text, when it came with one.
    pub(super) signature: Option<String>,
    /// Where it was pulled from, for a plugin from an OCI registry.
    pub pin: Option<super::load::Pin>,
    /// What the operator's policy grants it (nothing until it joins a
    /// snapshot through the registry).
    pub grant: Arc<Grant>,
    /// Call figures of this version, for the admin API and `/metrics`.
    pub stats: PluginStats,
    pub(super) name: Arc<str>,
    pub(super) instances: PluginInstances,
}

/// A tool as offered to the model and MCP clients.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// The JSON Schema of the arguments, parsed and checked at load.
    pub input_schema: serde_json::Value,
    /// Its size as the plugin wrote it (bounded at load; turns budget it).
    pub input_schema_bytes: usize,
    /// The OAuth scope a token needs to see and call it, as granted (the
    /// manifest's, or the policy's instead); `None` serves only tokens
    /// without scope restrictions.
    pub scope: Option<String>,
}

/// The pre-instantiated component (imports resolved and type-checked once,
/// so a call only has to allocate and initialise an instance) and its
/// instances.
pub(super) enum PluginInstances {
    Tool(Instances<bindings::tool::TaskToolPre<CallState>>),
    Provider(Instances<bindings::provider::ProviderPluginPre<CallState>>),
}

impl Plugin {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> PluginKind {
        self.manifest.kind
    }

    /// The span of one call into this plugin: which plugin, which version,
    /// and what was called (`entry` `tool` and the tool's name, or a
    /// provider's `prepare`, `parse_response` or `stream`).
    pub(super) fn span(&self, entry: &str, name: &str) -> tracing::Span {
        tracing::info_span!(
            "plugin_call",
            plugin = %self.name,
            version = %self.manifest.version,
            entry,
            name
        )
    }
}

impl Runtime {
    pub fn new(options: RuntimeOptions) -> anyhow::Result<Runtime> {
        let (engine, allocator) = engine::build(options.allocator)?;
        tracing::info!(?allocator, "wasm engine ready");
        let cache = ComponentCache::new(&engine, options.cache_dir);
        Ok(Runtime {
            engine,
            allocator,
            cache,
            compiler: Compiler::new(options.compile),
            budget: Arc::new(HostBudget::new(options.memory_mib, engine::POOL_INSTANCES)),
            tasks: options.tasks,
            task_limits: Arc::new(options.task_limits),
            write_windows: Default::default(),
            kv: options.kv,
            outbound: Arc::new(Outbound::new()),
        })
    }

    /// Outbound `http` requests so far by plugin, host and outcome.
    pub fn outbound_counts(&self) -> Vec<((String, String, &'static str), u64)> {
        self.outbound.counts()
    }

    pub fn allocator(&self) -> Allocator {
        self.allocator
    }

    /// A linker providing WASI (with nothing granted) and exactly the
    /// capabilities `manifest` grants. Anything else a component imports
    /// fails to link.
    pub(super) fn linker(&self, manifest: &Manifest) -> wasmtime::Result<Linker<CallState>> {
        use bindings::tool::wasmgate::plugin::{config, kv, log, tasks, types};

        let mut linker = Linker::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        types::add_to_linker::<_, HasSelf<_>>(&mut linker, |state: &mut CallState| &mut state.log)?;
        log::add_to_linker::<_, HasSelf<_>>(&mut linker, |state: &mut CallState| &mut state.log)?;
        if manifest.grants(Capability::Tasks) {
            tasks::add_to_linker::<_, HasSelf<_>>(&mut linker, |state: &mut CallState| {
                &mut state.tasks
            })?;
        }
        if manifest.grants(Capability::Kv) {
            kv::add_to_linker::<_, HasSelf<_>>(&mut linker, |state: &mut CallState| &mut state.kv)?;
        }
        if manifest.grants(Capability::Http) {
            wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        }
        if manifest.grants(Capability::Config) {
            config::add_to_linker::<_, HasSelf<_>>(&mut linker, |state: &mut CallState| {
                &mut state.config
            })?;
        }
        Ok(linker)
    }
}
