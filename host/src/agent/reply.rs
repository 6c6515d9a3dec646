//! The assistant message a provider round is writing.
//!
//! A streamed reply is stored as soon as its first token arrives (an empty
//! row the round then completes), so that every front door can name it by
//! its id while it streams, and a turn cancelled mid-reply keeps the text
//! streamed so far. A reply that arrives whole is stored once, at the end.

use std::sync::Mutex;

use serde_json::{Value, json};

use super::{AgentEvent, EventSink};
use crate::plugins::provider::Completion;
use crate::store::{NewMessage, Store, StoreError, StoredMessage};

pub(super) struct Reply<'a> {
    store: &'a Store,
    conversation_id: i64,
    events: &'a EventSink,
    /// Only ever locked between awaits.
    state: Mutex<ReplyState>,
}

#[derive(Default)]
struct ReplyState {
    /// The stored row, once the first token made one.
    row: Option<StoredMessage>,
    text: String,
    /// A failed placeholder insert, reported when the round finishes.
    failed: bool,
}

impl<'a> Reply<'a> {
    pub fn new(store: &'a Store, conversation_id: i64, events: &'a EventSink) -> Self {
        Reply {
            store,
            conversation_id,
            events,
            state: Mutex::new(ReplyState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ReplyState> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// A streamed token: stores the placeholder row on the first one, then
    /// passes the token on.
    pub async fn delta(&self, text: String) {
        if text.is_empty() {
            return;
        }
        let needs_row = {
            let state = self.state();
            state.row.is_none() && !state.failed
        };
        if needs_row {
            match self.insert(String::new(), None).await {
                Ok(row) => {
                    let started = AgentEvent::ReplyStarted {
                        message_id: row.id,
                        created_at: row.created_at.clone(),
                    };
                    // Recorded before the send, which may be where a cancel
                    // stops this future: the row must not be forgotten.
                    self.state().row = Some(row);
                    self.events.send(started).await;
                }
                Err(_) => self.state().failed = true,
            }
        }
        self.state().text.push_str(&text);
        self.events.send(AgentEvent::TextDelta(text)).await;
    }

    /// Stores the round's complete message (its text and any tool calls)
    /// and reports it; returns its id and creation time.
    pub async fn finish(&self, completion: &Completion) -> Result<(i64, String), StoreError> {
        let tool_calls = (!completion.tool_calls.is_empty()).then(|| {
            let calls: Vec<Value> = completion
                .tool_calls
                .iter()
                .map(|call| json!({"id": call.id, "name": call.name, "arguments": call.arguments}))
                .collect();
            Value::Array(calls).to_string()
        });
        let (row, failed) = {
            let state = self.state();
            (state.row.clone(), state.failed)
        };
        if failed {
            return Err(StoreError);
        }
        // A message is shown as a reply when it says something, or when it
        // is all the round produced.
        let shown = row.is_some() || !completion.text.is_empty() || tool_calls.is_none();
        let (id, created_at) = match row {
            Some(row) => {
                self.store
                    .finish_message(row.id, &completion.text, tool_calls.as_deref())
                    .await?;
                (row.id, row.created_at)
            }
            None => {
                let row = self
                    .insert(completion.text.clone(), tool_calls.clone())
                    .await?;
                if shown {
                    // Text that arrived whole is reported as one delta.
                    self.events
                        .send(AgentEvent::ReplyStarted {
                            message_id: row.id,
                            created_at: row.created_at.clone(),
                        })
                        .await;
                    if !completion.text.is_empty() {
                        self.events
                            .send(AgentEvent::TextDelta(completion.text.clone()))
                            .await;
                    }
                }
                (row.id, row.created_at)
            }
        };
        if shown {
            self.events
                .send(AgentEvent::ReplyDone {
                    message_id: id,
                    text: completion.text.clone(),
                })
                .await;
        }
        Ok((id, created_at))
    }

    /// Keeps what streamed before a cancel or a failure; a placeholder that
    /// got no text is removed.
    pub async fn keep_partial(&self) -> Result<(), StoreError> {
        let (row, text) = {
            let state = self.state();
            (state.row.clone(), state.text.clone())
        };
        match row {
            Some(row) if text.is_empty() => self.store.delete_message(row.id).await,
            Some(row) => self.store.finish_message(row.id, &text, None).await,
            None => Ok(()),
        }
    }

    async fn insert(
        &self,
        content: String,
        tool_calls: Option<String>,
    ) -> Result<StoredMessage, StoreError> {
        let message = NewMessage {
            role: "assistant",
            content,
            tool_calls,
            ..Default::default()
        };
        self.store
            .append_message(self.conversation_id, message)
            .await
    }
}
