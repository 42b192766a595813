//! The hand-off metrics of the domain model: SLA compliance (per policy and
//! period bucket) and the hand-off audit (per route, reason or user), in SQL
//! on both databases.

use super::service::{
    Interval, MetricFilter, Period, f64_at, has_opp_conditions, i64_at, lead_conditions,
    opp_conditions, sum,
};
use super::sql::Sql;
use crate::error::AppResult;
use chrono::{DateTime, Months, NaiveDate, Utc};
use entity::enums::{HandoffReason, HandoffStatus, SlaPeriod};
use entity::{handoff, sla_policy};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QueryResult,
};
use uuid::Uuid;

/// Keeps the hand-offs whose lead (lead metrics' reading of the filters) or
/// opportunity (opportunity metrics' reading) passes the filter.
fn handoff_conditions(q: &mut Sql, f: &MetricFilter, h: &str) {
    if !has_opp_conditions(f) {
        return;
    }
    q.push(&format!(
        " AND ({h}.lead_id IN (SELECT fl.id FROM leads fl WHERE 1 = 1"
    ));
    lead_conditions(q, f, "fl");
    q.push(&format!(
        ") OR {h}.opportunity_id IN (SELECT fo.id FROM opportunities fo WHERE 1 = 1"
    ));
    opp_conditions(q, f, "fo");
    q.push("))");
}

/// One period bucket of a policy's compliance.
#[derive(Debug, Clone, PartialEq)]
pub struct SlaBucket {
    /// The bucket's part of the period: `[from, to)`.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Leads handed off under the policy that became MQL in the bucket.
    pub mqls_delivered: i64,
    /// Hand-offs under the policy due in the bucket.
    pub due: i64,
    /// …of which ACCEPTED or REJECTED at or before `dueAt`.
    pub answered_in_time: i64,
    /// …of which ACCEPTED or REJECTED at all.
    pub answered: i64,
    /// Median hours from hand-off to answer, over the due ones answered.
    pub median_response_hours: Option<f64>,
    /// The due ones still PENDING with `dueAt` before now.
    pub overdue: Vec<handoff::Model>,
}

fn step(period: SlaPeriod) -> (Interval, &'static str, u32) {
    match period {
        SlaPeriod::Month => (Interval::Month, "month", 1),
        SlaPeriod::Quarter => (Interval::Quarter, "quarter", 3),
    }
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// The bucket label of a row (`YYYY-MM-DD`, the bucket's first day).
fn label(backend: DbBackend, col: &str) -> String {
    if backend == DbBackend::Postgres {
        format!("to_char({col}, 'YYYY-MM-DD')")
    } else {
        col.to_owned()
    }
}

fn bucket_of(row: &QueryResult) -> AppResult<Option<NaiveDate>> {
    let key: Option<String> = row.try_get("", "b")?;
    Ok(key.and_then(|k| NaiveDate::parse_from_str(&k, "%Y-%m-%d").ok()))
}

/// SLA compliance of a policy over a period, per MONTH or QUARTER of the
/// policy (the first and last buckets cut to the period). "Due in the
/// period" goes by `dueAt`; MQLs by the time the lead became MQL.
pub async fn sla_compliance(
    db: &impl ConnectionTrait,
    p: &Period,
    f: &MetricFilter,
    policy: &sla_policy::Model,
    now: DateTime<Utc>,
) -> AppResult<Vec<SlaBucket>> {
    let (interval, iv, months) = step(policy.period);
    let mut out = Vec::new();
    let mut start = interval.floor(p.from);
    while midnight(start) < p.to && out.len() <= super::service::MAX_BUCKETS {
        let next = start
            .checked_add_months(Months::new(months))
            .unwrap_or(start);
        out.push((
            start,
            SlaBucket {
                from: midnight(start).max(p.from),
                to: midnight(next).min(p.to),
                mqls_delivered: 0,
                due: 0,
                answered_in_time: 0,
                answered: 0,
                median_response_hours: None,
                overdue: Vec::new(),
            },
        ));
        if next == start {
            break;
        }
        start = next;
    }
    let backend = db.get_database_backend();
    let answered = "h.status IN ('ACCEPTED', 'REJECTED')";

    // Hand-offs due, answered, answered in time.
    let mut q = Sql::new(backend);
    q.push(&format!(
        "SELECT {} AS b, COUNT(*) AS due, {} AS in_time, {} AS answered FROM handoffs h WHERE h.policy_id = ",
        q.bucket(iv, "h.due_at"),
        sum(&format!("CASE WHEN {answered} AND h.responded_at <= h.due_at THEN 1 ELSE 0 END")),
        sum(&format!("CASE WHEN {answered} THEN 1 ELSE 0 END")),
    ))
    .bind(policy.id)
    .push(" AND h.due_at >= ")
    .bind(p.from)
    .push(" AND h.due_at < ")
    .bind(p.to);
    handoff_conditions(&mut q, f, "h");
    q.push(" GROUP BY 1");
    let rows = query_labelled(db, q, "s.due, s.in_time, s.answered").await?;
    for row in rows {
        if let Some(b) = bucket_of(&row)?
            && let Some((_, bucket)) = out.iter_mut().find(|(s, _)| *s == b)
        {
            bucket.due = i64_at(&row, "due")?;
            bucket.answered_in_time = i64_at(&row, "in_time")?;
            bucket.answered = i64_at(&row, "answered")?;
        }
    }

    // Median response hours of the due ones answered.
    let mut inner = Sql::new(backend);
    let hours = inner.hours("h.handed_at", "h.responded_at");
    inner
        .push(&format!(
            "SELECT {} AS k, {hours} AS v FROM handoffs h WHERE {answered} AND h.responded_at IS NOT NULL AND h.policy_id = ",
            inner.bucket(iv, "h.due_at")
        ))
        .bind(policy.id)
        .push(" AND h.due_at >= ")
        .bind(p.from)
        .push(" AND h.due_at < ")
        .bind(p.to);
    handoff_conditions(&mut inner, f, "h");
    let (text, values) = inner.into_parts();
    let mut m = Sql::new(backend);
    let median = m.median_by(&text);
    m.push(&format!(
        "SELECT {} AS b, md.median FROM (",
        label(backend, "md.k")
    ))
    .push_with(&median, values)
    .push(") md");
    for row in db.query_all_raw(m.statement()).await? {
        if let Some(b) = bucket_of(&row)?
            && let Some((_, bucket)) = out.iter_mut().find(|(s, _)| *s == b)
        {
            bucket.median_response_hours = f64_at(&row, "median")?;
        }
    }

    // MQLs delivered: leads handed off under the policy, by when they became MQL.
    let mut q = Sql::new(backend);
    q.push(&format!(
        "SELECT {} AS b, COUNT(*) AS n FROM leads l WHERE l.mql_at >= ",
        q.bucket(iv, "l.mql_at")
    ))
    .bind(p.from)
    .push(" AND l.mql_at < ")
    .bind(p.to)
    .push(" AND l.id IN (SELECT h.lead_id FROM handoffs h WHERE h.lead_id IS NOT NULL AND h.policy_id = ")
    .bind(policy.id)
    .push(")");
    lead_conditions(&mut q, f, "l");
    q.push(" GROUP BY 1");
    for row in query_labelled(db, q, "s.n").await? {
        if let Some(b) = bucket_of(&row)?
            && let Some((_, bucket)) = out.iter_mut().find(|(s, _)| *s == b)
        {
            bucket.mqls_delivered = i64_at(&row, "n")?;
        }
    }

    // Overdue: due in the period, still PENDING, due before now (a short list by index).
    let mut ids = Sql::new(backend);
    ids.push("SELECT h.id AS id FROM handoffs h WHERE h.status = 'PENDING' AND h.policy_id = ")
        .bind(policy.id)
        .push(" AND h.due_at >= ")
        .bind(p.from)
        .push(" AND h.due_at < ")
        .bind(p.to.min(now));
    handoff_conditions(&mut ids, f, "h");
    let overdue_ids: Vec<Uuid> = db
        .query_all_raw(ids.statement())
        .await?
        .iter()
        .map(|r| r.try_get::<Uuid>("", "id"))
        .collect::<Result<_, _>>()?;
    if !overdue_ids.is_empty() {
        let overdue = handoff::Entity::find()
            .filter(handoff::Column::Id.is_in(overdue_ids))
            .order_by_asc(handoff::Column::DueAt)
            .order_by_asc(handoff::Column::Id)
            .all(db)
            .await?;
        for h in overdue {
            if let Some(due) = h.due_at
                && let Some((_, bucket)) = out.iter_mut().find(|(_, b)| b.from <= due && due < b.to)
            {
                bucket.overdue.push(h);
            }
        }
    }
    Ok(out.into_iter().map(|(_, b)| b).collect())
}

/// Runs a grouped query whose first column `b` is a bucket, formatting the
/// bucket as `YYYY-MM-DD` after grouping (cheap on PostgreSQL).
async fn query_labelled(
    db: &impl ConnectionTrait,
    q: Sql,
    rest: &str,
) -> AppResult<Vec<QueryResult>> {
    let backend = q.backend;
    let (inner, values) = q.into_parts();
    let mut outer = Sql::new(backend);
    outer
        .push(&format!(
            "SELECT {} AS b, {rest} FROM (",
            label(backend, "s.b")
        ))
        .push_with(&inner, values)
        .push(") s");
    Ok(db.query_all_raw(outer.statement()).await?)
}

/// How the hand-off audit groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditGroup {
    /// fromTeam → toTeam.
    Route,
    /// The rejection reason (NONE for hand-offs not rejected).
    Reason,
    /// The user who answered, or else the user it was handed to (NONE).
    User,
}

/// The key of an audit row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum AuditKey {
    Route { from: Uuid, to: Uuid },
    Reason(Option<HandoffReason>),
    User(Option<Uuid>),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuditCounts {
    pub handed: i64,
    pub accepted: i64,
    pub rejected: i64,
    pub expired: i64,
    pub pending: i64,
    /// Accepted ones whose lead became an opportunity (or that were an opportunity's).
    pub accepted_to_opportunity: i64,
    /// …whose opportunity is closed won, as the data stands.
    pub accepted_won: i64,
    pub rejections: Vec<(HandoffReason, i64)>,
}

/// The hand-offs handed in the period, grouped.
pub async fn handoff_audit(
    db: &impl ConnectionTrait,
    p: &Period,
    f: &MetricFilter,
    group: AuditGroup,
) -> AppResult<Vec<(AuditKey, AuditCounts)>> {
    let backend = db.get_database_backend();
    let keys = match group {
        AuditGroup::Route => "h.from_team_id AS k1, h.to_team_id AS k2",
        AuditGroup::Reason => "h.reason AS k1",
        AuditGroup::User => "COALESCE(h.responded_by_id, h.to_user_id) AS k1",
    };
    let group_cols = match group {
        AuditGroup::Route => "h.from_team_id, h.to_team_id",
        AuditGroup::Reason => "h.reason",
        AuditGroup::User => "COALESCE(h.responded_by_id, h.to_user_id)",
    };
    let from_where = |q: &mut Sql| {
        q.push(
            " FROM handoffs h LEFT JOIN leads l ON l.id = h.lead_id \
             LEFT JOIN opportunities o ON o.id = COALESCE(h.opportunity_id, l.converted_opportunity_id) \
             WHERE h.handed_at >= ",
        )
        .bind(p.from)
        .push(" AND h.handed_at < ")
        .bind(p.to);
        handoff_conditions(q, f, "h");
    };
    let status = |s: HandoffStatus| {
        sum(&format!(
            "CASE WHEN h.status = '{}' THEN 1 ELSE 0 END",
            s.as_str()
        ))
    };
    let mut q = Sql::new(backend);
    q.push(&format!(
        "SELECT {keys}, COUNT(*) AS handed, {} AS accepted, {} AS rejected, {} AS expired, {} AS pending, {} AS to_opp, {} AS won",
        status(HandoffStatus::Accepted),
        status(HandoffStatus::Rejected),
        status(HandoffStatus::Expired),
        status(HandoffStatus::Pending),
        sum("CASE WHEN h.status = 'ACCEPTED' AND o.id IS NOT NULL THEN 1 ELSE 0 END"),
        sum("CASE WHEN h.status = 'ACCEPTED' AND o.stage = 'CLOSED_WON' THEN 1 ELSE 0 END"),
    ));
    from_where(&mut q);
    q.push(&format!(" GROUP BY {group_cols}"));
    let mut out: Vec<(AuditKey, AuditCounts)> = Vec::new();
    for row in db.query_all_raw(q.statement()).await? {
        let key = read_key(&row, group)?;
        out.push((
            key,
            AuditCounts {
                handed: i64_at(&row, "handed")?,
                accepted: i64_at(&row, "accepted")?,
                rejected: i64_at(&row, "rejected")?,
                expired: i64_at(&row, "expired")?,
                pending: i64_at(&row, "pending")?,
                accepted_to_opportunity: i64_at(&row, "to_opp")?,
                accepted_won: i64_at(&row, "won")?,
                rejections: Vec::new(),
            },
        ));
    }
    let mut r = Sql::new(backend);
    r.push(&format!("SELECT {keys}, h.reason AS reason, COUNT(*) AS n"));
    from_where(&mut r);
    r.push(&format!(
        " AND h.status = 'REJECTED' AND h.reason IS NOT NULL GROUP BY {group_cols}, h.reason"
    ));
    for row in db.query_all_raw(r.statement()).await? {
        let key = read_key(&row, group)?;
        let reason: Option<HandoffReason> = row
            .try_get::<Option<String>>("", "reason")?
            .and_then(|s| HandoffReason::ALL.iter().copied().find(|r| r.as_str() == s));
        if let Some(reason) = reason
            && let Some((_, counts)) = out.iter_mut().find(|(k, _)| *k == key)
        {
            counts.rejections.push((reason, i64_at(&row, "n")?));
        }
    }
    for (_, c) in out.iter_mut() {
        c.rejections.sort();
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn read_key(row: &QueryResult, group: AuditGroup) -> AppResult<AuditKey> {
    Ok(match group {
        AuditGroup::Route => AuditKey::Route {
            from: row.try_get("", "k1")?,
            to: row.try_get("", "k2")?,
        },
        AuditGroup::Reason => AuditKey::Reason(
            row.try_get::<Option<String>>("", "k1")?
                .and_then(|s| HandoffReason::ALL.iter().copied().find(|r| r.as_str() == s)),
        ),
        AuditGroup::User => AuditKey::User(row.try_get("", "k1")?),
    })
}

/// The GraphQL shapes of the hand-off metrics.
pub mod graphql {
    use super::{AuditCounts, AuditGroup, AuditKey, SlaBucket};
    use crate::graphql::context::load_one;
    use crate::graphql::loaders::{TeamById, UserById};
    use crate::records::handoffs::graphql::Handoff;
    use crate::records::teams::graphql::Team;
    use crate::records::users::graphql::User;
    use async_graphql::{Context, Enum, ID, Object, Result, SimpleObject};
    use chrono::{DateTime, Utc};
    use entity::enums::HandoffReason;
    use entity::sla_policy;
    use uuid::Uuid;

    /// One period bucket of an SLA policy's compliance.
    pub struct SlaComplianceRow {
        target: i32,
        bucket: SlaBucket,
    }

    impl SlaComplianceRow {
        pub fn new(policy: &sla_policy::Model, bucket: SlaBucket) -> Self {
            SlaComplianceRow {
                target: policy.qualified_lead_target,
                bucket,
            }
        }
    }

    #[Object]
    impl SlaComplianceRow {
        /// The bucket's start (or the period's, when later).
        async fn period_from(&self) -> DateTime<Utc> {
            self.bucket.from
        }
        /// The bucket's end, exclusive (or the period's, when earlier).
        async fn period_to(&self) -> DateTime<Utc> {
            self.bucket.to
        }
        /// Leads handed off under the policy that became MQL in the bucket.
        async fn mqls_delivered(&self) -> i64 {
            self.bucket.mqls_delivered
        }
        /// The policy's `qualifiedLeadTarget` (per whole period).
        async fn target(&self) -> i32 {
            self.target
        }
        /// mqlsDelivered / target.
        async fn target_attainment(&self) -> Option<f64> {
            (self.target > 0).then(|| self.bucket.mqls_delivered as f64 / f64::from(self.target))
        }
        /// Hand-offs under the policy due in the bucket.
        async fn handoffs_due(&self) -> i64 {
            self.bucket.due
        }
        /// …ACCEPTED or REJECTED at or before their `dueAt`.
        async fn answered_in_time(&self) -> i64 {
            self.bucket.answered_in_time
        }
        /// …ACCEPTED or REJECTED at all (in time or late).
        async fn answered(&self) -> i64 {
            self.bucket.answered
        }
        /// answeredInTime / handoffsDue.
        async fn compliance_rate(&self) -> Option<f64> {
            (self.bucket.due > 0)
                .then(|| self.bucket.answered_in_time as f64 / self.bucket.due as f64)
        }
        /// Median hours from hand-off to answer, over the due ones answered.
        async fn median_response_hours(&self) -> Option<f64> {
            self.bucket.median_response_hours
        }
        /// How many due in the bucket are still PENDING past `dueAt`.
        async fn overdue_pending(&self) -> i64 {
            self.bucket.overdue.len() as i64
        }
        /// The due ones still PENDING past `dueAt`, earliest due first.
        async fn overdue(&self) -> Vec<Handoff> {
            self.bucket.overdue.iter().cloned().map(Handoff).collect()
        }
    }

    #[derive(Enum, Clone, Copy, PartialEq, Eq)]
    pub enum HandoffAuditGroup {
        /// fromTeam → toTeam.
        Route,
        /// The rejection reason (`NONE` for hand-offs not rejected).
        Reason,
        /// The user who answered, or else the user it was handed to (`NONE`).
        User,
    }

    impl From<HandoffAuditGroup> for AuditGroup {
        fn from(g: HandoffAuditGroup) -> Self {
            match g {
                HandoffAuditGroup::Route => AuditGroup::Route,
                HandoffAuditGroup::Reason => AuditGroup::Reason,
                HandoffAuditGroup::User => AuditGroup::User,
            }
        }
    }

    #[derive(SimpleObject)]
    pub struct ReasonCount {
        pub reason: HandoffReason,
        pub count: i64,
    }

    /// One row of the hand-off audit.
    pub struct HandoffAuditRow {
        key: AuditKey,
        counts: AuditCounts,
    }

    impl HandoffAuditRow {
        pub fn new(key: AuditKey, counts: AuditCounts) -> Self {
            HandoffAuditRow { key, counts }
        }
    }

    fn id(u: Uuid) -> ID {
        ID(u.to_string())
    }

    #[Object]
    impl HandoffAuditRow {
        /// ROUTE: `fromTeamId:toTeamId`; REASON: the reason; USER: the user id; `NONE` when none.
        async fn key(&self) -> String {
            match &self.key {
                AuditKey::Route { from, to } => format!("{from}:{to}"),
                AuditKey::Reason(r) => r.map(|r| r.as_str()).unwrap_or_else(|| "NONE".into()),
                AuditKey::User(u) => u.map(|u| u.to_string()).unwrap_or_else(|| "NONE".into()),
            }
        }
        /// ROUTE only.
        #[graphql(name = "fromTeamId")]
        async fn sending_team_id(&self) -> Option<ID> {
            match self.key {
                AuditKey::Route { from, .. } => Some(id(from)),
                _ => None,
            }
        }
        /// ROUTE only.
        async fn to_team_id(&self) -> Option<ID> {
            match self.key {
                AuditKey::Route { to, .. } => Some(id(to)),
                _ => None,
            }
        }
        #[graphql(name = "fromTeam")]
        async fn sending_team(&self, ctx: &Context<'_>) -> Result<Option<Team>> {
            let key = match self.key {
                AuditKey::Route { from, .. } => Some(from),
                _ => None,
            };
            Ok(load_one::<TeamById>(ctx, key).await?.map(Team))
        }
        async fn to_team(&self, ctx: &Context<'_>) -> Result<Option<Team>> {
            let key = match self.key {
                AuditKey::Route { to, .. } => Some(to),
                _ => None,
            };
            Ok(load_one::<TeamById>(ctx, key).await?.map(Team))
        }
        /// REASON only.
        async fn reason(&self) -> Option<HandoffReason> {
            match self.key {
                AuditKey::Reason(r) => r,
                _ => None,
            }
        }
        /// USER only.
        async fn user(&self, ctx: &Context<'_>) -> Result<Option<User>> {
            let key = match self.key {
                AuditKey::User(u) => u,
                _ => None,
            };
            Ok(load_one::<UserById>(ctx, key).await?.map(User))
        }
        async fn handed(&self) -> i64 {
            self.counts.handed
        }
        async fn accepted(&self) -> i64 {
            self.counts.accepted
        }
        async fn rejected(&self) -> i64 {
            self.counts.rejected
        }
        async fn expired(&self) -> i64 {
            self.counts.expired
        }
        /// Still PENDING (overdue or not).
        async fn pending(&self) -> i64 {
            self.counts.pending
        }
        /// accepted / handed.
        async fn acceptance_rate(&self) -> Option<f64> {
            (self.counts.handed > 0)
                .then(|| self.counts.accepted as f64 / self.counts.handed as f64)
        }
        /// Rejections by reason (reasons with none left out).
        async fn rejections_by_reason(&self) -> Vec<ReasonCount> {
            self.counts
                .rejections
                .iter()
                .map(|(reason, count)| ReasonCount {
                    reason: *reason,
                    count: *count,
                })
                .collect()
        }
        /// Accepted ones whose lead was converted (or that were an opportunity's hand-off).
        async fn accepted_to_opportunity(&self) -> i64 {
            self.counts.accepted_to_opportunity
        }
        /// …whose opportunity is closed won, as the data stands.
        async fn accepted_won(&self) -> i64 {
            self.counts.accepted_won
        }
    }
}
