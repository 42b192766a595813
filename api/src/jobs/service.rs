//! Reading jobs (for operators): filtered, keyset-paginated lists.

use crate::error::AppResult;
use crate::pagination::{KeyFn, Ordering, Page, PageRequest, SortKey, paginate};
use entity::enums::JobStatus;
use entity::job::{self, Entity as Job};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter};

#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub statuses: Vec<JobStatus>,
    pub kinds: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOrder {
    CreatedAt,
    RunAt,
    UpdatedAt,
}

fn condition(f: &JobFilter) -> Condition {
    let mut c = Condition::all();
    if !f.statuses.is_empty() {
        c = c.add(job::Column::Status.is_in(f.statuses.clone()));
    }
    if !f.kinds.is_empty() {
        c = c.add(job::Column::Kind.is_in(f.kinds.clone()));
    }
    c
}

fn ordering(order: JobOrder, descending: bool) -> Ordering<Job> {
    let (name, column, key): (_, _, KeyFn<job::Model>) = match order {
        JobOrder::CreatedAt => ("createdAt", job::Column::CreatedAt, |m| {
            (SortKey::Time(m.created_at), m.id)
        }),
        JobOrder::RunAt => ("runAt", job::Column::RunAt, |m| {
            (SortKey::Time(m.run_at), m.id)
        }),
        JobOrder::UpdatedAt => ("updatedAt", job::Column::UpdatedAt, |m| {
            (SortKey::Time(m.updated_at), m.id)
        }),
    };
    Ordering {
        name,
        column,
        id: job::Column::Id,
        descending,
        key,
    }
}

pub async fn list(
    db: &impl ConnectionTrait,
    filter: &JobFilter,
    order: JobOrder,
    descending: bool,
    page: &PageRequest,
) -> AppResult<Page<job::Model>> {
    paginate(
        db,
        Job::find().filter(condition(filter)),
        &ordering(order, descending),
        page,
    )
    .await
}

pub async fn count(db: &impl ConnectionTrait, filter: &JobFilter) -> AppResult<u64> {
    Ok(Job::find().filter(condition(filter)).count(db).await?)
}
