//! Deterministic demo and benchmark data: the same seed gives the same rows.
//!
//! Times are laid out over the 15 months before [`ANCHOR`] (a fixed instant,
//! so two runs agree), in chunks of leads inserted with multi-row INSERTs in
//! one transaction per chunk: a million leads take minutes.

use api::error::AppResult;
use chrono::{DateTime, Duration, TimeZone, Utc};
use entity::enums::{
    AccountStatus, CampaignKind, Channel, LeadStage, OpportunityStage, Role, Segment, SourcedBy,
    TeamFunction,
};
use entity::{account, campaign, lead, opportunity, stage_change, team, touchpoint, user};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, Set,
};
use uuid::Uuid;

/// The end of the generated history (all times are before it).
pub fn anchor() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

/// Days of history before the anchor.
pub const HISTORY_DAYS: i64 = 456;

/// The demo's ADMIN user: the banner's token names it.
pub const DEMO_ADMIN_EMAIL: &str = "admin@lockstep.example";

#[derive(Debug, Clone)]
pub struct SeedOptions {
    pub leads: u64,
    pub seed: u64,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedReport {
    pub teams: u64,
    pub users: u64,
    pub accounts: u64,
    pub campaigns: u64,
    pub leads: u64,
    pub touchpoints: u64,
    pub stage_changes: u64,
    pub opportunities: u64,
}

/// True when the database holds no records yet (a fresh database).
pub async fn is_empty(db: &DatabaseConnection) -> AppResult<bool> {
    Ok(team::Entity::find().count(db).await? == 0 && lead::Entity::find().count(db).await? == 0)
}

/// A small dataset for a fresh embedded database.
pub async fn demo(db: &DatabaseConnection) -> AppResult<SeedReport> {
    seed(
        db,
        &SeedOptions {
            leads: 600,
            seed: 42,
            progress: false,
        },
    )
    .await
}

struct Gen {
    rng: ChaCha8Rng,
    start: DateTime<Utc>,
}

impl Gen {
    fn id(&mut self) -> Uuid {
        uuid::Builder::from_random_bytes(self.rng.random()).into_uuid()
    }
    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p.clamp(0.0, 1.0))
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.random_range(0..items.len())]
    }
    /// A time `days` (fractional) after `t`.
    fn after(&mut self, t: DateTime<Utc>, min_days: f64, max_days: f64) -> DateTime<Utc> {
        let d = self.rng.random_range(min_days..max_days);
        t + Duration::seconds((d * 86_400.0) as i64)
    }
    fn in_history(&mut self) -> DateTime<Utc> {
        let secs = self.rng.random_range(0..HISTORY_DAYS * 86_400);
        self.start + Duration::seconds(secs)
    }
}

const FIRST: &[&str] = &[
    "ana", "ben", "chen", "dara", "eli", "fatima", "gus", "hana", "ivan", "jo", "kai", "lena",
    "mo", "nia", "omar", "pia", "quinn", "rui", "sara", "tom",
];
const LAST: &[&str] = &[
    "lee", "smith", "garcia", "kim", "nguyen", "patel", "müller", "rossi", "silva", "khan",
    "cohen", "novak",
];
const TITLES: &[&str] = &[
    "CFO",
    "VP Sales",
    "Head of Marketing",
    "RevOps Manager",
    "CTO",
    "Analyst",
    "Director of IT",
];
const INDUSTRIES: &[&str] = &[
    "Software",
    "Manufacturing",
    "Retail",
    "Finance",
    "Healthcare",
    "Logistics",
    "Media",
];
const WORDS: &[&str] = &[
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Hooli",
    "Vandelay",
    "Soylent",
    "Tyrell",
    "Wonka",
    "Cyberdyne",
    "Aperture",
    "Massive",
    "Pied",
];
const LOST: &[&str] = &["price", "competitor", "no decision", "timing", "fit"];

async fn insert_chunks<A, C>(db: &C, rows: Vec<A>) -> AppResult<()>
where
    A: ActiveModelTrait + Send,
    C: ConnectionTrait,
{
    // ≤ 20 columns a row: 1,000 rows stay under SQLite's and PostgreSQL's bind limits.
    let mut rows = rows;
    while !rows.is_empty() {
        let rest = rows.split_off(rows.len().min(1_000));
        let chunk = std::mem::replace(&mut rows, rest);
        <A::Entity as EntityTrait>::insert_many(chunk)
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// Seeds `opts.leads` leads with everything around them.
pub async fn seed(db: &DatabaseConnection, opts: &SeedOptions) -> AppResult<SeedReport> {
    let mut g = Gen {
        rng: ChaCha8Rng::seed_from_u64(opts.seed),
        start: anchor() - Duration::days(HISTORY_DAYS),
    };
    let end = anchor();
    let mut report = SeedReport::default();
    let created = g.start;

    // Teams and users.
    let functions = [
        ("Marketing", TeamFunction::Marketing),
        ("Sales Development", TeamFunction::SalesDevelopment),
        ("Sales", TeamFunction::Sales),
        ("Customer Success", TeamFunction::CustomerSuccess),
        ("RevOps", TeamFunction::Revops),
    ];
    let mut teams = Vec::new();
    let mut users = Vec::new();
    let mut sellers = Vec::new();
    let mut sdrs = Vec::new();
    for (name, function) in functions {
        let team_id = g.id();
        teams.push(team::ActiveModel {
            id: Set(team_id),
            name: Set(name.into()),
            function: Set(function),
            created_at: Set(created),
        });
        let n = match function {
            TeamFunction::Sales | TeamFunction::SalesDevelopment => 6,
            _ => 3,
        };
        for i in 0..n {
            let id = g.id();
            let role = if function == TeamFunction::Revops && i == 0 {
                Role::Revops
            } else {
                Role::Member
            };
            let slug = name.to_lowercase().replace(' ', "-");
            users.push(user::ActiveModel {
                id: Set(id),
                email: Set(format!("{slug}.{i}@lockstep.example")),
                name: Set(format!(
                    "{} {}",
                    capitalize(g.pick::<&str>(FIRST)),
                    capitalize(g.pick::<&str>(LAST))
                )),
                team_id: Set(Some(team_id)),
                role: Set(role),
                active: Set(true),
                created_at: Set(created),
                updated_at: Set(created),
            });
            match function {
                TeamFunction::Sales => sellers.push((id, team_id)),
                TeamFunction::SalesDevelopment => sdrs.push((id, team_id)),
                _ => {}
            }
        }
    }
    let admin_id = g.id();
    users.push(user::ActiveModel {
        id: Set(admin_id),
        email: Set(DEMO_ADMIN_EMAIL.into()),
        name: Set("Demo Admin".into()),
        team_id: Set(None),
        role: Set(Role::Admin),
        active: Set(true),
        created_at: Set(created),
        updated_at: Set(created),
    });
    report.teams = teams.len() as u64;
    report.users = users.len() as u64;
    insert_chunks(db, teams).await?;
    insert_chunks(db, users).await?;

    // Accounts in every segment.
    let n_accounts = (opts.leads / 20).max(20);
    let mut accounts = Vec::with_capacity(n_accounts as usize);
    let mut account_refs = Vec::with_capacity(n_accounts as usize);
    for i in 0..n_accounts {
        let id = g.id();
        let segment = *g.pick(&[
            Segment::Smb,
            Segment::Smb,
            Segment::MidMarket,
            Segment::Enterprise,
        ]);
        let name = format!("{} {}", g.pick(WORDS), i);
        let domain = format!(
            "{}{}.example",
            name.split(' ').next().unwrap_or("co").to_lowercase(),
            i
        );
        let r: f64 = g.rng.random();
        let (status, became, churned) = if r < 0.2 {
            let b = g.in_history();
            (AccountStatus::Customer, Some(b), None)
        } else if r < 0.25 {
            let b = g.in_history();
            let c = g.after(b, 30.0, 300.0).min(end - Duration::days(1));
            (AccountStatus::Churned, Some(b), Some(c.max(b)))
        } else {
            (AccountStatus::Prospect, None, None)
        };
        let owner = g.pick(&sellers).0;
        accounts.push(account::ActiveModel {
            id: Set(id),
            name: Set(name),
            domain: Set(Some(domain.clone())),
            industry: Set(Some(g.pick(INDUSTRIES).to_string())),
            segment: Set(segment),
            employees: Set(Some(match segment {
                Segment::Smb => g.rng.random_range(5..200),
                Segment::MidMarket => g.rng.random_range(200..2_000),
                Segment::Enterprise => g.rng.random_range(2_000..50_000),
            })),
            annual_revenue: Set(Some(g.rng.random_range(1_000_000i64..500_000_000) * 10_000)),
            is_target: Set(g.chance(0.15)),
            status: Set(status),
            became_customer_at: Set(became),
            churned_at: Set(churned),
            owner_id: Set(Some(owner)),
            created_by: Set("seed".into()),
            created_at: Set(created),
            updated_at: Set(created),
        });
        account_refs.push((id, domain));
    }
    report.accounts = accounts.len() as u64;
    insert_chunks(db, accounts).await?;

    // Campaigns of every kind and channel.
    let mut campaigns = Vec::new();
    let mut campaign_refs = Vec::new();
    for (i, channel) in Channel::ALL.iter().enumerate() {
        for (j, kind) in CampaignKind::ALL.iter().enumerate() {
            if (i + j) % 2 == 1 {
                continue;
            }
            let id = g.id();
            let starts = g.in_history();
            campaigns.push(campaign::ActiveModel {
                id: Set(id),
                name: Set(format!(
                    "{} {} #{}",
                    channel.as_str().to_lowercase(),
                    kind.as_str().to_lowercase(),
                    campaigns.len() + 1
                )),
                channel: Set(*channel),
                kind: Set(*kind),
                cost: Set(g.rng.random_range(500i64..50_000) * 10_000),
                starts_at: Set(starts),
                ends_at: Set(Some(g.after(starts, 7.0, 90.0))),
                created_at: Set(created),
            });
            campaign_refs.push((id, *channel));
        }
    }
    report.campaigns = campaigns.len() as u64;
    insert_chunks(db, campaigns).await?;

    let bar = if opts.progress {
        let b = indicatif::ProgressBar::new(opts.leads);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} seeding leads [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };

    const CHUNK: u64 = 5_000;
    let mut done = 0u64;
    while done < opts.leads {
        let n = CHUNK.min(opts.leads - done);
        let mut leads = Vec::with_capacity(n as usize);
        let mut changes = Vec::new();
        let mut touches = Vec::new();
        let mut opps = Vec::new();
        for k in 0..n {
            let i = done + k;
            let id = g.id();
            let created_at = g.in_history();
            let source = *g.pick(Channel::ALL);
            let matching: Vec<Uuid> = campaign_refs
                .iter()
                .filter(|(_, c)| *c == source)
                .map(|(id, _)| *id)
                .collect();
            let campaign_id = if matching.is_empty() || g.chance(0.2) {
                None
            } else {
                Some(*g.pick(&matching))
            };
            let (first, last) = (g.pick(FIRST).to_string(), g.pick(LAST).to_string());
            let (account_id, domain) = if g.chance(0.85) {
                let (a, d) = g.pick(&account_refs).clone();
                (Some(a), d)
            } else {
                (
                    None,
                    g.pick(&["gmail.com", "outlook.com", "yahoo.com"])
                        .to_string(),
                )
            };
            let (owner, team) = if source == Channel::Outbound {
                *g.pick(&sdrs)
            } else {
                *g.pick(&sellers)
            };
            // Stage history along the main path, with skips and side exits.
            let mut history = vec![(None, LeadStage::Inquiry.as_str(), created_at)];
            let mut stage = LeadStage::Inquiry;
            let mut t = created_at;
            let steps = [
                (LeadStage::Mql, 0.40, 0.1, 10.0),
                (LeadStage::Sal, 0.70, 0.05, 3.0),
                (LeadStage::Sql, 0.60, 0.5, 10.0),
            ];
            let mut stalled = false;
            let mut s = 0;
            while s < steps.len() {
                let (next, p, lo, hi) = steps[s];
                if !g.chance(p) {
                    stalled = true;
                    break;
                }
                // Some leads skip straight from INQUIRY to SQL.
                let (next, skip) = if next == LeadStage::Mql && g.chance(0.08) {
                    (LeadStage::Sql, 2)
                } else {
                    (next, 0)
                };
                let at = g.after(t, lo, hi);
                if at >= end {
                    stalled = false;
                    break;
                }
                history.push((Some(stage.as_str()), next.as_str(), at));
                stage = next;
                t = at;
                s += 1 + skip;
            }
            let mut converted = None;
            if !stalled && stage == LeadStage::Sql && g.chance(0.6) {
                let at = g.after(t, 1.0, 14.0);
                if at < end {
                    converted = Some(at);
                }
            } else if stalled && g.chance(0.5) {
                let at = g.after(t, 5.0, 60.0);
                if at < end {
                    let exit = if g.chance(0.6) {
                        LeadStage::Recycled
                    } else {
                        LeadStage::Disqualified
                    };
                    history.push((Some(stage.as_str()), exit.as_str(), at));
                    stage = exit;
                }
            }
            let mut converted_opportunity_id = None;
            if let Some(at) = converted {
                let opp_id = g.id();
                let account = account_id.unwrap_or_else(|| g.pick(&account_refs).0);
                history.push((Some(stage.as_str()), LeadStage::Converted.as_str(), at));
                stage = LeadStage::Converted;
                converted_opportunity_id = Some(opp_id);
                let sourced_by = match source {
                    Channel::Outbound => SourcedBy::SalesDevelopment,
                    Channel::Partner => SourcedBy::Partner,
                    _ => SourcedBy::Marketing,
                };
                let seller = g_owner(&sellers, &mut g);
                opps.push(gen_opportunity(
                    &mut g,
                    opp_id,
                    account,
                    Some(id),
                    seller,
                    sourced_by,
                    at,
                    end,
                    &mut changes,
                ));
            }
            // First entries of MQL, SAL, SQL, CONVERTED (or a later main-path stage).
            let mut entry: [Option<DateTime<Utc>>; 4] = [None; 4];
            for (_, to, at) in &history {
                let rank = LeadStage::ALL
                    .iter()
                    .find(|s| s.as_str() == *to)
                    .and_then(|s| s.rank())
                    .unwrap_or(0);
                for (k, e) in entry.iter_mut().enumerate() {
                    if rank >= k as u8 + 2 && e.is_none() {
                        *e = Some(*at);
                    }
                }
            }
            for (from, to, at) in history {
                changes.push(stage_change::ActiveModel {
                    id: Set(g.id()),
                    lead_id: Set(Some(id)),
                    opportunity_id: Set(None),
                    from_stage: Set(from),
                    to_stage: Set(to),
                    at: Set(at),
                    actor: Set("seed".into()),
                    actor_user_id: Set(Some(owner)),
                    reason: Set(None),
                });
            }
            // About three marketing touches a lead, some before it was created.
            let n_touch = g.rng.random_range(0..=6);
            for _ in 0..n_touch {
                let at = g
                    .after(created_at, -30.0, 60.0)
                    .min(end - Duration::seconds(1));
                let campaign = campaign_id
                    .filter(|_| g.chance(0.5))
                    .unwrap_or_else(|| g.pick(&campaign_refs).0);
                touches.push(touchpoint::ActiveModel {
                    id: Set(g.id()),
                    lead_id: Set(id),
                    campaign_id: Set(campaign),
                    occurred_at: Set(at),
                    created_at: Set(at),
                });
            }
            // Speed to lead: most leads get a first sales touch within hours.
            let first_touch_at = if g.chance(0.85) {
                let hours: f64 = g.rng.random_range(0.05..72.0f64).powf(1.3) / 4.0;
                Some((created_at + Duration::seconds((hours * 3600.0) as i64)).min(end))
            } else {
                None
            };
            leads.push(lead::ActiveModel {
                id: Set(id),
                email: Set(format!("{first}.{last}.{i}@{domain}")),
                first_name: Set(Some(capitalize(&first))),
                last_name: Set(Some(capitalize(&last))),
                title: Set(Some(g.pick(TITLES).to_string())),
                company: Set(None),
                account_id: Set(account_id),
                source: Set(source),
                campaign_id: Set(campaign_id),
                score: Set(g.rng.random_range(0..100)),
                stage: Set(stage),
                owner_id: Set(Some(owner)),
                team_id: Set(Some(team)),
                converted_opportunity_id: Set(converted_opportunity_id),
                first_touch_at: Set(first_touch_at),
                mql_at: Set(entry[0]),
                sal_at: Set(entry[1]),
                sql_at: Set(entry[2]),
                converted_at: Set(entry[3]),
                created_by: Set("seed".into()),
                created_at: Set(created_at),
                updated_at: Set(created_at),
            });
        }
        // Some opportunities come without a lead (sales- or partner-sourced).
        for _ in 0..(n / 100) {
            let opp_id = g.id();
            let account = g.pick(&account_refs).0;
            let at = g.in_history();
            let sourced_by = *g.pick(&[SourcedBy::Sales, SourcedBy::Partner]);
            let owner = g_owner(&sellers, &mut g);
            opps.push(gen_opportunity(
                &mut g,
                opp_id,
                account,
                None,
                owner,
                sourced_by,
                at,
                end,
                &mut changes,
            ));
        }
        report.leads += leads.len() as u64;
        report.touchpoints += touches.len() as u64;
        report.stage_changes += changes.len() as u64;
        report.opportunities += opps.len() as u64;
        // The bulk load writes around the unit of work; the rollups are
        // rebuilt and the data version raised once it is done.
        #[allow(clippy::disallowed_methods)]
        let txn = api::db::begin_write(db).await?;
        insert_chunks(&txn, leads).await?;
        insert_chunks(&txn, opps).await?;
        insert_chunks(&txn, changes).await?;
        insert_chunks(&txn, touches).await?;
        txn.commit().await?;
        done += n;
        if let Some(b) = &bar {
            b.set_position(done);
        }
    }
    if let Some(b) = bar {
        b.finish();
    }
    api::metrics::rollups::rebuild(db).await?;
    api::metrics::cache::bump(db).await?;
    Ok(report)
}

fn g_owner(sellers: &[(Uuid, Uuid)], g: &mut Gen) -> Uuid {
    g.pick(sellers).0
}

#[allow(clippy::too_many_arguments)]
fn gen_opportunity(
    g: &mut Gen,
    id: Uuid,
    account: Uuid,
    lead: Option<Uuid>,
    owner: Uuid,
    sourced_by: SourcedBy,
    created_at: DateTime<Utc>,
    end: DateTime<Utc>,
    changes: &mut Vec<stage_change::ActiveModel>,
) -> opportunity::ActiveModel {
    let amount = g.rng.random_range(50i64..2_500) * 100 * 10_000;
    let mut push =
        |g: &mut Gen, from: Option<OpportunityStage>, to: OpportunityStage, at: DateTime<Utc>| {
            changes.push(stage_change::ActiveModel {
                id: Set(g.id()),
                lead_id: Set(None),
                opportunity_id: Set(Some(id)),
                from_stage: Set(from.map(|s| s.as_str())),
                to_stage: Set(to.as_str()),
                at: Set(at),
                actor: Set("seed".into()),
                actor_user_id: Set(Some(owner)),
                reason: Set(None),
            });
        };
    push(g, None, OpportunityStage::Discovery, created_at);
    let mut stage = OpportunityStage::Discovery;
    let mut t = created_at;
    let mut closed_at = None;
    let mut lost_reason = None;
    for next in [OpportunityStage::Proposal, OpportunityStage::Negotiation] {
        let at = g.after(t, 3.0, 25.0);
        if at >= end || !g.chance(0.75) {
            break;
        }
        push(g, Some(stage), next, at);
        stage = next;
        t = at;
    }
    let close_at = g.after(t, 2.0, 40.0);
    if close_at < end && g.chance(0.85) {
        let won = g.chance(if stage == OpportunityStage::Negotiation {
            0.55
        } else {
            0.2
        });
        let to = if won {
            OpportunityStage::ClosedWon
        } else {
            OpportunityStage::ClosedLost
        };
        if !won {
            lost_reason = Some(g.pick(LOST).to_string());
        }
        push(g, Some(stage), to, close_at);
        stage = to;
        closed_at = Some(close_at);
    }
    opportunity::ActiveModel {
        id: Set(id),
        name: Set(format!("Deal {}", &id.simple().to_string()[..8])),
        account_id: Set(account),
        lead_id: Set(lead),
        owner_id: Set(Some(owner)),
        stage: Set(stage),
        amount: Set(amount),
        currency: Set("USD".into()),
        expected_close_date: Set(Some((created_at + Duration::days(45)).date_naive())),
        closed_at: Set(closed_at),
        lost_reason: Set(lost_reason),
        sourced_by: Set(sourced_by),
        created_by: Set("seed".into()),
        created_at: Set(created_at),
        updated_at: Set(closed_at.unwrap_or(created_at)),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}
