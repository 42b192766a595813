//! Bulk history: a record's stage changes from a source system, in one call
//! and one unit of work, checked as a chain.

use crate::error::{AppError, AppResult};
use crate::records::stage_changes::{Actor, Subject};
use crate::uow::{self, Work};
use chrono::{DateTime, Utc};
use entity::enums::{LeadStage, OpportunityStage};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

/// Most changes one `importStageHistory` call takes.
pub const MAX_CHANGES: usize = 1_000;

/// One imported stage change.
#[derive(Debug, Clone)]
pub struct ImportedChange {
    /// The stage the record leaves, when the source system says it: it must
    /// be the stage the chain has the record in at that point.
    pub from: Option<String>,
    pub to: String,
    pub at: DateTime<Utc>,
    pub reason: Option<String>,
    /// Opportunities moving to CLOSED_LOST.
    pub lost_reason: Option<String>,
    /// Who made it in the source system.
    pub actor_user_id: Option<Uuid>,
}

/// Names the change an error is about (`changes[i]…`).
fn at_change(i: usize) -> impl Fn(AppError) -> AppError {
    move |e| match e {
        AppError::BadInput { field, message } => AppError::BadInput {
            field: Some(match field {
                Some(f) => format!("changes[{i}].{f}"),
                None => format!("changes[{i}]"),
            }),
            message: format!("changes[{i}]: {message}"),
        },
        AppError::Conflict { field, message } => AppError::Conflict {
            field: field.map(|f| format!("changes[{i}].{f}")),
            message: format!("changes[{i}]: {message}"),
        },
        AppError::NotFound(what) => AppError::NotFound(format!("changes[{i}]: {what}")),
        AppError::Forbidden(message) => AppError::Forbidden(format!("changes[{i}]: {message}")),
        other => other,
    }
}

/// Appends `changes` to the stage history of `subject`, in order, in one unit
/// of work: all or none. The chain is checked link by link as each change is
/// made: every change leaves the stage the previous one reached (`from`,
/// when given, must say so), goes somewhere else, is not earlier than the
/// previous one nor the record's creation, and follows the rules of a single
/// change (a converted lead and a closed opportunity are final; a lead is
/// converted by `convertLead`; CLOSED_LOST needs a lost reason). ADMIN and
/// INTEGRATION only, like every backfill. Returns how many were recorded.
pub async fn import(
    db: &DatabaseConnection,
    actor: &Actor,
    subject: Subject,
    changes: Vec<ImportedChange>,
) -> AppResult<usize> {
    actor.check_backfill("changes")?;
    if changes.is_empty() {
        return Err(AppError::bad_input("changes", "no change to import"));
    }
    if changes.len() > MAX_CHANGES {
        return Err(AppError::bad_input(
            "changes",
            format!("at most {MAX_CHANGES} changes per call"),
        ));
    }
    let changes = &changes;
    uow::run(db, |mut w| async move {
        import_in(&mut w, actor, subject, changes).await?;
        w.commit(changes.len()).await
    })
    .await
}

/// [`import`] in the caller's unit (the checks of the chain, without the
/// caller's role nor the size limit): `lockstep import` runs a record's
/// history this way inside its batch.
pub async fn import_in(
    w: &mut Work,
    actor: &Actor,
    subject: Subject,
    changes: &[ImportedChange],
) -> AppResult<()> {
    {
        for (i, c) in changes.iter().enumerate() {
            let acting = actor
                .acting_as_in(w, c.actor_user_id)
                .await
                .map_err(at_change(i))?;
            let step = async {
                match subject {
                    Subject::Lead(id) => {
                        let to = LeadStage::ALL
                            .iter()
                            .copied()
                            .find(|s| s.as_str() == c.to)
                            .ok_or_else(|| AppError::bad_input("to", "not a lead stage"))?;
                        if to == LeadStage::Converted {
                            return Err(AppError::bad_input(
                                "to",
                                "a lead is converted by convertLead",
                            ));
                        }
                        let current = w.lock_lead(id).await?;
                        check_from(c, &current.stage.as_str())?;
                        drop(current);
                        crate::records::leads::service::change_stage_in(
                            w,
                            &acting,
                            id,
                            to,
                            c.reason.clone(),
                            Some(c.at),
                        )
                        .await?;
                    }
                    Subject::Opportunity(id) => {
                        let to = OpportunityStage::ALL
                            .iter()
                            .copied()
                            .find(|s| s.as_str() == c.to)
                            .ok_or_else(|| AppError::bad_input("to", "not an opportunity stage"))?;
                        let current = w.lock_opportunity(id).await?;
                        check_from(c, &current.stage.as_str())?;
                        drop(current);
                        crate::records::opportunities::service::change_stage_in(
                            w,
                            &acting,
                            id,
                            to,
                            c.lost_reason.clone(),
                            c.reason.clone(),
                            Some(c.at),
                        )
                        .await?;
                    }
                }
                Ok(())
            };
            step.await.map_err(at_change(i))?;
        }
    }
    Ok(())
}

fn check_from(c: &ImportedChange, current: &str) -> AppResult<()> {
    match &c.from {
        Some(from) if from != current => Err(AppError::bad_input(
            "fromStage",
            format!("the chain has the record in {current} here, not {from}"),
        )),
        _ => Ok(()),
    }
}
