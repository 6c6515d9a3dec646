//! The plugin runtime: wasmtime, the WIT bindings, limits, the host
//! capabilities and the registry of loaded plugins.
//!
//! This layer knows nothing about HTTP, JSON error bodies, sqlx or JWTs: it
//! loads components, checks them against `wit/plugin.wit` and their
//! manifests, and runs calls under their limits.

mod bindings;
pub mod budget;
mod cache;
mod call;
mod capabilities;
pub mod compile;
pub mod engine;
mod error;
mod guest_call;
mod instances;
mod load;
pub mod manifest;
pub mod policy;
pub mod provider;
mod registry;
mod reload;
mod runtime;
pub mod signature;
mod state;
pub mod stats;

pub use bindings::ToolError;
pub use capabilities::tasks::TaskLimits;
pub use compile::CompileMode;
pub use engine::{Allocator, AllocatorChoice};
pub use error::{CallError, LoadError};
pub use load::{
    ASK_USER, Inspection, MAX_COMPONENT_BYTES, PIN_EXTENSION, Pin, PluginFiles,
    SIGNATURE_EXTENSION, sha256_hex,
};
pub use manifest::{Capability, Manifest, PluginKind, ProviderEndpoint};
pub use policy::{Denied, Grant, Policy, PolicySource};
pub use registry::{PluginSource, Registry, RemotePlugins, Snapshot, ToolOwners};
pub use reload::{ReloadReport, Reloader};
pub use runtime::{Plugin, Runtime, RuntimeOptions, ToolSpec};
pub use stats::PluginStats;
