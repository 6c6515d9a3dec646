//! The agent loop: one chat turn, whatever door it came through.
//!
//! load history → store the user message → ask the provider → run the tool
//! calls it asks for (concurrently) → ask again … → store the reply. Every
//! message is stored as it happens, the user's before the provider is
//! called, so nothing acknowledged is lost to a crash or a provider failure.
//! The turn reports its progress as [`AgentEvent`]s; the chat API collects
//! them into one answer or streams them, the ChatKit door maps them onto
//! ChatKit events.

mod reply;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::plugins::provider::{ChatMessage, Completion, CompletionRequest, Plan, Role, ToolCall};
use crate::plugins::{Plugin, Registry, Runtime, Snapshot, ToolSpec};
use crate::store::{Conversation, NewMessage, Store, StoreError, StoredMessage};
use reply::Reply;
use upstream::Upstream;

const SYSTEM_PROMPT: &str = "You are the task assistant of wasmgate. You help the user manage their \
to-do list with the tools you have: add_task, list_tasks, complete_task, update_task and \
delete_task. To act on a task named by its title, list the tasks first to find its id. Confirm \
every action in one friendly sentence. If a task is not found, say so plainly and suggest listing \
the tasks. Never invent task ids.";

/// Longest title a new conversation takes from its first message.
const TITLE_CHARS: usize = 60;

/// Longest user message accepted, in characters, whatever the door.
pub const MAX_MESSAGE_CHARS: usize = 8000;

/// Tool calls one turn may run, over all its rounds; further calls are
/// answered with an error without running.
pub const MAX_TOOL_CALLS_PER_TURN: usize = 64;

/// Bytes of stored history sent to the provider; older messages are left
/// out first, so one huge message never breaks every later turn.
const MAX_HISTORY_BYTES: usize = 512 * 1024;

/// Bytes of tool specs (names, descriptions, schemas) sent to the provider
/// per round; tools beyond it (in name order) are left out of the turn.
const MAX_TOOLS_BYTES: usize = 256 * 1024;

/// Why a text cannot be a user message: whatever the door, the same rules.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageProblem {
    #[error("the message has no text")]
    Empty,
    #[error("the message must be at most {MAX_MESSAGE_CHARS} characters")]
    TooLong,
    #[error("the message must not contain the control character U+{:04X}", *.0 as u32)]
    ControlCharacter(char),
}

pub fn check_message(content: &str) -> Result<(), MessageProblem> {
    if content.trim().is_empty() {
        return Err(MessageProblem::Empty);
    }
    if content.chars().count() > MAX_MESSAGE_CHARS {
        return Err(MessageProblem::TooLong);
    }
    match crate::tasks::disallowed_char(content) {
        Some(c) => Err(MessageProblem::ControlCharacter(c)),
        None => Ok(()),
    }
}

/// A new conversation's title: the start of its first message.
pub fn title_from(content: &str) -> String {
    content.trim().chars().take(TITLE_CHARS).collect()
}

pub struct AgentConfig {
    /// `<provider plugin>[:<model>]`, e.g. `rules` or `openai:gpt-4o-mini`.
    pub model: String,
    /// Provider rounds per turn before giving up.
    pub max_rounds: usize,
    /// Stored messages sent to the provider as history.
    pub history_messages: i64,
    /// Longest a provider round (send, wait, read) may take.
    pub provider_timeout: Duration,
}

pub struct Agent {
    runtime: Arc<Runtime>,
    registry: Arc<Registry>,
    store: Store,
    upstream: Upstream,
    config: AgentConfig,
}

/// What a turn reports as it goes, in order.
#[derive(Debug, Clone)]
pub enum AgentEvent {
    /// The user message is stored.
    Started {
        conversation_id: i64,
        user_message: StoredMessage,
    },
    /// An assistant message begins (it is stored under `message_id`); its
    /// text follows as [`AgentEvent::TextDelta`]s.
    ReplyStarted { message_id: i64, created_at: String },
    /// Assistant text as it arrives (token by token when the provider streams).
    TextDelta(String),
    /// The assistant message is complete.
    ReplyDone { message_id: i64, text: String },
    /// The model asked for tool calls (stored with message `message_id`);
    /// they run now, concurrently.
    ToolCalls {
        message_id: i64,
        created_at: String,
        calls: Vec<ToolCallRecord>,
    },
    /// A tool call finished; the record now has its result.
    ToolResult(ToolCallRecord),
}

#[derive(Debug, Clone)]
pub struct ToolCallRecord {
    pub id: String,
    pub name: String,
    pub arguments: Value,
    /// The tool's JSON result, or `{"error": "..."}`; `Null` until it ran.
    pub result: Value,
    pub is_error: bool,
}

/// A finished turn.
#[derive(Debug, Clone)]
pub struct TurnOutcome {
    pub conversation_id: i64,
    pub message_id: i64,
    pub response: String,
    pub tool_calls: Vec<ToolCallRecord>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("conversation {0} not found")]
    ConversationNotFound(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The provider failed or answered nonsense; the user message is stored.
    #[error("the model provider failed: {message}")]
    Provider {
        conversation_id: i64,
        message: String,
    },
    #[error("the model provider did not answer within {} s", .limit.as_secs())]
    ProviderTimeout {
        conversation_id: i64,
        limit: Duration,
    },
    #[error("the model provider {0:?} is not loaded")]
    ProviderMissing(String),
    /// The client went away and asked for that to cancel the turn; what
    /// streamed so far is stored.
    #[error("the turn was cancelled")]
    Cancelled { conversation_id: i64 },
}

/// Where a turn's events go. By default a gone receiver (a client that
/// left) does not stop the turn; a sink made with [`EventSink::cancelling`]
/// cancels it.
pub struct EventSink {
    sender: Option<mpsc::Sender<AgentEvent>>,
    cancel_on_close: bool,
}

impl EventSink {
    pub fn new(sender: Option<mpsc::Sender<AgentEvent>>) -> Self {
        EventSink {
            sender,
            cancel_on_close: false,
        }
    }

    /// Events to `sender`; the turn is cancelled when its receiver is dropped.
    pub fn cancelling(sender: mpsc::Sender<AgentEvent>) -> Self {
        EventSink {
            sender: Some(sender),
            cancel_on_close: true,
        }
    }

    async fn send(&self, event: AgentEvent) {
        if let Some(sender) = &self.sender {
            let _ = sender.send(event).await;
        }
    }

    fn is_cancelled(&self) -> bool {
        self.cancel_on_close && self.sender.as_ref().is_some_and(|s| s.is_closed())
    }

    /// Resolves when the turn is cancelled; never for a sink that does not cancel.
    async fn cancelled(&self) {
        match &self.sender {
            Some(sender) if self.cancel_on_close => sender.closed().await,
            _ => std::future::pending().await,
        }
    }
}

/// Stored in place of a reply the user cancelled; the model sees it as
/// context, a person never sees it.
const CANCELLED_NOTE: &str = "The user cancelled the previous reply before it finished.";

impl Agent {
    pub fn new(
        runtime: Arc<Runtime>,
        registry: Arc<Registry>,
        store: Store,
        config: AgentConfig,
    ) -> Agent {
        Agent {
            upstream: Upstream::new(config.provider_timeout),
            runtime,
            registry,
            store,
            config,
        }
    }

    /// Runs one turn of `user` in conversation `conversation_id` (a new one
    /// when `None`). `stream` asks the provider for a token stream.
    pub async fn turn(
        &self,
        user: &str,
        conversation_id: Option<i64>,
        content: String,
        stream: bool,
        events: EventSink,
    ) -> Result<TurnOutcome, AgentError> {
        let conversation = self.conversation(user, conversation_id, &content).await?;
        let user_message = self.append(conversation.id, "user", content).await?;
        events
            .send(AgentEvent::Started {
                conversation_id: conversation.id,
                user_message,
            })
            .await;
        self.respond(user, conversation.id, stream, events).await
    }

    /// Answers the conversation as it stands (its last message is the
    /// user's): the second half of a turn, and a retry.
    pub async fn respond(
        &self,
        user: &str,
        conversation_id: i64,
        stream: bool,
        events: EventSink,
    ) -> Result<TurnOutcome, AgentError> {
        // One snapshot for the whole turn: tools and provider stay the same
        // versions however long it runs, whatever reloads meanwhile.
        let snapshot = self.registry.snapshot();
        let (provider_name, model) = match self.config.model.split_once(':') {
            Some((name, model)) => (name, model),
            None => (self.config.model.as_str(), ""),
        };
        let provider = snapshot
            .plugin(provider_name)
            .filter(|p| p.kind() == crate::plugins::PluginKind::Provider)
            .cloned()
            .ok_or_else(|| AgentError::ProviderMissing(provider_name.to_string()))?;
        let mut history = self.history(conversation_id).await?;

        let tools = within_budget(snapshot.tools());
        let mut records = Vec::new();
        for _ in 0..self.config.max_rounds {
            let request = CompletionRequest {
                model,
                messages: &history,
                tools: &tools,
                stream,
            };
            let reply = Reply::new(&self.store, conversation_id, &events);
            if stream {
                reply.reserve().await?;
            }
            let round = self.provider_round(&provider, &request, stream, &reply, conversation_id);
            let completion = tokio::select! {
                completion = round => match completion {
                    Ok(completion) => completion,
                    Err(err) => {
                        reply.keep_partial().await?;
                        return Err(err);
                    }
                },
                () = events.cancelled() => {
                    reply.keep_partial().await?;
                    return Err(self.cancelled(conversation_id).await);
                }
            };
            let (message_id, created_at) = reply.finish(&completion).await?;
            if completion.tool_calls.is_empty() {
                return Ok(TurnOutcome {
                    conversation_id,
                    message_id,
                    response: completion.text,
                    tool_calls: records,
                });
            }
            history.push(ChatMessage {
                role: Role::Assistant,
                content: completion.text.clone(),
                tool_calls: completion.tool_calls.clone(),
                tool_call_id: None,
            });

            let budget = MAX_TOOL_CALLS_PER_TURN.saturating_sub(records.len());
            let results = self
                .run_tools(
                    &snapshot,
                    user,
                    (message_id, created_at),
                    &completion.tool_calls,
                    budget,
                    &events,
                )
                .await;
            for record in results {
                let content = record.result.to_string();
                self.store
                    .append_message(
                        conversation_id,
                        NewMessage {
                            role: "tool",
                            content: content.clone(),
                            tool_call_id: Some(record.id.clone()),
                            tool_name: Some(record.name.clone()),
                            is_error: record.is_error,
                            ..Default::default()
                        },
                    )
                    .await?;
                history.push(ChatMessage {
                    role: Role::Tool,
                    content,
                    tool_calls: Vec::new(),
                    tool_call_id: Some(record.id.clone()),
                });
                records.push(record);
            }
            if events.is_cancelled() {
                return Err(self.cancelled(conversation_id).await);
            }
        }

        let text = format!(
            "I stopped after {} steps without finishing; please try again with a simpler request.",
            self.config.max_rounds
        );
        let gave_up = Completion {
            text: text.clone(),
            ..Default::default()
        };
        let (message_id, _) = Reply::new(&self.store, conversation_id, &events)
            .finish(&gave_up)
            .await?;
        Ok(TurnOutcome {
            conversation_id,
            message_id,
            response: text,
            tool_calls: records,
        })
    }

    /// Notes the cancel for the model's next turn.
    async fn cancelled(&self, conversation_id: i64) -> AgentError {
        if let Err(err) = self
            .append(conversation_id, "hidden", CANCELLED_NOTE.into())
            .await
        {
            return err;
        }
        AgentError::Cancelled { conversation_id }
    }

    /// Stores a plain (tool-free) message of `role`.
    async fn append(
        &self,
        conversation_id: i64,
        role: &'static str,
        content: String,
    ) -> Result<StoredMessage, AgentError> {
        let message = NewMessage {
            role,
            content,
            ..Default::default()
        };
        Ok(self.store.append_message(conversation_id, message).await?)
    }

    async fn conversation(
        &self,
        user: &str,
        id: Option<i64>,
        content: &str,
    ) -> Result<Conversation, AgentError> {
        match id {
            Some(id) => self
                .store
                .conversation(user, id)
                .await?
                .ok_or(AgentError::ConversationNotFound(id)),
            None => {
                let title = title_from(content);
                Ok(self.store.create_conversation(user, Some(&title)).await?)
            }
        }
    }

    /// The stored history as provider messages, behind the system prompt.
    /// The window never starts with tool results cut off from the call that
    /// asked for them (providers reject those).
    async fn history(&self, conversation_id: i64) -> Result<Vec<ChatMessage>, AgentError> {
        let stored = self
            .store
            .recent_messages(conversation_id, self.config.history_messages)
            .await?;
        let start = stored
            .iter()
            .position(|m| m.role != "tool")
            .unwrap_or(stored.len());
        let mut history = vec![ChatMessage {
            role: Role::System,
            content: SYSTEM_PROMPT.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }];
        let mut messages: Vec<ChatMessage> =
            stored[start..].iter().filter_map(to_chat_message).collect();
        // Newest first until the budget is spent, then never start the
        // window on tool results cut off from their call.
        let mut spent = 0;
        let keep_from = messages
            .iter()
            .rposition(|message| {
                spent += message_bytes(message);
                spent > MAX_HISTORY_BYTES
            })
            .map_or(0, |over| over + 1);
        let keep_from = messages[keep_from..]
            .iter()
            .position(|m| m.role != Role::Tool)
            .map_or(messages.len(), |offset| keep_from + offset);
        history.extend(answer_dangling_calls(messages.drain(keep_from..)));
        Ok(history)
    }

    async fn provider_round(
        &self,
        provider: &Arc<Plugin>,
        request: &CompletionRequest<'_>,
        stream: bool,
        reply: &Reply<'_>,
        conversation_id: i64,
    ) -> Result<Completion, AgentError> {
        let failed = |message: String| AgentError::Provider {
            conversation_id,
            message,
        };
        let round = async {
            match self
                .runtime
                .prepare(provider, request)
                .await
                .map_err(|err| failed(err.to_string()))?
            {
                // Reported when the reply is finished.
                Plan::Reply(completion) => Ok(completion),
                Plan::Send(http) => self
                    .upstream
                    .round(&self.runtime, provider, http, stream, reply)
                    .await
                    .map_err(|err| failed(err.to_string())),
            }
        };
        let limit = self.config.provider_timeout;
        match tokio::time::timeout(limit, round).await {
            Ok(result) => {
                if let Err(err) = &result {
                    tracing::warn!(provider = provider.name(), error = %err, "provider round failed");
                }
                result
            }
            Err(_) => Err(AgentError::ProviderTimeout {
                conversation_id,
                limit,
            }),
        }
    }

    /// Runs the calls of one round concurrently, each for `user`; calls
    /// beyond the first `budget` are answered with an error instead.
    async fn run_tools(
        &self,
        snapshot: &Snapshot,
        user: &str,
        (message_id, created_at): (i64, String),
        calls: &[ToolCall],
        budget: usize,
        events: &EventSink,
    ) -> Vec<ToolCallRecord> {
        events
            .send(AgentEvent::ToolCalls {
                message_id,
                created_at,
                calls: calls
                    .iter()
                    .map(|call| record(call, Value::Null, false))
                    .collect(),
            })
            .await;
        let mut runs: futures::stream::FuturesUnordered<_> = calls
            .iter()
            .enumerate()
            .map(|(index, call)| async move {
                let outcome = match snapshot.tool(&call.name) {
                    _ if index >= budget => Err(crate::plugins::CallError::Budget(format!(
                        "this turn has run its {MAX_TOOL_CALLS_PER_TURN} tool calls"
                    ))),
                    Some((plugin, _)) => {
                        self.runtime
                            .call_tool(plugin, user, &call.name, &call.arguments)
                            .await
                    }
                    None => Err(crate::plugins::CallError::UnknownTool(call.name.clone())),
                };
                let record = match outcome {
                    Ok(result) => record(call, result, false),
                    Err(err) => {
                        tracing::info!(tool = %call.name, error = %err, "tool call failed");
                        record(call, json!({ "error": err.to_string() }), true)
                    }
                };
                (index, record)
            })
            .collect();
        // Each result is reported as it comes; the records keep call order.
        let mut records = vec![None; calls.len()];
        while let Some((index, record)) = runs.next().await {
            events.send(AgentEvent::ToolResult(record.clone())).await;
            records[index] = Some(record);
        }
        records.into_iter().flatten().collect()
    }
}

/// What the model is told of a tool call that has no stored result (the
/// process stopped while it ran).
const INTERRUPTED_CALL: &str = r#"{"error":"this tool call was interrupted before it reported a result (the server stopped); whether it took effect is unknown"}"#;

/// `messages` with a tool message for every call that has none: after a
/// crash mid-call, an assistant message's `tool_calls` would otherwise reach
/// the provider without their results, which OpenAI-compatible servers
/// reject, breaking the conversation for good.
fn answer_dangling_calls(messages: impl Iterator<Item = ChatMessage>) -> Vec<ChatMessage> {
    let mut repaired: Vec<ChatMessage> = Vec::new();
    // Calls of the latest assistant message still waiting for a result.
    let mut waiting: Vec<String> = Vec::new();
    let flush = |repaired: &mut Vec<ChatMessage>, waiting: &mut Vec<String>| {
        for id in waiting.drain(..) {
            repaired.push(ChatMessage {
                role: Role::Tool,
                content: INTERRUPTED_CALL.into(),
                tool_calls: Vec::new(),
                tool_call_id: Some(id),
            });
        }
    };
    for message in messages {
        match message.role {
            Role::Tool => {
                let id = message.tool_call_id.as_deref().unwrap_or_default();
                waiting.retain(|waiting| waiting != id);
            }
            _ => {
                flush(&mut repaired, &mut waiting);
                waiting = message.tool_calls.iter().map(|c| c.id.clone()).collect();
            }
        }
        repaired.push(message);
    }
    flush(&mut repaired, &mut waiting);
    repaired
}

fn message_bytes(message: &ChatMessage) -> usize {
    message.content.len()
        + message
            .tool_calls
            .iter()
            .map(|call| call.id.len() + call.name.len() + call.arguments.len())
            .sum::<usize>()
}

/// The tools of a turn, in name order, as many as fit [`MAX_TOOLS_BYTES`].
/// (Each plugin's specs are bounded at load; this bounds them together.)
fn within_budget(tools: Vec<&ToolSpec>) -> Vec<&ToolSpec> {
    let mut spent = 0;
    let total = tools.len();
    let kept: Vec<&ToolSpec> = tools
        .into_iter()
        .filter(|tool| {
            let size = tool.name.len() + tool.description.len() + tool.input_schema_bytes;
            let fits = spent + size <= MAX_TOOLS_BYTES;
            spent += if fits { size } else { 0 };
            fits
        })
        .collect();
    if kept.len() < total {
        tracing::warn!(
            kept = kept.len(),
            total,
            "tool specs over the per-turn budget; some tools are left out of this turn"
        );
    }
    kept
}

fn record(call: &ToolCall, result: Value, is_error: bool) -> ToolCallRecord {
    ToolCallRecord {
        id: call.id.clone(),
        name: call.name.clone(),
        // Models occasionally produce invalid JSON; keep what they said.
        arguments: serde_json::from_str(&call.arguments)
            .unwrap_or_else(|_| Value::String(call.arguments.clone())),
        result,
        is_error,
    }
}

fn to_chat_message(message: &StoredMessage) -> Option<ChatMessage> {
    // A reply cut off before its first token says nothing; providers reject it.
    if message.role == "assistant" && message.content.is_empty() && message.tool_calls.is_none() {
        return None;
    }
    let role = match message.role.as_str() {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        // Context for the model that no person sees (a cancelled reply).
        "hidden" => Role::System,
        _ => return None,
    };
    let tool_calls = message
        .tool_calls
        .as_deref()
        .and_then(|text| serde_json::from_str::<Vec<Value>>(text).ok())
        .unwrap_or_default()
        .iter()
        .map(|call| ToolCall {
            id: call["id"].as_str().unwrap_or_default().to_string(),
            name: call["name"].as_str().unwrap_or_default().to_string(),
            arguments: call["arguments"].as_str().unwrap_or("{}").to_string(),
        })
        .collect();
    Some(ChatMessage {
        role,
        content: message.content.clone(),
        tool_calls,
        tool_call_id: message.tool_call_id.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(role: Role, calls: &[&str], answers: Option<&str>) -> ChatMessage {
        ChatMessage {
            role,
            content: String::new(),
            tool_calls: calls
                .iter()
                .map(|id| ToolCall {
                    id: id.to_string(),
                    name: "add_task".into(),
                    arguments: "{}".into(),
                })
                .collect(),
            tool_call_id: answers.map(str::to_string),
        }
    }

    #[test]
    fn a_call_without_a_result_is_answered_as_interrupted() {
        let history = vec![
            message(Role::User, &[], None),
            message(Role::Assistant, &["a", "b"], None),
            message(Role::Tool, &[], Some("a")),
            // The process stopped here: `b` never got its result.
            message(Role::User, &[], None),
            message(Role::Assistant, &["c"], None),
        ];
        let repaired = answer_dangling_calls(history.into_iter());
        let shape: Vec<(Role, Option<&str>)> = repaired
            .iter()
            .map(|m| (m.role, m.tool_call_id.as_deref()))
            .collect();
        assert_eq!(
            shape,
            [
                (Role::User, None),
                (Role::Assistant, None),
                (Role::Tool, Some("a")),
                (Role::Tool, Some("b")),
                (Role::User, None),
                (Role::Assistant, None),
                (Role::Tool, Some("c")),
            ]
        );
        assert!(repaired[3].content.contains("interrupted"));
    }
}
