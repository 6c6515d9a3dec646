//! The `wasmgate` binary: parses the command line, starts tracing, and hands
//! over to the library.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use wasmgate::config::{Cli, Command, PluginsCommand};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let runtime = tokio::runtime::Runtime::new().expect("the OS lets a process start its threads");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(config) => serve(config).await,
            Command::Plugins {
                command: PluginsCommand::Check { file },
            } => wasmgate::check::run(&file).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
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
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler only fails outside a tokio runtime");
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
}
