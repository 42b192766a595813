//! Integrations (ADMIN) and the inbox for operators (ADMIN).

use super::secrets::WebhookKey;
use super::service::{self, EventFilter, NewIntegration};
use crate::auth::ADMINS;
use crate::graphql::connection::{Conn, connection};
use crate::graphql::context::{db, parse_id, parse_ids, require};
use crate::graphql::inputs::{OrderDirection, TimeRangeInput};
use crate::pagination::PageRequest;
use async_graphql::{Context, ID, InputObject, Json, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use entity::enums::{WebhookProvider, WebhookStatus};
use entity::{integration, webhook_event};
use std::sync::Arc;

/// What the webhook fields need from the configuration.
#[derive(Clone)]
pub struct WebhookSettings {
    pub key: Option<Arc<WebhookKey>>,
    /// Where CRMs reach this server (`public_url`).
    pub public_url: String,
    /// How long a rotated-out secret keeps working.
    pub grace: chrono::Duration,
}

fn settings<'a>(ctx: &Context<'a>) -> Result<&'a WebhookSettings> {
    Ok(ctx
        .data_opt::<WebhookSettings>()
        .ok_or_else(|| crate::error::AppError::Internal("no webhook settings".into()))?)
}

/// A CRM connection that pushes changes to `webhookUrl`.
pub struct Integration(pub integration::Model);

/// A CRM connection that pushes changes to `webhookUrl` (ADMIN).
#[Object]
impl Integration {
    /// The integration's id (the last part of its `webhookUrl`).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Its unique name; changes it applies are recorded as made by
    /// `webhook:<name>`.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The CRM that pushes to it.
    async fn provider(&self) -> WebhookProvider {
        self.0.provider
    }
    /// Provider settings: `system` (the external-id system its records are
    /// keyed in), stage mappings, organization id… (see docs/webhooks.md).
    async fn settings(&self) -> Json<serde_json::Value> {
        Json(serde_json::from_str(&self.0.settings).unwrap_or(serde_json::Value::Null))
    }
    /// Where the CRM sends its webhooks.
    async fn webhook_url(&self, ctx: &Context<'_>) -> Result<String> {
        Ok(url(settings(ctx)?, &self.0))
    }
    /// Declared in `lockstep.toml` (managed there, not through GraphQL).
    async fn declared(&self) -> bool {
        self.0.declared
    }
    /// Disabled integrations answer 410 to every request.
    async fn disabled(&self) -> bool {
        self.0.disabled_at.is_some()
    }
    /// When it was disabled.
    async fn disabled_at(&self) -> Option<DateTime<Utc>> {
        self.0.disabled_at
    }
    /// Until when the secret before the last rotation is still accepted.
    async fn previous_secret_expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.previous_expires_at
    }
    /// When it was created (or first declared).
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

fn url(s: &WebhookSettings, i: &integration::Model) -> String {
    format!(
        "{}/webhooks/{}/{}",
        s.public_url.trim_end_matches('/'),
        i.provider.slug(),
        i.id
    )
}

/// An integration just created or rotated, with the secret Lockstep made
/// for it: shown this once, never stored.
#[derive(SimpleObject)]
pub struct IntegrationSecret {
    /// The integration's id.
    pub id: ID,
    /// The secret the CRM signs with, made by Lockstep: the generic signing
    /// key, Pipedrive's basic-auth password, Salesforce's URL token. Null for
    /// HUBSPOT: it signs with the app's client secret you gave, which
    /// Lockstep keeps encrypted and never shows.
    pub secret: Option<String>,
    /// Where the CRM sends its webhooks.
    pub webhook_url: String,
    /// The integration itself.
    pub integration: Integration,
}

fn with_secret(
    s: &WebhookSettings,
    i: integration::Model,
    secret: Option<String>,
) -> IntegrationSecret {
    IntegrationSecret {
        id: ID(i.id.to_string()),
        secret,
        webhook_url: url(s, &i),
        integration: Integration(i),
    }
}

/// An event a CRM pushed, as kept in the inbox.
pub struct WebhookEvent(pub webhook_event::Model);

/// An event a CRM pushed, as kept in the inbox (ADMIN).
#[Object]
impl WebhookEvent {
    /// The inbox entry's id (give it to `replayWebhookEvent`).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// The integration that received it.
    async fn integration_id(&self) -> ID {
        ID(self.0.integration_id.to_string())
    }
    /// The CRM that sent it.
    async fn provider(&self) -> WebhookProvider {
        self.0.provider
    }
    /// The provider's id of the event (unique per integration).
    async fn event_id(&self) -> &str {
        &self.0.event_id
    }
    /// The provider's event type.
    async fn event_type(&self) -> &str {
        &self.0.event_type
    }
    /// The CRM record it is about; a record's events apply in `occurredAt` order.
    async fn record_key(&self) -> &str {
        &self.0.record_key
    }
    /// When it happened in the CRM.
    async fn occurred_at(&self) -> DateTime<Utc> {
        self.0.occurred_at
    }
    /// When Lockstep stored it.
    async fn received_at(&self) -> DateTime<Utc> {
        self.0.received_at
    }
    /// The event as received (its own element of a batch).
    async fn body(&self) -> &str {
        &self.0.body
    }
    /// Where it is: RECEIVED, APPLIED, FAILED or DEAD.
    async fn status(&self) -> WebhookStatus {
        self.0.status
    }
    /// Attempts to apply it so far.
    async fn attempts(&self) -> i32 {
        self.0.attempts
    }
    /// The error of the latest failed attempt.
    async fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }
    /// What applying it did: `applied`, `unchanged`, `superseded` (older
    /// than a change already applied to the record), `ignored` (a change
    /// Lockstep keeps no field for) or `ignored: <why>` (not applied on
    /// purpose, e.g. a record deleted in Pipedrive; see docs/webhooks.md).
    async fn outcome(&self) -> Option<&str> {
        self.0.outcome.as_deref()
    }
    /// When it was marked APPLIED.
    async fn applied_at(&self) -> Option<DateTime<Utc>> {
        self.0.applied_at
    }
}

/// How one integration's inbox stands (counted by the database).
#[derive(SimpleObject)]
pub struct IntegrationHealth {
    /// The integration.
    pub integration_id: ID,
    /// When its latest event arrived.
    pub last_received_at: Option<DateTime<Utc>>,
    /// Events not applied yet (RECEIVED and FAILED).
    pub backlog: i64,
    /// FAILED events (waiting for a retry).
    pub failures: i64,
    /// DEAD events (every attempt failed; replay them with `replayWebhookEvent`).
    pub dead: i64,
    /// APPLIED events (including unchanged, superseded and ignored ones).
    pub applied: i64,
}

/// A webhook integration to create.
#[derive(InputObject)]
pub struct CreateIntegrationInput {
    /// Unique; 1 to 100 characters.
    pub name: String,
    /// The CRM that will push to it.
    pub provider: WebhookProvider,
    /// Provider settings (see docs/webhooks.md); default none.
    pub settings: Option<Json<serde_json::Value>>,
    /// HUBSPOT only, and required there: the HubSpot app's client secret,
    /// which HubSpot signs its requests with (16 to 256 characters). Kept
    /// encrypted under the server's webhook key; no query returns it.
    pub client_secret: Option<String>,
}

/// Which inbox events to list (every given condition holds).
#[derive(InputObject, Default)]
pub struct WebhookEventFilterInput {
    /// Any of these integrations.
    pub integration_id: Option<Vec<ID>>,
    /// Any of these statuses.
    pub status: Option<Vec<WebhookStatus>>,
    /// Arrived in `[from, to)`.
    pub received_at: Option<TimeRangeInput>,
}

#[derive(Default)]
pub struct WebhooksQuery;

#[Object]
impl WebhooksQuery {
    /// Webhook integrations (ADMIN), by name.
    #[graphql(complexity = "PageRequest::size_hint(first, last) * child_complexity + 1")]
    async fn integrations(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<Conn<Integration>> {
        require(ctx, ADMINS, "read integrations")?;
        let db = db(ctx)?.clone();
        let page = PageRequest {
            first,
            after,
            last,
            before,
        };
        let page = service::list(&db, &page).await?;
        Ok(connection(
            page,
            move || {
                let db = db.clone();
                Box::pin(async move { service::count(&db).await })
            },
            Integration,
        ))
    }

    /// Events in the webhook inbox (ADMIN), newest first unless `direction: ASC`.
    #[graphql(complexity = "PageRequest::size_hint(first, last) * child_complexity + 1")]
    #[allow(clippy::too_many_arguments)]
    async fn webhook_events(
        &self,
        ctx: &Context<'_>,
        filter: Option<WebhookEventFilterInput>,
        #[graphql(desc = "By arrival time; default DESC")] direction: Option<OrderDirection>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<Conn<WebhookEvent>> {
        require(ctx, ADMINS, "read webhook events")?;
        let f = filter.unwrap_or_default();
        let filter = EventFilter {
            integration_ids: parse_ids(&f.integration_id.unwrap_or_default(), "integrationId")?,
            statuses: f.status.unwrap_or_default(),
            received_at: f.received_at.map(Into::into).unwrap_or_default(),
        };
        let descending = direction.unwrap_or(OrderDirection::Desc) == OrderDirection::Desc;
        let db = db(ctx)?.clone();
        let page = PageRequest {
            first,
            after,
            last,
            before,
        };
        let page = service::events(&db, &filter, descending, &page).await?;
        Ok(connection(
            page,
            move || {
                let (db, filter) = (db.clone(), filter.clone());
                Box::pin(async move { service::count_events(&db, &filter).await })
            },
            WebhookEvent,
        ))
    }

    /// Per integration (all, or `integrationId`): last event, backlog,
    /// failures and dead events (ADMIN).
    async fn integration_health(
        &self,
        ctx: &Context<'_>,
        integration_id: Option<Vec<ID>>,
    ) -> Result<Vec<IntegrationHealth>> {
        require(ctx, ADMINS, "read integration health")?;
        let ids = parse_ids(&integration_id.unwrap_or_default(), "integrationId")?;
        if ids.len() > 100 {
            return Err(crate::error::AppError::bad_input(
                "integrationId",
                "at most 100 integrations at once",
            )
            .into());
        }
        let rows = service::health(db(ctx)?, &ids).await?;
        Ok(rows
            .into_iter()
            .map(|h| IntegrationHealth {
                integration_id: ID(h.integration_id.to_string()),
                last_received_at: h.last_received_at,
                backlog: h.backlog,
                failures: h.failed,
                dead: h.dead,
                applied: h.applied,
            })
            .collect())
    }
}

#[derive(Default)]
pub struct WebhooksMutation;

#[Object]
impl WebhooksMutation {
    /// Creates a webhook integration (ADMIN). The secret is in the answer
    /// only: Lockstep keeps no copy it could show again.
    async fn create_integration(
        &self,
        ctx: &Context<'_>,
        input: CreateIntegrationInput,
    ) -> Result<IntegrationSecret> {
        require(ctx, ADMINS, "create integrations")?;
        let s = settings(ctx)?;
        let (created, secret) = service::create(
            db(ctx)?,
            s.key.as_deref(),
            NewIntegration {
                name: input.name,
                provider: input.provider,
                settings: input
                    .settings
                    .map(|j| j.0)
                    .unwrap_or(serde_json::Value::Null),
                client_secret: input.client_secret,
            },
        )
        .await?;
        Ok(with_secret(s, created, secret))
    }

    /// A new secret (ADMIN); the previous one keeps working for the grace
    /// period (`webhook_secret_grace_secs`, default 24 hours). Lockstep makes
    /// the new secret, except for HUBSPOT, whose new app client secret is
    /// given as `clientSecret`.
    async fn rotate_integration_secret(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(
            desc = "HUBSPOT only, and required there: the app's new client secret (HubSpot lets an app rotate it)"
        )]
        client_secret: Option<String>,
    ) -> Result<IntegrationSecret> {
        require(ctx, ADMINS, "rotate integration secrets")?;
        let s = settings(ctx)?;
        let (updated, secret) = service::rotate(
            db(ctx)?,
            s.key.as_deref(),
            parse_id(&id, "id")?,
            s.grace,
            client_secret,
        )
        .await?;
        Ok(with_secret(s, updated, secret))
    }

    /// Disables an integration (ADMIN): its requests answer 410 and nothing is stored.
    async fn disable_integration(&self, ctx: &Context<'_>, id: ID) -> Result<Integration> {
        require(ctx, ADMINS, "disable integrations")?;
        Ok(Integration(
            service::disable(db(ctx)?, parse_id(&id, "id")?).await?,
        ))
    }

    /// Queues a FAILED or DEAD event to be applied again, attempts from zero (ADMIN).
    async fn replay_webhook_event(&self, ctx: &Context<'_>, id: ID) -> Result<WebhookEvent> {
        require(ctx, ADMINS, "replay webhook events")?;
        Ok(WebhookEvent(
            service::replay(db(ctx)?, parse_id(&id, "id")?).await?,
        ))
    }
}
