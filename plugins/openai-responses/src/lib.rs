//! The OpenAI Responses API adapter (`POST /responses`, what OpenAI's
//! Agents SDK uses by default), sans-IO: it writes the request the host
//! sends to the configured base URL (with the key the host adds), and reads
//! the response, whole or as its event stream
//! (`response.output_text.delta`, `response.function_call_arguments.delta`,
//! `response.completed`).
//!
//! The system prompt is `instructions`; tool calls are `function_call`
//! items of the input, their results `function_call_output` items.

use std::cell::RefCell;

use serde_json::{Map, Value, json};

wit_bindgen::generate!({ world: "provider-plugin", path: "../../wit" });

use exports::wasmgate::plugin::provider::{
    Completion, CompletionRequest, Guest, GuestStreamDecoder, HttpRequest, Message, Plan,
    ProviderError, Role, StreamEvent, ToolCall, ToolCallDelta, Usage,
};

struct Responses;

impl Guest for Responses {
    type StreamDecoder = Decoder;

    fn prepare(request: CompletionRequest) -> Result<Plan, ProviderError> {
        if request.model.is_empty() {
            return Err(ProviderError::Unsupported(
                "name a model, e.g. WASMGATE_MODEL=openai-responses:gpt-4o-mini".into(),
            ));
        }
        let mut body = Map::new();
        body.insert("model".into(), json!(request.model));
        let instructions: Vec<&str> = request
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
            .collect();
        if !instructions.is_empty() {
            body.insert("instructions".into(), json!(instructions.join("\n\n")));
        }
        body.insert(
            "input".into(),
            Value::Array(request.messages.iter().flat_map(input_items).collect()),
        );
        if !request.tools.is_empty() {
            let tools: Result<Vec<Value>, ProviderError> = request
                .tools
                .iter()
                .map(|tool| {
                    let parameters: Value =
                        serde_json::from_str(&tool.input_schema).map_err(|err| {
                            ProviderError::Unsupported(format!("schema of {}: {err}", tool.name))
                        })?;
                    Ok(json!({"type": "function", "name": tool.name,
                              "description": tool.description, "parameters": parameters}))
                })
                .collect();
            body.insert("tools".into(), Value::Array(tools?));
        }
        // The conversation is the host's: nothing is kept on OpenAI's side.
        body.insert("store".into(), json!(false));
        body.insert("stream".into(), json!(request.stream));
        Ok(Plan::Send(HttpRequest {
            method: "POST".into(),
            path: "/responses".into(),
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
        completion(&response)
    }
}

/// A message as input items: one for text, one per tool call.
fn input_items(message: &Message) -> Vec<Value> {
    match message.role {
        Role::System => Vec::new(),
        Role::User => vec![json!({"role": "user", "content": message.content})],
        Role::Tool => vec![json!({"type": "function_call_output",
            "call_id": message.tool_call_id.clone().unwrap_or_default(),
            "output": message.content})],
        Role::Assistant => {
            let mut items = Vec::new();
            if !message.content.is_empty() {
                items.push(json!({"role": "assistant", "content": message.content}));
            }
            for call in &message.tool_calls {
                items.push(json!({"type": "function_call", "call_id": call.id,
                                  "name": call.name, "arguments": call.arguments}));
            }
            items
        }
    }
}

/// A whole response (as answered, or as `response.completed` carries it).
fn completion(response: &Value) -> Result<Completion, ProviderError> {
    if let Some(message) = response["error"]["message"].as_str() {
        return Err(ProviderError::Upstream((500, message.to_string())));
    }
    let output = response["output"]
        .as_array()
        .ok_or_else(|| ProviderError::BadResponse("no output in the response".into()))?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for item in output {
        match item["type"].as_str() {
            Some("message") => {
                for part in item["content"].as_array().into_iter().flatten() {
                    if part["type"] == "output_text" {
                        text.push_str(part["text"].as_str().unwrap_or_default());
                    }
                }
            }
            Some("function_call") => tool_calls.push(ToolCall {
                id: string(&item["call_id"]),
                name: string(&item["name"]),
                arguments: string(&item["arguments"]),
            }),
            _ => {} // reasoning and other items are not for the person
        }
    }
    let finish_reason = match (string(&response["status"]).as_str(), tool_calls.is_empty()) {
        ("completed", false) => "tool_calls".to_string(),
        ("completed", true) => "stop".to_string(),
        (other, _) => other.to_string(),
    };
    Ok(Completion {
        text,
        tool_calls,
        usage: usage(&response["usage"]),
        finish_reason,
    })
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

/// An error answer: OpenAI's `{"error":{"message":…}}` or the start of
/// whatever else came back.
fn upstream(status: u16, body: &[u8]) -> ProviderError {
    ProviderError::Upstream((status, wasmgate_provider_kit::error_message(body)))
}

/// Decodes the event stream into deltas; `response.completed` carries the
/// whole response, which is the completion.
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
    /// Output index → index among the tool calls, for `function_call` items.
    calls: Vec<(u64, usize)>,
    completed: Option<Value>,
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
        for data in state
            .data
            .feed(&chunk)
            .into_iter()
            .filter(|d| d != "[DONE]")
        {
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
        match &state.completed {
            Some(response) => completion(response),
            None => Err(ProviderError::BadResponse(
                "the provider's stream ended before the answer was complete".into(),
            )),
        }
    }
}

impl Assembly {
    fn apply(&mut self, event: &Value, events: &mut Vec<StreamEvent>) -> Result<(), ProviderError> {
        match event["type"].as_str().unwrap_or_default() {
            "response.output_text.delta" => {
                let text = string(&event["delta"]);
                if !text.is_empty() {
                    events.push(StreamEvent::TextDelta(text));
                }
            }
            "response.output_item.added" if event["item"]["type"] == "function_call" => {
                let index = self.calls.len();
                self.calls
                    .push((event["output_index"].as_u64().unwrap_or(0), index));
                events.push(StreamEvent::ToolCallDelta(ToolCallDelta {
                    index: index as u32,
                    id: Some(string(&event["item"]["call_id"])),
                    name: Some(string(&event["item"]["name"])),
                    arguments_fragment: String::new(),
                }));
            }
            "response.function_call_arguments.delta" => {
                let output = event["output_index"].as_u64().unwrap_or(0);
                let Some(&(_, index)) = self.calls.iter().find(|(o, _)| *o == output) else {
                    return Err(ProviderError::BadResponse(format!(
                        "arguments for output {output}, which is not a function call"
                    )));
                };
                events.push(StreamEvent::ToolCallDelta(ToolCallDelta {
                    index: index as u32,
                    id: None,
                    name: None,
                    arguments_fragment: string(&event["delta"]),
                }));
            }
            "response.completed" | "response.incomplete" => {
                self.completed = Some(event["response"].clone());
            }
            "response.failed" => {
                let message = string(&event["response"]["error"]["message"]);
                return Err(ProviderError::Upstream((500, message)));
            }
            "error" => {
                return Err(ProviderError::Upstream((500, string(&event["message"]))));
            }
            _ => {}
        }
        Ok(())
    }
}

export!(Responses);
