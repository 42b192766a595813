use super::policies::{self, PolicyFields};
use super::service::{self, Answer, HandoffFilter, HandoffOrder, NewHandoff, Who};
use crate::auth::{READERS, RECORD_WRITERS};
use crate::graphql::connection::{Conn, connection};
use crate::graphql::context::{
    Primes, caller, db, load_one, node_selects, parse_id, parse_ids, prime, require,
};
use crate::graphql::inputs::{OrderDirection, TimeRangeInput, patch};
use crate::graphql::loaders::{LeadById, OpportunityById, SlaPolicyById, TeamById, UserById};
use crate::pagination::PageRequest;
use crate::records::leads::graphql::Lead;
use crate::records::opportunities::graphql::Opportunity;
use crate::records::teams::graphql::Team;
use crate::records::users::graphql::User;
use async_graphql::{Context, Enum, ID, InputObject, MaybeUndefined, Object, Result};
use chrono::{DateTime, Utc};
use entity::enums::{Channel, HandoffReason, HandoffStatus, Role, Segment, SlaPeriod};
use entity::{handoff, sla_policy};

/// Roles that manage SLA policies.
const SLA_WRITERS: &[Role] = &[Role::Admin, Role::Revops];

/// A lead or an opportunity passed from one team to another. PENDING until
/// the receiving team accepts or rejects it; EXPIRED once still PENDING
/// past `dueAt` (a breach of the SLA, kept visible).
pub struct Handoff(pub handoff::Model);

#[Object]
impl Handoff {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// The lead handed off (null for an opportunity's hand-off).
    async fn lead(&self, ctx: &Context<'_>) -> Result<Option<Lead>> {
        Ok(load_one::<LeadById>(ctx, self.0.lead_id).await?.map(Lead))
    }
    /// The opportunity handed off (null for a lead's hand-off).
    async fn opportunity(&self, ctx: &Context<'_>) -> Result<Option<Opportunity>> {
        Ok(load_one::<OpportunityById>(ctx, self.0.opportunity_id)
            .await?
            .map(Opportunity))
    }
    #[graphql(name = "fromTeam")]
    async fn sending_team(&self, ctx: &Context<'_>) -> Result<Option<Team>> {
        Ok(load_one::<TeamById>(ctx, Some(self.0.from_team_id))
            .await?
            .map(Team))
    }
    async fn to_team(&self, ctx: &Context<'_>) -> Result<Option<Team>> {
        Ok(load_one::<TeamById>(ctx, Some(self.0.to_team_id))
            .await?
            .map(Team))
    }
    /// The user who handed it off, when a user did.
    #[graphql(name = "fromUser")]
    async fn sending_user(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        Ok(load_one::<UserById>(ctx, self.0.from_user_id)
            .await?
            .map(User))
    }
    /// The user it was handed to, when one was named.
    async fn to_user(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        Ok(load_one::<UserById>(ctx, self.0.to_user_id)
            .await?
            .map(User))
    }
    /// The user who accepted or rejected it.
    async fn responded_by(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        Ok(load_one::<UserById>(ctx, self.0.responded_by_id)
            .await?
            .map(User))
    }
    /// The SLA policy of the route when it was handed off (it set `dueAt`).
    async fn policy(&self, ctx: &Context<'_>) -> Result<Option<SlaPolicy>> {
        Ok(load_one::<SlaPolicyById>(ctx, self.0.policy_id)
            .await?
            .map(SlaPolicy))
    }
    async fn status(&self) -> HandoffStatus {
        self.0.status
    }
    /// Why it was rejected (REJECTED only).
    async fn reason(&self) -> Option<HandoffReason> {
        self.0.reason
    }
    /// The sender's note. Null for VIEWER callers, and for INTEGRATION
    /// callers on hand-offs they did not create (it may name people).
    async fn note(&self, ctx: &Context<'_>) -> Result<Option<&str>> {
        let c = caller(ctx)?;
        Ok(self
            .0
            .note
            .as_deref()
            .filter(|_| c.sees_personal_data(&self.0.created_by)))
    }
    /// The receiver's note with a rejection (masked like `note`).
    async fn response_note(&self, ctx: &Context<'_>) -> Result<Option<&str>> {
        let c = caller(ctx)?;
        Ok(self
            .0
            .response_note
            .as_deref()
            .filter(|_| c.sees_personal_data(&self.0.created_by)))
    }
    async fn handed_at(&self) -> DateTime<Utc> {
        self.0.handed_at
    }
    /// `handedAt` + the route's SLA policy's `responseHours`; null without a policy.
    async fn due_at(&self) -> Option<DateTime<Utc>> {
        self.0.due_at
    }
    /// When it was accepted or rejected.
    async fn responded_at(&self) -> Option<DateTime<Utc>> {
        self.0.responded_at
    }
    /// When the expiry job marked it EXPIRED.
    async fn expired_at(&self) -> Option<DateTime<Utc>> {
        self.0.expired_at
    }
    /// Still PENDING with `dueAt` before now (the expiry job will mark it EXPIRED).
    async fn overdue(&self) -> bool {
        self.0.status == HandoffStatus::Pending && self.0.due_at.is_some_and(|d| d < Utc::now())
    }
    /// Answered at or before `dueAt` (false while unanswered or without a `dueAt`).
    async fn answered_in_time(&self) -> bool {
        matches!(
            self.0.status,
            HandoffStatus::Accepted | HandoffStatus::Rejected
        ) && matches!((self.0.responded_at, self.0.due_at), (Some(r), Some(d)) if r <= d)
    }
    /// Hours from `handedAt` to `respondedAt`.
    async fn response_hours(&self) -> Option<f64> {
        self.0
            .responded_at
            .map(|r| (r - self.0.handed_at).num_microseconds().unwrap_or(0) as f64 / 3.6e9)
    }
    /// The token subject that created it.
    async fn created_by(&self) -> &str {
        &self.0.created_by
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// The service-level agreement of one route fromTeam → toTeam (at most one
/// active policy per route). A lead meeting a MARKETING-owned policy's
/// criteria becomes MQL when it is created or its score changes (stage
/// change reason `sla:qualified`) and, with `autoHandOff`, is handed off to
/// `toTeam` at once. A policy without criteria qualifies nothing by itself:
/// it only times the route's hand-offs.
pub struct SlaPolicy(pub sla_policy::Model);

#[Object]
impl SlaPolicy {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    #[graphql(name = "fromTeam")]
    async fn sending_team(&self, ctx: &Context<'_>) -> Result<Option<Team>> {
        Ok(load_one::<TeamById>(ctx, Some(self.0.from_team_id))
            .await?
            .map(Team))
    }
    async fn to_team(&self, ctx: &Context<'_>) -> Result<Option<Team>> {
        Ok(load_one::<TeamById>(ctx, Some(self.0.to_team_id))
            .await?
            .map(Team))
    }
    /// The period `qualifiedLeadTarget` is counted over.
    async fn period(&self) -> SlaPeriod {
        self.0.period
    }
    /// MQLs the sender delivers per period.
    async fn qualified_lead_target(&self) -> i32 {
        self.0.qualified_lead_target
    }
    /// Hours the receiving team has to accept or reject a hand-off.
    async fn response_hours(&self) -> i32 {
        self.0.response_hours
    }
    /// Qualification: the lead's score at least this.
    async fn min_score(&self) -> Option<i32> {
        self.0.min_score
    }
    /// Qualification: the segment of the lead's account one of these (empty: any).
    async fn segments(&self) -> Vec<Segment> {
        policies::segments(&self.0)
    }
    /// Qualification: the lead's source one of these (empty: any).
    async fn sources(&self) -> Vec<Channel> {
        policies::sources(&self.0)
    }
    async fn auto_hand_off(&self) -> bool {
        self.0.auto_hand_off
    }
    async fn archived(&self) -> bool {
        self.0.archived_at.is_some()
    }
    async fn archived_at(&self) -> Option<DateTime<Utc>> {
        self.0.archived_at
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

#[derive(InputObject, Default)]
pub struct HandoffFilterInput {
    pub status: Option<Vec<HandoffStatus>>,
    pub from_team_id: Option<Vec<ID>>,
    pub to_team_id: Option<Vec<ID>>,
    pub to_user_id: Option<Vec<ID>>,
    pub lead_id: Option<Vec<ID>>,
    pub opportunity_id: Option<Vec<ID>>,
    /// true: PENDING with `dueAt` before now; false: all others.
    pub overdue: Option<bool>,
    pub handed_at: Option<TimeRangeInput>,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum HandoffOrderField {
    HandedAt,
    /// Only hand-offs with a `dueAt` are listed.
    DueAt,
    /// Only answered hand-offs are listed.
    RespondedAt,
}

#[derive(InputObject)]
pub struct HandoffOrderInput {
    pub field: HandoffOrderField,
    #[graphql(default)]
    pub direction: OrderDirection,
}

#[derive(Default)]
pub struct HandoffsQuery;

#[Object]
impl HandoffsQuery {
    async fn handoff(&self, ctx: &Context<'_>, id: ID) -> Result<Handoff> {
        require(ctx, READERS, "read hand-offs")?;
        Ok(Handoff(service::get(db(ctx)?, parse_id(&id, "id")?).await?))
    }

    /// Hand-offs, filtered and ordered (default: newest first).
    #[graphql(complexity = "PageRequest::size_hint(first, last) * child_complexity + 1")]
    #[allow(clippy::too_many_arguments)]
    async fn handoffs(
        &self,
        ctx: &Context<'_>,
        filter: Option<HandoffFilterInput>,
        order_by: Option<HandoffOrderInput>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<Conn<Handoff>> {
        require(ctx, READERS, "read hand-offs")?;
        let f = filter.unwrap_or_default();
        let filter = HandoffFilter {
            statuses: f.status.unwrap_or_default(),
            from_team_ids: parse_ids(&f.from_team_id.unwrap_or_default(), "fromTeamId")?,
            to_team_ids: parse_ids(&f.to_team_id.unwrap_or_default(), "toTeamId")?,
            to_user_ids: parse_ids(&f.to_user_id.unwrap_or_default(), "toUserId")?,
            lead_ids: parse_ids(&f.lead_id.unwrap_or_default(), "leadId")?,
            opportunity_ids: parse_ids(&f.opportunity_id.unwrap_or_default(), "opportunityId")?,
            overdue: f.overdue,
            handed_at: f.handed_at.map(Into::into).unwrap_or_default(),
        };
        let (order, desc) = match order_by {
            Some(o) => (
                match o.field {
                    HandoffOrderField::HandedAt => HandoffOrder::HandedAt,
                    HandoffOrderField::DueAt => HandoffOrder::DueAt,
                    HandoffOrderField::RespondedAt => HandoffOrder::RespondedAt,
                },
                o.direction == OrderDirection::Desc,
            ),
            None => (HandoffOrder::HandedAt, true),
        };
        let db = db(ctx)?.clone();
        let page = service::list(
            &db,
            &filter,
            order,
            desc,
            &PageRequest {
                first,
                after,
                last,
                before,
            },
        )
        .await?;
        let rows: Vec<&handoff::Model> = page.items.iter().map(|(_, m)| m).collect();
        prime_handoffs(ctx, &rows).await?;
        Ok(connection(
            page,
            move || {
                let (db, filter) = (db.clone(), filter.clone());
                Box::pin(async move { service::count(&db, &filter, order).await })
            },
            Handoff,
        ))
    }

    async fn sla_policy(&self, ctx: &Context<'_>, id: ID) -> Result<SlaPolicy> {
        require(ctx, READERS, "read SLA policies")?;
        Ok(SlaPolicy(
            policies::get(db(ctx)?, parse_id(&id, "id")?).await?,
        ))
    }

    /// SLA policies, oldest first (archived ones only with `includeArchived`).
    async fn sla_policies(
        &self,
        ctx: &Context<'_>,
        #[graphql(default)] include_archived: bool,
    ) -> Result<Vec<SlaPolicy>> {
        require(ctx, READERS, "read SLA policies")?;
        Ok(policies::list(db(ctx)?, include_archived)
            .await?
            .into_iter()
            .map(SlaPolicy)
            .collect())
    }
}

/// Loads the relations a page of hand-offs selects, one batch each, at once.
pub async fn prime_handoffs(ctx: &Context<'_>, rows: &[&handoff::Model]) -> Result<()> {
    let mut primes = Primes::default();
    if node_selects(ctx, "lead") {
        primes.add(prime::<LeadById, _>(
            ctx,
            rows.iter().filter_map(|h| h.lead_id),
        ));
    }
    if node_selects(ctx, "opportunity") {
        primes.add(prime::<OpportunityById, _>(
            ctx,
            rows.iter().filter_map(|h| h.opportunity_id),
        ));
    }
    if node_selects(ctx, "fromTeam") || node_selects(ctx, "toTeam") {
        let teams: Vec<uuid::Uuid> = rows
            .iter()
            .flat_map(|h| [h.from_team_id, h.to_team_id])
            .collect();
        primes.add(prime::<TeamById, _>(ctx, teams));
    }
    if ["fromUser", "toUser", "respondedBy"]
        .iter()
        .any(|f| node_selects(ctx, f))
    {
        let users: Vec<uuid::Uuid> = rows
            .iter()
            .flat_map(|h| [h.from_user_id, h.to_user_id, h.responded_by_id])
            .flatten()
            .collect();
        primes.add(prime::<UserById, _>(ctx, users));
    }
    if node_selects(ctx, "policy") {
        primes.add(prime::<SlaPolicyById, _>(
            ctx,
            rows.iter().filter_map(|h| h.policy_id),
        ));
    }
    primes.run().await
}

/// A hand-off. `leadId` or `opportunityId` (exactly one), and `toTeamId`,
/// are required; the rest is optional. The backfill fields (`handedAt`,
/// `status`, `respondedAt`, `reason`, `fromUserId`, `respondedById`,
/// `responseNote`) are for imports by ADMIN and INTEGRATION callers: the
/// hand-off is recorded as it was and its effects on the lead are not
/// replayed (they are in the imported stage history).
#[derive(InputObject, Default)]
pub struct HandOffInput {
    pub lead_id: Option<ID>,
    pub opportunity_id: Option<ID>,
    pub to_team_id: ID,
    /// An active member of the receiving team.
    pub to_user_id: Option<ID>,
    /// Default: the caller's team. Another team only for ADMIN, REVOPS and INTEGRATION.
    pub from_team_id: Option<ID>,
    pub note: Option<String>,
    /// Backfill: when it was handed off (default now).
    pub handed_at: Option<DateTime<Utc>>,
    /// Backfill: its status (default PENDING).
    pub status: Option<HandoffStatus>,
    /// Backfill: when it was answered (ACCEPTED and REJECTED only, required there).
    pub responded_at: Option<DateTime<Utc>>,
    /// Backfill: why it was rejected (REJECTED only, required there).
    pub reason: Option<HandoffReason>,
    /// Backfill: who handed it off (default: the caller's user).
    pub from_user_id: Option<ID>,
    /// Backfill: who answered it.
    pub responded_by_id: Option<ID>,
    /// Backfill: the receiver's note.
    pub response_note: Option<String>,
}

impl HandOffInput {
    pub(crate) fn into_new(self) -> Result<NewHandoff, crate::error::AppError> {
        Ok(NewHandoff {
            lead_id: opt_id(self.lead_id, "leadId")?,
            opportunity_id: opt_id(self.opportunity_id, "opportunityId")?,
            to_team_id: Some(parse_id(&self.to_team_id, "toTeamId")?),
            to_user_id: opt_id(self.to_user_id, "toUserId")?,
            from_team_id: opt_id(self.from_team_id, "fromTeamId")?,
            note: self.note,
            handed_at: self.handed_at,
            status: self.status,
            responded_at: self.responded_at,
            reason: self.reason,
            from_user_id: opt_id(self.from_user_id, "fromUserId")?,
            responded_by_id: opt_id(self.responded_by_id, "respondedById")?,
            response_note: self.response_note,
        })
    }
}

fn opt_id(id: Option<ID>, field: &str) -> Result<Option<uuid::Uuid>, crate::error::AppError> {
    id.as_ref().map(|i| parse_id(i, field)).transpose()
}

/// An SLA policy. On create, `name`, `fromTeamId`, `toTeamId`, `period`,
/// `qualifiedLeadTarget` and `responseHours` are required; on update, fields
/// left out keep their value and null clears the criteria.
#[derive(InputObject, Default)]
pub struct SlaPolicyInput {
    pub name: Option<String>,
    pub from_team_id: Option<ID>,
    pub to_team_id: Option<ID>,
    pub period: Option<SlaPeriod>,
    /// MQLs per period; positive.
    pub qualified_lead_target: Option<i32>,
    /// Hours to accept or reject a hand-off; positive.
    pub response_hours: Option<i32>,
    /// Qualification: minimum score (0–1000).
    pub min_score: MaybeUndefined<i32>,
    /// Qualification: segments of the lead's account (null or empty: any).
    pub segments: MaybeUndefined<Vec<Segment>>,
    /// Qualification: lead sources (null or empty: any).
    pub sources: MaybeUndefined<Vec<Channel>>,
    /// Hand a lead the policy qualifies off to `toTeam` at once (default false).
    pub auto_hand_off: Option<bool>,
}

/// An empty list of criteria is no criterion.
fn nonempty<T>(v: Option<Option<Vec<T>>>) -> Option<Option<Vec<T>>> {
    v.map(|o| o.filter(|x| !x.is_empty()))
}

impl SlaPolicyInput {
    fn into_fields(self) -> Result<PolicyFields, crate::error::AppError> {
        Ok(PolicyFields {
            name: self.name,
            from_team_id: opt_id(self.from_team_id, "fromTeamId")?,
            to_team_id: opt_id(self.to_team_id, "toTeamId")?,
            period: self.period,
            qualified_lead_target: self.qualified_lead_target,
            response_hours: self.response_hours,
            min_score: patch(self.min_score),
            segments: nonempty(patch(self.segments)),
            sources: nonempty(patch(self.sources)),
            auto_hand_off: self.auto_hand_off,
        })
    }
}

#[derive(Default)]
pub struct HandoffsMutation;

#[Object]
impl HandoffsMutation {
    /// Hands a lead or an opportunity off to another team: a PENDING
    /// hand-off from the caller's team, due `responseHours` after now when
    /// the route has an SLA policy. A record has at most one PENDING
    /// hand-off (CONFLICT otherwise).
    async fn hand_off(&self, ctx: &Context<'_>, input: HandOffInput) -> Result<Handoff> {
        let caller = require(ctx, RECORD_WRITERS, "hand off records")?;
        let new = input.into_new()?;
        Ok(Handoff(
            service::create(db(ctx)?, &Who::from(caller), new).await?,
        ))
    }

    /// Accepts a PENDING hand-off (members of the receiving team, REVOPS,
    /// ADMIN). A lead's hand-off into a SALES_DEVELOPMENT or SALES team moves
    /// an MQL lead to SAL and makes the accepting user its owner and that
    /// team its team; an opportunity's makes the accepting user its owner.
    /// An answered or expired hand-off is CONFLICT.
    async fn accept_handoff(&self, ctx: &Context<'_>, id: ID) -> Result<Handoff> {
        let caller = require(ctx, RECORD_WRITERS, "answer hand-offs")?;
        Ok(Handoff(
            service::answer(
                db(ctx)?,
                &Who::from(caller),
                parse_id(&id, "id")?,
                Answer::Accept,
            )
            .await?,
        ))
    }

    /// Rejects a PENDING hand-off with a reason (required; see
    /// `HandoffReason` for what each does to the lead): BAD_FIT, DUPLICATE
    /// and WRONG_CONTACT move the lead to DISQUALIFIED; NO_BUDGET,
    /// NO_RESPONSE, NOT_READY and OTHER to RECYCLED. An answered or expired
    /// hand-off is CONFLICT.
    async fn reject_handoff(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reason: Option<HandoffReason>,
        note: Option<String>,
    ) -> Result<Handoff> {
        let caller = require(ctx, RECORD_WRITERS, "answer hand-offs")?;
        Ok(Handoff(
            service::answer(
                db(ctx)?,
                &Who::from(caller),
                parse_id(&id, "id")?,
                Answer::Reject { reason, note },
            )
            .await?,
        ))
    }

    /// Creates an SLA policy (REVOPS, ADMIN).
    async fn create_sla_policy(
        &self,
        ctx: &Context<'_>,
        input: SlaPolicyInput,
    ) -> Result<SlaPolicy> {
        require(ctx, SLA_WRITERS, "manage SLA policies")?;
        Ok(SlaPolicy(
            policies::create(db(ctx)?, input.into_fields()?).await?,
        ))
    }

    /// Updates an SLA policy (REVOPS, ADMIN). Hand-offs it already timed keep their `dueAt`.
    async fn update_sla_policy(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: SlaPolicyInput,
    ) -> Result<SlaPolicy> {
        require(ctx, SLA_WRITERS, "manage SLA policies")?;
        Ok(SlaPolicy(
            policies::update(db(ctx)?, parse_id(&id, "id")?, input.into_fields()?).await?,
        ))
    }

    /// Archives an SLA policy (REVOPS, ADMIN): it no longer times new
    /// hand-offs nor qualifies leads; a new policy may take its route.
    async fn archive_sla_policy(&self, ctx: &Context<'_>, id: ID) -> Result<SlaPolicy> {
        require(ctx, SLA_WRITERS, "manage SLA policies")?;
        Ok(SlaPolicy(
            policies::archive(db(ctx)?, parse_id(&id, "id")?).await?,
        ))
    }
}

#[derive(Default)]
pub struct HandoffsSubscription;

#[async_graphql::Subscription]
impl HandoffsSubscription {
    /// Each hand-off created or answered (accepted, rejected, expired) from
    /// now on, as it commits, on every replica (PostgreSQL `LISTEN/NOTIFY`;
    /// within the process on SQLite). Optionally only those to a team or to
    /// a user. Over WebSocket at `/graphql` (graphql-transport-ws), with the
    /// token in `connection_init`'s `Authorization`; every role that reads
    /// hand-offs may subscribe.
    async fn handoffs<'a>(
        &self,
        ctx: &'a Context<'_>,
        to_team_id: Option<ID>,
        to_user_id: Option<ID>,
    ) -> Result<impl futures_util::Stream<Item = Result<Handoff>> + 'a> {
        require(ctx, READERS, "subscribe to hand-offs")?;
        let team = opt_id(to_team_id, "toTeamId")?;
        let user = opt_id(to_user_id, "toUserId")?;
        let expiry = ctx
            .data_opt::<crate::http::graphql_ws::TokenExpiry>()
            .map(|e| e.0);
        let rx = super::events::subscribe(db(ctx)?).await;
        Ok(futures_util::stream::unfold(
            Some(rx),
            move |rx| async move {
                use tokio::sync::broadcast::error::RecvError;
                let mut rx = rx?;
                loop {
                    let event = match expiry {
                        // Wait for the next event no longer than the token lives.
                        Some(exp) => {
                            let left = exp.saturating_sub(Utc::now().timestamp().max(0) as u64);
                            match tokio::time::timeout(
                                std::time::Duration::from_secs(left),
                                rx.recv(),
                            )
                            .await
                            {
                                Ok(e) => e,
                                Err(_) => {
                                    let e = crate::error::AppError::Unauthenticated(
                                        "the token expired: subscribe again with a fresh one"
                                            .into(),
                                    );
                                    return Some((Err(e.into()), None));
                                }
                            }
                        }
                        None => rx.recv().await,
                    };
                    match event {
                        Ok(h) => {
                            if team.is_some_and(|t| t != h.to_team_id)
                                || user.is_some_and(|u| Some(u) != h.to_user_id)
                            {
                                continue;
                            }
                            crate::graphql::loaders::clear_all(ctx);
                            return Some((Ok(Handoff(h)), Some(rx)));
                        }
                        Err(RecvError::Lagged(n)) => {
                            tracing::warn!(skipped = n, "a hand-off subscriber fell behind");
                        }
                        Err(RecvError::Closed) => return None,
                    }
                }
            },
        ))
    }
}
