//! Shared test fixtures: where the built plugins are, and a running server.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use wasmgate::plugins::{AllocatorChoice, Plugin, Runtime, RuntimeOptions};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the host crate is one level below the workspace root")
        .to_path_buf()
}

/// `target/plugins`: the plugins a gateway serves by default.
pub fn plugins_dir() -> PathBuf {
    built_dir("plugins")
}

/// `target/test-plugins`: test-only plugins (well-behaved and hostile).
pub fn test_plugins_dir() -> PathBuf {
    built_dir("test-plugins")
}

fn built_dir(name: &str) -> PathBuf {
    let dir = workspace_root().join("target").join(name);
    assert!(
        dir.is_dir(),
        "{} is missing: run the tests with `cargo xtask test`, which builds the plugins first",
        dir.display()
    );
    dir
}

pub fn runtime() -> Runtime {
    Runtime::new(RuntimeOptions {
        allocator: AllocatorChoice::Auto,
        cache_dir: None,
    })
    .expect("the engine builds")
}

/// Loads `<dir>/<name>.toml` and its component.
pub async fn load(runtime: &Runtime, dir: &Path, name: &str) -> Arc<Plugin> {
    let plugin = runtime
        .load_file(&dir.join(format!("{name}.toml")))
        .await
        .unwrap_or_else(|err| panic!("loading {name}: {err}"));
    Arc::new(plugin)
}

/// The real binary, serving on a free loopback port, killed on drop.
pub struct TestServer {
    child: Child,
    pub base: String,
    _data: tempfile::TempDir,
}

impl TestServer {
    /// Starts `wasmgate serve` with `plugins` as its plugin directory.
    pub fn start(plugins: &Path) -> TestServer {
        let data = tempfile::tempdir().expect("a temp dir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_wasmgate"))
            .arg("serve")
            .env("WASMGATE_LISTEN", "127.0.0.1:0")
            .env("WASMGATE_PLUGINS", plugins)
            .env("WASMGATE_CACHE_DIR", data.path().join("cache"))
            .env("RUST_LOG", "warn")
            .current_dir(data.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the wasmgate binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading the startup line");
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

    /// Waits until the server answers `/readyz` (plugins are loaded after
    /// the socket is bound).
    pub async fn ready(self) -> TestServer {
        let client = reqwest::Client::new();
        for _ in 0..200 {
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
