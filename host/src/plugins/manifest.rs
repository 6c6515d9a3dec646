//! The plugin manifest: the TOML file beside each component that says what
//! the plugin is and what it may do.
//!
//! Parsing is strict on purpose (unknown keys and unknown capabilities fail
//! the load): a typo in a grant or a limit must not silently become a default.

use std::collections::BTreeMap;
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
    /// Host interfaces the component asks to import beyond WASI.
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// `host:port` pairs its requests need to reach (a provider's base URL
    /// host among them). Asked for here, granted by the operator's policy.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Names of the secrets it needs the host to add to its requests (e.g.
    /// `api_key`). Which environment variable backs a name is the
    /// operator's choice, never the manifest's.
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub limits: Limits,
    /// Where a provider's HTTP requests go; absent for providers that need
    /// no network (like `rules`).
    pub provider: Option<ProviderEndpoint>,
    /// What the author says about each tool, by tool name.
    #[serde(default)]
    pub tools: BTreeMap<String, ToolManifest>,
}

/// `[tools.<name>]`: one tool as its author describes it to the operator.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolManifest {
    /// The OAuth scope a token needs to see and call it (e.g. `tasks:read`);
    /// the policy's `scopes` may change it. A tool without one serves only
    /// tokens without scope restrictions.
    pub scope: Option<String>,
}

/// Where a provider plugin's requests go, and which of its secrets the host
/// adds to them. The plugin never sees the secret: it describes a request
/// by path, and the host joins it to this base URL (or the operator's
/// override, see the policy's `base_url_env`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderEndpoint {
    /// e.g. `https://api.openai.com/v1`; its `host:port` must be among the
    /// manifest's `hosts`.
    pub base_url: String,
    /// The secret (one of the manifest's `secrets`) the host sends as
    /// `Authorization: Bearer …`, or in `api_key_header`.
    pub api_key_secret: Option<String>,
    /// The header that carries the secret as it is (e.g. `x-api-key`, as
    /// Anthropic's API takes it) instead of `Authorization: Bearer …`.
    /// The host owns it: a header of that name from the plugin is dropped.
    #[serde(default)]
    pub api_key_header: Option<String>,
}

/// Headers a provider's secret may not ride in: the connection's own, and
/// those whose meaning is not a credential.
const NOT_FOR_SECRETS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "cookie",
    "accept",
    "user-agent",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    /// Exports `wasmgate:plugin/tool` (world `task-tool`).
    Tool,
    /// Exports `wasmgate:plugin/provider` (world `provider-plugin`).
    Provider,
}

/// Names no plugin may take: files of the operator's in the plugin directory.
const RESERVED_NAMES: &[&str] = &["policy"];

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// `wasmgate:plugin/log`. Granted to every plugin; listing it is allowed.
    Log,
    /// `wasmgate:plugin/tasks`, bound to the calling user.
    Tasks,
    /// `wasmgate:plugin/kv`, storage bound to the plugin and the calling user.
    Kv,
    /// `wasmgate:plugin/config`, the operator's settings for the plugin.
    Config,
    /// `wasi:http/outgoing-handler`, to the hosts the policy grants.
    Http,
}

impl Capability {
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Log => "log",
            Capability::Tasks => "tasks",
            Capability::Kv => "kv",
            Capability::Config => "config",
            Capability::Http => "http",
        }
    }
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
        if RESERVED_NAMES.contains(&self.name.as_str()) {
            return Err(format!("the name {:?} is reserved", self.name));
        }
        if self.version.trim().is_empty() {
            return Err("version must not be empty".into());
        }
        // A provider acts for no user: user-bound capabilities mean nothing to it.
        for capability in [
            Capability::Tasks,
            Capability::Kv,
            Capability::Config,
            Capability::Http,
        ] {
            if self.kind == PluginKind::Provider && self.capabilities.contains(&capability) {
                return Err(format!(
                    "a provider may not be granted the {} capability",
                    capability.as_str()
                ));
            }
        }
        for host in &self.hosts {
            normalize_host(host).map_err(|err| format!("hosts: {err}"))?;
        }
        for secret in &self.secrets {
            let ok = !secret.is_empty()
                && secret.len() <= 64
                && secret
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !ok {
                return Err(format!(
                    "secret name {secret:?} must be 1-64 characters of a-z, 0-9 and '_'"
                ));
            }
        }
        if self.kind == PluginKind::Provider && !self.tools.is_empty() {
            return Err("a provider has no tools to describe in [tools]".into());
        }
        for (tool, described) in &self.tools {
            if let Some(scope) = &described.scope {
                check_scope(scope).map_err(|err| format!("tools.{tool}.scope: {err}"))?;
            }
        }
        if let Some(endpoint) = &self.provider {
            if self.kind != PluginKind::Provider {
                return Err("only a provider may have a [provider] section".into());
            }
            self.check_base_url(&endpoint.base_url)?;
            if let Some(secret) = &endpoint.api_key_secret
                && !self.secrets.contains(secret)
            {
                return Err(format!(
                    "provider.api_key_secret {secret:?} must be one of the manifest's secrets"
                ));
            }
            if let Some(header) = &endpoint.api_key_header {
                let valid = !header.is_empty()
                    && header.len() <= 64
                    && header
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !NOT_FOR_SECRETS.contains(&header.as_str());
                if !valid {
                    return Err(format!(
                        "provider.api_key_header {header:?} must be a lowercase header name \
                         that is not one of {NOT_FOR_SECRETS:?}"
                    ));
                }
                if endpoint.api_key_secret.is_none() {
                    return Err("provider.api_key_header needs provider.api_key_secret".into());
                }
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

    fn check_base_url(&self, base_url: &str) -> Result<(), String> {
        let url = check_base_url(base_url).map_err(|err| format!("provider.base_url: {err}"))?;
        let host = url_host(&url).unwrap_or_default();
        let asked = self
            .hosts
            .iter()
            .any(|h| normalize_host(h).is_ok_and(|h| h == host));
        if !asked {
            return Err(format!(
                "provider.base_url goes to {host}, which is not among the manifest's hosts"
            ));
        }
        Ok(())
    }

    /// Whether the manifest asks for `capability` (`log` always counts).
    pub fn grants(&self, capability: Capability) -> bool {
        capability == Capability::Log || self.capabilities.contains(&capability)
    }
}

/// A base URL requests may be joined to: http(s), a host, no credentials,
/// query or fragment.
/// An OAuth scope token (RFC 6749 section 3.3: printable ASCII without
/// space, `"` or `\\`), at most 64 bytes.
pub fn check_scope(scope: &str) -> Result<(), String> {
    let ok = !scope.is_empty()
        && scope.len() <= 64
        && scope
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{scope:?} is not a scope: 1-64 printable ASCII characters, no space, quote or backslash"
        ))
    }
}

pub fn check_base_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text.trim()).map_err(|err| format!("{text:?}: {err}"))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(format!(
            "{text:?} must be an http(s) URL with a host and no credentials, query or fragment"
        ));
    }
    Ok(url)
}

fn check_range(field: &str, value: u64, min: u64, max: u64) -> Result<(), String> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!("{field} = {value} is outside {min}..={max}"))
    }
}

/// `host:port`, lowercased; the port is required so a grant never means
/// "any port".
pub fn normalize_host(text: &str) -> Result<String, String> {
    let url = url::Url::parse(&format!("http://{text}"))
        .map_err(|err| format!("{text:?} is not host:port ({err})"))?;
    let explicit_port = text
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    match (url.host_str(), url.port_or_known_default()) {
        (Some(host), Some(port))
            if explicit_port && url.path() == "/" && url.username().is_empty() =>
        {
            Ok(format!("{host}:{port}"))
        }
        _ => Err(format!("{text:?} is not host:port")),
    }
}

/// The `host:port` a URL goes to.
pub fn url_host(url: &url::Url) -> Option<String> {
    Some(format!(
        "{}:{}",
        url.host_str()?,
        url.port_or_known_default()?
    ))
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
        check(
            "name = \"policy\"\nversion = \"1\"\nkind = \"tool\"",
            Err("reserved"),
        );
    }

    const PROVIDER: &str = "name = \"p\"\nversion = \"1\"\nkind = \"provider\"\n";

    #[test]
    fn a_manifest_names_secrets_never_variables() {
        // The attack of old: the manifest chose the host secret and where it went.
        check(
            &format!(
                "{PROVIDER}[provider]\nbase_url = \"http://127.0.0.1:9/\"\napi_key_env = \"BETTER_AUTH_SECRET\""
            ),
            Err("unknown field `api_key_env`"),
        );
        check(
            &format!("{PROVIDER}[provider]\nbase_url = \"http://127.0.0.1:9/\""),
            Err("not among the manifest's hosts"),
        );
        check(
            &format!(
                "{PROVIDER}hosts = [\"127.0.0.1:9\"]\n[provider]\nbase_url = \"http://127.0.0.1:9/\"\napi_key_secret = \"key\""
            ),
            Err("must be one of the manifest's secrets"),
        );
        check(
            &format!(
                "{PROVIDER}hosts = [\"a.example:443\"]\nsecrets = [\"key\"]\n[provider]\nbase_url = \"https://a.example/v1\"\napi_key_secret = \"key\""
            ),
            Ok(()),
        );
        for url in [
            "https://u:p@a.example/v1",
            "https://a.example/v1?k=1",
            "ftp://a.example/",
        ] {
            check(
                &format!("{PROVIDER}hosts = [\"a.example:443\"]\n[provider]\nbase_url = \"{url}\""),
                Err("provider.base_url"),
            );
        }
        check(
            &format!("{BASE}secrets = [\"API KEY\"]"),
            Err("secret name"),
        );
        check(&format!("{BASE}hosts = [\"a.example\"]"), Err("hosts"));
    }
}
