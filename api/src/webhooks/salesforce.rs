//! Salesforce: Outbound Messages — a SOAP `notifications` message holding
//! one or more `Notification`s, each with its own id and an `sObject` (a
//! Lead or an Opportunity with the fields the outbound message selects).
//! Salesforce sends it again until it gets the SOAP `Ack`, which is the
//! answer once the notifications are stored.
//!
//! Outbound messages carry no signature: a request is accepted when its
//! `OrganizationId` is the integration's `organizationId` setting and it
//! carries the integration's secret, in the URL (`?token=<secret>`, the
//! usual way, as Salesforce's endpoint URL is configured once) or in an
//! `X-Lockstep-Token` header.
//!
//! Records are keyed by the sObject's `Id` (external-id system
//! `salesforce`, or the integration's `system`); each notification holds
//! the record's state, so an older one than a notification already applied
//! is not applied. Settings: `organizationId` (required), `leadStatuses`
//! (`Status` → lead stage), `opportunityStages` (`StageName` → stage; `IsWon`
//! and `IsClosed` close), `leadSources` (`LeadSource` → source), `owners`
//! (`OwnerId` → Lockstep user id or e-mail), `defaultAccountId`.

use super::apply::lookup_required;
use super::apply::{ApplyCx, Outcome};
use super::generic::{not_before_last, upsert_lead, upsert_opportunity};
use super::{Incoming, Refusal, Request, check_token};
use crate::error::{AppError, AppResult};
use crate::records::external_ids::{self, ExternalRef};
use crate::records::leads::service::{self as leads, LeadFields};
use crate::records::opportunities::service::{InitialStage, NewOpportunity};
use crate::records::stage_changes::Subject;
use crate::uow::Work;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use entity::enums::{Channel, LeadStage, OpportunityStage, RecordKind, SourcedBy};
use entity::webhook_event;
use quick_xml::events::Event;
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// The header a secret may come in (besides `?token=`).
pub const TOKEN_HEADER: &str = "x-lockstep-token";

/// The sObjects Lockstep applies.
pub const OBJECTS: &[&str] = &["Lead", "Opportunity"];

const LEAD_STATUSES: &[(&str, LeadStage)] = &[
    ("Open - Not Contacted", LeadStage::Inquiry),
    ("Working - Contacted", LeadStage::Mql),
    ("Closed - Not Converted", LeadStage::Disqualified),
];

const OPPORTUNITY_STAGES: &[(&str, OpportunityStage)] = &[
    ("Prospecting", OpportunityStage::Discovery),
    ("Qualification", OpportunityStage::Discovery),
    ("Needs Analysis", OpportunityStage::Discovery),
    ("Value Proposition", OpportunityStage::Proposal),
    ("Id. Decision Makers", OpportunityStage::Proposal),
    ("Perception Analysis", OpportunityStage::Proposal),
    ("Proposal/Price Quote", OpportunityStage::Proposal),
    ("Negotiation/Review", OpportunityStage::Negotiation),
    ("Closed Won", OpportunityStage::ClosedWon),
    ("Closed Lost", OpportunityStage::ClosedLost),
];

const LEAD_SOURCES: &[(&str, Channel)] = &[
    ("Web", Channel::Web),
    ("Phone Inquiry", Channel::Other),
    ("Partner Referral", Channel::Partner),
    ("Purchased List", Channel::Outbound),
    ("Trade Show", Channel::Event),
    ("Seminar", Channel::Event),
    ("Email", Channel::Email),
    ("Advertisement", Channel::Paid),
    ("Employee Referral", Channel::Referral),
    ("External Referral", Channel::Referral),
    ("Other", Channel::Other),
];

pub fn check_settings(settings: &Value) -> AppResult<()> {
    let org = settings.get("organizationId").and_then(Value::as_str);
    if !org.is_some_and(|o| {
        (o.len() == 15 || o.len() == 18) && o.chars().all(|c| c.is_ascii_alphanumeric())
    }) {
        return Err(AppError::bad_input(
            "settings",
            "a Salesforce integration needs `organizationId` (the 15- or 18-character org id)",
        ));
    }
    Ok(())
}

/// The SOAP acknowledgement Salesforce waits for.
pub fn ack() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">"#,
            r#"<soapenv:Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">"#,
            r#"<Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"#
        ),
    )
        .into_response()
}

/// Org ids compare on their first 15 characters (the 18-character form adds a checksum).
fn same_org(a: &str, b: &str) -> bool {
    a.len() >= 15 && b.len() >= 15 && a[..15] == b[..15]
}

pub fn parse(req: &Request<'_>) -> Result<Vec<Incoming>, Refusal> {
    req.require_content_type(&["text/xml", "application/xml", "application/soap+xml"])?;
    let from_query = req.url.split_once('?').map(|(_, q)| q).and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    });
    let token = from_query
        .or_else(|| req.header(TOKEN_HEADER).map(str::to_owned))
        .ok_or_else(|| {
            Refusal::unauthorized("missing the integration's token (?token= or X-Lockstep-Token)")
        })?;
    if !super::service::is_accepted(&req.secrets, &token) {
        return Err(Refusal::unauthorized("wrong token"));
    }
    let message = read(req.body)?;
    let expected = req
        .settings
        .get("organizationId")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !same_org(&message.organization, expected) {
        return Err(Refusal::unauthorized(
            "the message is from another Salesforce organization",
        ));
    }
    if message.notifications.is_empty() {
        return Err(Refusal::bad("the message holds no Notification"));
    }
    message
        .notifications
        .into_iter()
        .map(|n| {
            let ty = n.object_type.clone();
            if !OBJECTS.contains(&ty.as_str()) {
                return Err(Refusal::bad(format!(
                    "unknown event type `{ty}` (sObjects {})",
                    OBJECTS.join(", ")
                )));
            }
            let id = n
                .fields
                .get("Id")
                .and_then(Value::as_str)
                .map(|s| check_token(s, "sObject Id"))
                .transpose()?
                .ok_or_else(|| Refusal::bad("an sObject without `Id`"))?;
            let occurred_at = ["LastModifiedDate", "SystemModstamp", "CreatedDate"]
                .iter()
                .find_map(|k| n.fields.get(*k).and_then(Value::as_str))
                .and_then(|s| s.parse::<DateTime<Utc>>().ok())
                .unwrap_or(req.now);
            let kind = if ty == "Lead" { "lead" } else { "opportunity" };
            Ok(Incoming {
                event_id: check_token(&n.id, "Notification Id")?,
                event_type: format!("{ty}.outbound"),
                record_key: format!("{kind}:{id}"),
                occurred_at,
                body: json!({
                    "organizationId": message.organization,
                    "notificationId": n.id,
                    "sObject": ty,
                    "fields": n.fields,
                })
                .to_string(),
            })
        })
        .collect()
}

struct Notification {
    id: String,
    object_type: String,
    fields: Map<String, Value>,
}

struct Message {
    organization: String,
    notifications: Vec<Notification>,
}

fn local(name: &str) -> String {
    name.rsplit(':').next().unwrap_or("").to_owned()
}

/// Reads the SOAP envelope: the org id and each notification's id, sObject
/// type and fields (elements with `xsi:nil` are null).
fn read(body: &[u8]) -> Result<Message, Refusal> {
    let text = std::str::from_utf8(body).map_err(|_| Refusal::bad("the body is not UTF-8"))?;
    let mut reader = quick_xml::Reader::from_str(text);
    // Text around an entity reference keeps its spaces; values are trimmed at their end tag.
    reader.config_mut().trim_text(false);
    let mut path: Vec<String> = Vec::new();
    let mut message = Message {
        organization: String::new(),
        notifications: Vec::new(),
    };
    let mut current: Option<Notification> = None;
    let mut text_buf = String::new();
    let mut nil = false;
    let bad =
        |e: &dyn std::fmt::Display| Refusal::bad(format!("the body is not a SOAP message: {e}"));
    loop {
        match reader.read_event().map_err(|e| bad(&e))? {
            Event::Start(e) => {
                let name = local(e.name().as_ref());
                text_buf.clear();
                nil = false;
                for attr in e.attributes().flatten() {
                    let key = local(attr.key.as_ref());
                    let value = attr
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|e| bad(&e))?
                        .into_owned();
                    if key == "type" && name == "sObject" {
                        if let Some(n) = current.as_mut() {
                            n.object_type = value.rsplit(':').next().unwrap_or("").to_owned();
                        }
                    } else if key == "nil" && value == "true" {
                        nil = true;
                    }
                }
                if name == "Notification" {
                    current = Some(Notification {
                        id: String::new(),
                        object_type: String::new(),
                        fields: Map::new(),
                    });
                }
                path.push(name);
            }
            Event::Empty(e) => {
                let name = local(e.name().as_ref());
                if path.last().map(String::as_str) == Some("sObject")
                    && let Some(n) = current.as_mut()
                {
                    n.fields.insert(name, Value::Null);
                }
            }
            Event::Text(t) => {
                text_buf.push_str(&t.xml10_content());
            }
            Event::CData(t) => {
                text_buf.push_str(&t.xml10_content());
            }
            Event::GeneralRef(r) => {
                let name: &str = &r;
                let resolved = match name {
                    "amp" => "&".to_owned(),
                    "lt" => "<".to_owned(),
                    "gt" => ">".to_owned(),
                    "quot" => "\"".to_owned(),
                    "apos" => "'".to_owned(),
                    other => match r.resolve_char_ref().map_err(|e| bad(&e))? {
                        Some(c) => c.to_string(),
                        None => {
                            return Err(Refusal::bad(format!("unknown XML entity `&{other};`")));
                        }
                    },
                };
                text_buf.push_str(&resolved);
            }
            Event::End(_) => {
                let name = path.pop().unwrap_or_default();
                let parent = path.last().map(String::as_str);
                match (parent, name.as_str()) {
                    (Some("notifications"), "OrganizationId") => {
                        message.organization = text_buf.trim().to_owned();
                    }
                    (Some("Notification"), "Id") => {
                        if let Some(n) = current.as_mut() {
                            n.id = text_buf.trim().to_owned();
                        }
                    }
                    (Some("sObject"), field) => {
                        if let Some(n) = current.as_mut() {
                            let v = if nil {
                                Value::Null
                            } else {
                                Value::String(text_buf.trim().to_owned())
                            };
                            n.fields.insert(field.to_owned(), v);
                        }
                    }
                    (_, "Notification") => {
                        if let Some(n) = current.take() {
                            message.notifications.push(n);
                        }
                    }
                    _ => {}
                }
                text_buf.clear();
                nil = false;
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !path.is_empty() {
        return Err(Refusal::bad(
            "the body is not a SOAP message: it ends inside an element",
        ));
    }
    if message.organization.is_empty() {
        return Err(Refusal::bad("the message has no OrganizationId"));
    }
    Ok(message)
}

fn field<'a>(fields: &'a Value, k: &str) -> Option<&'a str> {
    fields
        .get(k)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

fn mapped<T: serde::de::DeserializeOwned + Copy>(
    cx: &ApplyCx,
    setting: &str,
    defaults: &[(&str, T)],
    value: &str,
) -> Option<T> {
    cx.settings
        .get(setting)
        .and_then(|m| m.get(value))
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .or_else(|| defaults.iter().find(|(k, _)| *k == value).map(|(_, v)| *v))
}

/// The Lockstep user of the record's `OwnerId`, when `owners` maps it.
async fn owner(w: &Work, cx: &ApplyCx, fields: &Value) -> AppResult<Option<Option<Uuid>>> {
    let Some(id) = field(fields, "OwnerId") else {
        return Ok(None);
    };
    Ok(super::apply::mapped_owner(w, cx, id).await?.map(Some))
}

pub async fn apply(w: &mut Work, cx: &ApplyCx, ev: &webhook_event::Model) -> AppResult<Outcome> {
    let body: Value = serde_json::from_str(&ev.body).map_err(AppError::internal)?;
    let fields = body.get("fields").cloned().unwrap_or(Value::Null);
    let id = field(&fields, "Id").ok_or_else(|| AppError::invalid("sObject Id missing"))?;
    let key = ExternalRef::normalized(&cx.system, id)?;
    let created_at = field(&fields, "CreatedDate").and_then(|s| s.parse::<DateTime<Utc>>().ok());
    if body.get("sObject").and_then(Value::as_str) == Some("Lead") {
        let stage =
            field(&fields, "Status").and_then(|s| mapped(cx, "leadStatuses", LEAD_STATUSES, s));
        let lead = LeadFields {
            email: Some(
                field(&fields, "Email")
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("salesforce-{id}@contacts.invalid")),
            ),
            first_name: fields
                .get("FirstName")
                .map(|v| v.as_str().map(str::to_owned)),
            last_name: fields
                .get("LastName")
                .map(|v| v.as_str().map(str::to_owned)),
            title: fields.get("Title").map(|v| v.as_str().map(str::to_owned)),
            company: fields.get("Company").map(|v| v.as_str().map(str::to_owned)),
            source: field(&fields, "LeadSource")
                .and_then(|s| mapped(cx, "leadSources", LEAD_SOURCES, s)),
            owner_id: owner(w, cx, &fields).await?,
            stage: stage.filter(|s| *s != LeadStage::Converted),
            created_at,
            ..Default::default()
        };
        let outcome = upsert_lead(w, cx, &key, lead, ev.occurred_at).await?;
        if let Some(opportunity) = field(&fields, "ConvertedOpportunityId")
            && field(&fields, "IsConverted") != Some("false")
        {
            return converted(w, cx, &key, &fields, opportunity, ev.occurred_at).await;
        }
        return Ok(outcome);
    }
    let account = match field(&fields, "AccountId") {
        Some(a) => external_ids::lookup(w.db(), RecordKind::Account, &ExternalRef::normalized(&cx.system, a)?).await?,
        None => None,
    }
    .or_else(|| {
        cx.settings
            .get("defaultAccountId")
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
    })
    .ok_or_else(|| AppError::not_found("the opportunity's account (no account maps to its AccountId and no `defaultAccountId`)"))?;
    let is = |k: &str| field(&fields, k) == Some("true");
    let stage = if is("IsWon") {
        Some(OpportunityStage::ClosedWon)
    } else if is("IsClosed") {
        Some(OpportunityStage::ClosedLost)
    } else {
        field(&fields, "StageName")
            .and_then(|s| mapped(cx, "opportunityStages", OPPORTUNITY_STAGES, s))
            .filter(|s| !s.is_closed())
    };
    let amount = field(&fields, "Amount")
        .map(|a| {
            a.parse::<rust_decimal::Decimal>()
                .map_err(|_| AppError::bad_input("Amount", "`Amount` is not a number"))
        })
        .transpose()?
        .unwrap_or_default();
    let close_date =
        field(&fields, "CloseDate").and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
    let new = NewOpportunity {
        name: field(&fields, "Name")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("Salesforce opportunity {id}")),
        account_id: account,
        lead_id: None,
        owner_id: owner(w, cx, &fields).await?.flatten(),
        amount: crate::records::common::money_to_units(amount, &cx.currency, "Amount")?,
        currency: cx.currency.clone(),
        expected_close_date: close_date,
        sourced_by: SourcedBy::Sales,
        created_at,
        reason: Some("synced".into()),
    };
    let initial = InitialStage {
        stage,
        lost_reason: (stage == Some(OpportunityStage::ClosedLost))
            .then(|| "closed lost in Salesforce".to_owned()),
        closed_at: None,
    };
    upsert_opportunity(w, cx, &key, new, initial, ev.occurred_at).await
}

/// A converted Lead (`IsConverted`, `ConvertedOpportunityId`): the lead is
/// converted into the opportunity Salesforce made of it, keyed by that
/// opportunity's `Id`, so its own messages update it. When an Opportunity
/// message already created it, the lead is linked to it; otherwise the lead
/// is converted as `convertLead` would (the opportunity's later messages fill
/// in its name, amount and stage). Either order ends the same. A lead
/// Lockstep had already converted keeps its opportunity, which gets the id.
async fn converted(
    w: &mut Work,
    cx: &ApplyCx,
    lead_key: &ExternalRef,
    fields: &Value,
    opportunity: &str,
    at: DateTime<Utc>,
) -> AppResult<Outcome> {
    let lead_id = lookup_required(w, RecordKind::Lead, lead_key).await?;
    let opp_key = ExternalRef::normalized(&cx.system, opportunity)?;
    let reason = Some("converted in Salesforce".to_owned());
    let lead = w.lock_lead(lead_id).await?;
    let at = not_before_last(w, Subject::Lead(lead_id), lead.created_at, at).await?;
    if let Some(opp) = external_ids::lookup(w.db(), RecordKind::Opportunity, &opp_key).await? {
        let linked =
            leads::link_conversion_in(w, &cx.actor, lead_id, opp, reason, Some(at)).await?;
        return Ok(if linked.is_some() {
            Outcome::Applied
        } else {
            Outcome::Unchanged
        });
    }
    if let Some(opp) = lead.converted_opportunity_id {
        external_ids::link(w, RecordKind::Opportunity, &opp_key, opp).await?;
        return Ok(Outcome::Applied);
    }
    let account = match field(fields, "ConvertedAccountId") {
        Some(a) => {
            external_ids::lookup(
                w.db(),
                RecordKind::Account,
                &ExternalRef::normalized(&cx.system, a)?,
            )
            .await?
        }
        None => None,
    }
    .or(lead.account_id)
    .or_else(|| {
        cx.settings
            .get("defaultAccountId")
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
    })
    .ok_or_else(|| {
        AppError::not_found(
            "the converted lead's account (no account maps to its ConvertedAccountId, the lead has none and there is no `defaultAccountId`)",
        )
    })?;
    let conversion = leads::Conversion {
        name: format!("Salesforce opportunity {opportunity}"),
        account_id: Some(account),
        owner_id: None,
        amount: 0,
        currency: cx.currency.clone(),
        expected_close_date: None,
        sourced_by: None,
        reason,
        external_ids: vec![opp_key],
    };
    leads::convert_in(w, &cx.actor, lead_id, conversion, Some(at)).await?;
    Ok(Outcome::Applied)
}
