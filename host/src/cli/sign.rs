//! `wasmgate plugins keygen | sign | verify`: the signing side of
//! `require_signature` (the formats are in `plugins::signature`).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, bail};

use crate::plugins::sha256_hex;
use crate::plugins::signature::{self, PublicKey};

/// Writes a new secret key to `out` (readable by its owner only, and never
/// over an existing file) and prints the public key.
pub fn keygen(out: &Path) -> anyhow::Result<()> {
    let (secret, public) = signature::keygen();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("creating {}", out.display()))?;
    writeln!(file, "{secret}")?;
    println!("{public}");
    Ok(())
}

/// Signs `component` with the secret key in `key`, writing `<name>.sig`.
pub fn sign(key: &Path, component: &Path) -> anyhow::Result<()> {
    let secret =
        std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?;
    let wasm =
        std::fs::read(component).with_context(|| format!("reading {}", component.display()))?;
    let signed = signature::sign(&secret, &wasm).map_err(anyhow::Error::msg)?;
    let out = signature_path(component);
    std::fs::write(&out, format!("{signed}\n"))
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "signed {} (sha256 {}) with {}: {}",
        component.display(),
        sha256_hex(&wasm),
        signature::public_of(&secret).map_err(anyhow::Error::msg)?,
        out.display()
    );
    Ok(())
}

/// Checks `<name>.sig` beside `component` against the public key `key`.
pub fn verify(key: &str, component: &Path) -> anyhow::Result<()> {
    let key = PublicKey::parse(key).map_err(anyhow::Error::msg)?;
    let wasm =
        std::fs::read(component).with_context(|| format!("reading {}", component.display()))?;
    let path = signature_path(component);
    let signed =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let sha256 = sha256_hex(&wasm);
    if !key.verifies(&sha256, &signed) {
        bail!(
            "{} is not signed by this key (sha256 {sha256}): tampered with, or signed by another key",
            component.display()
        );
    }
    println!("verified: {} (sha256 {sha256})", component.display());
    Ok(())
}

fn signature_path(component: &Path) -> std::path::PathBuf {
    component.with_extension(crate::plugins::SIGNATURE_EXTENSION)
}
