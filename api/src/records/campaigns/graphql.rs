//! Placeholder: filled in by the campaigns work.
use entity::campaign;

pub struct Campaign(pub campaign::Model);

#[async_graphql::Object]
impl Campaign {
    async fn id(&self) -> async_graphql::ID {
        async_graphql::ID(self.0.id.to_string())
    }
}

#[derive(Default)]
pub struct CampaignsQuery;

#[async_graphql::Object]
impl CampaignsQuery {
    async fn campaign_placeholder(&self) -> bool {
        false
    }
}

#[derive(Default)]
pub struct CampaignsMutation;

#[async_graphql::Object]
impl CampaignsMutation {
    async fn campaign_placeholder(&self) -> bool {
        false
    }
}
