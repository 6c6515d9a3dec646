//! The ChatKit door: `POST /api/v1/chatkit` speaking the protocol of
//! the ChatKit protocol (README, "ChatKit"), and the client-secret sessions the widget authenticates with.
//!
//! Threads are the chat API's conversations; a turn runs through the same
//! agent as `/chat` and streams as ChatKit events ([`stream`]). Wire types
//! are in [`types`], the mapping of stored rows to items in [`items`].

mod items;
mod sessions;
mod stream;
mod types;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::auth::{AuthUser, bearer_token};
use super::{ApiError, AppBytes, AppState};
use crate::agent::{check_message, title_from};
use stream::Turn;
use types::{
    AddMessageParams, ClientToolOutputParams, CreateParams, CustomActionParams, Envelope, Event,
    FeedbackParams, ItemParams, ListParams, Page, SortOrder, ThreadParams, UpdateParams,
    UserContent, UserMessageInput,
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

/// The user a ChatKit request acts for: a session's client secret or a
/// user JWT.
pub struct ChatKitUser(String);

impl FromRequestParts<AppState> for ChatKitUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match bearer_token(parts) {
            Some(token) if token.starts_with(sessions::SECRET_PREFIX) => {
                sessions::authenticate(state, token).await.map(ChatKitUser)
            }
            _ => AuthUser::from_request_parts(parts, state)
                .await
                .map(|AuthUser(user)| ChatKitUser(user)),
        }
    }
}

async fn chatkit(
    State(state): State<AppState>,
    ChatKitUser(user): ChatKitUser,
    AppBytes(body): AppBytes,
) -> Result<Response, ApiError> {
    let envelope: Envelope = serde_json::from_slice(&body)
        .map_err(|err| ApiError::bad_request(format!("invalid ChatKit request: {err}")))?;
    let params = envelope.params.unwrap_or(Value::Object(Default::default()));
    let request = Request {
        state: &state,
        user: &user,
        kind: &envelope.kind,
        params,
    };
    request.answer().await
}

/// One ChatKit request, being answered.
struct Request<'a> {
    state: &'a AppState,
    user: &'a str,
    kind: &'a str,
    params: Value,
}

impl Request<'_> {
    async fn answer(self) -> Result<Response, ApiError> {
        match self.kind {
            "threads.create" => self.create().await,
            "threads.add_user_message" => self.add_user_message().await,
            "threads.retry_after_item" => self.retry().await,
            "threads.add_client_tool_output" => {
                let params: ClientToolOutputParams = self.params()?;
                self.conversation(&params.thread_id).await?;
                Err(ApiError::bad_request(
                    "this thread has no pending client tool call: wasmgate's tools run on the server",
                ))
            }
            "threads.custom_action" => {
                let params: CustomActionParams = self.params()?;
                self.conversation(&params.thread_id).await?;
                let notice = Event::Notice {
                    level: "warning",
                    message: format!(
                        "This server does not support custom actions (got {:?}).",
                        params.action.kind
                    ),
                };
                Ok(self.stream(Turn::Notice(notice)))
            }
            "threads.sync_custom_action" => {
                let params: CustomActionParams = self.params()?;
                self.conversation(&params.thread_id).await?;
                Err(not_supported("custom actions"))
            }
            "threads.get_by_id" => self.get_thread().await,
            "threads.list" => self.list_threads().await,
            "threads.update" => self.update_thread().await,
            "threads.delete" => {
                let params: ThreadParams = self.params()?;
                let id = self.conversation(&params.thread_id).await?.id;
                self.state.store.delete_conversation(self.user, id).await?;
                Ok(empty())
            }
            "items.list" => self.list_items().await,
            "items.feedback" => {
                let params: FeedbackParams = self.params()?;
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
                    .filter_map(|item| items::parse_message_id(item))
                    .collect();
                let kind = params.kind.as_str();
                self.state.store.set_feedback(id, &rows, kind).await?;
                Ok(empty())
            }
            "attachments.create" | "attachments.delete" => Err(not_supported("attachments")),
            "input.transcribe" => Err(not_supported("transcription")),
            other => Err(ApiError::bad_request(format!(
                "unknown ChatKit request type {other:?}"
            ))),
        }
    }

    fn params<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_value(self.params.clone()).map_err(|err| {
            ApiError::bad_request(format!("invalid params for {}: {err}", self.kind))
        })
    }

    /// The user's conversation behind a thread id; 404 for anything else.
    async fn conversation(&self, thread_id: &str) -> Result<crate::store::Conversation, ApiError> {
        let not_found = || ApiError::not_found(format!("thread {thread_id} not found"));
        let id = items::parse_thread_id(thread_id).ok_or_else(not_found)?;
        self.state
            .store
            .conversation(self.user, id)
            .await?
            .ok_or_else(not_found)
    }

    fn stream(&self, turn: Turn) -> Response {
        stream::answer(self.state.agent.clone(), self.user.to_string(), turn).into_response()
    }

    /// A turn may start: the per-user chat limit, as for `/chat`.
    fn may_start_turn(&self) -> Result<(), ApiError> {
        self.state
            .chat_limiter
            .check(self.user)
            .map_err(ApiError::rate_limited)
    }

    async fn create(self) -> Result<Response, ApiError> {
        let params: CreateParams = self.params()?;
        let content = user_text(&params.input)?;
        self.may_start_turn()?;
        let title = title_from(&content);
        let conversation = self
            .state
            .store
            .create_conversation(self.user, Some(&title))
            .await?;
        let thread = items::thread(&conversation, Page::empty());
        Ok(self.stream(Turn::Message {
            conversation_id: conversation.id,
            content,
            created: Some(thread),
        }))
    }

    async fn add_user_message(self) -> Result<Response, ApiError> {
        let params: AddMessageParams = self.params()?;
        let conversation = self.conversation(&params.thread_id).await?;
        let content = user_text(&params.input)?;
        self.may_start_turn()?;
        Ok(self.stream(Turn::Message {
            conversation_id: conversation.id,
            content,
            created: None,
        }))
    }

    /// Deletes everything after the user message `item_id` and answers it again.
    async fn retry(self) -> Result<Response, ApiError> {
        let params: ItemParams = self.params()?;
        let conversation = self.conversation(&params.thread_id).await?;
        let not_found = || ApiError::not_found(format!("item {} not found", params.item_id));
        let row = items::parse_message_id(&params.item_id).ok_or_else(not_found)?;
        let message = self
            .state
            .store
            .message(conversation.id, row)
            .await?
            .ok_or_else(not_found)?;
        if message.role != "user" {
            return Err(ApiError::bad_request(
                "retry_after_item takes a user message's id",
            ));
        }
        self.may_start_turn()?;
        self.state
            .store
            .delete_messages_after(conversation.id, message.id)
            .await?;
        Ok(self.stream(Turn::Retry {
            conversation_id: conversation.id,
        }))
    }

    async fn get_thread(self) -> Result<Response, ApiError> {
        let params: ThreadParams = self.params()?;
        let conversation = self.conversation(&params.thread_id).await?;
        let page = items::page(
            &self.state.store,
            conversation.id,
            None,
            items::DEFAULT_PAGE,
            SortOrder::Asc,
        )
        .await?;
        Ok(json_answer(&items::thread(&conversation, page)))
    }

    async fn list_threads(self) -> Result<Response, ApiError> {
        let params: ListParams = self.params()?;
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
            data: rows
                .iter()
                .map(|c| items::thread(c, Page::empty()))
                .collect(),
            has_more,
        };
        Ok(json_answer(&page))
    }

    async fn update_thread(self) -> Result<Response, ApiError> {
        let params: UpdateParams = self.params()?;
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
        Ok(json_answer(&items::thread(&renamed, Page::empty())))
    }

    async fn list_items(self) -> Result<Response, ApiError> {
        let params: ListParams = self.params()?;
        let thread_id = params.thread_id.as_deref().ok_or_else(|| {
            ApiError::bad_request("invalid params for items.list: missing field `thread_id`")
        })?;
        let limit = page_size(params.limit)?;
        if let Some(after) = params.after.as_deref()
            && items::parse_item_id(after).is_none()
        {
            return Err(ApiError::bad_request(format!(
                "{after:?} is not an item id"
            )));
        }
        let conversation = self.conversation(thread_id).await?;
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
    check_message(&text)?;
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
