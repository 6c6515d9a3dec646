//! Calling a plugin's tool: the arguments checked, a guest call taken from
//! the plugin's instances (see `guest_call.rs`), the output held to the
//! manifest's limits.

use std::time::Instant;

use tracing::Instrument;

use super::bindings::ToolError;
use super::bindings::tool::TaskToolPre;
use super::capabilities::Bound;
use super::capabilities::config::ConfigHost;
use super::capabilities::http::HttpGate;
use super::capabilities::kv::KvHost;
use super::capabilities::tasks::TasksHost;
use super::error::CallError;
use super::instances::Instances;
use super::manifest::Capability;
use super::runtime::{Plugin, PluginInstances, Runtime};
use super::state::CallState;

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
        self.call_tool_reporting(plugin, user, tool, arguments)
            .await
            .0
    }

    /// [`Runtime::call_tool`], and the `host:port` of every outbound
    /// request the call made (for the audit log).
    pub async fn call_tool_reporting(
        &self,
        plugin: &Plugin,
        user: &str,
        tool: &str,
        arguments: &str,
    ) -> (Result<serde_json::Value, CallError>, Vec<String>) {
        let PluginInstances::Tool(instances) = &plugin.instances else {
            return (Err(CallError::UnknownTool(tool.to_string())), Vec::new());
        };
        // The contract promises tools a JSON object; hold callers to it here
        // so no plugin has to defend against anything else. (Valid JSON that
        // starts with `{` is an object; checking so builds no value.)
        let is_object = arguments.trim_start().starts_with('{')
            && serde_json::from_str::<serde::de::IgnoredAny>(arguments).is_ok();
        if !is_object {
            let invalid = ToolError::InvalidArguments("arguments must be a JSON object".into());
            return (Err(CallError::Tool(invalid)), Vec::new());
        }
        let started = Instant::now();
        let bound = Bound {
            tasks: TasksHost::for_user(
                user.to_string(),
                self.tasks.clone(),
                self.task_limits.clone(),
                self.write_windows.clone(),
            ),
            kv: KvHost::for_user(
                plugin.name.clone(),
                user.to_string(),
                plugin.grant.kv_quota,
                self.kv.clone(),
            ),
            config: ConfigHost::new(plugin.grant.config.clone()),
            http: if plugin.manifest.grants(Capability::Http) {
                HttpGate::new(
                    self.outbound.clone(),
                    plugin.name.clone(),
                    plugin.grant.clone(),
                )
            } else {
                HttpGate::closed()
            },
        };
        let contacted = bound.http.report();
        let span = plugin.span("tool", tool);
        let result = run_tool(plugin, instances, bound, tool, arguments)
            .instrument(span)
            .await;
        let timeout = matches!(result, Err(CallError::Deadline { .. }));
        // A tool-reported error is the tool working; count only failures of
        // the plugin itself.
        let failed = matches!(result, Err(ref err) if !matches!(err, CallError::Tool(_)));
        plugin.stats.record(started.elapsed(), failed, timeout);
        let hosts = contacted
            .lock()
            .map(|c| c.hosts.clone())
            .unwrap_or_default();
        (result, hosts)
    }
}

async fn run_tool(
    plugin: &Plugin,
    instances: &Instances<TaskToolPre<CallState>>,
    bound: Bound,
    tool: &str,
    arguments: &str,
) -> Result<serde_json::Value, CallError> {
    let (mut call, instance) = instances.take(bound).await?;
    let (tool, arguments) = (tool.to_string(), arguments.to_string());
    let output = call
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
