//! Where the store's queries run: a sqlx pool for PostgreSQL, and for
//! SQLite a fixed set of connections the store holds itself.
//!
//! sqlx's pool tests every connection it takes back: after each query it
//! spawns a task that pings the connection before it is idle again. On
//! PostgreSQL that keeps dead server connections out. On SQLite each
//! connection is a thread of sqlx's that runs its statements, so the ping
//! was a second round trip between threads per query, on top of the
//! query's own, and a chat turn's nine statements woke threads about 50
//! times, the largest part of its CPU on these machines (see
//! docs/PERFORMANCE.md). A SQLite file connection does not die while idle,
//! and its thread runs commands in order, so a transaction a cancelled
//! caller left open is rolled back before the next caller's statement.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyQueryResult, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, ConnectOptions, Executor};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a query waits for a free connection.
pub(super) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub(super) enum Db {
    Pool(AnyPool),
    Held(Arc<Held>),
}

pub(super) struct Held {
    idle: Mutex<Vec<AnyConnection>>,
    /// Connections in all, idle or taken.
    size: u32,
    /// One permit per idle connection.
    free: Arc<Semaphore>,
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
    /// `count` SQLite connections opened with `options`, each set up by
    /// running `setup` (its pragmas).
    pub(super) async fn held(
        options: &AnyConnectOptions,
        count: usize,
        setup: &'static str,
    ) -> Result<Db, sqlx::Error> {
        let mut idle = Vec::with_capacity(count);
        for _ in 0..count {
            let mut conn = options.connect().await?;
            conn.execute(setup).await?;
            idle.push(conn);
        }
        Ok(Db::Held(Arc::new(Held {
            idle: Mutex::new(idle),
            size: count as u32,
            free: Arc::new(Semaphore::new(count)),
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
                let conn = lock(&held.idle)
                    .pop()
                    .expect("a free permit stands for an idle connection");
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

    /// Closes every connection once it is free; later acquires fail.
    pub(super) async fn close(&self) {
        match self {
            Db::Pool(pool) => pool.close().await,
            Db::Held(held) => {
                held.closed.store(true, Ordering::Relaxed);
                // Waits for the connections in use to come back.
                if let Ok(all) = held.free.acquire_many(held.size).await {
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
