//! `GET /openapi.json`: the REST API's OpenAPI 3.1 document, generated
//! from the handlers' own `#[utoipa::path]` attributes and wire types, so it
//! cannot drift from what they answer. ChatKit's endpoint (its own
//! protocol, docs/CHATKIT.md) and `/mcp` (docs/MCP.md) are described there
//! instead. CI fuzzes the live server against this document (schemathesis).

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::{ErrorBody, ErrorDetail};
use super::{admin, chat, chatkit, conversations, tasks, usage};

#[derive(OpenApi)]
#[openapi(
    info(title = "wasmgate", description = "Task chat: tasks, chat turns, conversations, \
        ChatKit sessions and the admin API. Every route takes a bearer token: a user's \
        JWT (`user`), or for `/admin` the operator's token (`admin`)."),
    paths(
        tasks::list, tasks::create, tasks::get, tasks::update, tasks::delete,
        tasks::toggle_complete,
        chat::chat,
        conversations::list, conversations::read,
        usage::usage,
        chatkit::sessions::create, chatkit::sessions::cancel,
        admin::list, admin::reload, admin::upload, admin::install, admin::remove, admin::grant,
        admin::purge_data, admin::audit,
    ),
    components(responses(ErrorBody), schemas(ErrorBody, ErrorDetail)),
    security(("user" = [])),
    modifiers(&BearerSchemes),
    tags(
        (name = "tasks", description = "A user's tasks (scopes tasks:read, tasks:write)"),
        (name = "chat", description = "One agent turn"),
        (name = "conversations", description = "Conversations as the chat page reads them"),
        (name = "usage", description = "What a user's turns cost"),
        (name = "chatkit", description = "Client secrets for the ChatKit widget"),
        (name = "admin", description = "The plugin set and the audit log, for operators"),
    )
)]
struct ApiDoc;

/// The two bearer schemes: users' JWTs and the admin token.
struct BearerSchemes;

impl Modify for BearerSchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut jwt = Http::new(HttpAuthScheme::Bearer);
        jwt.bearer_format = Some("JWT".into());
        components.add_security_scheme("user", SecurityScheme::Http(jwt));
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
