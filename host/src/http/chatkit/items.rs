//! Stored conversations and messages as ChatKit threads and items.
//!
//! A thread is a conversation (`thr_<id>`). A person sees user messages
//! (`msg_<id>`), assistant text (`msg_<id>`) and, for an assistant message
//! that called tools, a workflow (`wf_<id>`) with one task per call and its
//! result. An assistant message that asks a question (the host's
//! `ask_user`) is a `structured_input` item (`msg_<id>`) instead, with its
//! answer once given; the `ask_user` call itself is no workflow task. Tool
//! results and hidden context are not items of their own. Prefix and row
//! id keep every item id unique and stable across reads.

use serde_json::{Map, Value};

use super::types::{
    ChoiceOption, ItemBase, OutputText, Page, SortOrder, StructuredAnswer, StructuredInput,
    Summary, Task, Thread, ThreadItem, ThreadStatus, UserContent, Workflow,
};
use crate::agent::ask::ASK_USER;
use crate::store::{
    Conversation, Order, Question, Role, Store, StoreError, StoredMessage, ToolCallRecord,
    TranscriptEntry,
};

/// The id of the one input a question's `structured_input` item has.
pub const ANSWER_INPUT: &str = "answer";

/// Items per page when the client names no limit.
pub const DEFAULT_PAGE: i64 = 20;
/// The largest page served.
pub const MAX_PAGE: i64 = 100;

impl From<SortOrder> for Order {
    fn from(order: SortOrder) -> Order {
        match order {
            SortOrder::Asc => Order::Asc,
            SortOrder::Desc => Order::Desc,
        }
    }
}

pub fn thread_id(conversation_id: i64) -> String {
    format!("thr_{conversation_id}")
}

/// The conversation id in a thread id, if it is one.
pub fn parse_thread_id(id: &str) -> Option<i64> {
    id.strip_prefix("thr_")?.parse().ok()
}

/// An item's id: which item of which stored message. A user message or an
/// assistant's text is `msg_<row>`; the workflow of an assistant message's
/// tool calls is `wf_<row>`, so one row can show both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemId {
    Message(i64),
    Workflow(i64),
}

impl ItemId {
    pub fn parse(id: &str) -> Option<ItemId> {
        if let Some(row) = id.strip_prefix("msg_") {
            return row.parse().ok().map(ItemId::Message);
        }
        id.strip_prefix("wf_")?.parse().ok().map(ItemId::Workflow)
    }

    /// The stored message the item shows.
    pub fn row(self) -> i64 {
        match self {
            ItemId::Message(row) | ItemId::Workflow(row) => row,
        }
    }
}

impl std::fmt::Display for ItemId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ItemId::Message(row) => write!(f, "msg_{row}"),
            ItemId::Workflow(row) => write!(f, "wf_{row}"),
        }
    }
}

/// A stored timestamp as ChatKit sends it: ISO 8601 UTC, milliseconds.
pub fn iso(stored: &str) -> String {
    match stored.split_once('.') {
        // "…:SS.nnnnnnnnnZ" → "…:SS.mmmZ"
        Some((seconds, fraction)) => {
            let digits: String = fraction
                .chars()
                .take_while(char::is_ascii_digit)
                .chain(std::iter::repeat('0'))
                .take(3)
                .collect();
            format!("{seconds}.{digits}Z")
        }
        None => stored.to_string(),
    }
}

/// A conversation as a thread; `image_domains` are the domains the widget
/// may load images from (none given: the widget's default).
pub fn thread(
    conversation: &Conversation,
    items: Page<ThreadItem>,
    image_domains: &[String],
) -> Thread {
    Thread {
        title: conversation.title.clone(),
        id: thread_id(conversation.id),
        created_at: iso(&conversation.created_at),
        status: ThreadStatus::Active,
        allowed_image_domains: (!image_domains.is_empty()).then(|| image_domains.to_vec()),
        metadata: Map::new(),
        items,
    }
}

fn base(id: ItemId, thread_id: &str, created_at: &str) -> ItemBase {
    ItemBase {
        id: id.to_string(),
        thread_id: thread_id.to_string(),
        created_at: iso(created_at),
    }
}

pub fn user_message(message: &StoredMessage, thread_id: &str) -> ThreadItem {
    ThreadItem::UserMessage {
        base: base(ItemId::Message(message.id), thread_id, &message.created_at),
        content: vec![UserContent::Text {
            text: message.content.clone(),
        }],
        attachments: Vec::new(),
        quoted_text: None,
        inference_options: Map::new(),
    }
}

/// An assistant message with its text.
pub fn assistant_message(
    message_id: i64,
    thread_id: &str,
    created_at: &str,
    text: &str,
) -> ThreadItem {
    ThreadItem::AssistantMessage {
        base: base(ItemId::Message(message_id), thread_id, created_at),
        content: vec![OutputText::new(text)],
    }
}

/// A question for the person, with its answer once given: choices when it
/// has options, free text otherwise.
pub fn structured_input(
    message_id: i64,
    thread_id: &str,
    created_at: &str,
    question: &Question,
) -> ThreadItem {
    let answer = question.answer.as_ref().map(|answer| StructuredAnswer {
        values: answer.values.clone(),
        skipped: answer.skipped,
    });
    let status = match &question.answer {
        None => "pending",
        Some(answer) if answer.skipped => "skipped",
        Some(_) => "answered",
    };
    let (id, text) = (ANSWER_INPUT.to_string(), question.question.clone());
    let input = if question.options.is_empty() {
        StructuredInput::Freeform {
            id,
            question: text,
            answer,
        }
    } else {
        StructuredInput::MultipleChoice {
            id,
            question: text,
            options: question
                .options
                .iter()
                .map(|value| ChoiceOption {
                    value: value.clone(),
                })
                .collect(),
            multiple: false,
            answer,
        }
    };
    ThreadItem::StructuredInput {
        base: base(ItemId::Message(message_id), thread_id, created_at),
        status,
        inputs: vec![input],
    }
}

/// The calls a workflow shows: all but the host's `ask_user`, whose
/// question is an item of its own.
pub fn shown_calls(calls: &[ToolCallRecord]) -> Vec<ToolCallRecord> {
    calls
        .iter()
        .filter(|call| call.name != ASK_USER)
        .cloned()
        .collect()
}

/// An assistant message that has just begun streaming: no content yet
/// (its part comes with `content_part.added`, as the SDK's server sends it).
pub fn assistant_message_begun(message_id: i64, thread_id: &str, created_at: &str) -> ThreadItem {
    ThreadItem::AssistantMessage {
        base: base(ItemId::Message(message_id), thread_id, created_at),
        content: Vec::new(),
    }
}

/// One tool call as a workflow task; finished once it has a result.
pub fn task(call: &ToolCallRecord) -> Task {
    let arguments = compact(&call.arguments);
    let (status_indicator, icon, content) = match &call.result {
        None => ("loading", "bolt", arguments),
        Some(result) => (
            "complete",
            if call.is_error {
                "info"
            } else {
                "check-circle"
            },
            format!("{arguments} → {}", compact(result)),
        ),
    };
    Task {
        status_indicator,
        kind: "custom",
        title: call.name.clone(),
        icon,
        content: Some(content),
    }
}

fn compact(value: &Value) -> String {
    match value {
        Value::Object(map) if map.is_empty() => "()".into(),
        other => other.to_string(),
    }
}

pub fn workflow(
    message_id: i64,
    thread_id: &str,
    created_at: &str,
    calls: &[ToolCallRecord],
) -> ThreadItem {
    let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
    ThreadItem::Workflow {
        base: base(ItemId::Workflow(message_id), thread_id, created_at),
        workflow: Workflow {
            kind: "custom",
            tasks: calls.iter().map(task).collect(),
            summary: Some(Summary {
                title: format!("Used {}", names.join(", ")),
            }),
            expanded: false,
        },
    }
}

/// The items a transcript entry shows, in ascending order: a user message,
/// or an assistant's text (if it said something) and its workflow (if it
/// called tools).
fn items_of(entry: &TranscriptEntry, thread_id: &str) -> Vec<ThreadItem> {
    let message = &entry.message;
    if message.role == Role::User {
        return vec![user_message(message, thread_id)];
    }
    let mut items = Vec::new();
    if let Some(question) = &message.question {
        items.push(structured_input(
            message.id,
            thread_id,
            &message.created_at,
            question,
        ));
    } else if !message.content.is_empty() {
        items.push(assistant_message(
            message.id,
            thread_id,
            &message.created_at,
            &message.content,
        ));
    }
    let calls = shown_calls(&entry.calls);
    if !calls.is_empty() {
        items.push(workflow(message.id, thread_id, &message.created_at, &calls));
    }
    items
}

/// A page of a conversation's items after item `after` (exclusive).
pub async fn page(
    store: &Store,
    conversation_id: i64,
    after: Option<&str>,
    limit: i64,
    order: SortOrder,
) -> Result<Page<ThreadItem>, StoreError> {
    let thread_id = thread_id(conversation_id);
    let order = Order::from(order);
    // The cursor's row is read again (one row can show two items, and the
    // cursor may be the first); one more row beyond the page tells whether
    // there is more.
    let fetch = limit + 2;
    let from = after.and_then(ItemId::parse).map(ItemId::row);
    let entries = store
        .transcript(conversation_id, from, fetch, order)
        .await?;
    let mut items = Vec::new();
    for entry in &entries {
        let mut shown = items_of(entry, &thread_id);
        if order == Order::Desc {
            shown.reverse();
        }
        items.extend(shown);
    }
    // Without its row (deleted by a retry), the cursor still marks a place.
    if let Some(at) = after.and_then(|after| items.iter().position(|item| item.id() == after)) {
        items.drain(..=at);
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let has_more = items.len() > limit || entries.len() as i64 == fetch;
    items.truncate(limit);
    let has_more = has_more && !items.is_empty();
    Ok(Page {
        after: has_more
            .then(|| items.last().map(|i| i.id().to_string()))
            .flatten(),
        data: items,
        has_more,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(id: i64, role: Role, content: &str, calls: usize) -> TranscriptEntry {
        TranscriptEntry {
            message: StoredMessage {
                created_at: "2026-12-01T12:00:00.123456789Z".into(),
                ..StoredMessage::fixture(id, role, content)
            },
            calls: (0..calls)
                .map(|i| ToolCallRecord {
                    id: format!("call_{i}"),
                    name: "list_tasks".into(),
                    arguments: json!({}),
                    result: Some(json!({"tasks": []})),
                    is_error: false,
                })
                .collect(),
        }
    }

    #[test]
    fn entries_show_as_items() {
        let cases = [
            (entry(1, Role::User, "hi", 0), vec!["msg_1"]),
            (entry(2, Role::Assistant, "Done.", 0), vec!["msg_2"]),
            // A tool round with nothing to say is its workflow only.
            (entry(3, Role::Assistant, "", 2), vec!["wf_3"]),
            (
                entry(4, Role::Assistant, "Looking.", 1),
                vec!["msg_4", "wf_4"],
            ),
        ];
        for (entry, expect) in cases {
            let items = items_of(&entry, "thr_1");
            let ids: Vec<&str> = items.iter().map(|i| i.id()).collect();
            assert_eq!(ids, expect, "{:?}", entry.message);
        }
        let item =
            serde_json::to_value(&items_of(&entry(3, Role::Assistant, "", 2), "thr_1")[0]).unwrap();
        assert_eq!(item["created_at"], "2026-12-01T12:00:00.123Z");
        assert_eq!(
            item["workflow"]["summary"]["title"],
            "Used list_tasks, list_tasks"
        );
        assert_eq!(
            item["workflow"]["tasks"][0]["content"],
            r#"() → {"tasks":[]}"#
        );
    }

    #[test]
    fn item_ids_round_trip() {
        for (text, id) in [
            ("msg_7", Some(ItemId::Message(7))),
            ("wf_7", Some(ItemId::Workflow(7))),
            ("thr_7", None),
            ("msg_x", None),
        ] {
            assert_eq!(ItemId::parse(text), id, "{text}");
            if let Some(id) = id {
                assert_eq!(id.to_string(), text);
            }
        }
    }
}
