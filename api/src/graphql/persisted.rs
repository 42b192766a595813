//! Automatic persisted queries (the protocol of Apollo's
//! `persisted-queries` link, which BI tools and GraphQL clients speak): a
//! client sends `extensions.persistedQuery = {version: 1, sha256Hash}`
//! without the query text; a server that knows the hash runs the query it
//! stands for, one that does not answers `PersistedQueryNotFound`, and the
//! client sends the text once with its hash, which the server checks and
//! keeps. Dashboards repeat the same documents, so after the first request
//! each sends 64 hex digits instead of its text (and fits in a GET URL,
//! which caches in front of the server can keep).
//!
//! Kept per process, like the parsed-document cache it feeds (the text of a
//! hash is looked up, then its document by text): a replica that has not
//! seen a hash answers "not found" and the client registers it there — the
//! protocol's own recovery, so no replica needs another's state. Bounded:
//! at most `MAX_ENTRIES` texts of at most `documents::MAX_DOCUMENT_BYTES`,
//! least recently used first out.

use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};
use std::sync::Arc;

use super::documents::MAX_DOCUMENT_BYTES;

/// Most texts kept.
pub const MAX_ENTRIES: u64 = 1_000;

/// The message clients look for to send the text (Apollo's link checks it).
pub const NOT_FOUND: &str = "PersistedQueryNotFound";

/// Query texts by the lowercase hex SHA-256 of their bytes.
#[derive(Clone)]
pub struct PersistedQueries {
    inner: moka::sync::Cache<String, Arc<str>>,
}

impl Default for PersistedQueries {
    fn default() -> Self {
        Self::new()
    }
}

/// What a request's `persistedQuery` extension asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// No `persistedQuery`: the text is the query.
    Plain,
    /// The text of the hash, known here.
    Found(Arc<str>),
    /// A hash without a text, not known here: the client sends the text.
    NotFound,
    /// Text and hash, and they match: run it (it is kept once it parses).
    Register(String),
}

impl PersistedQueries {
    pub fn new() -> PersistedQueries {
        PersistedQueries {
            inner: moka::sync::Cache::builder()
                .max_capacity(MAX_ENTRIES)
                .build(),
        }
    }

    /// Reads (and takes out) `persistedQuery` from a request's extensions.
    /// `Err` is the client's mistake, as a message.
    pub fn lookup(
        &self,
        query: &str,
        extensions: &mut Option<Map<String, Json>>,
    ) -> Result<Lookup, String> {
        let Some(value) = extensions.as_mut().and_then(|e| e.remove("persistedQuery")) else {
            return Ok(Lookup::Plain);
        };
        let Json::Object(pq) = value else {
            return Err("`extensions.persistedQuery` must be an object".into());
        };
        match pq.get("version") {
            Some(Json::Number(n)) if n.as_u64() == Some(1) => {}
            _ => {
                return Err(
                    "`extensions.persistedQuery.version` must be 1 (the only version supported)"
                        .into(),
                );
            }
        }
        let hash = match pq.get("sha256Hash") {
            Some(Json::String(h)) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                h.to_ascii_lowercase()
            }
            _ => {
                return Err(
                    "`extensions.persistedQuery.sha256Hash` must be 64 hexadecimal digits".into(),
                );
            }
        };
        if query.is_empty() {
            return Ok(match self.inner.get(&hash) {
                Some(text) => Lookup::Found(text),
                None => Lookup::NotFound,
            });
        }
        if hex::encode(Sha256::digest(query.as_bytes())) != hash {
            return Err(
                "`extensions.persistedQuery.sha256Hash` is not the SHA-256 of `query`".into(),
            );
        }
        Ok(Lookup::Register(hash))
    }

    /// Keeps `query` under `hash` (checked by `lookup`), once it parsed.
    pub fn keep(&self, hash: String, query: &str) {
        if query.len() <= MAX_DOCUMENT_BYTES {
            self.inner.insert(hash, Arc::from(query));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ext(v: Json) -> Option<Map<String, Json>> {
        match v {
            Json::Object(m) => Some(m),
            _ => None,
        }
    }

    #[test]
    fn a_hash_is_registered_with_its_text_and_found_after() {
        let pq = PersistedQueries::new();
        let q = "{ viewer { id } }";
        let hash = hex::encode(Sha256::digest(q.as_bytes()));
        let asks = |h: &str| ext(json!({"persistedQuery": {"version": 1, "sha256Hash": h}}));

        assert_eq!(pq.lookup("", &mut asks(&hash)), Ok(Lookup::NotFound));
        let mut e = asks(&hash.to_uppercase());
        assert_eq!(pq.lookup(q, &mut e), Ok(Lookup::Register(hash.clone())));
        assert_eq!(e, Some(Map::new()), "the extension is taken out");
        pq.keep(hash.clone(), q);
        assert_eq!(
            pq.lookup("", &mut asks(&hash)),
            Ok(Lookup::Found(Arc::from(q)))
        );

        // A text that is not the hash's is refused (nothing is kept under it).
        let other = "{ viewer { role } }";
        assert!(pq.lookup(other, &mut asks(&hash)).is_err());
        assert!(pq.lookup("", &mut asks(&"0".repeat(64))) == Ok(Lookup::NotFound));
        // Malformed extensions are the client's error.
        for bad in [
            json!({"persistedQuery": {"version": 2, "sha256Hash": hash}}),
            json!({"persistedQuery": {"version": 1, "sha256Hash": "abc"}}),
            json!({"persistedQuery": {"version": 1}}),
            json!({"persistedQuery": "x"}),
        ] {
            assert!(pq.lookup("", &mut ext(bad.clone())).is_err(), "{bad}");
        }
        assert_eq!(pq.lookup(q, &mut None), Ok(Lookup::Plain));
        // A text too long to keep is run but not kept.
        let long = format!("{{ viewer {{ id }} }}#{}", "x".repeat(MAX_DOCUMENT_BYTES));
        let h = hex::encode(Sha256::digest(long.as_bytes()));
        pq.keep(h.clone(), &long);
        assert_eq!(pq.lookup("", &mut asks(&h)), Ok(Lookup::NotFound));
    }
}
