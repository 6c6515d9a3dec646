//! The ChatKit door: `POST /api/v1/chatkit` speaking the ChatKit protocol
//! (docs/CHATKIT.md), and the client-secret sessions the widget
//! authenticates with.
//!
//! Threads are the chat API's conversations; a turn runs through the same
//! agent as `/chat` and streams as ChatKit events ([`stream`]). Wire types
//! are in [`types`] (a request is a [`Request`] variant, answered by one
//! handler each), the mapping of the transcript to items in [`items`].

mod items;
pub(super) mod sessions;
mod stream;
mod types;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::auth::{AuthUser, bearer_token};
use super::{ApiError, AppBytes, AppState};
use crate::agent::{Delivery, TurnRequest};
use crate::audit::Door;
use crate::auth::Caller;
use crate::store::{Conversation, SKIPPED};
use items::ItemId;
use types::{
    AddMessageParams, CreateParams, Event, FeedbackParams, ItemParams, ListItemsParams,
    ListThreadsParams, Page, Request, SortOrder, StructuredInputParams, ThreadItem, ThreadParams,
    UpdateParams, UserContent, UserMessageInput,
};

/// Most items one feedback request may rate.
const MAX_FEEDBACK_ITEMS: usize = 100;
/// Longest thread title.
const MAX_TITLE_CHARS: usize = 200;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/chatkit", post(chatkit))
        .route("/api/v1/chatkit/sessions", post(sessions::create))
        .route(
            "/api/v1/chatkit/sessions/{id}/cancel",
            post(sessions::cancel),
        )
}

/// Who a ChatKit request acts for: a session's client secret or a user JWT.
pub struct ChatKitUser(Caller);

impl FromRequestParts<AppState> for ChatKitUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match bearer_token(parts) {
            Some(token) if token.starts_with(sessions::SECRET_PREFIX) => {
                sessions::authenticate(state, token).await.map(ChatKitUser)
            }
            _ => AuthUser::from_request_parts(parts, state)
                .await
                .map(|AuthUser(caller)| ChatKitUser(caller)),
        }
    }
}

async fn chatkit(
    State(state): State<AppState>,
    ChatKitUser(caller): ChatKitUser,
    AppBytes(body): AppBytes,
) -> Result<Response, ApiError> {
    let invalid =
        |err: serde_json::Error| ApiError::bad_request(format!("invalid ChatKit request: {err}"));
    let mut envelope: Value = serde_json::from_slice(&body).map_err(invalid)?;
    // Requests without parameters may leave them out.
    if let Some(params) = envelope
        .as_object_mut()
        .map(|o| o.entry("params").or_insert(Value::Null))
        && params.is_null()
    {
        *params = json!({});
    }
    let request: Request = serde_json::from_value(envelope).map_err(invalid)?;
    let door = Handler {
        state: &state,
        caller: &caller,
        user: &caller.user,
    };
    match request {
        Request::CreateThread(params) => door.create(params).await,
        Request::AddUserMessage(params) => door.add_user_message(params).await,
        Request::RetryAfterItem(params) => door.retry(params).await,
        Request::AddStructuredInput(params) => door.add_structured_input(params).await,
        Request::AddClientToolOutput(params) => {
            door.conversation(&params.thread_id).await?;
            Err(ApiError::bad_request(
                "this thread has no pending client tool call: wasmgate's tools run on the server",
            ))
        }
        Request::CustomAction(params) => {
            door.conversation(&params.thread_id).await?;
            let notice = Event::Notice {
                level: "warning",
                message: format!(
                    "This server does not support custom actions (got {:?}).",
                    params.action.kind
                ),
            };
            Ok(stream::notice(notice).into_response())
        }
        Request::SyncCustomAction(params) => {
            door.conversation(&params.thread_id).await?;
            Err(not_supported("custom actions"))
        }
        Request::GetThread(params) => door.get_thread(params).await,
        Request::ListThreads(params) => door.list_threads(params).await,
        Request::UpdateThread(params) => door.update_thread(params).await,
        Request::DeleteThread(params) => {
            let id = door.conversation(&params.thread_id).await?.id;
            state.store.delete_conversation(&caller.user, id).await?;
            Ok(empty())
        }
        Request::ListItems(params) => door.list_items(params).await,
        Request::Feedback(params) => door.feedback(params).await,
        Request::CreateAttachment(_) | Request::DeleteAttachment(_) => {
            Err(not_supported("attachments"))
        }
        Request::Transcribe(_) => Err(not_supported("transcription")),
    }
}

/// The ChatKit door for one user's request.
struct Handler<'a> {
    state: &'a AppState,
    caller: &'a Caller,
    /// The caller's user.
    user: &'a str,
}

impl Handler<'_> {
    fn thread(&self, conversation: &Conversation, items: Page<types::ThreadItem>) -> types::Thread {
        items::thread(
            conversation,
            items,
            &self.state.config.chatkit_image_domains,
        )
    }

    /// The user's conversation behind a thread id; 404 for anything else.
    async fn conversation(&self, thread_id: &str) -> Result<Conversation, ApiError> {
        let not_found = || ApiError::not_found(format!("thread {thread_id} not found"));
        let id = items::parse_thread_id(thread_id).ok_or_else(not_found)?;
        self.state
            .store
            .conversation(self.user, id)
            .await?
            .ok_or_else(not_found)
    }

    /// Starts a turn and answers it as an event stream, opened by
    /// `replaced` (an item the request changed) if given; a turn that
    /// cannot start is an HTTP error, before any stream.
    async fn turn(
        &self,
        request: TurnRequest,
        replaced: Option<ThreadItem>,
    ) -> Result<Response, ApiError> {
        let retry = matches!(request, TurnRequest::Retry { .. });
        let turn = self
            .state
            .agent
            .start(
                self.caller,
                Door::ChatKit,
                request,
                Delivery::StreamedCancellable,
            )
            .await?;
        let image_domains = self.state.config.chatkit_image_domains.clone();
        Ok(stream::answer(turn, retry, image_domains, replaced).into_response())
    }

    async fn create(&self, params: CreateParams) -> Result<Response, ApiError> {
        let content = user_text(&params.input)?;
        self.turn(
            TurnRequest::Message {
                conversation_id: None,
                content,
            },
            None,
        )
        .await
    }

    async fn add_user_message(&self, params: AddMessageParams) -> Result<Response, ApiError> {
        let conversation = self.conversation(&params.thread_id).await?;
        let content = user_text(&params.input)?;
        self.turn(
            TurnRequest::Message {
                conversation_id: Some(conversation.id),
                content,
            },
            None,
        )
        .await
    }

    /// The person's answer to a question item: recorded on the item (sent
    /// first, as `thread.item.replaced`), then a turn with the answer as
    /// their message. A skipped question is answered with [`SKIPPED`].
    async fn add_structured_input(
        &self,
        params: StructuredInputParams,
    ) -> Result<Response, ApiError> {
        let conversation = self.conversation(&params.thread_id).await?;
        let item_id = &params.item_id;
        let not_found = || ApiError::not_found(format!("item {item_id} not found"));
        let Some(ItemId::Message(row)) = ItemId::parse(item_id) else {
            return Err(not_found());
        };
        let message = self
            .state
            .store
            .message(conversation.id, row)
            .await?
            .ok_or_else(not_found)?;
        let question = message
            .question
            .as_ref()
            .filter(|question| question.answer.is_none())
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "item {item_id} is not a question awaiting an answer"
                ))
            })?;
        let submission = params.input;
        let skipped = match submission.status.as_str() {
            "answered" => false,
            "skipped" => true,
            other => {
                return Err(ApiError::bad_request(format!(
                    "input.status must be \"answered\" or \"skipped\", not {other:?}"
                )));
            }
        };
        let values: Vec<String> = submission
            .answers
            .get(items::ANSWER_INPUT)
            .filter(|answer| !answer.skipped)
            .map(|answer| {
                answer
                    .values
                    .iter()
                    .map(|value| value.trim().to_string())
                    .filter(|value| !value.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let content = if skipped || values.is_empty() {
            SKIPPED.to_string()
        } else {
            values.join(", ")
        };
        let answered = items::structured_input(
            message.id,
            &items::thread_id(conversation.id),
            &message.created_at,
            &question.answered_by(&content),
        );
        self.turn(
            TurnRequest::Message {
                conversation_id: Some(conversation.id),
                content,
            },
            Some(answered),
        )
        .await
    }

    /// Deletes everything after the user message `item_id` and answers it again.
    async fn retry(&self, params: ItemParams) -> Result<Response, ApiError> {
        let conversation = self.conversation(&params.thread_id).await?;
        let Some(ItemId::Message(row)) = ItemId::parse(&params.item_id) else {
            return Err(ApiError::not_found(format!(
                "item {} not found",
                params.item_id
            )));
        };
        self.turn(
            TurnRequest::Retry {
                conversation_id: conversation.id,
                message_id: row,
            },
            None,
        )
        .await
    }

    async fn get_thread(&self, params: ThreadParams) -> Result<Response, ApiError> {
        let conversation = self.conversation(&params.thread_id).await?;
        let page = items::page(
            &self.state.store,
            conversation.id,
            None,
            items::DEFAULT_PAGE,
            SortOrder::Asc,
        )
        .await?;
        Ok(json_answer(&self.thread(&conversation, page)))
    }

    async fn list_threads(&self, params: ListThreadsParams) -> Result<Response, ApiError> {
        let limit = page_size(params.limit)?;
        let after =
            match &params.after {
                Some(after) => Some(items::parse_thread_id(after).ok_or_else(|| {
                    ApiError::bad_request(format!("{after:?} is not a thread id"))
                })?),
                None => None,
            };
        let order = params.order.unwrap_or(SortOrder::Desc).into();
        let mut rows = self
            .state
            .store
            .conversations_page(self.user, after, limit + 1, order)
            .await?;
        let has_more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let page = Page {
            after: has_more
                .then(|| rows.last().map(|c| items::thread_id(c.id)))
                .flatten(),
            data: rows.iter().map(|c| self.thread(c, Page::empty())).collect(),
            has_more,
        };
        Ok(json_answer(&page))
    }

    async fn update_thread(&self, params: UpdateParams) -> Result<Response, ApiError> {
        let conversation = self.conversation(&params.thread_id).await?;
        let title = params.title.trim();
        if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS {
            return Err(ApiError::bad_request(format!(
                "title must be 1 to {MAX_TITLE_CHARS} characters"
            )));
        }
        let renamed = self
            .state
            .store
            .rename_conversation(self.user, conversation.id, title)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("thread {} not found", params.thread_id)))?;
        Ok(json_answer(&self.thread(&renamed, Page::empty())))
    }

    async fn list_items(&self, params: ListItemsParams) -> Result<Response, ApiError> {
        let limit = page_size(params.limit)?;
        if let Some(after) = params.after.as_deref()
            && ItemId::parse(after).is_none()
        {
            return Err(ApiError::bad_request(format!(
                "{after:?} is not an item id"
            )));
        }
        let conversation = self.conversation(&params.thread_id).await?;
        let page = items::page(
            &self.state.store,
            conversation.id,
            params.after.as_deref(),
            limit,
            params.order.unwrap_or(SortOrder::Desc),
        )
        .await?;
        Ok(json_answer(&page))
    }

    async fn feedback(&self, params: FeedbackParams) -> Result<Response, ApiError> {
        if params.item_ids.len() > MAX_FEEDBACK_ITEMS {
            return Err(ApiError::bad_request(format!(
                "feedback takes at most {MAX_FEEDBACK_ITEMS} items at once"
            )));
        }
        let id = self.conversation(&params.thread_id).await?.id;
        // Messages only: a workflow is not something a person rates.
        let rows: Vec<i64> = params
            .item_ids
            .iter()
            .filter_map(|item| match ItemId::parse(item) {
                Some(ItemId::Message(row)) => Some(row),
                _ => None,
            })
            .collect();
        let kind = params.kind.as_str();
        self.state.store.set_feedback(id, &rows, kind).await?;
        Ok(empty())
    }
}

/// The text of a user message: its text parts and tags, joined.
fn user_text(input: &UserMessageInput) -> Result<String, ApiError> {
    if !input.attachments.is_empty() {
        return Err(not_supported("attachments"));
    }
    let mut text: String = input
        .content
        .iter()
        .map(|part| match part {
            UserContent::Text { text } => text.as_str(),
            UserContent::Tag { text, .. } => text.as_str(),
        })
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(quoted) = input.quoted_text.as_deref().filter(|q| !q.is_empty()) {
        text = format!("> {quoted}\n\n{text}");
    }
    Ok(text)
}

/// The page size asked for: the default for none (or 0, as the SDK reads
/// it), at most [`items::MAX_PAGE`] (larger asks get that many, with a
/// cursor for the rest).
fn page_size(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None | Some(0) => Ok(items::DEFAULT_PAGE),
        Some(n) if n > 0 => Ok(n.min(items::MAX_PAGE)),
        Some(n) => Err(ApiError::bad_request(format!(
            "limit must not be negative, not {n}"
        ))),
    }
}

fn not_supported(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "not_supported",
        format!("this server does not support {what}"),
    )
}

fn json_answer(value: &impl serde::Serialize) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(value).unwrap_or_default(),
    )
        .into_response()
}

fn empty() -> Response {
    json_answer(&json!({}))
}
