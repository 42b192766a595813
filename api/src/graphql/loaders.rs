//! DataLoaders: every relation field resolves through one of these, so the
//! number of SQL statements a request issues does not grow with page size.

use crate::error::AppError;
use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use sea_orm::sea_query::ValueType;
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, FromQueryResult, Iden, Iterable,
    PrimaryKeyToColumn, QueryFilter, QueryOrder, Statement, Value,
};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Loader errors are shared between every waiting field.
#[derive(Debug, Clone)]
pub struct LoadError(pub Arc<AppError>);

impl From<AppError> for LoadError {
    fn from(e: AppError) -> Self {
        LoadError(Arc::new(e))
    }
}

impl From<LoadError> for async_graphql::Error {
    fn from(e: LoadError) -> Self {
        async_graphql::ErrorExtensions::extend(e.0.as_ref())
    }
}

fn uuid_of<M: sea_orm::ModelTrait>(
    model: &M,
    col: <M::Entity as EntityTrait>::Column,
) -> Option<Uuid> {
    match model.get(col) {
        Value::Uuid(Some(_)) => <Uuid as ValueType>::try_from(model.get(col)).ok(),
        _ => None,
    }
}

/// Loads records of `E` by primary key.
pub struct ById<E>(DatabaseConnection, PhantomData<E>);

impl<E> Loader<Uuid> for ById<E>
where
    E: crate::rows::Rows + Send + Sync + 'static,
    E::Model: Clone + Send + Sync + 'static,
{
    type Value = E::Model;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, E::Model>, LoadError> {
        let Some(pk) = E::PrimaryKey::iter().next() else {
            return Ok(HashMap::new());
        };
        let col = pk.into_column();
        let rows = crate::rows::all(E::find().filter(col.is_in(keys.iter().copied())), &self.0)
            .await
            .map_err(|e| LoadError::from(AppError::from(e)))?;
        Ok(rows
            .into_iter()
            .filter_map(|m| uuid_of(&m, col).map(|id| (id, m)))
            .collect())
    }
}

/// Loads the children of `E` whose foreign key `fk` is one of the keys,
/// ordered by `order` then primary key. `Tag` tells two groupings of one table apart.
pub struct GroupedBy<E: EntityTrait, Tag> {
    db: DatabaseConnection,
    fk: E::Column,
    order: E::Column,
    _tag: PhantomData<Tag>,
}

impl<E, Tag> Loader<Uuid> for GroupedBy<E, Tag>
where
    E: crate::rows::Rows + Send + Sync + 'static,
    E::Model: Clone + Send + Sync + 'static,
    E::Column: Send + Sync,
    Tag: Send + Sync + 'static,
{
    type Value = Vec<E::Model>;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Vec<E::Model>>, LoadError> {
        let mut select = E::find()
            .filter(self.fk.is_in(keys.iter().copied()))
            .order_by_asc(self.order);
        if let Some(pk) = E::PrimaryKey::iter().next() {
            select = select.order_by_asc(pk.into_column());
        }
        let rows = crate::rows::all(select, &self.db)
            .await
            .map_err(|e| LoadError::from(AppError::from(e)))?;
        let mut map: HashMap<Uuid, Vec<E::Model>> = HashMap::new();
        for row in rows {
            if let Some(key) = uuid_of(&row, self.fk) {
                map.entry(key).or_default().push(row);
            }
        }
        Ok(map)
    }
}

/// Key of a capped child list: the parent and how many children (newest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Capped {
    pub parent: Uuid,
    pub limit: u64,
}

/// Loads at most `limit` newest children per parent with one windowed query
/// per distinct limit.
pub struct CappedChildren<E: EntityTrait, Tag> {
    db: DatabaseConnection,
    fk: E::Column,
    order: E::Column,
    _tag: PhantomData<Tag>,
}

impl<E, Tag> Loader<Capped> for CappedChildren<E, Tag>
where
    E: EntityTrait + Send + Sync + 'static,
    E::Model: FromQueryResult + Clone + Send + Sync + 'static,
    E::Column: Send + Sync,
    Tag: Send + Sync + 'static,
{
    type Value = Vec<E::Model>;
    type Error = LoadError;

    async fn load(&self, keys: &[Capped]) -> Result<HashMap<Capped, Vec<E::Model>>, LoadError> {
        let backend = self.db.get_database_backend();
        let mut by_limit: HashMap<u64, Vec<Uuid>> = HashMap::new();
        for k in keys {
            by_limit.entry(k.limit).or_default().push(k.parent);
        }
        let table = E::default().table_name().to_owned();
        let fk = self.fk.to_string();
        let order = self.order.to_string();
        let mut out = HashMap::new();
        for (limit, parents) in by_limit {
            let marks: Vec<String> = (1..=parents.len())
                .map(|i| placeholder(backend, i))
                .collect();
            let sql = format!(
                "SELECT * FROM (SELECT t.*, ROW_NUMBER() OVER (PARTITION BY t.{fk} ORDER BY t.{order} DESC, t.id DESC) AS rn \
                 FROM {table} t WHERE t.{fk} IN ({})) w WHERE w.rn <= {limit} ORDER BY w.{fk}, w.rn",
                marks.join(", ")
            );
            let values: Vec<Value> = parents.iter().map(|p| Value::from(*p)).collect();
            let rows = E::find()
                .from_raw_sql(Statement::from_sql_and_values(backend, sql, values))
                .all(&self.db)
                .await
                .map_err(|e| LoadError::from(AppError::from(e)))?;
            for parent in &parents {
                out.insert(
                    Capped {
                        parent: *parent,
                        limit,
                    },
                    Vec::new(),
                );
            }
            for row in rows {
                if let Some(parent) = uuid_of(&row, self.fk)
                    && let Some(list) = out.get_mut(&Capped { parent, limit })
                {
                    list.push(row);
                }
            }
        }
        Ok(out)
    }
}

use crate::metrics::sql::placeholder;

pub struct ByLead;
pub struct ByOpportunity;
pub struct ByAccount;
pub struct ByGoal;
pub struct ByPlan;
pub struct ByLink;

pub type TeamById = ById<entity::team::Entity>;
pub type UserById = ById<entity::user::Entity>;
pub type AccountById = ById<entity::account::Entity>;
pub type CampaignById = ById<entity::campaign::Entity>;
pub type LeadById = ById<entity::lead::Entity>;
pub type OpportunityById = ById<entity::opportunity::Entity>;
pub type SlaPolicyById = ById<entity::sla_policy::Entity>;
pub type HandoffsOfLead = GroupedBy<entity::handoff::Entity, ByLead>;
pub type HandoffsOfOpportunity = GroupedBy<entity::handoff::Entity, ByOpportunity>;
pub type TouchpointsOfLead = GroupedBy<entity::touchpoint::Entity, ByLead>;
pub type StageHistoryOfLead = GroupedBy<entity::stage_change::Entity, ByLead>;
pub type StageHistoryOfOpportunity = GroupedBy<entity::stage_change::Entity, ByOpportunity>;
pub type GoalTeamsOf = GroupedBy<entity::goal_team::Entity, ByGoal>;
pub type GoalById = ById<entity::goal::Entity>;
pub type GoalVersionsOf = GroupedBy<entity::goal_version::Entity, ByGoal>;
/// Every link of a plan, removed ones too (by creation).
pub type LinksOfPlan = GroupedBy<entity::compensation_link::Entity, ByPlan>;
pub type LinkVersionsOf = GroupedBy<entity::compensation_link_version::Entity, ByLink>;
pub type LeadsOfAccount = CappedChildren<entity::lead::Entity, ByAccount>;
pub type OpportunitiesOfAccount = CappedChildren<entity::opportunity::Entity, ByAccount>;

/// All loaders for one request (each request gets fresh ones: no cache
/// outlives a request, so replicas never disagree).
/// `metrics_db` serves the goals' actuals (metric statements), `db` the rest.
pub fn register(
    data: &mut async_graphql::Data,
    db: &DatabaseConnection,
    metrics_db: &DatabaseConnection,
    delay: Duration,
) {
    fn dl<L: Loader<K>, K: Send + Sync + std::hash::Hash + Eq + Clone + 'static>(
        loader: L,
        delay: Duration,
    ) -> DataLoader<L, HashMapCache> {
        // Request-scoped cache: a key loaded (or primed) once is not loaded again.
        DataLoader::with_cache(
            loader,
            |fut| tokio::spawn(crate::telemetry::in_request(fut)),
            HashMapCache::default(),
        )
        .delay(delay)
    }
    use entity::{lead, opportunity, stage_change, touchpoint};
    data.insert(dl::<TeamById, _>(ById(db.clone(), PhantomData), delay));
    data.insert(dl::<UserById, _>(ById(db.clone(), PhantomData), delay));
    data.insert(dl::<AccountById, _>(ById(db.clone(), PhantomData), delay));
    data.insert(dl::<CampaignById, _>(ById(db.clone(), PhantomData), delay));
    data.insert(dl::<LeadById, _>(ById(db.clone(), PhantomData), delay));
    data.insert(dl::<OpportunityById, _>(
        ById(db.clone(), PhantomData),
        delay,
    ));
    data.insert(dl::<ExternalIdsOf, _>(ExternalIdsOf(db.clone()), delay));
    data.insert(dl::<SlaPolicyById, _>(ById(db.clone(), PhantomData), delay));
    data.insert(dl::<GoalTeamsOf, _>(
        GroupedBy {
            db: db.clone(),
            fk: entity::goal_team::Column::GoalId,
            order: entity::goal_team::Column::TeamId,
            _tag: PhantomData,
        },
        delay,
    ));
    data.insert(dl::<GoalsOfTeam, _>(GoalsOfTeam(db.clone()), delay));
    data.insert(dl::<GoalReadings, _>(
        GoalReadings(metrics_db.clone()),
        delay,
    ));
    data.insert(dl::<GoalById, _>(ById(db.clone(), PhantomData), delay));
    data.insert(dl::<GoalVersionsOf, _>(
        GroupedBy {
            db: db.clone(),
            fk: entity::goal_version::Column::GoalId,
            order: entity::goal_version::Column::Version,
            _tag: PhantomData,
        },
        delay,
    ));
    data.insert(dl::<LinksOfPlan, _>(
        GroupedBy {
            db: db.clone(),
            fk: entity::compensation_link::Column::PlanId,
            order: entity::compensation_link::Column::CreatedAt,
            _tag: PhantomData,
        },
        delay,
    ));
    data.insert(dl::<LinkVersionsOf, _>(
        GroupedBy {
            db: db.clone(),
            fk: entity::compensation_link_version::Column::LinkId,
            order: entity::compensation_link_version::Column::Version,
            _tag: PhantomData,
        },
        delay,
    ));
    data.insert(dl::<HandoffsOfLead, _>(
        GroupedBy {
            db: db.clone(),
            fk: entity::handoff::Column::LeadId,
            order: entity::handoff::Column::HandedAt,
            _tag: PhantomData,
        },
        delay,
    ));
    data.insert(dl::<HandoffsOfOpportunity, _>(
        GroupedBy {
            db: db.clone(),
            fk: entity::handoff::Column::OpportunityId,
            order: entity::handoff::Column::HandedAt,
            _tag: PhantomData,
        },
        delay,
    ));
    data.insert(dl::<TouchpointsOfLead, _>(
        GroupedBy {
            db: db.clone(),
            fk: touchpoint::Column::LeadId,
            order: touchpoint::Column::OccurredAt,
            _tag: PhantomData,
        },
        delay,
    ));
    data.insert(dl::<StageHistoryOfLead, _>(
        GroupedBy {
            db: db.clone(),
            fk: stage_change::Column::LeadId,
            order: stage_change::Column::At,
            _tag: PhantomData,
        },
        delay,
    ));
    data.insert(dl::<StageHistoryOfOpportunity, _>(
        GroupedBy {
            db: db.clone(),
            fk: stage_change::Column::OpportunityId,
            order: stage_change::Column::At,
            _tag: PhantomData,
        },
        delay,
    ));
    data.insert(dl::<LeadsOfAccount, _>(
        CappedChildren {
            db: db.clone(),
            fk: lead::Column::AccountId,
            order: lead::Column::CreatedAt,
            _tag: PhantomData,
        },
        delay,
    ));
    data.insert(dl::<OpportunitiesOfAccount, _>(
        CappedChildren {
            db: db.clone(),
            fk: opportunity::Column::AccountId,
            order: opportunity::Column::CreatedAt,
            _tag: PhantomData,
        },
        delay,
    ));
}

/// Loads the external ids of records, keyed by (kind, record id).
pub struct ExternalIdsOf(DatabaseConnection);

impl Loader<(entity::enums::RecordKind, Uuid)> for ExternalIdsOf {
    type Value = Vec<crate::records::external_ids::ExternalRef>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[(entity::enums::RecordKind, Uuid)],
    ) -> Result<HashMap<(entity::enums::RecordKind, Uuid), Self::Value>, LoadError> {
        let mut by_kind: HashMap<entity::enums::RecordKind, Vec<Uuid>> = HashMap::new();
        for (kind, id) in keys {
            by_kind.entry(*kind).or_default().push(*id);
        }
        let mut out = HashMap::new();
        for (kind, ids) in by_kind {
            let found = crate::records::external_ids::for_records(&self.0, kind, &ids)
                .await
                .map_err(LoadError::from)?;
            for (id, refs) in found {
                out.insert((kind, id), refs);
            }
        }
        Ok(out)
    }
}

/// Forgets what the loaders of a long-lived context (a subscription's
/// connection) have cached, so that each event is answered fresh.
pub fn clear_all(ctx: &async_graphql::Context<'_>) {
    fn clear<L, K>(ctx: &async_graphql::Context<'_>)
    where
        L: Loader<K>,
        K: Send + Sync + std::hash::Hash + Eq + Clone + 'static,
    {
        if let Some(loader) = ctx.data_opt::<DataLoader<L, HashMapCache>>() {
            loader.clear::<K>();
        }
    }
    clear::<TeamById, Uuid>(ctx);
    clear::<UserById, Uuid>(ctx);
    clear::<AccountById, Uuid>(ctx);
    clear::<CampaignById, Uuid>(ctx);
    clear::<LeadById, Uuid>(ctx);
    clear::<OpportunityById, Uuid>(ctx);
    clear::<SlaPolicyById, Uuid>(ctx);
    clear::<ExternalIdsOf, (entity::enums::RecordKind, Uuid)>(ctx);
    clear::<TouchpointsOfLead, Uuid>(ctx);
    clear::<StageHistoryOfLead, Uuid>(ctx);
    clear::<StageHistoryOfOpportunity, Uuid>(ctx);
    clear::<HandoffsOfLead, Uuid>(ctx);
    clear::<HandoffsOfOpportunity, Uuid>(ctx);
    clear::<LeadsOfAccount, Capped>(ctx);
    clear::<OpportunitiesOfAccount, Capped>(ctx);
    clear::<GoalTeamsOf, Uuid>(ctx);
    clear::<GoalsOfTeam, Uuid>(ctx);
    clear::<GoalReadings, crate::goals::actuals::ReadKey>(ctx);
    clear::<GoalById, Uuid>(ctx);
    clear::<GoalVersionsOf, Uuid>(ctx);
    clear::<LinksOfPlan, Uuid>(ctx);
    clear::<LinkVersionsOf, Uuid>(ctx);
}

/// The goals each team shares (not archived), by period start.
pub struct GoalsOfTeam(DatabaseConnection);

impl Loader<Uuid> for GoalsOfTeam {
    type Value = Vec<entity::goal::Model>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[Uuid],
    ) -> Result<HashMap<Uuid, Vec<entity::goal::Model>>, LoadError> {
        let rows = crate::goals::service::of_teams(&self.0, keys).await?;
        let mut map: HashMap<Uuid, Vec<entity::goal::Model>> = HashMap::new();
        for (team, g) in rows {
            if g.archived_at.is_none() {
                map.entry(team).or_default().push(g);
            }
        }
        Ok(map)
    }
}

/// Goals' actuals and series (`crate::goals::actuals::read`): a page of
/// goals in one statement, whatever their metrics, periods and filters.
pub struct GoalReadings(DatabaseConnection);

impl Loader<crate::goals::actuals::ReadKey> for GoalReadings {
    type Value = Vec<(chrono::NaiveDate, crate::goals::actuals::Actual)>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[crate::goals::actuals::ReadKey],
    ) -> Result<HashMap<crate::goals::actuals::ReadKey, Self::Value>, LoadError> {
        let values = crate::goals::actuals::read(&self.0, keys).await?;
        Ok(keys.iter().cloned().zip(values).collect())
    }
}
