//! wasmgate: a gateway for AI task chat whose tools and model providers are
//! sandboxed WebAssembly components. See ARCHITECTURE.md for the map.

pub mod check;
pub mod config;
pub mod http;
pub mod plugins;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use config::ServeConfig;
use plugins::{Registry, Runtime, RuntimeOptions, Snapshot};

/// Serves the gateway on `listener` until `shutdown` resolves. The binary
/// and the tests both start the server through this function.
pub async fn run(
    config: ServeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let runtime = Arc::new(Runtime::new(RuntimeOptions {
        allocator: config.allocator,
        cache_dir: config.cache_dir(),
    })?);
    let snapshot = Snapshot::load_dir(&runtime, &config.plugins).await;
    let registry = Arc::new(Registry::new(snapshot));

    let state = http::AppState {
        runtime,
        registry,
        config: Arc::new(config),
    };
    axum::serve(listener, http::router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP")
}
