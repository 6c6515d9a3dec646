//! `wasmgate plugins push FILE.wasm REGISTRY/REPOSITORY:TAG`: a plugin to an
//! OCI registry (the layout is `oci`'s), with its signature if it has one.

use std::path::Path;

use anyhow::Context;

use crate::config::RegistryArgs;
use crate::oci;
use crate::plugins::{Manifest, SIGNATURE_EXTENSION};

pub async fn push(file: &Path, reference: &str, registry: &RegistryArgs) -> anyhow::Result<()> {
    let reference = oci::parse_reference(reference)?;
    let wasm = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let manifest_path = file.with_extension("toml");
    let manifest = std::fs::read_to_string(&manifest_path).with_context(|| {
        format!(
            "reading {} (a plugin is pushed with its manifest)",
            manifest_path.display()
        )
    })?;
    Manifest::parse(&manifest)
        .map_err(|err| anyhow::anyhow!("{} is invalid: {err}", manifest_path.display()))?;
    let signature_path = file.with_extension(SIGNATURE_EXTENSION);
    let signature = match std::fs::read(&signature_path) {
        Ok(bytes) => Some(bytes),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => {
            return Err(err).with_context(|| format!("reading {}", signature_path.display()));
        }
    };
    let pinned = oci::push(
        &registry.load()?,
        &reference,
        wasm,
        &manifest,
        signature.as_deref(),
    )
    .await?;
    let signed = if signature.is_some() {
        "with its signature"
    } else {
        "unsigned"
    };
    println!("pushed {} ({signed}): {pinned}", file.display());
    Ok(())
}
