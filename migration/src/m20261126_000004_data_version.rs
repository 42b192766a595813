//! One counter that every write to the records bumps (after it commits), so
//! each replica's metric cache can tell that its entries are stale without
//! keeping any state another replica needs.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE TABLE data_version (id INTEGER NOT NULL PRIMARY KEY, version BIGINT NOT NULL)",
        )
        .await?;
        // The counter's one row is part of the schema, not data.
        db.execute_unprepared("INSERT INTO data_version (id, version) VALUES (1, 0)")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE data_version")
            .await?;
        Ok(())
    }
}
