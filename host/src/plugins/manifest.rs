//! The plugin manifest: the TOML file beside each component that says what
//! the plugin is and what it may do.
//!
//! Parsing is strict on purpose (unknown keys and unknown capabilities fail
//! the load): a typo in a grant or a limit must not silently become a default.

use std::time::Duration;

use serde::Deserialize;

/// `<name>.toml`, beside `<name>.wasm` in the plugin directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Unique in the plugin directory: `[a-z0-9-]`, 1-64 characters.
    pub name: String,
    /// Free-form, shown to operators (semver by convention).
    pub version: String,
    /// Which world the component must implement.
    pub kind: PluginKind,
    /// Host interfaces the component may import beyond WASI.
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    #[serde(default)]
    pub limits: Limits,
    /// Where a provider's HTTP requests go; absent for providers that need
    /// no network (like `rules`).
    pub provider: Option<ProviderEndpoint>,
}

/// The one place a provider plugin's requests may go, and the key the host
/// adds to them. The plugin never sees either: it describes a request by
/// path, and the host joins it to this base URL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderEndpoint {
    /// e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// An environment variable that, when set, replaces `base_url`
    /// (e.g. `OPENAI_BASE_URL`, as the OpenAI SDKs read it).
    pub base_url_env: Option<String>,
    /// The environment variable holding the API key (e.g. `OPENAI_API_KEY`).
    pub api_key_env: Option<String>,
}

impl ProviderEndpoint {
    /// The base URL in effect: the env override if set, else `base_url`,
    /// without a trailing slash.
    pub fn resolved_base_url(&self) -> String {
        let url = self
            .base_url_env
            .as_deref()
            .and_then(|name| std::env::var(name).ok())
            .filter(|url| !url.trim().is_empty())
            .unwrap_or_else(|| self.base_url.clone());
        url.trim().trim_end_matches('/').to_string()
    }

    /// The API key, read from its environment variable at each use.
    pub fn api_key(&self) -> Option<String> {
        self.api_key_env
            .as_deref()
            .and_then(|name| std::env::var(name).ok())
            .filter(|key| !key.is_empty())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    /// Exports `wasmgate:plugin/tool` (world `task-tool`).
    Tool,
    /// Exports `wasmgate:plugin/provider` (world `provider-plugin`).
    Provider,
}

impl PluginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Tool => "tool",
            PluginKind::Provider => "provider",
        }
    }
}

/// A host interface a plugin may import. Anything not listed here is an
/// unknown capability and fails the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// `wasmgate:plugin/log`. Granted to every plugin; listing it is allowed.
    Log,
    /// `wasmgate:plugin/tasks`, bound to the calling user.
    Tasks,
}

/// Per-plugin resource limits. Every field has a default, and every default
/// is deliberately small: a plugin that needs more says so in its manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear memory per instance, in MiB.
    pub memory_mib: u32,
    /// Wall-clock time per call (and per instantiation), in milliseconds. A
    /// call waiting for a concurrency slot waits at most this long too.
    pub timeout_ms: u64,
    /// Instances of this plugin running at once; further calls wait for a
    /// slot (within their deadline).
    pub max_concurrency: u32,
    /// Largest result a call may return, in bytes.
    pub max_output_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mib: 32,
            timeout_ms: 2_000,
            max_concurrency: 64,
            max_output_bytes: 256 * 1024,
        }
    }
}

impl Limits {
    pub fn memory_bytes(&self) -> usize {
        self.memory_mib as usize * 1024 * 1024
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// The largest values a manifest may ask for. They bound what one plugin can
/// take from the host whatever its manifest says.
pub const MAX_MEMORY_MIB: u32 = 512;
pub const MAX_TIMEOUT_MS: u64 = 60_000;
pub const MAX_CONCURRENCY: u32 = 256;
pub const MAX_OUTPUT_BYTES: u64 = 16 * 1024 * 1024;

impl Manifest {
    /// Parses and checks a manifest.
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let manifest: Manifest = toml::from_str(text).map_err(|err| err.to_string())?;
        manifest.check()?;
        Ok(manifest)
    }

    fn check(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            return Err(format!(
                "name {:?} must be 1-64 characters of a-z, 0-9 and '-'",
                self.name
            ));
        }
        if self.version.trim().is_empty() {
            return Err("version must not be empty".into());
        }
        if self.kind == PluginKind::Provider && self.capabilities.contains(&Capability::Tasks) {
            return Err("a provider may not be granted the tasks capability".into());
        }
        if let Some(endpoint) = &self.provider {
            if self.kind != PluginKind::Provider {
                return Err("only a provider may have a [provider] section".into());
            }
            let url = &endpoint.base_url;
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(format!("provider.base_url {url:?} must be an http(s) URL"));
            }
        }
        let limits = &self.limits;
        check_range(
            "limits.memory_mib",
            limits.memory_mib.into(),
            1,
            MAX_MEMORY_MIB.into(),
        )?;
        check_range("limits.timeout_ms", limits.timeout_ms, 1, MAX_TIMEOUT_MS)?;
        check_range(
            "limits.max_concurrency",
            limits.max_concurrency.into(),
            1,
            MAX_CONCURRENCY.into(),
        )?;
        check_range(
            "limits.max_output_bytes",
            limits.max_output_bytes,
            1,
            MAX_OUTPUT_BYTES,
        )?;
        Ok(())
    }

    pub fn grants(&self, capability: Capability) -> bool {
        capability == Capability::Log || self.capabilities.contains(&capability)
    }
}

fn check_range(field: &str, value: u64, min: u64, max: u64) -> Result<(), String> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!("{field} = {value} is outside {min}..={max}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Result<(), &str>) {
        match (Manifest::parse(text), expected) {
            (Ok(_), Ok(())) => {}
            (Err(err), Err(needle)) => assert!(err.contains(needle), "{err:?} lacks {needle:?}"),
            (got, want) => panic!("{text}\ngot {got:?}, want {want:?}"),
        }
    }

    const BASE: &str = "name = \"add-task\"\nversion = \"1.0.0\"\nkind = \"tool\"\n";

    #[test]
    fn accepts_a_minimal_manifest_with_defaults() {
        let manifest = Manifest::parse(BASE).unwrap();
        assert_eq!(manifest.limits.memory_mib, 32);
        assert!(manifest.grants(Capability::Log));
        assert!(!manifest.grants(Capability::Tasks));
    }

    #[test]
    fn rejects_what_it_does_not_understand() {
        check(&format!("{BASE}capabilities = [\"tasks\"]"), Ok(()));
        check(
            &format!("{BASE}capabilities = [\"network\"]"),
            Err("unknown variant `network`"),
        );
        check(
            &format!("{BASE}colour = \"blue\""),
            Err("unknown field `colour`"),
        );
        check(
            &format!("{BASE}[limits]\nmemory = 3"),
            Err("unknown field `memory`"),
        );
        check(
            &format!("{BASE}[limits]\nmemory_mib = 8192"),
            Err("limits.memory_mib"),
        );
        check(
            &format!("{BASE}[limits]\ntimeout_ms = 0"),
            Err("limits.timeout_ms"),
        );
        check(
            "name = \"Add Task\"\nversion = \"1\"\nkind = \"tool\"",
            Err("name"),
        );
        check(
            "name = \"x\"\nversion = \"1\"\nkind = \"gadget\"",
            Err("unknown variant `gadget`"),
        );
        check(
            "name = \"x\"\nkind = \"tool\"",
            Err("missing field `version`"),
        );
        check(
            "name = \"x\"\nversion = \"1\"\nkind = \"provider\"\ncapabilities = [\"tasks\"]",
            Err("provider may not"),
        );
    }
}
