//! OAuth protected resource metadata (RFC 9728), so MCP clients and other
//! OAuth clients find how to get a token from a 401 alone:
//!
//! - `GET /.well-known/oauth-protected-resource` describes this gateway as
//!   a resource (its REST API), and `…/oauth-protected-resource/mcp` its
//!   `/mcp` endpoint, the path-suffixed form MCP clients ask for;
//! - every 401 carries `WWW-Authenticate: Bearer resource_metadata="…"`
//!   pointing at the metadata of the resource asked for.
//!
//! The resource is `WASMGATE_PUBLIC_URL` when set (tokens must then name it
//! in `aud`), else the URL the request came to. The authorization server
//! is `WASMGATE_OAUTH_ISSUER`.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Value, json};

use super::AppState;
use crate::tasks::{TASKS_READ, TASKS_WRITE};

const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// This gateway's base URL: configured, or as the client reached it.
fn base(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = state.config.public_url() {
        return url.to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// The scopes a token can usefully hold: those of the task routes and of
/// the tools serving now.
fn scopes(state: &AppState) -> BTreeSet<String> {
    let snapshot = state.registry.snapshot();
    snapshot
        .tools()
        .into_iter()
        .filter_map(|tool| tool.scope.clone())
        .chain([TASKS_READ.to_string(), TASKS_WRITE.to_string()])
        .collect()
}

fn metadata(state: &AppState, headers: &HeaderMap, resource_path: &str) -> Value {
    let base = base(state, headers);
    json!({
        "resource": format!("{base}{resource_path}"),
        "authorization_servers": state.config.oauth_issuer.iter().collect::<Vec<_>>(),
        "scopes_supported": scopes(state),
        "bearer_methods_supported": ["header"],
        "resource_name": "wasmgate",
    })
}

/// `GET /.well-known/oauth-protected-resource`.
pub async fn resource(State(state): State<AppState>, headers: HeaderMap) -> Json<Value> {
    Json(metadata(&state, &headers, ""))
}

/// `GET /.well-known/oauth-protected-resource/mcp`.
pub async fn mcp_resource(State(state): State<AppState>, headers: HeaderMap) -> Json<Value> {
    Json(metadata(&state, &headers, "/mcp"))
}

/// Points every 401, and every 403 for a missing scope, at the metadata of
/// the resource the request was for.
pub async fn challenge(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let for_mcp = request.uri().path().starts_with("/mcp");
    let base = base(&state, request.headers());
    let mut response = next.run(request).await;
    let insufficient_scope = response.status() == StatusCode::FORBIDDEN
        && response.headers().contains_key(header::WWW_AUTHENTICATE);
    if response.status() == StatusCode::UNAUTHORIZED || insufficient_scope {
        let suffix = if for_mcp { "/mcp" } else { "" };
        let metadata = format!("resource_metadata=\"{base}{METADATA_PATH}{suffix}\"");
        // Keep the error and scope parameters of an `insufficient_scope` challenge.
        let value = match response.headers().get(header::WWW_AUTHENTICATE) {
            Some(existing) if insufficient_scope => {
                format!("{}, {metadata}", existing.to_str().unwrap_or("Bearer"))
            }
            _ => format!("Bearer {metadata}"),
        };
        if let Ok(value) = HeaderValue::from_str(&value) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
    }
    response
}
