//! `wasmgate plugins new <name>`: a tool crate that builds and passes
//! `plugins check` as generated, for plugin authors to start from.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

const CARGO_TOML: &str = include_str!("../../templates/tool/Cargo.toml");
const LIB_RS: &str = include_str!("../../templates/tool/lib.rs");
const PLUGIN_TOML: &str = include_str!("../../templates/tool/plugin.toml");

/// Writes the crate for plugin `name` into `dir/name`, depending on the
/// guest SDK at `sdk`.
pub fn run(name: &str, dir: &Path, sdk: &Path) -> anyhow::Result<PathBuf> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        bail!("plugin names are 1-64 characters of a-z, 0-9 and '-', starting with a letter");
    }
    let sdk = std::fs::canonicalize(sdk).with_context(|| {
        format!(
            "the guest SDK is not at {} (pass --sdk <path to plugins/sdk>)",
            sdk.display()
        )
    })?;
    let root = dir.join(name);
    if root.exists() {
        bail!("{} already exists", root.display());
    }
    let tool = name.replace('-', "_");
    let type_name: String = name
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{crate}}", &tool)
            .replace("{{tool}}", &tool)
            .replace("{{Type}}", &type_name)
            .replace("{{sdk}}", &sdk.display().to_string())
    };
    std::fs::create_dir_all(root.join("src"))?;
    std::fs::write(root.join("Cargo.toml"), fill(CARGO_TOML))?;
    std::fs::write(root.join("src/lib.rs"), fill(LIB_RS))?;
    std::fs::write(root.join("plugin.toml"), fill(PLUGIN_TOML))?;
    Ok(root)
}
