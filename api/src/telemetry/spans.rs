//! A span per top-level GraphQL field (`resolve accounts`, `resolve
//! metrics`…): the resolvers that read the database, so a trace shows which
//! field its SQL statements served. Only while OpenTelemetry is on: nested
//! fields are not given spans (a page of 500 nodes would make thousands).

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextResolve, ResolveInfo,
};
use async_graphql::{ServerResult, Value};
use std::sync::Arc;
use tracing::Instrument;

pub struct ResolverSpans;

impl ExtensionFactory for ResolverSpans {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ResolverSpansExtension)
    }
}

struct ResolverSpansExtension;

#[async_graphql::async_trait::async_trait]
impl Extension for ResolverSpansExtension {
    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        if info.path_node.parent.is_some() || !super::otel_enabled() {
            return next.run(ctx, info).await;
        }
        let field = info.path_node.field_name().to_owned();
        let span = tracing::info_span!(
            "resolve",
            otel.name = %format!("resolve {field}"),
            graphql.field = %field,
        );
        next.run(ctx, info).instrument(span).await
    }
}
