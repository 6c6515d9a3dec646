//! What the benchmarks share: the built plugin directories, an in-process
//! runtime with its registry, the real `wasmgate` binary started on a free
//! loopback port with a fresh SQLite file (stopped on drop), and fresh
//! PostgreSQL databases.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use wasmgate::plugins::{
    AllocatorChoice, PluginSource, Registry, Runtime, RuntimeOptions, Snapshot, TaskLimits,
};
use wasmgate::tasks::TaskRepository;

pub const SECRET: &str = "bench-secret";

/// `target/<name>` (e.g. `plugins`, `test-plugins`), built by xtask.
pub fn built(name: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(name);
    assert!(
        dir.is_dir(),
        "run through `cargo xtask bench`, which builds the plugins"
    );
    dir
}

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

#[allow(dead_code, reason = "not every benchmark starts the binary")]
pub struct Server {
    child: Child,
    pub base: String,
    _data: tempfile::TempDir,
}

#[allow(dead_code, reason = "not every benchmark starts the binary")]
impl Server {
    /// The server's data directory (`bench.db` and its WAL).
    pub fn data_dir(&self) -> &std::path::Path {
        self._data.path()
    }

    /// Starts `wasmgate serve` with the built plugins and `env`.
    pub async fn start(env: &[(&str, &str)]) -> Server {
        let plugins = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins");
        assert!(
            plugins.is_dir(),
            "run through `cargo xtask bench`, which builds the plugins"
        );
        let data = tempfile::tempdir().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_wasmgate"));
        command
            .arg("serve")
            .env("WASMGATE_LISTEN", "127.0.0.1:0")
            .env("WASMGATE_PLUGINS", &plugins)
            .env(
                "DATABASE_URL",
                format!("sqlite://{}", data.path().join("bench.db").display()),
            )
            .env("BETTER_AUTH_SECRET", SECRET)
            .env("WASMGATE_CHAT_RATE_PER_MINUTE", "0")
            // Load generators write far more than a person would.
            .env("WASMGATE_TASK_WRITES_PER_MINUTE", "0")
            .env("WASMGATE_MAX_TASKS_PER_USER", "0")
            .env("RUST_LOG", "error")
            .current_dir(data.path())
            .stdout(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line.trim().replace("wasmgate listening on ", "");
        let server = Server {
            child,
            base,
            _data: data,
        };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client
                .get(format!("{}/readyz", server.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server never became ready");
    }

    pub fn token(&self, user: &str) -> String {
        wasmgate::auth::mint(SECRET.as_bytes(), user, Duration::from_secs(3600))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// A fresh database on the PostgreSQL server at `admin` (a URL), dropped
/// by [`PostgresDatabase::drop`].
#[allow(dead_code, reason = "not every benchmark runs on PostgreSQL")]
pub struct PostgresDatabase {
    admin: String,
    name: String,
    pub url: String,
}

#[allow(dead_code, reason = "not every benchmark runs on PostgreSQL")]
impl PostgresDatabase {
    pub async fn create(admin: &str, bench: &str) -> PostgresDatabase {
        let name = format!("wasmgate_bench_{bench}_{}", std::process::id());
        let mut conn = Self::admin_connection(admin).await;
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            sqlx::Executor::execute(&mut conn, sqlx::AssertSqlSafe(sql))
                .await
                .unwrap();
        }
        let base = admin.rsplit_once('/').map_or(admin, |(base, _)| base);
        PostgresDatabase {
            url: format!("{base}/{name}"),
            admin: admin.to_string(),
            name,
        }
    }

    async fn admin_connection(admin: &str) -> sqlx::PgConnection {
        <sqlx::PgConnection as sqlx::Connection>::connect(admin)
            .await
            .expect("connecting to WASMGATE_TEST_POSTGRES_URL")
    }

    pub async fn drop(self) {
        let mut conn = Self::admin_connection(&self.admin).await;
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        sqlx::Executor::execute(&mut conn, sqlx::AssertSqlSafe(sql))
            .await
            .unwrap();
    }
}
