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

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Value, json};

use super::AppState;

const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";
/// The scopes tools are grouped under.
const SCOPES: [&str; 2] = ["tasks:read", "tasks:write"];

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

fn metadata(state: &AppState, headers: &HeaderMap, resource_path: &str) -> Value {
    let base = base(state, headers);
    json!({
        "resource": format!("{base}{resource_path}"),
        "authorization_servers": state.config.oauth_issuer.iter().collect::<Vec<_>>(),
        "scopes_supported": SCOPES,
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

/// Points every 401 at the metadata of the resource the request was for.
pub async fn challenge(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let for_mcp = request.uri().path().starts_with("/mcp");
    let base = base(&state, request.headers());
    let mut response = next.run(request).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        let suffix = if for_mcp { "/mcp" } else { "" };
        let value = format!("Bearer resource_metadata=\"{base}{METADATA_PATH}{suffix}\"");
        if let Ok(value) = HeaderValue::from_str(&value) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
    }
    response
}
