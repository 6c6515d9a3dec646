//! `cargo xtask load`: the server benchmark. Starts the mock model, this
//! build's `wasmgate` (and, with `--baseline BIN`, a second build beside it)
//! on fresh SQLite files, and drives them with `wasmgate-load`, alternating.
//!
//! Everything runs on this machine, so the generator, the mock and the
//! servers share its cores; the figures are medians over rounds, with the
//! ratios to the baseline from the same run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// What each server is started with: the mock as its `openai` model, and
/// no per-user limits (the load is the point).
const SECRET: &str = "wasmgate-load-secret";

/// The rows run unless other `wasmgate-load run` arguments are given.
const DEFAULT_LOADS: &[&str] = &[
    "--clients",
    "1,64",
    "--rate",
    "200,500",
    "--rounds",
    "3",
    "--duration",
    "10",
];

/// A process that is killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `args`: `[--baseline BIN]… [wasmgate-load run arguments…]`; each
/// baseline is named by its file name, and the first is what the ratios
/// compare with.
pub fn load(root: &Path, mut args: &[String]) -> anyhow::Result<()> {
    let mut baselines = Vec::new();
    while let [flag, bin, rest @ ..] = args
        && flag == "--baseline"
    {
        baselines.push(PathBuf::from(bin));
        args = rest;
    }
    let rest = args;
    let generator = root.join("target/release/wasmgate-load");
    let work = root.join("target/load");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;

    let mut mock = Command::new(&generator)
        .arg("mock")
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the mock model")?;
    let mut url = String::new();
    BufReader::new(mock.stdout.take().context("the mock's stdout")?).read_line(&mut url)?;
    let mock_url = url.trim().to_string();
    let _mock = Running(mock);

    let mut servers = Vec::new();
    let mut targets = Vec::new();
    let builds = baselines
        .iter()
        .map(|bin| {
            let name = bin
                .file_name()
                .map_or("baseline".into(), |n| n.to_string_lossy().into_owned());
            (name, bin.clone())
        })
        .chain([(
            "this build".to_string(),
            root.join("target/release/wasmgate"),
        )]);
    for (name, bin) in builds {
        let (server, base) =
            start_server(root, &bin, &work.join(name.replace(' ', "-")), &mock_url)?;
        targets.push(format!("url={base},name={name},pid={}", server.0.id()));
        servers.push(server);
    }

    let mut run = Command::new(&generator);
    run.arg("run")
        .args(["--secret", SECRET, "--mock", &mock_url]);
    for target in &targets {
        run.args(["--target", target]);
    }
    run.args(if rest.is_empty() {
        DEFAULT_LOADS.iter().map(|s| s.to_string()).collect()
    } else {
        rest.to_vec()
    });
    let status = run.status().context("running wasmgate-load")?;
    if !status.success() {
        bail!("wasmgate-load failed: {status}");
    }
    Ok(())
}

/// Starts `bin` on a free port with its data under `dir`; returns it once
/// `/readyz` answers 200, with its base URL.
fn start_server(
    root: &Path,
    bin: &Path,
    dir: &Path,
    mock: &str,
) -> anyhow::Result<(Running, String)> {
    std::fs::create_dir_all(dir)?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let listen = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(dir.join("server.log"))?;
    let child = Command::new(bin)
        .arg("serve")
        .env("WASMGATE_LISTEN", &listen)
        .env("WASMGATE_PLUGINS", root.join("target/plugins"))
        .env("WASMGATE_POLICY", root.join("target/plugins/policy.toml"))
        .env("WASMGATE_CACHE_DIR", dir.join("cache"))
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("wasmgate.db").display()),
        )
        .env("BETTER_AUTH_SECRET", SECRET)
        .env("WASMGATE_MODEL", "openai:mock")
        .env("OPENAI_BASE_URL", mock)
        .env("OPENAI_API_KEY", "sk-load")
        .env("WASMGATE_CHAT_RATE_PER_MINUTE", "0")
        .env("WASMGATE_TASK_WRITES_PER_MINUTE", "0")
        .env("WASMGATE_MAX_TASKS_PER_USER", "0")
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let server = Running(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready(&listen) {
        if Instant::now() > deadline {
            bail!(
                "{} did not become ready; see {}",
                bin.display(),
                dir.join("server.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((server, format!("http://{listen}")))
}

/// Whether `GET /readyz` answers 200.
fn ready(addr: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let asked = stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    asked.is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}
