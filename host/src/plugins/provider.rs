//! Calling provider plugins: the sans-IO half of a model round.
//!
//! A provider component turns a completion request into an HTTP request
//! description (or answers directly), and turns response bytes back into a
//! completion, whole or chunk by chunk. This module runs those functions
//! under the plugin's limits and converts between the WIT types and the
//! host's; it does no I/O. The agent sends the requests.

use std::sync::Arc;

use tracing::Instrument;

use wasmtime::component::ResourceAny;

use super::bindings::provider::ProviderPlugin;
use super::bindings::provider::exports::wasmgate::plugin::provider as wit;
use super::bindings::tool::exports::wasmgate::plugin::tool::ToolSpec as WitToolSpec;
use super::call::check_output;
use super::capabilities::Bound;
use super::error::CallError;
use super::guest_call::GuestCall;
use super::runtime::{Plugin, PluginInstances, Runtime, ToolSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// A JSON object as text (as the model produced it).
    pub arguments: String,
}

#[derive(Debug, Clone)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub tool_call_id: Option<String>,
}

pub struct CompletionRequest<'a> {
    pub model: &'a str,
    pub messages: &'a [ChatMessage],
    pub tools: &'a [&'a ToolSpec],
    pub stream: bool,
}

pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

pub enum Plan {
    Send(HttpRequest),
    Reply(Completion),
}

#[derive(Debug, Clone, Default)]
pub struct Completion {
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Option<(u32, u32)>,
    pub finish_reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    TextDelta(String),
    ToolCallDelta {
        index: u32,
        id: Option<String>,
        name: Option<String>,
        arguments_fragment: String,
    },
}

/// Tool calls one provider round may ask for.
pub const MAX_TOOL_CALLS_PER_ROUND: usize = 16;
/// Longest tool-call id a provider may return, in bytes.
pub const MAX_TOOL_CALL_ID_BYTES: usize = 256;
/// Longest tool name (names are checked at load: at most 64 bytes).
const MAX_TOOL_NAME_BYTES: usize = 64;
/// Longest provider error message kept.
const MAX_PROVIDER_ERROR_BYTES: usize = 2 * 1024;

/// A streamed response being decoded: one instance of the provider for the
/// whole stream, each chunk under the plugin's per-call time limit, and all
/// of the stream's events together under its output limit.
pub struct StreamDecoder {
    call: GuestCall,
    instance: ProviderPlugin,
    decoder: ResourceAny,
    plugin: Arc<Plugin>,
    /// Bytes of text, ids, names and arguments emitted so far.
    emitted: usize,
}

impl Runtime {
    pub async fn prepare(
        &self,
        plugin: &Arc<Plugin>,
        request: &CompletionRequest<'_>,
    ) -> Result<Plan, CallError> {
        let request = to_wit_request(request);
        let (mut call, instance) = self.provider_instance(plugin).await?;
        let plan = call
            .run(async |store| {
                instance
                    .wasmgate_plugin_provider()
                    .call_prepare(&mut *store, &request)
                    .await
            })
            .instrument(plugin.span("provider", "prepare"))
            .await?
            .map_err(provider_error)?;
        Ok(match plan {
            wit::Plan::Send(http) => Plan::Send(HttpRequest {
                method: http.method,
                path: http.path,
                headers: http.headers,
                body: http.body,
            }),
            wit::Plan::Reply(completion) => Plan::Reply(from_wit_completion(plugin, completion)?),
        })
    }

    pub async fn parse_response(
        &self,
        plugin: &Arc<Plugin>,
        status: u16,
        body: &[u8],
    ) -> Result<Completion, CallError> {
        let (mut call, instance) = self.provider_instance(plugin).await?;
        let completion = call
            .run(async |store| {
                instance
                    .wasmgate_plugin_provider()
                    .call_parse_response(&mut *store, status, body)
                    .await
            })
            .instrument(plugin.span("provider", "parse_response"))
            .await?
            .map_err(provider_error)?;
        from_wit_completion(plugin, completion)
    }

    pub async fn stream_decoder(
        &self,
        plugin: &Arc<Plugin>,
        status: u16,
    ) -> Result<StreamDecoder, CallError> {
        let (mut call, instance) = self.provider_instance(plugin).await?;
        let decoder = call
            .run(async |store| {
                instance
                    .wasmgate_plugin_provider()
                    .stream_decoder()
                    .call_constructor(&mut *store, status)
                    .await
            })
            .instrument(plugin.span("provider", "stream"))
            .await?;
        Ok(StreamDecoder {
            call,
            instance,
            decoder,
            plugin: plugin.clone(),
            emitted: 0,
        })
    }

    async fn provider_instance(
        &self,
        plugin: &Plugin,
    ) -> Result<(GuestCall, ProviderPlugin), CallError> {
        let PluginInstances::Provider(instances) = &plugin.instances else {
            return Err(CallError::Provider(format!(
                "{} is not a provider",
                plugin.name()
            )));
        };
        instances.take(Bound::nobody()).await
    }
}

impl StreamDecoder {
    pub async fn feed(&mut self, chunk: &[u8]) -> Result<Vec<StreamEvent>, CallError> {
        let (instance, decoder) = (&self.instance, self.decoder);
        let span = self.plugin.span("provider", "stream");
        let events = self
            .call
            .run(async |store| {
                instance
                    .wasmgate_plugin_provider()
                    .stream_decoder()
                    .call_feed(&mut *store, decoder, chunk)
                    .await
            })
            .instrument(span)
            .await?
            .map_err(provider_error)?;
        for event in &events {
            self.emitted += match event {
                wit::StreamEvent::TextDelta(text) => text.len(),
                wit::StreamEvent::ToolCallDelta(delta) => {
                    let id = delta.id.as_deref().map_or(0, str::len);
                    let name = delta.name.as_deref().map_or(0, str::len);
                    if delta.index as usize >= MAX_TOOL_CALLS_PER_ROUND
                        || id > MAX_TOOL_CALL_ID_BYTES
                        || name > MAX_TOOL_NAME_BYTES
                    {
                        return Err(CallError::Provider(format!(
                            "{} streamed a tool call beyond the limits ({MAX_TOOL_CALLS_PER_ROUND} \
                             calls, ids of {MAX_TOOL_CALL_ID_BYTES} bytes, names of \
                             {MAX_TOOL_NAME_BYTES})",
                            self.plugin.name()
                        )));
                    }
                    id + name + delta.arguments_fragment.len()
                }
            };
        }
        check_output(&self.plugin, self.emitted)?;
        Ok(events
            .into_iter()
            .map(|event| match event {
                wit::StreamEvent::TextDelta(text) => StreamEvent::TextDelta(text),
                wit::StreamEvent::ToolCallDelta(delta) => StreamEvent::ToolCallDelta {
                    index: delta.index,
                    id: delta.id,
                    name: delta.name,
                    arguments_fragment: delta.arguments_fragment,
                },
            })
            .collect())
    }

    pub async fn finish(mut self) -> Result<Completion, CallError> {
        let (instance, decoder) = (&self.instance, self.decoder);
        let span = self.plugin.span("provider", "stream");
        let completion = self
            .call
            .run(async |store| {
                instance
                    .wasmgate_plugin_provider()
                    .stream_decoder()
                    .call_finish(&mut *store, decoder)
                    .await
            })
            .instrument(span)
            .await?
            .map_err(provider_error)?;
        from_wit_completion(&self.plugin, completion)
    }
}

fn to_wit_request(request: &CompletionRequest<'_>) -> wit::CompletionRequest {
    wit::CompletionRequest {
        model: request.model.to_string(),
        messages: request
            .messages
            .iter()
            .map(|message| wit::Message {
                role: match message.role {
                    Role::System => wit::Role::System,
                    Role::User => wit::Role::User,
                    Role::Assistant => wit::Role::Assistant,
                    Role::Tool => wit::Role::Tool,
                },
                content: message.content.clone(),
                tool_calls: message.tool_calls.iter().map(to_wit_call).collect(),
                tool_call_id: message.tool_call_id.clone(),
            })
            .collect(),
        tools: request
            .tools
            .iter()
            .map(|tool| WitToolSpec {
                name: tool.name.clone(),
                description: tool.description.clone(),
                input_schema: tool.input_schema.to_string(),
            })
            .collect(),
        stream: request.stream,
    }
}

fn to_wit_call(call: &ToolCall) -> wit::ToolCall {
    wit::ToolCall {
        id: call.id.clone(),
        name: call.name.clone(),
        arguments: call.arguments.clone(),
    }
}

fn from_wit_completion(
    plugin: &Plugin,
    completion: wit::Completion,
) -> Result<Completion, CallError> {
    let calls = &completion.tool_calls;
    if calls.len() > MAX_TOOL_CALLS_PER_ROUND {
        return Err(CallError::Provider(format!(
            "{} asked for {} tool calls in one round; the limit is {MAX_TOOL_CALLS_PER_ROUND}",
            plugin.name(),
            calls.len()
        )));
    }
    if calls
        .iter()
        .any(|c| c.id.len() > MAX_TOOL_CALL_ID_BYTES || c.name.len() > MAX_TOOL_NAME_BYTES)
    {
        return Err(CallError::Provider(format!(
            "{} returned a tool call with an id over {MAX_TOOL_CALL_ID_BYTES} bytes or a name \
             over {MAX_TOOL_NAME_BYTES}",
            plugin.name()
        )));
    }
    let size = completion.text.len()
        + completion.finish_reason.len()
        + calls
            .iter()
            .map(|call| call.id.len() + call.arguments.len() + call.name.len())
            .sum::<usize>();
    check_output(plugin, size)?;
    Ok(Completion {
        text: completion.text,
        tool_calls: completion
            .tool_calls
            .into_iter()
            .map(|call| ToolCall {
                id: call.id,
                name: call.name,
                arguments: call.arguments,
            })
            .collect(),
        usage: completion
            .usage
            .map(|u| (u.prompt_tokens, u.completion_tokens)),
        finish_reason: completion.finish_reason,
    })
}

fn provider_error(error: wit::ProviderError) -> CallError {
    let mut message = match error {
        wit::ProviderError::Unsupported(message) => format!("unsupported request: {message}"),
        wit::ProviderError::BadResponse(message) => {
            format!("unreadable provider response: {message}")
        }
        wit::ProviderError::Upstream((status, message)) => {
            format!("the provider answered {status}: {message}")
        }
    };
    if message.len() > MAX_PROVIDER_ERROR_BYTES {
        let mut end = MAX_PROVIDER_ERROR_BYTES;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    CallError::Provider(message)
}
