//! Where the store's queries run: a sqlx pool for PostgreSQL, and for
//! SQLite up to eight connections the store holds itself, opened as first
//! needed.
//!
//! sqlx's pool tests every connection it takes back: after each query it
//! spawns a task that pings the connection before it is idle again. On
//! PostgreSQL that keeps dead server connections out. On SQLite each
//! connection is a thread of sqlx's that runs its statements, so the ping
//! was a second round trip between threads per query, on top of the
//! query's own, plus a task; thread wake-ups are the largest part of a chat
//! turn's CPU on these machines (see docs/PERFORMANCE.md). A SQLite file
//! connection does not die while idle, and its thread runs commands in
//! order, so a transaction a cancelled caller left open is rolled back
//! before the next caller's statement.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyQueryResult, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, ConnectOptions, Executor};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a query waits for a free connection.
pub(super) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long closing waits for connections in use.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub(super) enum Db {
    Pool(AnyPool),
    Held(Arc<Held>),
}

pub(super) struct Held {
    /// Opened on demand, up to `size`, and kept.
    idle: Mutex<Vec<AnyConnection>>,
    /// Connections in all, idle, taken or being opened.
    size: u32,
    /// One permit per connection that may be taken.
    free: Arc<Semaphore>,
    options: AnyConnectOptions,
    setup: &'static str,
    closed: AtomicBool,
}

/// A connection taken for one query or transaction; given back when
/// dropped.
pub(super) enum Conn {
    Pooled(PoolConnection<Any>),
    Held(HeldConn),
}

pub(super) struct HeldConn {
    conn: Option<AnyConnection>,
    held: Arc<Held>,
    /// Released after the connection is back (fields drop after `drop`).
    _permit: OwnedSemaphorePermit,
}

impl Db {
    /// Up to `count` SQLite connections opened with `options`, each set up
    /// by running `setup` (its pragmas); one is opened now, to fail early.
    pub(super) async fn held(
        options: &AnyConnectOptions,
        count: u32,
        setup: &'static str,
    ) -> Result<Db, sqlx::Error> {
        let first = open(options, setup).await?;
        Ok(Db::Held(Arc::new(Held {
            idle: Mutex::new(vec![first]),
            size: count,
            free: Arc::new(Semaphore::new(count as usize)),
            options: options.clone(),
            setup,
            closed: AtomicBool::new(false),
        })))
    }

    pub(super) async fn acquire(&self) -> Result<Conn, sqlx::Error> {
        match self {
            Db::Pool(pool) => pool.acquire().await.map(Conn::Pooled),
            Db::Held(held) => {
                let permit =
                    tokio::time::timeout(ACQUIRE_TIMEOUT, held.free.clone().acquire_owned())
                        .await
                        .map_err(|_| sqlx::Error::PoolTimedOut)?
                        .map_err(|_| sqlx::Error::PoolClosed)?;
                // A permit holder holds one connection at most, so no more
                // than `size` are ever open.
                let idle = lock(&held.idle).pop();
                let conn = match idle {
                    Some(conn) => conn,
                    None => open(&held.options, held.setup).await?,
                };
                Ok(Conn::Held(HeldConn {
                    conn: Some(conn),
                    held: held.clone(),
                    _permit: permit,
                }))
            }
        }
    }

    pub(super) fn is_closed(&self) -> bool {
        match self {
            Db::Pool(pool) => pool.is_closed(),
            Db::Held(held) => held.closed.load(Ordering::Relaxed),
        }
    }

    /// Closes every connection once it is free (waiting at most
    /// [`CLOSE_WAIT`] for those in use); later acquires fail.
    pub(super) async fn close(&self) {
        self.close_within(CLOSE_WAIT).await;
    }

    async fn close_within(&self, wait: Duration) {
        match self {
            Db::Pool(pool) => pool.close().await,
            Db::Held(held) => {
                held.closed.store(true, Ordering::Relaxed);
                // Waits a while for the connections in use to come back; a
                // stuck caller does not hold up the exit.
                let all = held.free.acquire_many(held.size);
                if let Ok(Ok(all)) = tokio::time::timeout(wait, all).await {
                    all.forget();
                }
                held.free.close();
                let conns = std::mem::take(&mut *lock(&held.idle));
                for conn in conns {
                    let _ = sqlx::Connection::close(conn).await;
                }
            }
        }
    }
}

async fn open(
    options: &AnyConnectOptions,
    setup: &'static str,
) -> Result<AnyConnection, sqlx::Error> {
    let mut conn = options.connect().await?;
    conn.execute(setup).await?;
    Ok(conn)
}

impl Drop for HeldConn {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            lock(&self.held.idle).push(conn);
        }
    }
}

impl std::ops::Deref for Conn {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self {
            Conn::Pooled(conn) => conn,
            Conn::Held(held) => held.conn.as_ref().expect("held until dropped"),
        }
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            Conn::Pooled(conn) => conn,
            Conn::Held(held) => held.conn.as_mut().expect("held until dropped"),
        }
    }
}

pub(super) type AnyQuery<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>;

/// A query run on a connection of the store's [`Db`].
pub(super) trait RunOn<'q>: Sized {
    fn execute_on(
        self,
        db: &Db,
    ) -> impl Future<Output = Result<AnyQueryResult, sqlx::Error>> + Send;
    fn fetch_all_on(self, db: &Db)
    -> impl Future<Output = Result<Vec<AnyRow>, sqlx::Error>> + Send;
    fn fetch_optional_on(
        self,
        db: &Db,
    ) -> impl Future<Output = Result<Option<AnyRow>, sqlx::Error>> + Send;
    fn fetch_one_on(self, db: &Db) -> impl Future<Output = Result<AnyRow, sqlx::Error>> + Send;
}

impl<'q> RunOn<'q> for AnyQuery<'q> {
    async fn execute_on(self, db: &Db) -> Result<AnyQueryResult, sqlx::Error> {
        let mut conn = db.acquire().await?;
        self.execute(&mut *conn).await
    }

    async fn fetch_all_on(self, db: &Db) -> Result<Vec<AnyRow>, sqlx::Error> {
        let mut conn = db.acquire().await?;
        self.fetch_all(&mut *conn).await
    }

    async fn fetch_optional_on(self, db: &Db) -> Result<Option<AnyRow>, sqlx::Error> {
        let mut conn = db.acquire().await?;
        self.fetch_optional(&mut *conn).await
    }

    async fn fetch_one_on(self, db: &Db) -> Result<AnyRow, sqlx::Error> {
        let mut conn = db.acquire().await?;
        self.fetch_one(&mut *conn).await
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn one_connection(dir: &tempfile::TempDir) -> Db {
        sqlx::any::install_default_drivers();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("db.sqlite").display()
        );
        let options: AnyConnectOptions = url.parse().unwrap();
        let db = Db::held(&options, 1, "PRAGMA journal_mode = WAL;")
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (v INTEGER)")
            .execute_on(&db)
            .await
            .unwrap();
        db
    }

    async fn count(db: &Db) -> i64 {
        let row = tokio::time::timeout(
            Duration::from_secs(2),
            sqlx::query("SELECT COUNT(*) AS n FROM t").fetch_one_on(db),
        )
        .await
        .expect("the connection came back")
        .unwrap();
        sqlx::Row::get(&row, "n")
    }

    #[tokio::test]
    async fn a_caller_that_goes_away_mid_query_gives_its_connection_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = one_connection(&dir).await;
        for _ in 0..20 {
            let insert = sqlx::query("INSERT INTO t (v) VALUES (1)").execute_on(&db);
            // Polled once, then dropped: cancelled while the statement runs.
            let _ = tokio::time::timeout(Duration::ZERO, insert).await;
        }
        let n = count(&db).await;
        assert!(n <= 20, "{n}");
        sqlx::query("INSERT INTO t (v) VALUES (2)")
            .execute_on(&db)
            .await
            .unwrap();
        assert_eq!(count(&db).await, n + 1);
    }

    #[tokio::test]
    async fn a_transaction_left_open_is_rolled_back_before_the_next_caller() {
        let dir = tempfile::tempdir().unwrap();
        let db = one_connection(&dir).await;
        {
            let mut conn = db.acquire().await.unwrap();
            let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
            sqlx::query("INSERT INTO t (v) VALUES (1)")
                .execute(&mut *tx)
                .await
                .unwrap();
            // Dropped uncommitted, as by a caller that went away.
        }
        assert_eq!(count(&db).await, 0);
        db.close().await;
        assert!(db.is_closed());
        assert!(matches!(db.acquire().await, Err(sqlx::Error::PoolClosed)));
    }

    #[tokio::test]
    async fn closing_does_not_wait_forever_for_a_caller_that_holds_on() {
        let dir = tempfile::tempdir().unwrap();
        let db = one_connection(&dir).await;
        let stuck = db.acquire().await.unwrap();
        let started = std::time::Instant::now();
        db.close_within(Duration::from_millis(100)).await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(matches!(db.acquire().await, Err(sqlx::Error::PoolClosed)));
        drop(stuck);
    }
}
