//! Compiling components off the serving path, under a budget.
//!
//! Cranelift's compile time is not bounded by a component's size (a crafted
//! 1 MB component can take minutes), and a compile cannot be cancelled in
//! process. So the server compiles in a child process of its own binary
//! (`wasmgate __compile`), killed when the wall-clock budget runs out, and
//! only one compile runs at a time, so uploads and reloads cannot pile up
//! cranelift work on a small machine. Tools that run one plugin (tests,
//! benchmarks, `plugins check`) compile in process.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use wasmtime::Engine;
use wasmtime::component::Component;

use super::engine::{self, Allocator};
use super::error::LoadError;

/// How components get compiled.
#[derive(Debug, Clone, Default)]
pub enum CompileMode {
    /// On a blocking thread of this process, without a time limit.
    #[default]
    InProcess,
    /// In a child process running `exe __compile`, killed after `budget`.
    Subprocess { exe: PathBuf, budget: Duration },
}

pub(super) struct Compiler {
    mode: CompileMode,
    one_at_a_time: Semaphore,
}

/// The hidden subcommand the child runs.
pub const SUBCOMMAND: &str = "__compile";

/// The most a child's error message is read, in bytes.
const MAX_CHILD_ERROR_BYTES: u64 = 16 * 1024;

impl Compiler {
    pub(super) fn new(mode: CompileMode) -> Compiler {
        Compiler {
            mode,
            one_at_a_time: Semaphore::new(1),
        }
    }

    pub(super) async fn compile(
        &self,
        engine: &Engine,
        allocator: Allocator,
        wasm: &[u8],
    ) -> Result<Component, LoadError> {
        let _turn = self
            .one_at_a_time
            .acquire()
            .await
            .expect("the compile semaphore is never closed");
        match &self.mode {
            CompileMode::InProcess => {
                let (engine, wasm) = (engine.clone(), wasm.to_vec());
                tokio::task::spawn_blocking(move || Component::new(&engine, &wasm))
                    .await
                    .map_err(|err| LoadError::Compile(err.to_string()))?
                    .map_err(|err| LoadError::Compile(format!("{err:#}")))
            }
            CompileMode::Subprocess { exe, budget } => {
                let compiled = tokio::time::timeout(*budget, in_child(exe, allocator, wasm))
                    .await
                    .map_err(|_| LoadError::CompileBudget(*budget))??;
                // SAFETY: the bytes are the child's `precompile_component`
                // output for an engine built by the same binary with the
                // same settings; wasmtime checks the header and the
                // compatibility hash against this engine before using them.
                #[allow(unsafe_code)]
                unsafe { Component::deserialize(engine, &compiled) }
                    .map_err(|err| LoadError::Compile(format!("{err:#}")))
            }
        }
    }
}

/// Runs the child: the component on its stdin, the compiled artifact on
/// its stdout, an error message on its stderr. Dropping the future (the
/// budget ran out) kills the child.
async fn in_child(exe: &PathBuf, allocator: Allocator, wasm: &[u8]) -> Result<Vec<u8>, LoadError> {
    let failed =
        |err: std::io::Error| LoadError::Compile(format!("cannot run the compiler: {err}"));
    let mut child = tokio::process::Command::new(exe)
        .arg(SUBCOMMAND)
        .arg(match allocator {
            Allocator::Pooling => "pooling",
            Allocator::OnDemand => "on-demand",
        })
        .env("RUST_LIB_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(failed)?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = wasm.to_vec();
    let feed = tokio::spawn(async move {
        // A child that fails early closes its stdin; its stderr says why.
        let _ = stdin.write_all(&input).await;
    });
    let output = child.wait_with_output().await.map_err(failed)?;
    let _ = feed.await;
    if output.status.success() {
        return Ok(output.stdout);
    }
    let mut message = String::new();
    let _ = output
        .stderr
        .as_slice()
        .take(MAX_CHILD_ERROR_BYTES)
        .read_to_string(&mut message);
    Err(LoadError::Compile(match message.trim() {
        "" => format!("the compiler exited with {}", output.status),
        text => text.to_string(),
    }))
}

/// The child's side: reads a component from stdin and writes it compiled,
/// for an engine configured as the parent's, to stdout.
pub fn child_main(allocator: &str) -> anyhow::Result<()> {
    let allocator = match allocator {
        "pooling" => Allocator::Pooling,
        "on-demand" => Allocator::OnDemand,
        other => anyhow::bail!("unknown allocator {other:?}"),
    };
    let engine = engine::for_compiling(allocator)?;
    let mut wasm = Vec::new();
    std::io::stdin().read_to_end(&mut wasm)?;
    let compiled = engine
        .precompile_component(&wasm)
        .map_err(|err| anyhow::anyhow!("{err:#}"))?;
    std::io::stdout().write_all(&compiled)?;
    Ok(())
}
