//! Plugins as OCI artifacts (docs/DEPLOY.md, "Plugins from a registry").
//!
//! A plugin is pushed in the CNCF wasm artifact layout (oci-wasm): one
//! `application/wasm` layer and an `application/vnd.wasm.config.v0+json`
//! config. Its wasmgate manifest travels as the annotation
//! [`MANIFEST_ANNOTATION`] of the image manifest. A signature
//! (`plugins sign`) is an artifact of its own whose `subject` is the
//! plugin's image manifest, so OCI 1.1 registries list it as a referrer;
//! it is also tagged `sha256-<digest>.sig`, which is how it is found, on any
//! registry.
//!
//! Pulling resolves a tag to a digest once and answers with the reference
//! pinned to it. Everything a registry sends is held to the upload limits
//! and checked against its digest; credentials are the operator's
//! ([`RegistryConfig`]), never a manifest's.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use oci_wasm::{
    WASM_LAYER_MEDIA_TYPE, WASM_MANIFEST_CONFIG_MEDIA_TYPE, WASM_MANIFEST_MEDIA_TYPE, WasmClient,
    WasmConfig,
};
use serde::Deserialize;

use crate::plugins::{
    MAX_COMPONENT_BYTES, Manifest, Pin, PluginFiles, Policy, RemotePlugins, sha256_hex,
};

/// How a reference to a registry is written where a path could be too.
pub const SCHEME: &str = "oci://";
/// The image manifest annotation holding the plugin's manifest: the TOML
/// in base64, since image manifests are written as canonical JSON, which
/// leaves a newline raw (and registries then refuse the manifest).
pub const MANIFEST_ANNOTATION: &str = "dev.wasmgate.plugin.manifest";
/// The artifact type of a signature artifact; its one layer has this media
/// type too, and holds the `.sig` file's text.
pub const SIGNATURE_ARTIFACT_TYPE: &str = "application/vnd.wasmgate.plugin.signature.v1";
const EMPTY_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// The largest plugin manifest and signature taken from a registry.
const MAX_MANIFEST_BYTES: usize = 64 * 1024;
const MAX_SIGNATURE_BYTES: u64 = 4 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("invalid reference {0:?}: write oci://REGISTRY/REPOSITORY:TAG or …@sha256:DIGEST")]
    Reference(String),
    #[error("{0} was not found in its registry")]
    NotFound(String),
    #[error("{reference} is not a wasmgate plugin: {reason}")]
    NotAPlugin { reference: String, reason: String },
    #[error("registry error for {reference}: {reason}")]
    Registry { reference: String, reason: String },
}

/// What the operator configures for registries: credentials per registry
/// (a Docker `config.json`'s `auths`, as `docker login` writes it) and the
/// registries spoken to over plain HTTP (a registry on loopback).
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    credentials: BTreeMap<String, (String, String)>,
    insecure: Vec<String>,
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    /// base64 of `user:password`.
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

impl RegistryConfig {
    /// Credentials from `auth_file` (a Docker `config.json`; none when
    /// `None`), plain HTTP for the `insecure` registries (`host:port`).
    pub fn load(auth_file: Option<&Path>, insecure: &[String]) -> anyhow::Result<RegistryConfig> {
        let mut credentials = BTreeMap::new();
        if let Some(path) = auth_file {
            let text = std::fs::read_to_string(path)
                .map_err(|err| anyhow::anyhow!("cannot read {}: {err}", path.display()))?;
            let config: DockerConfig = serde_json::from_str(&text).map_err(|err| {
                anyhow::anyhow!("{} is not a Docker config.json: {err}", path.display())
            })?;
            for (registry, auth) in config.auths {
                let pair = match (auth.auth, auth.username, auth.password) {
                    (_, Some(user), Some(password)) => (user, password),
                    (Some(encoded), _, _) => decode_basic(&encoded).ok_or_else(|| {
                        anyhow::anyhow!(
                            "{}: the auth of {registry} is not base64 of user:password",
                            path.display()
                        )
                    })?,
                    _ => anyhow::bail!("{}: {registry} has no credentials", path.display()),
                };
                credentials.insert(registry_key(&registry), pair);
            }
        }
        Ok(RegistryConfig {
            credentials,
            insecure: insecure
                .iter()
                .map(|r| r.trim().to_string())
                .filter(|r| !r.is_empty())
                .collect(),
        })
    }

    fn auth(&self, reference: &Reference) -> RegistryAuth {
        match self
            .credentials
            .get(&registry_key(reference.resolve_registry()))
        {
            Some((user, password)) => RegistryAuth::Basic(user.clone(), password.clone()),
            None => RegistryAuth::Anonymous,
        }
    }

    fn client(&self) -> WasmClient {
        WasmClient::new(Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(self.insecure.clone()),
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(60)),
            ..ClientConfig::default()
        }))
    }
}

fn decode_basic(encoded: &str) -> Option<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// `https://index.docker.io/v1/` and `docker.io` name the same registry.
fn registry_key(registry: &str) -> String {
    let host = registry
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        other => other.to_string(),
    }
}

/// `oci://REGISTRY/REPOSITORY:TAG` or `…@sha256:…` (the scheme optional on
/// the command line, required where a path could be meant).
pub fn parse_reference(text: &str) -> Result<Reference, OciError> {
    let bare = text.strip_prefix(SCHEME).unwrap_or(text);
    // A registry must be named: `docker.io/library/…` is never implied.
    if !bare
        .split('/')
        .next()
        .is_some_and(|host| host.contains(['.', ':']) || host == "localhost")
    {
        return Err(OciError::Reference(text.to_string()));
    }
    bare.parse::<Reference>()
        .map_err(|_| OciError::Reference(text.to_string()))
}

/// The reference as wasmgate writes it.
pub fn display(reference: &Reference) -> String {
    format!("{SCHEME}{}", reference.whole())
}

/// A plugin pulled from a registry.
#[derive(Debug)]
pub struct Pulled {
    /// The reference pinned to the image manifest's digest.
    pub pinned: String,
    pub manifest: Vec<u8>,
    pub wasm: Vec<u8>,
    /// The `.sig` text, when a signature artifact is tagged for it.
    pub signature: Option<Vec<u8>>,
}

/// Pulls the plugin at `reference` (a tag is resolved to the digest it
/// names now, and verified), with its signature if one is published.
pub async fn pull(config: &RegistryConfig, reference: &Reference) -> Result<Pulled, OciError> {
    let client = config.client();
    let auth = config.auth(reference);
    let shown = display(reference);
    let (manifest, digest) = client
        .pull_image_manifest(reference, &auth)
        .await
        .map_err(|err| registry_error(&shown, err))?;
    let not_a_plugin = |reason: String| OciError::NotAPlugin {
        reference: shown.clone(),
        reason,
    };
    if manifest.config.media_type != WASM_MANIFEST_CONFIG_MEDIA_TYPE {
        return Err(not_a_plugin(format!(
            "its config is {:?}, not {WASM_MANIFEST_CONFIG_MEDIA_TYPE}",
            manifest.config.media_type
        )));
    }
    let [layer] = manifest.layers.as_slice() else {
        return Err(not_a_plugin(format!(
            "it has {} layers; a component is exactly one",
            manifest.layers.len()
        )));
    };
    if layer.media_type != WASM_LAYER_MEDIA_TYPE {
        return Err(not_a_plugin(format!(
            "its layer is {:?}, not {WASM_LAYER_MEDIA_TYPE}",
            layer.media_type
        )));
    }
    let encoded = manifest
        .annotations
        .as_ref()
        .and_then(|a| a.get(MANIFEST_ANNOTATION))
        .ok_or_else(|| {
            not_a_plugin(format!(
                "it has no {MANIFEST_ANNOTATION} annotation (push it with `wasmgate plugins push`)"
            ))
        })?;
    let plugin_manifest = BASE64
        .decode(encoded)
        .ok()
        .filter(|bytes| bytes.len() <= MAX_MANIFEST_BYTES)
        .ok_or_else(|| {
            not_a_plugin(format!(
                "its {MANIFEST_ANNOTATION} annotation is not a manifest of at most 64 KiB in base64"
            ))
        })?;
    let pinned = reference.clone_with_digest(digest.clone());
    let wasm = pull_blob(&client, &pinned, layer, MAX_COMPONENT_BYTES as u64)
        .await
        .map_err(not_a_plugin)?;
    let signature = pull_signature(&client, &auth, &pinned, &digest).await?;
    Ok(Pulled {
        pinned: display(&Reference::with_digest(
            pinned.registry().to_string(),
            pinned.repository().to_string(),
            digest,
        )),
        manifest: plugin_manifest,
        wasm,
        signature,
    })
}

/// A blob, at most `limit` bytes, checked against its descriptor's digest.
async fn pull_blob(
    client: &Client,
    reference: &Reference,
    layer: &OciDescriptor,
    limit: u64,
) -> Result<Vec<u8>, String> {
    if layer.size < 0 || layer.size as u64 > limit {
        return Err(format!(
            "a layer of {} bytes is over the {limit}-byte limit",
            layer.size
        ));
    }
    let mut stream = client
        .pull_blob_stream(reference, layer)
        .await
        .map_err(|err| format!("cannot fetch its layer: {err}"))?
        .stream;
    let mut bytes = Vec::with_capacity(layer.size as usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|err| format!("cannot fetch its layer: {err}"))?;
        if (bytes.len() + chunk.len()) as u64 > limit {
            return Err(format!("its layer is over the {limit}-byte limit"));
        }
        bytes.extend_from_slice(&chunk);
    }
    let digest = format!("sha256:{}", sha256_hex(&bytes));
    if digest != layer.digest {
        return Err(format!(
            "its layer's content is {digest}, not the {} its manifest names",
            layer.digest
        ));
    }
    Ok(bytes)
}

/// The tag of the signature of the image manifest `digest`.
fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replace(':', "-"))
}

async fn pull_signature(
    client: &Client,
    auth: &RegistryAuth,
    pinned: &Reference,
    digest: &str,
) -> Result<Option<Vec<u8>>, OciError> {
    let tag = Reference::with_tag(
        pinned.registry().to_string(),
        pinned.repository().to_string(),
        signature_tag(digest),
    );
    let shown = display(&tag);
    let manifest = match client.pull_image_manifest(&tag, auth).await {
        Ok((manifest, _)) => manifest,
        Err(err) => {
            return match registry_error(&shown, err) {
                OciError::NotFound(_) => Ok(None),
                other => Err(other),
            };
        }
    };
    let bad = |reason: String| OciError::NotAPlugin {
        reference: shown.clone(),
        reason,
    };
    let [layer] = manifest.layers.as_slice() else {
        return Err(bad("a signature artifact has exactly one layer".into()));
    };
    if layer.media_type != SIGNATURE_ARTIFACT_TYPE {
        return Err(bad(format!(
            "its layer is {:?}, not {SIGNATURE_ARTIFACT_TYPE}",
            layer.media_type
        )));
    }
    pull_blob(client, &tag, layer, MAX_SIGNATURE_BYTES)
        .await
        .map(Some)
        .map_err(bad)
}

/// Pushes `wasm` with its plugin `manifest` to `reference`, and the
/// signature when given; answers the reference pinned to the digest.
pub async fn push(
    config: &RegistryConfig,
    reference: &Reference,
    wasm: Vec<u8>,
    manifest: &str,
    signature: Option<&[u8]>,
) -> anyhow::Result<String> {
    let client = config.client();
    let auth = config.auth(reference);
    let shown = display(reference);
    let (wasm_config, layer) = WasmConfig::from_raw_component(wasm, None)
        .map_err(|err| anyhow::anyhow!("not a component: {err:#}"))?;
    let annotations = BTreeMap::from([(MANIFEST_ANNOTATION.to_string(), BASE64.encode(manifest))]);
    client
        .push(reference, &auth, layer, wasm_config, Some(annotations))
        .await
        .map_err(|err| anyhow::anyhow!("pushing {shown}: {err:#}"))?;
    let (raw, digest) = client
        .pull_manifest_raw(reference, &auth, &[WASM_MANIFEST_MEDIA_TYPE])
        .await
        .map_err(|err| anyhow::anyhow!("reading back {shown}: {err}"))?;
    if let Some(signature) = signature {
        let subject = OciDescriptor {
            media_type: WASM_MANIFEST_MEDIA_TYPE.to_string(),
            digest: digest.clone(),
            size: raw.len() as i64,
            ..OciDescriptor::default()
        };
        push_signature(&client, &auth, reference, subject, signature).await?;
    }
    Ok(display(&Reference::with_digest(
        reference.registry().to_string(),
        reference.repository().to_string(),
        digest,
    )))
}

async fn push_signature(
    client: &Client,
    auth: &RegistryAuth,
    reference: &Reference,
    subject: OciDescriptor,
    signature: &[u8],
) -> anyhow::Result<()> {
    let tag = Reference::with_tag(
        reference.registry().to_string(),
        reference.repository().to_string(),
        signature_tag(&subject.digest),
    );
    let config = Config {
        data: b"{}".to_vec().into(),
        media_type: EMPTY_CONFIG_MEDIA_TYPE.to_string(),
        annotations: None,
    };
    let layers = [ImageLayer {
        data: signature.to_vec().into(),
        media_type: SIGNATURE_ARTIFACT_TYPE.to_string(),
        annotations: None,
    }];
    let mut manifest = OciImageManifest::build(&layers, &config, None);
    manifest.artifact_type = Some(SIGNATURE_ARTIFACT_TYPE.to_string());
    manifest.subject = Some(subject);
    client
        .push(&tag, &layers, config, auth, Some(manifest))
        .await
        .map_err(|err| anyhow::anyhow!("pushing the signature {}: {err:#}", display(&tag)))?;
    Ok(())
}

fn registry_error(reference: &str, err: OciDistributionError) -> OciError {
    let missing = match &err {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::NotFound
            )
        }),
        _ => false,
    };
    if missing {
        return OciError::NotFound(reference.to_string());
    }
    OciError::Registry {
        reference: reference.to_string(),
        reason: format!("{err}"),
    }
}

/// The policy's `oci` entries, pulled into the plugin directory by the
/// reload that first sees each reference (and again only when the policy
/// names another one).
pub struct PolicyInstalls {
    pub registries: Arc<RegistryConfig>,
}

#[async_trait::async_trait]
impl RemotePlugins for PolicyInstalls {
    async fn fetch(&self, policy: &Policy, dir: &Path) -> Vec<(String, String)> {
        let mut failed = Vec::new();
        for (name, entry) in &policy.plugins {
            let Some(requested) = &entry.oci else {
                continue;
            };
            let manifest_path = dir.join(format!("{name}.toml"));
            let here = PluginFiles::read(&manifest_path).ok();
            if here
                .and_then(|files| files.pin)
                .is_some_and(|pin| pin.requested == *requested)
            {
                continue;
            }
            match self.install(policy, name, requested, manifest_path).await {
                Ok(pinned) => {
                    tracing::info!(plugin = %name, reference = %requested, %pinned, "plugin pulled for the policy")
                }
                Err(reason) => {
                    tracing::error!(plugin = %name, reference = %requested, error = %reason, "cannot install a plugin the policy names");
                    failed.push((name.clone(), reason));
                }
            }
        }
        failed
    }
}

impl PolicyInstalls {
    /// Pulls `requested` and writes it as plugin `name` if it is that
    /// plugin and signed as the policy requires; the pinned reference.
    async fn install(
        &self,
        policy: &Policy,
        name: &str,
        requested: &str,
        manifest_path: std::path::PathBuf,
    ) -> Result<String, String> {
        let reference = parse_reference(requested).map_err(|err| err.to_string())?;
        let pulled = pull(&self.registries, &reference)
            .await
            .map_err(|err| err.to_string())?;
        let manifest = Manifest::parse(&String::from_utf8_lossy(&pulled.manifest))
            .map_err(|err| format!("{requested} has an invalid manifest: {err}"))?;
        if manifest.name != name {
            return Err(format!(
                "{requested} is the plugin {:?}, not {name:?}",
                manifest.name
            ));
        }
        let files = PluginFiles {
            manifest_path,
            manifest: pulled.manifest,
            wasm: pulled.wasm,
            signature: pulled.signature,
            pin: Some(Pin {
                requested: requested.to_string(),
                pinned: pulled.pinned.clone(),
            }),
        };
        // Refused before it is written: what is in the directory stays.
        policy.check_signature(
            name,
            &sha256_hex(&files.wasm),
            files.signature_text().as_deref(),
        )?;
        files
            .write()
            .map_err(|err| format!("cannot write {}: {err}", files.manifest_path.display()))?;
        Ok(pulled.pinned)
    }
}
