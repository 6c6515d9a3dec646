//! The history a provider round is sent: the stored conversation as
//! provider messages behind the system prompt, within the byte budget, with
//! every tool call answered.

use crate::plugins::provider::{self, ChatMessage};
use crate::store::{Role, StoredMessage};

/// Bytes of stored history sent to the provider; older messages are left
/// out first, so one huge message never breaks every later turn.
pub(super) const MAX_HISTORY_BYTES: usize = 512 * 1024;

/// What the model is told of a tool call that has no stored result (the
/// process stopped while it ran).
const INTERRUPTED_CALL: &str = r#"{"error":"this tool call was interrupted before it reported a result (the server stopped); whether it took effect is unknown"}"#;

/// The provider messages for `stored` (the conversation's latest messages,
/// oldest first), behind `system`. The window never starts with tool results
/// cut off from the call that asked for them (providers reject those).
pub(super) fn window(system: &str, stored: &[StoredMessage], budget: usize) -> Vec<ChatMessage> {
    let messages: Vec<ChatMessage> = stored.iter().filter_map(to_chat_message).collect();
    // Newest first until the budget is spent.
    let mut spent = 0;
    let keep_from = messages
        .iter()
        .rposition(|message| {
            spent += message_bytes(message);
            spent > budget
        })
        .map_or(0, |over| over + 1);
    let keep_from = messages[keep_from..]
        .iter()
        .position(|m| m.role != provider::Role::Tool)
        .map_or(messages.len(), |offset| keep_from + offset);
    let mut history = vec![plain(provider::Role::System, system)];
    history.extend(answer_dangling_calls(messages.into_iter().skip(keep_from)));
    history
}

fn plain(role: provider::Role, content: &str) -> ChatMessage {
    ChatMessage {
        role,
        content: content.into(),
        tool_calls: Vec::new(),
        tool_call_id: None,
    }
}

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
                tool_call_id: Some(id),
                ..plain(provider::Role::Tool, INTERRUPTED_CALL)
            });
        }
    };
    for message in messages {
        match message.role {
            provider::Role::Tool => {
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

fn to_chat_message(message: &StoredMessage) -> Option<ChatMessage> {
    let role = match message.role {
        // A reply cut off before its first token says nothing; providers reject it.
        Role::Assistant if message.content.is_empty() && message.tool_calls.is_empty() => {
            return None;
        }
        Role::User => provider::Role::User,
        Role::Assistant => provider::Role::Assistant,
        Role::Tool => provider::Role::Tool,
        // Context for the model that no person sees (a cancelled reply).
        Role::Hidden => provider::Role::System,
    };
    Some(ChatMessage {
        role,
        content: message.content.clone(),
        tool_calls: message.tool_calls.iter().map(provider_call).collect(),
        tool_call_id: message.tool_call_id.clone(),
    })
}

/// A stored call as the provider gets it, and back.
pub(super) fn provider_call(call: &crate::store::ToolCall) -> provider::ToolCall {
    provider::ToolCall {
        id: call.id.clone(),
        name: call.name.clone(),
        arguments: call.arguments.clone(),
    }
}

pub(super) fn stored_call(call: &provider::ToolCall) -> crate::store::ToolCall {
    crate::store::ToolCall {
        id: call.id.clone(),
        name: call.name.clone(),
        arguments: call.arguments.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ToolCall;

    /// A stored message: `calls` for an assistant's tool calls, `answers`
    /// for a tool result's call, `size` bytes of text.
    fn stored(role: Role, calls: &[&str], answers: Option<&str>, size: usize) -> StoredMessage {
        StoredMessage {
            tool_calls: calls
                .iter()
                .map(|id| ToolCall {
                    id: id.to_string(),
                    name: "add_task".into(),
                    arguments: "{}".into(),
                })
                .collect(),
            tool_call_id: answers.map(str::to_string),
            ..StoredMessage::fixture(0, role, &"x".repeat(size))
        }
    }

    /// The window's shape: each message's role and the call it answers.
    fn shape(history: &[ChatMessage]) -> Vec<(provider::Role, Option<&str>)> {
        history
            .iter()
            .map(|m| (m.role, m.tool_call_id.as_deref()))
            .collect()
    }

    use provider::Role as P;

    #[test]
    fn windows() {
        struct Case {
            name: &'static str,
            stored: Vec<StoredMessage>,
            budget: usize,
            expect: Vec<(P, Option<&'static str>)>,
        }
        let cases = [
            Case {
                name: "a call without a result is answered as interrupted",
                stored: vec![
                    stored(Role::User, &[], None, 1),
                    stored(Role::Assistant, &["a", "b"], None, 0),
                    stored(Role::Tool, &[], Some("a"), 1),
                    // The process stopped here: `b` never got its result.
                    stored(Role::User, &[], None, 1),
                    stored(Role::Assistant, &["c"], None, 0),
                ],
                budget: MAX_HISTORY_BYTES,
                expect: vec![
                    (P::System, None),
                    (P::User, None),
                    (P::Assistant, None),
                    (P::Tool, Some("a")),
                    (P::Tool, Some("b")),
                    (P::User, None),
                    (P::Assistant, None),
                    (P::Tool, Some("c")),
                ],
            },
            Case {
                name: "the window never starts on tool results cut from their call",
                stored: vec![
                    stored(Role::Tool, &[], Some("old"), 1),
                    stored(Role::User, &[], None, 1),
                ],
                budget: MAX_HISTORY_BYTES,
                expect: vec![(P::System, None), (P::User, None)],
            },
            Case {
                name: "over the budget, the oldest go first, and their results with them",
                stored: vec![
                    stored(Role::User, &[], None, 60),
                    stored(Role::Assistant, &["a"], None, 0),
                    stored(Role::Tool, &[], Some("a"), 30),
                    stored(Role::User, &[], None, 10),
                ],
                budget: 50,
                expect: vec![(P::System, None), (P::User, None)],
            },
            Case {
                name: "an empty reply (cut before its first token) is left out",
                stored: vec![
                    stored(Role::User, &[], None, 1),
                    stored(Role::Assistant, &[], None, 0),
                    stored(Role::Hidden, &[], None, 1),
                ],
                budget: MAX_HISTORY_BYTES,
                expect: vec![(P::System, None), (P::User, None), (P::System, None)],
            },
        ];
        for case in cases {
            let history = window("system", &case.stored, case.budget);
            assert_eq!(shape(&history), case.expect, "{}", case.name);
        }
        let repaired = window(
            "system",
            &[stored(Role::Assistant, &["a"], None, 0)],
            MAX_HISTORY_BYTES,
        );
        assert!(repaired[2].content.contains("interrupted"));
    }
}
