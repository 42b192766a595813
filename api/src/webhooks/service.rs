//! Integrations and the inbox: what the endpoint, the job and the operators'
//! GraphQL fields call.

use super::secrets::{WebhookKey, new_salt, same_secret};
use super::{APPLY, Incoming};
use crate::config::{Config, DeclaredIntegration};
use crate::error::{AppError, AppResult};
use crate::pagination::{KeyFn, Ordering, Page, PageRequest, SortKey, paginate};
use crate::records::common::{TimeRange, now};
use crate::uow;
use chrono::{DateTime, Duration, Utc};
use entity::enums::{WebhookProvider, WebhookStatus};
use entity::{integration, webhook_event};
use sea_orm::sea_query::{Expr, Func, OnConflict};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, IntoActiveModel,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde_json::Value;
use uuid::Uuid;

/// An integration to create.
#[derive(Debug, Clone)]
pub struct NewIntegration {
    pub name: String,
    pub provider: WebhookProvider,
    pub settings: Value,
    /// HubSpot's app client secret (HubSpot signs with it); none for the
    /// other providers, whose secret Lockstep makes.
    pub client_secret: Option<String>,
}

/// A client secret the user gives: 16 to 256 printable characters.
fn check_client_secret(secret: &str) -> AppResult<&str> {
    let s = secret.trim();
    if s.len() < 16 || s.len() > 256 || s.chars().any(char::is_control) {
        return Err(AppError::bad_input(
            "clientSecret",
            "`clientSecret` must be 16 to 256 printable characters (the HubSpot app's client secret)",
        ));
    }
    Ok(s)
}

/// What a provider's new secret is: one Lockstep derives from a new salt
/// (shown once), or the client secret the user gave (HubSpot), sealed.
enum NewSecret {
    Derived { salt: String, secret: String },
    Given { sealed: String },
}

fn new_secret(
    key: &WebhookKey,
    provider: WebhookProvider,
    id: Uuid,
    client_secret: Option<&str>,
) -> AppResult<NewSecret> {
    match (provider, client_secret) {
        (WebhookProvider::Hubspot, Some(given)) => {
            let given = check_client_secret(given)?;
            let sealed = key
                .seal(id, given)
                .ok_or_else(|| AppError::Internal("sealing a client secret failed".into()))?;
            Ok(NewSecret::Given { sealed })
        }
        (WebhookProvider::Hubspot, None) => Err(AppError::bad_input(
            "clientSecret",
            "HubSpot signs with its app's client secret: give it as `clientSecret`",
        )),
        (_, Some(_)) => Err(AppError::bad_input(
            "clientSecret",
            "`clientSecret` is for HUBSPOT integrations only: Lockstep makes the other providers' secrets",
        )),
        (_, None) => {
            let salt = new_salt();
            let secret = key.secret(&salt);
            Ok(NewSecret::Derived { salt, secret })
        }
    }
}

fn check_name(name: &str) -> AppResult<String> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 100 || n.chars().any(char::is_control) {
        return Err(AppError::bad_input(
            "name",
            "`name` must be 1 to 100 printable characters",
        ));
    }
    Ok(n.to_owned())
}

/// Settings must be an object (or null: none) of at most 64 KiB.
fn check_settings(provider: WebhookProvider, settings: &Value) -> AppResult<String> {
    let settings = match settings {
        Value::Null => Value::Object(Default::default()),
        Value::Object(_) => settings.clone(),
        _ => {
            return Err(AppError::bad_input(
                "settings",
                "`settings` must be a JSON object",
            ));
        }
    };
    if let Some(system) = settings.get("system")
        && !system
            .as_str()
            .is_some_and(|s| !s.trim().is_empty() && s.len() <= 64)
    {
        return Err(AppError::bad_input(
            "settings",
            "`settings.system` must be a string of 1 to 64 characters",
        ));
    }
    match provider {
        WebhookProvider::Hubspot => super::hubspot::check_settings(&settings)?,
        WebhookProvider::Salesforce => super::salesforce::check_settings(&settings)?,
        WebhookProvider::Pipedrive => super::pipedrive::check_settings(&settings)?,
        WebhookProvider::Generic => {}
    }
    let text = settings.to_string();
    if text.len() > 64 * 1024 {
        return Err(AppError::bad_input(
            "settings",
            "`settings` must be at most 64 KiB",
        ));
    }
    Ok(text)
}

fn no_key() -> AppError {
    AppError::invalid(
        "webhook secrets need a server key: set `webhook_key` (or `jwt_secret`) in the configuration",
    )
}

/// Creates an integration; returns it with the secret Lockstep made for it
/// (shown this once), or `None` for HubSpot, which signs with the client
/// secret the caller gave (kept sealed, never shown).
pub async fn create(
    db: &DatabaseConnection,
    key: Option<&WebhookKey>,
    input: NewIntegration,
) -> AppResult<(integration::Model, Option<String>)> {
    let key = key.ok_or_else(no_key)?;
    let name = check_name(&input.name)?;
    let settings = check_settings(input.provider, &input.settings)?;
    let id = Uuid::now_v7();
    let (salt, sealed, secret) =
        match new_secret(key, input.provider, id, input.client_secret.as_deref())? {
            NewSecret::Derived { salt, secret } => (Some(salt), None, Some(secret)),
            NewSecret::Given { sealed } => (None, Some(sealed), None),
        };
    let (name, settings, salt, sealed) = (&name, &settings, &salt, &sealed);
    let created = uow::run(db, |mut w| async move {
        let at = now();
        let created = w
            .insert(integration::ActiveModel {
                id: Set(id),
                provider: Set(input.provider),
                name: Set(name.clone()),
                settings: Set(settings.clone()),
                secret_salt: Set(salt.clone()),
                previous_salt: Set(None),
                previous_expires_at: Set(None),
                secret_ciphertext: Set(sealed.clone()),
                previous_ciphertext: Set(None),
                declared: Set(false),
                disabled_at: Set(None),
                created_at: Set(at),
                updated_at: Set(at),
            })
            .await?;
        w.commit(created).await
    })
    .await?;
    Ok((created, secret))
}

pub async fn get(db: &impl ConnectionTrait, id: Uuid) -> AppResult<integration::Model> {
    integration::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("integration"))
}

fn not_declared(i: &integration::Model) -> AppResult<()> {
    if i.declared {
        return Err(AppError::conflict(
            None,
            "this integration is declared in lockstep.toml: change it there",
        ));
    }
    Ok(())
}

/// A new secret (for HubSpot, the new client secret the caller gives); the
/// old one keeps working for `grace`. Returns the secret Lockstep made, or
/// `None` for HubSpot.
pub async fn rotate(
    db: &DatabaseConnection,
    key: Option<&WebhookKey>,
    id: Uuid,
    grace: Duration,
    client_secret: Option<String>,
) -> AppResult<(integration::Model, Option<String>)> {
    let key = key.ok_or_else(no_key)?;
    let current = get(db, id).await?;
    not_declared(&current)?;
    let (salt, sealed, secret) =
        match new_secret(key, current.provider, id, client_secret.as_deref())? {
            NewSecret::Derived { salt, secret } => (Some(salt), None, Some(secret)),
            NewSecret::Given { sealed } => (None, Some(sealed), None),
        };
    let (salt, sealed) = (&salt, &sealed);
    let updated = uow::run(db, |mut w| async move {
        let current = get(w.db(), id).await?;
        not_declared(&current)?;
        let at = now();
        let previous = current.secret_salt.clone();
        let previous_sealed = current.secret_ciphertext.clone();
        let mut am = current.into_active_model();
        am.previous_salt = Set(previous);
        am.previous_ciphertext = Set(previous_sealed);
        am.previous_expires_at = Set(Some(at + grace));
        am.secret_salt = Set(salt.clone());
        am.secret_ciphertext = Set(sealed.clone());
        am.updated_at = Set(at);
        let updated = w.update(am).await?;
        w.commit(updated).await
    })
    .await?;
    Ok((updated, secret))
}

/// Disables an integration: its endpoint answers 410 from now on.
pub async fn disable(db: &DatabaseConnection, id: Uuid) -> AppResult<integration::Model> {
    uow::run(db, |mut w| async move {
        let current = get(w.db(), id).await?;
        not_declared(&current)?;
        if current.disabled_at.is_some() {
            return w.commit(current).await;
        }
        let at = now();
        let mut am = current.into_active_model();
        am.disabled_at = Set(Some(at));
        am.updated_at = Set(at);
        let updated = w.update(am).await?;
        w.commit(updated).await
    })
    .await
}

/// Integrations, by name.
pub async fn list(
    db: &impl ConnectionTrait,
    page: &PageRequest,
) -> AppResult<Page<integration::Model>> {
    let key: KeyFn<integration::Model> = |m| (SortKey::Text(m.name.clone()), m.id);
    let ordering = Ordering {
        name: "name",
        column: integration::Column::Name,
        id: integration::Column::Id,
        descending: false,
        key,
    };
    paginate(db, integration::Entity::find(), &ordering, page).await
}

pub async fn count(db: &impl ConnectionTrait) -> AppResult<u64> {
    Ok(integration::Entity::find().count(db).await?)
}

/// Keeps the integrations declared in `lockstep.toml` in the database
/// (created or updated by id at every start; their secret stays in the file).
pub async fn sync_declared(
    db: &DatabaseConnection,
    declared: &[DeclaredIntegration],
) -> AppResult<()> {
    for d in declared {
        let provider = parse_provider(&d.provider)?;
        let name = check_name(&d.name)?;
        let settings = check_settings(provider, &d.settings)?;
        if d.secret.0.trim().len() < 16 {
            return Err(AppError::bad_input(
                "integrations.secret",
                format!("integration `{name}`: `secret` must have at least 16 characters"),
            ));
        }
        let (name, settings) = (&name, &settings);
        uow::run(db, |mut w| async move {
            let at = now();
            let disabled = d.disabled.then_some(at);
            match integration::Entity::find_by_id(d.id).one(w.db()).await? {
                Some(current) => {
                    let keep_disabled = current.disabled_at;
                    let mut am = current.into_active_model();
                    am.provider = Set(provider);
                    am.name = Set(name.clone());
                    am.settings = Set(settings.clone());
                    am.declared = Set(true);
                    am.disabled_at = Set(if d.disabled {
                        keep_disabled.or(disabled)
                    } else {
                        None
                    });
                    am.updated_at = Set(at);
                    w.update(am).await?;
                }
                None => {
                    w.insert(integration::ActiveModel {
                        id: Set(d.id),
                        provider: Set(provider),
                        name: Set(name.clone()),
                        settings: Set(settings.clone()),
                        secret_salt: Set(None),
                        previous_salt: Set(None),
                        previous_expires_at: Set(None),
                        secret_ciphertext: Set(None),
                        previous_ciphertext: Set(None),
                        declared: Set(true),
                        disabled_at: Set(disabled),
                        created_at: Set(at),
                        updated_at: Set(at),
                    })
                    .await?;
                }
            }
            w.commit(()).await
        })
        .await?;
    }
    Ok(())
}

/// A provider named in configuration (`HUBSPOT`, `hubspot`, …).
pub fn parse_provider(s: &str) -> AppResult<WebhookProvider> {
    WebhookProvider::from_slug(&s.trim().to_lowercase()).ok_or_else(|| {
        AppError::bad_input(
            "provider",
            "`provider` must be one of HUBSPOT, SALESFORCE, PIPEDRIVE, GENERIC",
        )
    })
}

/// The secrets a request of `i` may be signed with, at `at`: the current
/// one, then a rotated-out one still in its grace period.
pub fn accepted_secrets(
    i: &integration::Model,
    key: Option<&WebhookKey>,
    config: &Config,
    at: DateTime<Utc>,
) -> Vec<String> {
    if i.declared {
        return config
            .integrations
            .iter()
            .filter(|d| d.id == i.id)
            .map(|d| d.secret.0.clone())
            .collect();
    }
    let Some(key) = key else {
        return Vec::new();
    };
    let open = |sealed: &str| {
        let opened = key.open(i.id, sealed);
        if opened.is_none() {
            tracing::warn!(integration = %i.id, "a stored client secret does not open with this server's webhook key (was `webhook_key` changed?)");
        }
        opened
    };
    let mut out = Vec::new();
    if let Some(sealed) = &i.secret_ciphertext {
        out.extend(open(sealed));
    } else if let Some(salt) = &i.secret_salt {
        out.push(key.secret(salt));
    }
    if let Some(until) = i.previous_expires_at
        && at < until
    {
        if let Some(sealed) = &i.previous_ciphertext {
            out.extend(open(sealed));
        } else if let Some(salt) = &i.previous_salt {
            out.push(key.secret(salt));
        }
    }
    out
}

/// Whether `given` is one of `secrets` (constant time for each).
pub fn is_accepted(secrets: &[String], given: &str) -> bool {
    secrets
        .iter()
        .fold(false, |ok, s| same_secret(s, given) | ok)
}

/// The integration a URL names: by id, or the only one of its provider.
pub async fn find_for_url(
    db: &impl ConnectionTrait,
    provider: WebhookProvider,
    id: Option<&str>,
) -> AppResult<integration::Model> {
    let found = match id {
        Some(raw) => {
            let Ok(id) = Uuid::parse_str(raw) else {
                return Err(AppError::not_found("integration"));
            };
            integration::Entity::find_by_id(id).one(db).await?
        }
        None => {
            let mut all = integration::Entity::find()
                .filter(integration::Column::Provider.eq(provider))
                .limit(2)
                .all(db)
                .await?;
            if all.len() == 1 { all.pop() } else { None }
        }
    };
    found
        .filter(|i| i.provider == provider)
        .ok_or_else(|| AppError::not_found("integration"))
}

/// What storing a request's events did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stored {
    pub accepted: usize,
    pub duplicates: usize,
}

/// Stores events in the inbox with one `webhooks.apply` job each, in one
/// transaction: all of them, or (on an error) none. An event id the
/// integration already sent is a duplicate and changes nothing.
///
/// The inbox is bookkeeping no record, rollup or metric reads (like the job
/// queue), so it is written in a plain write transaction; the records are
/// written later, by the job, through the unit of work.
pub async fn store(
    db: &DatabaseConnection,
    integration: &integration::Model,
    events: &[Incoming],
) -> AppResult<Stored> {
    #[allow(clippy::disallowed_methods)] // the inbox's bookkeeping (see above)
    let txn = crate::db::begin_write(db).await?;
    let received_at = now();
    let mut stored = Stored::default();
    for e in events {
        let id = Uuid::now_v7();
        let row = webhook_event::ActiveModel {
            id: Set(id),
            integration_id: Set(integration.id),
            provider: Set(integration.provider),
            event_id: Set(e.event_id.clone()),
            event_type: Set(e.event_type.clone()),
            record_key: Set(e.record_key.clone()),
            occurred_at: Set(e.occurred_at.trunc_subsecs_us()),
            received_at: Set(received_at),
            body: Set(e.body.clone()),
            status: Set(WebhookStatus::Received),
            attempts: Set(0),
            last_error: Set(None),
            outcome: Set(None),
            applied_at: Set(None),
        };
        let inserted = webhook_event::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([
                    webhook_event::Column::IntegrationId,
                    webhook_event::Column::EventId,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
        if inserted == 0 {
            stored.duplicates += 1;
            continue;
        }
        enqueue_apply(&txn, id).await?;
        stored.accepted += 1;
    }
    txn.commit().await?;
    Ok(stored)
}

async fn enqueue_apply(db: &impl ConnectionTrait, event: Uuid) -> AppResult<()> {
    // The event's own attempts decide when it is DEAD; the job's bound
    // only guards against a runner that keeps dying on it.
    crate::jobs::enqueue_job(
        db,
        crate::jobs::NewJob::new(APPLY, serde_json::json!({ "event": event.to_string() }))
            .max_attempts(super::MAX_ATTEMPTS * 4),
    )
    .await?;
    Ok(())
}

trait TruncUs {
    fn trunc_subsecs_us(self) -> Self;
}

impl TruncUs for DateTime<Utc> {
    fn trunc_subsecs_us(self) -> Self {
        chrono::SubsecRound::trunc_subsecs(self, 6)
    }
}

/// Which inbox events an operator lists.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub integration_ids: Vec<Uuid>,
    pub statuses: Vec<WebhookStatus>,
    pub received_at: TimeRange,
}

fn condition(f: &EventFilter) -> Condition {
    let mut c = Condition::all();
    if !f.integration_ids.is_empty() {
        c = c.add(webhook_event::Column::IntegrationId.is_in(f.integration_ids.clone()));
    }
    if !f.statuses.is_empty() {
        c = c.add(webhook_event::Column::Status.is_in(f.statuses.clone()));
    }
    c.add(f.received_at.condition(webhook_event::Column::ReceivedAt))
}

/// Inbox events by arrival (newest first when `descending`).
pub async fn events(
    db: &impl ConnectionTrait,
    filter: &EventFilter,
    descending: bool,
    page: &PageRequest,
) -> AppResult<Page<webhook_event::Model>> {
    let key: KeyFn<webhook_event::Model> = |m| (SortKey::Time(m.received_at), m.id);
    let ordering = Ordering {
        name: "receivedAt",
        column: webhook_event::Column::ReceivedAt,
        id: webhook_event::Column::Id,
        descending,
        key,
    };
    paginate(
        db,
        webhook_event::Entity::find().filter(condition(filter)),
        &ordering,
        page,
    )
    .await
}

pub async fn count_events(db: &impl ConnectionTrait, filter: &EventFilter) -> AppResult<u64> {
    Ok(webhook_event::Entity::find()
        .filter(condition(filter))
        .count(db)
        .await?)
}

/// Puts a FAILED or DEAD event back in the queue (attempts from zero).
pub async fn replay(db: &DatabaseConnection, id: Uuid) -> AppResult<webhook_event::Model> {
    #[allow(clippy::disallowed_methods)] // the inbox's bookkeeping (see `store`)
    let txn = crate::db::begin_write(db).await?;
    let Some(ev) = webhook_event::Entity::find_by_id(id).one(&txn).await? else {
        return Err(AppError::not_found("webhook event"));
    };
    if !matches!(ev.status, WebhookStatus::Failed | WebhookStatus::Dead) {
        return Err(AppError::conflict(
            Some("id"),
            format!(
                "only FAILED and DEAD events are replayed; this one is {}",
                ev.status.as_str()
            ),
        ));
    }
    webhook_event::Entity::update_many()
        .col_expr(
            webhook_event::Column::Status,
            Expr::value(WebhookStatus::Received.as_str()),
        )
        .col_expr(webhook_event::Column::Attempts, Expr::value(0))
        .filter(webhook_event::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    enqueue_apply(&txn, id).await?;
    let ev = webhook_event::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("webhook event"))?;
    txn.commit().await?;
    Ok(ev)
}

/// How one integration's inbox stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    pub integration_id: Uuid,
    pub last_received_at: Option<DateTime<Utc>>,
    /// RECEIVED and FAILED events: not applied yet.
    pub backlog: i64,
    pub failed: i64,
    pub dead: i64,
    pub applied: i64,
}

/// Per integration (all of them, or `ids`), counted by the database in one statement.
pub async fn health(db: &impl ConnectionTrait, ids: &[Uuid]) -> AppResult<Vec<Health>> {
    let mut q = webhook_event::Entity::find()
        .select_only()
        .column(webhook_event::Column::IntegrationId)
        .column(webhook_event::Column::Status)
        .column_as(Expr::cust("COUNT(*)"), "n")
        .column_as(
            Expr::expr(Func::max(Expr::col(webhook_event::Column::ReceivedAt))),
            "last",
        )
        .group_by(webhook_event::Column::IntegrationId)
        .group_by(webhook_event::Column::Status);
    if !ids.is_empty() {
        q = q.filter(webhook_event::Column::IntegrationId.is_in(ids.to_vec()));
    }
    let rows: Vec<(Uuid, WebhookStatus, i64, Option<DateTime<Utc>>)> =
        q.into_tuple().all(db).await?;
    let mut integrations = integration::Entity::find().order_by_asc(integration::Column::Name);
    if !ids.is_empty() {
        integrations = integrations.filter(integration::Column::Id.is_in(ids.to_vec()));
    }
    let all: Vec<Uuid> = integrations
        .select_only()
        .column(integration::Column::Id)
        .into_tuple()
        .all(db)
        .await?;
    Ok(all
        .into_iter()
        .map(|id| {
            let mut h = Health {
                integration_id: id,
                ..Health::default()
            };
            for (_, status, n, last) in rows.iter().filter(|r| r.0 == id) {
                match status {
                    WebhookStatus::Received => h.backlog += n,
                    WebhookStatus::Failed => {
                        h.backlog += n;
                        h.failed += n;
                    }
                    WebhookStatus::Dead => h.dead += n,
                    WebhookStatus::Applied => h.applied += n,
                }
                h.last_received_at = h.last_received_at.max(*last);
            }
            h
        })
        .collect())
}
