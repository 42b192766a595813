//! Rollups: what the heaviest metrics would otherwise recompute from millions
//! of rows on every request, kept in step with the records by the services,
//! inside the transaction of each write that changes them (tables in
//! migration 6):
//! - `attribution_credits`: the credit each won opportunity gives each
//!   campaign under every model; written when it is won and rewritten when
//!   its amount, its lead's touches or its lead's MQL entry change;
//! - `lead_rollup` and `lead_rollup_segment`: per day of creation and per
//!   source, campaign, team and owner (the first) or per account segment and
//!   target flag (the second), the funnel counts of the leads created that
//!   day;
//! - `lead_rollup_bi`: the same counts per day, source, campaign, team and
//!   account segment — the grouping of the BI views `bi_funnel_daily` and
//!   `bi_closed_loop`, which read it instead of the leads (migration 20);
//! - `lead_rollup_closed_loop`: the same counts per day, source, campaign
//!   and account segment — the rows of `bi_closed_loop` (migration 23);
//! - `lead_timings` and `lead_timing_rollup`: the durations the funnel's and
//!   speed to lead's medians are taken over (`super::timings`, migration 22).
//!
//! `rebuild` recomputes both from the records (the seed, and `ensure` when a
//! database's rollups predate this code); a test compares the rollups that
//! writes kept with a rebuild.

use super::sql::Sql;
use crate::error::AppResult;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, TransactionSession, TransactionTrait};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The rollups' definition version: raise it when what they hold changes,
/// and every database rebuilds them on its next start.
pub const VERSION: i64 = 5;

/// The models credits are kept for, as stored.
pub const MODELS: [&str; 4] = ["FIRST_TOUCH", "LAST_TOUCH", "LINEAR", "W_SHAPED"];

/// Which won opportunities a credit refresh concerns.
#[derive(Debug, Clone)]
pub enum Won {
    All,
    /// These opportunities, and those that came from these leads.
    Some {
        opps: Vec<Uuid>,
        leads: Vec<Uuid>,
    },
}

impl Won {
    /// ` AND …` over `opportunities o`.
    fn condition(&self, q: &mut Sql) {
        match self {
            Won::All => {}
            // No constant `1 = 0 OR …` opener: SQLite does not fold it away,
            // and an OR with a constant term scans the whole table (every
            // term of an OR must be indexable for SQLite to use the indexes).
            Won::Some { opps, leads } => match (opps.is_empty(), leads.is_empty()) {
                (true, true) => {
                    q.push(" AND 1 = 0");
                }
                (false, true) => {
                    q.push(" AND o.id IN ").bind_list(opps.iter().copied());
                }
                (true, false) => {
                    q.push(" AND o.lead_id IN ")
                        .bind_list(leads.iter().copied());
                }
                (false, false) => {
                    q.push(" AND (o.id IN ").bind_list(opps.iter().copied());
                    q.push(" OR o.lead_id IN ").bind_list(leads.iter().copied());
                    q.push(")");
                }
            },
        }
    }
}

/// `INSERT`s the credits of the won opportunities in `scope`, per model.
///
/// Per opportunity, over its lead's touches before it was created (ordered
/// by time, then id): rank `rn` of `n`, and `mrn`, the rank of the last touch
/// at or before the lead first entered MQL (`n` when there is none). Each
/// row is `units / d` storage units and `shares / d` opportunities.
fn insert_credits(q: &mut Sql, scope: &Won) {
    q.push(
        "WITH won AS (SELECT o.id, o.amount, o.lead_id, o.created_at, o.closed_at FROM opportunities o \
         WHERE o.stage = 'CLOSED_WON' AND o.closed_at IS NOT NULL",
    );
    scope.condition(q);
    let k = "(n - (CASE WHEN mrn = 1 OR mrn = n THEN 0 ELSE 1 END) - (CASE WHEN n = 1 THEN 1 ELSE 2 END))";
    q.push(&format!(
        "), t AS (SELECT w.id AS opp, w.amount, w.closed_at, tp.campaign_id, tp.occurred_at, w.lead_id, \
         ROW_NUMBER() OVER (PARTITION BY w.id ORDER BY tp.occurred_at, tp.id) AS rn, \
         COUNT(*) OVER (PARTITION BY w.id) AS n \
         FROM won w JOIN touchpoints tp ON tp.lead_id = w.lead_id AND tp.occurred_at < w.created_at), \
         mql AS (SELECT sc.lead_id, MIN(sc.at) AS at FROM stage_changes sc \
         WHERE sc.to_stage = 'MQL' AND sc.lead_id IN (SELECT lead_id FROM won) GROUP BY sc.lead_id), \
         m AS (SELECT t.opp, MAX(t.rn) AS mrn FROM t JOIN mql ON mql.lead_id = t.lead_id \
         WHERE t.occurred_at <= mql.at GROUP BY t.opp), \
         roles AS (SELECT t.opp, t.amount, t.closed_at, t.campaign_id, t.rn, t.n, COALESCE(m.mrn, t.n) AS mrn \
         FROM t LEFT JOIN m ON m.opp = t.opp), \
         w_roles AS (SELECT roles.*, \
         (CASE WHEN rn = 1 THEN 3 ELSE 0 END) + (CASE WHEN rn = n THEN 3 ELSE 0 END) + (CASE WHEN rn = mrn THEN 3 ELSE 0 END) \
         + (CASE WHEN rn = n AND {k} = 0 THEN 1 ELSE 0 END) AS tenths FROM roles) \
         INSERT INTO attribution_credits (opportunity_id, model, closed_at, campaign_id, d, units, shares) \
         SELECT opp, 'FIRST_TOUCH', closed_at, campaign_id, 1, amount, 1 FROM roles WHERE rn = 1 \
         UNION ALL SELECT opp, 'LAST_TOUCH', closed_at, campaign_id, 1, amount, 1 FROM roles WHERE rn = n \
         UNION ALL SELECT opp, 'LINEAR', closed_at, campaign_id, n, SUM(amount), COUNT(*) FROM roles \
         GROUP BY opp, closed_at, campaign_id, n \
         UNION ALL SELECT opp, 'W_SHAPED', closed_at, campaign_id, 10, SUM(amount * tenths), SUM(tenths) FROM w_roles \
         WHERE tenths > 0 GROUP BY opp, closed_at, campaign_id \
         UNION ALL SELECT opp, 'W_SHAPED', closed_at, campaign_id, 10 * {k}, SUM(amount), COUNT(*) FROM roles \
         WHERE rn <> 1 AND rn <> n AND rn <> mrn GROUP BY opp, closed_at, campaign_id, n, mrn"
    ));
    // Revenue with no touch before the opportunity: unattributed, every model.
    for model in MODELS {
        q.push(&format!(
            " UNION ALL SELECT w.id, '{model}', w.closed_at, NULL, 1, w.amount, 1 FROM won w \
             WHERE NOT EXISTS (SELECT 1 FROM t WHERE t.opp = w.id)"
        ));
    }
}

/// Rewrites the credits of the won opportunities in `scope`, in the
/// transaction of a write that changed them (the unit of work calls it at
/// commit).
pub async fn refresh_credits(db: &impl ConnectionTrait, scope: Won) -> AppResult<()> {
    let backend = db.get_database_backend();
    // Only won opportunities have credits, and closed ones stay closed: with
    // none in scope (a touch or an MQL entry of a lead not yet won, the
    // usual case) there is nothing to rewrite. On PostgreSQL, writers of the
    // same won opportunities take turns: the second one recomputes from what
    // the first committed.
    let mut won = Sql::new(backend);
    // On SQLite `+` keeps the stage index out of it: searched on the stage
    // alone it reads every won opportunity; the ids and leads in scope are
    // the few rows to read.
    won.push(if backend == DbBackend::Sqlite {
        "SELECT o.id FROM opportunities o WHERE +o.stage = 'CLOSED_WON'"
    } else {
        "SELECT o.id FROM opportunities o WHERE o.stage = 'CLOSED_WON'"
    });
    scope.condition(&mut won);
    won.push(" ORDER BY o.id");
    if backend == DbBackend::Postgres {
        won.push(" FOR UPDATE");
    }
    if db.query_all_raw(won.statement()).await?.is_empty() {
        return Ok(());
    }
    let mut del = Sql::new(backend);
    del.push("DELETE FROM attribution_credits WHERE opportunity_id IN (SELECT o.id FROM opportunities o WHERE 1 = 1");
    scope.condition(&mut del);
    del.push(")");
    db.execute_raw(del.statement()).await?;
    let mut ins = Sql::new(backend);
    insert_credits(&mut ins, &scope);
    db.execute_raw(ins.statement()).await?;
    Ok(())
}

/// The nil UUID: "none" in `lead_rollup`'s key.
fn none_id(q: &Sql, col: &str) -> String {
    match q.backend {
        DbBackend::Postgres => {
            format!("COALESCE({col}, '00000000-0000-0000-0000-000000000000'::uuid)")
        }
        _ => format!("COALESCE({col}, X'00000000000000000000000000000000')"),
    }
}

/// The UTC day of a timestamp column, as `lead_rollup.day` stores it.
fn day_of(backend: DbBackend, col: &str) -> String {
    match backend {
        DbBackend::Postgres => format!("CAST({col} AT TIME ZONE 'UTC' AS DATE)"),
        _ => format!("date({col})"),
    }
}

/// The tables of lead counts, and what each is keyed by besides the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadTable {
    /// `lead_rollup`: source, campaign, team, owner.
    ByOwner,
    /// `lead_rollup_segment`: the account's segment and target flag.
    BySegment,
    /// `lead_rollup_bi`: source, campaign, team and the account's segment.
    Bi,
    /// `lead_rollup_closed_loop`: source, campaign and the account's segment.
    ClosedLoop,
}

impl LeadTable {
    /// Every table, in the order writes lock their rows.
    pub const ALL: [LeadTable; 4] = [
        LeadTable::ByOwner,
        LeadTable::BySegment,
        LeadTable::Bi,
        LeadTable::ClosedLoop,
    ];
}

impl LeadTable {
    pub fn name(self) -> &'static str {
        match self {
            LeadTable::ByOwner => "lead_rollup",
            LeadTable::BySegment => "lead_rollup_segment",
            LeadTable::Bi => "lead_rollup_bi",
            LeadTable::ClosedLoop => "lead_rollup_closed_loop",
        }
    }

    /// (key columns, their values for a lead `l` with account `a`).
    fn key(self, q: &Sql) -> (&'static str, String) {
        match self {
            LeadTable::ByOwner => (
                "source, campaign_id, team_id, owner_id",
                format!(
                    "l.source, {}, {}, {}",
                    none_id(q, "l.campaign_id"),
                    none_id(q, "l.team_id"),
                    none_id(q, "l.owner_id")
                ),
            ),
            LeadTable::BySegment => (
                "segment, is_target",
                "COALESCE(a.segment, 'NONE'), CASE WHEN a.id IS NULL THEN -1 WHEN a.is_target THEN 1 ELSE 0 END"
                    .to_owned(),
            ),
            LeadTable::Bi => (
                "source, campaign_id, team_id, segment",
                format!(
                    "l.source, {}, {}, COALESCE(a.segment, 'NONE')",
                    none_id(q, "l.campaign_id"),
                    none_id(q, "l.team_id"),
                ),
            ),
            LeadTable::ClosedLoop => (
                "source, campaign_id, segment",
                format!(
                    "l.source, {}, COALESCE(a.segment, 'NONE')",
                    none_id(q, "l.campaign_id"),
                ),
            ),
        }
    }
}

/// The counts every lead table keeps, in their column order.
pub const COUNTS: [&str; 8] = [
    "leads",
    "mqls",
    "sals",
    "sqls",
    "converted",
    "opportunities",
    "won",
    "won_amount",
];

/// `SELECT`s of the counts over `leads l` (with `o`, its opportunity).
fn count_exprs() -> String {
    let won = "CASE WHEN o.stage = 'CLOSED_WON' THEN";
    format!(
        "CAST(COUNT(*) AS BIGINT), CAST(COUNT(l.mql_at) AS BIGINT), CAST(COUNT(l.sal_at) AS BIGINT), \
         CAST(COUNT(l.sql_at) AS BIGINT), CAST(COUNT(l.converted_at) AS BIGINT), \
         CAST(COUNT(l.converted_opportunity_id) AS BIGINT), \
         CAST(SUM({won} 1 ELSE 0 END) AS BIGINT), CAST(SUM({won} o.amount ELSE 0 END) AS BIGINT)"
    )
}

/// Fills the lead tables from every lead (they are empty).
async fn insert_all_leads(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    for table in LeadTable::ALL {
        let q = Sql::new(backend);
        let name = table.name();
        let (key_cols, key) = table.key(&q);
        let groups = (1..=key_cols.split(',').count() + 1)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO {name} (day, {key_cols}, {cols}) SELECT {day}, {key}, {counts} \
             FROM leads l LEFT JOIN opportunities o ON o.id = l.converted_opportunity_id \
             LEFT JOIN accounts a ON a.id = l.account_id GROUP BY {groups}",
            cols = COUNTS.join(", "),
            day = day_of(backend, "l.created_at"),
            counts = count_exprs(),
        );
        db.execute_raw(Statement::from_string(backend, sql)).await?;
    }
    Ok(())
}

/// A row of the lead tables: the table and its key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum RollupKey {
    /// `lead_rollup` ("none" is the nil UUID).
    ByOwner {
        day: String,
        source: String,
        campaign_id: Uuid,
        team_id: Uuid,
        owner_id: Uuid,
    },
    /// `lead_rollup_segment` (`NONE` and -1 without an account).
    BySegment {
        day: String,
        segment: String,
        is_target: i16,
    },
    /// `lead_rollup_bi` (nil UUID and `NONE` for none).
    Bi {
        day: String,
        source: String,
        campaign_id: Uuid,
        team_id: Uuid,
        segment: String,
    },
    /// `lead_rollup_closed_loop` (nil UUID and `NONE` for none).
    ClosedLoop {
        day: String,
        source: String,
        campaign_id: Uuid,
        segment: String,
    },
}

/// What some leads contribute to the lead tables, per row (in key order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contributions(BTreeMap<RollupKey, [i64; 8]>);

impl Contributions {
    pub fn add(&mut self, other: &Contributions) {
        for (k, v) in &other.0 {
            let row = self.0.entry(k.clone()).or_insert([0; 8]);
            for (a, b) in row.iter_mut().zip(v) {
                *a += b;
            }
        }
    }

    /// `self - other`, without the rows that do not change.
    pub fn minus(&self, other: &Contributions) -> Contributions {
        let mut out = self.clone();
        for (k, v) in &other.0 {
            let row = out.0.entry(k.clone()).or_insert([0; 8]);
            for (a, b) in row.iter_mut().zip(v) {
                *a -= b;
            }
        }
        out.0.retain(|_, v| v.iter().any(|x| *x != 0));
        out
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Which leads a snapshot reads: those in `leads` or of an account in
/// `accounts`, but not those in `except_leads` nor of an account in
/// `except_accounts` (already counted by an earlier snapshot).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub leads: Vec<Uuid>,
    pub accounts: Vec<Uuid>,
    pub except_leads: Vec<Uuid>,
    pub except_accounts: Vec<Uuid>,
}

impl Scope {
    fn condition(&self, q: &mut Sql) {
        // Without a constant `1 = 0 OR …` opener (see `Won::condition`):
        // SQLite would scan every lead.
        match (self.leads.is_empty(), self.accounts.is_empty()) {
            (true, true) => {
                q.push(" WHERE 1 = 0");
            }
            (false, true) => {
                q.push(" WHERE l.id IN ")
                    .bind_list(self.leads.iter().copied());
            }
            (true, false) => {
                q.push(" WHERE l.account_id IN ")
                    .bind_list(self.accounts.iter().copied());
            }
            (false, false) => {
                q.push(" WHERE (l.id IN ")
                    .bind_list(self.leads.iter().copied());
                q.push(" OR l.account_id IN ")
                    .bind_list(self.accounts.iter().copied());
                q.push(")");
            }
        }
        if !self.except_leads.is_empty() {
            q.push(" AND l.id NOT IN ")
                .bind_list(self.except_leads.iter().copied());
        }
        if !self.except_accounts.is_empty() {
            q.push(" AND (l.account_id IS NULL OR l.account_id NOT IN ")
                .bind_list(self.except_accounts.iter().copied());
            q.push(")");
        }
    }
}

/// What the leads in `scope` contribute to the lead tables, as they stand
/// in this transaction (one statement; the database groups and counts).
pub async fn contributions(db: &impl ConnectionTrait, scope: &Scope) -> AppResult<Contributions> {
    let backend = db.get_database_backend();
    let mut q = Sql::new(backend);
    let day = match backend {
        DbBackend::Postgres => format!("CAST({} AS TEXT)", day_of(backend, "l.created_at")),
        _ => day_of(backend, "l.created_at"),
    };
    let from = "FROM leads l LEFT JOIN opportunities o ON o.id = l.converted_opportunity_id \
                LEFT JOIN accounts a ON a.id = l.account_id";
    let counts = count_exprs();
    let (_, owner_key) = LeadTable::ByOwner.key(&q);
    let (_, segment_key) = LeadTable::BySegment.key(&q);
    q.push(&format!(
        "SELECT 0 AS t, {day} AS day, {owner_key}, NULL AS segment, NULL AS is_target, {counts} {from}"
    ));
    scope.condition(&mut q);
    q.push(&format!(
        " GROUP BY 2, 3, 4, 5, 6 UNION ALL \
         SELECT 1 AS t, {day} AS day, NULL, NULL, NULL, NULL, {segment_key}, {counts} {from}"
    ));
    scope.condition(&mut q);
    // `lead_rollup_bi`'s key in the same columns: source, campaign and team
    // where `lead_rollup` has them, the segment where `lead_rollup_segment`
    // has it.
    q.push(&format!(
        " GROUP BY 2, 7, 8 UNION ALL \
         SELECT 2 AS t, {day} AS day, l.source, {campaign}, {team}, NULL, COALESCE(a.segment, 'NONE'), NULL, \
         {counts} {from}",
        campaign = none_id(&q, "l.campaign_id"),
        team = none_id(&q, "l.team_id"),
    ));
    scope.condition(&mut q);
    q.push(&format!(
        " GROUP BY 2, 3, 4, 5, 7 UNION ALL \
         SELECT 3 AS t, {day} AS day, l.source, {campaign}, NULL, NULL, COALESCE(a.segment, 'NONE'), NULL, \
         {counts} {from}",
        campaign = none_id(&q, "l.campaign_id"),
    ));
    scope.condition(&mut q);
    q.push(" GROUP BY 2, 3, 4, 7");
    let rows = db.query_all_raw(q.statement()).await?;
    let mut out = Contributions::default();
    for row in rows {
        let t: i32 = row.try_get_by_index(0)?;
        let day: String = row.try_get_by_index(1)?;
        let key = match t {
            0 => RollupKey::ByOwner {
                day,
                source: row.try_get_by_index(2)?,
                campaign_id: row.try_get_by_index(3)?,
                team_id: row.try_get_by_index(4)?,
                owner_id: row.try_get_by_index(5)?,
            },
            1 => {
                let is_target: i32 = row.try_get_by_index(7)?;
                RollupKey::BySegment {
                    day,
                    segment: row.try_get_by_index(6)?,
                    is_target: i16::try_from(is_target).unwrap_or(-1),
                }
            }
            2 => RollupKey::Bi {
                day,
                source: row.try_get_by_index(2)?,
                campaign_id: row.try_get_by_index(3)?,
                team_id: row.try_get_by_index(4)?,
                segment: row.try_get_by_index(6)?,
            },
            _ => RollupKey::ClosedLoop {
                day,
                source: row.try_get_by_index(2)?,
                campaign_id: row.try_get_by_index(3)?,
                segment: row.try_get_by_index(6)?,
            },
        };
        let mut counts = [0i64; 8];
        for (i, c) in counts.iter_mut().enumerate() {
            *c = row.try_get_by_index(8 + i)?;
        }
        let entry = out.0.entry(key).or_insert([0; 8]);
        for (a, b) in entry.iter_mut().zip(counts) {
            *a += b;
        }
    }
    Ok(out)
}

/// Adds `delta` to the lead tables, row by row in key order (so that
/// writers of crossed keys lock the rows in one order), a few hundred rows
/// per statement.
pub async fn apply(db: &impl ConnectionTrait, delta: &Contributions) -> AppResult<()> {
    let backend = db.get_database_backend();
    for table in LeadTable::ALL {
        let rows: Vec<(&RollupKey, &[i64; 8])> = delta
            .0
            .iter()
            .filter(|(k, _)| {
                matches!(
                    (table, k),
                    (LeadTable::ByOwner, RollupKey::ByOwner { .. })
                        | (LeadTable::BySegment, RollupKey::BySegment { .. })
                        | (LeadTable::Bi, RollupKey::Bi { .. })
                        | (LeadTable::ClosedLoop, RollupKey::ClosedLoop { .. })
                )
            })
            .collect();
        for chunk in rows.chunks(500) {
            let q0 = Sql::new(backend);
            let name = table.name();
            let (key_cols, _) = table.key(&q0);
            let mut q = Sql::new(backend);
            q.push(&format!(
                "INSERT INTO {name} (day, {key_cols}, {}) VALUES ",
                COUNTS.join(", ")
            ));
            for (i, (key, counts)) in chunk.iter().enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                q.push("(");
                match key {
                    RollupKey::ByOwner {
                        day: d,
                        source,
                        campaign_id,
                        team_id,
                        owner_id,
                    } => {
                        q.bind_date(d);
                        q.push(", ").bind(source.clone());
                        q.push(", ").bind(*campaign_id);
                        q.push(", ").bind(*team_id);
                        q.push(", ").bind(*owner_id);
                    }
                    RollupKey::BySegment {
                        day: d,
                        segment,
                        is_target,
                    } => {
                        q.bind_date(d);
                        q.push(", ").bind(segment.clone());
                        q.push(", ").bind(*is_target);
                    }
                    RollupKey::Bi {
                        day: d,
                        source,
                        campaign_id,
                        team_id,
                        segment,
                    } => {
                        q.bind_date(d);
                        q.push(", ").bind(source.clone());
                        q.push(", ").bind(*campaign_id);
                        q.push(", ").bind(*team_id);
                        q.push(", ").bind(segment.clone());
                    }
                    RollupKey::ClosedLoop {
                        day: d,
                        source,
                        campaign_id,
                        segment,
                    } => {
                        q.bind_date(d);
                        q.push(", ").bind(source.clone());
                        q.push(", ").bind(*campaign_id);
                        q.push(", ").bind(segment.clone());
                    }
                }
                for c in counts.iter() {
                    q.push(", ").bind(*c);
                }
                q.push(")");
            }
            let updates = COUNTS
                .iter()
                .map(|c| format!("{c} = {name}.{c} + excluded.{c}"))
                .collect::<Vec<_>>()
                .join(", ");
            q.push(&format!(
                " ON CONFLICT (day, {key_cols}) DO UPDATE SET {updates}"
            ));
            db.execute_raw(q.statement()).await?;
        }
    }
    Ok(())
}

/// Sets `until_at` of the stage changes of the opportunities `opps` (all
/// when `None`): the time of the opportunity's next change, ordered by time
/// then id, NULL for its latest (migration 24). Only rows that differ are
/// written.
pub async fn refresh_until(db: &impl ConnectionTrait, opps: Option<&[Uuid]>) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let mut q = Sql::new(backend);
    q.push(
        "UPDATE stage_changes SET until_at = n.next FROM (SELECT sc.id, \
         LEAD(sc.at) OVER (PARTITION BY sc.opportunity_id ORDER BY sc.at, sc.id) AS next \
         FROM stage_changes sc WHERE sc.opportunity_id",
    );
    match opps {
        Some(ids) => {
            q.push(" IN ").bind_list(ids.iter().copied());
        }
        None => {
            q.push(" IS NOT NULL");
        }
    }
    q.push(if backend == DbBackend::Postgres {
        ") n WHERE stage_changes.id = n.id AND stage_changes.until_at IS DISTINCT FROM n.next"
    } else {
        ") AS n WHERE stage_changes.id = n.id AND stage_changes.until_at IS NOT n.next"
    });
    db.execute_raw(q.statement()).await?;
    Ok(())
}

/// Recomputes every rollup from the records, in one transaction.
pub async fn rebuild<C: ConnectionTrait + TransactionTrait>(db: &C) -> Result<(), DbErr> {
    let started = std::time::Instant::now();
    #[allow(clippy::disallowed_methods)] // maintenance: the rollups, not the records
    let txn = crate::db::begin_write(db).await?;
    rebuild_in(&txn).await?;
    txn.commit().await?;
    vacuum(db).await;
    crate::telemetry::prom::observe_rollup_rebuild(started.elapsed().as_secs_f64());
    Ok(())
}

/// PostgreSQL: marks the rebuilt tables' pages all-visible, so that reads
/// are index-only at once instead of after the next autovacuum (attribution
/// at 1M leads: ~60 → ~30 ms). Outside any transaction; a failure only costs
/// speed until autovacuum, so it is logged, not returned.
async fn vacuum(db: &impl ConnectionTrait) {
    let backend = db.get_database_backend();
    if backend != DbBackend::Postgres {
        return;
    }
    // `stage_changes` too: the rebuild rewrote `until_at`, which the
    // pipeline reads from an index alone once the pages are all-visible
    // (an end 90 days back at 1M leads: 495 → 158 ms; ~3 s of vacuum).
    let sql = "VACUUM (ANALYZE) attribution_credits, lead_rollup, lead_rollup_segment, lead_rollup_bi, \
               lead_rollup_closed_loop, stage_changes, \
               lead_timings, lead_timing_rollup";
    if let Err(e) = db.execute_raw(Statement::from_string(backend, sql)).await {
        tracing::warn!(error = %e, "could not vacuum the rebuilt metric rollups");
    }
}

async fn rebuild_in(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let pg = backend == DbBackend::Postgres;
    for table in [
        "attribution_credits",
        "lead_rollup",
        "lead_rollup_segment",
        "lead_rollup_bi",
        "lead_rollup_closed_loop",
        "lead_timings",
        "lead_timing_rollup",
    ] {
        // PostgreSQL: TRUNCATE leaves no dead rows behind (a DELETE of every
        // row would double the tables until a vacuum); it is transactional,
        // and readers wait for the rebuild to commit.
        let sql = if pg {
            format!("TRUNCATE {table}")
        } else {
            format!("DELETE FROM {table}")
        };
        db.execute_raw(Statement::from_string(backend, sql)).await?;
    }
    let mut ins = Sql::new(backend);
    insert_credits(&mut ins, &Won::All);
    db.execute_raw(ins.statement()).await?;
    insert_all_leads(db).await?;
    super::timings::rebuild_in(db).await?;
    refresh_until(db, None).await?;
    if pg {
        // The planner's view of the new contents, at once.
        db.execute_raw(Statement::from_string(
            backend,
            "ANALYZE attribution_credits, lead_rollup, lead_rollup_segment, lead_rollup_bi, \
             lead_rollup_closed_loop, \
             lead_timings, lead_timing_rollup",
        ))
        .await?;
    }
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        format!(
            "UPDATE metric_rollups SET version = {} WHERE id = 1",
            super::sql::placeholder(backend, 1)
        ),
        [VERSION.into()],
    ))
    .await?;
    Ok(())
}

/// Rebuilds the rollups when this database's were built by an older
/// definition (or never): at start-up, after the migrations. Replicas that
/// start together take turns; the later ones find the work done.
pub async fn ensure<C: ConnectionTrait + TransactionTrait>(db: &C) -> Result<bool, DbErr> {
    #[allow(clippy::disallowed_methods)] // maintenance: the rollups, not the records
    let txn = crate::db::begin_write(db).await?;
    let backend = txn.get_database_backend();
    let lock = if backend == DbBackend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let row = txn
        .query_one_raw(Statement::from_string(
            backend,
            format!("SELECT version FROM metric_rollups WHERE id = 1{lock}"),
        ))
        .await?;
    let version = match row {
        Some(r) => r.try_get::<i64>("", "version")?,
        None => 0,
    };
    if version >= VERSION {
        txn.commit().await?;
        return Ok(false);
    }
    rebuild_in(&txn).await?;
    txn.commit().await?;
    vacuum(db).await;
    Ok(true)
}
