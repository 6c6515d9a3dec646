//! Command line and environment configuration: one clap definition, every
//! field readable from its environment variable (the operations contract in
//! README.md), every doc comment a line of `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::plugins::AllocatorChoice;

#[derive(Debug, Parser)]
#[command(
    name = "wasmgate",
    version,
    about = "A gateway for AI task chat with sandboxed WebAssembly tools and model providers."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API.
    Serve(Box<ServeConfig>),
    /// Print an HS256 JWT for a user, signed with BETTER_AUTH_SECRET.
    Token {
        /// The user the token speaks for (its `sub` claim).
        #[arg(long)]
        user: String,
        /// The shared secret; the same variable the server reads.
        #[arg(long, env = "BETTER_AUTH_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// How long the token is valid, in seconds.
        #[arg(long, default_value_t = 24 * 3600)]
        ttl_seconds: u64,
        /// OAuth scopes, space-separated (e.g. "tasks:read"): the token then
        /// sees and calls only the tools those scopes allow. Without it, all.
        #[arg(long)]
        scope: Option<String>,
    },
    /// Work with plugin components.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Internal: compile a component from stdin to stdout, for the server
    /// (which runs this in a child it can kill when the budget runs out).
    #[command(name = "__compile", hide = true)]
    Compile {
        /// `pooling` or `on-demand`: the parent engine's allocator.
        allocator: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Check that a component is a valid wasmgate plugin and list its tools.
    ///
    /// Uses the manifest beside the file (`<name>.toml` for `<name>.wasm`) when
    /// there is one. Exits with status 1 and a reason otherwise.
    Check {
        /// The component, e.g. target/plugins/add-task.wasm.
        file: PathBuf,
    },
    /// Create a tool plugin crate that builds and passes `check` as it is.
    New {
        /// The plugin's name (a-z, 0-9, '-'); its tool is named the same with '_'.
        name: String,
        /// Where to create the crate.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The guest SDK crate (plugins/sdk in the wasmgate repository).
        #[arg(long, default_value = "plugins/sdk")]
        sdk: PathBuf,
        /// Start from a tool that already uses this capability.
        #[arg(long, value_enum, default_value = "plain")]
        capability: crate::cli::new_plugin::Template,
    },
    /// Grant a plugin in the directory everything its manifest asks for
    /// (capabilities, hosts, secrets), writing the operator's policy file.
    ///
    /// Each secret is backed by the environment variable named after it
    /// (`api_key` → `API_KEY`) unless the policy already names one; edit the
    /// file to choose another. A running server picks the change up on its
    /// next reload.
    Grant {
        /// The plugin's name (its manifest is `<dir>/<name>.toml`).
        name: String,
        /// The plugin directory.
        #[arg(long, env = "WASMGATE_PLUGINS", default_value = "target/plugins")]
        plugins: PathBuf,
        /// The policy file; default `policy.toml` in the plugin directory.
        #[arg(long, env = "WASMGATE_POLICY")]
        policy: Option<PathBuf>,
    },
    /// Make an ed25519 key pair for signing plugins: the secret key is
    /// written to `--out` (keep it secret), the public key printed, for the
    /// policy's `trusted_keys`.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a component with a secret key from `keygen`: writes `<name>.sig`
    /// beside `<name>.wasm`.
    Sign {
        /// The secret key file.
        #[arg(long)]
        key: PathBuf,
        file: PathBuf,
    },
    /// Check a component's signature (`<name>.sig` beside it) against a
    /// public key (`ed25519:…`). Exits with status 1 and a reason otherwise.
    Verify {
        #[arg(long)]
        key: String,
        file: PathBuf,
    },
    /// Push a component and its manifest (`<name>.toml` beside it) to an
    /// OCI registry, in the CNCF wasm artifact layout, with its signature
    /// (`<name>.sig`) when there is one. Prints the reference pinned to the
    /// pushed digest.
    Push {
        /// The component, e.g. target/plugins/add-task.wasm.
        file: PathBuf,
        /// `REGISTRY/REPOSITORY:TAG` (`oci://` optional).
        reference: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Run one tool of a component with fake capabilities (tasks in memory)
    /// and print its result: the plugin author's test harness.
    Run {
        /// The component; a manifest beside it (`<name>.toml`) is used if present.
        file: PathBuf,
        /// The tool to call.
        tool: String,
        /// Its arguments, a JSON object.
        #[arg(default_value = "{}")]
        arguments: String,
        /// A JSON list of task titles to start the in-memory store with.
        #[arg(long)]
        tasks: Option<PathBuf>,
        /// A `host:port` the tool's `http` requests may reach in this run
        /// (e.g. a local stub); repeatable. Nothing else is reachable.
        #[arg(long = "allow-host", value_name = "HOST:PORT")]
        allow_hosts: Vec<String>,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address to listen on; port 0 picks a free port (the startup line says which).
    #[arg(long, env = "WASMGATE_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,

    /// Directory of plugins: each `<name>.wasm` with its `<name>.toml` manifest.
    #[arg(long, env = "WASMGATE_PLUGINS", default_value = "target/plugins")]
    pub plugins: PathBuf,

    /// The operator's grants to plugins (capabilities, hosts, secrets).
    /// Default: `policy.toml` in the plugin directory.
    #[arg(long, env = "WASMGATE_POLICY")]
    pub policy: Option<PathBuf>,

    /// Guest memory all plugin instances may use together, in MiB. Each
    /// plugin reserves room for two running instances when it loads (one
    /// that does not fit is rejected); further calls share the rest.
    #[arg(long, env = "WASMGATE_MEMORY_MIB", default_value_t = crate::plugins::budget::DEFAULT_MEMORY_MIB)]
    pub memory_mib: u32,

    /// Wall-clock budget for compiling one component, in seconds; a
    /// component that takes longer is rejected (and nothing is cached).
    #[arg(long, env = "WASMGATE_COMPILE_TIMEOUT_SECS", default_value_t = 30.0)]
    pub compile_timeout_secs: f64,

    /// Directory for compiled components, so restarts do not recompile. Empty disables it.
    // A `String`: clap refuses an empty path, and empty is meaningful here.
    #[arg(long, env = "WASMGATE_CACHE_DIR", default_value = "data/cache")]
    pub cache_dir: String,

    /// Instance allocator for plugins: pooling is faster; auto falls back to
    /// on-demand when the address space cannot be reserved.
    #[arg(long, env = "WASMGATE_ALLOCATOR", value_enum, default_value = "auto")]
    pub allocator: AllocatorChoice,

    /// Database: `sqlite://path` (created on first run) or `postgres://…`.
    #[arg(long, env = "DATABASE_URL", default_value = crate::store::DEFAULT_DATABASE_URL)]
    pub database_url: String,

    /// HS256 secret for user JWTs (Better Auth's shared secret). Unset: dev
    /// mode, with a secret made for this run and a token printed for `demo`.
    #[arg(long, env = "BETTER_AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,

    /// JWKS URL for asymmetric (EdDSA/RS256/ES256) user tokens.
    #[arg(long, env = "WASMGATE_JWKS_URL")]
    pub jwks_url: Option<String>,

    /// Required `iss` claim of user tokens, if set.
    #[arg(long, env = "WASMGATE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` claim of user tokens, if set. (With a public URL and
    /// no audience, a token must name this resource: the public URL or its
    /// `/mcp`.)
    #[arg(long, env = "WASMGATE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// This gateway's public URL (e.g. `https://tasks.example.com`): the
    /// resource OAuth clients get tokens for, named in the protected
    /// resource metadata and in every 401's `WWW-Authenticate`.
    #[arg(long, env = "WASMGATE_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// The OAuth authorization server that issues user tokens (e.g. Better
    /// Auth's): listed in the protected resource metadata, required as
    /// `iss` unless WASMGATE_JWT_ISSUER says otherwise, and, without
    /// WASMGATE_JWKS_URL, where the JWKS is discovered (RFC 8414 metadata).
    #[arg(long, env = "WASMGATE_OAUTH_ISSUER")]
    pub oauth_issuer: Option<String>,

    /// The model: `rules` (offline) or `<provider plugin>:<model>`, e.g.
    /// `openai:gpt-4o-mini` (with OPENAI_BASE_URL and OPENAI_API_KEY); or
    /// several, comma-separated, tried in order when one is unavailable.
    #[arg(long, env = "WASMGATE_MODEL", default_value = "rules")]
    pub model: String,

    /// Provider failures in a row (unreachable, 429, 5xx, too slow) that
    /// make turns skip it for WASMGATE_BREAKER_COOLDOWN_SECS; 0 never.
    #[arg(long, env = "WASMGATE_BREAKER_FAILURES", default_value_t = 5)]
    pub breaker_failures: u32,

    /// Seconds a provider whose breaker opened is skipped.
    #[arg(long, env = "WASMGATE_BREAKER_COOLDOWN_SECS", default_value_t = 30)]
    pub breaker_cooldown_secs: u64,

    /// Provider rounds per chat turn before the agent gives up.
    #[arg(long, env = "WASMGATE_MAX_ROUNDS", default_value_t = 8)]
    pub max_rounds: usize,

    /// Stored messages sent to the model as history.
    #[arg(long, env = "WASMGATE_HISTORY_MESSAGES", default_value_t = 40)]
    pub history_messages: i64,

    /// Longest a model provider round may take, in seconds (then 504).
    #[arg(long, env = "WASMGATE_PROVIDER_TIMEOUT_SECS", default_value_t = 60)]
    pub provider_timeout_secs: u64,

    /// Chat turns per user and minute; 0 for no limit.
    #[arg(long, env = "WASMGATE_CHAT_RATE_PER_MINUTE", default_value_t = 30)]
    pub chat_rate_per_minute: u32,

    /// Tokens (input and output, as providers report them) one user may
    /// spend per UTC day, over every replica; past it, turns answer 429
    /// `budget_exceeded` until midnight UTC. 0 for no limit.
    #[arg(long, env = "WASMGATE_USER_DAILY_TOKENS", default_value_t = 0)]
    pub user_daily_tokens: u64,

    /// Browser origins allowed to call /mcp (comma-separated; `:*` matches
    /// any port). Requests without an Origin header are always allowed.
    #[arg(
        long,
        env = "WASMGATE_ALLOWED_ORIGINS",
        value_delimiter = ',',
        default_value = "http://localhost:*,http://127.0.0.1:*"
    )]
    pub allowed_origins: Vec<String>,

    /// Domains the ChatKit widget may load images from in replies
    /// (comma-separated; each thread's `allowed_image_domains`). Unset
    /// leaves the widget's own default.
    #[arg(long, env = "WASMGATE_CHATKIT_IMAGE_DOMAINS", value_delimiter = ',')]
    pub chatkit_image_domains: Vec<String>,

    /// Bearer token for the admin API; the API is disabled when unset.
    #[arg(long, env = "WASMGATE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Tasks one user may hold, whatever the door (REST, chat, MCP); 0 for no limit.
    #[arg(long, env = "WASMGATE_MAX_TASKS_PER_USER", default_value_t = crate::store::DEFAULT_MAX_TASKS_PER_USER)]
    pub max_tasks_per_user: u32,

    /// Days a tool call's audit entry is kept; 0 disables the audit log.
    #[arg(long, env = "WASMGATE_AUDIT_RETENTION_DAYS", default_value_t = 30)]
    pub audit_retention_days: u32,

    /// Also print every audit entry as a JSON line on stdout (for log
    /// shippers).
    #[arg(long, env = "WASMGATE_AUDIT_STDOUT", default_value_t = false)]
    pub audit_stdout: bool,

    /// MiB the SQLite WAL may reach before it is checkpointed and truncated
    /// (checked every 5 s); 0 leaves it to SQLite's automatic checkpoints.
    #[arg(long, env = "WASMGATE_WAL_LIMIT_MIB", default_value_t = crate::store::DEFAULT_WAL_LIMIT_MIB)]
    pub wal_limit_mib: u32,

    /// Task changes (adds, updates, deletes) plugins may make per user and
    /// minute, over all plugins; 0 for no limit.
    #[arg(long, env = "WASMGATE_TASK_WRITES_PER_MINUTE", default_value_t = 600)]
    pub task_writes_per_minute: u32,

    /// Seconds a connection may take to send a complete request head; also
    /// how long an idle keep-alive connection is kept.
    #[arg(long, env = "WASMGATE_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,

    /// Seconds a response write may make no progress (a client that stopped
    /// reading) before the connection is closed.
    #[arg(long, env = "WASMGATE_WRITE_TIMEOUT_SECS", default_value_t = 30)]
    pub write_timeout_secs: u64,

    /// Connections served at once; past it new ones are closed. Default: the
    /// open-file limit less 256, at most 10,000.
    #[arg(long, env = "WASMGATE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Seconds a shutdown lets requests in flight finish before closing them.
    #[arg(long, env = "WASMGATE_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "WASMGATE_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Redis (`redis://host:port`) for the per-user chat rate, shared by
    /// every replica that names it; the database counts it otherwise.
    #[arg(long, env = "WASMGATE_REDIS_URL")]
    pub redis_url: Option<String>,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// How the gateway and `plugins push` reach OCI registries.
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// Registry credentials: a Docker `config.json` (its `auths`, as
    /// `docker login` writes them). Without it, registries are used
    /// anonymously.
    #[arg(long, env = "WASMGATE_OCI_AUTH_FILE")]
    pub oci_auth_file: Option<PathBuf>,

    /// Registries (`host:port`, comma-separated) spoken to over plain HTTP
    /// rather than HTTPS, such as one on loopback.
    #[arg(long, env = "WASMGATE_OCI_INSECURE", value_delimiter = ',')]
    pub oci_insecure: Vec<String>,
}

impl RegistryArgs {
    pub fn load(&self) -> anyhow::Result<crate::oci::RegistryConfig> {
        crate::oci::RegistryConfig::load(self.oci_auth_file.as_deref(), &self.oci_insecure)
    }
}

impl ServeConfig {
    /// The HS256 secret, unless unset or empty (dev mode).
    /// The public URL without a trailing slash.
    pub fn public_url(&self) -> Option<&str> {
        self.public_url
            .as_deref()
            .map(|url| url.trim_end_matches('/'))
            .filter(|url| !url.is_empty())
    }

    pub fn auth_secret(&self) -> Option<&str> {
        self.auth_secret.as_deref().filter(|s| !s.is_empty())
    }

    /// The policy file in effect.
    pub fn policy_path(&self) -> PathBuf {
        self.policy
            .clone()
            .filter(|path| !path.as_os_str().is_empty())
            .unwrap_or_else(|| self.plugins.join(crate::plugins::policy::POLICY_FILE))
    }

    /// The cache directory, unless disabled with an empty value.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        let dir = self.cache_dir.trim();
        (!dir.is_empty()).then(|| PathBuf::from(dir))
    }
}
