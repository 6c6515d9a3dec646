//! The HTTP error type: every failure a client sees is a status and a JSON
//! body `{"error":{"code":"…","message":"…"}}`. 5xx bodies stay generic; the
//! cause is logged inside the request's span.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
    /// The scope a 403 `insufficient_scope` asks for (RFC 6750 section 3.1).
    pub scope_needed: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            scope_needed: None,
        }
    }

    /// 403 `insufficient_scope`: the token is good but lacks `scope`.
    pub fn insufficient_scope(scope: Option<&str>, what: &str) -> Self {
        let message = match scope {
            Some(scope) => format!("{what} needs the scope {scope}, which the token lacks"),
            None => format!("{what} is for tokens without scope restrictions"),
        };
        ApiError {
            scope_needed: scope.map(str::to_string),
            ..ApiError::new(StatusCode::FORBIDDEN, "insufficient_scope", message)
        }
    }

    /// 429 with `Retry-After`.
    pub fn rate_limited(wait: std::time::Duration) -> Self {
        let seconds = wait.as_secs().max(1);
        ApiError {
            retry_after: Some(seconds),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests; try again in {seconds} s"),
            )
        }
    }

    /// 503 for a store that failed (the cause was logged where it happened).
    /// The database did not take (or answer) the request; nothing was
    /// acknowledged that it did not store.
    pub fn storage_unavailable() -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "the database is unavailable; nothing was saved, try again shortly",
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// A server-side failure: logs `cause` and tells the client only that
    /// something went wrong on our side.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong on the server; it has been logged",
        )
    }
}

/// Every error's body: `{"error": {"code": "…", "message": "…"}}`.
#[derive(serde::Serialize, utoipa::ToSchema, utoipa::ToResponse)]
#[response(description = "An error: a stable code and a message for people")]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, e.g. `not_found`, `insufficient_scope`, `rate_limited`.
    pub code: String,
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        // `http::oauth::challenge` adds where the metadata is.
        let challenge = match (self.status, self.code) {
            (StatusCode::UNAUTHORIZED, _) => Some("Bearer".to_string()),
            (StatusCode::FORBIDDEN, "insufficient_scope") => Some(match &self.scope_needed {
                Some(scope) => format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\""),
                None => "Bearer error=\"insufficient_scope\"".to_string(),
            }),
            _ => None,
        };
        if let Some(value) = challenge.and_then(|v| axum::http::HeaderValue::from_str(&v).ok()) {
            response
                .headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(_: crate::store::StoreError) -> Self {
        ApiError::storage_unavailable()
    }
}

impl From<crate::oci::OciError> for ApiError {
    fn from(err: crate::oci::OciError) -> Self {
        use crate::oci::OciError;
        let (status, code) = match &err {
            OciError::Reference(_) => (StatusCode::BAD_REQUEST, "invalid_reference"),
            OciError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            OciError::NotAPlugin { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_plugin"),
            OciError::Registry { .. } => (StatusCode::BAD_GATEWAY, "registry_unavailable"),
        };
        ApiError::new(status, code, err.to_string())
    }
}

/// `Json` whose rejections (bad syntax, wrong types, wrong content type, body
/// too large) are [`ApiError`]s with the JSON body.
pub struct AppJson<T>(pub T);

impl<S, T> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(AppJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// A raw body whose rejection (too large, unreadable) is an [`ApiError`],
/// for handlers that parse the body themselves.
pub struct AppBytes(pub axum::body::Bytes);

impl<S> FromRequest<S> for AppBytes
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::body::Bytes::from_request(req, state).await {
            Ok(bytes) => Ok(AppBytes(bytes)),
            Err(rejection) => {
                let status = rejection.status();
                let code = match status {
                    StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
                    _ => "bad_request",
                };
                Err(ApiError::new(status, code, rejection.body_text()))
            }
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        _ => "bad_request",
    };
    // Malformed and mistyped bodies are both the client's mistake: 400.
    let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    ApiError::new(status, code, rejection.body_text())
}

impl From<crate::agent::MessageProblem> for ApiError {
    /// Empty or too long: 400 (docs/HTTP-API.md, "Chat"); a control character: 422.
    fn from(problem: crate::agent::MessageProblem) -> Self {
        match problem {
            crate::agent::MessageProblem::ControlCharacter(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                problem.to_string(),
            ),
            _ => ApiError::bad_request(problem.to_string()),
        }
    }
}

/// Gives every error response the contract's JSON body: rejections made
/// outside the handlers (a path or query that does not parse, a bad
/// multipart boundary, a body over the limit) come from axum and hyper as
/// plain text. Their text becomes the message; their headers (`Allow`,
/// `WWW-Authenticate`, `Retry-After`) stay.
pub async fn json_error_bodies(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "validation_failed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        _ if status.is_client_error() => "bad_request",
        _ => "internal",
    };
    let body = ApiError::new(status, code, message).into_response();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, body.into_body())
}

impl From<crate::agent::AgentError> for ApiError {
    /// What every door answers for a turn that could not start or failed;
    /// a provider's failure says that the user's message was kept.
    fn from(error: crate::agent::AgentError) -> Self {
        use crate::agent::AgentError;
        let saved = |conversation_id: i64| {
            format!("{error}. Your message was saved in conversation {conversation_id}.")
        };
        match &error {
            AgentError::InvalidMessage(problem) => problem.clone().into(),
            AgentError::RateLimited(wait) => ApiError::rate_limited(*wait),
            AgentError::BudgetExceeded { reset_in, .. } => ApiError {
                retry_after: Some(reset_in.as_secs().max(1)),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "budget_exceeded",
                    error.to_string(),
                )
            },
            AgentError::ConversationNotFound(_) | AgentError::MessageNotFound(_) => {
                ApiError::not_found(error.to_string())
            }
            AgentError::NotAUserMessage(_) => ApiError::bad_request(error.to_string()),
            AgentError::Store(_) => ApiError::storage_unavailable(),
            AgentError::Provider {
                conversation_id, ..
            } => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "provider_error",
                saved(*conversation_id),
            ),
            AgentError::ProviderTimeout {
                conversation_id, ..
            } => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "provider_timeout",
                saved(*conversation_id),
            ),
            AgentError::ProviderMissing(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "provider_unavailable",
                error.to_string(),
            ),
            // Only a turn the client left is cancelled; no one reads this.
            AgentError::Cancelled { .. } => {
                ApiError::new(StatusCode::CONFLICT, "cancelled", error.to_string())
            }
            AgentError::Crashed(_) => ApiError::internal(&error),
        }
    }
}
