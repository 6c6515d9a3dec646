//! The assistant message a provider round is writing.
//!
//! A streamed round stores its message before the provider is asked (an
//! empty row the round then completes), so that the first token goes out
//! without waiting on the database, every front door can name the reply by
//! its id while it streams, and a turn cancelled mid-reply keeps the text
//! streamed so far. A reply that arrives whole is stored once, at the end.

use std::sync::Mutex;

use super::AgentEvent;
use super::events::EventSink;
use crate::store::{NewMessage, Role, Store, StoreError, StoredMessage, ToolCall};

pub(super) struct Reply<'a> {
    store: &'a Store,
    conversation_id: i64,
    events: &'a EventSink,
    /// Only ever locked between awaits.
    state: Mutex<ReplyState>,
}

#[derive(Default)]
struct ReplyState {
    /// The stored row, once reserved (or made by the first token).
    row: Option<StoredMessage>,
    /// Whether `ReplyStarted` went out: the reply is being shown.
    announced: bool,
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

    /// Stores the empty row a streamed round will complete.
    pub async fn reserve(&self) -> Result<(), StoreError> {
        let row = self.insert(String::new(), Vec::new()).await?;
        self.state().row = Some(row);
        Ok(())
    }

    /// A streamed token: announces the reply on the first one (storing its
    /// row if none was reserved), then passes the token on.
    pub async fn delta(&self, text: String) {
        if text.is_empty() {
            return;
        }
        let (row, announced, failed) = {
            let state = self.state();
            (state.row.clone(), state.announced, state.failed)
        };
        if !announced && !failed {
            let row = match row {
                Some(row) => Ok(row),
                None => self.insert(String::new(), Vec::new()).await,
            };
            match row {
                Ok(row) => {
                    let started = AgentEvent::ReplyStarted {
                        message_id: row.id,
                        created_at: row.created_at.clone(),
                    };
                    // Recorded before the send, which may be where a cancel
                    // stops this future: the row must not be forgotten.
                    {
                        let mut state = self.state();
                        state.row = Some(row);
                        state.announced = true;
                    }
                    self.events.send(started).await;
                }
                Err(_) => self.state().failed = true,
            }
        }
        self.state().text.push_str(&text);
        self.events.send(AgentEvent::TextDelta(text)).await;
    }

    /// Whether the reply started showing: a round that streamed text cannot
    /// be handed to another provider.
    pub fn streamed(&self) -> bool {
        self.state().announced
    }

    /// Stores the round's complete message (its text and any tool calls)
    /// and reports it; returns its id and creation time.
    pub async fn finish(
        &self,
        text: &str,
        tool_calls: &[ToolCall],
    ) -> Result<(i64, String), StoreError> {
        let (row, announced, failed) = {
            let state = self.state();
            (state.row.clone(), state.announced, state.failed)
        };
        if failed {
            return Err(StoreError);
        }
        let row = match row {
            Some(row) => {
                self.store.finish_message(row.id, text, tool_calls).await?;
                row
            }
            None => self.insert(text.to_string(), tool_calls.to_vec()).await?,
        };
        // A message is shown as a reply when it says something, or when it
        // is all the round produced.
        let shown = announced || !text.is_empty() || tool_calls.is_empty();
        if shown && !announced {
            // Text that arrived whole is reported as one delta.
            self.events
                .send(AgentEvent::ReplyStarted {
                    message_id: row.id,
                    created_at: row.created_at.clone(),
                })
                .await;
            if !text.is_empty() {
                self.events
                    .send(AgentEvent::TextDelta(text.to_string()))
                    .await;
            }
        }
        if shown {
            self.events
                .send(AgentEvent::ReplyDone {
                    message_id: row.id,
                    text: text.to_string(),
                })
                .await;
        }
        Ok((row.id, row.created_at))
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
            Some(row) => self.store.finish_message(row.id, &text, &[]).await,
            None => Ok(()),
        }
    }

    async fn insert(
        &self,
        content: String,
        tool_calls: Vec<ToolCall>,
    ) -> Result<StoredMessage, StoreError> {
        let message = NewMessage {
            tool_calls,
            ..NewMessage::text(Role::Assistant, content)
        };
        self.store
            .append_message(self.conversation_id, message)
            .await
    }
}
