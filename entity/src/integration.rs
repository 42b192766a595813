use crate::enums::WebhookProvider;
use sea_orm::entity::prelude::*;

/// A CRM connection that pushes webhooks. A secret Lockstep made is never
/// stored: it is derived from the server's webhook key and `secret_salt`
/// (see the API's `webhooks::secrets`); a secret the user gave (HubSpot's
/// client secret) is stored encrypted under that key. Either way a copy of
/// the database holds no usable secret.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "integrations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub provider: WebhookProvider,
    #[sea_orm(unique)]
    pub name: String,
    /// Provider settings as JSON text (stage mappings, organization id, …).
    #[sea_orm(column_type = "Text")]
    pub settings: String,
    /// Random salt the current secret is derived from; `None` for an
    /// integration declared in `lockstep.toml` (its secret lives there).
    pub secret_salt: Option<String>,
    /// The secret before the last rotation, accepted until `previous_expires_at`.
    pub previous_salt: Option<String>,
    pub previous_expires_at: Option<DateTimeUtc>,
    /// A secret Lockstep cannot derive (a HubSpot app's client secret, given
    /// by the user), encrypted under the server's webhook key; never shown.
    #[sea_orm(column_type = "Text", nullable)]
    pub secret_ciphertext: Option<String>,
    /// The encrypted secret before the last rotation, accepted until
    /// `previous_expires_at`.
    #[sea_orm(column_type = "Text", nullable)]
    pub previous_ciphertext: Option<String>,
    /// Declared in `lockstep.toml` (kept in step with it at start).
    pub declared: bool,
    pub disabled_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
