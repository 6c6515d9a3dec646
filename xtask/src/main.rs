//! Project automation, run as `cargo xtask <command>` from anywhere in the
//! repository:
//!
//! - `build`: the plugins (for wasm32-wasip2, laid out with their manifests
//!   in `target/plugins/`, test-only ones in `target/test-plugins/`) and the
//!   release host at `target/release/wasmgate`;
//! - `run`: `build`, then `wasmgate serve` on the embedded defaults;
//! - `test`: the plugins and the browser test's tools (Debian's Chromium,
//!   `playwright-core` from npm) when missing, then every test suite of the
//!   workspace;
//! - `bench`: the plugins, then the benchmarks;
//! - `load`: `build` and the load generator, then the server benchmark
//!   (`load.rs`).
//!
//! Plain `std::process::Command`s: what runs is what a person would type.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

mod load;

const WASM_TARGET: &str = "wasm32-wasip2";

const USAGE: &str = "usage: cargo xtask <build | run | test | bench | load> [extra args for the underlying command]";

fn main() -> std::process::ExitCode {
    match xtask() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn xtask() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let root = workspace_root();
    std::env::set_current_dir(&root)?;

    match command.as_str() {
        "build" => {
            build_plugins(&root)?;
            cargo(&["build", "--release", "--package", "wasmgate"])
        }
        "run" => {
            build_plugins(&root)?;
            cargo(&["build", "--release", "--package", "wasmgate"])?;
            let mut serve = Command::new(root.join("target/release/wasmgate"));
            serve.arg("serve").args(&rest);
            run(&mut serve)
        }
        "test" => {
            build_plugins(&root)?;
            ensure_browser(&root)?;
            ensure_debian_package(REGISTRY, "docker-registry", "the OCI test")?;
            // The guests' own unit tests (the rules model's parser, the
            // provider kit) run natively; only components need the wasm target.
            cargo(&[
                "test",
                "--manifest-path",
                "plugins/Cargo.toml",
                "--package",
                "rules",
                "--package",
                "wasmgate-provider-kit",
                "--target-dir",
                "target/guest-tests",
            ])?;
            let mut test = cargo_command(&["test", "--workspace"]);
            test.args(&rest);
            run(&mut test)
        }
        "bench" => {
            build_plugins(&root)?;
            let mut bench = cargo_command(&["bench", "--package", "wasmgate"]);
            // Every benchmark, unless the arguments name one (`--bench X`).
            if !rest
                .iter()
                .any(|arg| arg == "--bench" || arg.starts_with("--bench="))
            {
                bench.arg("--benches");
            }
            // As the server does (see host/src/main.rs): no backtrace capture
            // for every error value wasmtime creates internally.
            bench.env("RUST_LIB_BACKTRACE", "0").args(&rest);
            run(&mut bench)
        }
        "load" => {
            build_plugins(&root)?;
            cargo(&[
                "build",
                "--release",
                "--package",
                "wasmgate",
                "--package",
                "wasmgate-load",
            ])?;
            load::load(&root, &rest)
        }
        "" | "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command {other:?}\n{USAGE}"),
    }
}

/// Builds every guest crate and lays the components out beside their
/// manifests: `plugins/<dir>/plugin.toml` names the plugin, and its
/// component lands as `<name>.wasm` next to `<name>.toml`.
fn build_plugins(root: &Path) -> anyhow::Result<()> {
    ensure_wasm_target()?;
    let wasm_target_dir = root.join("target/wasm");
    build_guest(Path::new("plugins/Cargo.toml"), &wasm_target_dir)?;
    let built = wasm_target_dir.join(WASM_TARGET).join("release");

    for (source_dir, out_dir) in [
        (root.join("plugins"), root.join("target/plugins")),
        (
            root.join("plugins/testing"),
            root.join("target/test-plugins"),
        ),
    ] {
        std::fs::create_dir_all(&out_dir)?;
        for crate_dir in subdirectories(&source_dir)? {
            let Some(crate_name) = crate_name(&crate_dir)? else {
                continue;
            };
            let artifact = built.join(format!("{}.wasm", crate_name.replace('-', "_")));
            let artifact = if artifact.exists() {
                artifact
            } else {
                built.join(format!("{crate_name}.wasm"))
            };
            let manifest = crate_dir.join("plugin.toml");
            let plugin_name = if manifest.exists() {
                manifest_name(&manifest)?
            } else {
                crate_name.clone()
            };
            copy(&artifact, &out_dir.join(format!("{plugin_name}.wasm")))?;
            if manifest.exists() {
                copy(&manifest, &out_dir.join(format!("{plugin_name}.toml")))?;
            }
        }
    }
    // The operator's grants for the stock plugins.
    copy(
        &root.join("plugins/policy.toml"),
        &root.join("target/plugins/policy.toml"),
    )?;
    // Examples are crates of their own, as outside authors write them.
    let examples_out = root.join("target/example-plugins");
    std::fs::create_dir_all(&examples_out)?;
    for example in subdirectories(&root.join("plugins/examples"))? {
        build_guest(&example.join("Cargo.toml"), &wasm_target_dir)?;
        let crate_name = crate_name(&example)?.context("an example without a package name")?;
        let plugin_name = manifest_name(&example.join("plugin.toml"))?;
        copy(
            &built.join(format!("{}.wasm", crate_name.replace('-', "_"))),
            &examples_out.join(format!("{plugin_name}.wasm")),
        )?;
        copy(
            &example.join("plugin.toml"),
            &examples_out.join(format!("{plugin_name}.toml")),
        )?;
    }
    build_python_plugins(root, &examples_out)?;
    copy(
        &root.join("plugins/examples/policy.toml"),
        &examples_out.join("policy.toml"),
    )?;
    println!("plugins laid out in target/plugins, target/test-plugins and target/example-plugins");
    Ok(())
}

/// `cargo build --release` of a guest workspace or crate for the wasm target.
fn build_guest(manifest: &Path, target_dir: &Path) -> anyhow::Result<()> {
    let mut build = cargo_command(&["build", "--release", "--target", WASM_TARGET]);
    build
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir);
    run(&mut build)
}

/// The componentize-py release the Python plugins are built with.
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// Builds each `plugins/python/<name>` (an `app.py` and a `plugin.toml`)
/// into a component for the task-tool world with componentize-py, from a
/// virtualenv under `target/` made on first use.
fn build_python_plugins(root: &Path, out_dir: &Path) -> anyhow::Result<()> {
    let sources = subdirectories(&root.join("plugins/python"))?;
    if sources.is_empty() {
        return Ok(());
    }
    let venv = root.join("target/py-build");
    let tool = venv.join("bin/componentize-py");
    if !tool.exists() {
        println!("installing {COMPONENTIZE_PY} into {}", venv.display());
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))
            .context("python3 with venv is needed to build the Python plugins")?;
        run(Command::new(venv.join("bin/pip")).args(["install", "--quiet", COMPONENTIZE_PY]))?;
    }
    for source in sources {
        let manifest = source.join("plugin.toml");
        let name = manifest_name(&manifest)?;
        let wasm = out_dir.join(format!("{name}.wasm"));
        // The contract is a source too: a changed WIT changes the bindings.
        let newest_source = newest_mtime(&source)?.max(newest_mtime(&root.join("wit"))?);
        let up_to_date = std::fs::metadata(&wasm)
            .and_then(|m| m.modified())
            .is_ok_and(|built| built >= newest_source);
        if !up_to_date {
            run(Command::new(&tool)
                .arg("-d")
                .arg(root.join("wit"))
                .args(["-w", "task-tool", "componentize", "-p"])
                .arg(&source)
                .arg("app")
                .arg("-o")
                .arg(&wasm))?;
        }
        copy(&manifest, &out_dir.join(format!("{name}.toml")))?;
    }
    Ok(())
}

/// The latest modification time of the files directly in `dir`.
fn newest_mtime(dir: &Path) -> anyhow::Result<std::time::SystemTime> {
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir)? {
        let modified = entry?.metadata()?.modified()?;
        newest = newest.max(modified);
    }
    Ok(newest)
}

/// Installs the wasm target through rustup when the pinned toolchain lacks it.
fn ensure_wasm_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("running rustup (the wasm32-wasip2 target is installed through it)")?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|line| line.trim() == WASM_TARGET)
    {
        return Ok(());
    }
    println!("installing the {WASM_TARGET} target through rustup");
    run(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}

/// Where the browser test expects Chromium (Debian's package).
const CHROMIUM: &str = "/usr/bin/chromium";
/// Where the OCI test expects a registry (Debian's CNCF distribution).
const REGISTRY: &str = "/usr/bin/docker-registry";

/// Installs what the browser test needs and a clean machine lacks: Debian's
/// Chromium and `tests/browser`'s npm packages (from its lockfile). Test
/// tools never download a browser of their own.
fn ensure_browser(root: &Path) -> anyhow::Result<()> {
    ensure_debian_package(CHROMIUM, "chromium", "the browser test")?;
    let browser_tests = root.join("tests/browser");
    if !browser_tests.join("node_modules/playwright-core").exists() {
        println!("installing the browser test's npm packages");
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&browser_tests))
        .context("the browser test needs Node.js and npm")?;
    }
    Ok(())
}

/// Installs Debian package `package` through apt (as root) unless `path`,
/// a file it provides, is there already.
fn ensure_debian_package(path: &str, package: &str, needed_by: &str) -> anyhow::Result<()> {
    if Path::new(path).exists() {
        return Ok(());
    }
    println!("installing Debian's {package} for {needed_by}");
    let install = || {
        run(Command::new("apt-get").args([
            "install",
            "--yes",
            "--quiet",
            "--no-install-recommends",
            package,
        ]))
    };
    if install().is_err() {
        run(Command::new("apt-get").args(["update", "--quiet"]))?;
        install().with_context(|| {
            format!("{needed_by} needs Debian's {package} (apt-get install {package}, as root)")
        })?;
    }
    Ok(())
}

/// The package name of the component crate in `dir`, or `None` if `dir`
/// holds no crate (e.g. `plugins/testing` itself, seen from `plugins/`) or
/// a library the plugins share (the SDK, the provider kit): a component is
/// a `cdylib` or a command (`src/main.rs`, such as `hello-cli`).
fn crate_name(dir: &Path) -> anyhow::Result<Option<String>> {
    let cargo_toml = dir.join("Cargo.toml");
    if !cargo_toml.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&cargo_toml)?;
    if !text.contains("\"cdylib\"") && !dir.join("src/main.rs").exists() {
        return Ok(None);
    }
    let name = toml_string(&text, "name")
        .with_context(|| format!("{} has no package name", cargo_toml.display()))?;
    Ok(Some(name))
}

fn manifest_name(manifest: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(manifest)?;
    toml_string(&text, "name").with_context(|| format!("{} has no name", manifest.display()))
}

/// The first `key = "value"` line of a TOML file: enough for the `name` of a
/// Cargo.toml's `[package]` and of a plugin manifest, both written first.
fn toml_string(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
    })
}

fn subdirectories(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    Ok(dirs)
}

fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

fn cargo(args: &[&str]) -> anyhow::Result<()> {
    run(&mut cargo_command(args))
}

fn cargo_command(args: &[&str]) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.args(args);
    command
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("starting {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}
