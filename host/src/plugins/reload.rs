//! Hot reload: the plugin directory watched, and the registry snapshot
//! rebuilt and swapped when it changes.
//!
//! Loading (compile, link, validate) happens here, off the request path.
//! The swap is atomic: calls in flight finish on the snapshot they took,
//! new calls get the new one. One reload runs at a time; file events that
//! arrive meanwhile are folded into the next one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::signal::unix::SignalKind;
use tokio::sync::{Mutex, mpsc};

use super::{PluginSource, Registry, Runtime, Snapshot};

/// How long the directory must be quiet before a reload: copying a
/// component and its manifest produces a burst of events.
const DEBOUNCE: Duration = Duration::from_millis(100);

pub struct Reloader {
    runtime: Arc<Runtime>,
    registry: Arc<Registry>,
    source: PluginSource,
    /// Serialises reloads.
    running: Mutex<()>,
    pub reloads: AtomicU64,
    /// Plugin loads rejected by reloads (a broken upload, a clash).
    pub rejected: AtomicU64,
}

/// What a reload did.
#[derive(Debug, Clone)]
pub struct ReloadReport {
    pub plugins: Vec<String>,
    pub rejected: Vec<(String, String)>,
    pub took: Duration,
}

impl Reloader {
    pub fn new(
        runtime: Arc<Runtime>,
        registry: Arc<Registry>,
        source: PluginSource,
    ) -> Arc<Reloader> {
        Arc::new(Reloader {
            runtime,
            registry,
            source,
            running: Mutex::new(()),
            reloads: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        })
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.source.dir
    }

    pub fn source(&self) -> &PluginSource {
        &self.source
    }

    /// Rescans the directory and swaps in the result.
    pub async fn reload(&self) -> ReloadReport {
        let _one_at_a_time = self.running.lock().await;
        let started = Instant::now();
        let previous = self.registry.snapshot();
        let next = Snapshot::load_dir_after(&self.runtime, &self.source, &previous).await;
        let report = ReloadReport {
            plugins: next.plugins().map(|p| p.name().to_string()).collect(),
            rejected: next
                .rejected()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            took: started.elapsed(),
        };
        // The first load (at start-up) is not a reload.
        let first = !self.registry.is_loaded();
        self.registry.replace(next);
        if !first {
            self.reloads.fetch_add(1, Ordering::Relaxed);
            self.rejected
                .fetch_add(report.rejected.len() as u64, Ordering::Relaxed);
        }
        tracing::info!(plugins = ?report.plugins, rejected = report.rejected.len(), took = ?report.took, "plugins reloaded");
        report
    }

    /// Reloads on SIGHUP and whenever the directory changes, for as long as
    /// the process runs. SIGHUP is handled from when this returns, even if
    /// the directory cannot be watched (the error returned).
    pub fn watch(self: &Arc<Self>) -> anyhow::Result<()> {
        let (tx, mut rx) = mpsc::channel::<()>(1);
        // Registered before returning, so a SIGHUP that comes once the
        // server answers never meets the default action (terminate).
        match tokio::signal::unix::signal(SignalKind::hangup()) {
            Ok(mut hangups) => {
                let on_hangup = tx.clone();
                tokio::spawn(async move {
                    while hangups.recv().await.is_some() {
                        tracing::info!("SIGHUP: reloading plugins");
                        // A full channel already holds a pending reload.
                        let _ = on_hangup.try_send(());
                    }
                });
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGHUP; reload through the admin API");
            }
        }
        let (watcher, watching) = match self.watch_dir(tx) {
            Ok(watcher) => (Some(watcher), Ok(())),
            Err(err) => (None, Err(err)),
        };

        let reloader = self.clone();
        tokio::spawn(async move {
            // Owned by the task: dropping the watcher would stop the events.
            let _watcher = watcher;
            while rx.recv().await.is_some() {
                // Wait for the burst to end.
                loop {
                    tokio::time::sleep(DEBOUNCE).await;
                    if rx.try_recv().is_err() {
                        break;
                    }
                }
                reloader.reload().await;
            }
        });
        watching
    }

    /// A watcher that sends on `changes` when the directory changes.
    fn watch_dir(&self, changes: mpsc::Sender<()>) -> anyhow::Result<RecommendedWatcher> {
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| !e.kind.is_access()) {
                    let _ = changes.try_send(());
                }
            })?;
        std::fs::create_dir_all(&self.source.dir)?;
        watcher.watch(&self.source.dir, RecursiveMode::NonRecursive)?;
        Ok(watcher)
    }
}
