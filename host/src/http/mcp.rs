//! `/mcp`: the plugin tools over MCP Streamable HTTP (MCP spec 2025-11-25,
//! `basic/transports` and `server/tools`), for any MCP client (docs/MCP.md).
//!
//! rmcp's transport does the protocol: stateless, JSON responses, version
//! negotiation (2025-11-25 and the older versions clients still send),
//! Host and Origin checks. This module adds what is ours: the bearer token
//! (401 with `WWW-Authenticate` before rmcp sees the request), and tools
//! listed from and called on the current registry snapshot, for the token's
//! user. Without a standing stream there is no one to tell that the tool
//! list changed; clients see a reload at their next `tools/list`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};

use crate::audit::Door;
use serde_json::{Value, json};

use super::AppState;
use super::auth::AuthUser;

/// The authenticated user, put in the request's extensions by [`require_user`].
#[derive(Clone)]
struct McpUser(String);

/// The `/mcp` route: authentication in front of rmcp's service.
pub fn routes(state: AppState) -> Router<AppState> {
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_allowed_origins(state.config.allowed_origins.clone())
        .with_max_request_body_bytes(state.config.max_body_bytes);
    // A non-loopback listener is reached by name; Host checks (DNS-rebinding
    // protection for local servers) then belong to the proxy in front.
    let config = if state.config.listen.ip().is_loopback() {
        config
    } else {
        config.disable_allowed_hosts()
    };
    let server_state = state.clone();
    let service = StreamableHttpService::new(
        move || {
            Ok(McpServer {
                state: server_state.clone(),
            })
        },
        Arc::new(NeverSessionManager::default()),
        config,
    );
    Router::new()
        .route_service("/mcp", service)
        .layer(middleware::from_fn_with_state(state, require_user))
}

async fn require_user(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    match <AuthUser as axum::extract::FromRequestParts<AppState>>::from_request_parts(
        &mut parts, &state,
    )
    .await
    {
        Ok(AuthUser(user)) => {
            parts.extensions.insert(McpUser(user));
            next.run(Request::from_parts(parts, body)).await
        }
        Err(error) => error.into_response(),
    }
}

#[derive(Clone)]
struct McpServer {
    state: AppState,
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new("wasmgate", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "Task tools for the authenticated user: add, list, complete, update and delete tasks.",
        )
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let snapshot = self.state.registry.snapshot();
        let tools = snapshot
            .tools()
            .into_iter()
            .map(|tool| {
                let schema = match &tool.input_schema {
                    Value::Object(schema) => schema.clone(),
                    _ => JsonObject::new(),
                };
                Tool::new(
                    tool.name.clone(),
                    tool.description.clone(),
                    Arc::new(schema),
                )
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let user = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<McpUser>())
            .cloned()
            .ok_or_else(|| {
                ErrorData::internal_error("no authenticated user on the request", None)
            })?;
        let snapshot = self.state.registry.snapshot();
        let Some((plugin, _)) = snapshot.tool(&request.name) else {
            return Err(ErrorData::invalid_params(
                format!("unknown tool: {}", request.name),
                None,
            ));
        };
        let arguments = Value::Object(request.arguments.unwrap_or_default()).to_string();
        let result = match self
            .state
            .audit
            .call_tool(
                &self.state.runtime,
                plugin,
                &user.0,
                Door::Mcp,
                &request.name,
                &arguments,
            )
            .await
        {
            Ok(value) => structured(&request.name, value),
            Err(error) => CallToolResult::error(vec![ContentBlock::text(error.to_string())]),
        };
        Ok(result.into())
    }
}

/// A tool result as MCP wants it: the JSON text for older clients, and a
/// JSON object as `structuredContent`, a list wrapped under a name
/// (`list_tasks` → `{"tasks": [...]}`).
fn structured(tool: &str, value: Value) -> CallToolResult {
    let text = value.to_string();
    let object = if value.is_object() {
        value
    } else {
        let key = tool.strip_prefix("list_").unwrap_or("result");
        json!({ key: value })
    };
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(object);
    result
}
