//! The ChatKit protocol's wire types, named as in the reference SDK
//! (the types module of `openai-chatkit`, the Python SDK). Fields that are `None` are
//! omitted, as the SDK omits them; empty lists, objects and booleans are sent.

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

// ---- requests -------------------------------------------------------------

/// A request: `{"type", "params", "metadata"?}`, one variant per type.
/// The SDK splits them into streaming requests (answered with an event
/// stream) and the rest (answered with one JSON object); so do these.
#[derive(Deserialize)]
#[serde(tag = "type", content = "params")]
pub enum Request {
    // Streaming.
    #[serde(rename = "threads.create")]
    CreateThread(CreateParams),
    #[serde(rename = "threads.add_user_message")]
    AddUserMessage(AddMessageParams),
    #[serde(rename = "threads.add_client_tool_output")]
    AddClientToolOutput(ClientToolOutputParams),
    #[serde(rename = "threads.retry_after_item")]
    RetryAfterItem(ItemParams),
    #[serde(rename = "threads.custom_action")]
    CustomAction(CustomActionParams),
    #[serde(rename = "threads.add_structured_input")]
    AddStructuredInput(StructuredInputParams),
    // JSON.
    #[serde(rename = "threads.get_by_id")]
    GetThread(ThreadParams),
    #[serde(rename = "threads.list")]
    ListThreads(ListThreadsParams),
    #[serde(rename = "threads.update")]
    UpdateThread(UpdateParams),
    #[serde(rename = "threads.delete")]
    DeleteThread(ThreadParams),
    #[serde(rename = "threads.sync_custom_action")]
    SyncCustomAction(CustomActionParams),
    #[serde(rename = "items.list")]
    ListItems(ListItemsParams),
    #[serde(rename = "items.feedback")]
    Feedback(FeedbackParams),
    #[serde(rename = "attachments.create")]
    CreateAttachment(IgnoredAny),
    #[serde(rename = "attachments.delete")]
    DeleteAttachment(IgnoredAny),
    #[serde(rename = "input.transcribe")]
    Transcribe(IgnoredAny),
}

#[derive(Deserialize)]
pub struct UserMessageInput {
    pub content: Vec<UserContent>,
    #[serde(default)]
    pub attachments: Vec<String>,
    pub quoted_text: Option<String>,
}

#[derive(Deserialize, Serialize, Clone)]
#[serde(tag = "type")]
pub enum UserContent {
    #[serde(rename = "input_text")]
    Text { text: String },
    #[serde(rename = "input_tag")]
    Tag {
        id: String,
        text: String,
        #[serde(default)]
        data: Map<String, Value>,
        #[serde(default)]
        interactive: bool,
    },
}

#[derive(Deserialize)]
pub struct CreateParams {
    pub input: UserMessageInput,
}

#[derive(Deserialize)]
pub struct AddMessageParams {
    pub thread_id: String,
    pub input: UserMessageInput,
}

#[derive(Deserialize)]
pub struct ThreadParams {
    pub thread_id: String,
}

#[derive(Deserialize)]
pub struct ItemParams {
    pub thread_id: String,
    pub item_id: String,
}

#[derive(Deserialize)]
pub struct StructuredInputParams {
    pub thread_id: String,
    pub item_id: String,
    pub input: StructuredInputSubmission,
}

/// The person's answers to a `structured_input` item.
#[derive(Deserialize)]
pub struct StructuredInputSubmission {
    #[serde(default = "answered")]
    pub status: String,
    /// By structured input id.
    #[serde(default)]
    pub answers: std::collections::BTreeMap<String, AnswerSubmission>,
}

fn answered() -> String {
    "answered".into()
}

#[derive(Deserialize)]
pub struct AnswerSubmission {
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default)]
    pub skipped: bool,
}

#[derive(Deserialize)]
pub struct ClientToolOutputParams {
    pub thread_id: String,
    #[allow(dead_code)] // Read only to check that it is there.
    pub result: Value,
}

#[derive(Deserialize)]
pub struct CustomActionParams {
    pub thread_id: String,
    pub action: Action,
}

#[derive(Deserialize)]
pub struct Action {
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Deserialize, Default)]
pub struct ListThreadsParams {
    pub limit: Option<i64>,
    pub order: Option<SortOrder>,
    pub after: Option<String>,
}

#[derive(Deserialize)]
pub struct ListItemsParams {
    pub thread_id: String,
    pub limit: Option<i64>,
    pub order: Option<SortOrder>,
    pub after: Option<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    Asc,
    Desc,
}

#[derive(Deserialize)]
pub struct UpdateParams {
    pub thread_id: String,
    pub title: String,
}

#[derive(Deserialize)]
pub struct FeedbackParams {
    pub thread_id: String,
    pub item_ids: Vec<String>,
    pub kind: FeedbackKind,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum FeedbackKind {
    Positive,
    Negative,
}

impl FeedbackKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackKind::Positive => "positive",
            FeedbackKind::Negative => "negative",
        }
    }
}

// ---- objects --------------------------------------------------------------

#[derive(Serialize, Clone)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub has_more: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

impl<T> Page<T> {
    pub fn empty() -> Self {
        Page {
            data: Vec::new(),
            has_more: false,
            after: None,
        }
    }
}

#[derive(Serialize, Clone)]
pub struct Thread {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub id: String,
    pub created_at: String,
    pub status: ThreadStatus,
    /// The operator's `WASMGATE_CHATKIT_IMAGE_DOMAINS`; absent when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_image_domains: Option<Vec<String>>,
    pub metadata: Map<String, Value>,
    pub items: Page<ThreadItem>,
}

#[derive(Serialize, Clone)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ThreadStatus {
    Active,
}

/// What every item has.
#[derive(Serialize, Clone)]
pub struct ItemBase {
    pub id: String,
    pub thread_id: String,
    pub created_at: String,
}

#[derive(Serialize, Clone)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ThreadItem {
    UserMessage {
        #[serde(flatten)]
        base: ItemBase,
        content: Vec<UserContent>,
        attachments: Vec<Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        quoted_text: Option<String>,
        inference_options: Map<String, Value>,
    },
    AssistantMessage {
        #[serde(flatten)]
        base: ItemBase,
        content: Vec<OutputText>,
    },
    Workflow {
        #[serde(flatten)]
        base: ItemBase,
        workflow: Workflow,
    },
    /// A question for the person (ChatKit 1.6.4).
    StructuredInput {
        #[serde(flatten)]
        base: ItemBase,
        /// `pending`, `answered` or `skipped`.
        status: &'static str,
        inputs: Vec<StructuredInput>,
    },
}

impl ThreadItem {
    pub fn id(&self) -> &str {
        match self {
            ThreadItem::UserMessage { base, .. }
            | ThreadItem::AssistantMessage { base, .. }
            | ThreadItem::Workflow { base, .. }
            | ThreadItem::StructuredInput { base, .. } => &base.id,
        }
    }
}

/// One question of a `structured_input` item: choices, or free text.
#[derive(Serialize, Clone)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StructuredInput {
    MultipleChoice {
        id: String,
        question: String,
        options: Vec<ChoiceOption>,
        multiple: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        answer: Option<StructuredAnswer>,
    },
    Freeform {
        id: String,
        question: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        answer: Option<StructuredAnswer>,
    },
}

#[derive(Serialize, Clone)]
pub struct ChoiceOption {
    pub value: String,
}

#[derive(Serialize, Clone)]
pub struct StructuredAnswer {
    pub values: Vec<String>,
    pub skipped: bool,
}

/// `AssistantMessageContent`.
#[derive(Serialize, Clone)]
pub struct OutputText {
    pub annotations: Vec<Value>,
    pub text: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

impl OutputText {
    pub fn new(text: impl Into<String>) -> Self {
        OutputText {
            annotations: Vec::new(),
            text: text.into(),
            kind: "output_text",
        }
    }
}

#[derive(Serialize, Clone)]
pub struct Workflow {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub tasks: Vec<Task>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    pub expanded: bool,
}

/// `CustomSummary`.
#[derive(Serialize, Clone)]
pub struct Summary {
    pub title: String,
}

/// `CustomTask`: one tool call.
#[derive(Serialize, Clone)]
pub struct Task {
    pub status_indicator: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: String,
    pub icon: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

// ---- stream events --------------------------------------------------------

#[derive(Serialize)]
#[serde(tag = "type")]
pub enum Event {
    #[serde(rename = "thread.created")]
    ThreadCreated { thread: Thread },
    #[serde(rename = "thread.item.added")]
    ItemAdded { item: ThreadItem },
    #[serde(rename = "thread.item.updated")]
    ItemUpdated { item_id: String, update: ItemUpdate },
    #[serde(rename = "thread.item.done")]
    ItemDone { item: ThreadItem },
    #[serde(rename = "thread.item.replaced")]
    ItemReplaced { item: ThreadItem },
    #[serde(rename = "stream_options")]
    StreamOptions { stream_options: StreamOptions },
    #[serde(rename = "notice")]
    Notice {
        level: &'static str,
        message: String,
    },
    #[serde(rename = "error")]
    Error {
        code: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        allow_retry: bool,
    },
}

#[derive(Serialize)]
pub struct StreamOptions {
    pub allow_cancel: bool,
}

#[derive(Serialize)]
#[serde(tag = "type")]
pub enum ItemUpdate {
    #[serde(rename = "assistant_message.content_part.added")]
    PartAdded {
        content_index: usize,
        content: OutputText,
    },
    #[serde(rename = "assistant_message.content_part.text_delta")]
    TextDelta { content_index: usize, delta: String },
    #[serde(rename = "assistant_message.content_part.done")]
    PartDone {
        content_index: usize,
        content: OutputText,
    },
    #[serde(rename = "workflow.task.updated")]
    TaskUpdated { task_index: usize, task: Task },
}
