//! The chat page at `/` and the ChatKit page at `/chatkit`, embedded in the
//! binary (no CDN, nothing to deploy beside it), and dev mode's demo token.

use axum::Json;
use axum::Router;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HOST, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::DEV_USER;

/// The chat page loads only what this server serves.
const PAGE_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
                           connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; \
                           base-uri 'none'; form-action 'self'";
/// The ChatKit page must run OpenAI's runtime (which then loads what it
/// needs), so it only refuses framing and base or plugin tricks.
const CHATKIT_POLICY: &str = "frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

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
        .route("/chatkit", get(chatkit_page))
        .route(
            "/chatkit.js",
            get(|| asset("text/javascript", include_str!("../../web/chatkit.js"))),
        )
        .route("/api/v1/dev/token", post(dev_token))
}

async fn chat_page() -> Response {
    page(include_str!("../../web/index.html"), PAGE_POLICY).await
}

async fn chatkit_page() -> Response {
    page(include_str!("../../web/chatkit.html"), CHATKIT_POLICY).await
}

async fn page(body: &'static str, policy: &'static str) -> Response {
    let mut response = asset("text/html", body).await;
    response
        .headers_mut()
        .insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(policy));
    response
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, format!("{content_type}; charset=utf-8")),
            // Revalidate, so a new binary's page is never mixed with an old one's.
            (CACHE_CONTROL, "no-cache".to_string()),
            (X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        body,
    )
        .into_response()
}

/// `POST /api/v1/dev/token`: a token for the demo user, in dev mode only,
/// and only to a browser on this machine that names this machine (a page
/// elsewhere cannot reach it by rebinding a name to 127.0.0.1).
async fn dev_token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let off =
        || ApiError::not_found("dev mode is off: sign in with a token from your identity provider");
    let secret = state.dev_secret.as_ref().ok_or_else(off)?;
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(name, _)| name);
    if !peer.ip().is_loopback() || !matches!(host, "localhost" | "127.0.0.1" | "[::1]") {
        return Err(off());
    }
    let token = crate::auth::mint(
        secret,
        DEV_USER,
        std::time::Duration::from_secs(24 * 3600),
        None,
    );
    Ok(Json(json!({"user": DEV_USER, "token": token})))
}
