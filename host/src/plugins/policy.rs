//! The operator's policy: what each plugin is granted.
//!
//! A manifest is written by the plugin's author and only *asks* (for
//! capabilities, hosts and secret names). The policy file is written by the
//! operator and *grants*: which capabilities, which hosts, which environment
//! variable backs each secret name, an optional override of a provider's base
//! URL, and an optional sha256 pin. A plugin that asks for more than it is
//! granted does not serve, and [`Denied`] says exactly what it lacks.
//!
//! ```toml
//! [plugins.openai]
//! capabilities = ["log"]
//! hosts = ["api.openai.com:443"]
//! secrets = { api_key = "OPENAI_API_KEY" }
//! base_url_env = "OPENAI_BASE_URL"
//! sha256 = "…"
//!
//! [plugins.greeter]
//! oci = "oci://registry.example.com/wasmgate/greeter:1.2.0"
//! require_signature = true
//!
//! [plugins.notes]
//! capabilities = ["kv", "config"]
//! kv = { max_keys = 500, max_bytes = 262144 }
//! config = { default_tag = "inbox" }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::manifest::{Capability, Manifest, check_scope, normalize_host};
use super::signature::PublicKey;
use crate::kv::KvQuota;

/// The file name of the policy when it sits in the plugin directory (its
/// default place). The directory scan skips it, and no plugin may be named
/// after it.
pub const POLICY_FILE: &str = "policy.toml";

/// Where the policy comes from and how unconfigured servers treat plugins.
#[derive(Debug, Clone)]
pub struct PolicySource {
    pub path: PathBuf,
    /// Dev mode (no user auth configured): `log`, `tasks`, `kv` and
    /// `config` are granted to every plugin, so an author can drop a tool in
    /// and try it. `http`, hosts and secrets are never granted this way.
    pub dev_mode: bool,
    /// A fleet's grants, made through the admin API and kept in the
    /// database (`crate::fleet` keeps this current): each replaces the
    /// file's entry for the same plugin.
    pub shared_grants: SharedGrants,
}

/// Plugin name → its entry, shared by the clones of a [`PolicySource`].
pub type SharedGrants = Arc<arc_swap::ArcSwap<BTreeMap<String, PluginPolicy>>>;

impl PolicySource {
    /// The default: `policy.toml` in the plugin directory, dev mode off.
    pub fn in_dir(dir: &Path) -> PolicySource {
        PolicySource {
            path: dir.join(POLICY_FILE),
            dev_mode: false,
            shared_grants: SharedGrants::default(),
        }
    }

    /// Reads the policy: the file with the fleet's grants over it. A
    /// missing file is an empty policy; a file that does not parse is an
    /// error (and grants nothing: callers fail closed).
    pub fn read(&self) -> Result<Policy, String> {
        let mut policy = self.read_file()?;
        for (name, entry) in self.shared_grants.load().iter() {
            policy.plugins.insert(name.clone(), entry.clone());
        }
        Ok(policy)
    }

    /// The file alone.
    fn read_file(&self) -> Result<Policy, String> {
        let mut policy = match std::fs::read_to_string(&self.path) {
            Ok(text) => Policy::parse(&text)
                .map_err(|err| format!("invalid policy {}: {err}", self.path.display()))?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Policy::default(),
            Err(err) => return Err(format!("cannot read {}: {err}", self.path.display())),
        };
        policy.dev_mode = self.dev_mode;
        Ok(policy)
    }
}

impl PolicySource {
    /// Grants `manifest`'s plugin everything it asks for and writes the
    /// policy file (atomically; comments in it are not kept). Returns the
    /// plugin's entry as written.
    pub fn grant_all(&self, manifest: &Manifest) -> Result<PluginPolicy, String> {
        let mut policy = self.read_file()?;
        let entry = policy.grant_all(manifest).clone();
        let tmp = self.path.with_extension("toml.tmp");
        std::fs::write(&tmp, policy.to_toml())
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|err| format!("cannot write {}: {err}", self.path.display()))?;
        Ok(entry)
    }
}

/// The parsed policy file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Public keys (`ed25519:<base64>`) whose signatures the policy trusts,
    /// for plugins that `require_signature`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_keys: Vec<String>,
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginPolicy>,
    #[serde(skip)]
    pub dev_mode: bool,
}

/// What the operator grants one plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginPolicy {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<Capability>,
    /// `host:port` pairs the plugin's requests may go to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Secret name (as the manifest asks for it) → the environment variable
    /// holding its value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    /// An environment variable that, when set, replaces a provider's base
    /// URL. Its host is granted with it: the operator chose it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url_env: Option<String>,
    /// When set, only the component with this sha256 is granted anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// How much the plugin may store per user with `kv` (the defaults when
    /// absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv: Option<KvQuota>,
    /// Settings the plugin reads with `config`: not secrets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// Headers the host adds to the plugin's `http` requests to a host,
    /// from a granted secret; the guest never sees their values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inject: Vec<Injection>,
    /// Tool name → the OAuth scope a token needs to use it, in place of
    /// the scope the manifest declares.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scopes: BTreeMap<String, String>,
    /// Serve only a component signed by one of `trusted_keys`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_signature: bool,
    /// Install the plugin from an OCI registry: `oci://REGISTRY/REPO:TAG`
    /// (pulled once and pinned to the digest it named) or `…@sha256:…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<String>,
}

/// `header: prefix + secret` on every request to `host`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Injection {
    /// `host:port`, as granted.
    pub host: String,
    /// e.g. `authorization`.
    pub header: String,
    /// The secret's name, as the manifest asks for it.
    pub secret: String,
    /// e.g. `"Bearer "`.
    #[serde(default)]
    pub prefix: String,
}

/// What a plugin was granted: resolved once, when it joins a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// Where its requests may go (lowercase `host:port`).
    pub hosts: Vec<String>,
    /// Secret name → environment variable.
    pub secrets: BTreeMap<String, String>,
    pub base_url_env: Option<String>,
    /// What it may store per user with `kv`.
    pub kv_quota: KvQuota,
    /// Its `config` settings (empty unless the capability is granted).
    pub config: Arc<BTreeMap<String, String>>,
    /// Headers added to its `http` requests (hosts and secrets it was granted).
    pub inject: Vec<Injection>,
    /// Tool name → the scope a token needs to use it.
    pub scopes: BTreeMap<String, String>,
}

impl Grant {
    /// The value of secret `name`, read from its variable at each use (so a
    /// rotated key takes effect without a reload).
    pub fn secret(&self, name: &str) -> Option<String> {
        let variable = self.secrets.get(name)?;
        std::env::var(variable)
            .ok()
            .filter(|value| !value.is_empty())
    }

    /// The operator's base-URL override, if its variable is set.
    pub fn base_url_override(&self) -> Option<String> {
        let variable = self.base_url_env.as_deref()?;
        std::env::var(variable)
            .ok()
            .map(|url| url.trim().to_string())
            .filter(|url| !url.is_empty())
    }
}

/// Why a plugin does not serve: what it asked for and was not granted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Denied {
    pub capabilities: Vec<Capability>,
    pub hosts: Vec<String>,
    pub secrets: Vec<String>,
    /// Nothing is granted at all: the policy pins another component, or
    /// the policy file cannot be used.
    pub refused: Option<String>,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(reason) = &self.refused {
            return write!(f, "not granted: {reason}");
        }
        let mut missing = Vec::new();
        missing.extend(
            self.capabilities
                .iter()
                .map(|c| format!("capability {}", c.as_str())),
        );
        missing.extend(self.hosts.iter().map(|h| format!("host {h}")));
        missing.extend(self.secrets.iter().map(|s| format!("secret {s}")));
        write!(
            f,
            "not granted by the operator's policy: {} (grant it with `wasmgate plugins grant NAME`)",
            missing.join(", ")
        )
    }
}

impl Policy {
    pub fn parse(text: &str) -> Result<Policy, String> {
        let policy: Policy = toml::from_str(text).map_err(|err| err.to_string())?;
        for key in &policy.trusted_keys {
            PublicKey::parse(key).map_err(|err| format!("trusted_keys: {err}"))?;
        }
        for (name, entry) in &policy.plugins {
            for host in &entry.hosts {
                normalize_host(host).map_err(|err| format!("plugins.{name}.hosts: {err}"))?;
            }
            for (tool, scope) in &entry.scopes {
                check_scope(scope).map_err(|err| format!("plugins.{name}.scopes.{tool}: {err}"))?;
            }
        }
        Ok(policy)
    }

    /// Whether plugin `name`, a component with `sha256` and `signature` (the
    /// text of its `.sig`), is signed as the policy requires; why not.
    pub fn check_signature(
        &self,
        name: &str,
        sha256: &str,
        signature: Option<&str>,
    ) -> Result<(), String> {
        if !self
            .plugins
            .get(name)
            .is_some_and(|entry| entry.require_signature)
        {
            return Ok(());
        }
        let Some(signature) = signature else {
            return Err(format!(
                "plugin {name} is not signed ({name}.sig is missing), and the policy requires \
                 a signature by a trusted key"
            ));
        };
        let trusted = self
            .trusted_keys
            .iter()
            .filter_map(|key| PublicKey::parse(key).ok())
            .any(|key| key.verifies(sha256, signature));
        if trusted {
            Ok(())
        } else {
            Err(format!(
                "plugin {name}'s signature is not one of a trusted key over this component \
                 (sha256 {sha256}); it was tampered with, or signed by another key"
            ))
        }
    }

    /// What `manifest` (a component with `sha256`) gets, or why it gets
    /// nothing. All or nothing: a plugin missing one grant does not serve.
    pub fn grant(&self, manifest: &Manifest, sha256: &str) -> Result<Grant, Denied> {
        let empty = PluginPolicy::default();
        let entry = self.plugins.get(&manifest.name).unwrap_or(&empty);
        if let Some(pinned) = &entry.sha256
            && !pinned.eq_ignore_ascii_case(sha256)
        {
            return Err(Denied {
                refused: Some(format!(
                    "the policy pins sha256 {pinned}, this component is {sha256}"
                )),
                ..Denied::default()
            });
        }
        let granted_hosts: Vec<String> = entry
            .hosts
            .iter()
            .filter_map(|host| normalize_host(host).ok())
            .collect();
        let denied = Denied {
            capabilities: manifest
                .capabilities
                .iter()
                .copied()
                .filter(|&c| !self.grants_capability(entry, c))
                .collect(),
            hosts: manifest
                .hosts
                .iter()
                .filter(|host| {
                    normalize_host(host).is_ok_and(|host| !granted_hosts.contains(&host))
                })
                .cloned()
                .collect(),
            secrets: manifest
                .secrets
                .iter()
                .filter(|name| !entry.secrets.contains_key(*name))
                .cloned()
                .collect(),
            ..Denied::default()
        };
        if denied != Denied::default() {
            return Err(denied);
        }
        // Only what was asked for: a grant the manifest does not name is not
        // handed to the plugin.
        Ok(Grant {
            hosts: manifest
                .hosts
                .iter()
                .filter_map(|host| normalize_host(host).ok())
                .collect(),
            secrets: entry
                .secrets
                .iter()
                .filter(|(name, _)| manifest.secrets.contains(name))
                .map(|(name, variable)| (name.clone(), variable.clone()))
                .collect(),
            base_url_env: entry.base_url_env.clone(),
            kv_quota: entry.kv.unwrap_or_default(),
            config: Arc::new(if manifest.capabilities.contains(&Capability::Config) {
                entry.config.clone()
            } else {
                BTreeMap::new()
            }),
            inject: entry
                .inject
                .iter()
                .filter(|inject| manifest.secrets.contains(&inject.secret))
                .filter_map(|inject| {
                    let host = normalize_host(&inject.host).ok()?;
                    manifest
                        .hosts
                        .iter()
                        .any(|h| normalize_host(h).is_ok_and(|h| h == host))
                        .then(|| Injection {
                            host,
                            header: inject.header.to_ascii_lowercase(),
                            ..inject.clone()
                        })
                })
                .collect(),
            scopes: manifest
                .tools
                .iter()
                .filter_map(|(tool, described)| Some((tool.clone(), described.scope.clone()?)))
                .chain(entry.scopes.clone())
                .collect(),
        })
    }

    fn grants_capability(&self, entry: &PluginPolicy, capability: Capability) -> bool {
        // `log` is budgeted per call and reaches only the host's log. Dev
        // mode grants what reaches only this host's own data, never the
        // network or a secret.
        capability == Capability::Log
            || entry.capabilities.contains(&capability)
            || (self.dev_mode
                && matches!(
                    capability,
                    Capability::Tasks | Capability::Kv | Capability::Config
                ))
    }

    /// The entry that grants exactly what `manifest` asks for, keeping what
    /// the operator already set (variables, pins) and naming each secret's
    /// variable after the secret where none is set yet.
    pub fn grant_all(&mut self, manifest: &Manifest) -> &PluginPolicy {
        let entry = self.plugins.entry(manifest.name.clone()).or_default();
        for &capability in &manifest.capabilities {
            if !entry.capabilities.contains(&capability) {
                entry.capabilities.push(capability);
            }
        }
        for host in &manifest.hosts {
            if !entry.hosts.contains(host) {
                entry.hosts.push(host.clone());
            }
        }
        for secret in &manifest.secrets {
            entry
                .secrets
                .entry(secret.clone())
                .or_insert_with(|| secret.to_ascii_uppercase().replace('-', "_"));
        }
        entry
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a policy always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(extra: &str) -> Manifest {
        Manifest::parse(&format!(
            "name = \"p\"\nversion = \"1\"\nkind = \"provider\"\n{extra}"
        ))
        .unwrap()
    }

    const ASKS: &str = "hosts = [\"api.example.com:443\"]\nsecrets = [\"api_key\"]\n\
                        [provider]\nbase_url = \"https://api.example.com/v1\"\napi_key_secret = \"api_key\"\n";

    #[test]
    fn a_plugin_gets_what_it_asks_for_only_when_granted() {
        let asking = manifest(ASKS);
        let denied = Policy::default().grant(&asking, "abc").unwrap_err();
        assert_eq!(denied.hosts, ["api.example.com:443"]);
        assert_eq!(denied.secrets, ["api_key"]);
        assert!(denied.to_string().contains("host api.example.com:443"));

        let policy = Policy::parse(
            "[plugins.p]\nhosts = [\"API.example.com:443\", \"other:80\"]\n\
             secrets = { api_key = \"EXAMPLE_KEY\", unasked = \"BETTER_AUTH_SECRET\" }\n",
        )
        .unwrap();
        let grant = policy.grant(&asking, "abc").unwrap();
        assert_eq!(grant.hosts, ["api.example.com:443"]);
        assert_eq!(
            grant.secrets.keys().collect::<Vec<_>>(),
            ["api_key"],
            "a secret the manifest does not ask for is not handed over"
        );
    }

    #[test]
    fn dev_mode_grants_tasks_but_never_hosts_or_secrets() {
        let tool = Manifest::parse(
            "name = \"t\"\nversion = \"1\"\nkind = \"tool\"\ncapabilities = [\"tasks\"]\n",
        )
        .unwrap();
        let dev = Policy {
            dev_mode: true,
            ..Policy::default()
        };
        assert!(dev.grant(&tool, "abc").is_ok());
        assert_eq!(
            Policy::default()
                .grant(&tool, "abc")
                .unwrap_err()
                .capabilities,
            [Capability::Tasks]
        );
        assert!(dev.grant(&manifest(ASKS), "abc").is_err());
    }

    #[test]
    fn a_pin_grants_one_component_only() {
        let policy =
            Policy::parse("[plugins.p]\nsha256 = \"ABC\"\nhosts = [\"api.example.com:443\"]")
                .unwrap();
        let asking = manifest("hosts = [\"api.example.com:443\"]");
        assert!(policy.grant(&asking, "abc").is_ok());
        let denied = policy.grant(&asking, "abd").unwrap_err();
        assert!(denied.to_string().contains("pins sha256 ABC"), "{denied}");
    }

    #[test]
    fn hosts_are_host_and_port() {
        assert_eq!(
            normalize_host("Example.COM:443").unwrap(),
            "example.com:443"
        );
        assert_eq!(normalize_host("127.0.0.1:8080").unwrap(), "127.0.0.1:8080");
        assert_eq!(normalize_host("[::1]:80").unwrap(), "[::1]:80");
        for bad in [
            "example.com",
            "example.com:",
            "a/b:1",
            "u@example.com:1",
            "",
        ] {
            assert!(normalize_host(bad).is_err(), "{bad}");
        }
        assert!(Policy::parse("[plugins.p]\nhosts = [\"nope\"]").is_err());
        assert!(Policy::parse("[plugins.p]\napi_key_env = \"X\"").is_err());
    }

    #[test]
    fn grant_all_writes_what_the_manifest_asks() {
        let mut policy = Policy::default();
        policy.grant_all(&manifest(ASKS));
        let text = policy.to_toml();
        let again = Policy::parse(&text).unwrap();
        assert!(again.grant(&manifest(ASKS), "abc").is_ok(), "{text}");
        assert_eq!(again.plugins["p"].secrets["api_key"], "API_KEY");
    }
}
