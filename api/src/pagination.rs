//! Keyset (cursor) pagination for the services: stable under inserts,
//! bounded page sizes, ties broken by id. Knows SeaORM, not GraphQL.

use crate::error::{AppError, AppResult};
use base64::Engine;
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, Order, QueryFilter, QueryOrder,
    QuerySelect, Select, Value,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const DEFAULT_PAGE_SIZE: u64 = 50;
pub const MAX_PAGE_SIZE: u64 = 500;

/// The value of the sort column at a cursor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SortKey {
    Text(String),
    Int(i64),
    Time(DateTime<Utc>),
}

impl From<SortKey> for Value {
    fn from(key: SortKey) -> Value {
        match key {
            SortKey::Text(s) => s.into(),
            SortKey::Int(i) => i.into(),
            SortKey::Time(t) => t.into(),
        }
    }
}

/// Position of one record in one ordering. Opaque to clients. A page keeps
/// one per record and encodes it only when a client reads it (`cursor`,
/// `pageInfo`): most pages are read by their nodes alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The ordering the cursor belongs to (a cursor from another is refused).
    pub o: std::borrow::Cow<'static, str>,
    pub k: SortKey,
    pub id: Uuid,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    pub fn decode(s: &str, field: &str) -> AppResult<Cursor> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| AppError::bad_input(field, "invalid cursor"))
    }
}

/// `first`/`after`, `last`/`before` as given by a client.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub first: Option<i32>,
    pub after: Option<String>,
    pub last: Option<i32>,
    pub before: Option<String>,
}

/// One page of records plus what a Relay `pageInfo` needs.
#[derive(Debug, Clone)]
pub struct Page<M> {
    pub items: Vec<(Cursor, M)>,
    pub has_next: bool,
    pub has_previous: bool,
}

impl PageRequest {
    /// The page size this request asks for, validated.
    pub fn size(&self) -> AppResult<u64> {
        if self.first.is_some() && self.last.is_some() {
            return Err(AppError::invalid("give either `first` or `last`, not both"));
        }
        let (name, n) = match (self.first, self.last) {
            (Some(n), _) => ("first", n),
            (_, Some(n)) => ("last", n),
            _ => return Ok(DEFAULT_PAGE_SIZE),
        };
        if n < 0 {
            return Err(AppError::bad_input(
                name,
                format!("`{name}` must not be negative"),
            ));
        }
        if n as u64 > MAX_PAGE_SIZE {
            return Err(AppError::bad_input(
                name,
                format!("`{name}` must be at most {MAX_PAGE_SIZE}"),
            ));
        }
        Ok(n as u64)
    }

    /// The page size for complexity accounting (never fails).
    pub fn size_hint(first: Option<i32>, last: Option<i32>) -> usize {
        first
            .or(last)
            .map(|n| n.clamp(0, MAX_PAGE_SIZE as i32) as usize)
            .unwrap_or(DEFAULT_PAGE_SIZE as usize)
    }
}

/// Reads the sort key and id off a model.
pub type KeyFn<M> = fn(&M) -> (SortKey, Uuid);

/// An ordering of one entity: the sort column, the id column, the direction,
/// and how to read the sort key off a model.
pub struct Ordering<E: EntityTrait> {
    pub name: &'static str,
    pub column: E::Column,
    pub id: E::Column,
    pub descending: bool,
    pub key: KeyFn<E::Model>,
}

/// Fetches one page of `select` in `ordering`, honouring the cursors.
pub async fn paginate<E, C>(
    db: &C,
    select: Select<E>,
    ordering: &Ordering<E>,
    request: &PageRequest,
) -> AppResult<Page<E::Model>>
where
    E: crate::rows::Rows,
    E::Model: Sync,
    C: ConnectionTrait,
{
    let size = request.size()?;
    let backward = request.last.is_some() || (request.before.is_some() && request.first.is_none());
    let mut select = select;
    let cursor_of = |raw: &Option<String>, field: &str| -> AppResult<Option<Cursor>> {
        match raw {
            Some(s) => {
                let c = Cursor::decode(s, field)?;
                if c.o != ordering.name {
                    return Err(AppError::bad_input(
                        field,
                        "cursor belongs to another ordering",
                    ));
                }
                Ok(Some(c))
            }
            None => Ok(None),
        }
    };
    let after = cursor_of(&request.after, "after")?;
    let before = cursor_of(&request.before, "before")?;
    // (col, id) strictly after / before the cursor in the ordering's direction.
    let beyond = |c: Cursor, forward: bool| -> Condition {
        let greater = forward != ordering.descending;
        let v: Value = c.k.into();
        if greater {
            Condition::any().add(ordering.column.gt(v.clone())).add(
                Condition::all()
                    .add(ordering.column.eq(v))
                    .add(ordering.id.gt(c.id)),
            )
        } else {
            Condition::any().add(ordering.column.lt(v.clone())).add(
                Condition::all()
                    .add(ordering.column.eq(v))
                    .add(ordering.id.lt(c.id)),
            )
        }
    };
    if let Some(c) = after.clone() {
        select = select.filter(beyond(c, true));
    }
    if let Some(c) = before.clone() {
        select = select.filter(beyond(c, false));
    }
    let ascending = ordering.descending == backward;
    let order = if ascending { Order::Asc } else { Order::Desc };
    let mut rows = crate::rows::all(
        select
            .order_by(ordering.column, order.clone())
            .order_by(ordering.id, order)
            .limit(size + 1),
        db,
    )
    .await?;
    let more = rows.len() as u64 > size;
    rows.truncate(size as usize);
    if backward {
        rows.reverse();
    }
    let items = rows
        .into_iter()
        .map(|m| {
            let (k, id) = (ordering.key)(&m);
            let cursor = Cursor {
                o: std::borrow::Cow::Borrowed(ordering.name),
                k,
                id,
            };
            (cursor, m)
        })
        .collect();
    Ok(if backward {
        Page {
            items,
            has_next: before.is_some(),
            has_previous: more,
        }
    } else {
        Page {
            items,
            has_next: more,
            has_previous: after.is_some(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor {
            o: "createdAt".into(),
            k: SortKey::Int(42),
            id: Uuid::nil(),
        };
        assert_eq!(Cursor::decode(&c.encode(), "after").unwrap(), c);
        assert!(Cursor::decode("not a cursor", "after").is_err());
    }

    #[test]
    fn page_sizes_are_bounded() {
        let req = |first| PageRequest {
            first,
            ..Default::default()
        };
        assert_eq!(req(None).size().unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(req(Some(500)).size().unwrap(), 500);
        assert!(req(Some(501)).size().is_err());
        assert!(req(Some(-1)).size().is_err());
    }
}
