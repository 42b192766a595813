//! Placeholder: filled in by the opportunities work.
use entity::opportunity;

pub struct Opportunity(pub opportunity::Model);

#[async_graphql::Object]
impl Opportunity {
    async fn id(&self) -> async_graphql::ID {
        async_graphql::ID(self.0.id.to_string())
    }
}

#[derive(Default)]
pub struct OpportunitiesQuery;

#[async_graphql::Object]
impl OpportunitiesQuery {
    async fn opportunity_placeholder(&self) -> bool {
        false
    }
}

#[derive(Default)]
pub struct OpportunitiesMutation;

#[async_graphql::Object]
impl OpportunitiesMutation {
    async fn opportunity_placeholder(&self) -> bool {
        false
    }
}
