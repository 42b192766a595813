//! GraphQL inputs and small types every record's resolvers share, and their
//! conversion to what the services take.

use crate::error::AppResult;
use async_graphql::{Enum, MaybeUndefined};

/// Sort direction of a list.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Default, Debug)]
pub enum OrderDirection {
    #[default]
    Asc,
    Desc,
}

/// `MaybeUndefined<ID>` → service patch (undefined: keep; null: clear).
pub fn patch_id(
    v: MaybeUndefined<async_graphql::ID>,
    field: &str,
) -> AppResult<crate::records::common::Patch<uuid::Uuid>> {
    Ok(match v {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(id) => Some(Some(super::context::parse_id(&id, field)?)),
    })
}

/// `MaybeUndefined<T>` → service patch.
pub fn patch<T>(v: MaybeUndefined<T>) -> crate::records::common::Patch<T> {
    match v {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(x) => Some(Some(x)),
    }
}

/// An external system's id of a record, e.g. `{system: "hubspot", id: "123"}`.
#[derive(async_graphql::InputObject, Debug, Clone)]
pub struct ExternalIdInput {
    /// The system, e.g. `hubspot`, `salesforce`, `pipedrive` (lower-cased).
    pub system: String,
    pub id: String,
}

/// An external system's id of a record.
pub struct ExternalIdNode(pub crate::records::external_ids::ExternalRef);

#[async_graphql::Object(name = "ExternalId")]
impl ExternalIdNode {
    async fn system(&self) -> &str {
        &self.0.system
    }
    async fn id(&self) -> &str {
        &self.0.id
    }
}

/// A half-open time range `[from, to)` in UTC; either end may be left open.
#[derive(async_graphql::InputObject, Debug, Clone, Copy, Default)]
pub struct TimeRangeInput {
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    pub to: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<TimeRangeInput> for crate::records::common::TimeRange {
    fn from(r: TimeRangeInput) -> Self {
        crate::records::common::TimeRange {
            from: r.from,
            to: r.to,
        }
    }
}

/// Validates the size of a nested child list.
pub fn child_limit(first: i32) -> AppResult<u64> {
    crate::pagination::PageRequest {
        first: Some(first),
        ..Default::default()
    }
    .size()
}
