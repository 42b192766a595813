//! HubSpot: webhook batches (a JSON array of events) signed with the v3
//! signature: `X-HubSpot-Signature-v3` = base64 HMAC-SHA256(app secret,
//! method + URL + body + `X-HubSpot-Request-Timestamp`), the timestamp in
//! milliseconds and refused more than 5 minutes off.
//!
//! Contacts are leads, deals opportunities, keyed by HubSpot's `objectId`
//! (external-id system `hubspot`, or the integration's `system`). Settings:
//! - `portalId`: refuse events of another HubSpot account;
//! - `lifecycleStages`: `lifecyclestage` value → lead stage (defaults below);
//! - `dealStages`: `dealstage` id → opportunity stage (`closedwon` and
//!   `closedlost` always close; an unmapped open stage leaves the stage as it is);
//! - `owners`: HubSpot owner id → Lockstep user id or e-mail (`hubspot_owner_id`);
//! - `defaultAccountId`: the account a new deal is filed under (HubSpot
//!   sends no company with `deal.creation`).

use super::apply::{ApplyCx, Outcome, lookup_required};
use super::generic::{change_lead_stage, change_opportunity_stage};
use super::{Incoming, Refusal, Request, check_token, from_millis};
use crate::error::{AppError, AppResult};
use crate::records::external_ids::{self, ExternalRef};
use crate::records::handoffs::service::{self as handoffs, NewHandoff};
use crate::records::{leads::service as leads, opportunities::service as opportunities};
use crate::uow::Work;
use base64::Engine;
use chrono::{DateTime, NaiveDate, Utc};
use entity::enums::{HandoffStatus, LeadStage, OpportunityStage, RecordKind, SourcedBy};
use entity::webhook_event;
use serde_json::Value;
use uuid::Uuid;

pub const SIGNATURE_HEADER: &str = "x-hubspot-signature-v3";
pub const TIMESTAMP_HEADER: &str = "x-hubspot-request-timestamp";

/// The subscription types Lockstep applies.
pub const TYPES: &[&str] = &[
    "contact.creation",
    "contact.propertyChange",
    "deal.creation",
    "deal.propertyChange",
];

/// Default `lifecyclestage` mapping.
const LIFECYCLE: &[(&str, LeadStage)] = &[
    ("subscriber", LeadStage::Inquiry),
    ("lead", LeadStage::Inquiry),
    ("marketingqualifiedlead", LeadStage::Mql),
    ("salesqualifiedlead", LeadStage::Sql),
    ("opportunity", LeadStage::Sql),
];

/// Default `dealstage` mapping (HubSpot's default sales pipeline).
const DEAL_STAGES: &[(&str, OpportunityStage)] = &[
    ("appointmentscheduled", OpportunityStage::Discovery),
    ("qualifiedtobuy", OpportunityStage::Discovery),
    ("presentationscheduled", OpportunityStage::Proposal),
    ("decisionmakerboughtin", OpportunityStage::Proposal),
    ("contractsent", OpportunityStage::Negotiation),
    ("closedwon", OpportunityStage::ClosedWon),
    ("closedlost", OpportunityStage::ClosedLost),
];

pub fn check_settings(settings: &Value) -> AppResult<()> {
    let bad = |m: &str| AppError::bad_input("settings", m.to_owned());
    if let Some(p) = settings.get("portalId")
        && !p.is_i64()
    {
        return Err(bad("`portalId` must be a number"));
    }
    for (key, check) in [
        (
            "lifecycleStages",
            &(|v: &Value| lead_stage(v).is_some()) as &dyn Fn(&Value) -> bool,
        ),
        ("dealStages", &|v: &Value| opp_stage(v).is_some()),
        ("owners", &|v: &Value| {
            v.as_str().is_some_and(|s| !s.trim().is_empty())
        }),
    ] {
        match settings.get(key) {
            None => {}
            Some(Value::Object(map)) if map.values().all(check) => {}
            Some(_) => {
                return Err(bad(&format!(
                    "`{key}` must map names to {}",
                    if key == "owners" {
                        "user ids or e-mails"
                    } else {
                        "stages"
                    }
                )));
            }
        }
    }
    if let Some(a) = settings.get("defaultAccountId")
        && a.as_str().is_none_or(|s| Uuid::parse_str(s).is_err())
    {
        return Err(bad("`defaultAccountId` must be an account id"));
    }
    Ok(())
}

fn lead_stage(v: &Value) -> Option<LeadStage> {
    serde_json::from_value(v.clone()).ok()
}

fn opp_stage(v: &Value) -> Option<OpportunityStage> {
    serde_json::from_value(v.clone()).ok()
}

/// A property change is stale only against a later change of the same
/// property of the same record; creations never are.
pub fn supersedes(newer: &str, older: &str) -> bool {
    older.contains(".propertyChange:") && newer == older
}

/// Signs a request the way HubSpot does (for tests and tools).
pub fn sign(secret: &str, method: &str, url: &str, body: &[u8], timestamp_ms: i64) -> String {
    let ts = timestamp_ms.to_string();
    let mac = super::secrets::hmac(
        secret.as_bytes(),
        &[method.as_bytes(), url.as_bytes(), body, ts.as_bytes()],
    );
    base64::engine::general_purpose::STANDARD.encode(mac)
}

pub fn parse(req: &Request<'_>) -> Result<Vec<Incoming>, Refusal> {
    req.require_content_type(&["application/json"])?;
    let signature = req
        .header(SIGNATURE_HEADER)
        .ok_or_else(|| Refusal::unauthorized("missing X-HubSpot-Signature-v3"))?;
    let ts_text = req
        .header(TIMESTAMP_HEADER)
        .ok_or_else(|| Refusal::unauthorized("missing X-HubSpot-Request-Timestamp"))?;
    let ts: i64 = ts_text
        .trim()
        .parse()
        .map_err(|_| Refusal::unauthorized("X-HubSpot-Request-Timestamp is not milliseconds"))?;
    let expected = base64::engine::general_purpose::STANDARD
        .decode(signature.trim())
        .map_err(|_| Refusal::unauthorized("X-HubSpot-Signature-v3 is not base64"))?;
    let valid = req.secrets.iter().any(|secret| {
        super::secrets::verify_hmac(
            secret.as_bytes(),
            &[
                req.method.as_bytes(),
                req.url.as_bytes(),
                req.body,
                ts_text.trim().as_bytes(),
            ],
            &expected,
        )
    });
    if !valid {
        return Err(Refusal::unauthorized("the signature does not match"));
    }
    req.check_window(
        DateTime::from_timestamp_millis(ts)
            .ok_or_else(|| Refusal::unauthorized("the timestamp is not a valid time"))?,
    )?;
    let value: Value = serde_json::from_slice(req.body)
        .map_err(|e| Refusal::bad(format!("the body is not JSON: {e}")))?;
    let Value::Array(items) = value else {
        return Err(Refusal::bad("the body must be a JSON array of events"));
    };
    if items.is_empty() || items.len() > 1_000 {
        return Err(Refusal::bad("a batch holds 1 to 1,000 events"));
    }
    let portal = req.settings.get("portalId").and_then(Value::as_i64);
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            event(item, portal).map_err(|r| match r {
                Refusal::BadRequest(m) => Refusal::BadRequest(format!("[{i}]: {m}")),
                other => other,
            })
        })
        .collect()
}

fn event(item: Value, portal: Option<i64>) -> Result<Incoming, Refusal> {
    let obj = item
        .as_object()
        .ok_or_else(|| Refusal::bad("an event must be an object"))?;
    let int = |k: &str| -> Result<i64, Refusal> {
        obj.get(k)
            .and_then(Value::as_i64)
            .ok_or_else(|| Refusal::bad(format!("`{k}` must be a number")))
    };
    let event_id = int("eventId")?;
    let object_id = int("objectId")?;
    let occurred_at = from_millis(int("occurredAt")?, "occurredAt")?;
    if let Some(expected) = portal
        && int("portalId")? != expected
    {
        return Err(Refusal::unauthorized(
            "the event is from another HubSpot account (portalId)",
        ));
    }
    let ty = match obj.get("subscriptionType") {
        Some(Value::String(s)) => check_token(s, "subscriptionType")?,
        _ => return Err(Refusal::bad("`subscriptionType` must be a string")),
    };
    if !TYPES.contains(&ty.as_str()) {
        return Err(Refusal::bad(format!(
            "unknown event type `{ty}` (one of {})",
            TYPES.join(", ")
        )));
    }
    let mut event_type = ty.clone();
    let mut event_key = format!("{event_id}:{ty}:{object_id}");
    if ty.ends_with(".propertyChange") {
        let name = match obj.get("propertyName") {
            Some(Value::String(s)) => check_token(s, "propertyName")?,
            _ => return Err(Refusal::bad("`propertyName` must be a string")),
        };
        match obj.get("propertyValue") {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            _ => return Err(Refusal::bad("`propertyValue` must be a string")),
        }
        event_type = format!("{ty}:{name}");
        event_key = format!("{event_key}:{name}");
    }
    let kind = if ty.starts_with("contact.") {
        "lead"
    } else {
        "opportunity"
    };
    Ok(Incoming {
        // HubSpot's eventId alone is not promised unique: with the object
        // and property it names one change, and a redelivery repeats them all.
        event_id: event_key,
        event_type,
        record_key: format!("{kind}:{object_id}"),
        occurred_at,
        body: item.to_string(),
    })
}

fn key(cx: &ApplyCx, body: &Value) -> AppResult<ExternalRef> {
    let id = body
        .get("objectId")
        .and_then(Value::as_i64)
        .ok_or_else(|| AppError::invalid("objectId missing"))?;
    ExternalRef::normalized(&cx.system, &id.to_string())
}

/// A HubSpot owner id → the Lockstep user the settings map it to (an
/// empty value clears the owner; an unmapped one fails the event).
async fn owner(w: &Work, cx: &ApplyCx, hubspot_owner: &str) -> AppResult<Option<Uuid>> {
    if hubspot_owner.trim().is_empty() {
        return Ok(None);
    }
    super::apply::mapped_owner(w, cx, hubspot_owner)
        .await?
        .map(Some)
        .ok_or_else(|| {
            AppError::bad_input(
                "hubspot_owner_id",
                format!("HubSpot owner {hubspot_owner} is not in the integration's `owners`"),
            )
        })
}

pub async fn apply(w: &mut Work, cx: &ApplyCx, ev: &webhook_event::Model) -> AppResult<Outcome> {
    let body: Value = serde_json::from_str(&ev.body).map_err(AppError::internal)?;
    let key = key(cx, &body)?;
    let value = body
        .get("propertyValue")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let property = body
        .get("propertyName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let at = ev.occurred_at;
    match ev.event_type.split(':').next().unwrap_or("") {
        "contact.creation" => {
            if external_ids::lookup(w.db(), RecordKind::Lead, &key)
                .await?
                .is_some()
            {
                return Ok(Outcome::Unchanged);
            }
            // HubSpot sends no properties with a creation: the address
            // stands in until the `email` property arrives.
            let fields = leads::LeadFields {
                email: Some(format!("hubspot-{}@contacts.invalid", key.id)),
                created_at: Some(at),
                ..Default::default()
            };
            leads::upsert_in(w, &cx.actor, &key, fields).await?;
            Ok(Outcome::Applied)
        }
        "contact.propertyChange" => {
            let id = lookup_required(w, RecordKind::Lead, &key).await?;
            contact_property(w, cx, id, &property, &value, at).await
        }
        "deal.creation" => {
            if external_ids::lookup(w.db(), RecordKind::Opportunity, &key)
                .await?
                .is_some()
            {
                return Ok(Outcome::Unchanged);
            }
            let account = cx
                .settings
                .get("defaultAccountId")
                .and_then(Value::as_str)
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(|| {
                    AppError::bad_input(
                        "settings",
                        "a new HubSpot deal needs `defaultAccountId` in the integration's settings",
                    )
                })?;
            let new = opportunities::NewOpportunity {
                name: format!("HubSpot deal {}", key.id),
                account_id: account,
                lead_id: None,
                owner_id: None,
                amount: 0,
                currency: cx.currency.clone(),
                expected_close_date: None,
                sourced_by: SourcedBy::Sales,
                created_at: Some(at),
                reason: Some("synced".into()),
            };
            opportunities::upsert_in(w, &cx.actor, &key, new, Default::default()).await?;
            Ok(Outcome::Applied)
        }
        "deal.propertyChange" => {
            let id = lookup_required(w, RecordKind::Opportunity, &key).await?;
            deal_property(w, cx, id, &property, &value, at).await
        }
        other => Err(AppError::bad_input(
            "subscriptionType",
            format!("unknown event type `{other}`"),
        )),
    }
}

fn text_patch(v: &str) -> Option<Option<String>> {
    Some(Some(v.to_owned()).filter(|s| !s.trim().is_empty()))
}

async fn contact_property(
    w: &mut Work,
    cx: &ApplyCx,
    id: Uuid,
    property: &str,
    value: &str,
    at: DateTime<Utc>,
) -> AppResult<Outcome> {
    let mut fields = leads::LeadFields::default();
    match property {
        "email" => fields.email = Some(value.to_owned()),
        "firstname" => fields.first_name = text_patch(value),
        "lastname" => fields.last_name = text_patch(value),
        "jobtitle" => fields.title = text_patch(value),
        "company" => fields.company = text_patch(value),
        "lifecyclestage" => {
            let mapped = cx
                .settings
                .get("lifecycleStages")
                .and_then(|m| m.get(value))
                .and_then(lead_stage)
                .or_else(|| {
                    LIFECYCLE
                        .iter()
                        .find(|(name, _)| *name == value)
                        .map(|(_, s)| *s)
                });
            let Some(to) = mapped else {
                return Ok(Outcome::Ignored);
            };
            let lead = w.lock_lead(id).await?;
            if lead.stage == LeadStage::Converted {
                return Ok(Outcome::Ignored);
            }
            return change_lead_stage(
                w,
                cx,
                id,
                to,
                Some(format!("HubSpot lifecyclestage {value}")),
                at,
            )
            .await;
        }
        "hubspot_owner_id" => return contact_owner(w, cx, id, value, at).await,
        _ => return Ok(Outcome::Ignored),
    }
    leads::update_as_in(w, &cx.actor, id, fields).await?;
    Ok(Outcome::Applied)
}

/// A contact's new owner; when the owner is in another team than the
/// lead's, the move is recorded as an accepted hand-off between the teams.
async fn contact_owner(
    w: &mut Work,
    cx: &ApplyCx,
    id: Uuid,
    value: &str,
    at: DateTime<Utc>,
) -> AppResult<Outcome> {
    let new_owner = owner(w, cx, value).await?;
    let lead = w.lock_lead(id).await?;
    if lead.owner_id == new_owner {
        return Ok(Outcome::Unchanged);
    }
    let new_team = match new_owner {
        Some(u) => {
            crate::records::users::service::get(w.db(), u)
                .await?
                .team_id
        }
        None => None,
    };
    let old_team = match (lead.team_id, lead.owner_id) {
        (Some(t), _) => Some(t),
        (None, Some(u)) => {
            crate::records::users::service::get(w.db(), u)
                .await?
                .team_id
        }
        (None, None) => None,
    };
    if let (Some(from), Some(to)) = (old_team, new_team)
        && from != to
    {
        let handoff = NewHandoff {
            lead_id: Some(id),
            to_team_id: Some(to),
            to_user_id: new_owner,
            from_team_id: Some(from),
            from_user_id: lead.owner_id,
            note: Some("owner changed in HubSpot".into()),
            handed_at: Some(at),
            status: Some(HandoffStatus::Accepted),
            responded_at: Some(at),
            responded_by_id: new_owner,
            ..Default::default()
        };
        handoffs::create_in(w, &cx.who, handoff).await?;
    }
    let fields = leads::LeadFields {
        owner_id: Some(new_owner),
        team_id: new_team.map(Some),
        ..Default::default()
    };
    leads::update_as_in(w, &cx.actor, id, fields).await?;
    Ok(Outcome::Applied)
}

async fn deal_property(
    w: &mut Work,
    cx: &ApplyCx,
    id: Uuid,
    property: &str,
    value: &str,
    at: DateTime<Utc>,
) -> AppResult<Outcome> {
    let mut patch = opportunities::OpportunityPatch::default();
    match property {
        "dealname" if !value.trim().is_empty() => patch.name = Some(value.to_owned()),
        "amount" => {
            let amount: rust_decimal::Decimal = if value.trim().is_empty() {
                rust_decimal::Decimal::ZERO
            } else {
                value
                    .trim()
                    .parse()
                    .map_err(|_| AppError::bad_input("amount", "`amount` is not a number"))?
            };
            patch.amount = Some(crate::records::common::money_to_units(
                amount,
                &cx.currency,
                "amount",
            )?);
        }
        "closedate" => {
            patch.expected_close_date = Some(close_date(value)?);
        }
        "hubspot_owner_id" => patch.owner_id = Some(owner(w, cx, value).await?),
        "dealstage" => {
            let mapped = cx
                .settings
                .get("dealStages")
                .and_then(|m| m.get(value))
                .and_then(opp_stage)
                .or_else(|| {
                    DEAL_STAGES
                        .iter()
                        .find(|(name, _)| *name == value)
                        .map(|(_, s)| *s)
                });
            let Some(to) = mapped else {
                return Ok(Outcome::Ignored);
            };
            let current = w.lock_opportunity(id).await?;
            if current.stage.is_closed() {
                return Ok(Outcome::Ignored);
            }
            let lost =
                (to == OpportunityStage::ClosedLost).then(|| "closed lost in HubSpot".to_owned());
            return change_opportunity_stage(
                w,
                cx,
                id,
                to,
                lost,
                Some(format!("HubSpot dealstage {value}")),
                at,
            )
            .await;
        }
        _ => return Ok(Outcome::Ignored),
    }
    opportunities::update_in(w, id, patch).await?;
    Ok(Outcome::Applied)
}

/// HubSpot sends dates as milliseconds (midnight UTC) or ISO text.
fn close_date(value: &str) -> AppResult<Option<NaiveDate>> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    if let Ok(ms) = v.parse::<i64>() {
        return DateTime::from_timestamp_millis(ms)
            .map(|t| Some(t.date_naive()))
            .ok_or_else(|| AppError::bad_input("closedate", "`closedate` is not a date"));
    }
    v.get(..10)
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .map(Some)
        .ok_or_else(|| AppError::bad_input("closedate", "`closedate` is not a date"))
}
