//! `lockstep import`: a CRM export (JSON Lines, see docs/import.md) written
//! through the same record services as GraphQL, in batches.
//!
//! - **A batch is one unit of work** ([`uow::run`]): all its lines or none.
//!   A line that fails is refused (its line number and reason are kept for
//!   the summary) and its batch runs again without it, so nothing is ever
//!   half-written and no refused line is silently dropped.
//! - **Lock order.** A batch applies its lines by kind — users, accounts,
//!   campaigns, leads, lead histories, touchpoints, opportunities,
//!   opportunity histories — each kind in file order, and first locks the
//!   existing accounts, then leads, then opportunities it will touch, each
//!   set in one statement: the unit's lock order holds however the file
//!   interleaves its records. (A kind only refers to earlier kinds, so a
//!   file in dependency order stays in it.)
//! - **Idempotent.** Records are matched by external id: an account, lead or
//!   opportunity already there is updated, a user or campaign already there
//!   is kept; a stage change already in a record's history (same stage and
//!   time) and a touch already recorded (same lead, campaign and time) are
//!   skipped. A rerun after a crash (even SIGKILL) leaves every record once.
//! - **Few statements per line.** Each attempt of a batch reads the external
//!   ids its lines name in one statement per record kind, and the touches
//!   and stage histories of the records it touches in one statement per
//!   kind of line, and keeps what it read (with its own writes) in a
//!   [`Memo`]; a line then costs little more than its own writes.

use crate::error::{AppError, AppResult};
use crate::records::accounts::graphql::AccountInput;
use crate::records::campaigns::graphql::CampaignInput;
use crate::records::external_ids::{self, ExternalRef};
use crate::records::history::service::{ImportedChange, import_in};
use crate::records::leads::graphql::LeadInput;
use crate::records::opportunities::graphql::OpportunityInput;
use crate::records::stage_changes::{Actor, Subject};
use crate::records::{
    accounts::service as accounts, campaigns::service as campaigns, leads::service as leads,
    opportunities::service as opportunities, users::service as users,
};
use crate::uow::{self, AccountLock, Work};
use crate::webhooks::apply::{opt_external, parse_input};
use chrono::{DateTime, Utc};
use entity::enums::{LeadStage, RecordKind, Role};
use entity::{stage_change, touchpoint};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QuerySelect,
};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::sync::Mutex;
use uuid::Uuid;

/// The line types, in the order a batch applies them.
pub const TYPES: &[&str] = &[
    "user",
    "account",
    "campaign",
    "lead",
    "stage_change",
    "touchpoint",
    "opportunity",
];

/// Keys of a line that are the import's own (not fields of a GraphQL input).
const OWN_KEYS: &[&str] = &[
    "type",
    "system",
    "externalId",
    "accountExternalId",
    "leadExternalId",
    "opportunityExternalId",
    "campaignExternalId",
    "ownerEmail",
    "ownerExternalId",
    "actorEmail",
    "actorExternalId",
];

/// Default lines per batch (one unit of work each).
pub const DEFAULT_BATCH: usize = 500;

/// What a line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    User,
    Account,
    Campaign,
    Lead,
    LeadHistory,
    Touchpoint,
    Opportunity,
    OpportunityHistory,
}

/// One parsed line of the file.
#[derive(Debug, Clone)]
pub struct Line {
    /// 1-based line number in the file.
    pub number: usize,
    kind: Kind,
    system: String,
    data: Map<String, Value>,
}

/// A line that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Lines per batch (one unit of work).
    pub batch_size: usize,
    /// Show a progress bar on stderr (when it is a terminal).
    pub progress: bool,
    /// The deployment currency (money fields are in it).
    pub currency: String,
    /// Batches written side by side at most (see [`Flight`]); 0 picks for
    /// the database: [`DEFAULT_PARALLEL_POSTGRES`] on PostgreSQL, 1 on
    /// SQLite (one writer at a time: more would only queue).
    pub parallel: usize,
}

/// Batches in flight on PostgreSQL by default: a unit spends most of its
/// time waiting for round trips, so a few side by side keep both the server
/// and the database busy.
pub const DEFAULT_PARALLEL_POSTGRES: usize = 4;

#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    /// Non-blank lines read.
    pub lines: u64,
    /// Lines applied (created, updated or already there), by type.
    pub applied: std::collections::BTreeMap<&'static str, u64>,
    pub refused: Vec<Refusal>,
    pub batches: u64,
}

impl ImportReport {
    pub fn applied_total(&self) -> u64 {
        self.applied.values().sum()
    }
}

/// Parses one line: an object with a known `type` and a `system`.
pub fn parse_line(number: usize, text: &str) -> Result<Line, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(data) = value else {
        return Err("a line must be a JSON object".into());
    };
    let ty = match data.get("type") {
        Some(Value::String(s)) => s.as_str(),
        _ => return Err("`type` must be a string".into()),
    };
    let kind = match ty {
        "user" => Kind::User,
        "account" => Kind::Account,
        "campaign" => Kind::Campaign,
        "lead" => Kind::Lead,
        "touchpoint" => Kind::Touchpoint,
        "opportunity" => Kind::Opportunity,
        "stage_change" => match (
            data.contains_key("leadExternalId"),
            data.contains_key("opportunityExternalId"),
        ) {
            (true, false) => Kind::LeadHistory,
            (false, true) => Kind::OpportunityHistory,
            _ => {
                return Err(
                    "a stage_change gives exactly one of `leadExternalId` and `opportunityExternalId`"
                        .into(),
                );
            }
        },
        other => {
            return Err(format!(
                "unknown type `{other}` (one of {})",
                TYPES.join(", ")
            ));
        }
    };
    let system = match data.get("system") {
        Some(Value::String(s)) => {
            ExternalRef::normalized(s, "x")
                .map_err(|e| e.message())?
                .system
        }
        _ => return Err("`system` (the source system's name) must be a string".into()),
    };
    Ok(Line {
        number,
        kind,
        system,
        data,
    })
}

/// Reads `input` and imports it, batch by batch; `total_bytes` sizes the
/// progress bar. Fails only when the database does (a refused line is in
/// the report, not an error).
pub async fn run(
    db: &DatabaseConnection,
    input: impl BufRead,
    total_bytes: u64,
    opts: &ImportOptions,
) -> AppResult<ImportReport> {
    let batch_size = opts.batch_size.max(1);
    let bar = if opts.progress && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let b = indicatif::ProgressBar::new(total_bytes);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} importing [{bar:40}] {bytes}/{total_bytes} ({binary_bytes_per_sec}, eta {eta}) {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
    let cx = Cx {
        actor: Actor {
            subject: "import".into(),
            user_id: None,
            may_backfill: true,
        },
        currency: opts.currency.to_uppercase(),
        memo: Mutex::default(),
    };
    let parallel = match opts.parallel {
        0 if crate::db::is_postgres(db) => DEFAULT_PARALLEL_POSTGRES,
        0 => 1,
        n => n,
    };
    let mut flight = Flight::new(db, &cx, parallel);
    let mut report = ImportReport::default();
    let mut batch = Vec::with_capacity(batch_size);
    let mut reach = Reach::default();
    let mut read = 0u64;
    for (i, text) in input.lines().enumerate() {
        let text = text.map_err(AppError::internal)?;
        read += text.len() as u64 + 1;
        if text.trim().is_empty() {
            continue;
        }
        report.lines += 1;
        let line = match parse_line(i + 1, &text) {
            Ok(line) => line,
            Err(reason) => {
                report.refused.push(Refusal {
                    line: i + 1,
                    reason,
                });
                continue;
            }
        };
        // A full batch ends before a line that does not refer to one of its
        // records: a record's lines (a lead, its history, its touches) stay
        // in one batch, so the next batch need not wait for this one. Up to
        // twice the size, then it ends anyway.
        if batch.len() >= batch_size && (batch.len() >= 2 * batch_size || !reach.needed_by(&line)) {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
            flight
                .launch(full, std::mem::take(&mut reach), &mut report)
                .await?;
            if let Some(b) = &bar {
                b.set_position(read);
                b.set_message(format!(
                    "{} lines, {} refused",
                    report.lines,
                    report.refused.len()
                ));
            }
        }
        reach.add(&line);
        batch.push(line);
    }
    if !batch.is_empty() {
        flight.launch(batch, reach, &mut report).await?;
    }
    flight.finish(&mut report).await?;
    if let Some(b) = bar {
        b.set_position(read);
        b.finish_and_clear();
    }
    report.refused.sort_by_key(|r| r.line);
    analyze(db).await?;
    Ok(report)
}

/// Refreshes the planner's statistics of every table (PostgreSQL `VACUUM
/// (ANALYZE)` on the plain connection, SQLite `ANALYZE`), so the first
/// queries after a big import are planned on the real row counts.
pub async fn analyze(db: &DatabaseConnection) -> AppResult<()> {
    crate::db::refresh_statistics(db).await?;
    Ok(())
}

struct Cx {
    actor: Actor,
    currency: String,
    memo: Mutex<Memo>,
}

impl Cx {
    /// The same import's context with a memo of its own (one per batch).
    fn fresh(&self) -> Cx {
        Cx {
            actor: self.actor.clone(),
            currency: self.currency.clone(),
            memo: Mutex::default(),
        }
    }
}

/// An external id: (kind, system, id).
type RefKey = (RecordKind, String, String);

/// What a batch writes and reads, for [`Flight`] to tell which batches may
/// run side by side.
#[derive(Debug, Default)]
struct Reach {
    /// It has users, accounts or campaigns: these are found by e-mail or
    /// domain as well as by external id, so such a batch runs alone.
    alone: bool,
    /// External ids its lines define (a record is created or updated).
    defines: HashSet<RefKey>,
    /// External ids its lines refer to.
    refers: HashSet<RefKey>,
    /// Leads and opportunities it defines or changes (a history line, a
    /// touch or a conversion changes its lead or opportunity).
    records: HashSet<RefKey>,
}

impl Reach {
    /// Adds a line of the batch.
    fn add(&mut self, line: &Line) {
        if matches!(line.kind, Kind::User | Kind::Account | Kind::Campaign) {
            self.alone = true;
        }
        for (field, kind, key) in line_keys(line) {
            if matches!(kind, RecordKind::Lead | RecordKind::Opportunity) {
                self.records.insert(key.clone());
            }
            if field == "externalId" {
                self.defines.insert(key);
            } else {
                self.refers.insert(key);
            }
        }
    }

    /// Whether `line` refers to a record this batch defines.
    fn needed_by(&self, line: &Line) -> bool {
        line_keys(line).any(|(field, _, key)| field != "externalId" && self.defines.contains(&key))
    }

    /// Whether this batch (later in the file) must wait for `earlier`: it
    /// refers to something `earlier` defines, or both change one record, or
    /// either runs alone. Otherwise their order does not matter.
    fn waits_for(&self, earlier: &Reach) -> bool {
        self.alone
            || earlier.alone
            || !self.refers.is_disjoint(&earlier.defines)
            || !self.records.is_disjoint(&earlier.records)
    }
}

/// The external ids a line names: (field, kind, key).
fn line_keys(line: &Line) -> impl Iterator<Item = (&'static str, RecordKind, RefKey)> + '_ {
    reference_fields(line.kind)
        .iter()
        .filter_map(move |(field, kind)| {
            let id = opt_external(&line.data, field).ok().flatten()?;
            let key = ExternalRef::normalized(&line.system, &id).ok()?;
            Some((*field, *kind, (*kind, key.system, key.id)))
        })
}

/// The batches in flight. Each is its own unit of work (all or nothing,
/// retried on a deadlock); a batch starts once no earlier batch it depends
/// on ([`Reach::waits_for`]) is still running, so every line sees what the
/// lines before it in the file wrote, as in a run one batch at a time.
struct Flight<'a> {
    db: &'a DatabaseConnection,
    cx: &'a Cx,
    max: usize,
    next: u64,
    reach: HashMap<u64, Reach>,
    running: futures_util::stream::FuturesUnordered<
        futures_util::future::BoxFuture<'a, (u64, AppResult<ImportReport>)>,
    >,
}

impl<'a> Flight<'a> {
    fn new(db: &'a DatabaseConnection, cx: &'a Cx, max: usize) -> Self {
        Flight {
            db,
            cx,
            max: max.max(1),
            next: 0,
            reach: HashMap::new(),
            running: Default::default(),
        }
    }

    /// Starts `lines` as a batch once it may run; lands finished batches
    /// into `report` meanwhile.
    async fn launch(
        &mut self,
        lines: Vec<Line>,
        reach: Reach,
        report: &mut ImportReport,
    ) -> AppResult<()> {
        while self.reach.len() >= self.max || self.reach.values().any(|e| reach.waits_for(e)) {
            self.land(report).await?;
        }
        let id = self.next;
        self.next += 1;
        self.reach.insert(id, reach);
        let (db, cx) = (self.db, self.cx.fresh());
        self.running.push(Box::pin(async move {
            let mut lines = lines;
            let mut part = ImportReport::default();
            let result = apply_batch(db, &cx, &mut lines, &mut part).await;
            (id, result.map(|()| part))
        }));
        Ok(())
    }

    /// Waits for one batch to end.
    async fn land(&mut self, report: &mut ImportReport) -> AppResult<()> {
        use futures_util::StreamExt;
        if let Some((id, result)) = self.running.next().await {
            self.reach.remove(&id);
            let part = result?;
            report.batches += part.batches;
            for (kind, n) in part.applied {
                *report.applied.entry(kind).or_default() += n;
            }
            report.refused.extend(part.refused);
        }
        Ok(())
    }

    /// Waits for every batch still running.
    async fn finish(&mut self, report: &mut ImportReport) -> AppResult<()> {
        while !self.reach.is_empty() {
            self.land(report).await?;
        }
        Ok(())
    }
}

/// What the current attempt of a batch has read, kept with its own writes:
/// external ids (present or not), users by e-mail, and the touches and stage
/// histories of the records it touches (a record with an entry here is known
/// whole). Cleared when an attempt starts: its transaction starts over.
#[derive(Default)]
struct Memo {
    ids: HashMap<(RecordKind, String, String), Option<Uuid>>,
    emails: HashMap<String, Option<Uuid>>,
    /// Lead → (campaign, time) of its touches.
    touches: HashMap<Uuid, HashSet<(Uuid, DateTime<Utc>)>>,
    /// Lead or opportunity → (stage, time) of its history entries.
    histories: HashMap<Uuid, HashSet<(String, DateTime<Utc>)>>,
}

/// Ids per statement when the memo reads many at once.
const READ_CHUNK: usize = 500;

/// The external-id fields of a line of each kind, and what they name.
fn reference_fields(kind: Kind) -> &'static [(&'static str, RecordKind)] {
    use RecordKind as R;
    match kind {
        Kind::User => &[("externalId", R::User)],
        Kind::Account => &[("externalId", R::Account), ("ownerExternalId", R::User)],
        Kind::Campaign => &[("externalId", R::Campaign)],
        Kind::Lead => &[
            ("externalId", R::Lead),
            ("accountExternalId", R::Account),
            ("campaignExternalId", R::Campaign),
            ("ownerExternalId", R::User),
            ("actorExternalId", R::User),
        ],
        Kind::LeadHistory => &[("leadExternalId", R::Lead)],
        Kind::Touchpoint => &[
            ("leadExternalId", R::Lead),
            ("campaignExternalId", R::Campaign),
        ],
        Kind::Opportunity => &[
            ("externalId", R::Opportunity),
            ("leadExternalId", R::Lead),
            ("accountExternalId", R::Account),
            ("ownerExternalId", R::User),
            ("actorExternalId", R::User),
        ],
        Kind::OpportunityHistory => &[("opportunityExternalId", R::Opportunity)],
    }
}

impl Cx {
    fn memo(&self) -> std::sync::MutexGuard<'_, Memo> {
        // The memo is only a cache of this attempt: a poisoned one is still consistent.
        self.memo.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn memo_key(kind: RecordKind, key: &ExternalRef) -> (RecordKind, String, String) {
        (kind, key.system.clone(), key.id.clone())
    }

    /// The record `key` maps to, from the memo or else the database.
    async fn id(
        &self,
        db: &impl ConnectionTrait,
        kind: RecordKind,
        key: &ExternalRef,
    ) -> AppResult<Option<Uuid>> {
        let k = Self::memo_key(kind, key);
        let hit = self.memo().ids.get(&k).copied();
        if let Some(found) = hit {
            return Ok(found);
        }
        let found = external_ids::lookup(db, kind, key).await?;
        self.memo().ids.insert(k, found);
        Ok(found)
    }

    /// `key` now maps to `id` (this attempt linked it).
    fn linked(&self, kind: RecordKind, key: &ExternalRef, id: Uuid) {
        self.memo().ids.insert(Self::memo_key(kind, key), Some(id));
    }

    /// `key` may have been linked by a service: read it again when asked.
    fn forget(&self, kind: RecordKind, key: &ExternalRef) {
        self.memo().ids.remove(&Self::memo_key(kind, key));
    }

    async fn user_by_email(
        &self,
        db: &impl ConnectionTrait,
        email: &str,
    ) -> AppResult<Option<Uuid>> {
        let hit = self.memo().emails.get(email).copied();
        if let Some(found) = hit {
            return Ok(found);
        }
        let found = users::find_by_email(db, email).await?.map(|u| u.id);
        self.memo().emails.insert(email.to_owned(), found);
        Ok(found)
    }

    /// Reads every external id the batch's lines name: one statement per
    /// record kind (and per [`READ_CHUNK`] ids).
    async fn read_ids(&self, db: &impl ConnectionTrait, lines: &[Line]) -> AppResult<()> {
        let mut wanted: HashMap<RecordKind, HashSet<ExternalRefKey>> = HashMap::new();
        for line in lines {
            for (field, kind) in reference_fields(line.kind) {
                if let Ok(Some(id)) = opt_external(&line.data, field)
                    && let Ok(key) = ExternalRef::normalized(&line.system, &id)
                {
                    wanted
                        .entry(*kind)
                        .or_default()
                        .insert((key.system, key.id));
                }
            }
        }
        for (kind, keys) in wanted {
            let ids: Vec<&str> = {
                let distinct: HashSet<&str> = keys.iter().map(|(_, id)| id.as_str()).collect();
                distinct.into_iter().collect()
            };
            // The systems too: the unique index is (kind, system, id), and
            // without the system PostgreSQL reads every id of the kind (a
            // 300-id read at 600k leads: 5.9 ms with it, 267 ms without).
            let systems: HashSet<&str> = keys.iter().map(|(s, _)| s.as_str()).collect();
            let mut found: HashMap<ExternalRefKey, Uuid> = HashMap::new();
            for chunk in ids.chunks(READ_CHUNK) {
                let rows: Vec<(String, String, Uuid)> = entity::external_id::Entity::find()
                    .select_only()
                    .column(entity::external_id::Column::System)
                    .column(entity::external_id::Column::ExternalId)
                    .column(entity::external_id::Column::RecordId)
                    .filter(entity::external_id::Column::RecordKind.eq(kind))
                    .filter(entity::external_id::Column::System.is_in(systems.iter().copied()))
                    .filter(entity::external_id::Column::ExternalId.is_in(chunk.iter().copied()))
                    .into_tuple()
                    .all(db)
                    .await?;
                found.extend(rows.into_iter().map(|(s, i, r)| ((s, i), r)));
            }
            let mut memo = self.memo();
            for key in keys {
                let record = found.get(&key).copied();
                memo.ids.insert((kind, key.0, key.1), record);
            }
        }
        Ok(())
    }

    /// Reads the touches of every lead the batch's touchpoint lines name
    /// that exists by now (one statement per [`READ_CHUNK`] leads).
    async fn read_touches(&self, db: &impl ConnectionTrait, lines: &[Line]) -> AppResult<()> {
        let mut leads = Vec::new();
        for line in lines.iter().filter(|l| l.kind == Kind::Touchpoint) {
            if let Some(id) = self
                .existing(db, line, "leadExternalId", RecordKind::Lead)
                .await?
            {
                leads.push(id);
            }
        }
        leads.sort_unstable();
        leads.dedup();
        for chunk in leads.chunks(READ_CHUNK) {
            let rows: Vec<(Uuid, Uuid, DateTime<Utc>)> = touchpoint::Entity::find()
                .select_only()
                .column(touchpoint::Column::LeadId)
                .column(touchpoint::Column::CampaignId)
                .column(touchpoint::Column::OccurredAt)
                .filter(touchpoint::Column::LeadId.is_in(chunk.iter().copied()))
                .into_tuple()
                .all(db)
                .await?;
            let mut memo = self.memo();
            for lead in chunk {
                memo.touches.entry(*lead).or_default();
            }
            for (lead, campaign, at) in rows {
                memo.touches.entry(lead).or_default().insert((campaign, at));
            }
        }
        Ok(())
    }

    /// Reads the stage histories of every record the batch's history lines
    /// of `kind` name that exists by now (creation entries included).
    async fn read_histories(
        &self,
        db: &impl ConnectionTrait,
        lines: &[Line],
        kind: Kind,
    ) -> AppResult<()> {
        let (field, record) = match kind {
            Kind::LeadHistory => ("leadExternalId", RecordKind::Lead),
            _ => ("opportunityExternalId", RecordKind::Opportunity),
        };
        let mut ids = Vec::new();
        for line in lines.iter().filter(|l| l.kind == kind) {
            if let Some(id) = self.existing(db, line, field, record).await? {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        for chunk in ids.chunks(READ_CHUNK) {
            let column = if kind == Kind::LeadHistory {
                stage_change::Column::LeadId
            } else {
                stage_change::Column::OpportunityId
            };
            let rows: Vec<HistoryRow> = stage_change::Entity::find()
                .select_only()
                .column(stage_change::Column::LeadId)
                .column(stage_change::Column::OpportunityId)
                .column(stage_change::Column::ToStage)
                .column(stage_change::Column::At)
                .filter(column.is_in(chunk.iter().copied()))
                .into_tuple()
                .all(db)
                .await?;
            let mut memo = self.memo();
            for id in chunk {
                memo.histories.entry(*id).or_default();
            }
            for (lead, opportunity, to, at) in rows {
                let owner = if kind == Kind::LeadHistory {
                    lead
                } else {
                    opportunity
                };
                if let Some(id) = owner {
                    memo.histories.entry(id).or_default().insert((to, at));
                }
            }
        }
        Ok(())
    }

    /// The record an external-id field of a line maps to, if it is there
    /// yet (an invalid id is left to the line itself to report).
    async fn existing(
        &self,
        db: &impl ConnectionTrait,
        line: &Line,
        field: &str,
        kind: RecordKind,
    ) -> AppResult<Option<Uuid>> {
        let Ok(Some(id)) = opt_external(&line.data, field) else {
            return Ok(None);
        };
        let Ok(key) = ExternalRef::normalized(&line.system, &id) else {
            return Ok(None);
        };
        self.id(db, kind, &key).await
    }
}

/// A stage history entry as the memo reads it: lead, opportunity, stage, time.
type HistoryRow = (Option<Uuid>, Option<Uuid>, String, DateTime<Utc>);

/// `(system, id)` of an external id.
type ExternalRefKey = (String, String);

/// Applies a batch in one unit; a failing line is refused and the batch
/// runs again without it.
async fn apply_batch(
    db: &DatabaseConnection,
    cx: &Cx,
    batch: &mut Vec<Line>,
    report: &mut ImportReport,
) -> AppResult<()> {
    while !batch.is_empty() {
        let failed = Mutex::new(None::<usize>);
        let lines: &[Line] = batch;
        let result = uow::run(db, |mut w| {
            let failed = &failed;
            async move {
                apply_all(&mut w, cx, lines, failed).await?;
                w.commit(()).await
            }
        })
        .await;
        match result {
            Ok(()) => {
                report.batches += 1;
                for line in batch.iter() {
                    *report.applied.entry(type_name(line.kind)).or_default() += 1;
                }
                return Ok(());
            }
            Err(e) => {
                let at = failed.lock().ok().and_then(|f| *f);
                let Some(i) = at else { return Err(e) };
                if matches!(e, AppError::Internal(_)) {
                    tracing::warn!(line = batch[i].number, error = ?e, "import line failed");
                }
                report.refused.push(Refusal {
                    line: batch[i].number,
                    reason: reason(&e),
                });
                batch.remove(i);
            }
        }
    }
    Ok(())
}

fn type_name(kind: Kind) -> &'static str {
    match kind {
        Kind::User => "user",
        Kind::Account => "account",
        Kind::Campaign => "campaign",
        Kind::Lead => "lead",
        Kind::LeadHistory | Kind::OpportunityHistory => "stage_change",
        Kind::Touchpoint => "touchpoint",
        Kind::Opportunity => "opportunity",
    }
}

/// The reason a refused line is given: the error as a client would see it
/// (an internal one says no more than that).
fn reason(e: &AppError) -> String {
    format!("{}: {}", e.code().as_str(), e.message())
}

/// Every line of the batch, by kind, after the locks (see the module's
/// documentation). `failed` names the line an error came from.
async fn apply_all(
    w: &mut Work,
    cx: &Cx,
    lines: &[Line],
    failed: &Mutex<Option<usize>>,
) -> AppResult<()> {
    if let Ok(mut f) = failed.lock() {
        *f = None;
    }
    *cx.memo() = Memo::default();
    cx.read_ids(w.db(), lines).await?;
    let mut order: Vec<usize> = (0..lines.len()).collect();
    order.sort_by_key(|&i| (lines[i].kind, i));
    // Existing accounts the batch updates.
    let mut ids = Vec::new();
    for line in lines.iter().filter(|l| l.kind == Kind::Account) {
        if let Some(id) = cx
            .existing(w.db(), line, "externalId", RecordKind::Account)
            .await?
        {
            ids.push(id);
        }
    }
    w.lock_accounts(&ids, AccountLock::Update).await?;
    let (mut records_locked, mut opportunities_locked) = (false, false);
    let mut read: Option<Kind> = None;
    for i in order {
        let line = &lines[i];
        if line.kind >= Kind::Lead && !records_locked {
            lock_records(w, cx, lines).await?;
            records_locked = true;
        }
        if line.kind >= Kind::Opportunity && !opportunities_locked {
            lock_opportunities(w, cx, lines).await?;
            opportunities_locked = true;
        }
        // A kind's touches or histories, once the lines before it have run.
        if read != Some(line.kind) {
            read = Some(line.kind);
            match line.kind {
                Kind::Touchpoint => cx.read_touches(w.db(), lines).await?,
                Kind::LeadHistory | Kind::OpportunityHistory => {
                    cx.read_histories(w.db(), lines, line.kind).await?
                }
                _ => {}
            }
        }
        if let Err(e) = apply_line(w, cx, line).await {
            if let Ok(mut f) = failed.lock() {
                *f = Some(i);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Before the leads: every account the batch's leads and opportunities
/// refer to (in one statement), then every existing lead it touches.
async fn lock_records(w: &mut Work, cx: &Cx, lines: &[Line]) -> AppResult<()> {
    let mut accounts = Vec::new();
    let mut lead_ids = Vec::new();
    for line in lines {
        match line.kind {
            Kind::Lead | Kind::Opportunity => {
                if let Some(a) = cx
                    .existing(w.db(), line, "accountExternalId", RecordKind::Account)
                    .await?
                {
                    accounts.push(a);
                }
            }
            _ => {}
        }
        match line.kind {
            Kind::Lead => {
                match cx
                    .existing(w.db(), line, "externalId", RecordKind::Lead)
                    .await?
                {
                    Some(id) => lead_ids.push(id),
                    None if !line.data.contains_key("accountExternalId") => {
                        // A new lead's account by its e-mail's domain.
                        if let Some(Value::String(email)) = line.data.get("email") {
                            let fields = leads::LeadFields {
                                email: Some(email.clone()),
                                ..Default::default()
                            };
                            if let Ok(Some(a)) = leads::account_of_new(w, &fields).await {
                                accounts.push(a);
                            }
                        }
                    }
                    None => {}
                }
            }
            Kind::LeadHistory | Kind::Touchpoint | Kind::Opportunity => {
                if let Some(id) = cx
                    .existing(w.db(), line, "leadExternalId", RecordKind::Lead)
                    .await?
                {
                    lead_ids.push(id);
                    if line.kind == Kind::Opportunity
                        && let Ok(lead) = leads::get(w.db(), id).await
                        && let Some(a) = lead.account_id
                    {
                        accounts.push(a);
                    }
                }
            }
            _ => {}
        }
    }
    w.lock_accounts(&accounts, AccountLock::Reference).await?;
    w.lock_leads(&lead_ids).await?;
    Ok(())
}

/// Before the opportunities: every existing opportunity the batch touches
/// (with the leads converted into them), in one statement.
async fn lock_opportunities(w: &mut Work, cx: &Cx, lines: &[Line]) -> AppResult<()> {
    let mut ids = Vec::new();
    for line in lines {
        let field = match line.kind {
            Kind::Opportunity => "externalId",
            Kind::OpportunityHistory => "opportunityExternalId",
            _ => continue,
        };
        if let Some(id) = cx
            .existing(w.db(), line, field, RecordKind::Opportunity)
            .await?
        {
            ids.push(id);
        }
    }
    w.lock_opportunities(&ids).await?;
    Ok(())
}

async fn apply_line(w: &mut Work, cx: &Cx, line: &Line) -> AppResult<()> {
    match line.kind {
        Kind::User => user(w, cx, line).await,
        Kind::Account => account(w, cx, line).await,
        Kind::Campaign => campaign(w, cx, line).await,
        Kind::Lead => lead(w, cx, line).await,
        Kind::LeadHistory => history(w, cx, line, true).await,
        Kind::OpportunityHistory => history(w, cx, line, false).await,
        Kind::Touchpoint => touch(w, cx, line).await,
        Kind::Opportunity => opportunity(w, cx, line).await,
    }
}

/// `data[field]` as an external id of the line's system.
fn key(line: &Line, field: &str) -> AppResult<Option<ExternalRef>> {
    opt_external(&line.data, field)?
        .map(|id| ExternalRef::normalized(&line.system, &id))
        .transpose()
}

fn required_key(line: &Line, field: &str) -> AppResult<ExternalRef> {
    key(line, field)?.ok_or_else(|| AppError::bad_input(field, format!("`{field}` is required")))
}

/// The record `data[field]` refers to; NOT_FOUND when no line nor record
/// has that external id.
async fn reference(
    w: &Work,
    cx: &Cx,
    line: &Line,
    field: &str,
    kind: RecordKind,
) -> AppResult<Option<Uuid>> {
    let Some(key) = key(line, field)? else {
        return Ok(None);
    };
    cx.id(w.db(), kind, &key).await?.map(Some).ok_or_else(|| {
        AppError::not_found(format!(
            "`{field}`: no {} {}:{}",
            kind.as_str().to_lowercase(),
            key.system,
            key.id
        ))
    })
}

/// A user named by `{prefix}Email` or `{prefix}ExternalId` (not both).
async fn user_ref(
    w: &Work,
    cx: &Cx,
    system: &str,
    data: &Map<String, Value>,
    prefix: &str,
) -> AppResult<Option<Uuid>> {
    let email_field = format!("{prefix}Email");
    let ext_field = format!("{prefix}ExternalId");
    let email = text(data, &email_field)?;
    let ext = opt_external(data, &ext_field)?;
    match (email, ext) {
        (Some(_), Some(_)) => Err(AppError::bad_input(
            &email_field,
            format!("give one of `{email_field}` and `{ext_field}`"),
        )),
        (Some(email), None) => Ok(Some(cx.user_by_email(w.db(), &email).await?.ok_or_else(
            || AppError::not_found(format!("`{email_field}`: no user {email}")),
        )?)),
        (None, Some(id)) => {
            let key = ExternalRef::normalized(system, &id)?;
            Ok(Some(
                cx.id(w.db(), RecordKind::User, &key)
                    .await?
                    .ok_or_else(|| {
                        AppError::not_found(format!(
                            "`{ext_field}`: no user {}:{}",
                            key.system, key.id
                        ))
                    })?,
            ))
        }
        (None, None) => Ok(None),
    }
}

fn text(data: &Map<String, Value>, field: &str) -> AppResult<Option<String>> {
    match data.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        _ => Err(AppError::bad_input(
            field,
            format!("`{field}` must be a string"),
        )),
    }
}

/// The line without the import's own keys, plus `extra`: a GraphQL input's fields.
fn input_fields(data: &Map<String, Value>, extra: Vec<(&str, Option<Uuid>)>) -> Value {
    let mut fields: Map<String, Value> = data
        .iter()
        .filter(|(k, _)| !OWN_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in extra {
        if let Some(v) = v {
            fields.insert(k.to_owned(), Value::String(v.to_string()));
        }
    }
    Value::Object(fields)
}

fn refuse_keys(data: &Map<String, Value>, keys: &[&str], why: &str) -> AppResult<()> {
    for k in keys {
        if data.contains_key(*k) {
            return Err(AppError::bad_input(*k, format!("`{k}`: {why}")));
        }
    }
    Ok(())
}

async fn user(w: &mut Work, cx: &Cx, line: &Line) -> AppResult<()> {
    let key = key(line, "externalId")?;
    if let Some(key) = &key
        && cx.id(w.db(), RecordKind::User, key).await?.is_some()
    {
        return Ok(());
    }
    let email = text(&line.data, "email")?
        .ok_or_else(|| AppError::bad_input("email", "`email` is required"))?;
    let id = match cx.user_by_email(w.db(), &email).await? {
        Some(id) => id,
        None => {
            let role = match line.data.get("role") {
                None | Some(Value::Null) => Role::Member,
                Some(v) => serde_json::from_value(v.clone())
                    .map_err(|_| AppError::bad_input("role", "`role` is not a known role"))?,
            };
            let name = text(&line.data, "name")?
                .ok_or_else(|| AppError::bad_input("name", "`name` is required"))?;
            let id = users::create_in(
                w,
                users::NewUser {
                    email: email.clone(),
                    name,
                    team_id: None,
                    role,
                },
            )
            .await?
            .id;
            // The service may have normalized the address: ask again.
            cx.memo().emails.remove(&email);
            id
        }
    };
    if let Some(key) = &key {
        external_ids::link(w, RecordKind::User, key, id).await?;
        cx.linked(RecordKind::User, key, id);
    }
    Ok(())
}

async fn account(w: &mut Work, cx: &Cx, line: &Line) -> AppResult<()> {
    let key = required_key(line, "externalId")?;
    refuse_keys(
        &line.data,
        &["externalIds"],
        "the line's `externalId` is the key",
    )?;
    let owner = user_ref(w, cx, &line.system, &line.data, "owner").await?;
    let input: AccountInput = parse_input(input_fields(&line.data, vec![("ownerId", owner)]))?;
    let (fields, _) = input.into_fields(&cx.currency)?;
    let account = accounts::upsert_in(w, &cx.actor, &key, fields).await?;
    cx.linked(RecordKind::Account, &key, account.id);
    Ok(())
}

async fn campaign(w: &mut Work, cx: &Cx, line: &Line) -> AppResult<()> {
    let key = required_key(line, "externalId")?;
    let input: CampaignInput = parse_input(input_fields(&line.data, vec![]))?;
    if cx.id(w.db(), RecordKind::Campaign, &key).await?.is_some() {
        return Ok(());
    }
    let cost = crate::records::common::money_to_units(
        input.cost.unwrap_or_default(),
        &cx.currency,
        "cost",
    )?;
    let created = campaigns::create_in(
        w,
        campaigns::NewCampaign {
            name: input.name,
            channel: input.channel,
            kind: input.kind,
            cost,
            starts_at: input.starts_at,
            ends_at: input.ends_at,
        },
    )
    .await?;
    external_ids::link_free(w, RecordKind::Campaign, &key, created.id).await?;
    cx.linked(RecordKind::Campaign, &key, created.id);
    Ok(())
}

async fn lead(w: &mut Work, cx: &Cx, line: &Line) -> AppResult<()> {
    let key = required_key(line, "externalId")?;
    refuse_keys(
        &line.data,
        &["externalIds"],
        "the line's `externalId` is the key",
    )?;
    let account = reference(w, cx, line, "accountExternalId", RecordKind::Account).await?;
    let campaign = reference(w, cx, line, "campaignExternalId", RecordKind::Campaign).await?;
    let owner = user_ref(w, cx, &line.system, &line.data, "owner").await?;
    let actor = user_ref(w, cx, &line.system, &line.data, "actor").await?;
    let input: LeadInput = parse_input(input_fields(
        &line.data,
        vec![
            ("accountId", account),
            ("campaignId", campaign),
            ("ownerId", owner),
            ("actorUserId", actor),
        ],
    ))?;
    let (mut fields, _) = input.into_fields()?;
    match cx.id(w.db(), RecordKind::Lead, &key).await? {
        Some(id) => {
            // Its creation and history are already there: only its fields change.
            fields.stage = None;
            fields.reason = None;
            fields.actor_user_id = None;
            fields.created_at = None;
            leads::update_in(w, id, fields).await?;
        }
        None => {
            // A backfilled creation: the SLA policies qualify only leads created now.
            fields
                .created_at
                .get_or_insert_with(crate::records::common::now);
            let created = leads::create_in(w, &cx.actor, fields).await?;
            external_ids::link_free(w, RecordKind::Lead, &key, created.id).await?;
            cx.linked(RecordKind::Lead, &key, created.id);
        }
    }
    Ok(())
}

async fn touch(w: &mut Work, cx: &Cx, line: &Line) -> AppResult<()> {
    let lead = reference(w, cx, line, "leadExternalId", RecordKind::Lead)
        .await?
        .ok_or_else(|| AppError::bad_input("leadExternalId", "`leadExternalId` is required"))?;
    let campaign = reference(w, cx, line, "campaignExternalId", RecordKind::Campaign)
        .await?
        .ok_or_else(|| {
            AppError::bad_input("campaignExternalId", "`campaignExternalId` is required")
        })?;
    let at = time(&line.data, "occurredAt")?
        .ok_or_else(|| AppError::bad_input("occurredAt", "`occurredAt` is required"))?;
    let known = cx
        .memo()
        .touches
        .get(&lead)
        .map(|t| t.contains(&(campaign, at)));
    let there = match known {
        Some(there) => there,
        None => {
            touchpoint::Entity::find()
                .filter(touchpoint::Column::LeadId.eq(lead))
                .filter(touchpoint::Column::CampaignId.eq(campaign))
                .filter(touchpoint::Column::OccurredAt.eq(at))
                .count(w.db())
                .await?
                > 0
        }
    };
    if !there {
        let created = leads::record_touchpoint_in(w, lead, campaign, Some(at)).await?;
        if let Some(t) = cx.memo().touches.get_mut(&lead) {
            t.insert((campaign, created.occurred_at));
        }
    }
    Ok(())
}

fn time(data: &Map<String, Value>, field: &str) -> AppResult<Option<DateTime<Utc>>> {
    text(data, field)?
        .map(|s| {
            s.parse::<DateTime<Utc>>().map_err(|_| {
                AppError::bad_input(field, format!("`{field}` must be an RFC 3339 time"))
            })
        })
        .transpose()
}

async fn opportunity(w: &mut Work, cx: &Cx, line: &Line) -> AppResult<()> {
    let key = required_key(line, "externalId")?;
    refuse_keys(
        &line.data,
        &["externalIds", "stage", "closedAt", "lostReason"],
        "an opportunity's stages come from its stage_change line",
    )?;
    let lead = reference(w, cx, line, "leadExternalId", RecordKind::Lead).await?;
    let account = reference(w, cx, line, "accountExternalId", RecordKind::Account).await?;
    let owner = user_ref(w, cx, &line.system, &line.data, "owner").await?;
    let actor = user_ref(w, cx, &line.system, &line.data, "actor").await?;
    // The account: the one named, else the lead's (checked below).
    let account_or_lead = match (account, lead) {
        (Some(a), _) => Some(a),
        (None, Some(l)) => leads::get(w.db(), l).await?.account_id,
        (None, None) => None,
    };
    let input: OpportunityInput = parse_input(input_fields(
        &line.data,
        vec![
            ("accountId", Some(account_or_lead.unwrap_or(Uuid::nil()))),
            ("leadId", lead),
            ("ownerId", owner),
            ("actorUserId", actor),
        ],
    ))?;
    let (mut new, _, _) = input.into_parts(&cx.currency)?;
    let acting = cx.actor.acting_as_in(w, actor).await?;
    if let Some(id) = cx.id(w.db(), RecordKind::Opportunity, &key).await? {
        let patch = opportunities::OpportunityPatch {
            name: Some(new.name),
            account_id: account,
            owner_id: new.owner_id.map(Some),
            amount: Some(new.amount),
            expected_close_date: new.expected_close_date.map(Some),
            sourced_by: line.data.get("sourcedBy").map(|_| new.sourced_by),
            external_ids: Vec::new(),
        };
        opportunities::update_in(w, id, patch).await?;
        return Ok(());
    }
    let at = new.created_at.unwrap_or_else(crate::records::common::now);
    if let Some(lead_id) = lead {
        let current = w.lock_lead(lead_id).await?;
        if current.stage != LeadStage::Converted && current.converted_opportunity_id.is_none() {
            drop(current);
            let conversion = leads::Conversion {
                name: new.name.clone(),
                account_id: account,
                owner_id: new.owner_id,
                amount: new.amount,
                currency: new.currency.clone(),
                expected_close_date: new.expected_close_date,
                sourced_by: line.data.get("sourcedBy").map(|_| new.sourced_by),
                reason: new.reason.clone(),
                external_ids: vec![key.clone()],
            };
            leads::convert_in(w, &acting, lead_id, conversion, Some(at)).await?;
            cx.forget(RecordKind::Opportunity, &key);
            return Ok(());
        }
    }
    if account_or_lead.is_none() {
        return Err(AppError::bad_input(
            "accountExternalId",
            "`accountExternalId` is required (or a lead with an account)",
        ));
    }
    new.created_at = Some(at);
    opportunities::create_in(
        w,
        &acting,
        new,
        opportunities::InitialStage::default(),
        std::slice::from_ref(&key),
    )
    .await?;
    cx.forget(RecordKind::Opportunity, &key);
    Ok(())
}

/// A record's history: the changes not in it yet (same stage and time) are
/// appended, checked as a chain like `importStageHistory`.
async fn history(w: &mut Work, cx: &Cx, line: &Line, is_lead: bool) -> AppResult<()> {
    let (field, kind) = if is_lead {
        ("leadExternalId", RecordKind::Lead)
    } else {
        ("opportunityExternalId", RecordKind::Opportunity)
    };
    let id = reference(w, cx, line, field, kind)
        .await?
        .ok_or_else(|| AppError::bad_input(field, format!("`{field}` is required")))?;
    let subject = if is_lead {
        Subject::Lead(id)
    } else {
        Subject::Opportunity(id)
    };
    let Some(Value::Array(items)) = line.data.get("changes") else {
        return Err(AppError::bad_input(
            "changes",
            "`changes` must be an array of stage changes",
        ));
    };
    let known = cx.memo().histories.get(&id).cloned();
    let present: HashSet<(String, DateTime<Utc>)> = if let Some(known) = known {
        known
    } else {
        let q = stage_change::Entity::find();
        let q = match subject {
            Subject::Lead(id) => q.filter(stage_change::Column::LeadId.eq(id)),
            Subject::Opportunity(id) => q.filter(stage_change::Column::OpportunityId.eq(id)),
        };
        q.all(w.db())
            .await?
            .into_iter()
            .map(|c| (c.to_stage, c.at))
            .collect()
    };
    let mut changes = Vec::new();
    // The line's index of each change kept (errors name it).
    let mut kept = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at_item = |e: AppError| match e {
            AppError::BadInput { field, message } => AppError::BadInput {
                field: Some(match field {
                    Some(f) => format!("changes[{i}].{f}"),
                    None => format!("changes[{i}]"),
                }),
                message: format!("changes[{i}]: {message}"),
            },
            AppError::NotFound(what) => AppError::NotFound(format!("changes[{i}]: {what}")),
            other => other,
        };
        let Value::Object(c) = item else {
            return Err(at_item(AppError::bad_input(
                "changes",
                "a change must be an object",
            )));
        };
        let to = text(c, "toStage")
            .and_then(|t| t.ok_or_else(|| AppError::bad_input("toStage", "`toStage` is required")))
            .map_err(at_item)?;
        let at = time(c, "at")
            .and_then(|t| t.ok_or_else(|| AppError::bad_input("at", "`at` is required")))
            .map_err(at_item)?;
        if present.contains(&(to.clone(), at)) {
            continue;
        }
        if is_lead && to == LeadStage::Converted.as_str() {
            return Err(at_item(AppError::bad_input(
                "toStage",
                "a lead is converted by its opportunity's line (`leadExternalId`)",
            )));
        }
        let actor = user_ref(w, cx, &line.system, c, "actor")
            .await
            .map_err(at_item)?;
        kept.push(i);
        changes.push(ImportedChange {
            from: text(c, "fromStage").map_err(at_item)?,
            to,
            at,
            reason: text(c, "reason").map_err(at_item)?,
            lost_reason: text(c, "lostReason").map_err(at_item)?,
            actor_user_id: actor,
        });
    }
    if changes.is_empty() {
        return Ok(());
    }
    import_in(w, &cx.actor, subject, &changes)
        .await
        .map_err(|e| renumber(e, &kept))?;
    if let Some(h) = cx.memo().histories.get_mut(&id) {
        h.extend(changes.into_iter().map(|c| (c.to, c.at)));
    }
    Ok(())
}

/// An error about `changes[j]` of the changes kept, about `changes[i]` of the line.
fn renumber(e: AppError, kept: &[usize]) -> AppError {
    let fix = |text: String| -> String {
        let Some(start) = text.find("changes[") else {
            return text;
        };
        let digits = start + "changes[".len();
        let Some(len) = text[digits..].find(']') else {
            return text;
        };
        match text[digits..digits + len].parse::<usize>() {
            Ok(j) if j < kept.len() => {
                format!("{}{}{}", &text[..digits], kept[j], &text[digits + len..])
            }
            _ => text,
        }
    };
    match e {
        AppError::BadInput { field, message } => AppError::BadInput {
            field: field.map(fix),
            message: fix(message),
        },
        AppError::Conflict { field, message } => AppError::Conflict {
            field: field.map(fix),
            message: fix(message),
        },
        AppError::NotFound(what) => AppError::NotFound(fix(what)),
        AppError::Forbidden(message) => AppError::Forbidden(fix(message)),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Line {
        parse_line(1, text).expect("a valid line")
    }

    fn reach(lines: &[&str]) -> Reach {
        let mut r = Reach::default();
        for l in lines {
            r.add(&line(l));
        }
        r
    }

    const LEAD_1: &str = r#"{"type":"lead","system":"crm","externalId":"L-1","email":"a@x.example","accountExternalId":"A-1"}"#;
    const HISTORY_1: &str =
        r#"{"type":"stage_change","system":"crm","leadExternalId":"L-1","changes":[]}"#;
    const TOUCH_1: &str = r#"{"type":"touchpoint","system":"crm","leadExternalId":"L-1","campaignExternalId":"C-1","occurredAt":"2026-01-01T00:00:00Z"}"#;
    const LEAD_2: &str = r#"{"type":"lead","system":"crm","externalId":"L-2","email":"b@x.example","accountExternalId":"A-1"}"#;
    const ACCOUNT: &str =
        r#"{"type":"account","system":"crm","externalId":"A-2","name":"Initech"}"#;

    #[test]
    fn a_batch_waits_only_for_the_batches_it_depends_on() {
        let first = reach(&[LEAD_1]);
        // Its history and touches refer to L-1: they wait.
        assert!(reach(&[HISTORY_1]).waits_for(&first));
        assert!(reach(&[TOUCH_1]).waits_for(&first));
        // Another lead of the same account does not (the account is only
        // referred to by both).
        assert!(!reach(&[LEAD_2]).waits_for(&first));
        // Two batches that change one lead keep their order.
        assert!(reach(&[TOUCH_1]).waits_for(&reach(&[HISTORY_1])));
        // Accounts, users and campaigns run alone, both ways.
        assert!(reach(&[ACCOUNT]).waits_for(&first));
        assert!(reach(&[LEAD_2]).waits_for(&reach(&[ACCOUNT])));
        // The same system's id, spelt with other case or spaces, is the same key.
        let spaced = LEAD_1.replace(r#""system":"crm""#, r#""system":" CRM ""#);
        assert!(reach(&[HISTORY_1]).waits_for(&reach(&[&spaced])));
    }

    #[test]
    fn a_full_batch_keeps_the_lines_of_its_records() {
        let open = reach(&[LEAD_1]);
        assert!(open.needed_by(&line(HISTORY_1)));
        assert!(open.needed_by(&line(TOUCH_1)));
        assert!(!open.needed_by(&line(LEAD_2)));
    }
}
