//! Live hand-off events for the `handoffs` subscription.
//!
//! A unit of work that creates or answers a hand-off notes it
//! ([`crate::uow::Work::note_handoff`]); when the unit commits:
//! - on PostgreSQL it has sent `pg_notify('lockstep_handoffs', id)` inside
//!   its transaction, which PostgreSQL delivers to every listening session
//!   once (and only if) the transaction commits — so every replica hears
//!   every hand-off. Each process keeps one `LISTEN` connection per
//!   database while it has subscribers, reads the hand-off by id and passes
//!   it to its subscribers;
//! - on SQLite (one process owns the file) it is passed to this process's
//!   subscribers directly, after the commit.

use entity::handoff;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, EntityTrait, Statement,
};
use std::collections::HashMap;
use std::sync::OnceLock;
use tokio::sync::{Mutex, broadcast, oneshot};

/// The PostgreSQL notification channel.
pub const CHANNEL: &str = "lockstep_handoffs";

/// Events a slow subscriber may fall behind by before it skips some.
const CAPACITY: usize = 1024;

type Buses = Mutex<HashMap<String, broadcast::Sender<handoff::Model>>>;

fn buses() -> &'static Buses {
    static BUSES: OnceLock<Buses> = OnceLock::new();
    BUSES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Which database a connection writes to (events never cross databases).
pub fn key(db: &DatabaseConnection) -> String {
    use sea_orm::DatabaseConnectionType as Kind;
    match &db.inner {
        Kind::SqlxSqlitePoolConnection(_) => format!(
            "sqlite:{}",
            db.get_sqlite_connection_pool()
                .connect_options()
                .get_filename()
                .display()
        ),
        Kind::SqlxPostgresPoolConnection(_) => {
            let o = db.get_postgres_connection_pool().connect_options();
            format!(
                "postgres:{}:{}/{}",
                o.get_host(),
                o.get_port(),
                o.get_database().unwrap_or_default()
            )
        }
        _ => String::new(),
    }
}

/// Inside a committing PostgreSQL transaction: one notification per hand-off.
pub async fn notify(
    txn: &DatabaseTransaction,
    events: &[handoff::Model],
) -> Result<(), sea_orm::DbErr> {
    for h in events {
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [CHANNEL.into(), h.id.to_string().into()],
        ))
        .await?;
    }
    Ok(())
}

/// After a SQLite commit: to this process's subscribers of that database.
pub async fn publish(key: &str, events: Vec<handoff::Model>) {
    if events.is_empty() {
        return;
    }
    let map = buses().lock().await;
    if let Some(tx) = map.get(key) {
        for h in events {
            let _ = tx.send(h);
        }
    }
}

/// Subscribes to the hand-offs of `db` created or answered from now on. On
/// PostgreSQL it returns once this process listens to the database.
pub async fn subscribe(db: &DatabaseConnection) -> broadcast::Receiver<handoff::Model> {
    let key = key(db);
    let mut map = buses().lock().await;
    if let Some(tx) = map.get(&key) {
        return tx.subscribe();
    }
    let (tx, rx) = broadcast::channel(CAPACITY);
    if matches!(
        db.inner,
        sea_orm::DatabaseConnectionType::SqlxPostgresPoolConnection(_)
    ) {
        let (ready_tx, ready_rx) = oneshot::channel();
        tokio::spawn(listen(db.clone(), key.clone(), tx.clone(), ready_tx));
        if ready_rx.await.is_err() {
            // LISTEN failed (logged): this subscriber hears nothing; the next one tries again.
            return rx;
        }
    }
    map.insert(key, tx);
    rx
}

/// One process's `LISTEN` for one database, while it has subscribers.
async fn listen(
    db: DatabaseConnection,
    key: String,
    tx: broadcast::Sender<handoff::Model>,
    ready: oneshot::Sender<()>,
) {
    use sea_orm::sqlx::postgres::PgListener;
    let mut ready = Some(ready);
    let result: Result<(), sea_orm::sqlx::Error> = async {
        let mut listener = PgListener::connect_with(db.get_postgres_connection_pool()).await?;
        listener.listen(CHANNEL).await?;
        if let Some(r) = ready.take() {
            let _ = r.send(());
        }
        loop {
            // Wake now and then to notice that every subscriber left.
            let next =
                tokio::time::timeout(std::time::Duration::from_secs(5), listener.recv()).await;
            {
                let mut map = buses().lock().await;
                if tx.receiver_count() == 0 {
                    if map.get(&key).is_some_and(|t| t.same_channel(&tx)) {
                        map.remove(&key);
                    }
                    return Ok(());
                }
            }
            let Ok(n) = next else { continue };
            let n = n?;
            let Ok(id) = uuid::Uuid::parse_str(n.payload()) else {
                continue;
            };
            match handoff::Entity::find_by_id(id).one(&db).await {
                Ok(Some(h)) => {
                    let _ = tx.send(h);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "hand-off event not read"),
            }
        }
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "hand-off listener stopped");
        let mut map = buses().lock().await;
        if map.get(&key).is_some_and(|t| t.same_channel(&tx)) {
            map.remove(&key);
        }
    }
}
