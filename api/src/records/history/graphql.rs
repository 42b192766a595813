//! `importStageHistory`: a record's stage history from a source system.

use super::service::{self, ImportedChange};
use crate::auth::RECORD_WRITERS;
use crate::error::AppError;
use crate::graphql::context::{db, parse_id, require};
use crate::graphql::inputs::ExternalIdInput;
use crate::records::external_ids::ExternalRef;
use crate::records::leads::graphql::Lead;
use crate::records::opportunities::graphql::Opportunity;
use crate::records::stage_changes::{Actor, Subject};
use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};

/// One stage change of an imported history.
#[derive(InputObject)]
pub struct ImportedStageChangeInput {
    /// The stage left, as the source system has it: checked against the
    /// chain (the stage the previous change reached).
    pub from_stage: Option<String>,
    /// A lead stage (not CONVERTED: see `convertLead`) or an opportunity stage.
    pub to_stage: String,
    /// When it happened: not before the previous change nor the record's creation.
    pub at: DateTime<Utc>,
    pub reason: Option<String>,
    /// Required when an opportunity moves to CLOSED_LOST.
    pub lost_reason: Option<String>,
    /// The user who made the change in the source system.
    pub actor_user_id: Option<ID>,
    /// The same user by one of its external ids, instead of `actorUserId`.
    pub actor_external_id: Option<ExternalIdInput>,
}

/// The result of `importStageHistory`: the record as the history left it.
#[derive(SimpleObject)]
pub struct ImportStageHistoryPayload {
    /// How many changes were recorded.
    pub imported: i64,
    pub lead: Option<Lead>,
    pub opportunity: Option<Opportunity>,
}

#[derive(Default)]
pub struct HistoryMutation;

#[Object]
impl HistoryMutation {
    /// Appends a record's stage changes from a source system (up to 1,000, in
    /// order) in one transaction, checked as a chain: all or none; an error
    /// names `changes[i]`. Give exactly one of `leadId` and `opportunityId`.
    /// ADMIN and INTEGRATION only.
    async fn import_stage_history(
        &self,
        ctx: &Context<'_>,
        lead_id: Option<ID>,
        opportunity_id: Option<ID>,
        changes: Vec<ImportedStageChangeInput>,
    ) -> Result<ImportStageHistoryPayload> {
        let caller = require(ctx, RECORD_WRITERS, "import stage history")?;
        let actor = Actor::from(caller);
        actor.check_backfill("changes")?;
        let subject = match (&lead_id, &opportunity_id) {
            (Some(l), None) => Subject::Lead(parse_id(l, "leadId")?),
            (None, Some(o)) => Subject::Opportunity(parse_id(o, "opportunityId")?),
            _ => {
                return Err(AppError::bad_input(
                    "leadId",
                    "give exactly one of `leadId` and `opportunityId`",
                )
                .into());
            }
        };
        let mut imported = Vec::with_capacity(changes.len());
        for (i, c) in changes.into_iter().enumerate() {
            let user = c
                .actor_user_id
                .as_ref()
                .map(|u| parse_id(u, &format!("changes[{i}].actorUserId")))
                .transpose()?;
            let external = c
                .actor_external_id
                .as_ref()
                .map(|e| ExternalRef::normalized(&e.system, &e.id))
                .transpose()?;
            let actor_user_id = actor
                .named_user(db(ctx)?, user, external.as_ref())
                .await
                .map_err(|e| match e {
                    AppError::BadInput { message, .. } => AppError::BadInput {
                        field: Some(format!("changes[{i}].actorExternalId")),
                        message: format!("changes[{i}]: {message}"),
                    },
                    AppError::NotFound(what) => AppError::NotFound(format!("changes[{i}]: {what}")),
                    other => other,
                })?;
            imported.push(ImportedChange {
                from: c.from_stage,
                to: c.to_stage,
                at: c.at,
                reason: c.reason,
                lost_reason: c.lost_reason,
                actor_user_id,
            });
        }
        let changes = imported;
        let db = db(ctx)?;
        let imported = service::import(db, &actor, subject, changes).await?;
        let (lead, opportunity) = match subject {
            Subject::Lead(id) => (
                Some(Lead(crate::records::leads::service::get(db, id).await?)),
                None,
            ),
            Subject::Opportunity(id) => (
                None,
                Some(Opportunity(
                    crate::records::opportunities::service::get(db, id).await?,
                )),
            ),
        };
        Ok(ImportStageHistoryPayload {
            imported: imported as i64,
            lead,
            opportunity,
        })
    }
}
