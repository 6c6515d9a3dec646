//! The agent loop: one chat turn, whatever door it came through.
//!
//! A door hands [`Agent::start`] what the user asked ([`TurnRequest`]); the
//! agent checks it (the message rules, the per-user turn limit), opens the
//! conversation (a new one takes its title from the first message), and
//! runs the turn in its own task: load history → store the user message →
//! ask the provider → run the tool calls it asks for (concurrently) → ask
//! again … → store the reply. Every message is stored as it happens, the
//! user's before the provider is called, so nothing acknowledged is lost to
//! a crash or a provider failure. The running [`Turn`] reports its progress
//! as [`AgentEvent`]s and ends with a [`TurnOutcome`]; each door only maps
//! those onto its wire format.

pub mod ask;
mod breaker;
mod events;
mod history;
mod rate_limit;
mod reply;
mod rounds;
mod upstream;
pub mod usage;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::audit::{Audit, Door};
use crate::auth::Caller;
use crate::plugins::{Registry, Runtime};
pub use crate::store::ToolCallRecord;
use crate::store::{Conversation, NewMessage, Role, Store, StoreError, StoredMessage};
use breaker::Breakers;
use events::EventSink;
use rate_limit::RateLimiter;
pub use rate_limit::Windows;
use tracing::Instrument;
use upstream::Upstream;
use usage::{DailyBudget, LlmMetrics};

/// Longest title a new conversation takes from its first message.
const TITLE_CHARS: usize = 60;

/// Longest user message accepted, in characters, whatever the door.
pub const MAX_MESSAGE_CHARS: usize = 8000;

/// Tool calls one turn may run, over all its rounds; further calls are
/// answered with an error without running.
pub const MAX_TOOL_CALLS_PER_TURN: usize = 64;

/// Why a text cannot be a user message: whatever the door, the same rules.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MessageProblem {
    #[error("the message has no text")]
    Empty,
    #[error("the message must be at most {MAX_MESSAGE_CHARS} characters")]
    TooLong,
    #[error("the message must not contain the control character U+{:04X}", *.0 as u32)]
    ControlCharacter(char),
}

fn check_message(content: &str) -> Result<(), MessageProblem> {
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
fn title_from(content: &str) -> String {
    content.trim().chars().take(TITLE_CHARS).collect()
}

pub struct AgentConfig {
    /// `<provider plugin>[:<model>]`, e.g. `rules` or `openai:gpt-4o-mini`,
    /// or several, comma-separated: the first answers, the next when it
    /// is unavailable.
    pub model: String,
    /// Failures in a row that open a provider's circuit breaker; 0 never.
    pub breaker_failures: u32,
    /// How long an open breaker skips its provider.
    pub breaker_cool_down: Duration,
    /// Provider rounds per turn before giving up.
    pub max_rounds: usize,
    /// Stored messages sent to the provider as history.
    pub history_messages: i64,
    /// Longest a provider round (send, wait, read) may take.
    pub provider_timeout: Duration,
    /// Turns one user may start per minute, whatever the door; 0 for no limit.
    pub turns_per_minute: u32,
    /// Where those turns are counted.
    pub turn_windows: Windows,
    /// Tokens one user may spend per UTC day; 0 for no limit.
    pub daily_tokens: u64,
}

pub struct Agent {
    runtime: Arc<Runtime>,
    audit: Arc<Audit>,
    registry: Arc<Registry>,
    store: Store,
    upstream: Upstream,
    turn_limiter: RateLimiter,
    /// The providers of `config.model`, in order (at least one).
    models: Vec<ModelChoice>,
    breakers: Breakers,
    budget: DailyBudget,
    /// Tokens and latency of provider rounds, for `/metrics`.
    pub llm_metrics: LlmMetrics,
    config: AgentConfig,
}

/// What a door asks a turn to do.
#[derive(Debug, Clone)]
pub enum TurnRequest {
    /// Answer a new user message, in conversation `conversation_id` or, for
    /// `None`, in a new one.
    Message {
        conversation_id: Option<i64>,
        content: String,
    },
    /// Answer user message `message_id` again: every later message of its
    /// conversation is deleted first (ChatKit's retry).
    Retry {
        conversation_id: i64,
        message_id: i64,
    },
}

/// How a door takes the turn's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Whole, at the end; the turn runs to its end whoever waits for it.
    Whole,
    /// Token by token; the turn runs to its end even if the listener leaves.
    Streamed,
    /// Token by token; the listener leaving cancels the turn (ChatKit's stop
    /// button), keeping what streamed so far.
    StreamedCancellable,
}

/// A turn that has started: its conversation, its events as they happen,
/// and its outcome once it ends.
pub struct Turn {
    pub conversation: Conversation,
    /// Whether the turn created its conversation.
    pub created: bool,
    /// The turn's progress; for [`Delivery::StreamedCancellable`], dropping
    /// this cancels the turn.
    pub events: mpsc::Receiver<AgentEvent>,
    running: tokio::task::JoinHandle<Result<TurnOutcome, AgentError>>,
}

impl Turn {
    /// Waits for the turn to end.
    pub async fn outcome(self) -> Result<TurnOutcome, AgentError> {
        drop(self.events);
        Self::join(self.running).await
    }

    /// The events and the outcome apart, for a door that reads the events
    /// and then the outcome.
    pub fn split(
        self,
    ) -> (
        mpsc::Receiver<AgentEvent>,
        impl Future<Output = Result<TurnOutcome, AgentError>>,
    ) {
        (self.events, Self::join(self.running))
    }

    async fn join(
        running: tokio::task::JoinHandle<Result<TurnOutcome, AgentError>>,
    ) -> Result<TurnOutcome, AgentError> {
        running
            .await
            .unwrap_or_else(|join| Err(AgentError::Crashed(join.to_string())))
    }
}

/// What a turn reports as it goes, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    /// The user message is stored (not sent for a retry).
    Started { user_message: StoredMessage },
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
    /// The turn ends with a question for the person (the host's
    /// `ask_user`): this stored message, which carries it.
    Asked(StoredMessage),
}

/// A finished turn.
#[derive(Debug, Clone)]
pub struct TurnOutcome {
    pub conversation_id: i64,
    pub message_id: i64,
    pub response: String,
    pub tool_calls: Vec<ToolCallRecord>,
}

/// One entry of `WASMGATE_MODEL`: a provider plugin and the model name it
/// is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelChoice {
    pub provider: String,
    /// Empty for a provider with one model (`rules`).
    pub model: String,
}

impl ModelChoice {
    /// `openai:gpt-4o-mini, anthropic:claude-…`, in order; an empty list is
    /// `rules`.
    pub fn parse_list(text: &str) -> Vec<ModelChoice> {
        let list: Vec<ModelChoice> = text
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| match entry.split_once(':') {
                Some((provider, model)) => ModelChoice {
                    provider: provider.trim().to_string(),
                    model: model.trim().to_string(),
                },
                None => ModelChoice {
                    provider: entry.to_string(),
                    model: String::new(),
                },
            })
            .collect();
        if list.is_empty() {
            return ModelChoice::parse_list("rules");
        }
        list
    }
}

impl std::fmt::Display for ModelChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.model.as_str() {
            "" => write!(f, "{}", self.provider),
            model => write!(f, "{}:{model}", self.provider),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    InvalidMessage(#[from] MessageProblem),
    /// The user's turns for this minute are spent; the wait until the next.
    #[error("too many turns; try again in {} s", .0.as_secs().max(1))]
    RateLimited(Duration),
    /// The user spent today's token budget; the wait until it resets.
    #[error("today's budget of {budget} tokens is spent; it resets in {} s", .reset_in.as_secs())]
    BudgetExceeded { budget: u64, reset_in: Duration },
    #[error("conversation {0} not found")]
    ConversationNotFound(i64),
    #[error("message {0} not found")]
    MessageNotFound(i64),
    #[error("message {0} is not a user message; a retry answers a user message")]
    NotAUserMessage(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The provider failed or answered nonsense; the user message is stored.
    #[error("the model provider failed: {message}")]
    Provider {
        conversation_id: i64,
        message: String,
        /// Unreachable, 429 or 5xx: another provider may answer.
        unavailable: bool,
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
    /// The turn's task panicked (a bug; logged where it is mapped).
    #[error("the turn stopped unexpectedly: {0}")]
    Crashed(String),
}

impl AgentError {
    /// A short name of the error, for a span's `error.type`.
    pub fn kind(&self) -> &'static str {
        match self {
            AgentError::Provider {
                unavailable: true, ..
            } => "provider_unavailable",
            AgentError::Provider { .. } => "provider_error",
            AgentError::ProviderTimeout { .. } => "timeout",
            AgentError::Cancelled { .. } => "cancelled",
            AgentError::Store(_) => "storage_unavailable",
            _ => "error",
        }
    }

    /// Whether the provider was unavailable (unreachable, 429 or 5xx after
    /// its retries, or too slow), so that the next provider may answer.
    pub fn provider_unavailable(&self) -> bool {
        matches!(
            self,
            AgentError::Provider {
                unavailable: true,
                ..
            } | AgentError::ProviderTimeout { .. }
        )
    }
}

impl Agent {
    pub fn new(
        runtime: Arc<Runtime>,
        registry: Arc<Registry>,
        store: Store,
        audit: Arc<Audit>,
        config: AgentConfig,
    ) -> Agent {
        Agent {
            audit,
            upstream: Upstream::new(config.provider_timeout),
            turn_limiter: RateLimiter::new(config.turns_per_minute, config.turn_windows.clone()),
            models: ModelChoice::parse_list(&config.model),
            breakers: Breakers::new(config.breaker_failures, config.breaker_cool_down),
            budget: DailyBudget {
                tokens: config.daily_tokens,
            },
            llm_metrics: LlmMetrics::default(),
            runtime,
            registry,
            store,
            config,
        }
    }

    /// Counts a turn of `user` against the turn rate, then checks the
    /// daily token budget.
    async fn admit(&self, user: &str) -> Result<(), AgentError> {
        self.turn_limiter.check(user).await?;
        self.budget.check(&self.store, user).await
    }

    /// Starts a turn of `user` through `door`: checks the request, counts it against the
    /// user's turn limit, opens its conversation, and runs it in a task of
    /// its own, so that a door whose client hangs up does not cut it short
    /// (unless `delivery` asks for that).
    pub async fn start(
        self: &Arc<Self>,
        caller: &Caller,
        door: Door,
        request: TurnRequest,
        delivery: Delivery,
    ) -> Result<Turn, AgentError> {
        let user = caller.user.as_str();
        let (conversation, created) = match &request {
            TurnRequest::Message {
                conversation_id,
                content,
            } => {
                check_message(content)?;
                self.admit(user).await?;
                match conversation_id {
                    Some(id) => {
                        let mut conversation = self.own_conversation(user, *id).await?;
                        // Opened empty (a ChatKit session): its first message names it.
                        if conversation.title.is_none() {
                            let title = title_from(content);
                            conversation = self
                                .store
                                .rename_conversation(user, *id, &title)
                                .await?
                                .ok_or(AgentError::ConversationNotFound(*id))?;
                        }
                        (conversation, false)
                    }
                    None => {
                        let title = title_from(content);
                        let created = self.store.create_conversation(user, Some(&title)).await?;
                        (created, true)
                    }
                }
            }
            TurnRequest::Retry {
                conversation_id,
                message_id,
            } => {
                let conversation = self.own_conversation(user, *conversation_id).await?;
                let message = self
                    .store
                    .message(conversation.id, *message_id)
                    .await?
                    .ok_or(AgentError::MessageNotFound(*message_id))?;
                if message.role != Role::User {
                    return Err(AgentError::NotAUserMessage(*message_id));
                }
                self.admit(user).await?;
                self.store
                    .delete_messages_after(conversation.id, message.id)
                    .await?;
                (conversation, false)
            }
        };

        let (sender, events) = mpsc::channel(64);
        let sink = match delivery {
            Delivery::StreamedCancellable => EventSink::cancelling(sender),
            Delivery::Whole | Delivery::Streamed => EventSink::new(sender),
        };
        let stream = delivery != Delivery::Whole;
        let (agent, caller, conversation_id) = (self.clone(), caller.clone(), conversation.id);
        // A child of the request's span, though it runs in a task of its own.
        let span = crate::telemetry::turn_span(door.as_str(), conversation_id);
        let running = tokio::spawn(
            async move {
                let mut known = None;
                if let TurnRequest::Message { content, .. } = request {
                    let user_message = agent
                        .store
                        .append_message(conversation_id, NewMessage::text(Role::User, content))
                        .await?;
                    // A new conversation holds this message alone: no need
                    // to read it back.
                    if created {
                        known = Some(vec![user_message.clone()]);
                    }
                    sink.send(AgentEvent::Started { user_message }).await;
                }
                agent
                    .respond(&caller, door, (conversation_id, known), stream, &sink)
                    .await
            }
            .instrument(span),
        );
        Ok(Turn {
            conversation,
            created,
            events,
            running,
        })
    }

    /// The user's conversation `id`; not found for anyone else's.
    async fn own_conversation(&self, user: &str, id: i64) -> Result<Conversation, AgentError> {
        self.store
            .conversation(user, id)
            .await?
            .ok_or(AgentError::ConversationNotFound(id))
    }
}

#[cfg(test)]
mod tests {
    use super::ModelChoice;

    #[test]
    fn the_model_list_is_ordered_and_trimmed() {
        let list = ModelChoice::parse_list("openai:gpt-4o-mini, anthropic:claude-x ,rules");
        let shown: Vec<String> = list.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["openai:gpt-4o-mini", "anthropic:claude-x", "rules"]);
        assert_eq!(ModelChoice::parse_list(" ")[0].provider, "rules");
    }
}
