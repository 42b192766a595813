//! Pipedrive: webhooks v2 (`{meta, data, previous}`), one event per request,
//! authenticated with HTTP basic auth: the user is the integration's
//! `username` setting (default `lockstep`), the password its secret.
//!
//! Persons are leads, deals opportunities, keyed by Pipedrive's `entity_id`
//! (external-id system `pipedrive`, or the integration's `system`). `data`
//! holds the object's whole state, so an event older than one already
//! applied to the record is not applied. Settings:
//! - `username`: the basic-auth user;
//! - `dealStages`: Pipedrive `stage_id` → opportunity stage (a won or lost
//!   deal closes whatever its stage);
//! - `owners`: Pipedrive user id → Lockstep user id or e-mail;
//! - `defaultAccountId`: the account of a deal whose organization is not
//!   mapped (organizations are matched by external id `pipedrive:<org_id>`).

use super::apply::{ApplyCx, Outcome};
use super::generic::{upsert_lead, upsert_opportunity};
use super::secrets::same_secret;
use super::{Incoming, Refusal, Request, check_token};
use crate::error::{AppError, AppResult};
use crate::records::external_ids::{self, ExternalRef};
use crate::records::leads::service::LeadFields;
use crate::records::opportunities::service::{InitialStage, NewOpportunity};
use crate::uow::Work;
use base64::Engine;
use chrono::{DateTime, NaiveDate, Utc};
use entity::enums::{OpportunityStage, RecordKind, SourcedBy};
use entity::webhook_event;
use serde_json::Value;
use uuid::Uuid;

/// The objects Lockstep applies.
pub const ENTITIES: &[&str] = &["person", "deal"];
pub const ACTIONS: &[&str] = &["create", "change", "delete"];

pub fn check_settings(settings: &Value) -> AppResult<()> {
    if let Some(u) = settings.get("username")
        && !u
            .as_str()
            .is_some_and(|s| !s.is_empty() && !s.contains(':'))
    {
        return Err(AppError::bad_input(
            "settings",
            "`username` must be a non-empty string without `:`",
        ));
    }
    if let Some(Value::Object(map)) = settings.get("dealStages")
        && !map
            .values()
            .all(|v| serde_json::from_value::<OpportunityStage>(v.clone()).is_ok())
    {
        return Err(AppError::bad_input(
            "settings",
            "`dealStages` must map stage ids to stages",
        ));
    }
    Ok(())
}

fn username(settings: &Value) -> &str {
    settings
        .get("username")
        .and_then(Value::as_str)
        .unwrap_or("lockstep")
}

pub fn parse(req: &Request<'_>) -> Result<Vec<Incoming>, Refusal> {
    req.require_content_type(&["application/json"])?;
    let auth = req
        .header("authorization")
        .ok_or_else(|| Refusal::unauthorized("missing basic auth"))?;
    let encoded = auth
        .strip_prefix("Basic ")
        .or_else(|| auth.strip_prefix("basic "))
        .ok_or_else(|| Refusal::unauthorized("basic auth expected"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| Refusal::unauthorized("malformed basic auth"))?;
    let (user, password) = decoded.split_once(':').unwrap_or(("", ""));
    let user_ok = same_secret(user, username(req.settings));
    let password_ok = req
        .secrets
        .iter()
        .fold(false, |ok, s| same_secret(s, password) | ok);
    if !(user_ok & password_ok) {
        return Err(Refusal::unauthorized("wrong basic-auth credentials"));
    }
    let value: Value = serde_json::from_slice(req.body)
        .map_err(|e| Refusal::bad(format!("the body is not JSON: {e}")))?;
    let meta = value
        .get("meta")
        .and_then(Value::as_object)
        .ok_or_else(|| Refusal::bad("`meta` must be an object"))?;
    let text = |k: &str| -> Result<String, Refusal> {
        match meta.get(k) {
            Some(Value::String(s)) => check_token(s, &format!("meta.{k}")),
            Some(Value::Number(n)) => Ok(n.to_string()),
            _ => Err(Refusal::bad(format!("`meta.{k}` is required"))),
        }
    };
    let action = text("action")?;
    let entity = text("entity")?;
    if !ACTIONS.contains(&action.as_str()) || !ENTITIES.contains(&entity.as_str()) {
        return Err(Refusal::bad(format!(
            "unknown event type `{action}.{entity}` (actions {}, objects {})",
            ACTIONS.join(", "),
            ENTITIES.join(", ")
        )));
    }
    let event_id = text("id")?;
    let entity_id = text("entity_id")?;
    let occurred_at = match meta.get("timestamp") {
        Some(Value::String(s)) => s
            .parse::<DateTime<Utc>>()
            .map_err(|_| Refusal::bad("`meta.timestamp` must be an RFC 3339 time"))?,
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .ok_or_else(|| Refusal::bad("`meta.timestamp` is not a valid time"))?,
        _ => return Err(Refusal::bad("`meta.timestamp` is required")),
    };
    if action != "delete" && !value.get("data").is_some_and(Value::is_object) {
        return Err(Refusal::bad("`data` must be an object"));
    }
    let kind = if entity == "person" {
        "lead"
    } else {
        "opportunity"
    };
    Ok(vec![Incoming {
        event_id,
        event_type: format!("{action}.{entity}"),
        record_key: format!("{kind}:{entity_id}"),
        occurred_at,
        body: value.to_string(),
    }])
}

/// The Lockstep user of the deal's or person's owner, when `owners` maps it.
async fn owner(w: &Work, cx: &ApplyCx, data: &Value) -> AppResult<Option<Option<Uuid>>> {
    let Some(id) = id_of(data.get("owner_id")) else {
        return Ok(None);
    };
    Ok(super::apply::mapped_owner(w, cx, &id).await?.map(Some))
}

fn string(data: &Value, k: &str) -> Option<String> {
    data.get(k)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .filter(|s| !s.trim().is_empty())
}

fn time(data: &Value, k: &str) -> Option<DateTime<Utc>> {
    let s = data.get(k)?.as_str()?;
    s.parse::<DateTime<Utc>>().ok().or_else(|| {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
            .ok()
            .map(|t| t.and_utc())
    })
}

fn id_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Number(n) => Some(n.to_string()),
        Value::Object(o) => id_of(o.get("value").or_else(|| o.get("id"))),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

pub async fn apply(w: &mut Work, cx: &ApplyCx, ev: &webhook_event::Model) -> AppResult<Outcome> {
    let body: Value = serde_json::from_str(&ev.body).map_err(AppError::internal)?;
    let entity_id = id_of(body.pointer("/meta/entity_id"))
        .ok_or_else(|| AppError::invalid("meta.entity_id missing"))?;
    let key = ExternalRef::normalized(&cx.system, &entity_id)?;
    if ev.event_type.starts_with("delete.") {
        return deleted(w, ev, &key).await;
    }
    let data = body.get("data").cloned().unwrap_or(Value::Null);
    if ev.event_type.ends_with(".person") {
        let email = data
            .get("emails")
            .or_else(|| data.get("email"))
            .and_then(Value::as_array)
            .and_then(|emails| {
                emails
                    .iter()
                    .find(|e| e.get("primary").and_then(Value::as_bool) == Some(true))
                    .or_else(|| emails.first())
            })
            .and_then(|e| e.get("value"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let fields = LeadFields {
            email: Some(email.unwrap_or_else(|| format!("pipedrive-{entity_id}@contacts.invalid"))),
            first_name: Some(string(&data, "first_name")),
            last_name: Some(string(&data, "last_name")),
            owner_id: owner(w, cx, &data).await?,
            created_at: time(&data, "add_time"),
            ..Default::default()
        };
        return upsert_lead(w, cx, &key, fields, ev.occurred_at).await;
    }
    // A deal.
    let account = match id_of(data.get("org_id")) {
        Some(org) => {
            let org_key = ExternalRef::normalized(&cx.system, &org)?;
            external_ids::lookup(w.db(), RecordKind::Account, &org_key).await?
        }
        None => None,
    }
    .or_else(|| {
        cx.settings
            .get("defaultAccountId")
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
    })
    .ok_or_else(|| {
        AppError::not_found(
            "the deal's organization (no account maps to it and no `defaultAccountId`)",
        )
    })?;
    let lead = match id_of(data.get("person_id")) {
        Some(p) => {
            let person = ExternalRef::normalized(&cx.system, &p)?;
            external_ids::lookup(w.db(), RecordKind::Lead, &person).await?
        }
        None => None,
    };
    let amount = data
        .get("value")
        .map(|v| v.to_string().trim_matches('"').to_owned())
        .and_then(|v| v.parse::<rust_decimal::Decimal>().ok())
        .unwrap_or_default();
    let currency = string(&data, "currency").unwrap_or_else(|| cx.currency.clone());
    let currency = crate::records::common::check_currency(&currency, &cx.currency)?;
    let status = string(&data, "status").unwrap_or_else(|| "open".into());
    let stage = match status.as_str() {
        "won" => Some(OpportunityStage::ClosedWon),
        "lost" => Some(OpportunityStage::ClosedLost),
        _ => id_of(data.get("stage_id")).and_then(|s| {
            cx.settings
                .get("dealStages")
                .and_then(|m| m.get(&s))
                .and_then(|v| serde_json::from_value(v.clone()).ok())
        }),
    };
    let closed_at = time(&data, "won_time")
        .or_else(|| time(&data, "lost_time"))
        .or_else(|| time(&data, "close_time"))
        .filter(|_| stage.is_some_and(|s| s.is_closed()));
    let new = NewOpportunity {
        name: string(&data, "title").unwrap_or_else(|| format!("Pipedrive deal {entity_id}")),
        account_id: account,
        lead_id: lead,
        owner_id: owner(w, cx, &data).await?.flatten(),
        amount: crate::records::common::money_to_units(amount, &currency, "value")?,
        currency,
        expected_close_date: string(&data, "expected_close_date")
            .and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok()),
        sourced_by: SourcedBy::Sales,
        created_at: time(&data, "add_time"),
        reason: Some("synced".into()),
    };
    let initial = InitialStage {
        stage,
        lost_reason: (stage == Some(OpportunityStage::ClosedLost))
            .then(|| string(&data, "lost_reason").unwrap_or_else(|| "lost in Pipedrive".into())),
        closed_at,
    };
    upsert_opportunity(w, cx, &key, new, initial, ev.occurred_at).await
}

/// What a deleted person or deal means for the lead or opportunity it
/// synced to (docs/webhooks.md, "Deletes"): nothing is erased or moved.
/// Lockstep never erases history, and a delete in Pipedrive is not a
/// disqualification or a loss (it is mostly a duplicate or a mistake made
/// undone), so counting it as one would skew conversion and win rates.
/// The event is applied with an explicit `ignored: …` outcome that
/// operators can list; earlier changes of the record still pending are
/// superseded by it.
async fn deleted(w: &Work, ev: &webhook_event::Model, key: &ExternalRef) -> AppResult<Outcome> {
    let (kind, known, unknown) = if ev.event_type.ends_with(".person") {
        (
            RecordKind::Lead,
            "ignored: person deleted in Pipedrive; Lockstep keeps the lead and its history",
            "ignored: person deleted in Pipedrive; no lead was synced from it",
        )
    } else {
        (
            RecordKind::Opportunity,
            "ignored: deal deleted in Pipedrive; Lockstep keeps the opportunity and its history",
            "ignored: deal deleted in Pipedrive; no opportunity was synced from it",
        )
    };
    let synced = external_ids::lookup(w.db(), kind, key).await?.is_some();
    Ok(Outcome::IgnoredBecause(if synced {
        known
    } else {
        unknown
    }))
}
