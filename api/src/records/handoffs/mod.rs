//! Hand-offs between teams and the SLA policies that time them (see the
//! README's "Hand-offs and the SLA").

pub mod events;
pub mod graphql;
pub mod policies;
pub mod service;
