//! The agent loop: one chat turn, whatever door it came through.
//!
//! load history → store the user message → ask the provider → run the tool
//! calls it asks for (concurrently) → ask again … → store the reply. Every
//! message is stored as it happens, the user's before the provider is
//! called, so nothing acknowledged is lost to a crash or a provider failure.
//! The turn reports its progress as [`AgentEvent`]s; the chat API collects
//! them into one answer or streams them.

mod upstream;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::plugins::provider::{ChatMessage, Completion, CompletionRequest, Plan, Role, ToolCall};
use crate::plugins::{Plugin, Registry, Runtime, Snapshot};
use crate::store::{Conversation, NewMessage, Store, StoreError, StoredMessage};
use upstream::Upstream;

const SYSTEM_PROMPT: &str = "You are the task assistant of wasmgate. You help the user manage their \
to-do list with the tools you have: add_task, list_tasks, complete_task, update_task and \
delete_task. To act on a task named by its title, list the tasks first to find its id. Confirm \
every action in one friendly sentence. If a task is not found, say so plainly and suggest listing \
the tasks. Never invent task ids.";

/// Longest title a new conversation takes from its first message.
const TITLE_CHARS: usize = 60;

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

/// What a turn reports as it goes.
#[derive(Debug, Clone)]
pub enum AgentEvent {
    /// The user message is stored.
    Started {
        conversation_id: i64,
        user_message_id: i64,
    },
    /// Assistant text as it arrives (token by token when the provider streams).
    TextDelta(String),
    ToolCall(ToolCallRecord),
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
}

/// Where a turn's events go; a gone receiver (a client that left) does not
/// stop the turn.
pub struct EventSink(Option<mpsc::Sender<AgentEvent>>);

impl EventSink {
    pub fn new(sender: Option<mpsc::Sender<AgentEvent>>) -> Self {
        EventSink(sender)
    }

    async fn send(&self, event: AgentEvent) {
        if let Some(sender) = &self.0 {
            let _ = sender.send(event).await;
        }
    }
}

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

        let conversation = self.conversation(user, conversation_id, &content).await?;
        let mut history = self.history(conversation.id).await?;
        let user_message = self
            .append(conversation.id, "user", content.clone())
            .await?;
        events
            .send(AgentEvent::Started {
                conversation_id: conversation.id,
                user_message_id: user_message.id,
            })
            .await;
        history.push(ChatMessage {
            role: Role::User,
            content,
            tool_calls: Vec::new(),
            tool_call_id: None,
        });

        let tools = snapshot.tools();
        let mut records = Vec::new();
        for _ in 0..self.config.max_rounds {
            let request = CompletionRequest {
                model,
                messages: &history,
                tools: &tools,
                stream,
            };
            let completion = self
                .provider_round(&provider, &request, stream, &events, conversation.id)
                .await?;

            if completion.tool_calls.is_empty() {
                let reply = self
                    .append(conversation.id, "assistant", completion.text.clone())
                    .await?;
                return Ok(TurnOutcome {
                    conversation_id: conversation.id,
                    message_id: reply.id,
                    response: completion.text,
                    tool_calls: records,
                });
            }

            let calls_json: Vec<Value> = completion
                .tool_calls
                .iter()
                .map(|call| json!({"id": call.id, "name": call.name, "arguments": call.arguments}))
                .collect();
            self.store
                .append_message(
                    conversation.id,
                    NewMessage {
                        role: "assistant",
                        content: completion.text.clone(),
                        tool_calls: Some(Value::Array(calls_json).to_string()),
                        ..Default::default()
                    },
                )
                .await?;
            history.push(ChatMessage {
                role: Role::Assistant,
                content: completion.text.clone(),
                tool_calls: completion.tool_calls.clone(),
                tool_call_id: None,
            });

            let results = self
                .run_tools(&snapshot, user, &completion.tool_calls, &events)
                .await;
            for record in results {
                let content = record.result.to_string();
                self.store
                    .append_message(
                        conversation.id,
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
        }

        let text = format!(
            "I stopped after {} steps without finishing; please try again with a simpler request.",
            self.config.max_rounds
        );
        events.send(AgentEvent::TextDelta(text.clone())).await;
        let reply = self
            .append(conversation.id, "assistant", text.clone())
            .await?;
        Ok(TurnOutcome {
            conversation_id: conversation.id,
            message_id: reply.id,
            response: text,
            tool_calls: records,
        })
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
                let title: String = content.trim().chars().take(TITLE_CHARS).collect();
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
        history.extend(stored[start..].iter().filter_map(to_chat_message));
        Ok(history)
    }

    async fn provider_round(
        &self,
        provider: &Arc<Plugin>,
        request: &CompletionRequest<'_>,
        stream: bool,
        events: &EventSink,
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
                Plan::Reply(completion) => {
                    if !completion.text.is_empty() {
                        events
                            .send(AgentEvent::TextDelta(completion.text.clone()))
                            .await;
                    }
                    Ok(completion)
                }
                Plan::Send(http) => self
                    .upstream
                    .round(&self.runtime, provider, http, stream, events)
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

    /// Runs the calls of one round concurrently, each for `user`.
    async fn run_tools(
        &self,
        snapshot: &Snapshot,
        user: &str,
        calls: &[ToolCall],
        events: &EventSink,
    ) -> Vec<ToolCallRecord> {
        for call in calls {
            events
                .send(AgentEvent::ToolCall(record(call, Value::Null, false)))
                .await;
        }
        let runs = calls.iter().map(|call| async move {
            let outcome = match snapshot.tool(&call.name) {
                Some((plugin, _)) => {
                    self.runtime
                        .call_tool(plugin, user, &call.name, &call.arguments)
                        .await
                }
                None => Err(crate::plugins::CallError::UnknownTool(call.name.clone())),
            };
            match outcome {
                Ok(result) => record(call, result, false),
                Err(err) => {
                    tracing::info!(tool = %call.name, error = %err, "tool call failed");
                    record(call, json!({ "error": err.to_string() }), true)
                }
            }
        });
        let records = futures::future::join_all(runs).await;
        for record in &records {
            events.send(AgentEvent::ToolResult(record.clone())).await;
        }
        records
    }
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
    let role = match message.role.as_str() {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
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
