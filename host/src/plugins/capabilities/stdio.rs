//! Guest stdout and stderr, forwarded to `tracing` line by line.
//!
//! Plugins have no console. A stray `println!` in a plugin must neither fail
//! the call (a closed stdout makes Rust's `println!` panic) nor reach the
//! host's own stdout, so writes always succeed and go to the log, tagged with
//! the plugin's name, up to a per-stream budget.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Bytes one stream of one call may log; the rest is dropped.
const STREAM_BUDGET: usize = 64 * 1024;

/// A guest output stream (`stdout` or `stderr`) of one call.
#[derive(Clone)]
pub struct GuestOutput {
    inner: Arc<Mutex<Lines>>,
}

struct Lines {
    plugin: Arc<str>,
    stream: &'static str,
    pending: Vec<u8>,
    remaining: usize,
}

impl GuestOutput {
    pub fn new(plugin: Arc<str>, stream: &'static str) -> Self {
        GuestOutput {
            inner: Arc::new(Mutex::new(Lines {
                plugin,
                stream,
                pending: Vec::new(),
                remaining: STREAM_BUDGET,
            })),
        }
    }

    fn write(&self, bytes: &[u8]) {
        // A poisoned lock only means another write panicked; the log is
        // best-effort either way.
        let mut lines = self
            .inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let take = bytes.len().min(lines.remaining);
        lines.remaining -= take;
        lines.pending.extend_from_slice(&bytes[..take]);
        while let Some(end) = lines.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = lines.pending.drain(..=end).collect();
            lines.emit(&line[..end]);
        }
    }
}

impl Lines {
    fn emit(&self, line: &[u8]) {
        tracing::info!(
            plugin = %self.plugin,
            stream = self.stream,
            "{}",
            String::from_utf8_lossy(line)
        );
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            self.emit(&self.pending);
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        GuestOutput::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        GuestOutput::write(&self, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
