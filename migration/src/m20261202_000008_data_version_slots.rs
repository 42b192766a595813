//! The data version becomes the sum of 16 slots (ids 1 to 16): every write
//! raises one slot at random inside its own transaction, so that concurrent
//! writers do not queue on one row. Readers sum the slots; a sum of counters
//! that only grow changes with every write.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const SLOTS: i64 = 16;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        // The slots are part of the schema, not data.
        let rows = (2..=SLOTS)
            .map(|id| format!("({id}, 0)"))
            .collect::<Vec<_>>()
            .join(", ");
        db.execute_unprepared(&format!(
            "INSERT INTO data_version (id, version) VALUES {rows}"
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "UPDATE data_version SET version = (SELECT SUM(version) FROM data_version) WHERE id = 1",
        )
        .await?;
        db.execute_unprepared("DELETE FROM data_version WHERE id > 1")
            .await?;
        Ok(())
    }
}
