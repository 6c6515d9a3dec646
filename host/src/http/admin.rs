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
use serde_json::{Value, json};

use super::auth::bearer_token;
use super::{ApiError, AppState};
use crate::plugins::{Manifest, PluginFiles, ReloadReport};

/// Largest component accepted by upload.
pub const MAX_UPLOAD_BYTES: usize = 64 * 1024 * 1024;

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

pub async fn list(State(state): State<AppState>) -> Json<Value> {
    let snapshot = state.registry.snapshot();
    let plugins: Vec<Value> = snapshot
        .plugins()
        .map(|plugin| {
            let stats = plugin.stats.snapshot();
            let file = plugin.origin.as_deref().and_then(Path::file_stem).map(|s| s.to_string_lossy().into_owned());
            json!({
                "name": plugin.name(),
                "version": plugin.manifest.version,
                "kind": plugin.kind().as_str(),
                "sha256": plugin.sha256,
                "tools": plugin.tools.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
                "state": if file.as_ref().is_some_and(|f| snapshot.rejected().contains_key(f)) { "stale" } else { "active" },
                "last_error": file.and_then(|f| snapshot.rejected().get(&f).cloned()),
                "loaded_at": plugin.loaded_at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default(),
                "calls": stats.calls,
                "errors": stats.errors,
                "timeouts": stats.timeouts,
                "latency_seconds_total": stats.seconds_total,
            })
        })
        .collect();
    let rejected: Vec<Value> = snapshot
        .rejected()
        .iter()
        .map(|(file, error)| json!({ "file": file, "error": error }))
        .collect();
    Json(json!({ "plugins": plugins, "rejected": rejected }))
}

pub async fn reload(State(state): State<AppState>) -> Json<Value> {
    Json(report_json(&state.reloader.reload().await))
}

/// `PUT /admin/plugins/{name}`: multipart with a `component` (the .wasm)
/// and a `manifest` (the TOML) part.
pub async fn upload(
    State(state): State<AppState>,
    UrlPath(name): UrlPath<String>,
    mut multipart: Multipart,
) -> Result<Json<Value>, ApiError> {
    if !valid_name(&name) {
        return Err(ApiError::bad_request("plugin names are a-z, 0-9 and '-'"));
    }
    let (mut wasm, mut manifest) = (None, None);
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
            other => {
                return Err(ApiError::bad_request(format!(
                    "unexpected part {other:?}; send `component` and `manifest`"
                )));
            }
        }
    }
    let (Some(wasm), Some(manifest)) = (wasm, manifest) else {
        return Err(ApiError::bad_request(
            "send both a `component` and a `manifest` part",
        ));
    };

    let dir = state.reloader.dir();
    let files = PluginFiles {
        manifest_path: dir.join(format!("{name}.toml")),
        manifest,
        wasm,
    };
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
    // The component first: a reload that sees the new manifest finds the
    // component it describes.
    write_atomically(&files.manifest_path.with_extension("wasm"), &files.wasm)
        .map_err(ApiError::internal)?;
    write_atomically(&files.manifest_path, &files.manifest).map_err(ApiError::internal)?;
    let report = state.reloader.reload().await;
    if let Some((_, error)) = report.rejected.iter().find(|(file, _)| *file == name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "plugin_rejected",
            error.clone(),
        ));
    }
    Ok(Json(report_json(&report)))
}

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
    std::fs::remove_file(&origin).map_err(ApiError::internal)?;
    let _ = std::fs::remove_file(origin.with_extension("wasm"));
    state.reloader.reload().await;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /admin/plugins/{name}/grant`: grants the plugin in the directory
/// everything its manifest asks for (as `wasmgate plugins grant` does),
/// then reloads.
pub async fn grant(
    State(state): State<AppState>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
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
    let entry = state
        .reloader
        .source()
        .policy
        .grant_all(&manifest)
        .map_err(ApiError::internal)?;
    tracing::warn!(plugin = %name, grant = ?entry, "admin API granted a plugin");
    let mut report = report_json(&state.reloader.reload().await);
    report["granted"] = serde_json::to_value(&entry).map_err(ApiError::internal)?;
    Ok(Json(report))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn report_json(report: &ReloadReport) -> Value {
    json!({
        "plugins": report.plugins,
        "rejected": report.rejected.iter().map(|(file, error)| json!({"file": file, "error": error})).collect::<Vec<_>>(),
        "took_ms": report.took.as_secs_f64() * 1e3,
    })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("upload-{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// `DELETE /admin/plugins/{name}/data`: deletes everything the plugin
/// stored with `kv`, for every user (removing a plugin keeps its data, so
/// that a reinstall finds it). Answers how many keys went.
pub async fn purge_data(
    State(state): State<AppState>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    if !valid_name(&name) {
        return Err(ApiError::bad_request("plugin names are a-z, 0-9 and '-'"));
    }
    let deleted = state.store.purge_plugin_data(&name).await?;
    tracing::info!(plugin = %name, keys = deleted, "plugin data purged");
    Ok(Json(
        serde_json::json!({"plugin": name, "deleted_keys": deleted}),
    ))
}

#[derive(serde::Deserialize)]
pub struct AuditQuery {
    user: Option<String>,
    plugin: Option<String>,
    /// RFC 3339: entries at or after it.
    since: Option<String>,
    /// The `next_before` of the previous page.
    before: Option<i64>,
    limit: Option<i64>,
}

/// Entries per page of `GET /admin/audit`, by default and at most.
const AUDIT_PAGE: i64 = 100;
const MAX_AUDIT_PAGE: i64 = 1000;

/// `GET /admin/audit?user=&plugin=&since=&before=&limit=`: the audit log of
/// tool calls, newest first, paged with `next_before`.
pub async fn audit(
    State(state): State<AppState>,
    axum::extract::Query(query): axum::extract::Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
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
    Ok(Json(serde_json::json!({
        "entries": entries,
        "has_more": has_more,
        "next_before": next_before,
    })))
}
