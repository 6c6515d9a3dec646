//! The accept loop: HTTP/1.1 and HTTP/2 over cleartext on one port, with
//! the limits a public listener needs and a shutdown that ends.
//!
//! - A connection must send a complete request head within the header
//!   timeout, which is also how long an idle keep-alive connection is kept.
//! - A write that makes no progress for the write timeout (a client that
//!   stopped reading a stream) closes the connection and frees its buffers.
//! - Past the connection cap, new connections are closed at once while the
//!   others keep being served (logged at most once a second); so are
//!   accept errors such as running out of file descriptors.
//! - On shutdown: stop accepting, close idle connections, let requests in
//!   flight finish for the grace period, then return (the caller exits).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::Service;

use crate::config::ServeConfig;

#[derive(Debug, Clone)]
pub struct ServeLimits {
    pub header_timeout: Duration,
    pub write_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
}

impl From<&ServeConfig> for ServeLimits {
    fn from(config: &ServeConfig) -> Self {
        ServeLimits {
            header_timeout: Duration::from_secs(config.header_timeout_secs.max(1)),
            write_timeout: Duration::from_secs(config.write_timeout_secs.max(1)),
            max_connections: config
                .max_connections
                .unwrap_or_else(default_max_connections)
                .max(1),
            shutdown_grace: Duration::from_secs(config.shutdown_grace_secs),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves and the grace
/// period has let what was in flight finish (or run out).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut refusals = Throttled::default();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors or memory: pause instead of spinning;
                // the connections already open keep being served.
                refusals.log(|count| {
                    tracing::warn!(error = %err, count, "cannot accept connections");
                });
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(tcp);
            refusals.log(|count| {
                tracing::warn!(
                    limit = limits.max_connections,
                    count,
                    "connection limit reached; closing new connections"
                );
            });
            continue;
        };
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY");
        }
        let io = TokioIo::new(WriteTimeout::new(tcp, limits.write_timeout));
        let router = app.clone();
        let service = hyper::service::service_fn(move |mut request| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().call(request)
        });
        let connection = graceful.watch(
            builder
                .serve_connection_with_upgrades(io, service)
                .into_owned(),
        );
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, %peer, "connection ended with an error");
            }
            drop(slot);
        });
    }

    drop(listener);
    tracing::info!(grace = ?limits.shutdown_grace, "shutting down: finishing requests in flight");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("every connection closed"),
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!("shutdown grace period over; closing the remaining connections");
        }
    }
}

/// The file-descriptor limit's share left for connections: the soft
/// `RLIMIT_NOFILE` less what the database, plugins and upstream requests
/// need, read from `/proc/self/limits` (Linux); 1024 when unknown.
pub fn default_max_connections() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse::<usize>().ok()
        })
        .unwrap_or(1024);
    soft.saturating_sub(256).clamp(16, 10_000)
}

/// Logs an event at most once a second, with how many there were.
#[derive(Default)]
struct Throttled {
    last: Option<Instant>,
    count: u64,
}

impl Throttled {
    fn log(&mut self, log: impl FnOnce(u64)) {
        self.count += 1;
        if self
            .last
            .is_none_or(|last| last.elapsed() >= Duration::from_secs(1))
        {
            log(self.count);
            self.last = Some(Instant::now());
            self.count = 0;
        }
    }
}

/// A stream whose writes fail once one has made no progress for `limit`.
struct WriteTimeout {
    inner: TcpStream,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl WriteTimeout {
    fn new(inner: TcpStream, limit: Duration) -> Self {
        WriteTimeout {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Maps a pending write to an error once it has been pending too long.
    fn check<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.limit;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(stalled.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client stopped reading",
        )))
    }
}

impl AsyncRead for WriteTimeout {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteTimeout {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
