//! Parsed documents, kept by their text: dashboards, BI tools and clients
//! send the same few queries again and again, and parsing them (a pest
//! grammar) was one of the largest costs of a small read. The HTTP handler
//! looks a text up here first and hands a known document to the executor
//! (`Request::set_parsed_query`), which then only re-runs its cheap depth
//! and directive checks; a new text is parsed by the handler and kept once
//! the executor accepted it.
//!
//! Not a schema extension (it was one): with any extension installed,
//! async-graphql routes every field of every response through the extension
//! chain (a type lookup, a boxed future and, per list item, two type-name
//! strings), which cost more on a 100-node page than the parse it saved.
//!
//! - Keyed by the exact query text; variables, the operation name and the
//!   caller are not part of the document, so they apply as sent. Every
//!   request still runs validation (it reads the variables) and gets its
//!   own copy of the document (execution removes `@skip`ped selections).
//! - Only documents that parsed and were executed without a request error
//!   are kept, and only texts up to `MAX_DOCUMENT_BYTES`, at most
//!   `MAX_ENTRIES` of them (least recently used go first): a client sending
//!   ever new texts only replaces entries, it cannot grow the process.

use async_graphql::parser::types::ExecutableDocument;
use std::sync::Arc;

/// Most documents kept.
pub const MAX_ENTRIES: u64 = 1_000;
/// Longest query text whose document is kept, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024;

/// The cache of the HTTP handler.
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

    /// Keeps `doc` as the document of `query` (a text too long is not kept).
    pub fn insert(&self, query: &str, doc: Arc<ExecutableDocument>) {
        if query.len() <= MAX_DOCUMENT_BYTES {
            self.inner.insert(query.to_owned(), doc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_short_texts_and_not_long_ones() {
        let cache = DocumentCache::new();
        let q = "{ echo }";
        let doc = Arc::new(async_graphql::parser::parse_query(q).unwrap());
        assert!(cache.get(q).is_none());
        cache.insert(q, doc.clone());
        assert!(cache.get(q).is_some_and(|d| Arc::ptr_eq(&d, &doc)));
        assert!(cache.get("{ echo } ").is_none(), "keyed by the exact text");

        let long = format!("{{ echo }}\n#{}", "x".repeat(MAX_DOCUMENT_BYTES));
        cache.insert(
            &long,
            Arc::new(async_graphql::parser::parse_query(&long).unwrap()),
        );
        assert!(cache.get(&long).is_none());
    }
}
