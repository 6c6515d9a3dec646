//! The admin API (docs/HTTP-API.md, "Admin"): the plugin set for operators,
//! behind `WASMGATE_ADMIN_TOKEN` (401 without it; 404 when unset, as if the
//! API did not exist).
//!
//! Uploads are validated exactly as a load would (compile, world, grants,
//! tool specs) before anything touches the plugin directory, then written
//! atomically (temporary file, then rename) and picked up by a reload.

use std::path::Path;
use std::time::UNIX_EPOCH;

use axum::Json;
use axum::extract::{Multipart, Path as UrlPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::auth::bearer_token;
use super::error::{AppJson, ErrorBody};
use super::{ApiError, AppState};
use crate::audit::AuditEntry;
use crate::fleet::Fleet;
use crate::oci;
use crate::plugins::{Manifest, Pin, PluginFiles, ReloadReport, sha256_hex};

/// Largest component accepted by upload (or pulled from a registry).
pub use crate::plugins::MAX_COMPONENT_BYTES as MAX_UPLOAD_BYTES;

pub async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = state
        .config
        .admin_token
        .as_deref()
        .filter(|t| !t.is_empty())
    else {
        return ApiError::not_found("the admin API is disabled (set WASMGATE_ADMIN_TOKEN)")
            .into_response();
    };
    let (parts, body) = request.into_parts();
    let presented = bearer_token(&parts).unwrap_or_default();
    if !constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid admin token is required",
        )
        .into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}

/// Compares without an early exit, so timing does not reveal the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The plugin set serving now.
#[derive(Serialize, ToSchema)]
pub struct PluginList {
    plugins: Vec<PluginBody>,
    /// Files in the plugin directory that did not load, and why.
    rejected: Vec<Rejected>,
}

#[derive(Serialize, ToSchema)]
pub struct PluginBody {
    name: String,
    version: String,
    /// `tool` or `provider`.
    kind: &'static str,
    sha256: String,
    tools: Vec<String>,
    /// `active`, or `stale` when its files changed and no longer load (the
    /// loaded version keeps serving).
    state: &'static str,
    last_error: Option<String>,
    /// For a plugin installed from an OCI registry: the reference asked
    /// for and the digest reference it was pulled as.
    oci: Option<PinBody>,
    /// Unix seconds.
    loaded_at: u64,
    calls: u64,
    errors: u64,
    timeouts: u64,
    latency_seconds_total: f64,
}

#[derive(Serialize, ToSchema)]
pub struct PinBody {
    requested: String,
    pinned: String,
}

#[derive(Serialize, ToSchema)]
pub struct Rejected {
    file: String,
    error: String,
}

/// What a reload (or an upload, or a grant) did.
#[derive(Serialize, ToSchema)]
pub struct ReloadBody {
    /// The plugins serving after it.
    plugins: Vec<String>,
    rejected: Vec<Rejected>,
    took_ms: f64,
    /// For a grant: the policy entry written.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    granted: Option<Value>,
}

impl From<&ReloadReport> for ReloadBody {
    fn from(report: &ReloadReport) -> Self {
        ReloadBody {
            plugins: report.plugins.clone(),
            rejected: rejected(report.rejected.iter().map(|(file, error)| (file, error))),
            took_ms: report.took.as_secs_f64() * 1e3,
            granted: None,
        }
    }
}

fn rejected<'a>(rejected: impl IntoIterator<Item = (&'a String, &'a String)>) -> Vec<Rejected> {
    rejected
        .into_iter()
        .map(|(file, error)| Rejected {
            file: file.clone(),
            error: error.clone(),
        })
        .collect()
}

#[utoipa::path(get, operation_id = "list_plugins", path = "/admin/plugins", tag = "admin", security(("admin" = [])),
    responses((status = 200, body = PluginList), (status = 401, response = ErrorBody),
        (status = 404, response = ErrorBody)))]
pub async fn list(State(state): State<AppState>) -> Json<PluginList> {
    let snapshot = state.registry.snapshot();
    let plugins = snapshot
        .plugins()
        .map(|plugin| {
            let stats = plugin.stats.snapshot();
            let file = plugin
                .origin
                .as_deref()
                .and_then(Path::file_stem)
                .map(|s| s.to_string_lossy().into_owned());
            let last_error = file.and_then(|f| snapshot.rejected().get(&f).cloned());
            PluginBody {
                name: plugin.name().to_string(),
                version: plugin.manifest.version.clone(),
                kind: plugin.kind().as_str(),
                sha256: plugin.sha256.clone(),
                tools: plugin.tools.iter().map(|t| t.name.clone()).collect(),
                state: if last_error.is_some() {
                    "stale"
                } else {
                    "active"
                },
                last_error,
                oci: plugin.pin.as_ref().map(|pin| PinBody {
                    requested: pin.requested.clone(),
                    pinned: pin.pinned.clone(),
                }),
                loaded_at: plugin
                    .loaded_at
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default(),
                calls: stats.calls,
                errors: stats.errors,
                timeouts: stats.timeouts,
                latency_seconds_total: stats.seconds_total,
            }
        })
        .collect();
    Json(PluginList {
        plugins,
        rejected: rejected(snapshot.rejected()),
    })
}

#[utoipa::path(post, operation_id = "reload_plugins", path = "/admin/plugins/reload", tag = "admin", security(("admin" = [])),
    responses((status = 200, body = ReloadBody), (status = 401, response = ErrorBody),
        (status = 404, response = ErrorBody)))]
pub async fn reload(State(state): State<AppState>) -> Json<ReloadBody> {
    Json(ReloadBody::from(&state.reloader.reload().await))
}

/// An upload: the component and its manifest.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "describes the multipart body for the OpenAPI document"
)]
pub struct Upload {
    /// The `.wasm` component.
    #[schema(format = Binary, value_type = String)]
    component: Vec<u8>,
    /// The manifest's TOML.
    #[schema(format = Binary, value_type = String)]
    manifest: Vec<u8>,
    /// The component's signature (`wasmgate plugins sign`), for a policy
    /// that requires one.
    #[schema(format = Binary, value_type = Option<String>)]
    signature: Option<Vec<u8>>,
}

/// `PUT /admin/plugins/{name}`: multipart with a `component` (the .wasm)
/// and a `manifest` (the TOML) part.
#[utoipa::path(put, operation_id = "upload_plugin", path = "/admin/plugins/{name}", tag = "admin", security(("admin" = [])),
    params(("name" = String, Path)),
    request_body(content = Upload, content_type = "multipart/form-data"),
    responses((status = 200, body = ReloadBody), (status = 400, response = ErrorBody),
        (status = 401, response = ErrorBody), (status = 404, response = ErrorBody),
        (status = 409, response = ErrorBody), (status = 413, response = ErrorBody),
        (status = 415, response = ErrorBody), (status = 422, response = ErrorBody)))]
pub async fn upload(
    State(state): State<AppState>,
    UrlPath(name): UrlPath<String>,
    mut multipart: Multipart,
) -> Result<Json<ReloadBody>, ApiError> {
    if !valid_name(&name) {
        return Err(ApiError::bad_request("plugin names are a-z, 0-9 and '-'"));
    }
    let (mut wasm, mut manifest, mut signature) = (None, None, None);
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|err| ApiError::bad_request(format!("bad multipart body: {err}")))?
    {
        let part = field.name().unwrap_or_default().to_string();
        let bytes = field
            .bytes()
            .await
            .map_err(|err| ApiError::bad_request(format!("bad multipart body: {err}")))?;
        if bytes.len() > MAX_UPLOAD_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the component is too large",
            ));
        }
        match part.as_str() {
            "component" => wasm = Some(bytes.to_vec()),
            "manifest" => manifest = Some(bytes.to_vec()),
            "signature" => signature = Some(bytes.to_vec()),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unexpected part {other:?}; send `component`, `manifest` and optionally `signature`"
                )));
            }
        }
    }
    let (Some(wasm), Some(manifest)) = (wasm, manifest) else {
        return Err(ApiError::bad_request(
            "send both a `component` and a `manifest` part",
        ));
    };

    let files = PluginFiles {
        manifest_path: state.reloader.dir().join(format!("{name}.toml")),
        manifest,
        wasm,
        signature,
        pin: None,
    };
    Ok(Json(ReloadBody::from(
        &install_files(&state, &name, files).await?,
    )))
}

/// The body of `POST /admin/plugins/{name}/install`.
#[derive(serde::Deserialize, ToSchema)]
pub struct InstallRequest {
    /// `oci://REGISTRY/REPOSITORY:TAG` (resolved to a digest, which is
    /// pinned) or `oci://REGISTRY/REPOSITORY@sha256:…`.
    reference: String,
}

/// `POST /admin/plugins/{name}/install`: pulls the plugin from an OCI
/// registry (with its signature, if one is published) and installs it as an
/// upload would be.
#[utoipa::path(post, operation_id = "install_plugin", path = "/admin/plugins/{name}/install", tag = "admin", security(("admin" = [])),
    params(("name" = String, Path)),
    request_body = InstallRequest,
    responses((status = 200, body = ReloadBody), (status = 400, response = ErrorBody),
        (status = 401, response = ErrorBody), (status = 404, response = ErrorBody),
        (status = 409, response = ErrorBody), (status = 415, response = ErrorBody),
        (status = 422, response = ErrorBody), (status = 502, response = ErrorBody)))]
pub async fn install(
    State(state): State<AppState>,
    UrlPath(name): UrlPath<String>,
    AppJson(request): AppJson<InstallRequest>,
) -> Result<Json<ReloadBody>, ApiError> {
    if !valid_name(&name) {
        return Err(ApiError::bad_request("plugin names are a-z, 0-9 and '-'"));
    }
    let reference = oci::parse_reference(&request.reference)?;
    let pulled = oci::pull(&state.registries, &reference).await?;
    tracing::info!(plugin = %name, reference = %request.reference, pinned = %pulled.pinned, "pulled a plugin");
    let files = PluginFiles {
        manifest_path: state.reloader.dir().join(format!("{name}.toml")),
        manifest: pulled.manifest,
        wasm: pulled.wasm,
        signature: pulled.signature,
        pin: Some(Pin {
            requested: request.reference,
            pinned: pulled.pinned,
        }),
    };
    Ok(Json(ReloadBody::from(
        &install_files(&state, &name, files).await?,
    )))
}

/// Installs `files` as plugin `name`, validated exactly as a load would be
/// before anything is written: for the fleet when there is one, else in this
/// directory.
async fn install_files(
    state: &AppState,
    name: &str,
    files: PluginFiles,
) -> Result<ReloadReport, ApiError> {
    // A signature the policy requires is checked first: a refused plugin
    // is never compiled, and reaches no directory and no replica.
    if let Ok(policy) = state.reloader.source().policy.read() {
        policy
            .check_signature(
                name,
                &sha256_hex(&files.wasm),
                files.signature_text().as_deref(),
            )
            .map_err(|reason| ApiError::new(StatusCode::CONFLICT, "plugin_rejected", reason))?;
    }
    let plugin = state.runtime.load_files(&files).await.map_err(|err| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_plugin",
            err.to_string(),
        )
    })?;
    if plugin.name() != name {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_plugin",
            format!(
                "the manifest names the plugin {:?}, not {name:?}",
                plugin.name()
            ),
        ));
    }
    if let Some(clash) = state.registry.snapshot().clash(&plugin) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "plugin_rejected",
            clash.to_string(),
        ));
    }
    let report = match &state.fleet {
        // The fleet's: stored for every replica, then copied in here too.
        Some(fleet) => {
            state
                .store
                .fleet_install(name, &files, &plugin.sha256)
                .await?;
            fleet_sync(state, fleet).await?
        }
        None => {
            files.write().map_err(ApiError::internal)?;
            state.reloader.reload().await
        }
    };
    if let Some((_, error)) = report.rejected.iter().find(|(file, _)| *file == name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "plugin_rejected",
            error.clone(),
        ));
    }
    Ok(report)
}

#[utoipa::path(delete, operation_id = "remove_plugin", path = "/admin/plugins/{name}", tag = "admin", security(("admin" = [])),
    params(("name" = String, Path)),
    responses((status = 204, description = "Removed"), (status = 401, response = ErrorBody),
        (status = 404, response = ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    UrlPath(name): UrlPath<String>,
) -> Result<StatusCode, ApiError> {
    let snapshot = state.registry.snapshot();
    let plugin = snapshot
        .plugin(&name)
        .ok_or_else(|| ApiError::not_found(format!("no plugin named {name:?} is loaded")))?;
    let Some(origin) = plugin.origin.clone() else {
        return Err(ApiError::not_found(format!(
            "plugin {name:?} has no files to remove"
        )));
    };
    match &state.fleet {
        Some(fleet) => {
            state.store.fleet_remove(&name).await?;
            fleet_sync(&state, fleet).await?;
        }
        None => {
            PluginFiles::remove(&origin).map_err(ApiError::internal)?;
            state.reloader.reload().await;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The fleet's set copied in here, and what the reload did (a reload even
/// if nothing changed, so the answer says what serves).
async fn fleet_sync(state: &AppState, fleet: &Fleet) -> Result<ReloadReport, ApiError> {
    Ok(match fleet.sync().await? {
        Some(report) => report,
        None => state.reloader.reload().await,
    })
}

/// `POST /admin/plugins/{name}/grant`: grants the plugin in the directory
/// everything its manifest asks for (as `wasmgate plugins grant` does),
/// then reloads. On a fleet the grant is stored in the database for every
/// replica instead of in this replica's policy file.
#[utoipa::path(post, operation_id = "grant_plugin", path = "/admin/plugins/{name}/grant", tag = "admin", security(("admin" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = ReloadBody), (status = 400, response = ErrorBody),
        (status = 401, response = ErrorBody), (status = 404, response = ErrorBody),
        (status = 409, response = ErrorBody), (status = 422, response = ErrorBody)))]
pub async fn grant(
    State(state): State<AppState>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<ReloadBody>, ApiError> {
    if !valid_name(&name) {
        return Err(ApiError::bad_request("plugin names are a-z, 0-9 and '-'"));
    }
    let path = state.reloader.dir().join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path)
        .map_err(|_| ApiError::not_found(format!("no plugin named {name:?} is installed")))?;
    let manifest = Manifest::parse(&text).map_err(|err| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_plugin",
            format!("its manifest is invalid: {err}"),
        )
    })?;
    let policy = &state.reloader.source().policy;
    let (entry, report) = match &state.fleet {
        // The fleet's: stored for every replica, over the policy file
        // they all read.
        Some(fleet) => {
            let mut effective = policy.read().map_err(ApiError::internal)?;
            let entry = effective.grant_all(&manifest).clone();
            let json = serde_json::to_string(&entry).map_err(ApiError::internal)?;
            state.store.fleet_grant(&name, &json).await?;
            (entry, fleet_sync(&state, fleet).await?)
        }
        None => {
            let entry = policy.grant_all(&manifest).map_err(ApiError::internal)?;
            (entry, state.reloader.reload().await)
        }
    };
    tracing::warn!(plugin = %name, grant = ?entry, "admin API granted a plugin");
    Ok(Json(ReloadBody {
        granted: Some(serde_json::to_value(&entry).map_err(ApiError::internal)?),
        ..ReloadBody::from(&report)
    }))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `DELETE /admin/plugins/{name}/data`: deletes everything the plugin
/// stored with `kv`, for every user (removing a plugin keeps its data, so
/// that a reinstall finds it). Answers how many keys went.
#[utoipa::path(delete, operation_id = "purge_plugin_data", path = "/admin/plugins/{name}/data", tag = "admin", security(("admin" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = Purged), (status = 400, response = ErrorBody),
        (status = 401, response = ErrorBody), (status = 404, response = ErrorBody),
        (status = 503, response = ErrorBody)))]
pub async fn purge_data(
    State(state): State<AppState>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<Purged>, ApiError> {
    if !valid_name(&name) {
        return Err(ApiError::bad_request("plugin names are a-z, 0-9 and '-'"));
    }
    let deleted = state.store.purge_plugin_data(&name).await?;
    tracing::info!(plugin = %name, keys = deleted, "plugin data purged");
    Ok(Json(Purged {
        plugin: name,
        deleted_keys: deleted,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct Purged {
    plugin: String,
    deleted_keys: u64,
}

#[derive(serde::Deserialize, IntoParams)]
pub struct AuditQuery {
    user: Option<String>,
    plugin: Option<String>,
    /// RFC 3339: entries at or after it.
    since: Option<String>,
    /// The `next_before` of the previous page.
    before: Option<i64>,
    /// 1-1000, 100 by default.
    limit: Option<i64>,
}

/// A page of the audit log, newest first.
#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    entries: Vec<AuditEntry>,
    has_more: bool,
    /// The `before` of the next page, when there is one.
    next_before: Option<i64>,
}

/// Entries per page of `GET /admin/audit`, by default and at most.
const AUDIT_PAGE: i64 = 100;
const MAX_AUDIT_PAGE: i64 = 1000;

/// `GET /admin/audit?user=&plugin=&since=&before=&limit=`: the audit log of
/// tool calls, newest first, paged with `next_before`.
#[utoipa::path(get, operation_id = "read_audit_log", path = "/admin/audit", tag = "admin", security(("admin" = [])),
    params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, response = ErrorBody),
        (status = 401, response = ErrorBody), (status = 404, response = ErrorBody),
        (status = 503, response = ErrorBody)))]
pub async fn audit(
    State(state): State<AppState>,
    axum::extract::Query(query): axum::extract::Query<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = query.limit.unwrap_or(AUDIT_PAGE);
    if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_AUDIT_PAGE}"
        )));
    }
    if let Some(since) = &query.since
        && time::OffsetDateTime::parse(since, &time::format_description::well_known::Rfc3339)
            .is_err()
    {
        return Err(ApiError::bad_request(format!(
            "since must be an RFC 3339 time, not {since:?}"
        )));
    }
    let filter = crate::store::AuditFilter {
        user: query.user,
        plugin: query.plugin,
        since: query.since,
        before: query.before,
    };
    let mut entries = state.store.tool_calls(&filter, limit + 1).await?;
    let has_more = entries.len() as i64 > limit;
    entries.truncate(limit as usize);
    let next_before = has_more.then(|| entries.last().map(|e| e.id)).flatten();
    Ok(Json(AuditPage {
        entries,
        has_more,
        next_before,
    }))
}
