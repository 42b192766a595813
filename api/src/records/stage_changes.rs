//! The stage history of leads and opportunities: every stage change is
//! recorded with its time, actor and reason.

use crate::error::{AppError, AppResult};
use crate::uow::{Found, Work};
use chrono::{DateTime, Utc};
use entity::stage_change;
use sea_orm::{ConnectionTrait, Set};
use uuid::Uuid;

/// Who makes a change.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The token subject.
    pub subject: String,
    /// The user behind the subject, when there is one.
    pub user_id: Option<Uuid>,
    /// Whether it may backfill times (creation, stage change and close
    /// times from a source system): ADMIN and INTEGRATION callers.
    pub may_backfill: bool,
}

impl Actor {
    /// FORBIDDEN unless the actor may backfill times; `field` names the input.
    pub fn check_backfill(&self, field: &str) -> crate::error::AppResult<()> {
        if self.may_backfill {
            Ok(())
        } else {
            Err(crate::error::AppError::forbidden(format!(
                "only ADMIN and INTEGRATION callers may backfill `{field}`"
            )))
        }
    }
}

impl Actor {
    /// The actor that records changes as made by `user` (an import names
    /// the CRM user who made them): ADMIN and INTEGRATION callers only
    /// (FORBIDDEN otherwise), and the user must exist (NOT_FOUND). The token's
    /// subject stays the recorded `actor`; `None` keeps the caller's user.
    pub async fn acting_as(
        &self,
        db: &impl ConnectionTrait,
        user: Option<Uuid>,
    ) -> AppResult<Actor> {
        let Some(user) = user else {
            return Ok(self.clone());
        };
        if !self.may_backfill {
            return Err(AppError::forbidden(
                "only ADMIN and INTEGRATION callers may give `actorUserId`",
            ));
        }
        crate::records::users::service::get(db, user)
            .await
            .map_err(|_| AppError::not_found("actorUserId: user"))?;
        Ok(Actor {
            user_id: Some(user),
            ..self.clone()
        })
    }

    /// [`Actor::acting_as`] inside a unit of work (which checks each user once).
    pub async fn acting_as_in(&self, w: &Work, user: Option<Uuid>) -> AppResult<Actor> {
        let Some(user) = user else {
            return Ok(self.clone());
        };
        if !self.may_backfill {
            return Err(AppError::forbidden(
                "only ADMIN and INTEGRATION callers may give `actorUserId`",
            ));
        }
        w.check_exists(Found::User, user, "actorUserId: user")
            .await?;
        Ok(Actor {
            user_id: Some(user),
            ..self.clone()
        })
    }
}

impl Actor {
    /// The user an import names as having made a change: by Lockstep id
    /// (`actorUserId`) or by an external id of the user (`actorExternalId`),
    /// not both (BAD_USER_INPUT). ADMIN and INTEGRATION callers only
    /// (FORBIDDEN); an external id no user has is NOT_FOUND. The id is
    /// checked by [`Actor::acting_as`].
    pub async fn named_user(
        &self,
        db: &impl ConnectionTrait,
        user_id: Option<Uuid>,
        external: Option<&crate::records::external_ids::ExternalRef>,
    ) -> AppResult<Option<Uuid>> {
        let Some(key) = external else {
            return Ok(user_id);
        };
        if user_id.is_some() {
            return Err(AppError::bad_input(
                "actorExternalId",
                "give one of `actorUserId` and `actorExternalId`, not both",
            ));
        }
        if !self.may_backfill {
            return Err(AppError::forbidden(
                "only ADMIN and INTEGRATION callers may give `actorExternalId`",
            ));
        }
        crate::records::external_ids::lookup(db, entity::enums::RecordKind::User, key)
            .await?
            .map(Some)
            .ok_or_else(|| AppError::not_found("actorExternalId: user"))
    }
}

impl From<&crate::auth::Caller> for Actor {
    fn from(c: &crate::auth::Caller) -> Self {
        Actor {
            subject: c.subject.clone(),
            user_id: c.user_id(),
            may_backfill: c.may_backfill(),
        }
    }
}

/// Which record changed stage.
#[derive(Debug, Clone, Copy)]
pub enum Subject {
    Lead(Uuid),
    Opportunity(Uuid),
}

/// Records one stage change (`from` is None for the first stage).
pub async fn record(
    w: &mut Work,
    subject: Subject,
    from: Option<String>,
    to: String,
    at: DateTime<Utc>,
    actor: &Actor,
    reason: Option<String>,
) -> AppResult<stage_change::Model> {
    let (lead_id, opportunity_id) = match subject {
        Subject::Lead(id) => (Some(id), None),
        Subject::Opportunity(id) => {
            w.note_history(id);
            (None, Some(id))
        }
    };
    w.insert(stage_change::ActiveModel {
        id: Set(Uuid::now_v7()),
        lead_id: Set(lead_id),
        opportunity_id: Set(opportunity_id),
        from_stage: Set(from),
        to_stage: Set(to),
        at: Set(at),
        actor: Set(actor.subject.clone()),
        actor_user_id: Set(actor.user_id),
        reason: Set(reason),
    })
    .await
}

/// The latest stage change of a record.
pub async fn last(
    db: &impl ConnectionTrait,
    subject: Subject,
) -> AppResult<Option<stage_change::Model>> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    let select = match subject {
        Subject::Lead(id) => {
            stage_change::Entity::find().filter(stage_change::Column::LeadId.eq(id))
        }
        Subject::Opportunity(id) => {
            stage_change::Entity::find().filter(stage_change::Column::OpportunityId.eq(id))
        }
    };
    Ok(select
        .order_by_desc(stage_change::Column::At)
        .order_by_desc(stage_change::Column::Id)
        .one(db)
        .await?)
}

/// A change's time: now, or a backfilled time that is not in the future,
/// not before the record's creation and not before its last change.
pub async fn check_change_time(
    db: &impl ConnectionTrait,
    subject: Subject,
    created_at: DateTime<Utc>,
    at: Option<DateTime<Utc>>,
) -> AppResult<DateTime<Utc>> {
    let Some(at) = at else {
        return Ok(crate::records::common::now());
    };
    let at = crate::records::common::not_future(at, "at")?;
    if at < created_at {
        return Err(AppError::bad_input(
            "at",
            "`at` must not be before the record was created",
        ));
    }
    if let Some(last) = last(db, subject).await?
        && at < last.at
    {
        return Err(AppError::bad_input(
            "at",
            "`at` must not be before the record's last stage change",
        ));
    }
    Ok(at)
}
