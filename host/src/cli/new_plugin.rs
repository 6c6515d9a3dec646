//! `wasmgate plugins new <name> [--capability kv|http]`: a tool crate that
//! builds and passes `plugins check` as generated, for plugin authors to
//! start from; with a capability, the tool already uses it.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

const CARGO_TOML: &str = include_str!("../../templates/tool/Cargo.toml");
const LIB_RS: &str = include_str!("../../templates/tool/lib.rs");
const KV_LIB_RS: &str = include_str!("../../templates/tool/kv_lib.rs");
const HTTP_LIB_RS: &str = include_str!("../../templates/tool/http_lib.rs");
const PLUGIN_TOML: &str = include_str!("../../templates/tool/plugin.toml");

/// What a generated tool starts out using.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Template {
    /// A greeting: no capability but `log`.
    Plain,
    /// Remembers a value per user with `kv`.
    Kv,
    /// Fetches a URL with `http`.
    Http,
}

/// Writes the crate for plugin `name` into `dir/name`, depending on the
/// guest SDK at `sdk`.
pub fn run(name: &str, dir: &Path, sdk: &Path, template: Template) -> anyhow::Result<PathBuf> {
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
    let (lib, capabilities, hosts) = match template {
        Template::Plain => (LIB_RS, r#"["log"]"#, ""),
        Template::Kv => (KV_LIB_RS, r#"["kv"]"#, ""),
        Template::Http => (
            HTTP_LIB_RS,
            r#"["http"]"#,
            "# The hosts its requests need (host:port); the operator grants them.\nhosts = [\"example.com:443\"]\n",
        ),
    };
    std::fs::write(root.join("src/lib.rs"), fill(lib))?;
    std::fs::write(
        root.join("plugin.toml"),
        fill(PLUGIN_TOML)
            .replace("{{capabilities}}", capabilities)
            .replace("{{hosts}}\n", hosts),
    )?;
    Ok(root)
}
