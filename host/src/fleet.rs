//! A fleet: replicas of the gateway on one PostgreSQL, serving one plugin
//! set (docs/DEPLOY.md).
//!
//! The plugins installed or removed through the admin API of any replica,
//! and the grants made through it, are desired state in the database
//! (`store::fleet`). Every replica copies
//! that state into its own plugin directory and reloads, so the rest (the
//! compile cache per digest, validation, the atomic swap, a broken
//! component leaving the previous version serving) is the single-node
//! reload, unchanged. Grants are laid over each replica's policy file
//! (`PolicySource::shared_grants`). A replica learns of a change by `LISTEN`, and also
//! reconciles every [`RECONCILE`], since notifications sent while its
//! listening connection is down are lost.
//!
//! On SQLite there is one process and no fleet: the directory is the
//! plugin set, as before.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::plugins::policy::PluginPolicy;
use crate::plugins::{PluginFiles, ReloadReport, Reloader};
use crate::store::{PLUGINS_CHANNEL, Store, StoreError};

/// How often a replica compares its plugins with the database anyway.
pub const RECONCILE: Duration = Duration::from_secs(5);
/// The wait before listening again after the connection failed.
const RECONNECT: Duration = Duration::from_secs(1);

pub struct Fleet {
    store: Store,
    reloader: Arc<Reloader>,
    database_url: String,
    /// Plugin name → the change (`updated_at`) last copied in. Locked for a
    /// whole copy, which serialises them.
    copied: Mutex<HashMap<String, String>>,
}

impl Fleet {
    pub fn new(store: Store, reloader: Arc<Reloader>, database_url: String) -> Arc<Fleet> {
        Arc::new(Fleet {
            store,
            reloader,
            database_url,
            copied: Mutex::new(HashMap::new()),
        })
    }

    /// Copies the shared plugin set into the plugin directory; whether
    /// anything changed there.
    pub async fn copy_in(&self) -> Result<bool, StoreError> {
        let mut copied = self.copied.lock().await;
        let dir = self.reloader.dir();
        let mut changed = false;
        for row in self.store.fleet_plugins().await? {
            if copied.get(&row.name) == Some(&row.updated_at) {
                continue;
            }
            let manifest_path = dir.join(format!("{}.toml", row.name));
            match &row.sha256 {
                Some(sha256) => {
                    // Replaced since it was listed: the next copy takes the new one.
                    let Some(files) = self
                        .store
                        .fleet_files(&row.name, sha256, manifest_path.clone())
                        .await?
                    else {
                        continue;
                    };
                    // Already here (a restart): nothing to write.
                    let here = PluginFiles::read(&manifest_path).ok();
                    if here.is_none_or(|here| here.fingerprint() != files.fingerprint()) {
                        if let Err(err) = files.write() {
                            tracing::error!(plugin = %row.name, error = %err, "cannot write a fleet plugin");
                            continue;
                        }
                        tracing::info!(plugin = %row.name, %sha256, "fleet plugin copied in");
                        changed = true;
                    }
                }
                None if manifest_path.exists() => {
                    if let Err(err) = PluginFiles::remove(&manifest_path) {
                        tracing::error!(plugin = %row.name, error = %err, "cannot remove a fleet plugin");
                        continue;
                    }
                    tracing::info!(plugin = %row.name, "fleet plugin removed");
                    changed = true;
                }
                None => {}
            }
            copied.insert(row.name, row.updated_at);
        }
        Ok(self.copy_grants().await? || changed)
    }

    /// Lays the fleet's grants over this replica's policy; whether they
    /// changed.
    async fn copy_grants(&self) -> Result<bool, StoreError> {
        let mut grants = BTreeMap::new();
        for (name, entry) in self.store.fleet_grants().await? {
            match serde_json::from_str::<PluginPolicy>(&entry) {
                Ok(entry) => {
                    grants.insert(name, entry);
                }
                // Written by a newer replica, perhaps: the file's entry stays.
                Err(err) => {
                    tracing::error!(plugin = %name, error = %err, "cannot read a fleet grant")
                }
            }
        }
        let shared = &self.reloader.source().policy.shared_grants;
        if **shared.load() == grants {
            return Ok(false);
        }
        tracing::info!(plugins = ?grants.keys().collect::<Vec<_>>(), "fleet grants changed");
        shared.store(Arc::new(grants));
        Ok(true)
    }

    /// Copies the shared set in and, if that changed anything, reloads.
    pub async fn sync(&self) -> Result<Option<ReloadReport>, StoreError> {
        Ok(match self.copy_in().await? {
            true => Some(self.reloader.reload().await),
            false => None,
        })
    }

    /// Follows the shared set until `draining`: a sync on every
    /// notification, on every (re)connection, and every [`RECONCILE`].
    pub fn follow(self: &Arc<Self>, draining: CancellationToken) {
        let fleet = self.clone();
        tokio::spawn(async move {
            let mut reconcile = tokio::time::interval(RECONCILE);
            loop {
                let mut listener = match fleet.listen().await {
                    Ok(listener) => Some(listener),
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot LISTEN for plugin changes; reconciling only");
                        None
                    }
                };
                // Whatever happened while not listening.
                fleet.sync_logged().await;
                loop {
                    let heard = async {
                        match listener.as_mut() {
                            Some(listener) => listener.try_recv().await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        heard = heard => match heard {
                            Ok(Some(_)) => fleet.sync_logged().await,
                            // The connection is gone (and with it any
                            // notification meanwhile): listen again.
                            Ok(None) | Err(_) => break,
                        },
                        _ = reconcile.tick() => {
                            fleet.sync_logged().await;
                            if listener.is_none() {
                                break;
                            }
                        }
                        () = draining.cancelled() => return,
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(RECONNECT) => {}
                    () = draining.cancelled() => return,
                }
            }
        });
    }

    async fn listen(&self) -> Result<PgListener, sqlx::Error> {
        let mut listener = PgListener::connect(&self.database_url).await?;
        listener.listen(PLUGINS_CHANNEL).await?;
        Ok(listener)
    }

    async fn sync_logged(&self) {
        if let Err(err) = self.sync().await {
            tracing::warn!(error = %err, "cannot read the fleet's plugin set; retrying");
        }
    }
}
