//! Parsed documents, kept by their text: dashboards, BI tools and clients
//! send the same few queries again and again, and parsing them (a pest
//! grammar) was one of the largest costs of a small read. The cache is an
//! async-graphql extension whose `parse_query` hook answers a known text
//! with its document, without running the parser (nor the depth and
//! directive checks the document passed when it was first parsed); the
//! HTTP handler reads the same cache for its own checks before execution.
//!
//! - Keyed by the exact query text; variables, the operation name and the
//!   caller are not part of the document, so they apply as sent. Every
//!   request still runs validation (it reads the variables) and gets its
//!   own copy of the document (execution removes `@skip`ped selections).
//! - Only documents that parsed and passed the parse-time checks are kept,
//!   and only texts up to `MAX_DOCUMENT_BYTES`, at most `MAX_ENTRIES` of
//!   them (least recently used go first): a client sending ever new texts
//!   only replaces entries, it cannot grow the process.

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ServerResult, Variables};
use std::sync::Arc;

/// Most documents kept.
pub const MAX_ENTRIES: u64 = 1_000;
/// Longest query text whose document is kept, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024;

/// The cache, shared by the schema's extension and the HTTP handler.
#[derive(Clone)]
pub struct DocumentCache {
    inner: moka::sync::Cache<String, Arc<ExecutableDocument>>,
}

impl Default for DocumentCache {
    fn default() -> Self {
        Self::new()
    }
}

impl DocumentCache {
    pub fn new() -> DocumentCache {
        DocumentCache {
            inner: moka::sync::Cache::builder()
                .max_capacity(MAX_ENTRIES)
                .build(),
        }
    }

    /// The document of `query`, if it was parsed (and checked) before.
    pub fn get(&self, query: &str) -> Option<Arc<ExecutableDocument>> {
        if query.len() > MAX_DOCUMENT_BYTES {
            return None;
        }
        self.inner.get(query)
    }

    fn insert(&self, query: &str, doc: &ExecutableDocument) {
        if query.len() <= MAX_DOCUMENT_BYTES {
            self.inner.insert(query.to_owned(), Arc::new(doc.clone()));
        }
    }
}

impl ExtensionFactory for DocumentCache {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(self.clone())
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for DocumentCache {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        if let Some(doc) = self.get(query) {
            return Ok((*doc).clone());
        }
        let doc = next.run(ctx, query, variables).await?;
        self.insert(query, &doc);
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::{EmptyMutation, EmptySubscription, Object, Request, Schema};
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Query;

    #[Object]
    impl Query {
        async fn echo(&self, v: i32) -> i32 {
            v
        }
    }

    /// Counts the documents that reach the parser (it sits inside the cache).
    #[derive(Clone)]
    struct Parses(Arc<AtomicUsize>);

    impl ExtensionFactory for Parses {
        fn create(&self) -> Arc<dyn Extension> {
            Arc::new(self.clone())
        }
    }

    #[async_graphql::async_trait::async_trait]
    impl Extension for Parses {
        async fn parse_query(
            &self,
            ctx: &ExtensionContext<'_>,
            query: &str,
            variables: &Variables,
            next: NextParseQuery<'_>,
        ) -> ServerResult<ExecutableDocument> {
            self.0.fetch_add(1, Ordering::SeqCst);
            next.run(ctx, query, variables).await
        }
    }

    async fn run(
        schema: &Schema<Query, EmptyMutation, EmptySubscription>,
        query: &str,
        vars: serde_json::Value,
    ) -> serde_json::Value {
        let resp = schema
            .execute(Request::new(query).variables(Variables::from_json(vars)))
            .await;
        json!({
            "data": resp.data.into_json().unwrap_or_default(),
            "errors": resp.errors.len(),
        })
    }

    #[tokio::test]
    async fn a_repeated_query_is_parsed_once_and_its_variables_apply() {
        let cache = DocumentCache::new();
        let parses = Arc::new(AtomicUsize::new(0));
        let schema = Schema::build(Query, EmptyMutation, EmptySubscription)
            .extension(cache.clone())
            .extension(Parses(parses.clone()))
            .finish();
        let count = || parses.load(Ordering::SeqCst);

        let q = "query ($v: Int!) { echo(v: $v) }";
        for v in [1, 2, 3] {
            let got = run(&schema, q, json!({ "v": v })).await;
            assert_eq!(got, json!({ "data": { "echo": v }, "errors": 0 }));
        }
        assert_eq!(count(), 1, "parsed once, answered three times");
        assert!(cache.get(q).is_some());

        // `@skip` is applied per request to a copy: the cached document keeps
        // the skipped field for the next request.
        let q = "query ($s: Boolean!) { a: echo(v: 1) b: echo(v: 2) @skip(if: $s) }";
        let skipped = run(&schema, q, json!({ "s": true })).await;
        assert_eq!(skipped, json!({ "data": { "a": 1 }, "errors": 0 }));
        let kept = run(&schema, q, json!({ "s": false })).await;
        assert_eq!(kept, json!({ "data": { "a": 1, "b": 2 }, "errors": 0 }));
        assert_eq!(count(), 2);

        // Validation still runs on every request: a missing variable fails.
        let bad = run(&schema, "query ($v: Int!) { echo(v: $v) }", json!({})).await;
        assert_eq!(bad["errors"], 1);
        assert_eq!(count(), 2);

        // A text that does not parse is not kept; neither is a long one.
        for _ in 0..2 {
            let broken = run(&schema, "{ echo(v: ", json!({})).await;
            assert_eq!(broken["errors"], 1);
        }
        assert_eq!(count(), 4);
        let long = format!("{{ echo(v: 7) }}\n#{}", "x".repeat(MAX_DOCUMENT_BYTES));
        for _ in 0..2 {
            let got = run(&schema, &long, json!({})).await;
            assert_eq!(got, json!({ "data": { "echo": 7 }, "errors": 0 }));
        }
        assert_eq!(count(), 6);
    }
}
