//! Liveness and readiness probes.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;

/// 200 while the process serves HTTP at all.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// 200 once the plugin set is loaded, with what it holds.
pub async fn readyz(State(state): State<AppState>) -> Json<Value> {
    let snapshot = state.registry.snapshot();
    Json(json!({
        "status": "ready",
        "plugins": snapshot.plugins().count(),
        "tools": snapshot.tools().len(),
        "rejected": snapshot.rejected().len(),
    }))
}
