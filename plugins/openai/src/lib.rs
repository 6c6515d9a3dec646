//! The OpenAI Chat Completions adapter, sans-IO: it writes the request the
//! host sends to the configured base URL (with the key the host adds), and
//! reads the response, whole or as a server-sent-event stream. Works with
//! any OpenAI-compatible server.

use std::cell::RefCell;

use serde_json::{Map, Value, json};

wit_bindgen::generate!({ world: "provider-plugin", path: "../../wit" });

use exports::wasmgate::plugin::provider::{
    Completion, CompletionRequest, Guest, GuestStreamDecoder, HttpRequest, Message, Plan,
    ProviderError, Role, StreamEvent, ToolCall, ToolCallDelta, Usage,
};

struct OpenAi;

impl Guest for OpenAi {
    type StreamDecoder = Decoder;

    fn prepare(request: CompletionRequest) -> Result<Plan, ProviderError> {
        if request.model.is_empty() {
            return Err(ProviderError::Unsupported(
                "name a model, e.g. WASMGATE_MODEL=openai:gpt-4o-mini".into(),
            ));
        }
        let mut body = Map::new();
        body.insert("model".into(), json!(request.model));
        body.insert(
            "messages".into(),
            request.messages.iter().map(message_json).collect(),
        );
        if !request.tools.is_empty() {
            let tools: Result<Vec<Value>, ProviderError> = request
                .tools
                .iter()
                .map(|tool| {
                    let parameters: Value = serde_json::from_str(&tool.input_schema)
                        .map_err(|err| ProviderError::Unsupported(format!("schema of {}: {err}", tool.name)))?;
                    Ok(json!({"type": "function", "function": {
                        "name": tool.name, "description": tool.description, "parameters": parameters}}))
                })
                .collect();
            body.insert("tools".into(), Value::Array(tools?));
        }
        body.insert("stream".into(), json!(request.stream));
        if request.stream {
            body.insert("stream_options".into(), json!({"include_usage": true}));
        }
        Ok(Plan::Send(HttpRequest {
            method: "POST".into(),
            path: "/chat/completions".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(&Value::Object(body)).expect("a JSON value serialises"),
        }))
    }

    fn parse_response(status: u16, body: Vec<u8>) -> Result<Completion, ProviderError> {
        if !(200..300).contains(&status) {
            return Err(upstream(status, &body));
        }
        let response: Value = serde_json::from_slice(&body)
            .map_err(|err| ProviderError::BadResponse(format!("not JSON: {err}")))?;
        let choice = response["choices"]
            .get(0)
            .ok_or_else(|| ProviderError::BadResponse("no choices in the response".into()))?;
        let message = &choice["message"];
        let tool_calls = message["tool_calls"]
            .as_array()
            .map(|calls| {
                calls
                    .iter()
                    .map(|call| ToolCall {
                        id: text(&call["id"]),
                        name: text(&call["function"]["name"]),
                        arguments: text(&call["function"]["arguments"]),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Completion {
            text: text(&message["content"]),
            tool_calls,
            usage: usage(&response["usage"]),
            finish_reason: text(&choice["finish_reason"]),
        })
    }
}

fn message_json(message: &Message) -> Value {
    match message.role {
        Role::System => json!({"role": "system", "content": message.content}),
        Role::User => json!({"role": "user", "content": message.content}),
        Role::Tool => json!({"role": "tool", "content": message.content,
                             "tool_call_id": message.tool_call_id.clone().unwrap_or_default()}),
        Role::Assistant => {
            let mut object = Map::new();
            object.insert("role".into(), json!("assistant"));
            let content = if message.content.is_empty() {
                Value::Null
            } else {
                json!(message.content)
            };
            object.insert("content".into(), content);
            if !message.tool_calls.is_empty() {
                let calls = message
                    .tool_calls
                    .iter()
                    .map(|call| json!({"id": call.id, "type": "function",
                                       "function": {"name": call.name, "arguments": call.arguments}}))
                    .collect();
                object.insert("tool_calls".into(), Value::Array(calls));
            }
            Value::Object(object)
        }
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

fn usage(value: &Value) -> Option<Usage> {
    Some(Usage {
        prompt_tokens: value["prompt_tokens"].as_u64()? as u32,
        completion_tokens: value["completion_tokens"].as_u64()? as u32,
    })
}

/// An error answer: OpenAI's `{"error":{"message":…}}` or the start of
/// whatever else came back.
fn upstream(status: u16, body: &[u8]) -> ProviderError {
    ProviderError::Upstream((status, wasmgate_provider_kit::error_message(body)))
}

/// Decodes `data: {…}` server-sent events into deltas, and assembles them.
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
    calls: Vec<ToolCall>,
    usage: Option<Usage>,
    finish_reason: String,
    /// Whether the `[DONE]` sentinel came.
    done: bool,
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
        for data in state.data.feed(&chunk) {
            if data == "[DONE]" {
                state.done = true;
                continue;
            }
            let chunk: Value = serde_json::from_str(&data).map_err(|err| {
                ProviderError::BadResponse(format!("stream chunk is not JSON: {err}"))
            })?;
            state.apply(&chunk, &mut events);
        }
        Ok(events)
    }

    fn finish(&self) -> Result<Completion, ProviderError> {
        let state = self.state.borrow();
        if !(200..300).contains(&state.status) {
            return Err(upstream(state.status, &state.error_body));
        }
        // A complete answer names why it finished, ends with `[DONE]`, or
        // both. Without either the stream was cut short (or held no events
        // at all), and what came so far must not pass for the whole reply.
        if !state.done && state.finish_reason.is_empty() {
            return Err(ProviderError::BadResponse(
                "the provider's stream ended before the answer was complete".into(),
            ));
        }
        Ok(Completion {
            text: state.text.clone(),
            tool_calls: state.calls.clone(),
            usage: state.usage,
            finish_reason: state.finish_reason.clone(),
        })
    }
}

impl Assembly {
    fn apply(&mut self, chunk: &Value, events: &mut Vec<StreamEvent>) {
        if let Some(usage) = usage(&chunk["usage"]) {
            self.usage = Some(usage);
        }
        let Some(choice) = chunk["choices"].get(0) else {
            return;
        };
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.finish_reason = reason.to_string();
        }
        let delta = &choice["delta"];
        if let Some(content) = delta["content"].as_str().filter(|c| !c.is_empty()) {
            self.text.push_str(content);
            events.push(StreamEvent::TextDelta(content.to_string()));
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = call["index"].as_u64().unwrap_or(self.calls.len() as u64) as usize;
            while self.calls.len() <= index {
                self.calls.push(ToolCall {
                    id: String::new(),
                    name: String::new(),
                    arguments: String::new(),
                });
            }
            let id = call["id"].as_str().map(str::to_string);
            let name = call["function"]["name"].as_str().map(str::to_string);
            let fragment = text(&call["function"]["arguments"]);
            let slot = &mut self.calls[index];
            if let Some(id) = &id {
                slot.id = id.clone();
            }
            if let Some(name) = &name {
                slot.name.push_str(name);
            }
            slot.arguments.push_str(&fragment);
            events.push(StreamEvent::ToolCallDelta(ToolCallDelta {
                index: index as u32,
                id,
                name,
                arguments_fragment: fragment,
            }));
        }
    }
}

export!(OpenAi);
