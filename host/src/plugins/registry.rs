//! The registry: which plugins serve right now.
//!
//! The loaded set is an immutable [`Snapshot`] behind an atomic pointer. A
//! request takes the snapshot once and finishes on it, however long it
//! runs; a reload builds the next snapshot off to the side and swaps it in.
//! Readers never lock and never see a half-built set. Whoever needs to
//! know that the tools changed (MCP's `toolsListChanged`) watches
//! [`Registry::tools_changed`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;

use super::error::LoadError;
use super::load::PluginFiles;
use super::policy::{Grant, POLICY_FILE, Policy, PolicySource};
use super::runtime::{Plugin, Runtime, ToolSpec};

pub struct Registry {
    current: ArcSwap<Snapshot>,
    /// Whether a snapshot was loaded (start-up loads in the background).
    loaded: AtomicBool,
    /// Counts the swaps that changed what tools are offered.
    tools_generation: tokio::sync::watch::Sender<u64>,
}

/// One consistent set of loaded plugins.
#[derive(Default)]
pub struct Snapshot {
    plugins: BTreeMap<String, Arc<Plugin>>,
    /// Tool name → the plugin offering it and the tool's index in its list.
    tools: HashMap<String, (Arc<Plugin>, usize)>,
    /// Plugins that failed to load, with why (shown to operators).
    rejected: BTreeMap<String, String>,
    /// Tool name → the plugin that owns it (see [`ToolOwners`]).
    owners: BTreeMap<String, String>,
}

impl Registry {
    pub fn new(snapshot: Snapshot) -> Registry {
        Registry {
            current: ArcSwap::from_pointee(snapshot),
            loaded: AtomicBool::new(true),
            tools_generation: tokio::sync::watch::Sender::new(0),
        }
    }

    /// An empty registry whose first snapshot is still loading.
    pub fn loading() -> Registry {
        Registry {
            current: ArcSwap::from_pointee(Snapshot::default()),
            loaded: AtomicBool::new(false),
            tools_generation: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Whether the plugins are in (false while start-up still loads them).
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// The set serving right now. Hold it for the whole of a request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Makes `next` the serving set. In-flight calls finish on the old one.
    pub fn replace(&self, next: Snapshot) {
        let tools_changed = self.current.load().tools() != next.tools();
        self.current.store(Arc::new(next));
        self.loaded.store(true, Ordering::Release);
        if tools_changed {
            self.tools_generation
                .send_modify(|generation| *generation += 1);
        }
    }

    /// Wakes on every swap that changes the tools offered (a tool added,
    /// removed, or described or scoped anew).
    pub fn tools_changed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.tools_generation.subscribe()
    }
}

/// Where plugins come from: a directory, the operator's policy, and the
/// ledger of who owns which tool.
#[derive(Clone)]
pub struct PluginSource {
    pub dir: PathBuf,
    pub policy: PolicySource,
    /// Persisted tool ownership (the database); `None` keeps it in memory.
    pub owners: Option<Arc<dyn ToolOwners>>,
    /// Brings the plugins the policy names by reference (`oci = …`) into
    /// the directory before each load; `None` leaves such entries unfetched.
    pub remote: Option<Arc<dyn RemotePlugins>>,
}

/// Plugins the policy names by a remote reference rather than by files.
#[async_trait::async_trait]
pub trait RemotePlugins: Send + Sync {
    /// Brings every plugin `policy` names by reference into `dir`, unless
    /// it is there as that reference already; answers, per plugin that could
    /// not be brought, why (what was there before stays, and serves).
    async fn fetch(&self, policy: &Policy, dir: &Path) -> Vec<(String, String)>;
}

impl PluginSource {
    /// `dir` with the policy in it and no persisted ownership.
    pub fn dir(dir: &Path) -> PluginSource {
        PluginSource {
            dir: dir.to_path_buf(),
            policy: PolicySource::in_dir(dir),
            owners: None,
            remote: None,
        }
    }
}

/// Which plugin owns each tool, kept across restarts: a plugin that served
/// a tool keeps it through its own updates and restarts, and a newcomer
/// offering the same tool stays rejected until the owner is removed.
#[async_trait::async_trait]
pub trait ToolOwners: Send + Sync {
    /// Tool name → owning plugin name.
    async fn load(&self) -> anyhow::Result<BTreeMap<String, String>>;
    /// Replaces the ledger with `owners`.
    async fn save(&self, owners: &BTreeMap<String, String>) -> anyhow::Result<()>;
}

impl Snapshot {
    /// Loads every plugin of `source` (each `<name>.toml` with its
    /// `<name>.wasm`). A plugin that fails to load or is not granted what it
    /// asks for is logged and left out; it never stops the others.
    pub async fn load_dir(runtime: &Runtime, source: &PluginSource) -> Snapshot {
        Snapshot::load_dir_after(runtime, source, &Snapshot::default()).await
    }

    /// The next snapshot after `previous`, from what the directory holds
    /// now: unchanged plugins are reused as they are (no recompilation, their
    /// in-flight calls undisturbed), changed ones are loaded anew, removed
    /// ones are gone. A plugin whose new files fail to load keeps serving
    /// its previous version; the failure is recorded in `rejected`. A plugin
    /// the policy no longer grants stops serving.
    pub async fn load_dir_after(
        runtime: &Runtime,
        source: &PluginSource,
        previous: &Snapshot,
    ) -> Snapshot {
        let mut snapshot = Snapshot::default();
        let dir = source.dir.as_path();
        let policy = source.policy.read();
        if let Err(err) = &policy {
            tracing::error!(error = %err, "the policy cannot be used; nothing beyond `log` is granted");
        }
        let not_fetched = match (&source.remote, &policy) {
            (Some(remote), Ok(policy)) => remote.fetch(policy, dir).await,
            _ => Vec::new(),
        };
        let mut manifests: Vec<_> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
                .filter(|path| {
                    path.file_name().is_some_and(|name| name != POLICY_FILE)
                        && *path != source.policy.path
                })
                .collect(),
            Err(err) => {
                tracing::warn!(dir = %dir.display(), error = %err, "cannot read the plugin directory; serving no plugins");
                return snapshot;
            }
        };
        let present: BTreeSet<String> = manifests.iter().map(|path| file_key(path)).collect();
        snapshot.owners = previous.owners.clone();
        if let Some(ledger) = &source.owners {
            match ledger.load().await {
                Ok(stored) => {
                    for (tool, owner) in stored {
                        snapshot.owners.entry(tool).or_insert(owner);
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %format!("{err:#}"), "cannot read the tool owners")
                }
            }
        }
        // A removed plugin gives its tools up.
        snapshot.owners.retain(|_, owner| present.contains(owner));

        // A stable order makes first claims resolve the same way on every load.
        manifests.sort();
        let mut outcomes = Vec::new();
        for path in manifests {
            let key = file_key(&path);
            let before = previous.plugins.get(&key).cloned();
            let loaded = match PluginFiles::read(&path) {
                Ok(files) => match &before {
                    Some(plugin)
                        if plugin.source == files.fingerprint()
                            && still_granted(&policy, plugin)
                            && signed_as_required(&policy, plugin) =>
                    {
                        Ok(plugin.clone())
                    }
                    _ => load_granted(runtime, &files, &key, &policy).await,
                },
                Err(err) => Err(err),
            };
            outcomes.push((key, before, loaded));
        }
        // What served before goes in first, so it keeps its tools against
        // newcomers even without a ledger.
        outcomes.sort_by_key(|(_, before, _)| before.is_none());
        for (key, before, loaded) in outcomes {
            let result = loaded.and_then(|plugin| snapshot.insert(plugin));
            if let Err(err) = result {
                tracing::error!(plugin = %key, error = %err, "plugin rejected");
                let not_granted = matches!(err, LoadError::NotGrantedByPolicy(_));
                snapshot.rejected.insert(key, err.to_string());
                // The previous version keeps serving a broken update, never
                // a revoked grant.
                if let Some(plugin) = before
                    && !not_granted
                    && still_granted(&policy, &plugin)
                    && signed_as_required(&policy, &plugin)
                    && snapshot.insert(plugin.clone()).is_ok()
                {
                    tracing::warn!(plugin = plugin.name(), "the previous version keeps serving");
                }
            }
        }
        // A plugin that could not be fetched is reported like a broken
        // update: whatever was in the directory before serves.
        for (key, reason) in not_fetched {
            snapshot.rejected.entry(key).or_insert(reason);
        }
        // A serving plugin's claims are what it offers now; a plugin that is
        // present but not serving keeps its claims.
        let serving = &snapshot.plugins;
        snapshot.owners.retain(|tool, owner| {
            serving
                .get(owner)
                .is_none_or(|plugin| plugin.tools.iter().any(|t| &t.name == tool))
        });
        for plugin in snapshot.plugins.values() {
            for tool in &plugin.tools {
                snapshot
                    .owners
                    .insert(tool.name.clone(), plugin.name().to_string());
            }
        }
        if let Some(ledger) = &source.owners
            && snapshot.owners != previous.owners
            && let Err(err) = ledger.save(&snapshot.owners).await
        {
            tracing::warn!(error = %format!("{err:#}"), "cannot record the tool owners");
        }
        snapshot
    }

    /// Adds `plugin`, unless its name or one of its tools is taken (served
    /// by another plugin, or owned by one whose files are still there).
    pub fn insert(&mut self, plugin: Arc<Plugin>) -> Result<(), LoadError> {
        if let Some(other) = self.plugins.get(plugin.name()) {
            return Err(LoadError::NameClash {
                name: plugin.name().to_string(),
                other: format!("another plugin ({})", other.sha256),
            });
        }
        if let Some(clash) = self.clash(&plugin) {
            return Err(clash);
        }
        for (index, tool) in plugin.tools.iter().enumerate() {
            self.tools
                .insert(tool.name.clone(), (plugin.clone(), index));
        }
        self.plugins.insert(plugin.name().to_string(), plugin);
        Ok(())
    }

    /// Why `plugin` could not join this set in place of its namesake: a tool
    /// another plugin offers or owns.
    pub fn clash(&self, plugin: &Plugin) -> Option<LoadError> {
        plugin.tools.iter().find_map(|tool| {
            let owner = match self.tools.get(&tool.name) {
                Some((other, _)) => other.name(),
                None => self.owners.get(&tool.name)?.as_str(),
            };
            (owner != plugin.name()).then(|| LoadError::ToolClash {
                tool: tool.name.clone(),
                first: owner.to_string(),
                second: plugin.name().to_string(),
            })
        })
    }

    /// The plugin offering tool `name`, if one is loaded.
    pub fn tool(&self, name: &str) -> Option<(&Arc<Plugin>, &ToolSpec)> {
        self.tools
            .get(name)
            .map(|(plugin, index)| (plugin, &plugin.tools[*index]))
    }

    /// Every tool, ordered by name.
    pub fn tools(&self) -> Vec<&ToolSpec> {
        let mut tools: Vec<&ToolSpec> = self
            .plugins
            .values()
            .flat_map(|plugin| plugin.tools.iter())
            .collect();
        tools.sort_by(|a, b| a.name.cmp(&b.name));
        tools
    }

    pub fn plugins(&self) -> impl Iterator<Item = &Arc<Plugin>> {
        self.plugins.values()
    }

    pub fn plugin(&self, name: &str) -> Option<&Arc<Plugin>> {
        self.plugins.get(name)
    }

    pub fn rejected(&self) -> &BTreeMap<String, String> {
        &self.rejected
    }
}

/// A plugin directory entry's name: its manifest's file stem, which must be
/// the plugin's name.
fn file_key(path: &Path) -> String {
    path.file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// What the policy grants `plugin` (a policy that cannot be read grants
/// nothing).
fn granted(policy: &Result<Policy, String>, plugin: &Plugin) -> Result<Grant, LoadError> {
    let denied = match policy {
        Ok(policy) => policy.grant(&plugin.manifest, &plugin.sha256),
        Err(err) => Policy::default()
            .grant(&plugin.manifest, &plugin.sha256)
            .map_err(|mut denied| {
                denied.refused = Some(err.clone());
                denied
            }),
    };
    denied.map_err(|denied| LoadError::NotGrantedByPolicy(denied.to_string()))
}

/// Whether `plugin` carries the signature the policy requires of it (a
/// policy that cannot be read requires none: it grants nothing anyway).
fn signed_as_required(policy: &Result<Policy, String>, plugin: &Plugin) -> bool {
    match policy {
        Ok(policy) => policy
            .check_signature(plugin.name(), &plugin.sha256, plugin.signature.as_deref())
            .is_ok(),
        Err(_) => true,
    }
}

/// Whether the policy still grants `plugin` exactly what it was given.
fn still_granted(policy: &Result<Policy, String>, plugin: &Plugin) -> bool {
    granted(policy, plugin).is_ok_and(|grant| grant == *plugin.grant)
}

/// Loads a plugin from its files and gives it what the policy grants.
async fn load_granted(
    runtime: &Runtime,
    files: &PluginFiles,
    key: &str,
    policy: &Result<Policy, String>,
) -> Result<Arc<Plugin>, LoadError> {
    // Unsigned where a signature is required: refused before compiling,
    // and (a broken update, not a revoked grant) the previous version
    // keeps serving, if it is signed as required.
    if let Ok(policy) = policy {
        let sha256 = crate::plugins::sha256_hex(&files.wasm);
        policy
            .check_signature(key, &sha256, files.signature_text().as_deref())
            .map_err(LoadError::Signature)?;
    }
    let mut plugin = runtime.load_files(files).await?;
    if plugin.name() != key {
        return Err(LoadError::Manifest {
            path: files.manifest_path.display().to_string(),
            message: format!(
                "the manifest names the plugin {:?}; its files must be named after it",
                plugin.name()
            ),
        });
    }
    plugin.grant = Arc::new(granted(policy, &plugin)?);
    for tool in &mut plugin.tools {
        tool.scope = plugin.grant.scopes.get(&tool.name).cloned();
    }
    log_loaded(&plugin);
    Ok(Arc::new(plugin))
}

fn log_loaded(plugin: &Plugin) {
    let tools: Vec<&str> = plugin.tools.iter().map(|t| t.name.as_str()).collect();
    tracing::info!(
        plugin = plugin.name(),
        version = %plugin.manifest.version,
        kind = plugin.kind().as_str(),
        sha256 = %plugin.sha256,
        ?tools,
        "plugin loaded"
    );
}
