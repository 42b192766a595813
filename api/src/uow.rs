//! The unit of work: the one way to write to the records.
//!
//! Every change — a GraphQL mutation, an import, a webhook, a job — runs as a
//! unit: [`run`] begins a write transaction (`IMMEDIATE` on SQLite), hands the
//! unit a [`Work`], and commits what the unit did, or retries it from the
//! start when PostgreSQL chose it as the victim of a deadlock (40P01) or a
//! serialization failure (40001): a bounded, jittered number of times, so a
//! client never sees those as errors.
//!
//! What a write must not forget is done by `Work`, not by each service:
//! - **Locks, in one order.** A unit locks the rows it will change before it
//!   reads them: accounts, then leads, then opportunities, then hand-offs,
//!   each set by id in one statement. A hand-off is locked last: an answer
//!   first locks the lead or opportunity it is about (read from the
//!   hand-off, unlocked), then the hand-off, then checks it is still
//!   PENDING — so two answers to one hand-off queue on its row and the
//!   second sees the first's outcome. Changing a lead or opportunity the
//!   unit already holds stays allowed after that (no new lock is taken). `Work` refuses a lock that goes back to an earlier kind
//!   (a programming error, reported as INTERNAL), so two units can only wait
//!   for each other in one direction. Leads and opportunities can only be
//!   updated through the [`Locked`] value their lock returns.
//! - **Rollups.** Locking a lead (or an account's leads, when the account's
//!   segment or target flag changes) takes a snapshot of what it contributes
//!   to the funnel rollups; at commit the same is read again and only the
//!   difference is written, in key order, so that writers of crossed keys
//!   take the rollup rows' locks in one order too, for the shortest time.
//! - **Attribution credits** of the won opportunities whose amount, stage,
//!   lead's touches or lead's MQL entry changed are rewritten at commit.
//! - **The data version** (what the metric cache keys on) is raised inside
//!   the same transaction, on one of several slots, so that concurrent
//!   writers do not queue on one row.
//!
//! Names follow one rule in every service: `foo(db, …)` owns its unit (it
//! calls [`run`]), `foo_in(w, …)` joins the caller's.

use crate::error::{AppError, AppResult};
use crate::metrics::rollups::{self, Contributions};
use entity::{account, handoff, lead, opportunity, touchpoint};
use sea_orm::sea_query::LockType;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    DbBackend, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;
use uuid::Uuid;

/// How many times a unit runs at most when PostgreSQL keeps choosing it as
/// the victim of a deadlock or a serialization failure.
pub const MAX_ATTEMPTS: u32 = 10;

/// The slots of the data version (see `metrics::cache`).
pub const DATA_VERSION_SLOTS: u32 = 16;

/// Proof that a unit committed, carrying what it returns.
#[derive(Debug)]
pub struct Done<T>(T);

/// A row this unit holds locked, as read after the lock.
#[derive(Debug, Clone)]
pub struct Locked<M>(M);

impl<M> Locked<M> {
    pub fn model(&self) -> &M {
        &self.0
    }
}

impl<M> std::ops::Deref for Locked<M> {
    type Target = M;
    fn deref(&self) -> &M {
        &self.0
    }
}

/// The kinds of rows, in the order a unit locks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Start,
    Accounts,
    Leads,
    Opportunities,
    Handoffs,
}

/// How an account is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountLock {
    /// It will be updated.
    Update,
    /// It will be referenced by a new or moved lead or opportunity: it must
    /// stay (and keep its segment) until this unit commits.
    Reference,
}

#[derive(Debug, thiserror::Error)]
#[error("lock order: {0}")]
struct LockOrder(String);

/// An open unit of work (see the module's documentation).
pub struct Work {
    txn: DatabaseTransaction,
    backend: DbBackend,
    phase: Phase,
    /// Accounts this unit holds, and how.
    locked_accounts: std::collections::BTreeMap<Uuid, AccountLock>,
    /// Leads whose rollup contribution is in `before`, by id…
    leads: BTreeSet<Uuid>,
    /// Opportunities this unit holds.
    opportunities: BTreeSet<Uuid>,
    /// …or by account (every lead of these accounts).
    accounts: BTreeSet<Uuid>,
    /// Leads locked but not changed (no snapshot).
    held: BTreeSet<Uuid>,
    before: Contributions,
    /// Credits to rewrite: won opportunities by id, and of these leads.
    credit_opportunities: BTreeSet<Uuid>,
    credit_leads: BTreeSet<Uuid>,
    /// Opportunities whose stage history grew: their changes' `until_at`
    /// is rewritten at commit.
    histories: BTreeSet<Uuid>,
    /// Hand-offs created or answered, announced once the unit commits.
    handoff_events: Vec<handoff::Model>,
    /// Where this database's hand-off events go (see `records::handoffs::events`).
    events_key: String,
    /// Users and campaigns this unit has found (neither is ever deleted):
    /// a bulk write checks each once, not once per row that names it.
    found: std::sync::Mutex<std::collections::HashSet<(Found, Uuid)>>,
}

/// Rows [`Work::check_exists`] remembers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Found {
    User,
    Campaign,
}

/// Runs `unit` in a write transaction and commits it; on PostgreSQL a
/// deadlock or serialization failure runs it again from the start.
///
/// ```ignore
/// uow::run(db, |mut w| async move {
///     let lead = leads::change_stage_in(&mut w, …).await?;
///     w.commit(lead).await
/// })
/// ```
pub async fn run<T, F, Fut>(db: &DatabaseConnection, mut unit: F) -> AppResult<T>
where
    F: FnMut(Work) -> Fut,
    Fut: Future<Output = AppResult<Done<T>>>,
{
    let mut attempt = 1;
    loop {
        let work = Work::begin(db).await?;
        match unit(work).await {
            Ok(Done(value)) => return Ok(value),
            Err(e) if attempt < MAX_ATTEMPTS && is_retryable(&e) => {
                let wait = backoff(attempt);
                tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, error = ?e, "unit of work retried");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(e) => {
                if is_retryable(&e) {
                    tracing::warn!(attempt, "unit of work gave up after repeated deadlocks");
                }
                return Err(e);
            }
        }
    }
}

/// Full jitter over an exponential ceiling: 2 ms, 4 ms, … up to 250 ms.
fn backoff(attempt: u32) -> Duration {
    let ceiling = (2u64 << attempt.min(7)).min(250);
    Duration::from_micros(rand::random_range(500..=ceiling * 1000))
}

/// Whether an error is PostgreSQL's deadlock or serialization failure.
pub fn is_retryable(e: &AppError) -> bool {
    let AppError::Internal(inner) = e else {
        return false;
    };
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(inner.as_ref());
    while let Some(err) = source {
        if let Some(db) = err.downcast_ref::<DbErr>()
            && let Some(code) = sqlstate(db)
        {
            return code == "40P01" || code == "40001";
        }
        source = err.source();
    }
    false
}

fn sqlstate(e: &DbErr) -> Option<String> {
    crate::error::database_error(e)
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
}

impl Work {
    async fn begin(db: &DatabaseConnection) -> AppResult<Work> {
        #[allow(clippy::disallowed_methods)] // the one place a write transaction begins
        let txn = db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await?;
        Ok(Work {
            backend: txn.get_database_backend(),
            txn,
            phase: Phase::Start,
            locked_accounts: std::collections::BTreeMap::new(),
            leads: BTreeSet::new(),
            opportunities: BTreeSet::new(),
            accounts: BTreeSet::new(),
            held: BTreeSet::new(),
            before: Contributions::default(),
            credit_opportunities: BTreeSet::new(),
            credit_leads: BTreeSet::new(),
            histories: BTreeSet::new(),
            handoff_events: Vec::new(),
            events_key: crate::records::handoffs::events::key(db),
            found: Default::default(),
        })
    }

    /// NOT_FOUND (naming `what`) unless the user or campaign `id` exists;
    /// each is read once per unit.
    pub async fn check_exists(&self, table: Found, id: Uuid, what: &str) -> AppResult<()> {
        let seen = self
            .found
            .lock()
            .map(|f| f.contains(&(table, id)))
            .unwrap_or(false);
        if seen {
            return Ok(());
        }
        let there = match table {
            Found::User => entity::user::Entity::find_by_id(id)
                .select_only()
                .column(entity::user::Column::Id)
                .into_tuple::<Uuid>()
                .one(&self.txn)
                .await?
                .is_some(),
            Found::Campaign => entity::campaign::Entity::find_by_id(id)
                .select_only()
                .column(entity::campaign::Column::Id)
                .into_tuple::<Uuid>()
                .one(&self.txn)
                .await?
                .is_some(),
        };
        if !there {
            return Err(AppError::not_found(what));
        }
        if let Ok(mut f) = self.found.lock() {
            f.insert((table, id));
        }
        Ok(())
    }

    /// The transaction, for reads.
    pub fn db(&self) -> &DatabaseTransaction {
        &self.txn
    }

    fn is_postgres(&self) -> bool {
        self.backend == DbBackend::Postgres
    }

    fn enter(&mut self, phase: Phase) -> AppResult<()> {
        if phase < self.phase {
            return Err(AppError::internal(LockOrder(format!(
                "{phase:?} locked after {:?}",
                self.phase
            ))));
        }
        self.phase = phase;
        Ok(())
    }

    /// Locks accounts (by id, in one statement) and returns them as read
    /// after the lock; a missing one is NOT_FOUND.
    pub async fn lock_accounts(
        &mut self,
        ids: &[Uuid],
        mode: AccountLock,
    ) -> AppResult<Vec<Locked<account::Model>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: BTreeSet<Uuid> = ids.iter().copied().collect();
        // Already held as strongly as asked: no new lock (nor phase).
        let new = ids.iter().any(|id| match self.locked_accounts.get(id) {
            Some(AccountLock::Update) => false,
            Some(AccountLock::Reference) => mode == AccountLock::Update,
            None => true,
        });
        if new {
            self.enter(Phase::Accounts)?;
        }
        let mut q = account::Entity::find()
            .filter(account::Column::Id.is_in(ids.iter().copied()))
            .order_by_asc(account::Column::Id);
        if self.is_postgres() && new {
            // A reference keeps the row (FK checks take KEY SHARE) and its
            // segment: an account update's FOR UPDATE waits for it.
            q = q.lock(match mode {
                AccountLock::Update => LockType::Update,
                AccountLock::Reference => LockType::Share,
            });
        }
        let rows = q.all(&self.txn).await?;
        if rows.len() != ids.len() {
            return Err(AppError::not_found("account"));
        }
        for id in ids {
            let held = self.locked_accounts.entry(id).or_insert(mode);
            if mode == AccountLock::Update {
                *held = AccountLock::Update;
            }
        }
        Ok(rows.into_iter().map(Locked).collect())
    }

    /// Locks one account to update it.
    pub async fn lock_account(&mut self, id: Uuid) -> AppResult<Locked<account::Model>> {
        let mut rows = self.lock_accounts(&[id], AccountLock::Update).await?;
        rows.pop().ok_or_else(|| AppError::not_found("account"))
    }

    /// Locks leads (by id, in one statement), notes what they contribute to
    /// the rollups, and returns them as read after the lock. Missing ids are
    /// left out of the result.
    pub async fn lock_leads(&mut self, ids: &[Uuid]) -> AppResult<Vec<Locked<lead::Model>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: BTreeSet<Uuid> = ids.iter().copied().collect();
        let new: Vec<Uuid> = ids.difference(&self.leads).copied().collect();
        if !new.is_empty() {
            self.enter(Phase::Leads)?;
        }
        let mut q = lead::Entity::find()
            .filter(lead::Column::Id.is_in(ids.iter().copied()))
            .order_by_asc(lead::Column::Id);
        if self.is_postgres() && !new.is_empty() {
            q = q.lock(LockType::Update);
        }
        let rows = q.all(&self.txn).await?;
        if !new.is_empty() {
            let found: Vec<Uuid> = rows
                .iter()
                .map(|l| l.id)
                .filter(|id| !self.leads.contains(id))
                .collect();
            if !found.is_empty() {
                let scope = rollups::Scope {
                    leads: found.clone(),
                    accounts: Vec::new(),
                    except_leads: Vec::new(),
                    except_accounts: self.accounts.iter().copied().collect(),
                };
                let snap = rollups::contributions(&self.txn, &scope).await?;
                self.before.add(&snap);
                self.leads.extend(found);
            }
        }
        Ok(rows.into_iter().map(Locked).collect())
    }

    /// Locks a lead that this unit will not change (a touch is added to
    /// it): no rollup snapshot, as its contribution stays the same; a later
    /// `lock_lead` in the same unit takes one. NOT_FOUND when there is none.
    pub async fn hold_lead(&mut self, id: Uuid) -> AppResult<()> {
        if self.leads.contains(&id) || self.held.contains(&id) {
            return Ok(());
        }
        self.enter(Phase::Leads)?;
        let mut q = lead::Entity::find()
            .select_only()
            .column(lead::Column::Id)
            .filter(lead::Column::Id.eq(id));
        if self.is_postgres() {
            q = q.lock(LockType::Update);
        }
        if q.into_tuple::<Uuid>().one(&self.txn).await?.is_none() {
            return Err(AppError::not_found("lead"));
        }
        self.held.insert(id);
        Ok(())
    }

    /// Locks one lead; NOT_FOUND when there is none.
    pub async fn lock_lead(&mut self, id: Uuid) -> AppResult<Locked<lead::Model>> {
        let mut rows = self.lock_leads(&[id]).await?;
        rows.pop().ok_or_else(|| AppError::not_found("lead"))
    }

    /// Locks every lead of an account whose segment or target flag is about
    /// to change, and notes their rollup contribution.
    async fn lock_account_leads(&mut self, account_id: Uuid) -> AppResult<()> {
        if self.accounts.contains(&account_id) {
            return Ok(());
        }
        self.enter(Phase::Leads)?;
        if self.is_postgres() {
            lead::Entity::find()
                .select_only()
                .column(lead::Column::Id)
                .filter(lead::Column::AccountId.eq(account_id))
                .order_by_asc(lead::Column::Id)
                .lock(LockType::Update)
                .into_tuple::<Uuid>()
                .all(&self.txn)
                .await?;
        }
        let scope = rollups::Scope {
            leads: Vec::new(),
            accounts: vec![account_id],
            except_leads: self.leads.iter().copied().collect(),
            except_accounts: Vec::new(),
        };
        let snap = rollups::contributions(&self.txn, &scope).await?;
        self.before.add(&snap);
        self.accounts.insert(account_id);
        Ok(())
    }

    /// Locks opportunities (by id, in one statement) and returns them as
    /// read after the lock; the leads converted into them are locked first,
    /// as a change of stage or amount moves their rollups.
    pub async fn lock_opportunities(
        &mut self,
        ids: &[Uuid],
    ) -> AppResult<Vec<Locked<opportunity::Model>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: BTreeSet<Uuid> = ids.iter().copied().collect();
        let leads: Vec<Uuid> = lead::Entity::find()
            .select_only()
            .column(lead::Column::Id)
            .filter(lead::Column::ConvertedOpportunityId.is_in(ids.iter().copied()))
            .into_tuple::<Uuid>()
            .all(&self.txn)
            .await?;
        self.lock_leads(&leads).await?;
        // Already held (e.g. re-read after a hand-off was locked): no new lock.
        let new = ids.iter().any(|id| !self.opportunities.contains(id));
        if new {
            self.enter(Phase::Opportunities)?;
        }
        let mut q = opportunity::Entity::find()
            .filter(opportunity::Column::Id.is_in(ids.iter().copied()))
            .order_by_asc(opportunity::Column::Id);
        if self.is_postgres() && new {
            q = q.lock(LockType::Update);
        }
        let rows = q.all(&self.txn).await?;
        self.opportunities.extend(rows.iter().map(|o| o.id));
        Ok(rows.into_iter().map(Locked).collect())
    }

    /// Locks one hand-off (after the lead or opportunity it is about, see
    /// the module's documentation) and returns it as read after the lock;
    /// NOT_FOUND when there is none. On SQLite the unit's `IMMEDIATE`
    /// transaction already serialises writers.
    pub async fn lock_handoff(&mut self, id: Uuid) -> AppResult<Locked<handoff::Model>> {
        self.enter(Phase::Handoffs)?;
        let mut q = handoff::Entity::find_by_id(id);
        if self.is_postgres() {
            q = q.lock(LockType::Update);
        }
        q.one(&self.txn)
            .await?
            .map(Locked)
            .ok_or_else(|| AppError::not_found("handoff"))
    }

    /// Locks the PENDING hand-offs due before `now` (by id, in one
    /// statement; rows another unit holds are skipped on PostgreSQL, `SKIP
    /// LOCKED`: that unit is answering them, and a later run sees the rest).
    pub async fn lock_due_handoffs(
        &mut self,
        now: chrono::DateTime<chrono::Utc>,
        limit: u64,
    ) -> AppResult<Vec<Locked<handoff::Model>>> {
        self.enter(Phase::Handoffs)?;
        let mut q = handoff::Entity::find()
            .filter(handoff::Column::Status.eq(entity::enums::HandoffStatus::Pending))
            .filter(handoff::Column::DueAt.lt(now))
            .order_by_asc(handoff::Column::Id)
            .limit(limit);
        if self.is_postgres() {
            q = q.lock_with_behavior(
                LockType::Update,
                sea_orm::sea_query::LockBehavior::SkipLocked,
            );
        }
        Ok(q.all(&self.txn).await?.into_iter().map(Locked).collect())
    }

    /// Locks one opportunity; NOT_FOUND when there is none.
    pub async fn lock_opportunity(&mut self, id: Uuid) -> AppResult<Locked<opportunity::Model>> {
        let mut rows = self.lock_opportunities(&[id]).await?;
        rows.pop().ok_or_else(|| AppError::not_found("opportunity"))
    }

    /// Inserts a new lead (its rollup contribution is added at commit).
    pub async fn insert_lead(&mut self, am: lead::ActiveModel) -> AppResult<lead::Model> {
        self.enter(Phase::Leads)?;
        #[allow(clippy::disallowed_methods)]
        let created = am.insert(&self.txn).await?;
        // New: it contributed nothing before.
        self.leads.insert(created.id);
        if created.converted_opportunity_id.is_some() || created.mql_at.is_some() {
            self.credit_leads.insert(created.id);
        }
        Ok(created)
    }

    /// Updates a locked lead: `edit` changes the active model.
    pub async fn update_lead(
        &mut self,
        lead: Locked<lead::Model>,
        edit: impl FnOnce(&mut lead::ActiveModel) -> AppResult<()>,
    ) -> AppResult<lead::Model> {
        let before = lead.0;
        let mut am = before.clone().into_active_model();
        edit(&mut am)?;
        #[allow(clippy::disallowed_methods)]
        let after = am.update(&self.txn).await?;
        // W-shaped credit reads the lead's first entry into MQL.
        if after.mql_at != before.mql_at {
            self.credit_leads.insert(after.id);
        }
        Ok(after)
    }

    /// Inserts a new opportunity (a won one's credits are written at commit).
    pub async fn insert_opportunity(
        &mut self,
        am: opportunity::ActiveModel,
    ) -> AppResult<opportunity::Model> {
        #[allow(clippy::disallowed_methods)]
        let created = am.insert(&self.txn).await?;
        if created.stage == entity::enums::OpportunityStage::ClosedWon {
            self.credit_opportunities.insert(created.id);
        }
        Ok(created)
    }

    /// Updates a locked opportunity: `edit` changes the active model.
    pub async fn update_opportunity(
        &mut self,
        opp: Locked<opportunity::Model>,
        edit: impl FnOnce(&mut opportunity::ActiveModel) -> AppResult<()>,
    ) -> AppResult<opportunity::Model> {
        use entity::enums::OpportunityStage::ClosedWon;
        let before = opp.0;
        let mut am = before.clone().into_active_model();
        edit(&mut am)?;
        #[allow(clippy::disallowed_methods)]
        let after = am.update(&self.txn).await?;
        let won = before.stage == ClosedWon || after.stage == ClosedWon;
        if won
            && (before.stage != after.stage
                || before.amount != after.amount
                || before.closed_at != after.closed_at
                || before.created_at != after.created_at
                || before.lead_id != after.lead_id)
        {
            self.credit_opportunities.insert(after.id);
        }
        Ok(after)
    }

    /// Inserts an account (a new one has no leads yet).
    pub async fn insert_account(&mut self, am: account::ActiveModel) -> AppResult<account::Model> {
        #[allow(clippy::disallowed_methods)]
        Ok(am.insert(&self.txn).await?)
    }

    /// Updates a locked account; a change of segment or target flag moves
    /// its leads in the rollups.
    pub async fn update_account(
        &mut self,
        acc: Locked<account::Model>,
        edit: impl FnOnce(&mut account::ActiveModel) -> AppResult<()>,
    ) -> AppResult<account::Model> {
        let before = acc.0;
        let mut am = before.clone().into_active_model();
        edit(&mut am)?;
        let moves = am
            .segment
            .try_as_ref()
            .is_some_and(|s| *s != before.segment)
            || am
                .is_target
                .try_as_ref()
                .is_some_and(|t| *t != before.is_target);
        if moves {
            self.lock_account_leads(before.id).await?;
        }
        #[allow(clippy::disallowed_methods)]
        Ok(am.update(&self.txn).await?)
    }

    /// Records a touch of a lead (locking the lead, whose won opportunities'
    /// credits are rewritten at commit).
    pub async fn insert_touchpoint(
        &mut self,
        am: touchpoint::ActiveModel,
    ) -> AppResult<touchpoint::Model> {
        let lead_id = *am
            .lead_id
            .try_as_ref()
            .ok_or_else(|| AppError::internal(LockOrder("a touchpoint without its lead".into())))?;
        self.hold_lead(lead_id).await?;
        #[allow(clippy::disallowed_methods)]
        let created = am.insert(&self.txn).await?;
        self.credit_leads.insert(lead_id);
        Ok(created)
    }

    /// Inserts a row of a table no rollup reads (stage changes, external
    /// ids, users, teams, campaigns).
    pub async fn insert<A>(&mut self, am: A) -> AppResult<<A::Entity as EntityTrait>::Model>
    where
        A: ActiveModelTrait + sea_orm::ActiveModelBehavior + Plain + Send,
        <A::Entity as EntityTrait>::Model: IntoActiveModel<A>,
    {
        #[allow(clippy::disallowed_methods)]
        Ok(am.insert(&self.txn).await?)
    }

    /// Updates a row of a table no rollup reads.
    pub async fn update<A>(&mut self, am: A) -> AppResult<<A::Entity as EntityTrait>::Model>
    where
        A: ActiveModelTrait + sea_orm::ActiveModelBehavior + Plain + Send,
        <A::Entity as EntityTrait>::Model: IntoActiveModel<A>,
    {
        #[allow(clippy::disallowed_methods)]
        Ok(am.update(&self.txn).await?)
    }

    /// Notes a stage change recorded for an opportunity: at commit each of
    /// its changes gets the time of the next one as `until_at` (what the
    /// pipeline at a past moment reads).
    pub fn note_history(&mut self, opportunity: Uuid) {
        self.histories.insert(opportunity);
    }

    /// Notes a hand-off created or answered by this unit: subscribers hear
    /// of it once the unit commits (never when it rolls back).
    pub fn note_handoff(&mut self, h: &handoff::Model) {
        self.handoff_events.retain(|e| e.id != h.id);
        self.handoff_events.push(h.clone());
    }

    /// Writes what the unit owes the rollups, the credits and the data
    /// version, then commits.
    pub async fn commit<T>(mut self, value: T) -> AppResult<Done<T>> {
        if !self.credit_opportunities.is_empty() || !self.credit_leads.is_empty() {
            self.enter(Phase::Opportunities)?;
            let opps: Vec<Uuid> = self.credit_opportunities.iter().copied().collect();
            let leads: Vec<Uuid> = self.credit_leads.iter().copied().collect();
            rollups::refresh_credits(&self.txn, rollups::Won::Some { opps, leads }).await?;
        }
        if !self.leads.is_empty() || !self.accounts.is_empty() {
            let scope = rollups::Scope {
                leads: self.leads.iter().copied().collect(),
                accounts: self.accounts.iter().copied().collect(),
                except_leads: Vec::new(),
                except_accounts: Vec::new(),
            };
            let after = rollups::contributions(&self.txn, &scope).await?;
            let delta = after.minus(&self.before);
            rollups::apply(&self.txn, &delta).await?;
        }
        if !self.histories.is_empty() {
            let opps: Vec<Uuid> = self.histories.iter().copied().collect();
            rollups::refresh_until(&self.txn, Some(&opps)).await?;
        }
        if !self.leads.is_empty() {
            // A lead's timings follow from the lead, its stage history and
            // its opportunity, all locked through it (an account's change
            // moves none of them).
            let leads: Vec<Uuid> = self.leads.iter().copied().collect();
            crate::metrics::timings::refresh(&self.txn, &leads).await?;
        }
        crate::metrics::cache::bump(&self.txn).await?;
        let events = std::mem::take(&mut self.handoff_events);
        let postgres = self.is_postgres();
        if postgres {
            // Delivered to every replica's listener when (and only if) this commits.
            crate::records::handoffs::events::notify(&self.txn, &events).await?;
        }
        self.txn.commit().await?;
        if !postgres {
            crate::records::handoffs::events::publish(&self.events_key, events).await;
        }
        Ok(Done(value))
    }
}

/// Active models of the tables no rollup reads, which [`Work::insert`] and
/// [`Work::update`] write as they are.
pub trait Plain {}
impl Plain for entity::stage_change::ActiveModel {}
impl Plain for entity::external_id::ActiveModel {}
impl Plain for entity::user::ActiveModel {}
impl Plain for entity::team::ActiveModel {}
impl Plain for entity::campaign::ActiveModel {}
impl Plain for entity::sla_policy::ActiveModel {}
impl Plain for entity::handoff::ActiveModel {}
impl Plain for entity::integration::ActiveModel {}
impl Plain for entity::webhook_event::ActiveModel {}
impl Plain for entity::goal::ActiveModel {}
impl Plain for entity::goal_team::ActiveModel {}
impl Plain for entity::goal_version::ActiveModel {}
impl Plain for entity::compensation_plan::ActiveModel {}
impl Plain for entity::compensation_link::ActiveModel {}
impl Plain for entity::compensation_link_version::ActiveModel {}
