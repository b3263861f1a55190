//! Merchants, Ops agents, Sira tokens and the bearer secrets that identify
//! them. A secret is 32 random bytes, shown once; the store keeps its SHA-256.
//! (A slow password hash buys nothing for 256-bit random secrets and would cost
//! every heartbeat.)

use crate::db::{on_pool, on_tx, on_write_pool, Store, StoreError};
use chrono::{DateTime, Utc};
use rand::RngCore;
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

/// A credential row joined with its agent's role.
#[derive(Debug, sqlx::FromRow)]
struct CredentialRow {
    kind: String,
    merchant_id: Option<Uuid>,
    agent_id: Option<Uuid>,
    credential_id: Uuid,
    role: Option<String>,
}

/// The stored form of a secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn mint(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}_{}", hex::encode(bytes))
}

impl Store {
    pub async fn create_merchant(
        &self,
        name: &str,
        email: &str,
        now: DateTime<Utc>,
    ) -> Result<(Uuid, NewSecret), StoreError> {
        let merchant_id = Uuid::now_v7();
        let secret = NewSecret {
            credential_id: Uuid::now_v7(),
            secret: mint("ahm"),
        };
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        on_tx!(tx, c => execute sqlx::query(
            "INSERT INTO merchants (id, name, email, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(merchant_id)
        .bind(name)
        .bind(email)
        .bind(now))?;
        on_tx!(tx, c => execute sqlx::query(
            "INSERT INTO credentials (id, kind, secret_sha256, merchant_id, name, created_at) \
             VALUES ($1, 'merchant_key', $2, $3, $4, $5)",
        )
        .bind(secret.credential_id)
        .bind(hash_secret(&secret.secret))
        .bind(merchant_id)
        .bind(name)
        .bind(now))?;
        transaction.commit().await?;
        Ok((merchant_id, secret))
    }

    pub async fn create_ops_agent(
        &self,
        email: &str,
        role: Role,
        now: DateTime<Utc>,
    ) -> Result<(Uuid, NewSecret), StoreError> {
        let agent_id = Uuid::now_v7();
        let secret = NewSecret {
            credential_id: Uuid::now_v7(),
            secret: mint("aho"),
        };
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
        if inserted == 1 {
            on_tx!(tx, c => execute sqlx::query(
                "INSERT INTO credentials (id, kind, secret_sha256, agent_id, name, created_at) \
                 VALUES ($1, 'ops_token', $2, $3, $4, $5)",
            )
            .bind(secret.credential_id)
            .bind(hash_secret(&secret.secret))
            .bind(agent_id)
            .bind(email)
            .bind(now))?;
            transaction.commit().await?;
        }
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "an Ops agent with email {email} already exists"
            )));
        }
        Ok((agent_id, secret))
    }

    pub async fn create_sira_token(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<NewSecret, StoreError> {
        let secret = NewSecret {
            credential_id: Uuid::now_v7(),
            secret: mint("ahs"),
        };
        on_write_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO credentials (id, kind, secret_sha256, name, created_at) \
                 VALUES ($1, 'sira_token', $2, $3, $4)",
            )
            .bind(secret.credential_id)
            .bind(hash_secret(&secret.secret))
            .bind(name)
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(secret)
    }

    /// The principal a presented secret belongs to, if it is known, not
    /// revoked, and (for an agent) the agent is not disabled.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<Principal>, StoreError> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, CredentialRow>(
            "SELECT c.kind, c.merchant_id, c.agent_id, c.id AS credential_id, a.role \
             FROM credentials c LEFT JOIN ops_agents a ON a.id = c.agent_id \
             WHERE c.secret_sha256 = $1 AND c.revoked_at IS NULL AND a.disabled_at IS NULL",
        )
        .bind(hash_secret(secret))
        .fetch_optional(pool)
        .await?);
        Ok(row.and_then(|row| match row.kind.as_str() {
            "merchant_key" => Some(Principal::Merchant {
                merchant_id: row.merchant_id?,
            }),
            "ops_token" => Some(Principal::Ops {
                agent_id: row.agent_id?,
                role: Role::parse(row.role.as_deref()?)?,
            }),
            "sira_token" => Some(Principal::Sira {
                credential_id: row.credential_id,
            }),
            _ => None,
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
