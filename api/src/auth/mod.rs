//! Who is calling, and what they may do.

pub mod jwt;

use crate::error::{AppError, AppResult};
use entity::enums::Role;
use entity::user;
use sea_orm::DatabaseConnection;
use uuid::Uuid;

pub use jwt::{Claims, JwtKeys};

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub subject: String,
    pub role: Role,
    /// The user record the token names, when it names one.
    pub user: Option<user::Model>,
    pub team_id: Option<Uuid>,
}

impl Caller {
    /// Resolves verified claims to a caller. MEMBER and REVOPS tokens must
    /// name an existing, active user (by id or e-mail) of the same role, so
    /// deactivating a user ends their tokens; other roles may name a service
    /// account with no user record.
    pub async fn from_claims(db: &DatabaseConnection, claims: Claims) -> AppResult<Caller> {
        let user = crate::records::users::service::find_by_subject(db, &claims.sub).await?;
        let needs_user = matches!(claims.role, Role::Member | Role::Revops);
        let unauth = |m: &str| Err(AppError::Unauthenticated(m.to_owned()));
        let team_id = match &user {
            None if needs_user => return unauth("token subject is not a known user"),
            None => match &claims.team {
                Some(t) => Some(
                    Uuid::parse_str(t)
                        .map_err(|_| AppError::Unauthenticated("invalid token: bad team".into()))?,
                ),
                None => None,
            },
            Some(u) => {
                if !u.active {
                    return unauth("user is deactivated");
                }
                if u.role != claims.role {
                    return unauth("token role does not match the user's role");
                }
                if let Some(t) = &claims.team
                    && Some(t.as_str()) != u.team_id.map(|id| id.to_string()).as_deref()
                {
                    return unauth("token team does not match the user's team");
                }
                u.team_id
            }
        };
        Ok(Caller {
            subject: claims.sub,
            role: claims.role,
            user,
            team_id,
        })
    }

    /// Fails with FORBIDDEN unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role], action: &str) -> AppResult<()> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(AppError::forbidden(format!(
                "role {} may not {action}",
                self.role.as_str()
            )))
        }
    }

    pub fn user_id(&self) -> Option<Uuid> {
        self.user.as_ref().map(|u| u.id)
    }

    /// May this caller see the personal fields (e-mail, names, title) of a
    /// record created by `created_by`?
    pub fn sees_personal_data(&self, created_by: &str) -> bool {
        match self.role {
            Role::Admin | Role::Revops | Role::Member => true,
            Role::Viewer => false,
            Role::Integration => created_by == self.subject,
        }
    }

    /// Only ADMIN and INTEGRATION callers may backfill history times.
    pub fn may_backfill(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Integration)
    }
}

/// Roles that may read records.
pub const READERS: &[Role] = &[
    Role::Admin,
    Role::Revops,
    Role::Member,
    Role::Viewer,
    Role::Integration,
];
/// Roles that work leads, accounts, opportunities and stage changes.
pub const RECORD_WRITERS: &[Role] = &[Role::Admin, Role::Revops, Role::Member, Role::Integration];
/// Roles that manage campaigns.
pub const CAMPAIGN_WRITERS: &[Role] = &[Role::Admin, Role::Revops, Role::Integration];
/// Roles that manage teams and users.
pub const ADMINS: &[Role] = &[Role::Admin];
/// Roles that manage goals, compensation plans and their links.
pub const PLANNERS: &[Role] = &[Role::Admin, Role::Revops];
/// Roles that may ask for compensation data at all (a MEMBER only their
/// own plans and their team's: see `compensation::service::may_read`).
pub const COMPENSATION_READERS: &[Role] = &[Role::Admin, Role::Revops, Role::Member];
