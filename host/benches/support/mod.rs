//! What the benchmarks share: the harness the end-to-end tests use too
//! (built plugins, tokens, databases, the real binary; `tests/harness.rs`),
//! an in-process runtime with its registry, and a mock provider's server.

use std::sync::Arc;
use std::time::Duration;

#[path = "../../../tests/harness.rs"]
mod harness;
#[allow(unused_imports, reason = "not every benchmark uses each")]
pub use harness::{Backend, TestDatabase, TestServer, backends, built, token};

use wasmgate::plugins::{
    AllocatorChoice, PluginSource, Registry, Runtime, RuntimeOptions, Snapshot, TaskLimits,
};
use wasmgate::tasks::TaskRepository;

/// A runtime and a registry loaded from `target/<plugins>`.
#[allow(dead_code, reason = "not every benchmark runs plugins in process")]
pub async fn runtime(
    allocator: AllocatorChoice,
    plugins: &str,
    tasks: Option<Arc<dyn TaskRepository>>,
) -> (Arc<Runtime>, Arc<Registry>) {
    let runtime = Runtime::new(RuntimeOptions {
        allocator,
        cache_dir: None,
        tasks,
        kv: None,
        // Benchmarks write far more than a person would; no per-user budget.
        task_limits: TaskLimits {
            writes_per_user_minute: 0,
            ..TaskLimits::default()
        },
        compile: Default::default(),
        memory_mib: wasmgate::plugins::budget::DEFAULT_MEMORY_MIB,
    })
    .unwrap();
    let snapshot = Snapshot::load_dir(&runtime, &PluginSource::dir(&built(plugins))).await;
    (Arc::new(runtime), Arc::new(Registry::new(snapshot)))
}

/// The real binary with the stock plugins as the benchmarks run it: no
/// per-user limits (load generators write far more than a person would),
/// quiet logs, and ready once plugins are loaded. `env` comes last, so it
/// overrides.
#[allow(dead_code, reason = "not every benchmark starts the binary")]
pub async fn server(env: &[(&str, &str)]) -> TestServer {
    let mut all = vec![
        ("WASMGATE_CHAT_RATE_PER_MINUTE", "0"),
        ("WASMGATE_TASK_WRITES_PER_MINUTE", "0"),
        ("WASMGATE_MAX_TASKS_PER_USER", "0"),
        ("RUST_LOG", "error"),
    ];
    all.extend_from_slice(env);
    TestServer::start_with(&built("plugins"), &all)
        .ready()
        .await
}

/// The `q` quantile of sorted `samples`.
#[allow(dead_code, reason = "not every benchmark reports percentiles")]
pub fn quantile(samples: &[Duration], q: f64) -> Duration {
    samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)]
}

/// Runs a benchmark's async body on a multi-threaded runtime.
#[allow(dead_code, reason = "not every benchmark is one async body")]
pub fn block_on<F: std::future::Future>(bench: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench)
}

/// Serves a mock provider `app` on a free loopback port; its OpenAI-style
/// base URL (`http://…/v1`).
#[allow(dead_code, reason = "not every benchmark mocks a provider")]
pub async fn serve_mock(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}/v1")
}
