//! Applying inbox events: the `webhooks.apply` job.
//!
//! Each event is applied in one unit of work that also marks it APPLIED, so
//! a crash leaves it either applied and marked, or neither (the job runs
//! again and finds it APPLIED: nothing happens twice). Events of one CRM
//! record apply in CRM order: before its own event, a job applies the
//! record's earlier events not applied yet (RECEIVED or FAILED), each in its own unit that locks the
//! event's row first, so two jobs of one record queue on the same row. An
//! event that sets a record's state and is older than one already applied
//! to the record is marked APPLIED with the outcome `superseded`: it does
//! not roll the record back.

use super::{MAX_ATTEMPTS, supersedes};
use crate::error::{AppError, AppResult};
use crate::jobs::{JobError, JobResult};
use crate::records::external_ids::{self, ExternalRef};
use crate::records::handoffs::service::Who;
use crate::records::stage_changes::Actor;
use crate::telemetry::prom;
use crate::uow::{self, Work};
use async_graphql::InputType;
use entity::enums::{RecordKind, Role, WebhookProvider, WebhookStatus};
use entity::{integration, webhook_event};
use sea_orm::sea_query::{Expr, LockType};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde_json::{Map, Value};
use uuid::Uuid;

/// What applying an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Its change is in the records.
    Applied,
    /// The records already said so (e.g. a stage the record is in).
    Unchanged,
    /// Older than a change already applied to the record: not applied.
    Superseded,
    /// A change Lockstep does not keep (e.g. a property it has no field for).
    Ignored,
    /// Not applied on purpose, for the reason given (`ignored: …`).
    IgnoredBecause(&'static str),
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Unchanged => "unchanged",
            Outcome::Superseded => "superseded",
            Outcome::Ignored => "ignored",
            Outcome::IgnoredBecause(why) => why,
        }
    }
}

/// What a provider's apply needs besides the event.
pub struct ApplyCx {
    pub integration: integration::Model,
    pub settings: Value,
    /// The deployment currency.
    pub currency: String,
    /// The external-id system the integration's records are keyed in.
    pub system: String,
    /// Changes are recorded as made by `webhook:<integration name>`, an
    /// INTEGRATION caller (it may backfill the CRM's times).
    pub actor: Actor,
    pub who: Who,
}

impl ApplyCx {
    pub fn new(integration: integration::Model, currency: &str) -> ApplyCx {
        let settings: Value = serde_json::from_str(&integration.settings).unwrap_or(Value::Null);
        let system = settings
            .get("system")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| default_system(&integration));
        let actor = Actor {
            subject: format!("webhook:{}", integration.name),
            user_id: None,
            may_backfill: true,
        };
        ApplyCx {
            who: Who {
                actor: actor.clone(),
                role: Role::Integration,
                team_id: None,
            },
            actor,
            system,
            currency: currency.to_uppercase(),
            settings,
            integration,
        }
    }
}

/// The external-id system of an integration without a `system` setting:
/// the provider's name (`hubspot`, …), or the integration's name for generic ones.
pub fn default_system(i: &integration::Model) -> String {
    match i.provider {
        WebhookProvider::Generic => i.name.to_lowercase(),
        p => p.slug().to_owned(),
    }
}

/// A CRM id in `data[field]` (a string or a number), if present.
pub fn opt_external(data: &Map<String, Value>, field: &str) -> AppResult<Option<String>> {
    match data.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 255 => {
            Ok(Some(s.trim().to_owned()))
        }
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        _ => Err(AppError::bad_input(
            field,
            format!("`{field}` must be a non-empty string of at most 255 characters"),
        )),
    }
}

/// The CRM id in `data[field]` as an external id of this integration's system.
pub fn external(cx: &ApplyCx, data: &Map<String, Value>, field: &str) -> AppResult<ExternalRef> {
    let id = opt_external(data, field)?
        .ok_or_else(|| AppError::bad_input(field, format!("`{field}` is required")))?;
    ExternalRef::normalized(&cx.system, &id)
}

/// The Lockstep record a CRM id maps to; NOT_FOUND (retried: its creation
/// may still be on its way) when none does.
pub async fn lookup_required(w: &Work, kind: RecordKind, key: &ExternalRef) -> AppResult<Uuid> {
    external_ids::lookup(w.db(), kind, key)
        .await?
        .ok_or_else(|| {
            AppError::not_found(format!(
                "{} {}:{}",
                kind.as_str().to_lowercase(),
                key.system,
                key.id
            ))
        })
}

/// Parses JSON as a GraphQL input type (the same checks a mutation's
/// variables get).
pub fn parse_input<T: InputType>(value: Value) -> AppResult<T> {
    let value = async_graphql::Value::from_json(value)
        .map_err(|e| AppError::invalid(format!("data: {e}")))?;
    T::parse(Some(value)).map_err(|e| {
        AppError::invalid(format!(
            "data does not fit {}: {}",
            T::type_name(),
            e.into_server_error(async_graphql::Pos::default()).message
        ))
    })
}

/// The job's handler: applies event `event` (and the earlier events of its
/// record not applied yet first, so a retried one keeps its place).
pub async fn run(db: DatabaseConnection, currency: String, payload: Value) -> JobResult {
    let id = payload
        .get("event")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or("payload without an `event` id")?;
    let Some(ev) = webhook_event::Entity::find_by_id(id).one(&db).await? else {
        return Ok(()); // deleted by an operator
    };
    if !matches!(ev.status, WebhookStatus::Received | WebhookStatus::Failed) {
        return Ok(());
    }
    let earlier = webhook_event::Entity::find()
        .select_only()
        .column(webhook_event::Column::Id)
        .filter(webhook_event::Column::IntegrationId.eq(ev.integration_id))
        .filter(webhook_event::Column::RecordKey.eq(ev.record_key.as_str()))
        .filter(
            webhook_event::Column::Status.is_in([WebhookStatus::Received, WebhookStatus::Failed]),
        )
        .filter(
            Condition::any()
                .add(webhook_event::Column::OccurredAt.lt(ev.occurred_at))
                .add(
                    Condition::all()
                        .add(webhook_event::Column::OccurredAt.eq(ev.occurred_at))
                        .add(webhook_event::Column::Id.lt(ev.id)),
                ),
        )
        .order_by_asc(webhook_event::Column::OccurredAt)
        .order_by_asc(webhook_event::Column::Id)
        .limit(100)
        .into_tuple::<Uuid>()
        .all(&db)
        .await?;
    let mut blocked = None;
    for other in earlier {
        // A failure here is not counted on it: its own job retries it. The
        // events after it wait too: applying a later one now (its record may
        // have appeared meanwhile) would make the failed one look superseded.
        if let Err(e) = apply_one(&db, &currency, other, false).await {
            tracing::debug!(event = %other, error = %e, "an earlier event of the record failed");
            blocked = Some(other);
            break;
        }
    }
    if let Some(other) = blocked {
        // In order per record: wait (no attempt counted) until the earlier
        // event is applied or DEAD.
        return Err(JobError(format!(
            "waiting for the earlier event {other} of the same record"
        )));
    }
    apply_one(&db, &currency, id, true).await
}

/// Applies one event in its own unit. A failure of the job's `own` event is
/// recorded on it (FAILED, or DEAD after [`MAX_ATTEMPTS`]) and returned
/// while it may still succeed on a retry; another's is only returned.
async fn apply_one(db: &DatabaseConnection, currency: &str, id: Uuid, own: bool) -> JobResult {
    let result = uow::run(db, |mut w| async move {
        let Some(ev) = lock_event(&w, id).await? else {
            return w.commit(None).await;
        };
        if !matches!(ev.status, WebhookStatus::Received | WebhookStatus::Failed) {
            return w.commit(None).await;
        }
        let outcome = if superseded(w.db(), &ev).await? {
            Outcome::Superseded
        } else {
            let integration = integration::Entity::find_by_id(ev.integration_id)
                .one(w.db())
                .await?
                .ok_or_else(|| AppError::not_found("integration"))?;
            let cx = ApplyCx::new(integration, currency);
            dispatch(&mut w, &cx, &ev).await?
        };
        let provider = ev.provider;
        let attempts = ev.attempts + 1;
        let mut am = ev.into_active_model();
        am.status = Set(WebhookStatus::Applied);
        am.outcome = Set(Some(outcome.as_str().to_owned()));
        am.applied_at = Set(Some(crate::records::common::now()));
        am.attempts = Set(attempts);
        w.update(am).await?;
        w.commit(Some((provider, outcome))).await
    })
    .await;
    match result {
        Ok(done) => {
            if let Some((provider, _)) = done {
                prom::webhook_events(provider.slug(), "applied", 1);
            }
            Ok(())
        }
        Err(e) => {
            // A newer change of the record may have committed while this
            // one waited for the record's lock: then it is superseded.
            if mark_if_superseded(db, id).await? {
                return Ok(());
            }
            let message = JobError::from(e).0;
            if !own {
                return Err(JobError(message));
            }
            let (dead, provider) = record_failure(db, id, &message).await?;
            if let Some(p) = provider {
                prom::webhook_events(p.slug(), if dead { "dead" } else { "failed" }, 1);
            }
            if dead {
                tracing::error!(event = %id, error = %message, "webhook event is DEAD");
                Ok(())
            } else {
                Err(JobError(message))
            }
        }
    }
}

/// Reads the event, locked on PostgreSQL (SQLite's write transaction holds
/// the whole database).
async fn lock_event(w: &Work, id: Uuid) -> AppResult<Option<webhook_event::Model>> {
    let mut q = webhook_event::Entity::find_by_id(id);
    if w.db().get_database_backend() == DbBackend::Postgres {
        q = q.lock(LockType::Update);
    }
    Ok(q.one(w.db()).await?)
}

/// Whether an event is older than an event already applied to its record
/// that sets the same state.
async fn superseded(db: &impl ConnectionTrait, ev: &webhook_event::Model) -> AppResult<bool> {
    let newer: Vec<String> = webhook_event::Entity::find()
        .select_only()
        .column(webhook_event::Column::EventType)
        .filter(webhook_event::Column::IntegrationId.eq(ev.integration_id))
        .filter(webhook_event::Column::RecordKey.eq(ev.record_key.as_str()))
        .filter(webhook_event::Column::Status.eq(WebhookStatus::Applied))
        .filter(webhook_event::Column::OccurredAt.gt(ev.occurred_at))
        .into_tuple()
        .all(db)
        .await?;
    Ok(newer
        .iter()
        .any(|t| supersedes(ev.provider, t, &ev.event_type)))
}

async fn dispatch(w: &mut Work, cx: &ApplyCx, ev: &webhook_event::Model) -> AppResult<Outcome> {
    match ev.provider {
        WebhookProvider::Generic => super::generic::apply(w, cx, ev).await,
        WebhookProvider::Hubspot => super::hubspot::apply(w, cx, ev).await,
        WebhookProvider::Pipedrive => super::pipedrive::apply(w, cx, ev).await,
        WebhookProvider::Salesforce => super::salesforce::apply(w, cx, ev).await,
    }
}

/// Counts a failed attempt: FAILED, or DEAD once it had [`MAX_ATTEMPTS`].
/// Returns whether it is DEAD (or gone), and its provider when it was counted.
async fn record_failure(
    db: &DatabaseConnection,
    id: Uuid,
    message: &str,
) -> Result<(bool, Option<WebhookProvider>), JobError> {
    let Some(ev) = webhook_event::Entity::find_by_id(id).one(db).await? else {
        return Ok((true, None));
    };
    if !matches!(ev.status, WebhookStatus::Received | WebhookStatus::Failed) {
        return Ok((true, None));
    }
    let attempts = ev.attempts + 1;
    let dead = attempts >= MAX_ATTEMPTS;
    let status = if dead {
        WebhookStatus::Dead
    } else {
        WebhookStatus::Failed
    };
    let message: String = message.chars().take(4_000).collect();
    webhook_event::Entity::update_many()
        .col_expr(webhook_event::Column::Status, Expr::value(status.as_str()))
        .col_expr(webhook_event::Column::Attempts, Expr::value(attempts))
        .col_expr(webhook_event::Column::LastError, Expr::value(message))
        .filter(webhook_event::Column::Id.eq(id))
        .filter(webhook_event::Column::Attempts.eq(ev.attempts))
        .exec(db)
        .await?;
    Ok((dead, Some(ev.provider)))
}

/// The Lockstep user a CRM owner id maps to through the integration's
/// `owners` setting (a user id or a user's e-mail); `None` when the setting
/// does not name it.
pub async fn mapped_owner(w: &Work, cx: &ApplyCx, crm_owner: &str) -> AppResult<Option<Uuid>> {
    let Some(target) = cx
        .settings
        .get("owners")
        .and_then(|m| m.get(crm_owner.trim()))
        .and_then(Value::as_str)
    else {
        return Ok(None);
    };
    if let Ok(id) = Uuid::parse_str(target) {
        return Ok(Some(id));
    }
    let user = entity::user::Entity::find()
        .filter(entity::user::Column::Email.eq(target.trim().to_lowercase()))
        .one(w.db())
        .await?
        .ok_or_else(|| {
            AppError::not_found(format!("user {target} (the integration's `owners`)"))
        })?;
    Ok(Some(user.id))
}

/// Marks an event APPLIED (`superseded`) when a newer state event of its
/// record is applied; returns whether it did.
async fn mark_if_superseded(db: &DatabaseConnection, id: Uuid) -> Result<bool, JobError> {
    let Some(ev) = webhook_event::Entity::find_by_id(id).one(db).await? else {
        return Ok(false);
    };
    if !matches!(ev.status, WebhookStatus::Received | WebhookStatus::Failed)
        || !superseded(db, &ev).await.map_err(JobError::from)?
    {
        return Ok(false);
    }
    let res = webhook_event::Entity::update_many()
        .col_expr(
            webhook_event::Column::Status,
            Expr::value(WebhookStatus::Applied.as_str()),
        )
        .col_expr(
            webhook_event::Column::Outcome,
            Expr::value(Outcome::Superseded.as_str()),
        )
        .col_expr(
            webhook_event::Column::AppliedAt,
            Expr::value(crate::records::common::now()),
        )
        .col_expr(
            webhook_event::Column::Attempts,
            Expr::value(ev.attempts + 1),
        )
        .filter(webhook_event::Column::Id.eq(id))
        .filter(webhook_event::Column::Attempts.eq(ev.attempts))
        .filter(
            webhook_event::Column::Status.is_in([WebhookStatus::Received, WebhookStatus::Failed]),
        )
        .exec(db)
        .await?;
    if res.rows_affected == 1 {
        prom::webhook_events(ev.provider.slug(), "applied", 1);
    }
    Ok(res.rows_affected == 1)
}
