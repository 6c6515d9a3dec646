//! Stored conversations and messages as ChatKit threads and items.
//!
//! A thread is a conversation (`thr_<id>`). A person sees user messages
//! (`msg_<id>`), assistant text (`msg_<id>`) and, for an assistant message
//! that called tools, a workflow (`wf_<id>`) with one task per call and its
//! result. Tool results and hidden context are not items of their own.
//! Prefix and row id keep every item id unique and stable across reads.

use serde_json::{Map, Value};

use super::types::{
    ItemBase, OutputText, Page, SortOrder, Summary, Task, Thread, ThreadItem, ThreadStatus,
    UserContent, Workflow,
};
use crate::agent::ToolCallRecord;
use crate::store::{Conversation, Order, Store, StoreError, StoredMessage};

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

/// The message row behind an item id (`msg_<row>` or `wf_<row>`).
pub fn parse_item_id(id: &str) -> Option<i64> {
    let row = id.strip_prefix("msg_").or_else(|| id.strip_prefix("wf_"))?;
    row.parse().ok()
}

/// The message row behind a message item id (`msg_<row>`).
pub fn parse_message_id(id: &str) -> Option<i64> {
    id.strip_prefix("msg_")?.parse().ok()
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

pub fn thread(conversation: &Conversation, items: Page<ThreadItem>) -> Thread {
    Thread {
        title: conversation.title.clone(),
        id: thread_id(conversation.id),
        created_at: iso(&conversation.created_at),
        status: ThreadStatus::Active,
        metadata: Map::new(),
        items,
    }
}

fn base(prefix: &str, message_id: i64, thread_id: &str, created_at: &str) -> ItemBase {
    ItemBase {
        id: format!("{prefix}_{message_id}"),
        thread_id: thread_id.to_string(),
        created_at: iso(created_at),
    }
}

pub fn user_message(message: &StoredMessage, thread_id: &str) -> ThreadItem {
    ThreadItem::UserMessage {
        base: base("msg", message.id, thread_id, &message.created_at),
        content: vec![UserContent::Text {
            text: message.content.clone(),
        }],
        attachments: Vec::new(),
        quoted_text: None,
        inference_options: Map::new(),
    }
}

pub fn assistant_message(
    message_id: i64,
    thread_id: &str,
    created_at: &str,
    text: &str,
) -> ThreadItem {
    ThreadItem::AssistantMessage {
        base: base("msg", message_id, thread_id, created_at),
        content: vec![OutputText::new(text)],
    }
}

/// One tool call as a workflow task; finished once it has a result.
pub fn task(call: &ToolCallRecord) -> Task {
    let arguments = compact(&call.arguments);
    let (status_indicator, icon, content) = if call.result.is_null() {
        ("loading", "bolt", arguments)
    } else if call.is_error {
        (
            "complete",
            "info",
            format!("{arguments} → {}", compact(&call.result)),
        )
    } else {
        (
            "complete",
            "check-circle",
            format!("{arguments} → {}", compact(&call.result)),
        )
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
        base: base("wf", message_id, thread_id, created_at),
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

/// The items a stored message shows, in ascending order. Its tool results
/// are those of `results` between it and `next`, the next message shown.
fn items_of(
    message: &StoredMessage,
    next: i64,
    results: &[StoredMessage],
    thread_id: &str,
) -> Vec<ThreadItem> {
    if message.role == "user" {
        return vec![user_message(message, thread_id)];
    }
    let calls: Vec<Value> = message
        .tool_calls
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    let mut items = Vec::new();
    if !message.content.is_empty() {
        items.push(assistant_message(
            message.id,
            thread_id,
            &message.created_at,
            &message.content,
        ));
    }
    if !calls.is_empty() {
        let results: Vec<&StoredMessage> = results
            .iter()
            .filter(|r| r.id > message.id && r.id < next)
            .collect();
        let records: Vec<ToolCallRecord> = calls
            .iter()
            .map(|call| {
                let id = call["id"].as_str().unwrap_or_default();
                let result = results
                    .iter()
                    .find(|r| r.tool_call_id.as_deref() == Some(id));
                ToolCallRecord {
                    id: id.to_string(),
                    name: call["name"].as_str().unwrap_or_default().to_string(),
                    arguments: call["arguments"]
                        .as_str()
                        .and_then(|a| serde_json::from_str(a).ok())
                        .unwrap_or(Value::Null),
                    result: result
                        .map(|r| serde_json::from_str(&r.content).unwrap_or(Value::Null))
                        .unwrap_or(Value::Null),
                    is_error: result.is_some_and(|r| r.is_error),
                }
            })
            .collect();
        items.push(workflow(
            message.id,
            thread_id,
            &message.created_at,
            &records,
        ));
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
    let from = after.and_then(parse_item_id);
    let rows = store
        .visible_messages(conversation_id, from, fetch, order)
        .await?;
    // The tool results of every workflow on the page, in one read.
    let calling = || {
        rows.iter()
            .filter(|row| row.tool_calls.is_some())
            .map(|row| row.id)
    };
    let results = match (calling().min(), calling().max()) {
        (Some(first), Some(last)) => store.tool_results(conversation_id, first, last).await?,
        _ => Vec::new(),
    };
    let mut items = Vec::new();
    for row in &rows {
        let next = rows
            .iter()
            .map(|other| other.id)
            .filter(|&id| id > row.id)
            .min()
            .unwrap_or(i64::MAX);
        let mut shown = items_of(row, next, &results, &thread_id);
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
    let has_more = items.len() > limit || rows.len() as i64 == fetch;
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
