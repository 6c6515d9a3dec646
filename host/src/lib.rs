//! wasmgate: a gateway for AI task chat whose tools and model providers are
//! sandboxed WebAssembly components. See ARCHITECTURE.md for the map.

pub mod agent;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod fleet;
pub mod http;
pub mod kv;
pub mod oci;
pub mod plugins;
pub mod store;
pub mod tasks;
pub mod telemetry;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use agent::{Agent, AgentConfig};
use auth::{AuthConfig, Authenticator};
use config::ServeConfig;
use fleet::Fleet;
use plugins::{
    CompileMode, PluginSource, PolicySource, Registry, Reloader, Runtime, RuntimeOptions,
    TaskLimits,
};
use store::Store;

/// The user dev mode prints a token for.
pub const DEV_USER: &str = "demo";

/// Serves the gateway on `listener` until `shutdown` resolves. The binary
/// and the tests both start the server through this function.
pub async fn run(
    config: ServeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = Store::connect(&config.database_url)
        .await
        .context("opening the database")?
        .with_max_tasks_per_user(config.max_tasks_per_user)
        .keep_wal_under(config.wal_limit_mib);

    // Dev mode: no way to verify anyone's token is configured, so a secret
    // made for this run, which the chat page may also use (from this
    // machine only) to sign in as the demo user.
    let dev_mode = config.auth_secret().is_none()
        && config.jwks_url.is_none()
        && config.oauth_issuer.is_none();
    let dev_secret = dev_mode.then(|| {
        let secret = auth::random_secret();
        let token = auth::mint(&secret, DEV_USER, Duration::from_secs(24 * 3600), None);
        tracing::warn!(
            "dev mode: BETTER_AUTH_SECRET is not set; tokens are signed with a secret made for this run"
        );
        println!("dev mode: token for user {DEV_USER}: {token}");
        Arc::new(secret)
    });
    let secret = match &dev_secret {
        Some(secret) => Some(secret.to_vec()),
        None => config.auth_secret().map(|s| s.as_bytes().to_vec()),
    };
    let authenticator = Authenticator::new(AuthConfig {
        secret,
        jwks: config
            .jwks_url
            .clone()
            .map(auth::JwksSource::Url)
            .or_else(|| config.oauth_issuer.clone().map(auth::JwksSource::Issuer)),
        issuer: config
            .jwt_issuer
            .clone()
            .or_else(|| config.oauth_issuer.clone()),
        audience: config.jwt_audience.iter().cloned().collect(),
        resource: config
            .public_url()
            .map(|url| vec![url.to_string(), format!("{url}/mcp")])
            .unwrap_or_default(),
    });

    let runtime = Arc::new(Runtime::new(RuntimeOptions {
        allocator: config.allocator,
        cache_dir: config.cache_dir(),
        tasks: Some(Arc::new(store.clone())),
        kv: Some(Arc::new(store.clone())),
        task_limits: TaskLimits {
            writes_per_user_minute: config.task_writes_per_minute,
            ..TaskLimits::default()
        },
        compile: CompileMode::Subprocess {
            exe: std::env::current_exe().context("finding the wasmgate binary to compile with")?,
            budget: Duration::from_secs_f64(config.compile_timeout_secs.max(0.001)),
        },
        memory_mib: config.memory_mib,
    })?);
    let registries = Arc::new(
        config
            .registry
            .load()
            .context("reading the OCI registry settings")?,
    );
    let source = PluginSource {
        dir: config.plugins.clone(),
        policy: PolicySource {
            path: config.policy_path(),
            dev_mode,
            shared_grants: Default::default(),
        },
        owners: Some(Arc::new(store.clone())),
        remote: Some(Arc::new(oci::PolicyInstalls {
            registries: registries.clone(),
        })),
    };
    // The plugins load in the background: `/healthz` answers at once,
    // `/readyz` once they are in, however long compiling them takes.
    let registry = Arc::new(Registry::loading());
    let reloader = Reloader::new(runtime.clone(), registry.clone(), source);
    if let Err(err) = reloader.watch() {
        tracing::warn!(error = %format!("{err:#}"), "cannot watch the plugin directory; reload with SIGHUP or the admin API");
    }
    // On PostgreSQL the replicas share the plugins installed through the
    // admin API: copied in before the first load, followed afterwards.
    let fleet = store
        .is_shared()
        .then(|| Fleet::new(store.clone(), reloader.clone(), config.database_url.clone()));
    let draining = CancellationToken::new();
    let first_load = (reloader.clone(), fleet.clone(), draining.clone());
    tokio::spawn(async move {
        let (reloader, fleet, draining) = first_load;
        if let Some(fleet) = &fleet
            && let Err(err) = fleet.copy_in().await
        {
            tracing::warn!(error = %err, "cannot read the fleet's plugin set; loading the directory as it is");
        }
        reloader.reload().await;
        if let Some(fleet) = fleet {
            fleet.follow(draining);
        }
    });

    let audit = Arc::new(audit::Audit::start(
        store.clone(),
        audit::AuditConfig {
            retention_days: config.audit_retention_days,
            stdout: config.audit_stdout,
        },
    ));
    let agent = Agent::new(
        runtime.clone(),
        registry.clone(),
        store.clone(),
        audit.clone(),
        AgentConfig {
            model: config.model.clone(),
            breaker_failures: config.breaker_failures,
            breaker_cool_down: Duration::from_secs(config.breaker_cooldown_secs),
            max_rounds: config.max_rounds.max(1),
            history_messages: config.history_messages.max(2),
            provider_timeout: Duration::from_secs(config.provider_timeout_secs.max(1)),
            turns_per_minute: config.chat_rate_per_minute,
            turn_windows: agent::Windows::connect(config.redis_url.as_deref(), &store)
                .await
                .context("connecting to WASMGATE_REDIS_URL")?,
            daily_tokens: config.user_daily_tokens,
        },
    );
    let state = http::AppState {
        runtime,
        registry,
        reloader,
        store,
        agent: Arc::new(agent),
        audit,
        http_metrics: Default::default(),
        auth: Arc::new(authenticator),
        dev_secret,
        config: Arc::new(config),
        fleet,
        registries,
        draining,
    };
    let store = state.store.clone();
    let audit = state.audit.clone();
    let draining = state.draining.clone();
    let shutdown = async move {
        shutdown.await;
        draining.cancel();
    };
    let limits = http::server::ServeLimits::from(&*state.config);
    http::server::serve(listener, http::router(state), limits, shutdown).await;
    // The audit entries still queued, then the WAL folded into the
    // database file.
    audit.close().await;
    store.close().await;
    Ok(())
}
