//! The Anthropic Messages API adapter, sans-IO: it writes the request the
//! host sends to the configured base URL (the host adds the key as
//! `x-api-key`), and reads the response, whole or as a server-sent-event
//! stream (`content_block_delta` with `text_delta` or `input_json_delta`).
//!
//! The system prompt goes in the top-level `system` field; tool calls are
//! `tool_use` blocks of the assistant's message, their results
//! `tool_result` blocks of the next user message.

use std::cell::RefCell;

use serde_json::{Map, Value, json};

wit_bindgen::generate!({ world: "provider-plugin", path: "../../wit" });

use exports::wasmgate::plugin::provider::{
    Completion, CompletionRequest, Guest, GuestStreamDecoder, HttpRequest, Message, Plan,
    ProviderError, Role, StreamEvent, ToolCall, ToolCallDelta, Usage,
};

/// The API version this adapter speaks.
const API_VERSION: &str = "2023-06-01";
/// Anthropic requires a cap on the answer's tokens.
const MAX_TOKENS: u32 = 4096;

struct Anthropic;

impl Guest for Anthropic {
    type StreamDecoder = Decoder;

    fn prepare(request: CompletionRequest) -> Result<Plan, ProviderError> {
        if request.model.is_empty() {
            return Err(ProviderError::Unsupported(
                "name a model, e.g. WASMGATE_MODEL=anthropic:claude-sonnet-4-5".into(),
            ));
        }
        let mut body = Map::new();
        body.insert("model".into(), json!(request.model));
        body.insert("max_tokens".into(), json!(MAX_TOKENS));
        let system: Vec<&str> = request
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
            .collect();
        if !system.is_empty() {
            body.insert("system".into(), json!(system.join("\n\n")));
        }
        body.insert(
            "messages".into(),
            Value::Array(conversation(&request.messages)?),
        );
        if !request.tools.is_empty() {
            let tools: Result<Vec<Value>, ProviderError> = request
                .tools
                .iter()
                .map(|tool| {
                    let schema: Value =
                        serde_json::from_str(&tool.input_schema).map_err(|err| {
                            ProviderError::Unsupported(format!("schema of {}: {err}", tool.name))
                        })?;
                    Ok(json!({"name": tool.name, "description": tool.description,
                              "input_schema": schema}))
                })
                .collect();
            body.insert("tools".into(), Value::Array(tools?));
        }
        body.insert("stream".into(), json!(request.stream));
        Ok(Plan::Send(HttpRequest {
            method: "POST".into(),
            path: "/messages".into(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("anthropic-version".into(), API_VERSION.into()),
            ],
            body: serde_json::to_vec(&Value::Object(body)).expect("a JSON value serialises"),
        }))
    }

    fn parse_response(status: u16, body: Vec<u8>) -> Result<Completion, ProviderError> {
        if !(200..300).contains(&status) {
            return Err(upstream(status, &body));
        }
        let response: Value = serde_json::from_slice(&body)
            .map_err(|err| ProviderError::BadResponse(format!("not JSON: {err}")))?;
        let blocks = response["content"]
            .as_array()
            .ok_or_else(|| ProviderError::BadResponse("no content in the response".into()))?;
        let mut text = String::new();
        let mut tool_calls = Vec::new();
        for block in blocks {
            match block["type"].as_str() {
                Some("text") => text.push_str(block["text"].as_str().unwrap_or_default()),
                Some("tool_use") => tool_calls.push(ToolCall {
                    id: string(&block["id"]),
                    name: string(&block["name"]),
                    arguments: block["input"].to_string(),
                }),
                _ => {} // thinking and other blocks are not for the person
            }
        }
        Ok(Completion {
            text,
            tool_calls,
            usage: usage(&response["usage"]),
            finish_reason: string(&response["stop_reason"]),
        })
    }
}

/// The messages as Anthropic takes them: user and assistant turns that
/// alternate, tool results as blocks of a user turn, the system prompt left
/// out (it is the top-level `system`).
fn conversation(messages: &[Message]) -> Result<Vec<Value>, ProviderError> {
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for message in messages {
        let (role, blocks) = match message.role {
            Role::System => continue,
            Role::User => ("user", text_block(&message.content)),
            Role::Tool => (
                "user",
                vec![json!({"type": "tool_result",
                            "tool_use_id": message.tool_call_id.clone().unwrap_or_default(),
                            "content": message.content})],
            ),
            Role::Assistant => {
                let mut blocks = text_block(&message.content);
                for call in &message.tool_calls {
                    let input: Value = serde_json::from_str(&call.arguments).map_err(|err| {
                        ProviderError::Unsupported(format!(
                            "the arguments of tool call {} are not JSON: {err}",
                            call.id
                        ))
                    })?;
                    blocks.push(json!({"type": "tool_use", "id": call.id,
                                       "name": call.name, "input": input}));
                }
                ("assistant", blocks)
            }
        };
        if blocks.is_empty() {
            continue;
        }
        // Two turns of one role in a row are one turn.
        match turns.last_mut() {
            Some((last, content)) if *last == role => content.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    Ok(turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect())
}

fn text_block(text: &str) -> Vec<Value> {
    if text.is_empty() {
        Vec::new()
    } else {
        vec![json!({"type": "text", "text": text})]
    }
}

fn string(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

fn usage(value: &Value) -> Option<Usage> {
    Some(Usage {
        prompt_tokens: value["input_tokens"].as_u64()? as u32,
        completion_tokens: value["output_tokens"].as_u64()? as u32,
    })
}

/// An error answer: Anthropic's `{"type":"error","error":{"message":…}}` or
/// the start of whatever else came back.
fn upstream(status: u16, body: &[u8]) -> ProviderError {
    ProviderError::Upstream((status, wasmgate_provider_kit::error_message(body)))
}

/// Decodes the event stream into deltas, and assembles them.
struct Decoder {
    state: RefCell<Assembly>,
}

#[derive(Default)]
struct Assembly {
    status: u16,
    /// The stream's `data:` payloads, across chunks.
    data: wasmgate_provider_kit::EventData,
    /// The whole body of an error answer.
    error_body: Vec<u8>,
    text: String,
    calls: Vec<Call>,
    /// Content block index → index in `calls`, for `tool_use` blocks.
    blocks: Vec<(u64, usize)>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    stop_reason: String,
    /// Whether `message_stop` came.
    stopped: bool,
}

struct Call {
    id: String,
    name: String,
    /// The `input` of `content_block_start`, used when no deltas follow.
    input: Value,
    arguments: String,
}

impl GuestStreamDecoder for Decoder {
    fn new(status: u16) -> Self {
        Decoder {
            state: RefCell::new(Assembly {
                status,
                ..Default::default()
            }),
        }
    }

    fn feed(&self, chunk: Vec<u8>) -> Result<Vec<StreamEvent>, ProviderError> {
        let mut state = self.state.borrow_mut();
        if !(200..300).contains(&state.status) {
            state.error_body.extend_from_slice(&chunk);
            return Ok(Vec::new());
        }
        let mut events = Vec::new();
        // `event:` lines repeat the data's `type`.
        for data in state.data.feed(&chunk) {
            let event: Value = serde_json::from_str(&data).map_err(|err| {
                ProviderError::BadResponse(format!("stream event is not JSON: {err}"))
            })?;
            state.apply(&event, &mut events)?;
        }
        Ok(events)
    }

    fn finish(&self) -> Result<Completion, ProviderError> {
        let state = self.state.borrow();
        if !(200..300).contains(&state.status) {
            return Err(upstream(state.status, &state.error_body));
        }
        // Without `message_stop` the stream was cut short, and what came
        // so far must not pass for the whole reply.
        if !state.stopped {
            return Err(ProviderError::BadResponse(
                "the provider's stream ended before the answer was complete".into(),
            ));
        }
        let usage = match (state.input_tokens, state.output_tokens) {
            (None, None) => None,
            (input, output) => Some(Usage {
                prompt_tokens: input.unwrap_or(0) as u32,
                completion_tokens: output.unwrap_or(0) as u32,
            }),
        };
        Ok(Completion {
            text: state.text.clone(),
            tool_calls: state
                .calls
                .iter()
                .map(|call| ToolCall {
                    id: call.id.clone(),
                    name: call.name.clone(),
                    arguments: if call.arguments.is_empty() {
                        call.input.to_string()
                    } else {
                        call.arguments.clone()
                    },
                })
                .collect(),
            usage,
            finish_reason: state.stop_reason.clone(),
        })
    }
}

impl Assembly {
    fn apply(&mut self, event: &Value, events: &mut Vec<StreamEvent>) -> Result<(), ProviderError> {
        match event["type"].as_str().unwrap_or_default() {
            "message_start" => {
                let usage = &event["message"]["usage"];
                self.input_tokens = usage["input_tokens"].as_u64().or(self.input_tokens);
                self.output_tokens = usage["output_tokens"].as_u64().or(self.output_tokens);
            }
            "content_block_start" => {
                let block = &event["content_block"];
                if block["type"] == "tool_use" {
                    let index = self.calls.len();
                    self.blocks
                        .push((event["index"].as_u64().unwrap_or(0), index));
                    let (id, name) = (string(&block["id"]), string(&block["name"]));
                    self.calls.push(Call {
                        id: id.clone(),
                        name: name.clone(),
                        input: block["input"].clone(),
                        arguments: String::new(),
                    });
                    events.push(StreamEvent::ToolCallDelta(ToolCallDelta {
                        index: index as u32,
                        id: Some(id),
                        name: Some(name),
                        arguments_fragment: String::new(),
                    }));
                }
            }
            "content_block_delta" => {
                let delta = &event["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => {
                        let text = string(&delta["text"]);
                        if !text.is_empty() {
                            self.text.push_str(&text);
                            events.push(StreamEvent::TextDelta(text));
                        }
                    }
                    Some("input_json_delta") => {
                        let block = event["index"].as_u64().unwrap_or(0);
                        let Some(&(_, index)) = self.blocks.iter().find(|(b, _)| *b == block)
                        else {
                            return Err(ProviderError::BadResponse(format!(
                                "input for content block {block}, which is not a tool_use"
                            )));
                        };
                        let fragment = string(&delta["partial_json"]);
                        self.calls[index].arguments.push_str(&fragment);
                        events.push(StreamEvent::ToolCallDelta(ToolCallDelta {
                            index: index as u32,
                            id: None,
                            name: None,
                            arguments_fragment: fragment,
                        }));
                    }
                    _ => {} // thinking and signatures are not for the person
                }
            }
            "message_delta" => {
                if let Some(reason) = event["delta"]["stop_reason"].as_str() {
                    self.stop_reason = reason.to_string();
                }
                if let Some(output) = event["usage"]["output_tokens"].as_u64() {
                    self.output_tokens = Some(output);
                }
                if let Some(input) = event["usage"]["input_tokens"].as_u64() {
                    self.input_tokens = Some(input);
                }
            }
            "message_stop" => self.stopped = true,
            // An error mid-stream: Anthropic's 529 when it is overloaded.
            "error" => {
                let status = match event["error"]["type"].as_str() {
                    Some("overloaded_error") => 529,
                    _ => 500,
                };
                return Err(ProviderError::Upstream((
                    status,
                    string(&event["error"]["message"]),
                )));
            }
            _ => {} // ping, content_block_stop
        }
        Ok(())
    }
}

export!(Anthropic);
