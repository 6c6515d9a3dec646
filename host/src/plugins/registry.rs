//! The registry: which plugins serve right now.
//!
//! The loaded set is an immutable [`Snapshot`] behind an atomic pointer. A
//! request takes the snapshot once and finishes on it, however long it
//! runs; a reload builds the next snapshot off to the side and swaps it in.
//! Readers never lock and never see a half-built set.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::error::LoadError;
use super::load::PluginFiles;
use super::runtime::{Plugin, Runtime, ToolSpec};

pub struct Registry {
    current: ArcSwap<Snapshot>,
}

/// One consistent set of loaded plugins.
#[derive(Default)]
pub struct Snapshot {
    plugins: BTreeMap<String, Arc<Plugin>>,
    /// Tool name → the plugin offering it and the tool's index in its list.
    tools: HashMap<String, (Arc<Plugin>, usize)>,
    /// Plugins that failed to load, with why (shown to operators).
    rejected: BTreeMap<String, String>,
}

impl Registry {
    pub fn new(snapshot: Snapshot) -> Registry {
        Registry {
            current: ArcSwap::from_pointee(snapshot),
        }
    }

    /// The set serving right now. Hold it for the whole of a request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Makes `next` the serving set. In-flight calls finish on the old one.
    pub fn replace(&self, next: Snapshot) {
        self.current.store(Arc::new(next));
    }
}

impl Snapshot {
    /// Loads every plugin in `dir` (each `<name>.toml` with its `<name>.wasm`).
    /// A plugin that fails to load is logged and left out; it never stops
    /// the others from serving.
    pub async fn load_dir(runtime: &Runtime, dir: &Path) -> Snapshot {
        Snapshot::load_dir_after(runtime, dir, &Snapshot::default()).await
    }

    /// The next snapshot after `previous`, from what `dir` holds now:
    /// unchanged plugins are reused as they are (no recompilation, their
    /// in-flight calls undisturbed), changed ones are loaded anew, removed
    /// ones are gone. A plugin whose new files fail to load keeps serving
    /// its previous version; the failure is recorded in `rejected`.
    pub async fn load_dir_after(runtime: &Runtime, dir: &Path, previous: &Snapshot) -> Snapshot {
        let mut snapshot = Snapshot::default();
        let mut manifests: Vec<_> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
                .collect(),
            Err(err) => {
                tracing::warn!(dir = %dir.display(), error = %err, "cannot read the plugin directory; serving no plugins");
                return snapshot;
            }
        };
        // A stable order makes clashes resolve the same way on every load.
        manifests.sort();
        // Load everything first, then insert what was already serving before
        // what is new: on a clash, the working plugin keeps its tools and the
        // newcomer is the one rejected.
        let mut outcomes = Vec::new();
        for path in manifests {
            let key = path
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_default();
            let before = previous
                .plugins
                .values()
                .find(|p| p.origin.as_deref() == Some(path.as_path()))
                .cloned();
            let loaded = match PluginFiles::read(&path) {
                Ok(files) => match &before {
                    Some(plugin) if plugin.source == files.fingerprint() => {
                        Ok((plugin.clone(), true))
                    }
                    _ => runtime.load_files(&files).await.map(|plugin| {
                        log_loaded(&plugin);
                        (Arc::new(plugin), false)
                    }),
                },
                Err(err) => Err(err),
            };
            outcomes.push((key, before, loaded));
        }
        outcomes.sort_by_key(|(_, _, loaded)| !matches!(loaded, Ok((_, true))));
        for (key, before, loaded) in outcomes {
            let result = loaded.and_then(|(plugin, _)| snapshot.insert(plugin));
            if let Err(err) = result {
                tracing::error!(plugin = %key, error = %err, "plugin rejected");
                snapshot.rejected.insert(key, err.to_string());
                if let Some(plugin) = before
                    && snapshot.insert(plugin.clone()).is_ok()
                {
                    tracing::warn!(plugin = plugin.name(), "the previous version keeps serving");
                }
            }
        }
        snapshot
    }

    /// Adds `plugin`, unless its name or one of its tools is taken.
    pub fn insert(&mut self, plugin: Arc<Plugin>) -> Result<(), LoadError> {
        if let Some(other) = self.plugins.get(plugin.name()) {
            return Err(LoadError::NameClash {
                name: plugin.name().to_string(),
                other: format!("another plugin ({})", other.sha256),
            });
        }
        for tool in &plugin.tools {
            if let Some((other, _)) = self.tools.get(&tool.name) {
                return Err(LoadError::ToolClash {
                    tool: tool.name.clone(),
                    first: other.name().to_string(),
                    second: plugin.name().to_string(),
                });
            }
        }
        for (index, tool) in plugin.tools.iter().enumerate() {
            self.tools
                .insert(tool.name.clone(), (plugin.clone(), index));
        }
        self.plugins.insert(plugin.name().to_string(), plugin);
        Ok(())
    }

    /// Why `plugin` could not join this set in place of its namesake: a tool
    /// another plugin already offers.
    pub fn clash(&self, plugin: &Plugin) -> Option<LoadError> {
        plugin.tools.iter().find_map(|tool| {
            let (other, _) = self.tools.get(&tool.name)?;
            (other.name() != plugin.name()).then(|| LoadError::ToolClash {
                tool: tool.name.clone(),
                first: other.name().to_string(),
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
