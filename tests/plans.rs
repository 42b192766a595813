//! Writes find their rows by index. Every statement an import issues (it
//! writes through the same services as GraphQL, webhooks and jobs, and the
//! unit of work's rollup and credit upkeep at commit) is explained by the
//! database, and none may read a whole record table: on a test database a
//! whole-table read costs nothing, on a real one it grows with every lead
//! (an import of 1M leads on SQLite slowed from 234 to 64 leads/s that way).
//!
//! SQLite: `EXPLAIN QUERY PLAN`, no `SCAN` of a record table (with or
//! without an index: both read every row). PostgreSQL: the generic plan
//! (`force_generic_plan`, so no parameter value can hide a bad one) with
//! sequential scans priced out (`enable_seqscan = off`): a `Seq Scan` on a
//! record table means no index can serve the statement.

use crate::db_test;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// Tables that grow with the records (a scan of these is a defect).
const RECORD_TABLES: &[&str] = &[
    "accounts",
    "leads",
    "opportunities",
    "stage_changes",
    "touchpoints",
    "external_ids",
    "attribution_credits",
    "lead_rollup",
    "lead_rollup_segment",
    "handoffs",
    "webhook_events",
    "jobs",
];

/// SQL keywords that can follow a table name where an alias would be.
const NOT_ALIAS: &[&str] = &[
    "where",
    "on",
    "join",
    "left",
    "inner",
    "group",
    "order",
    "limit",
    "set",
    "values",
    "using",
    "union",
    "as",
    "for",
    "returning",
    "default",
    "select",
    "natural",
    "cross",
    "right",
    "full",
];

/// Table (or alias) → record table, read off the statement's FROM/JOIN/
/// UPDATE/INTO clauses.
fn table_names(sql: &str) -> HashMap<String, String> {
    let words: Vec<String> = sql
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(|w| w.to_ascii_lowercase())
        .collect();
    let mut names = HashMap::new();
    for (i, w) in words.iter().enumerate() {
        if !matches!(w.as_str(), "from" | "join" | "update" | "into") {
            continue;
        }
        let Some(table) = words.get(i + 1) else {
            continue;
        };
        if !RECORD_TABLES.contains(&table.as_str()) {
            continue;
        }
        names.insert(table.clone(), table.clone());
        let mut next = i + 2;
        if words.get(next).map(String::as_str) == Some("as") {
            next += 1;
        }
        if let Some(alias) = words.get(next)
            && !NOT_ALIAS.contains(&alias.as_str())
        {
            names.insert(alias.clone(), table.clone());
        }
    }
    names
}

fn explained(sql: &str) -> bool {
    let head = sql.trim_start().to_ascii_uppercase();
    ["SELECT", "WITH", "UPDATE", "DELETE", "INSERT"]
        .iter()
        .any(|k| head.starts_with(k))
}

/// What the database plans for `sql`, one line per plan node.
async fn plan(db: &DatabaseConnection, sql: &str, n: usize) -> Result<Vec<String>, String> {
    match db.get_database_backend() {
        DbBackend::Sqlite => {
            let nulls = vec![sea_orm::Value::String(None); sql.matches('?').count()];
            let rows = db
                .query_all_raw(Statement::from_sql_and_values(
                    DbBackend::Sqlite,
                    format!("EXPLAIN QUERY PLAN {sql}"),
                    nulls,
                ))
                .await
                .map_err(|e| e.to_string())?;
            rows.iter()
                .map(|r| r.try_get::<String>("", "detail").map_err(|e| e.to_string()))
                .collect()
        }
        _ => {
            // The highest `$n` (a multi-row VALUES list binds hundreds).
            let params = sql
                .split('$')
                .skip(1)
                .filter_map(|s| {
                    let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
                    digits.parse::<usize>().ok()
                })
                .max()
                .unwrap_or(0);
            // Read-only: the statement is planned, never run, and rolled back.
            #[allow(clippy::disallowed_methods)]
            let txn = db.begin().await.map_err(|e| e.to_string())?;
            let run = async {
                txn.execute_unprepared(
                    "SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL enable_seqscan = off",
                )
                .await?;
                txn.execute_unprepared(&format!("PREPARE plan_{n} AS {sql}"))
                    .await?;
                let args = vec!["NULL"; params].join(", ");
                let call = if params == 0 {
                    format!("EXPLAIN EXECUTE plan_{n}")
                } else {
                    format!("EXPLAIN EXECUTE plan_{n}({args})")
                };
                let rows = txn
                    .query_all_raw(Statement::from_string(DbBackend::Postgres, call))
                    .await?;
                rows.iter()
                    .map(|r| r.try_get_by_index::<String>(0))
                    .collect::<Result<Vec<_>, _>>()
            };
            let out = run.await.map_err(|e| e.to_string());
            let _ = txn.rollback().await;
            out
        }
    }
}

/// Columns with a handful of values: an index searched on these alone
/// still reads a large share of its table.
const FEW_VALUES: &[&str] = &[
    "record_kind",
    "system",
    "stage",
    "to_stage",
    "status",
    "model",
];

/// The record tables `plan` reads whole, or through an index searched only
/// on columns with few values.
fn scans(backend: DbBackend, sql: &str, plan: &[String]) -> Vec<String> {
    let names = table_names(sql);
    let mut out = Vec::new();
    for node in plan {
        if backend == DbBackend::Sqlite
            && let Some(rest) = node.trim().strip_prefix("SEARCH ")
            && let Some(t) = rest
                .split_whitespace()
                .next()
                .and_then(|t| names.get(&t.to_ascii_lowercase()))
            && let Some(cols) = rest.rsplit_once('(').map(|(_, c)| c.trim_end_matches(')'))
        {
            let searched: Vec<&str> = cols
                .split(" AND ")
                .filter_map(|c| c.split(['=', '>', '<', ' ']).next())
                .collect();
            if !searched.is_empty() && searched.iter().all(|c| FEW_VALUES.contains(c)) {
                out.push(format!("{t}: {}", node.trim()));
            }
        }
        let target = match backend {
            DbBackend::Sqlite => node
                .trim()
                .strip_prefix("SCAN ")
                .and_then(|rest| rest.split_whitespace().next()),
            _ => node
                .split("Seq Scan on ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next()),
        };
        if let Some(t) = target.and_then(|t| names.get(&t.to_ascii_lowercase())) {
            out.push(format!("{t}: {}", node.trim()));
        }
    }
    out
}

/// The start of a long statement, for a readable failure.
fn short(sql: &str) -> String {
    match sql.char_indices().nth(400) {
        Some((i, _)) => format!("{}…", &sql[..i]),
        None => sql.to_owned(),
    }
}

db_test!(import_statements_read_by_index, |app| async move {
    let url = app
        .state
        .config
        .database_url
        .clone()
        .expect("the test app has a database URL");
    let mut db = api::db::connect(&url, Arc::default())
        .await
        .expect("connect");
    let seen: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let sink = seen.clone();
    db.set_metric_callback(move |info| {
        if let Ok(mut s) = sink.lock() {
            s.insert(info.statement.sql.clone());
        }
    });

    let mut file = Vec::new();
    tools::seed::write_jsonl(
        &mut file,
        &tools::seed::SeedOptions {
            leads: 80,
            seed: 5,
            progress: false,
        },
    )
    .await
    .expect("write the import file");
    let opts = api::import::ImportOptions {
        batch_size: 60,
        progress: false,
        currency: "USD".into(),
        parallel: 0,
    };
    // Twice: the second run meets every record already there (updates,
    // locks of existing rows, skipped duplicates).
    for _ in 0..2 {
        let report = api::import::run(&db, std::io::Cursor::new(&file), file.len() as u64, &opts)
            .await
            .expect("import");
        assert!(report.refused.is_empty(), "{:?}", report.refused);
    }

    let statements: Vec<String> = seen
        .lock()
        .map(|s| s.iter().filter(|sql| explained(sql)).cloned().collect())
        .unwrap_or_default();
    assert!(
        statements.len() >= 20,
        "too few statements seen: {statements:?}"
    );
    let backend = db.get_database_backend();
    // Plans for a big database: SQLite plans a fresh import (no statistics
    // yet) by its defaults, which assume big tables; the statistics of this
    // small one would make a scan look cheap. (PostgreSQL prices scans out
    // instead, see `plan`.)
    db.close().await.ok();
    if backend == DbBackend::Sqlite {
        let admin = sea_orm::Database::connect(&url).await.expect("connect");
        admin
            .execute_unprepared("DROP TABLE IF EXISTS sqlite_stat1")
            .await
            .expect("drop the statistics");
        admin.close().await.ok();
    }
    let db = sea_orm::Database::connect(
        sea_orm::ConnectOptions::new(url.clone())
            .max_connections(1)
            .to_owned(),
    )
    .await
    .expect("connect");
    let mut failures = Vec::new();
    let mut unexplained = Vec::new();
    for (n, sql) in statements.iter().enumerate() {
        match plan(&db, sql, n).await {
            Ok(p) => {
                for scan in scans(backend, sql, &p) {
                    failures.push(format!("{scan}\n    in: {}", short(sql)));
                }
            }
            Err(e) => unexplained.push(format!("{e}\n    in: {}", short(sql))),
        }
    }
    assert!(
        failures.is_empty(),
        "statements that read a whole table:\n{}",
        failures.join("\n")
    );
    // A statement PostgreSQL cannot prepare with untyped NULLs is the only
    // excuse, and it must stay rare.
    assert!(
        unexplained.len() * 10 <= statements.len(),
        "{} of {} statements could not be explained:\n{}",
        unexplained.len(),
        statements.len(),
        unexplained.join("\n")
    );
    db.close().await.ok();
});
