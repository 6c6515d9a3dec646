//! `wasmgate plugins grant NAME`: the operator grants a plugin what its
//! manifest asks for, in the policy file.

use std::path::Path;

use anyhow::Context;

use crate::plugins::{Manifest, PolicySource};

pub fn run(name: &str, plugins: &Path, policy: Option<&Path>) -> anyhow::Result<()> {
    let manifest_path = plugins.join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let manifest = Manifest::parse(&text)
        .map_err(|err| anyhow::anyhow!("invalid manifest {}: {err}", manifest_path.display()))?;
    let source = match policy {
        Some(path) => PolicySource {
            path: path.to_path_buf(),
            ..PolicySource::in_dir(plugins)
        },
        None => PolicySource::in_dir(plugins),
    };
    let entry = source.grant_all(&manifest).map_err(anyhow::Error::msg)?;
    println!("granted {name} in {}:", source.path.display());
    print!(
        "{}",
        toml::to_string(&entry).expect("a policy entry always serialises")
    );
    for (secret, variable) in &entry.secrets {
        println!("# secret {secret} is read from ${variable}");
    }
    Ok(())
}
