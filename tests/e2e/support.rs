//! Test fixtures: the harness shared with the benchmarks (the built
//! plugins, tokens, databases, the real binary; see `tests/harness.rs`), and
//! what only tests need: in-process runtimes, the lock heavy tests share,
//! and Python virtualenvs for the official SDKs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use wasmgate::plugins::{AllocatorChoice, Plugin, Runtime, RuntimeOptions};
use wasmgate::store::Store;

pub use crate::harness::{
    Backend, SECRET, TestDatabase, TestServer, backends, plugins_dir, scoped_token,
    test_plugins_dir, token, workspace_root,
};

/// A runtime without a task store (tools-only tests).
pub fn runtime() -> Runtime {
    Runtime::new(RuntimeOptions {
        allocator: AllocatorChoice::Auto,
        cache_dir: None,
        tasks: None,
        kv: None,
        task_limits: Default::default(),
        compile: Default::default(),
        memory_mib: wasmgate::plugins::budget::DEFAULT_MEMORY_MIB,
    })
    .expect("the engine builds")
}

/// A runtime whose `tasks` capability uses `store`.
pub fn runtime_with(store: &Store) -> Runtime {
    Runtime::new(RuntimeOptions {
        allocator: AllocatorChoice::Auto,
        cache_dir: None,
        tasks: Some(Arc::new(store.clone())),
        kv: Some(Arc::new(store.clone())),
        task_limits: Default::default(),
        compile: Default::default(),
        memory_mib: wasmgate::plugins::budget::DEFAULT_MEMORY_MIB,
    })
    .expect("the engine builds")
}

/// Tests that load the machine heavily (spinning guests, a long compile,
/// thousands of connections or rows) or that time what a loaded machine
/// would slow down (a hot swap within 1 s) hold this, so no two of them
/// run at once on a 2-core machine. (A tokio mutex: each test has a
/// runtime of its own, and the lock works across them.)
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    HEAVY.lock().await
}

/// A plugin directory of the stock plugins, with `grants` (policy entries)
/// added to their policy; a test copies its own plugins in.
pub fn stock_plugin_dir(grants: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(plugins_dir()).unwrap().flatten() {
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let policy = dir.path().join("policy.toml");
    let stock = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&policy, format!("{stock}\n{grants}")).unwrap();
    dir
}

/// Loads `<dir>/<name>.toml` and its component.
pub async fn load(runtime: &Runtime, dir: &Path, name: &str) -> Arc<Plugin> {
    let plugin = runtime
        .load_file(&dir.join(format!("{name}.toml")))
        .await
        .unwrap_or_else(|err| panic!("loading {name}: {err}"));
    Arc::new(plugin)
}

/// Held while an installer runs, so no test sees a half-made install.
static INSTALLS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The Python of a virtualenv `target/<name>` with `requirement` installed
/// from PyPI, made on first use (for checks against official SDKs).
pub async fn python_venv(name: &str, requirement: &str) -> PathBuf {
    let venv = workspace_root().join("target").join(name);
    let requirement = requirement.to_string();
    tokio::task::spawn_blocking(move || {
        // Two tests asking for one venv at once: the second waits for it.
        let _made_once = INSTALLS.lock().unwrap_or_else(|poison| poison.into_inner());
        let python = venv.join("bin/python");
        if !python.exists() {
            let made = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .expect("python3 runs");
            assert!(made.success(), "creating a virtualenv");
            let installed = Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", &requirement])
                .status()
                .expect("pip runs");
            assert!(installed.success(), "pip install {requirement}");
        }
        python
    })
    .await
    .expect("the venv task does not panic")
}

/// `target/<name>`, an npm prefix with `packages` installed from the npm
/// registry, made on first use (for checks with official Node tools).
pub async fn npm_prefix(name: &str, packages: &[&str]) -> PathBuf {
    let prefix = workspace_root().join("target").join(name);
    let packages: Vec<String> = packages.iter().map(|p| p.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let _made_once = INSTALLS.lock().unwrap_or_else(|poison| poison.into_inner());
        if !prefix.join("node_modules/.package-lock.json").exists() {
            std::fs::create_dir_all(&prefix).unwrap();
            let installed = Command::new("npm")
                .args([
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    "--prefix",
                ])
                .arg(&prefix)
                .args(&packages)
                .status()
                .expect("npm runs");
            assert!(installed.success(), "npm install {packages:?}");
        }
        prefix
    })
    .await
    .expect("the npm task does not panic")
}
