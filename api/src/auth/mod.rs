//! Bearer authentication and Ops permissions. A presented secret is hashed
//! and looked up; results are cached briefly so the hot path (heartbeats)
//! does not pay a query per request.

mod cache;
mod http;
mod store;

pub use cache::{AuthCache, CREDENTIAL_CHANGES_POLL, LAST_USED_FLUSH};
pub(crate) use http::routes;
pub use http::{rotation_grace, MAX_ROTATION_GRACE_SECS};
pub use store::{
    hash_secret, random_secret, Authenticated, Credential, CredentialKind, CredentialStatus,
    NewSecret, Principal, Role, CREDENTIALS_TOPIC,
};

use crate::db::AuditContext;
use crate::error::ApiError;
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use uuid::Uuid;

/// What an Ops agent may do. Roles grant fixed sets (see [`Role::grants`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    PluginsRead,
    PluginsToggle,
    VersionsWrite,
    AuditRead,
    RulesReload,
    /// Approve, reject and roll back healing patches; resume a suspended rule.
    AutohealApprove,
    /// Create and change interop event mappings.
    InteropWrite,
    /// Retry dead letters of the outbox.
    OutboxManage,
    /// Send upgrade notifications.
    NotificationsSend,
    /// Acknowledge and resolve alerts.
    AlertsManage,
    FlagsRead,
    FlagsWrite,
    /// List, revoke and rotate every credential (admins only).
    CredentialsManage,
    /// Query and stream the platform's structured logs, and read the error groups.
    LogsRead,
    /// Resolve, ignore and reopen error groups.
    ErrorsManage,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PluginsRead => "plugins:read",
            Self::PluginsToggle => "plugins:toggle",
            Self::VersionsWrite => "versions:write",
            Self::AuditRead => "audit:read",
            Self::RulesReload => "rules:reload",
            Self::AutohealApprove => "autoheal:approve",
            Self::InteropWrite => "interop:write",
            Self::OutboxManage => "outbox:manage",
            Self::NotificationsSend => "notifications:send",
            Self::AlertsManage => "alerts:manage",
            Self::FlagsRead => "flags:read",
            Self::FlagsWrite => "flags:write",
            Self::CredentialsManage => "credentials:manage",
            Self::LogsRead => "logs:read",
            Self::ErrorsManage => "errors:manage",
        }
    }
}

impl Role {
    /// viewer reads (installations, flags); operator also acts on
    /// installations and changes flags; admin also manages the version
    /// registry and the credentials, and reads the audit log.
    pub fn grants(self, permission: Permission) -> bool {
        match self {
            Role::Admin => true,
            Role::Operator => matches!(
                permission,
                Permission::PluginsRead
                    | Permission::PluginsToggle
                    | Permission::RulesReload
                    | Permission::AutohealApprove
                    | Permission::InteropWrite
                    | Permission::OutboxManage
                    | Permission::NotificationsSend
                    | Permission::AlertsManage
                    | Permission::FlagsRead
                    | Permission::FlagsWrite
                    | Permission::LogsRead
                    | Permission::ErrorsManage
            ),
            Role::Viewer => matches!(permission, Permission::PluginsRead | Permission::FlagsRead),
        }
    }
}

async fn principal(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    let secret = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|token| !token.is_empty())
        .ok_or(ApiError::Unauthorized)?;
    Ok(state.auth.principal(secret).await?.principal)
}

/// The request's id (`x-request-id`, set by the middleware when the client sent none), for
/// the audit log.
pub(crate) fn request_id(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// A request made with a merchant API key.
pub struct Merchant {
    pub merchant_id: Uuid,
}

impl FromRequestParts<AppState> for Merchant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match principal(parts, state).await? {
            Principal::Merchant { merchant_id } => Ok(Self { merchant_id }),
            _ => Err(ApiError::forbidden(
                "this endpoint needs a merchant API key",
            )),
        }
    }
}

/// A request made with Sira's token.
pub struct Sira {
    pub credential_id: Uuid,
}

impl FromRequestParts<AppState> for Sira {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match principal(parts, state).await? {
            Principal::Sira { credential_id } => Ok(Self { credential_id }),
            _ => Err(ApiError::forbidden("this endpoint needs a Sira token")),
        }
    }
}

/// A request made with an Ops agent's token.
pub struct Ops {
    pub agent_id: Uuid,
    pub role: Role,
    pub request_id: Option<String>,
}

impl Ops {
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.role.grants(permission) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "role {} lacks permission {}",
                self.role.as_str(),
                permission.as_str()
            )))
        }
    }

    pub fn audit(&self) -> AuditContext {
        AuditContext {
            actor_kind: "ops_agent",
            actor_id: Some(self.agent_id),
            request_id: self.request_id.clone(),
        }
    }
}

impl FromRequestParts<AppState> for Ops {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match principal(parts, state).await? {
            Principal::Ops { agent_id, role } => {
                crate::logs::OpsActor::note(&parts.extensions, agent_id);
                Ok(Self {
                    agent_id,
                    role,
                    request_id: request_id(&parts.headers),
                })
            }
            _ => Err(ApiError::forbidden(
                "this endpoint needs an Ops agent token",
            )),
        }
    }
}

/// A request made with any valid credential (merchant key, Ops token, Sira
/// token), for endpoints every caller may use (flag evaluation).
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        principal(parts, state).await.map(Caller)
    }
}
