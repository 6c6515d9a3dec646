//! The `wasmgate` binary: parses the command line, starts tracing, and hands
//! over to the library.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use wasmgate::config::{Cli, Command, PluginsCommand};

fn main() -> ExitCode {
    quiet_error_backtraces();
    let cli = Cli::parse();
    // Made before the runtime: its HTTP client runs on a thread of its own.
    let (tracer, tracer_error) = match wasmgate::telemetry::exporter() {
        Some(Ok(provider)) => (Some(provider), None),
        Some(Err(err)) => (None, Some(err)),
        None => (None, None),
    };
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")));
    tracing_subscriber::registry()
        .with(log)
        .with(tracer.as_ref().map(wasmgate::telemetry::layer))
        .init();
    if let Some(err) = tracer_error {
        tracing::error!(error = %err, "cannot export traces; serving without them");
    }

    let runtime = tokio::runtime::Runtime::new().expect("the OS lets a process start its threads");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(config) => serve(*config).await,
            Command::Token {
                user,
                secret,
                ttl_seconds,
                scope,
            } => {
                let secret = secret.filter(|s| !s.is_empty()).context(
                    "set BETTER_AUTH_SECRET (or --secret) to the server's secret; \
                     a server without one prints its own dev token at startup",
                )?;
                println!(
                    "{}",
                    wasmgate::auth::mint(
                        secret.as_bytes(),
                        &user,
                        Duration::from_secs(ttl_seconds),
                        scope.as_deref(),
                    )
                );
                Ok(())
            }
            Command::Compile { allocator } => wasmgate::plugins::compile::child_main(&allocator),
            Command::Plugins { command } => match command {
                PluginsCommand::Check { file } => wasmgate::cli::check::run(&file).await,
                PluginsCommand::New {
                    name,
                    dir,
                    sdk,
                    capability,
                } => {
                    let root = wasmgate::cli::new_plugin::run(&name, &dir, &sdk, capability)?;
                    println!("created {}", root.display());
                    println!(
                        "build it: cd {} && cargo build --release --target wasm32-wasip2",
                        root.display()
                    );
                    Ok(())
                }
                PluginsCommand::Grant {
                    name,
                    plugins,
                    policy,
                } => wasmgate::cli::grant::run(&name, &plugins, policy.as_deref()),
                PluginsCommand::Keygen { out } => wasmgate::cli::sign::keygen(&out),
                PluginsCommand::Sign { key, file } => wasmgate::cli::sign::sign(&key, &file),
                PluginsCommand::Verify { key, file } => wasmgate::cli::sign::verify(&key, &file),
                PluginsCommand::Push {
                    file,
                    reference,
                    registry,
                } => wasmgate::cli::push::push(&file, &reference, &registry).await,
                PluginsCommand::Run {
                    file,
                    tool,
                    arguments,
                    tasks,
                    allow_hosts,
                } => {
                    wasmgate::cli::run_tool::run(
                        &file,
                        &tool,
                        &arguments,
                        tasks.as_deref(),
                        &allow_hosts,
                    )
                    .await
                }
            },
        }
    });
    // The spans still queued go out, within a bound: an unreachable
    // collector must not hold up the exit.
    if let Some(tracer) = tracer
        && let Err(err) = tracer.shutdown_with_timeout(Duration::from_secs(5))
    {
        eprintln!("warning: traces not flushed: {err}");
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// wasmtime creates (and drops) an error value whenever a store is dropped,
/// which with `RUST_BACKTRACE=1` in the environment captures a backtrace on
/// every plugin call: about 10 µs each, a third of a call. Library error
/// backtraces are governed by `RUST_LIB_BACKTRACE` first, so unless the
/// operator set it, turn them off; panics still print theirs.
#[allow(unsafe_code)]
fn quiet_error_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: called first thing in `main`, before any other thread
        // exists that could read the environment concurrently.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
}

async fn serve(config: wasmgate::config::ServeConfig) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    // Tests and scripts read the bound address from this line.
    println!("wasmgate listening on http://{addr}");
    std::io::stdout().flush().ok();
    wasmgate::run(config, listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler only fails outside a tokio runtime");
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
}
