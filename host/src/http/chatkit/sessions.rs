//! `POST /api/v1/chatkit/sessions` and `…/{id}/cancel` (docs/HTTP-API.md, "ChatKit sessions"), and
//! the client-secret check of the ChatKit endpoint.
//!
//! A session is a short-lived secret the ChatKit widget sends instead of the
//! user's JWT. Secrets are random, stored only as SHA-256, and checked
//! against the store on every request (expiry, cancellation and the
//! per-session rate limit), so any replica can check any session.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::items;
use crate::auth::{Caller, Scopes};
use crate::http::auth::AuthUser;
use crate::http::error::ErrorBody;
use crate::http::{ApiError, AppBytes, AppState};
use crate::plugins::sha256_hex;
use crate::store::ChatKitSession;

/// Every client secret starts with this, so the endpoint can tell a secret
/// from a JWT without trying both.
pub const SECRET_PREFIX: &str = "cks_";
const DEFAULT_LIFETIME_SECS: i64 = 600;
/// Every ChatKit request counts, reads included (the widget makes several
/// per turn); turns also count against the per-user chat limit.
const DEFAULT_REQUESTS_PER_MINUTE: i64 = 120;
const MAX_LIFETIME_SECS: i64 = 24 * 60 * 60;
const MAX_REQUESTS_PER_MINUTE: i64 = 10_000;

/// Fields of OpenAI's hosted sessions API this server has no use for
/// (`user`, `workflow`, `chatkit_configuration`) are ignored. The body is
/// optional: none (or `{}`) takes every default.
#[derive(Deserialize, Default, ToSchema)]
pub struct CreateSession {
    /// The conversation the widget opens; the user's latest (or a new one)
    /// when left out.
    conversation_id: Option<i64>,
    /// 600 s by default, at most a day.
    expires_after: Option<ExpiresAfter>,
    /// 120 requests a minute by default.
    rate_limits: Option<RateLimits>,
}

#[derive(Deserialize, ToSchema)]
pub struct ExpiresAfter {
    /// Must be `created_at`.
    anchor: String,
    /// 1-86400.
    seconds: i64,
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct RateLimits {
    /// 1-10000.
    max_requests_per_1_minute: i64,
}

/// A session, as created (with its `client_secret`) or cancelled.
#[derive(Serialize, ToSchema)]
pub struct SessionBody {
    id: String,
    /// Always `chatkit.session`.
    object: &'static str,
    session_id: String,
    /// Unix seconds.
    expires_at: i64,
    /// `active`, `expired` or `cancelled`.
    status: &'static str,
    user: String,
    max_requests_per_1_minute: i64,
    rate_limits: RateLimits,
    #[serde(skip_serializing_if = "Option::is_none")]
    conversation_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread_id: Option<String>,
    /// Only when created: what the widget authenticates with.
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<String>,
}

#[utoipa::path(post, operation_id = "create_chatkit_session", path = "/api/v1/chatkit/sessions", tag = "chatkit",
    request_body(content = Option<CreateSession>, description = "Optional"),
    responses((status = 200, body = SessionBody), (status = 400, response = ErrorBody),
        (status = 401, response = ErrorBody), (status = 404, response = ErrorBody),
        (status = 413, response = ErrorBody), (status = 503, response = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppBytes(body): AppBytes,
) -> Result<Json<SessionBody>, ApiError> {
    // The body is optional: none (or `{}`) takes every default.
    let request: CreateSession = if body.iter().all(u8::is_ascii_whitespace) {
        CreateSession::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|err| ApiError::bad_request(format!("invalid session request: {err}")))?
    };
    let lifetime = match request.expires_after {
        None => DEFAULT_LIFETIME_SECS,
        Some(ExpiresAfter { anchor, .. }) if anchor != "created_at" => {
            return Err(ApiError::bad_request(
                "expires_after.anchor must be \"created_at\"",
            ));
        }
        Some(ExpiresAfter { seconds, .. }) if !(1..=MAX_LIFETIME_SECS).contains(&seconds) => {
            return Err(ApiError::bad_request(format!(
                "expires_after.seconds must be between 1 and {MAX_LIFETIME_SECS}"
            )));
        }
        Some(ExpiresAfter { seconds, .. }) => seconds,
    };
    let max_per_minute = match request.rate_limits {
        None => DEFAULT_REQUESTS_PER_MINUTE,
        Some(RateLimits {
            max_requests_per_1_minute: n,
        }) if (1..=MAX_REQUESTS_PER_MINUTE).contains(&n) => n,
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "rate_limits.max_requests_per_1_minute must be between 1 and {MAX_REQUESTS_PER_MINUTE}"
            )));
        }
    };
    // The conversation the widget opens: the one asked for, else the
    // user's latest, else a new one (titled by its first message).
    let user = caller.user.as_str();
    let conversation = match request.conversation_id {
        Some(id) => state
            .store
            .conversation(user, id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("conversation {id} not found")))?,
        None => match state.store.latest_conversation(user).await? {
            Some(latest) => latest,
            None => state.store.create_conversation(user, None).await?,
        },
    };

    let secret = format!("{SECRET_PREFIX}{}", random_hex(32));
    let created_at = unix_now();
    // Sessions a day past their expiry are of no use, even for an audit.
    state
        .store
        .delete_sessions_expired_before(created_at - 24 * 3600)
        .await?;
    let session = ChatKitSession {
        id: format!("cksess_{}", random_hex(12)),
        user_id: user.to_string(),
        conversation_id: Some(conversation.id),
        created_at,
        expires_at: created_at + lifetime,
        cancelled: false,
        max_per_minute,
        scopes: caller.scopes.to_claim(),
    };
    state
        .store
        .create_session(&session, &sha256_hex(secret.as_bytes()))
        .await?;
    Ok(Json(SessionBody {
        client_secret: Some(secret),
        ..SessionBody::from(&session)
    }))
}

#[utoipa::path(post, operation_id = "cancel_chatkit_session", path = "/api/v1/chatkit/sessions/{id}/cancel", tag = "chatkit",
    params(("id" = String, Path, description = "The session's id (`cksess_…`)")),
    responses((status = 200, body = SessionBody), (status = 401, response = ErrorBody),
        (status = 404, response = ErrorBody), (status = 503, response = ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    AuthUser(Caller { user, .. }): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<SessionBody>, ApiError> {
    // Session ids are ours (`cksess_…`); anything else names no session.
    if crate::tasks::disallowed_char(&id).is_some() || id.len() > 128 {
        return Err(ApiError::not_found("no such session"));
    }
    let session = state
        .store
        .cancel_session(&user, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("session {id} not found")))?;
    Ok(Json(SessionBody::from(&session)))
}

/// Who a client secret acts for (the session's user, with the scopes of
/// the token that created it), counted against the session's rate limit.
pub async fn authenticate(state: &AppState, secret: &str) -> Result<Caller, ApiError> {
    let unauthorized = |message: &str| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            message.to_string(),
        )
    };
    let session = state
        .store
        .session_by_secret(&sha256_hex(secret.as_bytes()))
        .await?
        .ok_or_else(|| unauthorized("unknown client secret"))?;
    let now = unix_now();
    if session.cancelled {
        return Err(unauthorized("the client secret was cancelled"));
    }
    if now >= session.expires_at {
        return Err(unauthorized("the client secret has expired"));
    }
    let (window_start, count) = state.store.count_session_request(&session.id, now).await?;
    if count > session.max_per_minute {
        let wait = (window_start + 60 - now).max(1);
        return Err(ApiError::rate_limited(Duration::from_secs(wait as u64)));
    }
    Ok(Caller {
        scopes: Scopes::from_claim(session.scopes.as_deref()),
        user: session.user_id,
    })
}

impl From<&ChatKitSession> for SessionBody {
    fn from(session: &ChatKitSession) -> Self {
        let status = if session.cancelled {
            "cancelled"
        } else if unix_now() >= session.expires_at {
            "expired"
        } else {
            "active"
        };
        SessionBody {
            id: session.id.clone(),
            object: "chatkit.session",
            session_id: session.id.clone(),
            expires_at: session.expires_at,
            status,
            user: session.user_id.clone(),
            max_requests_per_1_minute: session.max_per_minute,
            rate_limits: RateLimits {
                max_requests_per_1_minute: session.max_per_minute,
            },
            conversation_id: session.conversation_id,
            thread_id: session.conversation_id.map(items::thread_id),
            client_secret: None,
        }
    }
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random source is available");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
