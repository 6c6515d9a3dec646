//! The rounds of a turn: ask the provider, run the tool calls it asks for,
//! store each message as it happens, until the model answers with text.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use tracing::Instrument;

use super::ask::{self, ASK_USER};
use super::events::EventSink;
use super::history::{self, provider_call, stored_call};
use super::reply::Reply;
use super::upstream::UpstreamError;
use super::{
    Agent, AgentError, AgentEvent, MAX_TOOL_CALLS_PER_TURN, ModelChoice, ToolCallRecord,
    TurnOutcome,
};
use crate::audit::{Door, ToolInvocation};
use crate::auth::Caller;
use crate::plugins::provider::{ChatMessage, Completion, CompletionRequest, Plan, Role};
use crate::plugins::{CallError, Plugin, PluginKind, Snapshot, ToolError, ToolSpec};
use crate::store::{self, NewMessage, RoundUsage};
use crate::telemetry;

const SYSTEM_PROMPT: &str = "You are the task assistant of wasmgate. You help the user manage their \
to-do list with the tools you have: add_task, list_tasks, complete_task, update_task and \
delete_task. To act on a task named by its title, list the tasks first to find its id. Confirm \
every action in one friendly sentence. If a task is not found, say so plainly and suggest listing \
the tasks. Never invent task ids.";

/// Bytes of tool specs (names, descriptions, schemas) sent to the provider
/// per round; tools beyond it (in name order) are left out of the turn.
const MAX_TOOLS_BYTES: usize = 256 * 1024;

/// Stored in place of a reply the user cancelled; the model sees it as
/// context, a person never sees it.
const CANCELLED_NOTE: &str = "The user cancelled the previous reply before it finished.";

impl Agent {
    /// Answers the conversation as it stands (its last message is the
    /// user's): the turn after its user message is stored, and a retry.
    /// `known` is the conversation's messages when the caller has them.
    pub(super) async fn respond(
        &self,
        caller: &Caller,
        door: Door,
        (conversation_id, known): (i64, Option<Vec<store::StoredMessage>>),
        stream: bool,
        events: &EventSink,
    ) -> Result<TurnOutcome, AgentError> {
        // One snapshot for the whole turn: tools and provider stay the same
        // versions however long it runs, whatever reloads meanwhile.
        let snapshot = self.registry.snapshot();
        let providers = self.providers(&snapshot)?;
        let stored = match known {
            Some(messages) => messages,
            None => {
                self.store
                    .recent_messages(conversation_id, self.config.history_messages)
                    .await?
            }
        };
        // The user message answers the question the last turn ended with.
        if let [.., asked, said] = stored.as_slice()
            && said.role == store::Role::User
            && let Some(question) = asked.question.as_ref().filter(|q| q.answer.is_none())
        {
            self.store
                .answer_question(asked.id, &question.answered_by(&said.content))
                .await?;
        }
        let mut history = history::window(SYSTEM_PROMPT, &stored, history::MAX_HISTORY_BYTES);

        // The token's scopes choose the plugin tools the model is offered,
        // and `run_tools` refuses the rest however the model names them.
        // The host's `ask_user` comes first, so the budget never cuts it.
        let tools = within_budget(
            std::iter::once(ask::spec())
                .chain(
                    snapshot
                        .tools()
                        .into_iter()
                        .filter(|tool| caller.scopes.allow(tool.scope.as_deref())),
                )
                .collect(),
        );
        let mut records = Vec::new();
        for _ in 0..self.config.max_rounds {
            let reply = Reply::new(&self.store, conversation_id, events);
            if stream {
                reply.reserve().await?;
            }
            let round = self.answer_round(
                &providers,
                &history,
                &tools,
                stream,
                &reply,
                conversation_id,
            );
            let (completion, answered, took) = tokio::select! {
                answer = round => match answer {
                    Ok(answer) => answer,
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
            let calls: Vec<store::ToolCall> =
                completion.tool_calls.iter().map(stored_call).collect();
            let (message_id, created_at) = reply.finish(&completion.text, &calls).await?;
            let (input_tokens, output_tokens) = completion.usage.unwrap_or_default();
            self.record_round(
                RoundUsage {
                    user_id: caller.user.clone(),
                    conversation_id,
                    message_id: Some(message_id),
                    provider: answered.provider.clone(),
                    model: answered.model.clone(),
                    input_tokens: input_tokens.into(),
                    output_tokens: output_tokens.into(),
                    latency_ms: took.as_millis() as u64,
                },
                took,
            )
            .await?;
            if calls.is_empty() {
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
                tool_calls: calls.iter().map(provider_call).collect(),
                tool_call_id: None,
            });

            let budget = MAX_TOOL_CALLS_PER_TURN.saturating_sub(records.len());
            let results = self
                .run_tools(
                    &snapshot,
                    (caller, door),
                    (message_id, created_at),
                    &calls,
                    budget,
                    events,
                )
                .await;
            let asked = results.iter().find_map(ask::asked_by);
            for record in results {
                let content = record.result.clone().unwrap_or_default().to_string();
                self.store
                    .append_message(
                        conversation_id,
                        NewMessage::tool_result(
                            &record.id,
                            &record.name,
                            content.clone(),
                            record.is_error,
                        ),
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
            // A question for the person ends the turn; their answer is the next.
            if let Some(question) = asked {
                let message = self
                    .store
                    .append_message(conversation_id, NewMessage::question(question))
                    .await?;
                events.send(AgentEvent::Asked(message.clone())).await;
                return Ok(TurnOutcome {
                    conversation_id,
                    message_id: message.id,
                    response: message.content,
                    tool_calls: records,
                });
            }
        }

        let text = format!(
            "I stopped after {} steps without finishing; please try again with a simpler request.",
            self.config.max_rounds
        );
        let (message_id, _) = Reply::new(&self.store, conversation_id, events)
            .finish(&text, &[])
            .await?;
        Ok(TurnOutcome {
            conversation_id,
            message_id,
            response: text,
            tool_calls: records,
        })
    }

    /// Stores what a round cost (the budget counts it) and counts it for
    /// `/metrics`.
    async fn record_round(&self, usage: RoundUsage, took: Duration) -> Result<(), AgentError> {
        self.llm_metrics.record(&usage, took);
        self.store.record_usage(&usage).await?;
        Ok(())
    }

    /// Notes the cancel for the model's next turn.
    async fn cancelled(&self, conversation_id: i64) -> AgentError {
        let note = NewMessage::text(store::Role::Hidden, CANCELLED_NOTE);
        if let Err(err) = self.store.append_message(conversation_id, note).await {
            return err.into();
        }
        AgentError::Cancelled { conversation_id }
    }

    /// The providers of `WASMGATE_MODEL` loaded in `snapshot`, in order.
    fn providers<'s>(&'s self, snapshot: &'s Snapshot) -> Result<Vec<Candidate<'s>>, AgentError> {
        let loaded: Vec<Candidate> = self
            .models
            .iter()
            .filter_map(|choice| {
                let plugin = snapshot
                    .plugin(&choice.provider)
                    .filter(|p| p.kind() == PluginKind::Provider);
                if plugin.is_none() {
                    tracing::warn!(provider = %choice.provider, "a provider of WASMGATE_MODEL is not loaded; skipped");
                }
                plugin.map(|plugin| Candidate { plugin, choice })
            })
            .collect();
        if loaded.is_empty() {
            return Err(AgentError::ProviderMissing(self.models[0].provider.clone()));
        }
        Ok(loaded)
    }

    /// One round, answered by the first provider that can: a provider
    /// whose breaker is open is skipped, and one that cannot be reached,
    /// answers 429 or 5xx or is too slow hands the round to the next (unless
    /// its reply already started streaming). Any other failure is the
    /// request's, and no other provider is asked.
    async fn answer_round<'c>(
        &self,
        providers: &'c [Candidate<'_>],
        messages: &[ChatMessage],
        tools: &[&ToolSpec],
        stream: bool,
        reply: &Reply<'_>,
        conversation_id: i64,
    ) -> Result<(Completion, &'c ModelChoice, Duration), AgentError> {
        let mut failure = None;
        for candidate in providers {
            let key = candidate.choice.to_string();
            if let Some(open) = self.breakers.open_for(&key) {
                failure.get_or_insert(AgentError::Provider {
                    conversation_id,
                    message: format!(
                        "{key} keeps failing and is skipped for {} s more",
                        open.as_secs().max(1)
                    ),
                    unavailable: true,
                });
                continue;
            }
            let request = CompletionRequest {
                model: &candidate.choice.model,
                messages,
                tools,
                stream,
            };
            let started = Instant::now();
            let span = telemetry::chat_span(&candidate.choice.provider, &candidate.choice.model);
            let answer = self
                .provider_round(candidate.plugin, &request, reply, conversation_id)
                .instrument(span.clone())
                .await;
            match &answer {
                Ok(completion) => telemetry::record_answer(
                    &span,
                    &candidate.choice.model,
                    completion.usage,
                    &completion.finish_reason,
                    &completion.text,
                ),
                Err(err) => {
                    span.record("error.type", err.kind());
                }
            }
            match answer {
                Ok(completion) => {
                    self.breakers.succeeded(&key);
                    return Ok((completion, candidate.choice, started.elapsed()));
                }
                Err(err) if err.provider_unavailable() => {
                    if self.breakers.failed(&key) {
                        tracing::warn!(provider = %key, "provider keeps failing; its circuit is open");
                    }
                    if reply.streamed() {
                        return Err(err);
                    }
                    tracing::warn!(provider = %key, error = %err, "provider unavailable; trying the next");
                    failure = Some(err);
                }
                Err(err) => return Err(err),
            }
        }
        Err(failure.expect("providers() returns at least one"))
    }

    async fn provider_round(
        &self,
        provider: &Arc<Plugin>,
        request: &CompletionRequest<'_>,
        reply: &Reply<'_>,
        conversation_id: i64,
    ) -> Result<Completion, AgentError> {
        let failed = |err: UpstreamError| AgentError::Provider {
            conversation_id,
            unavailable: matches!(err, UpstreamError::Unavailable(_)),
            message: err.to_string(),
        };
        let round = async {
            match self
                .runtime
                .prepare(provider, request)
                .await
                .map_err(|err| failed(UpstreamError::Failed(err.to_string())))?
            {
                // Reported when the reply is finished.
                Plan::Reply(completion) => Ok(completion),
                Plan::Send(http) => self
                    .upstream
                    .round(&self.runtime, provider, http, request.stream, reply)
                    .await
                    .map_err(failed),
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

    /// Runs the calls of one round concurrently, each for the caller (and
    /// audited as coming through `door`); calls beyond the first `budget`
    /// are answered with an error instead.
    async fn run_tools(
        &self,
        snapshot: &Snapshot,
        (caller, door): (&Caller, Door),
        (message_id, created_at): (i64, String),
        calls: &[store::ToolCall],
        budget: usize,
        events: &EventSink,
    ) -> Vec<ToolCallRecord> {
        let pending: Vec<ToolCallRecord> = calls.iter().map(ToolCallRecord::pending).collect();
        events
            .send(AgentEvent::ToolCalls {
                message_id,
                created_at,
                calls: pending.clone(),
            })
            .await;
        let mut runs: futures::stream::FuturesUnordered<_> = calls
            .iter()
            .zip(pending)
            .enumerate()
            .map(|(index, (call, pending))| async move {
                let offered = snapshot
                    .tool(&call.name)
                    .filter(|(_, spec)| caller.scopes.allow(spec.scope.as_deref()));
                let outcome = match offered {
                    _ if index >= budget => Err(CallError::Budget(format!(
                        "this turn has run its {MAX_TOOL_CALLS_PER_TURN} tool calls"
                    ))),
                    // The host's own: the turn ends with the question.
                    _ if call.name == ASK_USER => ask::question(&pending.arguments)
                        .map(|_| json!({ "status": "asked" }))
                        .map_err(|err| CallError::Tool(ToolError::InvalidArguments(err))),
                    Some((plugin, _)) => {
                        self.audit
                            .call_tool(
                                &self.runtime,
                                plugin,
                                (&caller.user, door),
                                ToolInvocation {
                                    tool: &call.name,
                                    arguments: &call.arguments,
                                    id: Some(&call.id),
                                },
                            )
                            .await
                    }
                    None => Err(CallError::UnknownTool(call.name.clone())),
                };
                let record = match outcome {
                    Ok(result) => pending.answered(result, false),
                    Err(err) => {
                        tracing::info!(tool = %call.name, error = %err, "tool call failed");
                        pending.answered(json!({ "error": err.to_string() }), true)
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

/// A provider of `WASMGATE_MODEL` that is loaded.
struct Candidate<'s> {
    plugin: &'s Arc<Plugin>,
    choice: &'s ModelChoice,
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
