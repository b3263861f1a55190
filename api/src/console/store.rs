//! The console's SQL: agents' passwords, sessions (kept by the SHA-256 of their id) and the
//! failed sign-ins that throttling counts.

use crate::auth::Role;
use crate::db::{insert_audit, on_pool, on_tx, on_write_pool, AuditContext, Store, StoreError};
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

/// An agent who may sign in: its id, role and password hash.
#[derive(Clone, Debug)]
pub struct SignInCandidate {
    pub agent_id: Uuid,
    pub role: Role,
    pub password_hash: String,
}

/// A live session and the agent it belongs to.
#[derive(Clone, Debug)]
pub struct LiveSession {
    pub agent_id: Uuid,
    pub email: String,
    pub role: Role,
    pub idle_until: DateTime<Utc>,
}

/// Where a new session comes from, kept with it (and in the audit log).
#[derive(Clone, Debug, Default)]
pub struct Origin {
    pub address: Option<String>,
    pub user_agent: Option<String>,
}

impl Store {
    /// Sets the password hash of the enabled agent with `email`; false when there is none.
    /// Every session the agent had is ended: a new password is a new start.
    pub async fn set_ops_agent_password(
        &self,
        email: &str,
        password_hash: &str,
        audit: &AuditContext,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        let agent: Option<(Uuid,)> = on_tx!(tx, c => sqlx::query_as(
            "UPDATE ops_agents SET password_hash = $1, password_set_at = $2 \
             WHERE email = $3 AND disabled_at IS NULL RETURNING id",
        )
        .bind(password_hash)
        .bind(now)
        .bind(email)
        .fetch_optional(c)
        .await)?;
        let Some((agent_id,)) = agent else {
            return Ok(false);
        };
        on_tx!(tx, c => execute sqlx::query(
            "UPDATE console_sessions SET ended_at = $1 WHERE agent_id = $2 AND ended_at IS NULL",
        )
        .bind(now)
        .bind(agent_id))?;
        insert_audit(
            tx,
            audit,
            "console.password_set",
            "ops_agent",
            Some(agent_id.to_string()),
            json!({ "email": email }),
            now,
        )
        .await?;
        transaction.commit().await?;
        Ok(true)
    }

    /// The enabled agent with `email` and a password, if any.
    pub async fn sign_in_candidate(
        &self,
        email: &str,
    ) -> Result<Option<SignInCandidate>, StoreError> {
        let row: Option<(Uuid, Role, String)> = on_pool!(self, pool => sqlx::query_as(
            "SELECT id, role, password_hash FROM ops_agents \
             WHERE email = $1 AND disabled_at IS NULL AND password_hash IS NOT NULL",
        )
        .bind(email)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(|(agent_id, role, password_hash)| SignInCandidate {
            agent_id,
            role,
            password_hash,
        }))
    }

    /// The failures in a row counted against each subject (absent ones are 0), with the
    /// time of the last.
    pub async fn login_failures(
        &self,
        subjects: &[String],
    ) -> Result<Vec<(u32, DateTime<Utc>)>, StoreError> {
        let mut found = Vec::with_capacity(subjects.len());
        for subject in subjects {
            let row: Option<(i64, DateTime<Utc>)> = on_pool!(self, pool => sqlx::query_as(
                "SELECT CAST(failures AS BIGINT), last_failed_at FROM console_login_failures WHERE subject = $1",
            )
            .bind(subject)
            .fetch_optional(pool)
            .await)?;
            if let Some((failures, at)) = row {
                found.push((u32::try_from(failures).unwrap_or(u32::MAX), at));
            }
        }
        Ok(found)
    }

    /// Counts a failed sign-in against each subject (starting over for one whose last
    /// failure is older than `forget_before`), and audits it.
    pub async fn record_login_failure(
        &self,
        subjects: &[String],
        forget_before: DateTime<Utc>,
        details: serde_json::Value,
        audit: &AuditContext,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        for subject in subjects {
            on_tx!(tx, c => execute sqlx::query(
                "INSERT INTO console_login_failures (subject, failures, last_failed_at) \
                 VALUES ($1, 1, $2) \
                 ON CONFLICT (subject) DO UPDATE SET \
                   failures = CASE WHEN console_login_failures.last_failed_at < $3 THEN 1 \
                                   ELSE console_login_failures.failures + 1 END, \
                   last_failed_at = $2",
            )
            .bind(subject)
            .bind(now)
            .bind(forget_before))?;
        }
        insert_audit(
            tx,
            audit,
            "console.login_failed",
            "console",
            None,
            details,
            now,
        )
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Opens a session for `agent_id` (clearing the failures counted against `subjects`),
    /// and audits the sign-in.
    #[allow(clippy::too_many_arguments)]
    pub async fn open_console_session(
        &self,
        id_sha256: &str,
        agent_id: Uuid,
        idle_until: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        origin: &Origin,
        subjects: &[String],
        audit: &AuditContext,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        on_tx!(tx, c => execute sqlx::query(
            "INSERT INTO console_sessions \
               (id_sha256, agent_id, created_at, idle_until, expires_at, address, user_agent) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id_sha256)
        .bind(agent_id)
        .bind(now)
        .bind(idle_until)
        .bind(expires_at)
        .bind(origin.address.as_deref())
        .bind(origin.user_agent.as_deref()))?;
        for subject in subjects {
            on_tx!(tx, c => execute sqlx::query(
                "DELETE FROM console_login_failures WHERE subject = $1",
            )
            .bind(subject))?;
        }
        insert_audit(
            tx,
            audit,
            "console.login",
            "ops_agent",
            Some(agent_id.to_string()),
            json!({ "address": origin.address, "user_agent": origin.user_agent }),
            now,
        )
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// The session with this id hash, if it is live at `now` and its agent still enabled.
    pub async fn live_console_session(
        &self,
        id_sha256: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<LiveSession>, StoreError> {
        let row: Option<(Uuid, String, Role, DateTime<Utc>)> = on_pool!(self, pool => sqlx::query_as(
            "SELECT s.agent_id, a.email, a.role, s.idle_until \
             FROM console_sessions s JOIN ops_agents a ON a.id = s.agent_id \
             WHERE s.id_sha256 = $1 AND s.ended_at IS NULL AND s.idle_until > $2 \
               AND s.expires_at > $2 AND a.disabled_at IS NULL",
        )
        .bind(id_sha256)
        .bind(now)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(|(agent_id, email, role, idle_until)| LiveSession {
            agent_id,
            email,
            role,
            idle_until,
        }))
    }

    /// Pushes a live session's idle deadline to `idle_until` (never past its absolute
    /// expiry: the live check compares both).
    pub async fn touch_console_session(
        &self,
        id_sha256: &str,
        idle_until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_write_pool!(self, pool => sqlx::query(
            "UPDATE console_sessions SET idle_until = $1 WHERE id_sha256 = $2 AND ended_at IS NULL",
        )
        .bind(idle_until)
        .bind(id_sha256)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Ends a session (sign-out) and audits it; false when it had already ended.
    pub async fn end_console_session(
        &self,
        id_sha256: &str,
        audit: &AuditContext,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut transaction = self.begin().await?;
        let tx = &mut transaction.tx();
        let ended = on_tx!(tx, c => execute sqlx::query(
            "UPDATE console_sessions SET ended_at = $1 WHERE id_sha256 = $2 AND ended_at IS NULL",
        )
        .bind(now)
        .bind(id_sha256))?;
        if ended > 0 {
            insert_audit(
                tx,
                audit,
                "console.logout",
                "ops_agent",
                audit.actor_id.map(|id| id.to_string()),
                json!({}),
                now,
            )
            .await?;
        }
        transaction.commit().await?;
        Ok(ended > 0)
    }
}
