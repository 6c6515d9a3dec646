//! The on-disk cache of compiled components.
//!
//! Compiling a component with cranelift takes tens to hundreds of
//! milliseconds (see `compile.rs`); a restart or a reload of an unchanged
//! file should not pay it again. Entries are keyed by the component's sha256 and a hash of the
//! engine's compilation settings, so a wasmtime upgrade or a config change
//! can never load stale machine code.

#![allow(unsafe_code)]

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

#[derive(Clone)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
    engine_key: String,
}

impl ComponentCache {
    /// A cache in `dir`, or no cache at all for `None`.
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ComponentCache {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        }
    }

    /// The component compiled earlier from the file with `sha256`, if the
    /// cache holds it. Cache failures are logged, never fatal.
    pub fn lookup(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.entry(sha256)?;
        // Read into memory rather than map the file: a mapped file that
        // someone truncates under us would crash the process (SIGBUS).
        let compiled = std::fs::read(&path).ok()?;
        // SAFETY: the file was written by `store` below from
        // `Component::serialize` of the same engine configuration (the
        // engine key is in the name) and renamed into place atomically;
        // wasmtime also checks its header against this engine. The cache
        // directory belongs to the gateway, like its database.
        match unsafe { Component::deserialize(engine, &compiled) } {
            Ok(component) => Some(component),
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "ignoring unreadable cache entry");
                None
            }
        }
    }

    /// Keeps `component` (compiled from the file with `sha256`) for the next
    /// load. Called only once the plugin loaded, so nothing is cached for a
    /// component that failed.
    pub fn store(&self, sha256: &str, component: &Component) {
        let Some(path) = self.entry(sha256) else {
            return;
        };
        if let Err(err) = store(&path, component) {
            tracing::warn!(path = %path.display(), error = %format!("{err:#}"), "could not cache a compiled component");
        }
    }

    fn entry(&self, sha256: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{sha256}-{}.cwasm", self.engine_key)))
    }
}

fn store(path: &Path, component: &Component) -> anyhow::Result<()> {
    let bytes = component.serialize()?;
    let dir = path
        .parent()
        .expect("cache entries are always inside the cache directory");
    std::fs::create_dir_all(dir)?;
    // Write then rename, so a concurrent reader never sees half a file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
