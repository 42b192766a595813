//! The most-read records are decoded by position on PostgreSQL (`api::rows`):
//! every such entity's rows decode to the very models SeaORM's by-name
//! decoding gives, NULLs and enums included.

use crate::db_test;
use sea_orm::{EntityTrait, QueryOrder};

async fn same<E>(db: &sea_orm::DatabaseConnection, what: &str, order: E::Column) -> usize
where
    E: api::rows::Rows,
    E::Model: PartialEq + std::fmt::Debug,
{
    let by_name = E::find().order_by_asc(order).all(db).await.unwrap();
    let ours = api::rows::all(E::find().order_by_asc(order), db)
        .await
        .unwrap();
    assert!(!by_name.is_empty(), "no {what} to compare");
    assert_eq!(ours, by_name, "{what} decoded differently");
    let first = api::rows::one(E::find().order_by_asc(order), db)
        .await
        .unwrap();
    assert_eq!(first.as_ref(), by_name.first(), "first of {what}");
    by_name.len()
}

db_test!(records_decode_by_position_as_by_name, |app| async move {
    let db = app.db();
    let opts = tools::seed::SeedOptions {
        leads: 300,
        seed: 11,
        progress: false,
    };
    tools::seed::seed(db, &opts).await.unwrap();
    // Optional columns both set and NULL.
    let leads = entity::lead::Entity::find().all(db).await.unwrap();
    for (what, set) in [
        ("mqlAt", leads.iter().filter(|l| l.mql_at.is_some()).count()),
        (
            "firstTouchAt",
            leads.iter().filter(|l| l.first_touch_at.is_some()).count(),
        ),
        (
            "campaign",
            leads.iter().filter(|l| l.campaign_id.is_some()).count(),
        ),
    ] {
        assert!(
            set > 0 && set < leads.len(),
            "{what} set on {set} of {}",
            leads.len()
        );
    }

    same::<entity::lead::Entity>(db, "leads", entity::lead::Column::Id).await;
    same::<entity::account::Entity>(db, "accounts", entity::account::Column::Id).await;
    same::<entity::user::Entity>(db, "users", entity::user::Column::Id).await;
    same::<entity::stage_change::Entity>(db, "stage changes", entity::stage_change::Column::Id)
        .await;
});
