//! External systems' record ids (`{system, id}`), so a CRM record maps to
//! exactly one Lockstep record.

use crate::error::{AppError, AppResult};
use crate::uow::Work;
use entity::enums::RecordKind;
use entity::external_id::{self, Entity as ExternalId};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use std::collections::HashMap;
use uuid::Uuid;

/// One external id, as given by a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalRef {
    pub system: String,
    pub id: String,
}

impl ExternalRef {
    /// Trims and lower-cases the system name; both parts must be non-empty.
    pub fn normalized(system: &str, id: &str) -> AppResult<ExternalRef> {
        crate::records::common::check_chars(system, "system", false)?;
        crate::records::common::check_chars(id, "id", false)?;
        let system = system.trim().to_lowercase();
        let id = id.trim().to_owned();
        if system.is_empty() || system.len() > 64 {
            return Err(AppError::bad_input(
                "system",
                "`system` must be 1 to 64 characters",
            ));
        }
        if id.is_empty() || id.len() > 255 {
            return Err(AppError::bad_input(
                "id",
                "external `id` must be 1 to 255 characters",
            ));
        }
        Ok(ExternalRef { system, id })
    }
}

pub async fn lookup(
    db: &impl ConnectionTrait,
    kind: RecordKind,
    key: &ExternalRef,
) -> AppResult<Option<Uuid>> {
    Ok(ExternalId::find()
        .filter(external_id::Column::RecordKind.eq(kind))
        .filter(external_id::Column::System.eq(key.system.as_str()))
        .filter(external_id::Column::ExternalId.eq(key.id.as_str()))
        .one(db)
        .await?
        .map(|m| m.record_id))
}

/// Links `key` to `record_id` (CONFLICT if it already points elsewhere).
pub async fn link(
    w: &mut Work,
    kind: RecordKind,
    key: &ExternalRef,
    record_id: Uuid,
) -> AppResult<()> {
    match lookup(w.db(), kind, key).await? {
        Some(existing) if existing == record_id => Ok(()),
        Some(_) => Err(AppError::conflict(
            Some("externalIds"),
            format!("{}:{} already maps to another record", key.system, key.id),
        )),
        None => link_free(w, kind, key, record_id).await,
    }
}

/// Links `key`, which the caller has just seen free in this transaction, to
/// `record_id` without reading it again (the bulk import). Should another
/// writer have taken it since, the unique index refuses it: CONFLICT.
pub async fn link_free(
    w: &mut Work,
    kind: RecordKind,
    key: &ExternalRef,
    record_id: Uuid,
) -> AppResult<()> {
    w.insert(external_id::ActiveModel {
        id: Set(Uuid::now_v7()),
        record_kind: Set(kind),
        system: Set(key.system.clone()),
        external_id: Set(key.id.clone()),
        record_id: Set(record_id),
        created_at: Set(super::common::now()),
    })
    .await?;
    Ok(())
}

/// The external ids of many records of one kind (one statement).
pub async fn for_records(
    db: &impl ConnectionTrait,
    kind: RecordKind,
    ids: &[Uuid],
) -> AppResult<HashMap<Uuid, Vec<ExternalRef>>> {
    let rows = ExternalId::find()
        .filter(external_id::Column::RecordKind.eq(kind))
        .filter(external_id::Column::RecordId.is_in(ids.iter().copied()))
        .order_by_asc(external_id::Column::System)
        .all(db)
        .await?;
    let mut map: HashMap<Uuid, Vec<ExternalRef>> = HashMap::new();
    for r in rows {
        map.entry(r.record_id).or_default().push(ExternalRef {
            system: r.system,
            id: r.external_id,
        });
    }
    Ok(map)
}
