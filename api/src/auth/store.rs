//! Merchants, Ops agents, Sira tokens and the bearer secrets that identify
//! them. A secret is 32 random bytes, shown once; the store keeps its SHA-256.
//! (A slow password hash buys nothing for 256-bit random secrets and would cost
//! every heartbeat.)

use crate::db::{
    insert_audit, notify, on_pool, on_tx, on_write_pool, AuditContext, Store, StoreError, Tx,
};
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// An Ops agent's role; permissions follow from it (see `api::auth`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Operator,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Operator => "operator",
            Self::Viewer => "viewer",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "admin" => Some(Self::Admin),
            "operator" => Some(Self::Operator),
            "viewer" => Some(Self::Viewer),
            _ => None,
        }
    }
}

/// Who a valid bearer secret belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Merchant { merchant_id: Uuid },
    Ops { agent_id: Uuid, role: Role },
    Sira { credential_id: Uuid },
}

/// A freshly minted secret: the only time its plain text exists.
#[derive(Debug)]
pub struct NewSecret {
    pub credential_id: Uuid,
    pub secret: String,
}

/// A valid credential: whose it is, and until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    pub principal: Principal,
    pub credential_id: Uuid,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A credential row joined with its agent's role.
#[derive(Debug, sqlx::FromRow)]
struct CredentialRow {
    kind: CredentialKind,
    merchant_id: Option<Uuid>,
    agent_id: Option<Uuid>,
    credential_id: Uuid,
    role: Option<String>,
    expires_at: Option<DateTime<Utc>>,
}

/// The stored form of a secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn mint(prefix: &str) -> String {
    format!("{prefix}_{}", random_secret())
}

/// 256 random bits in hex: the body of every secret (credentials, console sessions).
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The kinds of credential, as `--kind` and the API name them.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum CredentialKind {
    Merchant,
    Ops,
    Sira,
}

impl CredentialKind {
    /// The stored `kind` column.
    fn as_str(self) -> &'static str {
        match self {
            Self::Merchant => "merchant_key",
            Self::Ops => "ops_token",
            Self::Sira => "sira_token",
        }
    }

    fn parse(stored: &str) -> Option<Self> {
        match stored {
            "merchant_key" => Some(Self::Merchant),
            "ops_token" => Some(Self::Ops),
            "sira_token" => Some(Self::Sira),
            _ => None,
        }
    }

    /// Its name in `--kind`, `?kind=` and listings.
    pub fn label(self) -> &'static str {
        match self {
            Self::Merchant => "merchant",
            Self::Ops => "ops",
            Self::Sira => "sira",
        }
    }

    /// The prefix of its secrets, which tells a reader of a leaked secret what it opens.
    fn prefix(self) -> &'static str {
        match self {
            Self::Merchant => "ahm",
            Self::Ops => "aho",
            Self::Sira => "ahs",
        }
    }
}

crate::db::text_column!(CredentialKind);
crate::db::text_column!(Role);

/// Where a credential stands at a given time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CredentialStatus {
    #[default]
    Active,
    Expired,
    Revoked,
}

/// A credential as listed: who it belongs to and its lifecycle, never its secret.
#[derive(Clone, Debug, PartialEq, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Credential {
    pub id: Uuid,
    pub kind: CredentialKind,
    /// The merchant's name, the agent's email, or the Sira token's name.
    pub owner: String,
    pub merchant_id: Option<Uuid>,
    pub agent_id: Option<Uuid>,
    /// An Ops token's role.
    pub role: Option<String>,
    #[sqlx(skip)]
    pub status: CredentialStatus,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
    /// The credential this one replaced, when it was made by a rotation.
    pub rotated_from: Option<Uuid>,
    /// The name it was created with (a rotation gives it to the new credential).
    #[serde(skip)]
    #[schema(ignore)]
    name: String,
}

impl CredentialStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }
}

impl Credential {
    fn status_at(&self, now: DateTime<Utc>) -> CredentialStatus {
        if self.revoked_at.is_some() {
            CredentialStatus::Revoked
        } else if self.expires_at.is_some_and(|at| at <= now) {
            CredentialStatus::Expired
        } else {
            CredentialStatus::Active
        }
    }

    fn with_status(mut self, now: DateTime<Utc>) -> Self {
        self.status = self.status_at(now);
        self
    }
}

const CREDENTIAL_COLUMNS: &str =
    "SELECT c.id, c.kind, COALESCE(m.name, a.email, c.name) AS owner, \
     c.merchant_id, c.agent_id, a.role, c.created_at, c.last_used_at, c.expires_at, c.revoked_at, \
     c.revoked_reason, c.rotated_from, c.name \
     FROM credentials c LEFT JOIN merchants m ON m.id = c.merchant_id \
     LEFT JOIN ops_agents a ON a.id = c.agent_id";

/// The invalidation topic of a credential's revocation or rotation.
pub const CREDENTIALS_TOPIC: &str = "credentials";

/// A credential row about to be written, for one owner.
struct CredentialRecord<'a> {
    kind: CredentialKind,
    merchant_id: Option<Uuid>,
    agent_id: Option<Uuid>,
    name: &'a str,
    expires_at: Option<DateTime<Utc>>,
    rotated_from: Option<Uuid>,
}

impl CredentialRecord<'_> {
    /// Mints its secret and inserts the row on `tx`; the secret is returned, never stored.
    async fn insert(&self, tx: &mut Tx<'_>, now: DateTime<Utc>) -> Result<NewSecret, sqlx::Error> {
        let secret = NewSecret {
            credential_id: Uuid::now_v7(),
            secret: mint(self.kind.prefix()),
        };
        on_tx!(tx, c => execute sqlx::query(
            "INSERT INTO credentials (id, kind, secret_sha256, merchant_id, agent_id, name, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(secret.credential_id)
        .bind(self.kind)
        .bind(hash_secret(&secret.secret))
        .bind(self.merchant_id)
        .bind(self.agent_id)
        .bind(self.name)
        .bind(now))?;
        // Most credentials have neither; their insert is the same as before migration 0017
        // (which the tests of older stores create credentials on).
        if self.expires_at.is_some() || self.rotated_from.is_some() {
            on_tx!(tx, c => execute sqlx::query(
                "UPDATE credentials SET expires_at = $1, rotated_from = $2 WHERE id = $3",
            )
            .bind(self.expires_at)
            .bind(self.rotated_from)
            .bind(secret.credential_id))?;
        }
        Ok(secret)
    }
}

impl Store {
    pub async fn create_merchant(
        &self,
        name: &str,
        email: &str,
        now: DateTime<Utc>,
    ) -> Result<(Uuid, NewSecret), StoreError> {
        self.create_merchant_until(name, email, None, now).await
    }

    /// A merchant and its API key, which stops working at `expires_at` (if given).
    pub async fn create_merchant_until(
        &self,
        name: &str,
        email: &str,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(Uuid, NewSecret), StoreError> {
        let merchant_id = Uuid::now_v7();
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        on_tx!(tx, c => execute sqlx::query(
            "INSERT INTO merchants (id, name, email, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(merchant_id)
        .bind(name)
        .bind(email)
        .bind(now))?;
        let secret = CredentialRecord {
            kind: CredentialKind::Merchant,
            merchant_id: Some(merchant_id),
            agent_id: None,
            name,
            expires_at,
            rotated_from: None,
        }
        .insert(tx, now)
        .await?;
        transaction.commit().await?;
        Ok((merchant_id, secret))
    }

    pub async fn create_ops_agent(
        &self,
        email: &str,
        role: Role,
        now: DateTime<Utc>,
    ) -> Result<(Uuid, NewSecret), StoreError> {
        self.create_ops_agent_until(email, role, None, now).await
    }

    /// An Ops agent and its token, which stops working at `expires_at` (if given).
    pub async fn create_ops_agent_until(
        &self,
        email: &str,
        role: Role,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(Uuid, NewSecret), StoreError> {
        let agent_id = Uuid::now_v7();
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        let inserted = on_tx!(tx, c => execute sqlx::query(
            "INSERT INTO ops_agents (id, email, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (email) DO NOTHING",
        )
        .bind(agent_id)
        .bind(email)
        .bind(role.as_str())
        .bind(now))?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "an Ops agent with email {email} already exists"
            )));
        }
        let secret = CredentialRecord {
            kind: CredentialKind::Ops,
            merchant_id: None,
            agent_id: Some(agent_id),
            name: email,
            expires_at,
            rotated_from: None,
        }
        .insert(tx, now)
        .await?;
        transaction.commit().await?;
        Ok((agent_id, secret))
    }

    pub async fn create_sira_token(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<NewSecret, StoreError> {
        self.create_sira_token_until(name, None, now).await
    }

    /// A Sira token, which stops working at `expires_at` (if given).
    pub async fn create_sira_token_until(
        &self,
        name: &str,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<NewSecret, StoreError> {
        let mut transaction = self.begin().await?;
        let secret = CredentialRecord {
            kind: CredentialKind::Sira,
            merchant_id: None,
            agent_id: None,
            name,
            expires_at,
            rotated_from: None,
        }
        .insert(&mut transaction.tx(), now)
        .await?;
        transaction.commit().await?;
        Ok(secret)
    }

    /// Every credential (of `kind`, if given), oldest first, a page at a time.
    pub async fn credentials(
        &self,
        kind: Option<CredentialKind>,
        limit: i64,
        offset: i64,
        now: DateTime<Utc>,
    ) -> Result<Vec<Credential>, StoreError> {
        let sql = format!(
            "{CREDENTIAL_COLUMNS} WHERE ($1 IS NULL OR c.kind = $1) \
             ORDER BY c.created_at, c.id LIMIT $2 OFFSET $3"
        );
        let rows = on_pool!(self, pool => sqlx::query_as::<_, Credential>(&sql)
            .bind(kind)
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await?);
        Ok(rows.into_iter().map(|row| row.with_status(now)).collect())
    }

    async fn credential_on(
        tx: &mut Tx<'_>,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<Credential>, sqlx::Error> {
        let sql = format!("{CREDENTIAL_COLUMNS} WHERE c.id = $1");
        let row = on_tx!(tx, c => sqlx::query_as::<_, Credential>(&sql)
            .bind(id)
            .fetch_optional(&mut *c)
            .await)?;
        Ok(row.map(|row| row.with_status(now)))
    }

    /// Revokes a credential for good, with the reason, audited in the same transaction;
    /// every replica drops it from its cache on the notice. None when there is no such
    /// credential; a conflict when it is already revoked.
    pub async fn revoke_credential(
        &self,
        id: Uuid,
        reason: &str,
        audit: &AuditContext,
        now: DateTime<Utc>,
    ) -> Result<Option<Credential>, StoreError> {
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        let Some(before) = Self::credential_on(tx, id, now).await? else {
            return Ok(None);
        };
        if before.status == CredentialStatus::Revoked {
            return Err(StoreError::Conflict(format!(
                "credential {id} is already revoked"
            )));
        }
        on_tx!(tx, c => execute sqlx::query(
            "UPDATE credentials SET revoked_at = $1, revoked_reason = $2, changed_at = $1 WHERE id = $3",
        )
        .bind(now)
        .bind(reason)
        .bind(id))?;
        insert_audit(
            tx,
            audit,
            "credential.revoke",
            "credential",
            Some(id.to_string()),
            json!({"kind": before.kind, "owner": before.owner, "reason": reason}),
            now,
        )
        .await?;
        notify(tx, CREDENTIALS_TOPIC, &id.to_string()).await?;
        let after = Self::credential_on(tx, id, now).await?;
        transaction.commit().await?;
        Ok(after)
    }

    /// Replaces a credential with a new one for the same owner (its secret is returned,
    /// the only time it exists). The old one keeps working for `grace` (or stops now, when
    /// `grace` is zero); the new one is given the old one's lifetime, if it had one. None
    /// when there is no such credential; a conflict when it is revoked or expired.
    pub async fn rotate_credential(
        &self,
        id: Uuid,
        grace: chrono::Duration,
        audit: &AuditContext,
        now: DateTime<Utc>,
    ) -> Result<Option<(Credential, NewSecret)>, StoreError> {
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        let Some(old) = Self::credential_on(tx, id, now).await? else {
            return Ok(None);
        };
        if old.status != CredentialStatus::Active {
            return Err(StoreError::Conflict(format!(
                "credential {id} is {}; create a new one instead",
                old.status.as_str()
            )));
        }
        let secret = CredentialRecord {
            kind: old.kind,
            merchant_id: old.merchant_id,
            agent_id: old.agent_id,
            name: &old.name,
            expires_at: old.expires_at.map(|at| now + (at - old.created_at)),
            rotated_from: Some(id),
        }
        .insert(tx, now)
        .await?;
        if grace.is_zero() {
            on_tx!(tx, c => execute sqlx::query(
                "UPDATE credentials SET revoked_at = $1, revoked_reason = $2, changed_at = $1 WHERE id = $3",
            )
            .bind(now)
            .bind(format!("rotated to {}", secret.credential_id))
            .bind(id))?;
        } else {
            let until = old.expires_at.map_or(now + grace, |at| at.min(now + grace));
            on_tx!(tx, c => execute sqlx::query(
                "UPDATE credentials SET expires_at = $1, changed_at = $2 WHERE id = $3",
            )
            .bind(until)
            .bind(now)
            .bind(id))?;
        }
        insert_audit(
            tx,
            audit,
            "credential.rotate",
            "credential",
            Some(id.to_string()),
            json!({
                "kind": old.kind,
                "owner": old.owner,
                "new_credential_id": secret.credential_id,
                "grace_secs": grace.num_seconds(),
            }),
            now,
        )
        .await?;
        notify(tx, CREDENTIALS_TOPIC, &id.to_string()).await?;
        let new = Self::credential_on(tx, secret.credential_id, now)
            .await?
            .ok_or_else(|| StoreError::Inconsistent("a rotated credential vanished".into()))?;
        transaction.commit().await?;
        Ok(Some((new, secret)))
    }

    /// When any credential was last revoked or rotated: a change here means a cached
    /// credential may no longer be valid.
    pub async fn credentials_changed_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(
            on_pool!(self, pool => sqlx::query_scalar::<_, Option<DateTime<Utc>>>(
            "SELECT MAX(changed_at) FROM credentials",
        )
        .fetch_one(pool)
        .await?),
        )
    }

    /// Records when each credential was last used (only ever moving it forward).
    pub async fn record_credential_use(
        &self,
        uses: &[(Uuid, DateTime<Utc>)],
    ) -> Result<(), StoreError> {
        if uses.is_empty() {
            return Ok(());
        }
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        for (id, at) in uses {
            on_tx!(tx, c => execute sqlx::query(
                "UPDATE credentials SET last_used_at = $1 \
                 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
            )
            .bind(at)
            .bind(id))?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Who a presented secret belongs to, if it is known, not revoked, not expired at
    /// `now`, and (for an agent) the agent is not disabled.
    pub async fn authenticate(
        &self,
        secret: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Authenticated>, StoreError> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, CredentialRow>(
            "SELECT c.kind, c.merchant_id, c.agent_id, c.id AS credential_id, a.role, c.expires_at \
             FROM credentials c LEFT JOIN ops_agents a ON a.id = c.agent_id \
             WHERE c.secret_sha256 = $1 AND c.revoked_at IS NULL AND a.disabled_at IS NULL \
             AND (c.expires_at IS NULL OR c.expires_at > $2)",
        )
        .bind(hash_secret(secret))
        .bind(now)
        .fetch_optional(pool)
        .await?);
        Ok(row.and_then(|row| {
            let principal = match row.kind {
                CredentialKind::Merchant => Principal::Merchant {
                    merchant_id: row.merchant_id?,
                },
                CredentialKind::Ops => Principal::Ops {
                    agent_id: row.agent_id?,
                    role: Role::parse(row.role.as_deref()?)?,
                },
                CredentialKind::Sira => Principal::Sira {
                    credential_id: row.credential_id,
                },
            };
            Some(Authenticated {
                principal,
                credential_id: row.credential_id,
                expires_at: row.expires_at,
            })
        }))
    }
}

impl Store {
    /// Sets how the notification channels reach a merchant (phone for SMS, webhook URL);
    /// false when there is no such merchant.
    pub async fn set_merchant_contacts(
        &self,
        merchant_id: Uuid,
        phone: Option<&str>,
        webhook_url: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = on_write_pool!(self, pool => sqlx::query(
            "UPDATE merchants SET phone = COALESCE($1, phone), webhook_url = COALESCE($2, webhook_url) WHERE id = $3",
        )
        .bind(phone)
        .bind(webhook_url)
        .bind(merchant_id)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(done > 0)
    }
}
