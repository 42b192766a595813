//! Placeholder: filled in by the leads work.
use entity::lead;

pub struct Lead(pub lead::Model);

#[async_graphql::Object]
impl Lead {
    async fn id(&self) -> async_graphql::ID {
        async_graphql::ID(self.0.id.to_string())
    }
}

#[derive(Default)]
pub struct LeadsQuery;

#[async_graphql::Object]
impl LeadsQuery {
    async fn lead_placeholder(&self) -> bool {
        false
    }
}

#[derive(Default)]
pub struct LeadsMutation;

#[async_graphql::Object]
impl LeadsMutation {
    async fn lead_placeholder(&self) -> bool {
        false
    }
}
