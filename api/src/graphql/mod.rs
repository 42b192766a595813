//! The GraphQL schema: each domain contributes a query and a mutation root,
//! merged here. Resolvers check the caller's role, then call a service;
//! what they share (the caller, the database, ids, loaders) is in `context`,
//! their shared inputs in `inputs`, neither of which knows the records.

pub mod connection;
pub mod context;
pub mod documents;
pub mod inputs;
pub mod loaders;
pub mod me;
pub mod persisted;

use crate::config::Config;
use crate::records;
use async_graphql::{MergedObject, MergedSubscription, Schema};
use sea_orm::DatabaseConnection;

#[derive(MergedObject, Default)]
pub struct Query(
    me::MeQuery,
    records::teams::graphql::TeamsQuery,
    records::users::graphql::UsersQuery,
    records::accounts::graphql::AccountsQuery,
    records::campaigns::graphql::CampaignsQuery,
    records::leads::graphql::LeadsQuery,
    records::opportunities::graphql::OpportunitiesQuery,
    records::handoffs::graphql::HandoffsQuery,
    crate::metrics::graphql::MetricsQuery,
    crate::goals::graphql::GoalsQuery,
    crate::compensation::graphql::CompensationQuery,
    crate::jobs::graphql::JobsQuery,
    crate::webhooks::graphql::WebhooksQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    records::teams::graphql::TeamsMutation,
    records::users::graphql::UsersMutation,
    records::accounts::graphql::AccountsMutation,
    records::campaigns::graphql::CampaignsMutation,
    records::leads::graphql::LeadsMutation,
    records::opportunities::graphql::OpportunitiesMutation,
    records::handoffs::graphql::HandoffsMutation,
    records::history::graphql::HistoryMutation,
    crate::webhooks::graphql::WebhooksMutation,
    crate::goals::graphql::GoalsMutation,
    crate::compensation::graphql::CompensationMutation,
);

#[derive(MergedSubscription, Default)]
pub struct Subscription(records::handoffs::graphql::HandoffsSubscription);

pub type LockstepSchema = Schema<Query, Mutation, Subscription>;

/// Builds the schema with the configured limits. Per-request data (the
/// caller, the loaders) is added by the HTTP handler.
pub fn build_schema(
    config: &Config,
    db: Option<DatabaseConnection>,
    metrics_db: Option<DatabaseConnection>,
    webhook_key: Option<std::sync::Arc<crate::webhooks::secrets::WebhookKey>>,
) -> LockstepSchema {
    let mut builder = Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .limit_depth(config.max_depth)
    .limit_complexity(config.max_complexity)
    .limit_directives(50);
    // Spans for top-level fields, only when traces are exported: an
    // extension is called for every field, so none is installed otherwise.
    if config.otel_endpoint.is_some() || crate::telemetry::otel_enabled() {
        builder = builder.extension(crate::telemetry::spans::ResolverSpans);
    }
    if !config.introspection {
        builder = builder.disable_introspection();
    }
    if let Some(db) = db {
        builder = builder.data(db);
    }
    if let Some(db) = metrics_db {
        builder = builder.data(context::MetricsDb(db));
    }
    builder = builder.data(context::Settings {
        currency: config.currency.to_uppercase(),
    });
    builder = builder.data(crate::webhooks::graphql::WebhookSettings {
        key: webhook_key,
        public_url: config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.bind)),
        grace: chrono::Duration::seconds(config.webhook_secret_grace_secs.min(365 * 86_400) as i64),
    });
    builder.finish()
}

/// The SDL, as printed by `lockstep schema` and kept in `schema.graphql`.
pub fn sdl() -> String {
    build_schema(&Config::default(), None, None, None).sdl()
}
