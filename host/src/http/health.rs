//! Liveness and readiness probes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use crate::store::Health;

/// 200 while the process serves HTTP at all.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// 200 once the plugin set is loaded and the database answers and takes
/// writes; 503 while the plugins still load, the database does not answer,
/// or its writes fail (checked again on each call, so it comes back).
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let snapshot = state.registry.snapshot();
    let health = state.store.health().await;
    let (status, word) = match (state.registry.is_loaded(), health) {
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "loading_plugins"),
        (true, Health::Unreachable) => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
        (true, Health::WritesFailing) => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
        (true, Health::Ready) => (StatusCode::OK, "ready"),
    };
    (
        status,
        Json(json!({
            "status": word,
            "plugins": snapshot.plugins().count(),
            // What this replica serves, so that a rollout can be watched.
            "digests": snapshot
                .plugins()
                .map(|plugin| (plugin.name().to_string(), json!(plugin.sha256)))
                .collect::<serde_json::Map<_, _>>(),
            "tools": snapshot.tools().len(),
            "rejected": snapshot.rejected().len(),
            // What keeps each one out (a broken file, a clash, a missing grant).
            "rejected_plugins": snapshot
                .rejected()
                .iter()
                .map(|(file, error)| json!({ "file": file, "error": error }))
                .collect::<Vec<_>>(),
        })),
    )
}
