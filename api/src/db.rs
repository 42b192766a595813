//! Connecting, migrating, and the few places the two backends differ.

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counts the SQL statements a connection issues (used by tests and benches).
#[derive(Debug, Default)]
pub struct StatementCounter(AtomicU64);

impl StatementCounter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Settings of Lockstep's PostgreSQL sessions (see docs/benchmarks.md):
/// medians sort a cohort's durations (kept in memory), lookups by index are
/// cheap on SSDs, and JIT costs more than it saves.
pub const PG_SESSION: [(&str, &str); 3] = [
    ("work_mem", "32MB"),
    ("random_page_cost", "1.1"),
    ("jit", "off"),
];

/// The metric statements' sessions add one: a prepared statement's generic
/// plan guesses a period's size (a fixed 0.5% of the rows) and loses
/// parallel scans: 2.5× slower metrics after the fifth run on a connection.
/// Planning each time costs far less than that there, but it is pure cost
/// for the records' lookups by id, which keep the default plan cache.
pub const PG_METRIC_SESSION: [(&str, &str); 4] = [
    PG_SESSION[0],
    PG_SESSION[1],
    PG_SESSION[2],
    ("plan_cache_mode", "force_custom_plan"),
];

/// Which statements a pool serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// Records, writes, everything but the metrics.
    Main,
    /// The metric statements (PostgreSQL: planned for each period).
    Metrics,
    /// A bulk load (`lockstep import`, `lockstep seed`): as `Main`, but on
    /// SQLite each connection keeps a page cache of `BULK_SQLITE_CACHE_KIB`
    /// instead of SQLite's 2 MB default, so the indexes a million-lead load
    /// probes stay in memory instead of being read back page by page.
    Bulk,
}

/// The page cache of each SQLite connection of a bulk load, in KiB (a
/// negative `cache_size` is KiB): 256 MiB. Only pages read are allocated.
pub const BULK_SQLITE_CACHE_KIB: u32 = 256 * 1024;

/// Connects to `url` (`sqlite://…` or `postgres://…`): the main pool.
pub async fn connect(
    url: &str,
    counter: Arc<StatementCounter>,
) -> Result<DatabaseConnection, DbErr> {
    connect_pool(url, counter, Pool::Main).await
}

/// Connects for a bulk load: see `Pool::Bulk`.
pub async fn connect_bulk(
    url: &str,
    counter: Arc<StatementCounter>,
) -> Result<DatabaseConnection, DbErr> {
    connect_pool(url, counter, Pool::Bulk).await
}

/// The pool the metric statements use, beside `main` (and counted by the
/// same counter). PostgreSQL: a second, smaller pool whose sessions plan
/// every statement for its own parameters. SQLite: `main` itself (it has no
/// plan cache to tune, and one pool keeps one view of the file).
pub async fn connect_metrics(
    url: &str,
    main: &DatabaseConnection,
    counter: Arc<StatementCounter>,
) -> Result<DatabaseConnection, DbErr> {
    if is_postgres(main) {
        connect_pool(url, counter, Pool::Metrics).await
    } else {
        Ok(main.clone())
    }
}

/// How long a pooled connection may sit idle before it is checked (pinged)
/// on its next checkout. Firewalls, proxies and server restarts drop
/// connections that sat idle; one in steady use is not pinged at all.
pub const IDLE_CHECK: Duration = Duration::from_secs(10);

async fn connect_pool(
    url: &str,
    counter: Arc<StatementCounter>,
    pool: Pool,
) -> Result<DatabaseConnection, DbErr> {
    let is_sqlite = url.starts_with("sqlite:");
    let mut options = ConnectOptions::new(url.to_owned());
    let max = match (is_sqlite, pool) {
        (true, _) => 8,
        (false, Pool::Main | Pool::Bulk) => 16,
        (false, Pool::Metrics) => 8,
    };
    options
        .sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .max_connections(max)
        .min_connections(1)
        // sqlx pings a pooled connection on every checkout by default: one
        // more round trip (and a wake-up of the PostgreSQL backend) for every
        // statement. Only a connection idle long enough to have been dropped
        // by the server or a proxy is checked now; a hot one goes straight
        // to its statement (`IDLE_CHECK`).
        .test_before_acquire_if_idle_for(IDLE_CHECK);
    if is_sqlite {
        // WAL lets readers run beside the one writer; foreign keys on; writers
        // wait for each other instead of failing.
        options.map_sqlx_sqlite_opts(move |o| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            let o = o
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            if pool == Pool::Bulk {
                o.pragma("cache_size", format!("-{BULK_SQLITE_CACHE_KIB}"))
            } else {
                o
            }
        });
    }
    if !is_sqlite {
        options.map_sqlx_postgres_opts(move |o| match pool {
            Pool::Main | Pool::Bulk => o.options(PG_SESSION),
            Pool::Metrics => o.options(PG_METRIC_SESSION),
        });
    }
    let mut db = Database::connect(options).await?;
    db.set_metric_callback(move |info| {
        counter.0.fetch_add(1, Ordering::Relaxed);
        crate::telemetry::statement_ran(info);
    });
    Ok(db)
}

/// Leaves fresh planner statistics for every table after a bulk load (the
/// seed, an import): PostgreSQL `VACUUM (ANALYZE)` — which also marks the
/// pages all-visible, so index-only scans work at once even with autovacuum
/// off — and SQLite `ANALYZE` (fills `sqlite_stat1`). `VACUUM` cannot run
/// inside a transaction: call this on the plain connection (the pool), never
/// on a transaction.
pub async fn refresh_statistics(db: &DatabaseConnection) -> Result<(), DbErr> {
    let sql = if is_postgres(db) {
        "VACUUM (ANALYZE)"
    } else {
        "ANALYZE"
    };
    db.execute_unprepared(sql).await?;
    Ok(())
}

pub fn is_postgres(db: &impl ConnectionTrait) -> bool {
    db.get_database_backend() == DbBackend::Postgres
}

/// Begins a transaction that will write, for maintenance outside the records
/// (rollup rebuilds, the seed's bulk load): every write to the records goes
/// through `uow::run`, which begins its own. On SQLite it takes the write
/// lock at `BEGIN` (`IMMEDIATE`), so concurrent writers wait their turn (up
/// to the busy timeout) instead of failing when one that read first tries to
/// write; PostgreSQL ignores the mode.
pub async fn begin_write<C: TransactionTrait>(db: &C) -> Result<C::Transaction, DbErr> {
    #[allow(clippy::disallowed_methods)]
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}
