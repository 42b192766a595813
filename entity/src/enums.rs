//! Enumerations stored as upper-case strings. With the `graphql` feature each
//! one is also a GraphQL enum of the same names.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
        #[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
        #[sea_orm(rs_type = "String", db_type = "String(StringLen::None)", rename_all = "SCREAMING_SNAKE_CASE")]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored (and GraphQL) name.
            pub fn as_str(self) -> String {
                self.to_value()
            }
        }
    };
}

string_enum!(
    /// What a team does.
    TeamFunction { Marketing, SalesDevelopment, Sales, CustomerSuccess, Revops }
);
string_enum!(
    /// Access role of a caller.
    Role { Admin, Revops, Member, Viewer, Integration }
);
string_enum!(
    /// Company size segment.
    Segment { Smb, MidMarket, Enterprise }
);
string_enum!(
    /// Commercial status of an account.
    AccountStatus { Prospect, Customer, Churned }
);
string_enum!(
    /// Where a lead came from; also a campaign's channel.
    Channel { Web, Event, Paid, Email, Outbound, Referral, Partner, Other }
);
string_enum!(
    /// What a campaign offers.
    CampaignKind { Content, Offer, Event, Ad, Email, Webinar, Other }
);
string_enum!(
    /// Lead stage: the main path INQUIRY → MQL → SAL → SQL → CONVERTED, plus
    /// the side exits RECYCLED and DISQUALIFIED.
    LeadStage { Inquiry, Mql, Sal, Sql, Converted, Recycled, Disqualified }
);
string_enum!(
    /// Opportunity stage.
    OpportunityStage { Discovery, Proposal, Negotiation, ClosedWon, ClosedLost }
);
string_enum!(
    /// Which function sourced an opportunity.
    SourcedBy { Marketing, SalesDevelopment, Sales, Partner }
);
string_enum!(
    /// Where a background job is: QUEUED (waiting for its `runAt`), RUNNING
    /// (leased by a runner), DONE, or DEAD (failed `maxAttempts` times).
    JobStatus { Queued, Running, Done, Dead }
);
string_enum!(
    /// Which kind of record an external id points at.
    RecordKind { Account, Lead, Opportunity, User, Campaign }
);

impl LeadStage {
    /// Position on the main path (INQUIRY = 1 … CONVERTED = 5); side exits have none.
    pub fn rank(self) -> Option<u8> {
        match self {
            LeadStage::Inquiry => Some(1),
            LeadStage::Mql => Some(2),
            LeadStage::Sal => Some(3),
            LeadStage::Sql => Some(4),
            LeadStage::Converted => Some(5),
            LeadStage::Recycled | LeadStage::Disqualified => None,
        }
    }
}

impl OpportunityStage {
    pub fn is_closed(self) -> bool {
        matches!(
            self,
            OpportunityStage::ClosedWon | OpportunityStage::ClosedLost
        )
    }
}
string_enum!(
    /// Where a hand-off is: PENDING (waiting for the receiving team), ACCEPTED,
    /// REJECTED (with a reason), or EXPIRED (still unanswered past `dueAt`).
    HandoffStatus { Pending, Accepted, Rejected, Expired }
);
string_enum!(
    /// Why a hand-off was rejected, and what rejecting a lead's hand-off
    /// does to the lead: BAD_FIT, DUPLICATE and WRONG_CONTACT move it to
    /// DISQUALIFIED (no fit at all); NO_BUDGET, NO_RESPONSE, NOT_READY and
    /// OTHER move it to RECYCLED (back to nurture). A converted lead, or one
    /// already at that stage, stays where it is; an opportunity's stage
    /// never changes.
    HandoffReason { BadFit, NoBudget, Duplicate, WrongContact, NoResponse, NotReady, Other }
);
string_enum!(
    /// The period an SLA policy's lead target is counted over.
    SlaPeriod { Month, Quarter }
);

impl HandoffReason {
    /// The lead stage a rejection for this reason moves a lead to: the lead
    /// is no fit at all (DISQUALIFIED), or not now (RECYCLED, back to nurture).
    pub fn lead_stage(self) -> LeadStage {
        match self {
            HandoffReason::BadFit | HandoffReason::Duplicate | HandoffReason::WrongContact => {
                LeadStage::Disqualified
            }
            HandoffReason::NoBudget
            | HandoffReason::NoResponse
            | HandoffReason::NotReady
            | HandoffReason::Other => LeadStage::Recycled,
        }
    }
}
string_enum!(
    /// Which CRM pushes an integration's webhooks.
    WebhookProvider {
        /// HubSpot webhook batches, signed with the app's client secret (v3 signature).
        Hubspot,
        /// Salesforce Outbound Messages (SOAP), checked by organization id and the integration's token.
        Salesforce,
        /// Pipedrive webhooks v2, with HTTP basic auth (the integration's secret as password).
        Pipedrive,
        /// Lockstep's own signed JSON envelope (`X-Lockstep-Signature`), for any other system.
        Generic,
    }
);
string_enum!(
    /// Where an inbox event is: RECEIVED (stored, not applied yet), APPLIED
    /// (its change is in the records, or it was older than what the record
    /// holds), FAILED (an attempt failed; it is retried with backoff), or
    /// DEAD (it failed every attempt; an operator may replay it).
    WebhookStatus {
        /// Stored in the inbox, not applied yet.
        Received,
        /// Done: applied to the records, or found unchanged, superseded or ignored (see `outcome`).
        Applied,
        /// An attempt to apply it failed; it is retried with backoff.
        Failed,
        /// It failed every attempt; an operator may replay it.
        Dead,
    }
);

impl WebhookProvider {
    /// The lower-case name used in URLs (`/webhooks/hubspot/…`).
    pub fn slug(self) -> &'static str {
        match self {
            WebhookProvider::Hubspot => "hubspot",
            WebhookProvider::Salesforce => "salesforce",
            WebhookProvider::Pipedrive => "pipedrive",
            WebhookProvider::Generic => "generic",
        }
    }

    /// The provider a URL names, if any.
    pub fn from_slug(s: &str) -> Option<WebhookProvider> {
        WebhookProvider::ALL.iter().copied().find(|p| p.slug() == s)
    }
}
string_enum!(
    /// What a goal measures (see docs/goals.md): revenue won, new customers,
    /// pipeline created, qualified leads won (MQLs of the period whose
    /// opportunity closed won), win rate, retention, or MQLs (a volume metric).
    GoalMetric { RevenueWon, NewCustomers, PipelineCreated, QualifiedLeadsWon, WinRate, Retention, Mqls }
);

impl GoalMetric {
    /// The metrics measured in revenue, which alone count for alignment.
    pub fn is_revenue(self) -> bool {
        matches!(
            self,
            GoalMetric::RevenueWon
                | GoalMetric::QualifiedLeadsWon
                | GoalMetric::NewCustomers
                | GoalMetric::PipelineCreated
                | GoalMetric::Retention
        )
    }

    /// Volume metrics: counted, but a plan paid only on them is flagged.
    pub fn is_volume(self) -> bool {
        matches!(self, GoalMetric::Mqls)
    }
}
