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
use serde::Deserialize;
use serde_json::{Value, json};

use super::items;
use crate::auth::{Caller, Scopes};
use crate::http::auth::AuthUser;
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
/// (`user`, `workflow`, `chatkit_configuration`) are ignored.
#[derive(Deserialize, Default)]
struct CreateSession {
    conversation_id: Option<i64>,
    expires_after: Option<ExpiresAfter>,
    rate_limits: Option<RateLimits>,
}

#[derive(Deserialize)]
struct ExpiresAfter {
    anchor: String,
    seconds: i64,
}

#[derive(Deserialize)]
struct RateLimits {
    max_requests_per_1_minute: i64,
}

pub async fn create(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppBytes(body): AppBytes,
) -> Result<Json<Value>, ApiError> {
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
    let mut body = session_json(&session);
    body["client_secret"] = json!(secret);
    Ok(Json(body))
}

pub async fn cancel(
    State(state): State<AppState>,
    AuthUser(Caller { user, .. }): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    // Session ids are ours (`cksess_…`); anything else names no session.
    if crate::tasks::disallowed_char(&id).is_some() || id.len() > 128 {
        return Err(ApiError::not_found("no such session"));
    }
    let session = state
        .store
        .cancel_session(&user, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("session {id} not found")))?;
    Ok(Json(session_json(&session)))
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

fn session_json(session: &ChatKitSession) -> Value {
    let status = if session.cancelled {
        "cancelled"
    } else if unix_now() >= session.expires_at {
        "expired"
    } else {
        "active"
    };
    let mut body = json!({
        "id": session.id,
        "object": "chatkit.session",
        "session_id": session.id,
        "expires_at": session.expires_at,
        "status": status,
        "user": session.user_id,
        "max_requests_per_1_minute": session.max_per_minute,
        "rate_limits": {"max_requests_per_1_minute": session.max_per_minute},
    });
    if let Some(id) = session.conversation_id {
        body["conversation_id"] = json!(id);
        body["thread_id"] = json!(items::thread_id(id));
    }
    body
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random source is available");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
