//! HubSpot integrations made through GraphQL: HubSpot signs with its app's
//! client secret, which the user gives, so it cannot be derived like the
//! secrets Lockstep makes. It is kept encrypted (XChaCha20-Poly1305 under a
//! key derived from the server's webhook key, the integration's id as
//! associated data): `secret_ciphertext` for the current one,
//! `previous_ciphertext` for the one before the last rotation (accepted
//! until `previous_expires_at`, like `previous_salt`).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Integrations {
    Table,
    SecretCiphertext,
    PreviousCiphertext,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds one at a time.
        for column in [
            Integrations::SecretCiphertext,
            Integrations::PreviousCiphertext,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Integrations::Table)
                        .add_column(text_null(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            Integrations::PreviousCiphertext,
            Integrations::SecretCiphertext,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Integrations::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
