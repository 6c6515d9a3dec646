//! The plugin layer's errors: why a component could not be loaded, and why
//! a call did not produce a result. Both carry messages written for the
//! operator or plugin author who will read them.

use std::time::Duration;

use super::bindings::ToolError;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid manifest {path}: {message}")]
    Manifest { path: String, message: String },
    #[error("not a WebAssembly file (no \\0asm header)")]
    NotWasm,
    #[error(
        "this is a core WebAssembly module, not a component; build the plugin for \
         wasm32-wasip2 (or wrap the module with `wasm-tools component new`)"
    )]
    CoreModule,
    #[error("the component does not compile: {0}")]
    Compile(String),
    #[error("the component did not compile within its {} s budget", .0.as_secs_f64())]
    CompileBudget(Duration),
    #[error(
        "the component exports neither {tool} nor {provider} (it exports: {exports}); \
         a plugin must target the task-tool or provider-plugin world of wit/plugin.wit",
        tool = super::bindings::TOOL_EXPORT,
        provider = super::bindings::PROVIDER_EXPORT
    )]
    WrongWorld { exports: String },
    #[error("the manifest says kind = \"{manifest}\" but the component is a {component} plugin")]
    KindMismatch {
        manifest: &'static str,
        component: &'static str,
    },
    #[error("the component imports {0}, which wasmgate does not provide")]
    UnknownImport(String),
    #[error(
        "the component imports {import} but its manifest does not grant the `{capability}` \
         capability"
    )]
    NotGranted {
        import: String,
        capability: &'static str,
    },
    #[error("{0}")]
    NotGrantedByPolicy(String),
    /// The policy requires a signature this component does not carry.
    #[error("{0}")]
    Signature(String),
    #[error("plugin {plugin} does not fit the host's budget: {message}")]
    Budget { plugin: String, message: String },
    #[error("the component cannot be linked: {0}")]
    Link(String),
    #[error("list-tools failed: {0}")]
    ListTools(String),
    #[error("invalid tool spec {tool:?}: {message}")]
    InvalidToolSpec { tool: String, message: String },
    #[error("tool {tool:?} of plugin {second:?} is already offered by plugin {first:?}")]
    ToolClash {
        tool: String,
        first: String,
        second: String,
    },
    #[error("plugin name {name:?} is already taken by {other}")]
    NameClash { name: String, other: String },
}

/// Why a tool call produced no result.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The tool ran and reported a failure; the model should see it.
    #[error("{}", tool_error_message(.0))]
    Tool(ToolError),
    #[error("no tool named {0:?} is loaded")]
    UnknownTool(String),
    #[error("plugin {plugin} did not finish within its {} ms deadline", .limit.as_millis())]
    Deadline { plugin: String, limit: Duration },
    #[error("plugin {plugin} exceeded its memory limit of {mib} MiB")]
    MemoryLimit { plugin: String, mib: u32 },
    #[error("plugin {plugin} returned {size} bytes, over its output limit of {limit} bytes")]
    OutputLimit {
        plugin: String,
        size: usize,
        limit: u64,
    },
    #[error("plugin {plugin} returned invalid JSON: {message}")]
    InvalidOutput { plugin: String, message: String },
    #[error("plugin {plugin} crashed: {message}")]
    Trap { plugin: String, message: String },
    #[error("plugin {plugin} is at its concurrency limit; try again shortly")]
    Busy { plugin: String },
    /// A budget the host sets (tool calls per turn, rows written, host
    /// calls) is spent.
    #[error("{0}")]
    Budget(String),
    /// A provider adapter refused a request or could not read a response.
    #[error("{0}")]
    Provider(String),
}

impl CallError {
    /// A short, stable name for metrics and API error codes.
    pub fn code(&self) -> &'static str {
        match self {
            CallError::Tool(_) => "tool_error",
            CallError::UnknownTool(_) => "unknown_tool",
            CallError::Deadline { .. } => "deadline_exceeded",
            CallError::MemoryLimit { .. } => "memory_limit",
            CallError::OutputLimit { .. } => "output_limit",
            CallError::InvalidOutput { .. } => "invalid_output",
            CallError::Trap { .. } => "trap",
            CallError::Busy { .. } => "busy",
            CallError::Budget(_) => "budget_exceeded",
            CallError::Provider(_) => "provider_error",
        }
    }
}

fn tool_error_message(error: &ToolError) -> String {
    match error {
        ToolError::InvalidArguments(message) => format!("invalid arguments: {message}"),
        ToolError::NotFound(message) | ToolError::Failed(message) => message.clone(),
        ToolError::UnknownTool(name) => format!("this plugin has no tool named {name:?}"),
    }
}
