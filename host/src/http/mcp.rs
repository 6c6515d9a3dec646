//! `/mcp`: the plugin tools over MCP Streamable HTTP (`basic/transports`
//! and `server/tools`), for any MCP client (docs/MCP.md).
//!
//! rmcp's transport does the protocol: stateless, JSON responses, version
//! negotiation (2026-07-28 and the older versions clients still send),
//! Host and Origin checks. This module adds what is ours:
//! - the bearer token, checked before rmcp sees the request (401 with
//!   `WWW-Authenticate`), and its scopes: a token lists and calls only the
//!   tools its scopes allow, and a `tools/call` of another is a 403
//!   `insufficient_scope`;
//! - tools listed from and called on the current registry snapshot, for
//!   the token's user;
//! - `subscriptions/listen` (2026-07-28), which tells a client when a reload
//!   changed the tools. Older versions would need a session's standing
//!   stream for that, which a stateless server has not, so they are not
//!   told `listChanged` and see a reload at their next `tools/list`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, DiscoverResult,
    Implementation, InitializeRequestParams, InitializeResult, JsonObject, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, SubscriptionFilter, Tool,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};

use super::auth::AuthUser;
use super::{ApiError, AppState};
use crate::audit::{Door, ToolInvocation};
use crate::auth::{Caller, Scopes};

/// How long a `server/discover` answer stays true: the capabilities are
/// fixed for the life of the process.
const DISCOVER_TTL_MS: u64 = 3_600_000;

/// The authenticated caller, put in the request's extensions by [`require_user`].
#[derive(Clone)]
struct McpUser(Caller);

/// The `/mcp` route: authentication in front of rmcp's service.
pub fn routes(state: AppState) -> Router<AppState> {
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        // Comments on a `subscriptions/listen` stream keep idle proxies from
        // closing it; plain requests answer in JSON and never see one.
        .with_sse_keep_alive(Some(std::time::Duration::from_secs(15)))
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

/// Authenticates the request, and answers a `tools/call` of a tool the
/// token's scopes do not allow with HTTP 403 `insufficient_scope` (as the
/// MCP authorization spec asks, so a client can step up its token).
async fn require_user(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let caller = match <AuthUser as axum::extract::FromRequestParts<AppState>>::from_request_parts(
        &mut parts, &state,
    )
    .await
    {
        Ok(AuthUser(caller)) => caller,
        Err(error) => return error.into_response(),
    };
    let body = match caller.scopes {
        Scopes::Unrestricted => body,
        Scopes::Only(_) => {
            let bytes = match axum::body::to_bytes(body, state.config.max_body_bytes).await {
                Ok(bytes) => bytes,
                Err(_) => {
                    return ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        format!("the body is over {} bytes", state.config.max_body_bytes),
                    )
                    .into_response();
                }
            };
            if let Some(tool) = called_tool(&bytes)
                && let Some((_, spec)) = state.registry.snapshot().tool(&tool)
                && !caller.scopes.allow(spec.scope.as_deref())
            {
                return ApiError::insufficient_scope(
                    spec.scope.as_deref(),
                    &format!("the tool {tool}"),
                )
                .into_response();
            }
            axum::body::Body::from(bytes)
        }
    };
    parts.extensions.insert(McpUser(caller));
    next.run(Request::from_parts(parts, body)).await
}

/// The tool a JSON-RPC `tools/call` request names, if the body is one.
fn called_tool(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Message {
        method: String,
        params: Option<Params>,
    }
    #[derive(serde::Deserialize)]
    struct Params {
        name: String,
    }
    let message: Message = serde_json::from_slice(body).ok()?;
    (message.method == "tools/call").then_some(message.params?.name)
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

    /// The `initialize` handshake belongs to the versions before
    /// 2026-07-28, which send list changes on a session's standing stream.
    /// This server keeps no sessions, so it does not promise them there.
    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        context.peer.set_peer_info(request.clone());
        let mut result = self.negotiate_initialize(&request)?;
        if let Some(tools) = result.capabilities.tools.as_mut() {
            tools.list_changed = None;
        }
        Ok(result)
    }

    /// The capabilities are this build's: fresh for as long as it runs.
    async fn discover(&self, _: RequestContext<RoleServer>) -> Result<DiscoverResult, ErrorData> {
        Ok(DiscoverResult::from_server_info(
            self.supported_protocol_versions().into_owned(),
            self.get_info(),
        )
        .with_ttl_ms(DISCOVER_TTL_MS))
    }

    /// `subscriptions/listen` (2026-07-28): tool list changes only.
    fn accepted_subscription_filter(&self, _: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        Some(SubscriptionFilter::builder().tools_list_changed().build())
    }

    /// Sends `notifications/tools/list_changed` on every registry swap that
    /// changes the tools, until the client goes or the server shuts down.
    async fn listen(&self, subscription: SubscriptionContext) -> Result<(), ErrorData> {
        let mut changes = self.state.registry.tools_changed();
        changes.mark_unchanged();
        loop {
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err()
                        || subscription.sink().notify_tool_list_changed().await.is_err()
                    {
                        return Ok(());
                    }
                }
                () = subscription.cancelled() => return Ok(()),
                () = self.state.draining.cancelled() => return Ok(()),
            }
        }
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let caller = caller(&context)?;
        let snapshot = self.state.registry.snapshot();
        let tools = snapshot
            .tools()
            .into_iter()
            .filter(|tool| caller.scopes.allow(tool.scope.as_deref()))
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
        // An operator may reload at any moment: the list is fresh only
        // until then, so a client should revalidate (or subscribe).
        let mut result = ListToolsResult::with_all_items(tools);
        result.ttl_ms = Some(0);
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = caller(&context)?;
        let snapshot = self.state.registry.snapshot();
        // A tool the scopes do not allow is unknown here (the middleware
        // answered 403 for it when the request came in).
        let offered = snapshot
            .tool(&request.name)
            .filter(|(_, spec)| caller.scopes.allow(spec.scope.as_deref()));
        let Some((plugin, _)) = offered else {
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
                (&caller.user, Door::Mcp),
                ToolInvocation {
                    tool: &request.name,
                    arguments: &arguments,
                    id: None,
                },
            )
            .await
        {
            Ok(value) => structured(&request.name, value),
            Err(error) => CallToolResult::error(vec![ContentBlock::text(error.to_string())]),
        };
        Ok(result.into())
    }
}

/// The caller [`require_user`] authenticated.
fn caller(context: &RequestContext<RoleServer>) -> Result<Caller, ErrorData> {
    context
        .extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<McpUser>())
        .map(|user| user.0.clone())
        .ok_or_else(|| ErrorData::internal_error("no authenticated user on the request", None))
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
