//! The stage history of leads and opportunities: every stage change is
//! recorded with its time, actor and reason.

use crate::error::AppResult;
use chrono::{DateTime, Utc};
use entity::stage_change;
use sea_orm::{ActiveModelTrait, ConnectionTrait, Set};
use uuid::Uuid;

/// Who makes a change.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The token subject.
    pub subject: String,
    /// The user behind the subject, when there is one.
    pub user_id: Option<Uuid>,
}

impl From<&crate::auth::Caller> for Actor {
    fn from(c: &crate::auth::Caller) -> Self {
        Actor {
            subject: c.subject.clone(),
            user_id: c.user_id(),
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
    db: &impl ConnectionTrait,
    subject: Subject,
    from: Option<String>,
    to: String,
    at: DateTime<Utc>,
    actor: &Actor,
    reason: Option<String>,
) -> AppResult<stage_change::Model> {
    let (lead_id, opportunity_id) = match subject {
        Subject::Lead(id) => (Some(id), None),
        Subject::Opportunity(id) => (None, Some(id)),
    };
    Ok(stage_change::ActiveModel {
        id: Set(Uuid::now_v7()),
        lead_id: Set(lead_id),
        opportunity_id: Set(opportunity_id),
        from_stage: Set(from),
        to_stage: Set(to),
        at: Set(at),
        actor: Set(actor.subject.clone()),
        actor_user_id: Set(actor.user_id),
        reason: Set(reason),
    }
    .insert(db)
    .await?)
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
