//! A turn as a ChatKit event stream.
//!
//! The agent's events become ChatKit's, in the ChatKit protocol's order: the user
//! message (`thread.item.done`) and `stream_options` first, then each reply
//! as `thread.item.added` → `content_part.added` → `text_delta`s →
//! `content_part.done` → `thread.item.done`, and each round of tool calls
//! as a workflow whose tasks complete as results arrive. A failed turn ends
//! with an `error` event, after closing the items it left open. A client
//! that disconnects cancels the turn at once: the agent keeps the text
//! streamed so far.

use std::convert::Infallible;

use axum::response::IntoResponse;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use tokio::sync::mpsc;

use super::items::{self, ItemId};
use super::types::{Event, ItemUpdate, OutputText, Page, StreamOptions, ThreadItem};
use crate::agent::{AgentError, AgentEvent, ToolCallRecord, Turn, TurnOutcome};

/// A turn's events as the SSE answer (`retry`: the turn answers a stored
/// message again, so it has no user message of its own).
pub fn answer(
    turn: Turn,
    retry: bool,
    image_domains: Vec<String>,
    replaced: Option<ThreadItem>,
) -> impl IntoResponse {
    let (out, out_rx) = mpsc::channel::<Event>(64);
    let opening = opening(&turn, retry, &image_domains, replaced);
    tokio::spawn(run(turn, opening, out));
    sse_answer(out_rx)
}

/// Nothing to run: `stream_options`, then `event`.
pub fn notice(event: Event) -> impl IntoResponse {
    let (out, out_rx) = mpsc::channel::<Event>(2);
    let _ = out.try_send(stream_options());
    let _ = out.try_send(event);
    sse_answer(out_rx)
}

fn sse_answer(events: mpsc::Receiver<Event>) -> impl IntoResponse {
    let stream = futures::stream::unfold(events, |mut rx| async move {
        let event = rx.recv().await?;
        let sse = SseEvent::default().data(serde_json::to_string(&event).unwrap_or_default());
        Some((Ok::<_, Infallible>(sse), rx))
    });
    // A comment line every 15 s while the model or a tool takes its time,
    // so that proxies and load balancers do not close the stream as idle
    // (SSE clients skip comments).
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn stream_options() -> Event {
    Event::StreamOptions {
        stream_options: StreamOptions { allow_cancel: true },
    }
}

/// What the stream opens with: a new thread is announced; an item the
/// request changed is replaced; a retry has no user message, so its stream
/// options come first.
fn opening(
    turn: &Turn,
    retry: bool,
    image_domains: &[String],
    replaced: Option<ThreadItem>,
) -> Option<Event> {
    if turn.created {
        Some(Event::ThreadCreated {
            thread: items::thread(&turn.conversation, Page::empty(), image_domains),
        })
    } else if let Some(item) = replaced {
        Some(Event::ItemReplaced { item })
    } else if retry {
        Some(stream_options())
    } else {
        None
    }
}

async fn run(turn: Turn, opening: Option<Event>, out: mpsc::Sender<Event>) {
    let thread_id = items::thread_id(turn.conversation.id);
    let (mut events_rx, outcome) = turn.split();
    if let Some(event) = opening
        && out.send(event).await.is_err()
    {
        return;
    }

    let mut mapper = Mapper::new(thread_id);
    loop {
        // A client that leaves cancels at once, not at the next event.
        let event = tokio::select! {
            event = events_rx.recv() => event,
            () = out.closed() => break,
        };
        let Some(event) = event else {
            // The turn is over: a failure closes what is open, then says why.
            if let Some(error) = failure(outcome.await) {
                for event in mapper.close().into_iter().chain([error]) {
                    let _ = out.send(event).await;
                }
            }
            return;
        };
        for event in mapper.map(event) {
            if out.send(event).await.is_err() {
                break;
            }
        }
        if out.is_closed() {
            break;
        }
    }
    // The client left: dropping the receiver cancels the turn, which keeps
    // what streamed so far.
    drop(events_rx);
    let _ = outcome.await;
}

/// The `error` event for a failed turn; `None` for one that finished.
fn failure(outcome: Result<TurnOutcome, AgentError>) -> Option<Event> {
    let mut allow_retry = true;
    let message = match outcome {
        Ok(_) | Err(AgentError::Cancelled { .. }) => return None,
        Err(err @ (AgentError::Provider { .. } | AgentError::ProviderTimeout { .. })) => {
            format!("{err}. Your message was saved; try again.")
        }
        Err(AgentError::ConversationNotFound(_)) => {
            allow_retry = false;
            "This thread no longer exists.".into()
        }
        Err(err @ AgentError::Crashed(_)) => {
            tracing::error!(error = %err, "chatkit turn panicked");
            "The server could not finish the reply; try again shortly.".into()
        }
        Err(err) => {
            tracing::warn!(error = %err, "chatkit turn failed");
            "The server could not finish the reply; try again shortly.".into()
        }
    };
    Some(Event::Error {
        code: "custom",
        message: Some(message),
        allow_retry,
    })
}

/// Turns agent events into ChatKit events, remembering the open reply and
/// the running workflow.
struct Mapper {
    thread_id: String,
    reply: Option<OpenReply>,
    workflow: Option<Workflow>,
}

/// The assistant message being streamed.
struct OpenReply {
    message_id: i64,
    created_at: String,
    text: String,
}

struct Workflow {
    message_id: i64,
    created_at: String,
    calls: Vec<ToolCallRecord>,
    pending: usize,
}

impl Mapper {
    fn new(thread_id: String) -> Self {
        Mapper {
            thread_id,
            reply: None,
            workflow: None,
        }
    }

    fn map(&mut self, event: AgentEvent) -> Vec<Event> {
        match event {
            AgentEvent::Started { user_message, .. } => vec![
                Event::ItemDone {
                    item: items::user_message(&user_message, &self.thread_id),
                },
                stream_options(),
            ],
            AgentEvent::ReplyStarted {
                message_id,
                created_at,
            } => {
                let item = items::assistant_message_begun(message_id, &self.thread_id, &created_at);
                self.reply = Some(OpenReply {
                    message_id,
                    created_at,
                    text: String::new(),
                });
                vec![
                    Event::ItemAdded { item },
                    Event::ItemUpdated {
                        item_id: ItemId::Message(message_id).to_string(),
                        update: ItemUpdate::PartAdded {
                            content_index: 0,
                            content: OutputText::new(""),
                        },
                    },
                ]
            }
            AgentEvent::TextDelta(delta) => match &mut self.reply {
                Some(reply) => {
                    reply.text.push_str(&delta);
                    vec![Event::ItemUpdated {
                        item_id: ItemId::Message(reply.message_id).to_string(),
                        update: ItemUpdate::TextDelta {
                            content_index: 0,
                            delta,
                        },
                    }]
                }
                None => Vec::new(),
            },
            AgentEvent::ReplyDone { text, .. } => match self.reply.take() {
                Some(reply) => self.finish_reply(reply, text),
                None => Vec::new(),
            },
            AgentEvent::ToolCalls {
                message_id,
                created_at,
                calls,
            } => {
                let calls = items::shown_calls(&calls);
                if calls.is_empty() {
                    return Vec::new();
                }
                let item = items::workflow(message_id, &self.thread_id, &created_at, &calls);
                self.workflow = Some(Workflow {
                    message_id,
                    created_at,
                    pending: calls.len(),
                    calls,
                });
                vec![Event::ItemAdded { item }]
            }
            AgentEvent::ToolResult(record) => {
                let Some(workflow) = &mut self.workflow else {
                    return Vec::new();
                };
                let Some(index) = workflow.calls.iter().position(|c| c.id == record.id) else {
                    return Vec::new();
                };
                let task = items::task(&record);
                workflow.calls[index] = record;
                workflow.pending = workflow.pending.saturating_sub(1);
                let mut events = vec![Event::ItemUpdated {
                    item_id: ItemId::Workflow(workflow.message_id).to_string(),
                    update: ItemUpdate::TaskUpdated {
                        task_index: index,
                        task,
                    },
                }];
                if workflow.pending == 0 {
                    let done = self.workflow.take().expect("checked above");
                    events.push(self.finish_workflow(done));
                }
                events
            }
            AgentEvent::Asked(message) => match &message.question {
                Some(question) => vec![Event::ItemDone {
                    item: items::structured_input(
                        message.id,
                        &self.thread_id,
                        &message.created_at,
                        question,
                    ),
                }],
                None => Vec::new(),
            },
        }
    }

    fn finish_reply(&self, reply: OpenReply, text: String) -> Vec<Event> {
        let id = ItemId::Message(reply.message_id).to_string();
        vec![
            Event::ItemUpdated {
                item_id: id,
                update: ItemUpdate::PartDone {
                    content_index: 0,
                    content: OutputText::new(text.clone()),
                },
            },
            Event::ItemDone {
                item: items::assistant_message(
                    reply.message_id,
                    &self.thread_id,
                    &reply.created_at,
                    &text,
                ),
            },
        ]
    }

    fn finish_workflow(&self, workflow: Workflow) -> Event {
        Event::ItemDone {
            item: items::workflow(
                workflow.message_id,
                &self.thread_id,
                &workflow.created_at,
                &workflow.calls,
            ),
        }
    }

    /// Closes what a failed turn left open, as it was stored: the text
    /// streamed so far, the tool calls that finished.
    fn close(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        if let Some(workflow) = self.workflow.take() {
            events.push(self.finish_workflow(workflow));
        }
        if let Some(reply) = self.reply.take() {
            let text = reply.text.clone();
            events.extend(self.finish_reply(reply, text));
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::store::{Role, StoredMessage};

    /// One ChatKit event in a line: its type, the item it touches, and
    /// what matters of its payload.
    fn describe(event: &Event) -> String {
        let event = serde_json::to_value(event).unwrap();
        let kind = event["type"].as_str().unwrap();
        let item = &event["item"];
        match kind {
            "thread.item.added" | "thread.item.done" => {
                let detail = match item["type"].as_str().unwrap() {
                    "assistant_message" => item["content"].to_string(),
                    "workflow" => item["workflow"]["tasks"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t["status_indicator"].as_str().unwrap())
                        .collect::<Vec<_>>()
                        .join(","),
                    _ => String::new(),
                };
                format!(
                    "{kind} {} {} {detail}",
                    item["id"].as_str().unwrap(),
                    item["type"].as_str().unwrap()
                )
                .trim_end()
                .to_string()
            }
            "thread.item.updated" => {
                let update = &event["update"];
                let detail = [
                    &update["delta"],
                    &update["content"]["text"],
                    &update["task_index"],
                ]
                .into_iter()
                .find(|v| !v.is_null())
                .map(Value::to_string)
                .unwrap_or_default();
                format!(
                    "updated {} {} {detail}",
                    event["item_id"].as_str().unwrap(),
                    update["type"].as_str().unwrap()
                )
            }
            other => other.to_string(),
        }
    }

    fn user_message(id: i64) -> StoredMessage {
        StoredMessage::fixture(id, Role::User, "add milk")
    }

    fn call(id: &str, result: Option<Value>) -> ToolCallRecord {
        ToolCallRecord {
            id: id.into(),
            name: "add_task".into(),
            arguments: json!({"title": "milk"}),
            result,
            is_error: false,
        }
    }

    /// Maps `events`, then closes what is still open (as a failed turn
    /// does), and compares the described ChatKit events with `expect`.
    fn check(events: Vec<AgentEvent>, expect: &[&str]) {
        let mut mapper = Mapper::new(items::thread_id(1));
        let mut mapped: Vec<Event> = events.into_iter().flat_map(|e| mapper.map(e)).collect();
        mapped.extend(mapper.close());
        let got: Vec<String> = mapped.iter().map(describe).collect();
        assert_eq!(got, expect);
    }

    fn started(id: i64) -> AgentEvent {
        AgentEvent::ReplyStarted {
            message_id: id,
            created_at: "2026-12-01T12:00:01Z".into(),
        }
    }

    #[test]
    fn a_streamed_reply() {
        check(
            vec![
                AgentEvent::Started {
                    user_message: user_message(1),
                },
                started(2),
                AgentEvent::TextDelta("Hel".into()),
                AgentEvent::TextDelta("lo".into()),
                AgentEvent::ReplyDone {
                    message_id: 2,
                    text: "Hello".into(),
                },
            ],
            &[
                "thread.item.done msg_1 user_message",
                "stream_options",
                // The item opens empty; the part comes with its own event.
                "thread.item.added msg_2 assistant_message []",
                r#"updated msg_2 assistant_message.content_part.added """#,
                r#"updated msg_2 assistant_message.content_part.text_delta "Hel""#,
                r#"updated msg_2 assistant_message.content_part.text_delta "lo""#,
                r#"updated msg_2 assistant_message.content_part.done "Hello""#,
                r#"thread.item.done msg_2 assistant_message [{"annotations":[],"text":"Hello","type":"output_text"}]"#,
            ],
        );
    }

    #[test]
    fn tool_calls_are_a_workflow_done_when_every_call_is() {
        check(
            vec![
                AgentEvent::ToolCalls {
                    message_id: 3,
                    created_at: "t".into(),
                    calls: vec![call("a", None), call("b", None)],
                },
                AgentEvent::ToolResult(call("b", Some(json!({"ok": true})))),
                // A result for a call the workflow does not have is ignored.
                AgentEvent::ToolResult(call("zzz", Some(json!({})))),
                AgentEvent::ToolResult(call("a", Some(json!({"ok": true})))),
            ],
            &[
                "thread.item.added wf_3 workflow loading,loading",
                "updated wf_3 workflow.task.updated 1",
                "updated wf_3 workflow.task.updated 0",
                "thread.item.done wf_3 workflow complete,complete",
            ],
        );
    }

    #[test]
    fn a_failed_turn_closes_what_it_left_open_as_stored() {
        check(
            vec![
                AgentEvent::ToolCalls {
                    message_id: 3,
                    created_at: "t".into(),
                    calls: vec![call("a", None)],
                },
                started(4),
                AgentEvent::TextDelta("Hal".into()),
            ],
            &[
                "thread.item.added wf_3 workflow loading",
                "thread.item.added msg_4 assistant_message []",
                r#"updated msg_4 assistant_message.content_part.added """#,
                r#"updated msg_4 assistant_message.content_part.text_delta "Hal""#,
                "thread.item.done wf_3 workflow loading",
                r#"updated msg_4 assistant_message.content_part.done "Hal""#,
                r#"thread.item.done msg_4 assistant_message [{"annotations":[],"text":"Hal","type":"output_text"}]"#,
            ],
        );
    }
}
