//! How records are decoded from their rows.
//!
//! SeaORM decodes a model column by column *by name*: each column is looked
//! up in the row's name map, and each NULL travels as an error whose message
//! names the column (a `format!` per NULL) before it becomes `None`. On a
//! page of 100 leads with their accounts that was a quarter of the server's
//! CPU (a profile under load on PostgreSQL). The most-read records — leads,
//! accounts, users, stage changes — are therefore decoded *by position* on
//! PostgreSQL: `Entity::find()` selects the model's columns in the order of
//! its fields, and `by_position!` lists those fields in that same order
//! (a test compares both decodings, on every run, for every such entity).
//! SQLite, and every other entity, keep SeaORM's decoding.
//!
//! Reads that fetch whole models (pages, loaders, lookups by id) go through
//! `all` and `one`, which pick each entity's decoding (`Rows`).

use sea_orm::sqlx::Row;
use sea_orm::sqlx::postgres::PgRow;
use sea_orm::{
    ActiveEnum, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryResult, Select,
};

/// How an entity's rows become models.
pub trait Rows: EntityTrait {
    /// What a row decodes to (the model, or `ByPosition<Model>`).
    type Row: FromQueryResult + Send + Sync;
    fn model(row: Self::Row) -> Self::Model;
}

/// All records `select` finds, decoded as their entity's `Rows` says.
pub async fn all<E: Rows>(
    select: Select<E>,
    db: &impl ConnectionTrait,
) -> Result<Vec<E::Model>, DbErr> {
    Ok(select
        .into_model::<E::Row>()
        .all(db)
        .await?
        .into_iter()
        .map(E::model)
        .collect())
}

/// The first record `select` finds, decoded as its entity's `Rows` says.
pub async fn one<E: Rows>(
    select: Select<E>,
    db: &impl ConnectionTrait,
) -> Result<Option<E::Model>, DbErr> {
    Ok(select.into_model::<E::Row>().one(db).await?.map(E::model))
}

/// A model decoded by position (PostgreSQL) or by name (otherwise).
pub struct ByPosition<M>(pub M);

/// One column of a PostgreSQL row, by position.
trait Column: Sized {
    fn at(row: &PgRow, i: usize) -> Result<Self, DbErr>;
}

fn type_error(i: usize, e: impl std::fmt::Display) -> DbErr {
    DbErr::Type(format!("column {i}: {e}"))
}

macro_rules! plain_columns {
    ($($t:ty),* $(,)?) => {$(
        impl Column for $t {
            fn at(row: &PgRow, i: usize) -> Result<Self, DbErr> {
                row.try_get::<$t, _>(i).map_err(|e| type_error(i, e))
            }
        }
        impl Column for Option<$t> {
            fn at(row: &PgRow, i: usize) -> Result<Self, DbErr> {
                row.try_get::<Option<$t>, _>(i).map_err(|e| type_error(i, e))
            }
        }
    )*};
}

plain_columns!(
    uuid::Uuid,
    String,
    i32,
    i64,
    bool,
    chrono::DateTime<chrono::Utc>
);

/// A text column read as one of Lockstep's enums (stored as their names).
fn enum_at<E: ActiveEnum<Value = String>>(row: &PgRow, i: usize) -> Result<E, DbErr> {
    let s: &str = row.try_get(i).map_err(|e| type_error(i, e))?;
    E::try_from_value(&s.to_owned())
}

macro_rules! column {
    (enum, $row:ident, $i:expr) => {
        enum_at($row, $i)?
    };
    (plain, $row:ident, $i:expr) => {
        Column::at($row, $i)?
    };
}

/// A model whose columns can be read off a PostgreSQL row by position.
pub trait Positional: Sized {
    /// How many columns the model takes.
    const COLUMNS: usize;
    /// The model whose first column is column `start` of `row`.
    fn at(row: &PgRow, start: usize) -> Result<Self, DbErr>;
}

/// The model of a LEFT JOIN whose columns start at `start`: `None` when the
/// join found nothing (its id, the first column, is NULL).
pub fn joined<M: Positional>(row: &PgRow, start: usize) -> Result<Option<M>, DbErr> {
    if <Option<uuid::Uuid> as Column>::at(row, start)?.is_none() {
        return Ok(None);
    }
    M::at(row, start).map(Some)
}

/// Decodes `$model` by position on PostgreSQL: its fields, in declaration
/// order, each `plain` (a type PostgreSQL decodes) or `enum`.
macro_rules! by_position {
    ($module:ident { $($field:ident: $kind:ident),* $(,)? }) => {
        impl Positional for entity::$module::Model {
            const COLUMNS: usize = [$(stringify!($field)),*].len();

            #[allow(unused_assignments)]
            fn at(row: &PgRow, start: usize) -> Result<Self, DbErr> {
                let mut i = start;
                Ok(entity::$module::Model {
                    $($field: {
                        let v = column!($kind, row, i);
                        i += 1;
                        v
                    },)*
                })
            }
        }
        impl FromQueryResult for ByPosition<entity::$module::Model> {
            fn from_query_result(res: &QueryResult, pre: &str) -> Result<Self, DbErr> {
                match res.try_as_pg_row() {
                    Some(row) if pre.is_empty() => Positional::at(row, 0).map(ByPosition),
                    _ => entity::$module::Model::from_query_result(res, pre).map(ByPosition),
                }
            }
        }
        impl Rows for entity::$module::Entity {
            type Row = ByPosition<entity::$module::Model>;
            fn model(row: Self::Row) -> Self::Model {
                row.0
            }
        }
    };
}

/// Entities decoded by SeaORM (by name) everywhere.
macro_rules! by_name {
    ($($module:ident),* $(,)?) => {$(
        impl Rows for entity::$module::Entity {
            type Row = entity::$module::Model;
            fn model(row: Self::Row) -> Self::Model {
                row
            }
        }
    )*};
}

by_position!(lead {
    id: plain,
    email: plain,
    first_name: plain,
    last_name: plain,
    title: plain,
    company: plain,
    account_id: plain,
    source: enum,
    campaign_id: plain,
    score: plain,
    stage: enum,
    owner_id: plain,
    team_id: plain,
    converted_opportunity_id: plain,
    first_touch_at: plain,
    mql_at: plain,
    sal_at: plain,
    sql_at: plain,
    converted_at: plain,
    inquiry_at: plain,
    created_by: plain,
    created_at: plain,
    updated_at: plain,
});

by_position!(account {
    id: plain,
    name: plain,
    domain: plain,
    industry: plain,
    segment: enum,
    employees: plain,
    annual_revenue: plain,
    is_target: plain,
    status: enum,
    became_customer_at: plain,
    churned_at: plain,
    owner_id: plain,
    created_by: plain,
    created_at: plain,
    updated_at: plain,
});

by_position!(user {
    id: plain,
    email: plain,
    name: plain,
    team_id: plain,
    role: enum,
    active: plain,
    created_at: plain,
    updated_at: plain,
});

by_position!(stage_change {
    id: plain,
    lead_id: plain,
    opportunity_id: plain,
    from_stage: plain,
    to_stage: plain,
    at: plain,
    actor: plain,
    actor_user_id: plain,
    reason: plain,
});

by_name!(
    team,
    campaign,
    opportunity,
    handoff,
    sla_policy,
    goal,
    goal_team,
    goal_version,
    compensation_plan,
    compensation_link,
    compensation_link_version,
    touchpoint,
    integration,
    webhook_event,
    job,
);
