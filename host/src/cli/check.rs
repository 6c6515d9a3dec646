//! `wasmgate plugins check <file.wasm>`: the plugin author's first test.
//!
//! Runs the same validation as loading into a live gateway (component,
//! world, imports, grants, linking, tool specs) and prints what it found.

use std::path::Path;

use anyhow::Context;

use crate::plugins::{AllocatorChoice, LoadError, Manifest, Plugin, Runtime, RuntimeOptions};

pub async fn run(file: &Path) -> anyhow::Result<()> {
    let runtime = Runtime::new(RuntimeOptions {
        allocator: AllocatorChoice::OnDemand,
        cache_dir: None,
        tasks: None,
        kv: None,
        task_limits: Default::default(),
        compile: Default::default(),
        memory_mib: crate::plugins::budget::DEFAULT_MEMORY_MIB,
    })?;
    let manifest_path = file.with_extension("toml");
    let plugin = if manifest_path.exists() {
        runtime.load_file(&manifest_path).await
    } else {
        load_without_manifest(&runtime, file).await
    }
    .with_context(|| format!("{} is not a valid wasmgate plugin", file.display()))?;

    print!("{}", describe(&plugin, manifest_path.exists()));
    Ok(())
}

/// Validates a bare component, granting exactly the capabilities it imports.
async fn load_without_manifest(runtime: &Runtime, file: &Path) -> Result<Plugin, LoadError> {
    let wasm = std::fs::read(file).map_err(|source| LoadError::Io {
        path: file.display().to_string(),
        source,
    })?;
    let inspection = runtime.inspect(&wasm).await?;
    let name: String = file
        .file_stem()
        .map(|stem| stem.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let manifest = Manifest {
        name: if name.is_empty() {
            "plugin".into()
        } else {
            name
        },
        version: "0.0.0".into(),
        kind: inspection.kind,
        capabilities: inspection.capabilities,
        hosts: Vec::new(),
        secrets: Vec::new(),
        limits: Default::default(),
        provider: None,
        tools: Default::default(),
    };
    runtime.load(manifest, &wasm).await
}

fn describe(plugin: &Plugin, has_manifest: bool) -> String {
    let mut out = format!("ok: a {} plugin\n", plugin.kind().as_str());
    if has_manifest {
        out += &format!("manifest: {} {}\n", plugin.name(), plugin.manifest.version);
    } else {
        out += "manifest: none beside the file (checked with the capabilities it imports)\n";
    }
    let capabilities: Vec<&str> = plugin
        .manifest
        .capabilities
        .iter()
        .map(|&c| c.as_str())
        .collect();
    // What it asks the operator for: the policy's grants must cover these.
    out += &format!("capabilities: {}\n", capabilities.join(", "));
    if !plugin.manifest.hosts.is_empty() {
        out += &format!("hosts: {}\n", plugin.manifest.hosts.join(", "));
    }
    if !plugin.manifest.secrets.is_empty() {
        out += &format!("secrets: {}\n", plugin.manifest.secrets.join(", "));
    }
    out += &format!("sha256: {}\n", plugin.sha256);
    if !plugin.tools.is_empty() {
        out += "tools:\n";
        for tool in &plugin.tools {
            out += &format!("  {}: {}\n", tool.name, tool.description);
        }
    }
    out
}
