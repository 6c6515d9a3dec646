//! The mock model: answers OpenAI's Chat Completions, Anthropic's Messages
//! and OpenAI's Responses APIs, whole or streamed, in a few microseconds.
//!
//! Every turn is the same two rounds: a request whose conversation does not
//! yet end with a tool result gets one tool call (`add_task` with
//! `{"title":"Buy milk"}` by default), and one that does gets the final
//! text. The bodies are built once, at start; answering is a partial parse
//! of the request (to tell the two rounds apart) and a copy.
//!
//! `GET /stats` reports the requests answered and the time spent answering
//! them, so that a load run can subtract the model's time from a turn's.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// What the mock asks for and says.
#[derive(Debug, Clone)]
pub struct Script {
    pub tool: String,
    /// The tool call's arguments, a JSON object.
    pub arguments: Value,
    pub text: String,
}

/// The mock's counters, as `GET /stats` reports them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Stats {
    pub requests: u64,
    /// Time spent answering, from the request's head to the reply built.
    pub busy_ns: u64,
}

/// The three provider APIs, by the path they are served at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    ChatCompletions,
    Messages,
    Responses,
}

impl Api {
    fn of(path: &str) -> Option<Api> {
        if path.ends_with("/chat/completions") {
            Some(Api::ChatCompletions)
        } else if path.ends_with("/messages") {
            Some(Api::Messages)
        } else if path.ends_with("/responses") {
            Some(Api::Responses)
        } else {
            None
        }
    }
}

/// Which round of the turn a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    /// Ask for the tool call.
    Call,
    /// The tool result is in: answer with text.
    Answer,
}

/// Every reply, built once: `[api][round][streamed]`.
struct Replies([[[Bytes; 2]; 2]; 3]);

impl Replies {
    fn new(script: &Script) -> Replies {
        let build = |api, round, streamed| Bytes::from(reply_body(script, api, round, streamed));
        let per_api = |api| {
            [
                [
                    build(api, Round::Call, false),
                    build(api, Round::Call, true),
                ],
                [
                    build(api, Round::Answer, false),
                    build(api, Round::Answer, true),
                ],
            ]
        };
        Replies([
            per_api(Api::ChatCompletions),
            per_api(Api::Messages),
            per_api(Api::Responses),
        ])
    }

    fn get(&self, api: Api, round: Round, streamed: bool) -> Bytes {
        self.0[api as usize][round as usize][usize::from(streamed)].clone()
    }
}

struct Mock {
    replies: Replies,
    requests: AtomicU64,
    busy_ns: AtomicU64,
}

/// Serves the mock on `listener` until the process ends.
pub async fn serve(listener: TcpListener, script: Script) -> anyhow::Result<()> {
    let mock = Arc::new(Mock {
        replies: Replies::new(&script),
        requests: AtomicU64::new(0),
        busy_ns: AtomicU64::new(0),
    });
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let mock = mock.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let mock = mock.clone();
                async move { Ok::<_, Infallible>(mock.answer(request).await) }
            });
            // A client that hangs up mid-request is its own business.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Binds `addr` (port 0 for any) and returns the listener and its address.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

impl Mock {
    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let path = request.uri().path().to_string();
        if request.method() == Method::GET && path.ends_with("/stats") {
            let stats = Stats {
                requests: self.requests.load(Ordering::Relaxed),
                busy_ns: self.busy_ns.load(Ordering::Relaxed),
            };
            return reply(StatusCode::OK, "application/json", json_bytes(&stats));
        }
        let Some(api) = Api::of(&path).filter(|_| request.method() == Method::POST) else {
            return error(StatusCode::NOT_FOUND, "no such endpoint");
        };
        let body = match request.into_body().collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => return error(StatusCode::BAD_REQUEST, "the body could not be read"),
        };
        let response = match round_of(api, &body) {
            Ok((round, streamed)) => {
                let kind = if streamed {
                    "text/event-stream"
                } else {
                    "application/json"
                };
                reply(StatusCode::OK, kind, self.replies.get(api, round, streamed))
            }
            Err(err) => error(StatusCode::BAD_REQUEST, &err.to_string()),
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.busy_ns
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        response
    }
}

fn reply(status: StatusCode, content_type: &str, body: Bytes) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body))
        .expect("a status and a plain header make a valid response")
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = json_bytes(&json!({"error": {"message": message, "type": "invalid_request_error"}}));
    reply(status, "application/json", body)
}

fn json_bytes(value: &impl serde::Serialize) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("plain values serialise"))
}

/// The request's fields that tell the rounds apart; the rest is skipped
/// unparsed.
#[derive(Deserialize)]
struct Asked<'a> {
    #[serde(default)]
    stream: bool,
    /// Chat Completions and Messages.
    #[serde(default, borrow)]
    messages: Vec<Turn<'a>>,
    /// Responses: a string or a list of items.
    #[serde(default, borrow)]
    input: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Turn<'a> {
    #[serde(default)]
    role: Option<String>,
    #[serde(default, borrow)]
    content: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

/// Which round `body` asks for, and whether it asks for a stream.
fn round_of(api: Api, body: &[u8]) -> Result<(Round, bool), serde_json::Error> {
    let asked: Asked = serde_json::from_slice(body)?;
    let answered = match api {
        Api::ChatCompletions => asked
            .messages
            .last()
            .is_some_and(|m| m.role.as_deref() == Some("tool")),
        // A tool result is a `tool_result` block in a user message.
        Api::Messages => asked.messages.last().is_some_and(|m| {
            m.role.as_deref() == Some("user")
                && m.content
                    .is_some_and(|c| c.get().contains("\"tool_result\""))
        }),
        Api::Responses => match asked.input {
            Some(input) if input.get().starts_with('[') => {
                let items: Vec<Item> = serde_json::from_str(input.get())?;
                items
                    .last()
                    .is_some_and(|i| i.kind.as_deref() == Some("function_call_output"))
            }
            _ => false,
        },
    };
    let round = if answered { Round::Answer } else { Round::Call };
    Ok((round, asked.stream))
}

const MODEL: &str = "mock";
const CALL_ID: &str = "call_1";
/// Reported per round, so that usage is counted.
const USAGE: (u64, u64) = (100, 10);

fn reply_body(script: &Script, api: Api, round: Round, streamed: bool) -> String {
    let arguments = script.arguments.to_string();
    let (input_tokens, output_tokens) = USAGE;
    match (api, streamed) {
        (Api::ChatCompletions, false) => {
            let message = match round {
                Round::Call => json!({"role": "assistant", "content": null, "tool_calls": [
                    {"id": CALL_ID, "type": "function", "function": {"name": script.tool, "arguments": arguments}}]}),
                Round::Answer => json!({"role": "assistant", "content": script.text}),
            };
            let finish = finish_reason(round, "tool_calls", "stop");
            json!({"id": "chatcmpl-mock", "object": "chat.completion", "model": MODEL,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": input_tokens, "completion_tokens": output_tokens,
                          "total_tokens": input_tokens + output_tokens}})
            .to_string()
        }
        (Api::ChatCompletions, true) => {
            let chunk = |delta: Value, finish: Value| {
                json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "model": MODEL,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            };
            let first = match round {
                Round::Call => chunk(
                    json!({"role": "assistant", "tool_calls": [{"index": 0, "id": CALL_ID, "type": "function",
                        "function": {"name": script.tool, "arguments": arguments}}]}),
                    Value::Null,
                ),
                Round::Answer => chunk(
                    json!({"role": "assistant", "content": script.text}),
                    Value::Null,
                ),
            };
            let mut last = chunk(json!({}), finish_reason(round, "tool_calls", "stop").into());
            last["usage"] =
                json!({"prompt_tokens": input_tokens, "completion_tokens": output_tokens});
            format!("data: {first}\n\ndata: {last}\n\ndata: [DONE]\n\n")
        }
        (Api::Messages, streamed) => {
            let block = match round {
                Round::Call => {
                    json!({"type": "tool_use", "id": CALL_ID, "name": script.tool, "input": script.arguments})
                }
                Round::Answer => json!({"type": "text", "text": script.text}),
            };
            let stop = finish_reason(round, "tool_use", "end_turn");
            if !streamed {
                return json!({"id": "msg_mock", "type": "message", "role": "assistant", "model": MODEL,
                    "content": [block], "stop_reason": stop,
                    "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}})
                .to_string();
            }
            let (start, delta) = match round {
                Round::Call => (
                    json!({"type": "tool_use", "id": CALL_ID, "name": script.tool, "input": {}}),
                    json!({"type": "input_json_delta", "partial_json": arguments}),
                ),
                Round::Answer => (
                    json!({"type": "text", "text": ""}),
                    json!({"type": "text_delta", "text": script.text}),
                ),
            };
            events(&[
                json!({"type": "message_start", "message": {"id": "msg_mock", "model": MODEL,
                    "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}),
                json!({"type": "content_block_start", "index": 0, "content_block": start}),
                json!({"type": "content_block_delta", "index": 0, "delta": delta}),
                json!({"type": "content_block_stop", "index": 0}),
                json!({"type": "message_delta", "delta": {"stop_reason": stop},
                    "usage": {"output_tokens": output_tokens}}),
                json!({"type": "message_stop"}),
            ])
        }
        (Api::Responses, streamed) => {
            let item = match round {
                Round::Call => json!({"type": "function_call", "id": "fc_1", "call_id": CALL_ID,
                    "name": script.tool, "arguments": arguments}),
                Round::Answer => json!({"type": "message", "id": "msg_1", "role": "assistant",
                    "content": [{"type": "output_text", "text": script.text}]}),
            };
            let response = json!({"id": "resp_mock", "object": "response", "status": "completed",
                "model": MODEL, "output": [item],
                "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}});
            if !streamed {
                return response.to_string();
            }
            let mut stream = vec![json!({"type": "response.created",
                "response": {"id": "resp_mock", "status": "in_progress"}})];
            if round == Round::Answer {
                stream.push(
                    json!({"type": "response.output_text.delta", "output_index": 0,
                    "content_index": 0, "item_id": "msg_1", "delta": script.text}),
                );
            }
            stream.push(json!({"type": "response.completed", "response": response}));
            events(&stream)
        }
    }
}

fn finish_reason(round: Round, call: &'static str, answer: &'static str) -> &'static str {
    match round {
        Round::Call => call,
        Round::Answer => answer,
    }
}

/// Anthropic's and the Responses API's stream: `event: <type>` and `data:`.
fn events(payloads: &[Value]) -> String {
    payloads
        .iter()
        .map(|p| {
            format!(
                "event: {}\ndata: {p}\n\n",
                p["type"].as_str().unwrap_or("message")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_api_tells_the_call_round_from_the_answer_round() {
        let cases = [
            (
                Api::ChatCompletions,
                json!({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]}),
                json!({"stream": true, "messages": [{"role": "user", "content": "hi"},
                    {"role": "assistant", "tool_calls": []}, {"role": "tool", "content": "{}"}]}),
            ),
            (
                Api::Messages,
                json!({"messages": [{"role": "user", "content": "hi"}]}),
                json!({"stream": true, "messages": [{"role": "user", "content": "hi"},
                    {"role": "assistant", "content": [{"type": "tool_use"}]},
                    {"role": "user", "content": [{"type": "tool_result", "content": "{}"}]}]}),
            ),
            (
                Api::Responses,
                json!({"input": "hi"}),
                json!({"stream": true, "input": [{"role": "user", "content": "hi"},
                    {"type": "function_call"}, {"type": "function_call_output", "output": "{}"}]}),
            ),
        ];
        for (api, call, answer) in cases {
            let parse = |v: &Value| round_of(api, v.to_string().as_bytes()).unwrap();
            assert_eq!(parse(&call), (Round::Call, false), "{api:?}");
            assert_eq!(parse(&answer), (Round::Answer, true), "{api:?}");
        }
        assert!(round_of(Api::ChatCompletions, b"not json").is_err());
    }

    #[test]
    fn replies_carry_the_script() {
        let script = Script {
            tool: "add_task".into(),
            arguments: json!({"title": "Buy milk"}),
            text: "Added.".into(),
        };
        let replies = Replies::new(&script);
        let call: Value =
            serde_json::from_slice(&replies.get(Api::ChatCompletions, Round::Call, false)).unwrap();
        let function = &call["choices"][0]["message"]["tool_calls"][0]["function"];
        assert_eq!(function["name"], "add_task");
        assert_eq!(function["arguments"], "{\"title\":\"Buy milk\"}");
        let streamed = replies.get(Api::Messages, Round::Answer, true);
        assert!(
            std::str::from_utf8(&streamed)
                .unwrap()
                .contains("\"text\":\"Added.\"")
        );
        let answer: Value =
            serde_json::from_slice(&replies.get(Api::Responses, Round::Answer, false)).unwrap();
        assert_eq!(answer["output"][0]["content"][0]["text"], "Added.");
    }
}
