//! The store: SQLite (the embedded default) or PostgreSQL through sqlx's
//! `Any` driver, with the migrations of `migrations/` applied at connect.
//! Queries run on a [`db::Db`]: a pool for PostgreSQL, connections the
//! store holds itself for SQLite.
//!
//! The store knows nothing about HTTP or wasmtime. Queries are written once
//! in the SQL both backends accept (`$n` parameters, `RETURNING`); only the
//! schema differs, in `migrations/sqlite` and `migrations/postgres`.

mod audit;
mod conversations;
mod db;
mod fleet;
mod kv;
mod messages;
mod sessions;
mod tasks;
mod tool_owners;
mod transcript;
mod usage;

pub use audit::AuditFilter;
pub use conversations::Conversation;
pub use fleet::{FleetPlugin, PLUGINS_CHANNEL};
pub use messages::{Answer, NewMessage, Question, Role, SKIPPED, StoredMessage, ToolCall};
pub use sessions::ChatKitSession;
pub use transcript::{Order, ToolCallRecord, TranscriptEntry};
pub use usage::{RoundUsage, UsageDay};

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use sqlx::ConnectOptions;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};

use db::{AnyQuery, Db, RunOn};

/// What every SQLite connection is opened with.
const SQLITE_SETUP: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
     PRAGMA journal_size_limit = 33554432;";

/// The default database: a file under `./data/`, created on first run.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/wasmgate.db";

#[derive(Clone)]
pub struct Store {
    db: Db,
    backend: Backend,
    /// Whether the last write failed for a reason of the storage's own.
    writes_failing: Arc<AtomicBool>,
    /// Tasks one user may hold, whatever the door; 0 for no limit.
    max_tasks_per_user: i64,
}

/// The default of `WASMGATE_MAX_TASKS_PER_USER`.
pub const DEFAULT_MAX_TASKS_PER_USER: u32 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Store {
    /// Connects to `url` (`sqlite://…` or `postgres://…`), creating a SQLite
    /// file and its directory if needed, and applies pending migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            anyhow::bail!("DATABASE_URL must start with sqlite:// or postgres://");
        };

        let url = match backend {
            Backend::Sqlite => prepare_sqlite_url(url)?,
            Backend::Postgres => url.to_string(),
        };
        let options: AnyConnectOptions = url
            .parse::<AnyConnectOptions>()
            .context("parsing DATABASE_URL")?
            .disable_statement_logging();

        let db = match backend {
            // SQLite allows one writer at a time; more connections only help
            // readers, and WAL lets them read while one writes.
            Backend::Sqlite => Db::held(&options, 8, SQLITE_SETUP).await,
            Backend::Postgres => AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(db::ACQUIRE_TIMEOUT)
                // A server connection can die while idle (restarts, idle
                // timeouts): sqlx pings it before handing it out.
                .test_before_acquire(true)
                .connect_with(options)
                .await
                .map(Db::Pool),
        }
        .context("connecting to the database")?;

        let migrator = match backend {
            Backend::Sqlite => sqlx::migrate!("../migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("../migrations/postgres"),
        };
        let mut conn = db.acquire().await.context("connecting to the database")?;
        migrator
            .run(&mut *conn)
            .await
            .context("applying database migrations")?;
        drop(conn);
        Ok(Store {
            db,
            backend,
            writes_failing: Arc::default(),
            max_tasks_per_user: DEFAULT_MAX_TASKS_PER_USER.into(),
        })
    }

    /// Sets how many tasks one user may hold (0: no limit).
    pub fn with_max_tasks_per_user(mut self, max: u32) -> Store {
        self.max_tasks_per_user = max.into();
        self
    }

    /// Keeps a SQLite WAL under `limit_mib` while the store is open (a no-op
    /// on PostgreSQL; 0 leaves the WAL to SQLite's automatic checkpoints).
    pub fn keep_wal_under(self, limit_mib: u32) -> Store {
        if self.backend == Backend::Sqlite && limit_mib > 0 {
            let frames = i64::from(limit_mib) * 1024 * 1024 / WAL_FRAME_BYTES;
            tokio::spawn(wal_upkeep(self.db.clone(), frames));
        }
        self
    }

    /// Folds the WAL into the database file (SQLite) and closes the pool:
    /// a clean exit leaves one file behind.
    pub async fn close(&self) {
        if self.backend == Backend::Sqlite
            && let Err(err) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute_on(&self.db)
                .await
        {
            tracing::warn!(error = %err, "cannot checkpoint the WAL at shutdown");
        }
        self.db.close().await;
    }

    /// Whether the database answers and takes writes (for `/readyz`).
    /// While writes fail, each check tries one small write of its own, so
    /// readiness comes back when the storage does, without a restart.
    pub async fn health(&self) -> Health {
        if sqlx::query("SELECT 1").execute_on(&self.db).await.is_err() {
            return Health::Unreachable;
        }
        if !self.writes_failing.load(Ordering::Relaxed) {
            return Health::Ready;
        }
        let probe = sqlx::query(
            "INSERT INTO write_probe (id, at) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET at = excluded.at",
        )
        .bind(now());
        match self.write(probe).await {
            Ok(_) => Health::Ready,
            Err(_) => Health::WritesFailing,
        }
    }

    /// Runs a write and notes whether the storage took it.
    async fn write<'q>(
        &self,
        query: AnyQuery<'q>,
    ) -> Result<sqlx::any::AnyQueryResult, sqlx::Error> {
        let outcome = query.execute_on(&self.db).await;
        self.note_write(&outcome);
        outcome
    }

    /// Runs a write with `RETURNING` and reads its rows to the end. (With
    /// `fetch_one`/`fetch_optional`, sqlx's SQLite driver resets the
    /// statement after the first row and drops the error SQLite reports when
    /// the implicit transaction commits: on a full disk every insert
    /// "returned" a row, the same id each time, and none was stored.)
    async fn write_returning<'q>(
        &self,
        query: AnyQuery<'q>,
    ) -> Result<Option<AnyRow>, sqlx::Error> {
        let outcome = query.fetch_all_on(&self.db).await;
        self.note_write(&outcome);
        outcome.map(|rows| rows.into_iter().next())
    }

    fn note_write<T>(&self, outcome: &Result<T, sqlx::Error>) {
        let failing = match outcome {
            Ok(_) => false,
            // A broken rule is the request's fault, not the storage's.
            Err(sqlx::Error::Database(err))
                if !matches!(err.kind(), sqlx::error::ErrorKind::Other) =>
            {
                return;
            }
            Err(_) => true,
        };
        if self.writes_failing.swap(failing, Ordering::Relaxed) != failing {
            if failing {
                tracing::error!("database writes are failing; /readyz reports storage_unavailable");
            } else {
                tracing::info!("database writes succeed again");
            }
        }
    }
}

/// How often the WAL's size is checked.
const WAL_CHECK_EVERY: Duration = Duration::from_secs(5);
/// A WAL frame: one 4 KiB page (SQLite's default page size) and its header,
/// rounded down to the page.
const WAL_FRAME_BYTES: i64 = 4096;

/// The default of `WASMGATE_WAL_LIMIT_MIB`.
pub const DEFAULT_WAL_LIMIT_MIB: u32 = 32;

/// Keeps the SQLite WAL bounded under sustained load. SQLite's automatic
/// checkpoints are passive: while readers keep older snapshots open they
/// cannot reset the log, and under load it grew to 860 MB. A passive
/// checkpoint every few seconds reports the log's size without blocking
/// anyone; past `limit_frames` a truncating one waits (within the busy timeout) for
/// the readers, folds the log in and empties it.
async fn wal_upkeep(db: Db, limit_frames: i64) {
    let mut every = tokio::time::interval(WAL_CHECK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if db.is_closed() {
            return;
        }
        let frames = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one_on(&db)
            .await
            .and_then(|row| sqlx::Row::try_get::<i64, _>(&row, 1));
        match frames {
            Ok(frames) if frames > limit_frames => {
                let started = std::time::Instant::now();
                match sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute_on(&db)
                    .await
                {
                    Ok(_) => {
                        tracing::info!(frames, took = ?started.elapsed(), "WAL checkpointed and truncated")
                    }
                    Err(err) => tracing::warn!(error = %err, "cannot truncate the WAL"),
                }
            }
            Ok(_) => {}
            Err(err) if db.is_closed() => {
                tracing::debug!(error = %err, "the database closed");
                return;
            }
            Err(err) => tracing::warn!(error = %err, "cannot checkpoint the WAL"),
        }
    }
}

/// Creates the directory of a SQLite file and asks sqlx to create the file.
fn prepare_sqlite_url(url: &str) -> anyhow::Result<String> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        anyhow::bail!(
            "an in-memory SQLite database would lose everything at exit; give a file path"
        );
    }
    if let Some(dir) = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the database directory {}", dir.display()))?;
    }
    Ok(if rest.contains("mode=") {
        url.to_string()
    } else if rest.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    })
}

/// Now, as the RFC 3339 UTC text every timestamp column holds.
pub(crate) fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formatting the current UTC time as RFC 3339 cannot fail")
}

/// What `/readyz` reports of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Ready,
    Unreachable,
    WritesFailing,
}

/// The store failed; the cause was logged where it happened.
#[derive(Debug, thiserror::Error)]
#[error("the database is unavailable")]
pub struct StoreError;

/// The row a write with `RETURNING` that always returns one returned.
fn returned(row: Option<AnyRow>) -> Result<AnyRow, StoreError> {
    row.ok_or_else(|| db_error(sqlx::Error::RowNotFound))
}

/// Decodes every row with `decode`.
fn decode_all<T>(
    rows: &[sqlx::any::AnyRow],
    decode: fn(&sqlx::any::AnyRow) -> Result<T, sqlx::Error>,
) -> Result<Vec<T>, StoreError> {
    rows.iter()
        .map(decode)
        .collect::<Result<_, _>>()
        .map_err(db_error)
}

/// Logs a database error where it happened; callers see only that the store
/// is unavailable.
fn db_error(err: sqlx::Error) -> StoreError {
    tracing::error!(error = %err, "database error");
    StoreError
}

impl From<StoreError> for crate::tasks::TaskError {
    fn from(_: StoreError) -> Self {
        crate::tasks::TaskError::Unavailable
    }
}
