//! The harness the end-to-end tests and the benchmarks share: where the
//! built plugins are, tokens for the secret servers run with, fresh
//! databases on either backend, and the real `wasmgate` binary started on a
//! free loopback port (stopped on drop). Included by both with `#[path]`,
//! so there is one copy; each uses a part of it.
#![allow(dead_code, reason = "each test crate and benchmark uses a part")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmgate::store::Store;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the host crate is one level below the workspace root")
        .to_path_buf()
}

/// `target/plugins`: the plugins a gateway serves by default.
pub fn plugins_dir() -> PathBuf {
    built("plugins")
}

/// `target/test-plugins`: test-only plugins (well-behaved and hostile).
pub fn test_plugins_dir() -> PathBuf {
    built("test-plugins")
}

/// `target/<name>`, built by xtask (e.g. `plugins`, `test-plugins`).
pub fn built(name: &str) -> PathBuf {
    let dir = workspace_root().join("target").join(name);
    assert!(
        dir.is_dir(),
        "{} is missing: run through `cargo xtask test` or `cargo xtask bench`, which build the plugins first",
        dir.display()
    );
    dir
}

/// The HS256 secret test servers run with.
pub const SECRET: &str = "test-secret-of-sufficient-length-0123456789";

/// A valid token for `user`, signed with [`SECRET`].
pub fn token(user: &str) -> String {
    wasmgate::auth::mint(SECRET.as_bytes(), user, Duration::from_secs(600), None)
}

/// A valid token for `user` that holds only `scope` (space-separated).
pub fn scoped_token(user: &str, scope: &str) -> String {
    wasmgate::auth::mint(
        SECRET.as_bytes(),
        user,
        Duration::from_secs(600),
        Some(scope),
    )
}

/// A fresh, empty database: a SQLite file, or (for `Backend::Postgres`) a new
/// database on the server named by `WASMGATE_TEST_POSTGRES_URL`.
pub struct TestDatabase {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    /// For PostgreSQL: the admin URL and the database to drop afterwards.
    postgres: Option<(String, String)>,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((admin, name)) = self.postgres.take() else {
            return;
        };
        // Drop runs inside the test's runtime; do the async cleanup on a
        // thread of its own. Best effort: a leftover database is harmless.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
                    .await
                    .ok()?;
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                sqlx::Executor::execute(&mut conn, sqlx::AssertSqlSafe(sql))
                    .await
                    .ok()
            })
        })
        .join();
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The backends to test against: SQLite always, PostgreSQL when
/// `WASMGATE_TEST_POSTGRES_URL` is set.
pub fn backends() -> Vec<Backend> {
    let mut backends = vec![Backend::Sqlite];
    if std::env::var("WASMGATE_TEST_POSTGRES_URL").is_ok_and(|url| !url.is_empty()) {
        backends.push(Backend::Postgres);
    }
    backends
}

impl TestDatabase {
    pub async fn new(backend: Backend) -> TestDatabase {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("a temp dir");
                let url = format!("sqlite://{}", dir.path().join("test.db").display());
                TestDatabase {
                    url,
                    _dir: Some(dir),
                    postgres: None,
                }
            }
            Backend::Postgres => {
                static NEXT: AtomicUsize = AtomicUsize::new(0);
                let admin =
                    std::env::var("WASMGATE_TEST_POSTGRES_URL").expect("checked by backends()");
                let name = format!(
                    "wasmgate_test_{}_{}_{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed),
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap()
                        .as_millis()
                );
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
                    .await
                    .expect("connecting to WASMGATE_TEST_POSTGRES_URL");
                sqlx::Executor::execute(
                    &mut conn,
                    sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
                )
                .await
                .expect("creating a test database");
                let base = admin
                    .rsplit_once('/')
                    .map(|(base, _)| base)
                    .unwrap_or(&admin);
                TestDatabase {
                    url: format!("{base}/{name}"),
                    _dir: None,
                    postgres: Some((admin.clone(), name)),
                }
            }
        }
    }

    pub async fn store(&self) -> Store {
        Store::connect(&self.url)
            .await
            .expect("the test database opens")
    }
}

/// The real binary, serving on a free loopback port, killed on drop.
pub struct TestServer {
    child: Child,
    pub base: String,
    _data: tempfile::TempDir,
}

impl TestServer {
    /// Starts `wasmgate serve` with `plugins` as its plugin directory, a
    /// SQLite database of its own and [`SECRET`] as its token secret.
    pub fn start(plugins: &Path) -> TestServer {
        TestServer::start_with(plugins, &[])
    }

    /// As [`TestServer::start`], with extra environment variables (they
    /// override the defaults, e.g. `DATABASE_URL`).
    pub fn start_with(plugins: &Path, env: &[(&str, &str)]) -> TestServer {
        let data = tempfile::tempdir().expect("a temp dir");
        let mut command = Command::new(env!("CARGO_BIN_EXE_wasmgate"));
        command
            .arg("serve")
            .env(
                "DATABASE_URL",
                format!("sqlite://{}", data.path().join("wasmgate.db").display()),
            )
            .env("BETTER_AUTH_SECRET", SECRET);
        command
            .env("WASMGATE_LISTEN", "127.0.0.1:0")
            .env("WASMGATE_PLUGINS", plugins)
            .env("WASMGATE_CACHE_DIR", data.path().join("cache"))
            .env("RUST_LOG", "warn");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .current_dir(data.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the wasmgate binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("reading the startup line");
        // Keep reading, so that later lines (dev mode's token) never meet a
        // closed pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let base = line
            .trim()
            .strip_prefix("wasmgate listening on ")
            .unwrap_or_else(|| panic!("unexpected startup line {line:?}"))
            .to_string();
        TestServer {
            child,
            base,
            _data: data,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The ids of `user`'s tasks, read through the REST API.
    pub async fn task_ids(&self, user: &str) -> std::collections::BTreeSet<i64> {
        let listed: serde_json::Value = reqwest::Client::new()
            .get(self.url(&format!("/api/{user}/tasks")))
            .bearer_auth(token(user))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        listed
            .as_array()
            .unwrap_or_else(|| panic!("not a task list: {listed}"))
            .iter()
            .map(|t| t["id"].as_i64().unwrap())
            .collect()
    }

    /// The server's data directory (its database and compile cache).
    pub fn data_dir(&self) -> &Path {
        self._data.path()
    }

    /// The server's process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill_now(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `limit` for the process to exit on its own.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Waits until the server answers `/readyz` (plugins are loaded after
    /// the socket is bound). Each server compiles every stock plugin into a
    /// cache of its own, which on two busy cores takes a while.
    pub async fn ready(self) -> TestServer {
        let client = reqwest::Client::new();
        for _ in 0..1200 {
            if let Ok(response) = client.get(self.url("/readyz")).send().await
                && response.status().is_success()
            {
                return self;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the server never became ready");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
