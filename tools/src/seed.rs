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
    let report = generate(opts, &mut DbSink { db }).await?;
    // Statistics for every table before the rollups are built from them (and
    // for the first queries): autovacuum may be off, or not have run yet.
    api::db::refresh_statistics(db).await?;
    api::metrics::rollups::rebuild(db).await?;
    api::metrics::cache::bump(db).await?;
    Ok(report)
}

/// Where generated rows go: a database ([`seed`]) or an import file
/// ([`write_jsonl`]). Both get the same rows for the same options.
trait Sink {
    async fn base(
        &mut self,
        teams: Vec<team::ActiveModel>,
        users: Vec<user::ActiveModel>,
        accounts: Vec<account::ActiveModel>,
        campaigns: Vec<campaign::ActiveModel>,
    ) -> AppResult<()>;
    async fn chunk(
        &mut self,
        leads: Vec<lead::ActiveModel>,
        opps: Vec<opportunity::ActiveModel>,
        changes: Vec<stage_change::ActiveModel>,
        touches: Vec<touchpoint::ActiveModel>,
    ) -> AppResult<()>;
}

struct DbSink<'a> {
    db: &'a DatabaseConnection,
}

impl Sink for DbSink<'_> {
    async fn base(
        &mut self,
        teams: Vec<team::ActiveModel>,
        users: Vec<user::ActiveModel>,
        accounts: Vec<account::ActiveModel>,
        campaigns: Vec<campaign::ActiveModel>,
    ) -> AppResult<()> {
        insert_chunks(self.db, teams).await?;
        insert_chunks(self.db, users).await?;
        insert_chunks(self.db, accounts).await?;
        insert_chunks(self.db, campaigns).await
    }

    async fn chunk(
        &mut self,
        leads: Vec<lead::ActiveModel>,
        opps: Vec<opportunity::ActiveModel>,
        changes: Vec<stage_change::ActiveModel>,
        touches: Vec<touchpoint::ActiveModel>,
    ) -> AppResult<()> {
        // The bulk load writes around the unit of work; the rollups are
        // rebuilt and the data version raised once it is done.
        #[allow(clippy::disallowed_methods)]
        let txn = api::db::begin_write(self.db).await?;
        insert_chunks(&txn, leads).await?;
        insert_chunks(&txn, opps).await?;
        insert_chunks(&txn, changes).await?;
        insert_chunks(&txn, touches).await?;
        txn.commit().await?;
        Ok(())
    }
}

async fn generate(opts: &SeedOptions, sink: &mut impl Sink) -> AppResult<SeedReport> {
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
    sink.base(teams, users, accounts, campaigns).await?;

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
                // Every seeded lead is created at INQUIRY.
                inquiry_at: Set(Some(created_at)),
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
        sink.chunk(leads, opps, changes, touches).await?;
        done += n;
        if let Some(b) = &bar {
            b.set_position(done);
        }
    }
    if let Some(b) = bar {
        b.finish();
    }
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

/// Writes the dataset [`seed`] would insert as a `lockstep import` file
/// (docs/import.md), keyed by external ids of the system `seed` (the
/// generated ids). Teams are left out (users come without one, leads
/// without a team); everything else — accounts, campaigns, leads with their
/// histories and touches, opportunities with theirs — is in it.
pub async fn write_jsonl(
    out: impl std::io::Write,
    opts: &SeedOptions,
) -> Result<SeedReport, api::error::Failure> {
    let mut sink = JsonlSink {
        out,
        emails: std::collections::HashMap::new(),
        lines: 0,
    };
    let report = generate(opts, &mut sink)
        .await
        .map_err(api::error::Failure)?;
    sink.out
        .flush()
        .map_err(|e| api::error::Failure(api::error::AppError::internal(e)))?;
    Ok(report)
}

/// The system the generated file's external ids are in.
pub const JSONL_SYSTEM: &str = "seed";

struct JsonlSink<W> {
    out: W,
    /// Users' e-mails by id (owners are named by e-mail, actors by external id).
    emails: std::collections::HashMap<Uuid, String>,
    lines: u64,
}

fn model<A>(am: A) -> AppResult<<A::Entity as EntityTrait>::Model>
where
    A: ActiveModelTrait + sea_orm::TryIntoModel<<A::Entity as EntityTrait>::Model>,
{
    am.try_into_model().map_err(api::error::AppError::internal)
}

fn money(units: i64) -> String {
    rust_decimal::Decimal::new(units, entity::money::SCALE)
        .normalize()
        .to_string()
}

fn time(t: DateTime<Utc>) -> serde_json::Value {
    serde_json::Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

impl<W: std::io::Write> JsonlSink<W> {
    fn line(&mut self, mut v: serde_json::Value) -> AppResult<()> {
        if let Some(obj) = v.as_object_mut() {
            obj.retain(|_, v| !v.is_null());
        }
        serde_json::to_writer(&mut self.out, &v).map_err(api::error::AppError::internal)?;
        self.out
            .write_all(b"\n")
            .map_err(api::error::AppError::internal)?;
        self.lines += 1;
        Ok(())
    }

    fn email(&self, id: Option<Uuid>) -> serde_json::Value {
        id.and_then(|id| self.emails.get(&id))
            .map(|e| serde_json::Value::String(e.clone()))
            .unwrap_or(serde_json::Value::Null)
    }

    /// A record's changes after its creation entry (a lead's CONVERTED
    /// comes from its opportunity's line).
    fn history(
        &mut self,
        field: &str,
        id: Uuid,
        changes: &[&stage_change::Model],
        lost_reason: Option<&str>,
    ) -> AppResult<()> {
        let items: Vec<serde_json::Value> = changes
            .iter()
            .filter(|c| c.from_stage.is_some() && c.to_stage != LeadStage::Converted.as_str())
            .map(|c| {
                serde_json::json!({
                    "fromStage": c.from_stage,
                    "toStage": c.to_stage,
                    "at": time(c.at),
                    "reason": c.reason,
                    "lostReason": (c.to_stage == OpportunityStage::ClosedLost.as_str())
                        .then_some(lost_reason)
                        .flatten(),
                    "actorExternalId": c.actor_user_id.map(|u| u.to_string()),
                })
            })
            .map(|mut v| {
                if let Some(o) = v.as_object_mut() {
                    o.retain(|_, v| !v.is_null());
                }
                v
            })
            .collect();
        if items.is_empty() {
            return Ok(());
        }
        self.line(serde_json::json!({
            "type": "stage_change",
            "system": JSONL_SYSTEM,
            field: id.to_string(),
            "changes": items,
        }))
    }

    fn opportunity(
        &mut self,
        o: &opportunity::Model,
        changes: &[&stage_change::Model],
    ) -> AppResult<()> {
        let creator = changes.first().and_then(|c| c.actor_user_id);
        self.line(serde_json::json!({
            "type": "opportunity",
            "system": JSONL_SYSTEM,
            "externalId": o.id.to_string(),
            "name": o.name,
            "accountExternalId": o.account_id.to_string(),
            "leadExternalId": o.lead_id.map(|l| l.to_string()),
            "ownerEmail": self.email(o.owner_id),
            "amount": money(o.amount),
            "expectedCloseDate": o.expected_close_date.map(|d| d.to_string()),
            "sourcedBy": o.sourced_by,
            "createdAt": time(o.created_at),
            "actorExternalId": creator.map(|u| u.to_string()),
        }))?;
        self.history(
            "opportunityExternalId",
            o.id,
            changes,
            o.lost_reason.as_deref(),
        )
    }
}

impl<W: std::io::Write> Sink for JsonlSink<W> {
    async fn base(
        &mut self,
        _teams: Vec<team::ActiveModel>,
        users: Vec<user::ActiveModel>,
        accounts: Vec<account::ActiveModel>,
        campaigns: Vec<campaign::ActiveModel>,
    ) -> AppResult<()> {
        for u in users {
            let u = model(u)?;
            self.emails.insert(u.id, u.email.clone());
            self.line(serde_json::json!({
                "type": "user",
                "system": JSONL_SYSTEM,
                "externalId": u.id.to_string(),
                "email": u.email,
                "name": u.name,
                "role": u.role,
            }))?;
        }
        for a in accounts {
            let a = model(a)?;
            self.line(serde_json::json!({
                "type": "account",
                "system": JSONL_SYSTEM,
                "externalId": a.id.to_string(),
                "name": a.name,
                "domain": a.domain,
                "industry": a.industry,
                "segment": a.segment,
                "employees": a.employees,
                "annualRevenue": a.annual_revenue.map(money),
                "isTarget": a.is_target,
                "status": a.status,
                "becameCustomerAt": a.became_customer_at.map(time),
                "churnedAt": a.churned_at.map(time),
                "ownerEmail": self.email(a.owner_id),
                "createdAt": time(a.created_at),
            }))?;
        }
        for c in campaigns {
            let c = model(c)?;
            self.line(serde_json::json!({
                "type": "campaign",
                "system": JSONL_SYSTEM,
                "externalId": c.id.to_string(),
                "name": c.name,
                "channel": c.channel,
                "kind": c.kind,
                "cost": money(c.cost),
                "startsAt": time(c.starts_at),
                "endsAt": c.ends_at.map(time),
            }))?;
        }
        Ok(())
    }

    async fn chunk(
        &mut self,
        leads: Vec<lead::ActiveModel>,
        opps: Vec<opportunity::ActiveModel>,
        changes: Vec<stage_change::ActiveModel>,
        touches: Vec<touchpoint::ActiveModel>,
    ) -> AppResult<()> {
        use std::collections::HashMap;
        let changes = changes
            .into_iter()
            .map(model)
            .collect::<AppResult<Vec<_>>>()?;
        let touches = touches
            .into_iter()
            .map(model)
            .collect::<AppResult<Vec<_>>>()?;
        let opps = opps.into_iter().map(model).collect::<AppResult<Vec<_>>>()?;
        let mut by_record: HashMap<Uuid, Vec<&stage_change::Model>> = HashMap::new();
        for c in &changes {
            if let Some(id) = c.lead_id.or(c.opportunity_id) {
                by_record.entry(id).or_default().push(c);
            }
        }
        let mut touches_of: HashMap<Uuid, Vec<&touchpoint::Model>> = HashMap::new();
        for t in &touches {
            touches_of.entry(t.lead_id).or_default().push(t);
        }
        let opp_of: HashMap<Uuid, &opportunity::Model> = opps
            .iter()
            .filter_map(|o| o.lead_id.map(|l| (l, o)))
            .collect();
        let none = Vec::new();
        for l in leads {
            let l = model(l)?;
            let history = by_record.get(&l.id).unwrap_or(&none);
            let creation = history.first();
            self.line(serde_json::json!({
                "type": "lead",
                "system": JSONL_SYSTEM,
                "externalId": l.id.to_string(),
                "email": l.email,
                "firstName": l.first_name,
                "lastName": l.last_name,
                "title": l.title,
                "company": l.company,
                "accountExternalId": l.account_id.map(|a| a.to_string()),
                "source": l.source,
                "campaignExternalId": l.campaign_id.map(|c| c.to_string()),
                "score": l.score,
                "ownerEmail": self.email(l.owner_id),
                "stage": creation.map(|c| c.to_stage.clone()),
                "createdAt": time(l.created_at),
                "firstTouchAt": l.first_touch_at.map(time),
                "reason": creation.and_then(|c| c.reason.clone()),
                "actorExternalId": creation.and_then(|c| c.actor_user_id).map(|u| u.to_string()),
            }))?;
            self.history("leadExternalId", l.id, history, None)?;
            for t in touches_of.get(&l.id).map(|v| v.as_slice()).unwrap_or(&[]) {
                self.line(serde_json::json!({
                    "type": "touchpoint",
                    "system": JSONL_SYSTEM,
                    "leadExternalId": l.id.to_string(),
                    "campaignExternalId": t.campaign_id.to_string(),
                    "occurredAt": time(t.occurred_at),
                }))?;
            }
            if let Some(o) = opp_of.get(&l.id) {
                let h = by_record.get(&o.id).unwrap_or(&none);
                self.opportunity(o, h)?;
            }
        }
        for o in opps.iter().filter(|o| o.lead_id.is_none()) {
            let h = by_record.get(&o.id).unwrap_or(&none);
            self.opportunity(o, h)?;
        }
        Ok(())
    }
}
