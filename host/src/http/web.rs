//! The chat page at `/` and the ChatKit page at `/chatkit`, embedded in the
//! binary (no CDN, nothing to deploy beside it), and dev mode's demo token.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::DEV_USER;

/// The chat page loads only what this server serves.
const PAGE_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
                           connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(chat_page))
        .route(
            "/app.js",
            get(|| asset("text/javascript", include_str!("../../web/app.js"))),
        )
        .route(
            "/app.css",
            get(|| asset("text/css", include_str!("../../web/app.css"))),
        )
        .route(
            "/chatkit",
            get(|| asset("text/html", include_str!("../../web/chatkit.html"))),
        )
        .route(
            "/chatkit.js",
            get(|| asset("text/javascript", include_str!("../../web/chatkit.js"))),
        )
        .route("/api/v1/dev/token", post(dev_token))
}

async fn chat_page() -> Response {
    let mut response = asset("text/html", include_str!("../../web/index.html")).await;
    // Only the chat page: the ChatKit page must load OpenAI's runtime.
    response.headers_mut().insert(
        CONTENT_SECURITY_POLICY,
        PAGE_POLICY.parse().expect("a valid header"),
    );
    response
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, format!("{content_type}; charset=utf-8")),
            // Revalidate, so a new binary's page is never mixed with an old one's.
            (CACHE_CONTROL, "no-cache".to_string()),
        ],
        body,
    )
        .into_response()
}

/// `POST /api/v1/dev/token`: a token for the demo user, in dev mode only.
async fn dev_token(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let secret = state.dev_secret.as_ref().ok_or_else(|| {
        ApiError::not_found("dev mode is off: sign in with a token from your identity provider")
    })?;
    let token = crate::auth::mint(secret, DEV_USER, std::time::Duration::from_secs(24 * 3600));
    Ok(Json(json!({"user": DEV_USER, "token": token})))
}
