//! Where a turn's events go.

use tokio::sync::mpsc;

use super::AgentEvent;

/// The sending end of a turn's events. A gone receiver (a client that
/// left) does not stop the turn, unless the sink was made with
/// [`EventSink::cancelling`].
pub(super) struct EventSink {
    sender: mpsc::Sender<AgentEvent>,
    cancel_on_close: bool,
}

impl EventSink {
    pub fn new(sender: mpsc::Sender<AgentEvent>) -> Self {
        EventSink {
            sender,
            cancel_on_close: false,
        }
    }

    /// Events to `sender`; the turn is cancelled when its receiver is dropped.
    pub fn cancelling(sender: mpsc::Sender<AgentEvent>) -> Self {
        EventSink {
            sender,
            cancel_on_close: true,
        }
    }

    /// Sends `event`; nothing happens when no one listens any more.
    pub async fn send(&self, event: AgentEvent) {
        let _ = self.sender.send(event).await;
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel_on_close && self.sender.is_closed()
    }

    /// Resolves when the turn is cancelled; never for a sink that does not cancel.
    pub async fn cancelled(&self) {
        if self.cancel_on_close {
            self.sender.closed().await
        } else {
            std::future::pending().await
        }
    }
}
