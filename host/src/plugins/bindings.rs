//! Host-side bindings generated from `wit/plugin.wit`. All `bindgen!` calls
//! live here and nothing else does.

/// The `task-tool` world: tools import `log`, `tasks`, `kv` and `config`,
/// export `tool`.
pub mod tool {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "task-tool",
        imports: { default: async },
        exports: { default: async },
    });
}

/// The `provider-plugin` world, sharing `types` and `log` with [`tool`].
pub mod provider {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "provider-plugin",
        imports: { default: async },
        exports: { default: async },
        with: {
            "wasmgate:plugin/types": super::tool::wasmgate::plugin::types,
            "wasmgate:plugin/log": super::tool::wasmgate::plugin::log,
        },
    });
}

pub use tool::exports::wasmgate::plugin::tool::ToolError;
pub use tool::wasmgate::plugin::log::Level as LogLevel;

/// Fully qualified names of the interfaces in the contract, as they appear in
/// a component's imports and exports.
pub const TOOL_EXPORT: &str = "wasmgate:plugin/tool@0.1.0";
pub const PROVIDER_EXPORT: &str = "wasmgate:plugin/provider@0.1.0";
pub const LOG_IMPORT: &str = "wasmgate:plugin/log@0.1.0";
pub const TASKS_IMPORT: &str = "wasmgate:plugin/tasks@0.1.0";
pub const KV_IMPORT: &str = "wasmgate:plugin/kv@0.1.0";
pub const CONFIG_IMPORT: &str = "wasmgate:plugin/config@0.1.0";
pub const TYPES_IMPORT: &str = "wasmgate:plugin/types@0.1.0";
