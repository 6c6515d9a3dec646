//! Liveness and readiness probes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;

/// 200 while the process serves HTTP at all.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// 200 once the plugin set is loaded and the database answers; 503 while
/// the plugins still load or the database does not answer.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let snapshot = state.registry.snapshot();
    let database = state.store.ping().await;
    let (status, word) = match (state.registry.is_loaded(), database) {
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "loading_plugins"),
        (true, false) => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
        (true, true) => (StatusCode::OK, "ready"),
    };
    (
        status,
        Json(json!({
            "status": word,
            "plugins": snapshot.plugins().count(),
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
