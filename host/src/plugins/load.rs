//! Loading a plugin: from bytes and a manifest to a validated [`Plugin`].
//!
//! Every check happens here, before a plugin can serve a call: the file is a
//! component, it implements the world its manifest names, it imports nothing
//! it was not granted, it links, and its tool specs are well-formed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::bindings::{
    self, CONFIG_IMPORT, KV_IMPORT, LOG_IMPORT, PROVIDER_EXPORT, TASKS_IMPORT, TOOL_EXPORT,
    TYPES_IMPORT,
};
use super::capabilities::Bound;
use super::error::LoadError;
use super::instances::Instances;
use super::manifest::{Capability, Manifest, PluginKind};
use super::runtime::{Plugin, PluginInstances, Runtime, ToolSpec};
use super::state::CallState;

/// Bounds on what a plugin's `list-tools` may offer: every tool is sent to
/// the model on every turn, so one plugin's specs must never crowd out the
/// others' or the provider's memory.
pub const MAX_TOOLS_PER_PLUGIN: usize = 32;
pub const MAX_DESCRIPTION_BYTES: usize = 4 * 1024;
pub const MAX_SCHEMA_BYTES: usize = 16 * 1024;
pub const MAX_SPECS_BYTES: usize = 64 * 1024;
/// The host's own tool (`agent::ask`): no plugin may offer one by its name.
pub const ASK_USER: &str = "ask_user";

/// What a component is, read from its type alone.
#[derive(Debug)]
pub struct Inspection {
    pub kind: PluginKind,
    /// The wasmgate capabilities it imports.
    pub capabilities: Vec<Capability>,
}

impl Runtime {
    /// Loads `<dir>/<stem>.toml` and the `<dir>/<stem>.wasm` beside it.
    pub async fn load_file(&self, manifest_path: &Path) -> Result<Plugin, LoadError> {
        let files = PluginFiles::read(manifest_path)?;
        self.load_files(&files).await
    }

    /// Loads a plugin from files already read.
    pub async fn load_files(&self, files: &PluginFiles) -> Result<Plugin, LoadError> {
        let manifest =
            Manifest::parse(&String::from_utf8_lossy(&files.manifest)).map_err(|message| {
                LoadError::Manifest {
                    path: files.manifest_path.display().to_string(),
                    message,
                }
            })?;
        let mut plugin = self.load(manifest, &files.wasm).await?;
        plugin.origin = Some(files.manifest_path.clone());
        plugin.source = files.fingerprint();
        plugin.signature = files.signature_text();
        plugin.pin = files.pin.clone();
        Ok(plugin)
    }

    /// Validates and pre-instantiates a component under `manifest`.
    pub async fn load(&self, manifest: Manifest, wasm: &[u8]) -> Result<Plugin, LoadError> {
        let sha256 = sha256_hex(wasm);
        let (component, fresh) = self.compile(&sha256, wasm).await?;
        let inspection = self.inspect_component(&component)?;
        if inspection.kind != manifest.kind {
            return Err(LoadError::KindMismatch {
                manifest: manifest.kind.as_str(),
                component: inspection.kind.as_str(),
            });
        }
        if let Some(&missing) = inspection
            .capabilities
            .iter()
            .find(|&&c| !manifest.grants(c))
        {
            return Err(LoadError::NotGranted {
                import: capability_import(missing).to_string(),
                capability: missing.as_str(),
            });
        }

        let linker = self
            .linker(&manifest)
            .map_err(|err| LoadError::Link(err.to_string()))?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(|err| LoadError::Link(format!("{err:#}")))?;
        let link_error = |err: wasmtime::Error| LoadError::Link(format!("{err:#}"));
        let name: Arc<str> = Arc::from(manifest.name.as_str());
        let limits = &manifest.limits;
        let instances = match manifest.kind {
            PluginKind::Tool => PluginInstances::Tool(Instances::new(
                bindings::tool::TaskToolPre::new(instance_pre).map_err(link_error)?,
                &self.engine,
                name.clone(),
                limits,
                &self.budget,
            )?),
            PluginKind::Provider => PluginInstances::Provider(Instances::new(
                bindings::provider::ProviderPluginPre::new(instance_pre).map_err(link_error)?,
                &self.engine,
                name.clone(),
                limits,
                &self.budget,
            )?),
        };

        let mut plugin = Plugin {
            name,
            manifest,
            sha256,
            tools: Vec::new(),
            loaded_at: SystemTime::now(),
            origin: None,
            source: String::new(),
            signature: None,
            pin: None,
            grant: Arc::default(),
            stats: Default::default(),
            instances,
        };
        if let PluginInstances::Tool(instances) = &plugin.instances {
            plugin.tools = self.list_tools(instances).await?;
        }
        // The manifest may describe only tools the component offers.
        if let Some(unknown) = plugin
            .manifest
            .tools
            .keys()
            .find(|name| !plugin.tools.iter().any(|tool| &tool.name == *name))
        {
            return Err(LoadError::InvalidToolSpec {
                tool: unknown.clone(),
                message: "the manifest's [tools] names it, but the component does not offer it"
                    .into(),
            });
        }
        if fresh {
            self.cache.store(&plugin.sha256, &component);
        }
        Ok(plugin)
    }

    /// Reads what kind of plugin `wasm` is and what it imports, without a
    /// manifest (for `wasmgate plugins check`).
    pub async fn inspect(&self, wasm: &[u8]) -> Result<Inspection, LoadError> {
        let (component, _) = self.compile(&sha256_hex(wasm), wasm).await?;
        self.inspect_component(&component)
    }

    /// The compiled component, from the cache or compiled now (`true`:
    /// off the serving path and under the compile budget, see `compile.rs`).
    async fn compile(&self, sha256: &str, wasm: &[u8]) -> Result<(Component, bool), LoadError> {
        match wasm.get(..8) {
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => return Err(LoadError::CoreModule),
            Some([0, b'a', b's', b'm', ..]) => {}
            _ => return Err(LoadError::NotWasm),
        }
        if let Some(component) = self.cache.lookup(&self.engine, sha256) {
            return Ok((component, false));
        }
        let component = self
            .compiler
            .compile(&self.engine, self.allocator(), wasm)
            .await?;
        Ok((component, true))
    }

    fn inspect_component(&self, component: &Component) -> Result<Inspection, LoadError> {
        let ty = component.component_type();
        let exports: Vec<&str> = ty.exports(&self.engine).map(|(name, _)| name).collect();
        let kind = match (
            exports.contains(&TOOL_EXPORT),
            exports.contains(&PROVIDER_EXPORT),
        ) {
            (true, false) => PluginKind::Tool,
            (false, true) => PluginKind::Provider,
            _ => {
                let exports = if exports.is_empty() {
                    "nothing".to_string()
                } else {
                    exports.join(", ")
                };
                return Err(LoadError::WrongWorld { exports });
            }
        };

        let mut capabilities = Vec::new();
        for (import, _) in ty.imports(&self.engine) {
            match import {
                TASKS_IMPORT if kind == PluginKind::Tool => capabilities.push(Capability::Tasks),
                KV_IMPORT if kind == PluginKind::Tool => capabilities.push(Capability::Kv),
                CONFIG_IMPORT if kind == PluginKind::Tool => capabilities.push(Capability::Config),
                // `types` comes with `outgoing-handler`; either means `http`.
                _ if kind == PluginKind::Tool && import.starts_with("wasi:http/") => {
                    if !capabilities.contains(&Capability::Http) {
                        capabilities.push(Capability::Http);
                    }
                }
                LOG_IMPORT => capabilities.push(Capability::Log),
                TYPES_IMPORT => {}
                // WASI is linked for every plugin with nothing granted.
                _ if import.starts_with("wasi:") => {}
                _ => return Err(LoadError::UnknownImport(import.to_string())),
            }
        }
        Ok(Inspection { kind, capabilities })
    }

    async fn list_tools(
        &self,
        instances: &Instances<bindings::tool::TaskToolPre<CallState>>,
    ) -> Result<Vec<ToolSpec>, LoadError> {
        // list-tools runs for nobody: no user's tasks or storage.
        let list = async {
            let (mut call, instance) = instances.take(Bound::nobody()).await?;
            call.run(async |store| instance.wasmgate_plugin_tool().call_list_tools(store).await)
                .await
        };
        let specs = list
            .await
            .map_err(|err| LoadError::ListTools(err.to_string()))?;

        if specs.len() > MAX_TOOLS_PER_PLUGIN {
            return Err(LoadError::ListTools(format!(
                "the component offers {} tools; a plugin may offer {MAX_TOOLS_PER_PLUGIN}",
                specs.len()
            )));
        }
        let total: usize = specs
            .iter()
            .map(|s| s.name.len() + s.description.len() + s.input_schema.len())
            .sum();
        if total > MAX_SPECS_BYTES {
            return Err(LoadError::ListTools(format!(
                "the tool specs take {total} bytes; a plugin's may take {MAX_SPECS_BYTES}"
            )));
        }
        let mut tools: Vec<ToolSpec> = Vec::with_capacity(specs.len());
        for spec in specs {
            let tool = check_tool_spec(spec)?;
            if tools.iter().any(|t| t.name == tool.name) {
                return Err(LoadError::InvalidToolSpec {
                    tool: tool.name,
                    message: "listed twice".into(),
                });
            }
            tools.push(tool);
        }
        if tools.is_empty() {
            return Err(LoadError::ListTools("the component offers no tools".into()));
        }
        Ok(tools)
    }
}

fn check_tool_spec(
    spec: bindings::tool::exports::wasmgate::plugin::tool::ToolSpec,
) -> Result<ToolSpec, LoadError> {
    let invalid = |message: &str| LoadError::InvalidToolSpec {
        tool: spec.name.clone(),
        message: message.to_string(),
    };
    let name_ok = spec.name.len() <= 64
        && spec.name.starts_with(|c: char| c.is_ascii_lowercase())
        && spec
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !name_ok {
        return Err(invalid(
            "names are 1-64 characters of a-z, 0-9 and '_', starting with a letter",
        ));
    }
    if spec.name == ASK_USER {
        return Err(invalid("the name is the host's own tool's"));
    }
    if spec.description.trim().is_empty() {
        return Err(invalid("the description is empty"));
    }
    if spec.description.len() > MAX_DESCRIPTION_BYTES {
        return Err(invalid(&format!(
            "the description is over {MAX_DESCRIPTION_BYTES} bytes"
        )));
    }
    if spec.input_schema.len() > MAX_SCHEMA_BYTES {
        return Err(invalid(&format!(
            "the input schema is over {MAX_SCHEMA_BYTES} bytes"
        )));
    }
    let schema: serde_json::Value = serde_json::from_str(&spec.input_schema)
        .map_err(|err| invalid(&format!("the input schema is not JSON: {err}")))?;
    if schema.get("type").and_then(|t| t.as_str()) != Some("object") {
        return Err(invalid(
            "the input schema must be an object schema ({\"type\":\"object\", ...})",
        ));
    }
    Ok(ToolSpec {
        input_schema_bytes: spec.input_schema.len(),
        name: spec.name,
        description: spec.description,
        input_schema: schema,
        scope: None,
    })
}

fn capability_import(capability: Capability) -> &'static str {
    match capability {
        Capability::Log => LOG_IMPORT,
        Capability::Tasks => TASKS_IMPORT,
        Capability::Kv => KV_IMPORT,
        Capability::Config => CONFIG_IMPORT,
        Capability::Http => "wasi:http/outgoing-handler",
    }
}

/// A plugin's files as read from its directory: the manifest, the
/// component, the component's signature if it has one, and where it came
/// from when it was pulled from a registry.
pub struct PluginFiles {
    pub manifest_path: PathBuf,
    pub manifest: Vec<u8>,
    pub wasm: Vec<u8>,
    /// `<name>.sig` (see [`super::signature`]).
    pub signature: Option<Vec<u8>>,
    /// `<name>.oci`, for a plugin installed from an OCI registry.
    pub pin: Option<Pin>,
}

/// Where a plugin installed from an OCI registry came from: the reference
/// asked for (a tag, perhaps) and the digest it resolved to when pulled.
/// A policy's `oci` entry is pulled again only when it names another
/// reference, so a tag that moves does not move what serves.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pin {
    pub requested: String,
    pub pinned: String,
}

/// The largest component an upload or a registry may bring.
pub const MAX_COMPONENT_BYTES: usize = 64 * 1024 * 1024;

/// `<name>.oci`: a pulled plugin's [`Pin`], as JSON.
pub const PIN_EXTENSION: &str = "oci";

impl PluginFiles {
    pub fn read(manifest_path: &Path) -> Result<PluginFiles, LoadError> {
        let pin_path = manifest_path.with_extension(PIN_EXTENSION);
        let pin = read_if_there(&pin_path)?
            .map(|bytes| serde_json::from_slice(&bytes))
            .transpose()
            .map_err(|err| LoadError::Io {
                path: pin_path.display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, err),
            })?;
        Ok(PluginFiles {
            manifest_path: manifest_path.to_path_buf(),
            manifest: read(manifest_path)?,
            wasm: read(&manifest_path.with_extension("wasm"))?,
            signature: read_if_there(&manifest_path.with_extension(SIGNATURE_EXTENSION))?,
            pin,
        })
    }

    /// Identifies the files' content: a reload reuses a loaded plugin whose
    /// files have not changed instead of compiling it again.
    pub fn fingerprint(&self) -> String {
        let signature = self
            .signature
            .as_deref()
            .map(sha256_hex)
            .unwrap_or_default();
        let pinned = self.pin.as_ref().map(|pin| pin.pinned.as_str());
        format!(
            "{}:{}:{signature}:{}",
            sha256_hex(&self.wasm),
            sha256_hex(&self.manifest),
            pinned.unwrap_or_default()
        )
    }

    /// The signature's text, if there is one.
    pub fn signature_text(&self) -> Option<String> {
        self.signature
            .as_deref()
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
    }

    /// Writes the files into place, each atomically (a temporary file, then
    /// a rename), the manifest last: a reload that sees the new manifest
    /// finds the component (and signature) it describes. A plugin without a
    /// signature (or pin) leaves none of an earlier version's behind.
    pub fn write(&self) -> std::io::Result<()> {
        let pin = self
            .pin
            .as_ref()
            .map(|pin| serde_json::to_vec(pin).expect("a pin serialises"));
        for (extension, bytes) in [
            (SIGNATURE_EXTENSION, &self.signature),
            (PIN_EXTENSION, &pin),
        ] {
            let path = self.manifest_path.with_extension(extension);
            match bytes {
                Some(bytes) => write_atomically(&path, bytes)?,
                None => remove_if_there(&path)?,
            }
        }
        write_atomically(&self.manifest_path.with_extension("wasm"), &self.wasm)?;
        write_atomically(&self.manifest_path, &self.manifest)
    }

    /// Removes the files (the manifest first, which is what a reload looks for).
    pub fn remove(manifest_path: &Path) -> std::io::Result<()> {
        std::fs::remove_file(manifest_path)?;
        remove_if_there(&manifest_path.with_extension("wasm"))?;
        remove_if_there(&manifest_path.with_extension(SIGNATURE_EXTENSION))?;
        remove_if_there(&manifest_path.with_extension(PIN_EXTENSION))
    }
}

/// `<name>.sig`: the component's signature, beside it.
pub const SIGNATURE_EXTENSION: &str = "sig";

fn remove_if_there(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("upload-{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn read_if_there(path: &Path) -> Result<Option<Vec<u8>>, LoadError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LoadError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Io {
        path: path.display().to_string(),
        source,
    })
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
