//! The HTTP surface: the router, shared state, middleware and handlers.
//!
//! Only this layer knows wire shapes (JSON bodies, status codes, headers);
//! it turns requests into calls on the layers below and their errors into
//! [`ApiError`] responses.

mod admin;
mod auth;
mod chat;
mod chatkit;
mod conversations;
mod cors;
mod error;
mod health;
mod mcp;
mod metrics;
mod oauth;
mod openapi;
pub mod server;
mod tasks;
mod usage;
mod web;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::routing::{get, patch, post, put};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::{DefaultOnFailure, TraceLayer};

pub use error::{ApiError, AppBytes, AppJson};
pub use metrics::HttpMetrics;

use crate::agent::Agent;
use crate::auth::Authenticator;
use crate::config::ServeConfig;
use crate::plugins::{Registry, Reloader, Runtime};
use crate::store::Store;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub runtime: Arc<Runtime>,
    pub registry: Arc<Registry>,
    pub reloader: Arc<Reloader>,
    pub store: Store,
    pub auth: Arc<Authenticator>,
    pub agent: Arc<Agent>,
    /// Every tool call a door makes goes through it.
    pub audit: Arc<crate::audit::Audit>,
    pub http_metrics: Arc<HttpMetrics>,
    /// Dev mode's secret for this run (no `BETTER_AUTH_SECRET`): the chat
    /// page may ask for a demo token.
    pub dev_secret: Option<Arc<Vec<u8>>>,
    pub config: Arc<ServeConfig>,
    /// The replicas' shared plugin set, on PostgreSQL.
    pub fleet: Option<Arc<crate::fleet::Fleet>>,
    /// Credentials and plain-HTTP registries for installs from OCI registries.
    pub registries: Arc<crate::oci::RegistryConfig>,
    /// Cancelled when shutdown begins, so streams that would run forever
    /// (MCP subscriptions) end and let their connections close.
    pub draining: tokio_util::sync::CancellationToken,
}

pub fn router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    let allowed_origins = state.config.allowed_origins.clone();
    let admin = Router::new()
        .route("/admin/plugins", get(admin::list))
        .route("/admin/plugins/reload", post(admin::reload))
        .route(
            "/admin/plugins/{name}",
            put(admin::upload).delete(admin::remove),
        )
        .route("/admin/plugins/{name}/grant", post(admin::grant))
        .route("/admin/plugins/{name}/install", post(admin::install))
        .route("/admin/audit", get(admin::audit))
        .route(
            "/admin/plugins/{name}/data",
            axum::routing::delete(admin::purge_data),
        )
        .layer(DefaultBodyLimit::max(admin::MAX_UPLOAD_BYTES + 64 * 1024))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            admin::require_admin,
        ));
    Router::new()
        .merge(mcp::routes(state.clone()))
        .merge(admin)
        .merge(chatkit::routes())
        .merge(web::routes())
        .route("/metrics", get(metrics::metrics))
        .route("/openapi.json", get(openapi::document))
        .route("/healthz", get(health::healthz))
        .route(
            "/.well-known/oauth-protected-resource",
            get(oauth::resource),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(oauth::mcp_resource),
        )
        .route("/readyz", get(health::readyz))
        .route("/api/{user_id}/chat", post(chat::chat))
        .route("/api/{user_id}/conversations", get(conversations::list))
        .route("/api/{user_id}/usage", get(usage::usage))
        .route(
            "/api/{user_id}/conversations/{id}",
            get(conversations::read),
        )
        .route("/api/{user_id}/tasks", get(tasks::list).post(tasks::create))
        .route(
            "/api/{user_id}/tasks/{id}",
            get(tasks::get).put(tasks::update).delete(tasks::delete),
        )
        .route(
            "/api/{user_id}/tasks/{id}/complete",
            patch(tasks::toggle_complete),
        )
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::count_requests,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            oauth::challenge,
        ))
        .with_state(state)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::map_response(error::json_error_bodies))
        .layer(cors::layer(&allowed_origins))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                // A 503 from /readyz while plugins load is a state, not an
                // error; real failures log at ERROR where they happen.
                .on_failure(DefaultOnFailure::new().level(tracing::Level::WARN)),
        )
        .layer(SetRequestIdLayer::x_request_id(RequestCounter::default()))
}

/// One span per request, carrying its id (also sent back as `x-request-id`).
fn request_span(request: &Request) -> tracing::Span {
    let id = request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("-");
    let span = tracing::info_span!(
        "request",
        // The route is not known yet here (routing comes after this layer);
        // HTTP semantic conventions then name the span by its method.
        otel.name = %request.method(),
        otel.kind = "server",
        id,
        method = %request.method(),
        path = request.uri().path()
    );
    crate::telemetry::continue_trace(&span, request.headers());
    span
}

/// Request ids: the process start time and a counter, unique per process
/// run and cheap to make.
#[derive(Clone)]
struct RequestCounter {
    prefix: u64,
    next: Arc<AtomicU64>,
}

impl Default for RequestCounter {
    fn default() -> Self {
        let prefix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        RequestCounter {
            prefix,
            next: Arc::new(AtomicU64::new(1)),
        }
    }
}

impl MakeRequestId for RequestCounter {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{:x}-{n}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}

async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}
