//! The generic provider: Lockstep's own envelope, for any system that can
//! sign a request.
//!
//! ```text
//! POST /webhooks/generic/{integrationId}
//! Content-Type: application/json
//! X-Lockstep-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
//!
//! {"id": "evt_1", "type": "lead.upserted", "occurredAt": "2026-12-01T10:00:00Z",
//!  "data": {"externalId": "L-1", "email": "ada@example.com", "score": 40}}
//! ```
//!
//! The body is one envelope or an array of them. `data` holds the fields
//! of the GraphQL input of the matching mutation (`LeadInput` for
//! `lead.upserted`, …), keyed by `externalId` (the CRM's id of the record,
//! in the integration's `system`), with `accountExternalId`,
//! `leadExternalId` and `opportunityExternalId` for references by CRM id.

use super::apply::{ApplyCx, Outcome, external, lookup_required, opt_external, parse_input};
use super::{Incoming, Refusal, Request, check_token};
use crate::error::{AppError, AppResult};
use crate::records::accounts::graphql::AccountInput;
use crate::records::handoffs::graphql::HandOffInput;
use crate::records::leads::graphql::LeadInput;
use crate::records::opportunities::graphql::OpportunityInput;
use crate::records::stage_changes::Subject;
use crate::records::{
    accounts::service as accounts, external_ids, handoffs::service as handoffs,
    leads::service as leads, opportunities::service as opportunities,
};
use crate::uow::Work;
use chrono::{DateTime, Utc};
use entity::enums::{LeadStage, OpportunityStage, RecordKind};
use entity::webhook_event;
use serde_json::{Map, Value};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-lockstep-signature";

/// The event types, each with the GraphQL mutation it stands for.
pub const TYPES: &[&str] = &[
    "account.upserted",
    "lead.upserted",
    "lead.stage_changed",
    "opportunity.upserted",
    "opportunity.stage_changed",
    "touchpoint.recorded",
    "handoff.created",
];

/// The reference fields `data` may hold besides the input's own.
const REFERENCES: &[&str] = &[
    "externalId",
    "accountExternalId",
    "leadExternalId",
    "opportunityExternalId",
];

pub fn is_state_event(event_type: &str) -> bool {
    event_type.ends_with(".upserted") || event_type.ends_with(".stage_changed")
}

/// `t=<unix>,v1=<hex>` (several `v1` allowed, e.g. while a secret rotates).
fn signature(header: &str) -> Result<(i64, Vec<Vec<u8>>), Refusal> {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        let (k, v) = part.trim().split_once('=').unwrap_or(("", ""));
        match k {
            "t" => t = v.parse::<i64>().ok(),
            "v1" => {
                if let Ok(bytes) = hex::decode(v) {
                    sigs.push(bytes);
                }
            }
            _ => {}
        }
    }
    match t {
        Some(t) if !sigs.is_empty() => Ok((t, sigs)),
        _ => Err(Refusal::unauthorized(
            "X-Lockstep-Signature must be `t=<unix seconds>,v1=<hex HMAC-SHA256>`",
        )),
    }
}

/// Signs `body` at `t` with `secret`: the header value a sender puts in
/// `X-Lockstep-Signature`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let t_text = t.to_string();
    let mac = super::secrets::hmac(secret.as_bytes(), &[t_text.as_bytes(), b".", body]);
    format!("t={t},v1={}", hex::encode(mac))
}

pub fn parse(req: &Request<'_>) -> Result<Vec<Incoming>, Refusal> {
    req.require_content_type(&["application/json"])?;
    let header = req
        .header(SIGNATURE_HEADER)
        .ok_or_else(|| Refusal::unauthorized("missing X-Lockstep-Signature"))?;
    let (t, sigs) = signature(header)?;
    let at = DateTime::from_timestamp(t, 0)
        .ok_or_else(|| Refusal::unauthorized("the signed timestamp is not a valid time"))?;
    let t_text = t.to_string();
    let valid = req.secrets.iter().any(|secret| {
        sigs.iter().any(|sig| {
            super::secrets::verify_hmac(
                secret.as_bytes(),
                &[t_text.as_bytes(), b".", req.body],
                sig,
            )
        })
    });
    if !valid {
        return Err(Refusal::unauthorized("the signature does not match"));
    }
    req.check_window(at)?;
    let value: Value = serde_json::from_slice(req.body)
        .map_err(|e| Refusal::bad(format!("the body is not JSON: {e}")))?;
    let envelopes = match value {
        Value::Array(items) => items,
        one @ Value::Object(_) => vec![one],
        _ => {
            return Err(Refusal::bad(
                "the body must be an envelope object or an array of them",
            ));
        }
    };
    if envelopes.is_empty() || envelopes.len() > 1_000 {
        return Err(Refusal::bad("a batch holds 1 to 1,000 envelopes"));
    }
    envelopes
        .into_iter()
        .enumerate()
        .map(|(i, e)| envelope(e).map_err(|r| at_index(r, i)))
        .collect()
}

fn at_index(r: Refusal, i: usize) -> Refusal {
    match r {
        Refusal::BadRequest(m) => Refusal::BadRequest(format!("[{i}]: {m}")),
        other => other,
    }
}

fn envelope(value: Value) -> Result<Incoming, Refusal> {
    let Value::Object(obj) = &value else {
        return Err(Refusal::bad("an envelope must be an object"));
    };
    let text = |key: &str| -> Result<String, Refusal> {
        match obj.get(key) {
            Some(Value::String(s)) => check_token(s, key),
            _ => Err(Refusal::bad(format!("`{key}` must be a string"))),
        }
    };
    let id = text("id")?;
    let ty = text("type")?;
    if !TYPES.contains(&ty.as_str()) {
        return Err(Refusal::bad(format!(
            "unknown event type `{ty}` (one of {})",
            TYPES.join(", ")
        )));
    }
    let occurred_at = text("occurredAt")?
        .parse::<DateTime<Utc>>()
        .map_err(|_| Refusal::bad("`occurredAt` must be an RFC 3339 time"))?;
    let Some(Value::Object(data)) = obj.get("data") else {
        return Err(Refusal::bad("`data` must be an object"));
    };
    let record_key = record_key(&ty, data).map_err(Refusal::bad)?;
    validate(&ty, data).map_err(|e| Refusal::bad(format!("data: {}", e.message())))?;
    Ok(Incoming {
        event_id: id,
        event_type: ty,
        record_key,
        occurred_at,
        body: value.to_string(),
    })
}

/// Which CRM record an event is about: events of one record apply in order.
fn record_key(ty: &str, data: &Map<String, Value>) -> Result<String, String> {
    let key = |field: &str| -> Result<Option<String>, String> {
        opt_external(data, field).map_err(|e| e.message())
    };
    let required = |field: &str| -> Result<String, String> {
        key(field)?.ok_or_else(|| format!("data: `{field}` is required"))
    };
    Ok(match ty {
        "account.upserted" => format!("account:{}", required("externalId")?),
        "lead.upserted" | "lead.stage_changed" => format!("lead:{}", required("externalId")?),
        // A deal of a lead (converted from it) is ordered with the lead's events.
        "opportunity.upserted" | "opportunity.stage_changed" => match key("leadExternalId")? {
            Some(lead) => format!("lead:{lead}"),
            None => format!("opportunity:{}", required("externalId")?),
        },
        "touchpoint.recorded" => format!("lead:{}", required("leadExternalId")?),
        _ => match (key("leadExternalId")?, key("opportunityExternalId")?) {
            (Some(lead), None) => format!("lead:{lead}"),
            (None, Some(opp)) => format!("opportunity:{opp}"),
            _ => {
                return Err(
                    "data: give one of `leadExternalId` and `opportunityExternalId`".into(),
                );
            }
        },
    })
}

/// `data` without the reference fields, with `extra` set: the GraphQL input's fields.
fn input_fields(data: &Map<String, Value>, extra: &[(&str, Value)]) -> Value {
    let mut fields: Map<String, Value> = data
        .iter()
        .filter(|(k, _)| !REFERENCES.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in extra {
        fields.insert((*k).to_owned(), v.clone());
    }
    Value::Object(fields)
}

/// A stand-in id for a reference resolved only when the event is applied.
fn placeholder() -> Value {
    Value::String(uuid::Uuid::nil().to_string())
}

/// Checks that `data` has the shape of its input (types, enums, required
/// fields), without the database.
fn validate(ty: &str, data: &Map<String, Value>) -> AppResult<()> {
    match ty {
        "account.upserted" => {
            parse_input::<AccountInput>(input_fields(data, &[]))?;
        }
        "lead.upserted" => {
            parse_input::<LeadInput>(input_fields(data, &[]))?;
        }
        "opportunity.upserted" => {
            let mut extra = vec![];
            if data.contains_key("accountExternalId") || data.contains_key("leadExternalId") {
                extra.push(("accountId", placeholder()));
            }
            parse_input::<OpportunityInput>(input_fields(data, &extra))?;
        }
        "lead.stage_changed" => {
            stage_change::<LeadStage>(data)?;
        }
        "opportunity.stage_changed" => {
            stage_change::<OpportunityStage>(data)?;
        }
        "touchpoint.recorded" => {
            touchpoint(data)?;
        }
        _ => {
            parse_input::<HandOffInput>(input_fields(data, &handoff_refs(data, None, None)))?;
        }
    }
    Ok(())
}

/// `{to, reason?, lostReason?, at?}` of a stage change.
struct StageChange<S> {
    to: S,
    reason: Option<String>,
    lost_reason: Option<String>,
    at: Option<DateTime<Utc>>,
}

fn stage_change<S: serde::de::DeserializeOwned>(
    data: &Map<String, Value>,
) -> AppResult<StageChange<S>> {
    let to = data
        .get("to")
        .cloned()
        .ok_or_else(|| AppError::bad_input("to", "`to` is required"))?;
    let to: S = serde_json::from_value(to)
        .map_err(|_| AppError::bad_input("to", "`to` is not a known stage"))?;
    let text = |k: &str| -> AppResult<Option<String>> {
        match data.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(AppError::bad_input(k, format!("`{k}` must be a string"))),
        }
    };
    let at = text("at")?
        .map(|s| {
            s.parse::<DateTime<Utc>>()
                .map_err(|_| AppError::bad_input("at", "`at` must be an RFC 3339 time"))
        })
        .transpose()?;
    Ok(StageChange {
        to,
        reason: text("reason")?,
        lost_reason: text("lostReason")?,
        at,
    })
}

/// `{leadExternalId, campaignId, occurredAt?}` of a touch.
fn touchpoint(data: &Map<String, Value>) -> AppResult<(uuid::Uuid, Option<DateTime<Utc>>)> {
    let campaign = match data.get("campaignId") {
        Some(Value::String(s)) => uuid::Uuid::parse_str(s)
            .map_err(|_| AppError::bad_input("campaignId", "`campaignId` is not a valid id"))?,
        _ => {
            return Err(AppError::bad_input(
                "campaignId",
                "`campaignId` is required",
            ));
        }
    };
    let at = match data.get("occurredAt") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.parse::<DateTime<Utc>>().map_err(|_| {
            AppError::bad_input("occurredAt", "`occurredAt` must be an RFC 3339 time")
        })?),
        _ => {
            return Err(AppError::bad_input(
                "occurredAt",
                "`occurredAt` must be a string",
            ));
        }
    };
    Ok((campaign, at))
}

fn handoff_refs(
    data: &Map<String, Value>,
    lead: Option<uuid::Uuid>,
    opportunity: Option<uuid::Uuid>,
) -> Vec<(&'static str, Value)> {
    let id = |v: Option<uuid::Uuid>| {
        v.map(|u| Value::String(u.to_string()))
            .unwrap_or_else(placeholder)
    };
    let mut extra = Vec::new();
    if data.contains_key("leadExternalId") {
        extra.push(("leadId", id(lead)));
    }
    if data.contains_key("opportunityExternalId") {
        extra.push(("opportunityId", id(opportunity)));
    }
    extra
}

/// Applies one generic event in the caller's unit.
pub async fn apply(w: &mut Work, cx: &ApplyCx, ev: &webhook_event::Model) -> AppResult<Outcome> {
    let envelope: Value = serde_json::from_str(&ev.body).map_err(AppError::internal)?;
    let Some(Value::Object(data)) = envelope.get("data") else {
        return Err(AppError::bad_input("data", "`data` must be an object"));
    };
    let at = ev.occurred_at;
    match ev.event_type.as_str() {
        "account.upserted" => {
            let key = external(cx, data, "externalId")?;
            let input: AccountInput = parse_input(input_fields(data, &[]))?;
            let (mut fields, _) = input.into_fields(&cx.currency)?;
            fields.created_at.get_or_insert(at);
            accounts::upsert_in(w, &cx.actor, &key, fields).await?;
            Ok(Outcome::Applied)
        }
        "lead.upserted" => {
            let key = external(cx, data, "externalId")?;
            let mut extra = Vec::new();
            if let Some(account) =
                reference(w, cx, data, "accountExternalId", RecordKind::Account).await?
            {
                extra.push(("accountId", Value::String(account.to_string())));
            }
            let input: LeadInput = parse_input(input_fields(data, &extra))?;
            let (fields, _) = input.into_fields()?;
            upsert_lead(w, cx, &key, fields, at).await
        }
        "lead.stage_changed" => {
            let key = external(cx, data, "externalId")?;
            let id = lookup_required(w, RecordKind::Lead, &key).await?;
            let change = stage_change::<LeadStage>(data)?;
            change_lead_stage(w, cx, id, change.to, change.reason, change.at.unwrap_or(at)).await
        }
        "opportunity.upserted" => {
            let key = external(cx, data, "externalId")?;
            let lead = reference(w, cx, data, "leadExternalId", RecordKind::Lead).await?;
            let mut extra = Vec::new();
            if let Some(account) =
                reference(w, cx, data, "accountExternalId", RecordKind::Account).await?
            {
                extra.push(("accountId", Value::String(account.to_string())));
            } else if let Some(lead) = lead {
                let account = crate::records::leads::service::get(w.db(), lead)
                    .await?
                    .account_id;
                extra.push((
                    "accountId",
                    account
                        .map(|a| Value::String(a.to_string()))
                        .unwrap_or_else(placeholder),
                ));
            }
            if let Some(lead) = lead {
                extra.push(("leadId", Value::String(lead.to_string())));
            }
            let input: OpportunityInput = parse_input(input_fields(data, &extra))?;
            let (new, initial, _) = input.into_parts(&cx.currency)?;
            upsert_opportunity(w, cx, &key, new, initial, at).await
        }
        "opportunity.stage_changed" => {
            let key = external(cx, data, "externalId")?;
            let id = lookup_required(w, RecordKind::Opportunity, &key).await?;
            let change = stage_change::<OpportunityStage>(data)?;
            change_opportunity_stage(
                w,
                cx,
                id,
                change.to,
                change.lost_reason,
                change.reason,
                change.at.unwrap_or(at),
            )
            .await
        }
        "touchpoint.recorded" => {
            let key = external(cx, data, "leadExternalId")?;
            let lead = lookup_required(w, RecordKind::Lead, &key).await?;
            let (campaign, occurred) = touchpoint(data)?;
            leads::record_touchpoint_in(w, lead, campaign, Some(occurred.unwrap_or(at))).await?;
            Ok(Outcome::Applied)
        }
        "handoff.created" => {
            let lead = reference(w, cx, data, "leadExternalId", RecordKind::Lead).await?;
            let opp = reference(
                w,
                cx,
                data,
                "opportunityExternalId",
                RecordKind::Opportunity,
            )
            .await?;
            if lead.is_none() && opp.is_none() {
                return Err(AppError::not_found("the hand-off's lead or opportunity"));
            }
            let input: HandOffInput =
                parse_input(input_fields(data, &handoff_refs(data, lead, opp)))?;
            let mut new = input.into_new()?;
            new.handed_at.get_or_insert(at);
            handoffs::create_in(w, &cx.who, new).await?;
            Ok(Outcome::Applied)
        }
        other => Err(AppError::bad_input(
            "type",
            format!("unknown event type `{other}`"),
        )),
    }
}

/// The Lockstep id of a referenced CRM record (NOT_FOUND when the CRM's id
/// maps to nothing yet), `None` when `data` has no such reference.
async fn reference(
    w: &Work,
    cx: &ApplyCx,
    data: &Map<String, Value>,
    field: &str,
    kind: RecordKind,
) -> AppResult<Option<uuid::Uuid>> {
    if !data.contains_key(field) {
        return Ok(None);
    }
    let key = external(cx, data, field)?;
    Ok(Some(lookup_required(w, kind, &key).await?))
}

/// Creates or updates a lead from a CRM's state at `at`: a new lead is
/// created at its `createdAt` (default `at`) in its stage; an existing one
/// gets its fields, then a stage change at `at` when its stage differs.
pub async fn upsert_lead(
    w: &mut Work,
    cx: &ApplyCx,
    key: &external_ids::ExternalRef,
    mut fields: leads::LeadFields,
    at: DateTime<Utc>,
) -> AppResult<Outcome> {
    match external_ids::lookup(w.db(), RecordKind::Lead, key).await? {
        None => {
            fields.created_at.get_or_insert(at);
            leads::upsert_in(w, &cx.actor, key, fields).await?;
        }
        Some(id) => {
            let stage = fields.stage.take();
            let reason = fields.reason.take();
            fields.created_at = None;
            fields.actor_user_id = None;
            let lead = leads::upsert_in(w, &cx.actor, key, fields).await?;
            if let Some(to) = stage
                && to != lead.stage
            {
                change_lead_stage(w, cx, id, to, reason, at).await?;
            }
        }
    }
    Ok(Outcome::Applied)
}

/// Moves a lead to `to` at the CRM's time; already there is a no-op.
pub async fn change_lead_stage(
    w: &mut Work,
    cx: &ApplyCx,
    id: uuid::Uuid,
    to: LeadStage,
    reason: Option<String>,
    at: DateTime<Utc>,
) -> AppResult<Outcome> {
    let current = w.lock_lead(id).await?;
    if current.stage == to {
        return Ok(Outcome::Unchanged);
    }
    let at = not_before_last(w, Subject::Lead(id), current.created_at, at).await?;
    leads::change_stage_in(
        w,
        &cx.actor,
        id,
        to,
        Some(reason.unwrap_or_else(|| "synced".into())),
        Some(at),
    )
    .await?;
    Ok(Outcome::Applied)
}

/// A CRM time for a stage change, kept from going back before the record's
/// creation or last change (two systems' clocks, or a change Lockstep made
/// itself after the CRM's), so the history stays ordered.
pub(crate) async fn not_before_last(
    w: &Work,
    subject: Subject,
    created_at: DateTime<Utc>,
    at: DateTime<Utc>,
) -> AppResult<DateTime<Utc>> {
    let mut at = at.max(created_at);
    if let Some(last) = crate::records::stage_changes::last(w.db(), subject).await? {
        at = at.max(last.at);
    }
    Ok(at.min(crate::records::common::now()))
}

/// Creates or updates an opportunity from a CRM's state at `at`. A new one
/// whose lead is not converted yet is created by converting the lead.
pub async fn upsert_opportunity(
    w: &mut Work,
    cx: &ApplyCx,
    key: &external_ids::ExternalRef,
    mut new: opportunities::NewOpportunity,
    mut initial: opportunities::InitialStage,
    at: DateTime<Utc>,
) -> AppResult<Outcome> {
    match external_ids::lookup(w.db(), RecordKind::Opportunity, key).await? {
        None => {
            let created_at = *new.created_at.get_or_insert(at);
            if let Some(lead_id) = new.lead_id {
                let lead = w.lock_lead(lead_id).await?;
                if lead.converted_opportunity_id.is_none() && lead.stage != LeadStage::Converted {
                    let conversion = leads::Conversion {
                        name: new.name.clone(),
                        account_id: Some(new.account_id),
                        owner_id: new.owner_id,
                        amount: new.amount,
                        currency: new.currency.clone(),
                        expected_close_date: new.expected_close_date,
                        sourced_by: Some(new.sourced_by),
                        reason: new.reason.clone(),
                        external_ids: vec![key.clone()],
                    };
                    let at =
                        not_before_last(w, Subject::Lead(lead_id), lead.created_at, created_at)
                            .await?;
                    let (_, opp) =
                        leads::convert_in(w, &cx.actor, lead_id, conversion, Some(at)).await?;
                    if let Some(to) = initial.stage
                        && to != opp.stage
                    {
                        let close = initial.closed_at.unwrap_or(at);
                        change_opportunity_stage(
                            w,
                            cx,
                            opp.id,
                            to,
                            initial.lost_reason,
                            None,
                            close,
                        )
                        .await?;
                    }
                    return Ok(Outcome::Applied);
                }
            }
            if initial.stage.is_some_and(|s| s.is_closed()) {
                initial.closed_at.get_or_insert(at);
            }
            opportunities::upsert_in(w, &cx.actor, key, new, initial).await?;
        }
        Some(id) => {
            let to = initial.stage.take();
            new.created_at = None;
            let opp = opportunities::upsert_in(w, &cx.actor, key, new, initial.clone()).await?;
            if let Some(to) = to
                && to != opp.stage
            {
                let when = initial.closed_at.filter(|_| to.is_closed()).unwrap_or(at);
                change_opportunity_stage(w, cx, id, to, initial.lost_reason, None, when).await?;
            }
        }
    }
    Ok(Outcome::Applied)
}

/// Moves an opportunity to `to` at the CRM's time; already there is a no-op.
pub async fn change_opportunity_stage(
    w: &mut Work,
    cx: &ApplyCx,
    id: uuid::Uuid,
    to: OpportunityStage,
    lost_reason: Option<String>,
    reason: Option<String>,
    at: DateTime<Utc>,
) -> AppResult<Outcome> {
    let current = w.lock_opportunity(id).await?;
    if current.stage == to {
        return Ok(Outcome::Unchanged);
    }
    let at = not_before_last(w, Subject::Opportunity(id), current.created_at, at).await?;
    opportunities::change_stage_in(
        w,
        &cx.actor,
        id,
        to,
        lost_reason,
        Some(reason.unwrap_or_else(|| "synced".into())),
        Some(at),
    )
    .await?;
    Ok(Outcome::Applied)
}
