//! `autoheal credentials`: list, revoke and rotate every kind of credential from a shell,
//! as `GET /api/v1/credentials` and its actions do for admins; and `--expires-in` of each
//! `create`. Each change is audited as done from the CLI.

use anyhow::{Context, Result};
use api::auth::{Credential, CredentialKind};
use api::db::{AuditContext, Store};
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

/// The longest lifetime `--expires-in` gives a credential.
const MAX_CREDENTIAL_LIFETIME_DAYS: i64 = 10 * 366;

/// When a credential created now with `--expires-in TEXT` stops working.
pub fn expiry(expires_in: Option<&str>, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
    let Some(text) = expires_in else {
        return Ok(None);
    };
    let lifetime = host::tools::parse_duration(text).context("--expires-in")?;
    anyhow::ensure!(
        lifetime <= chrono::Duration::days(MAX_CREDENTIAL_LIFETIME_DAYS),
        "--expires-in {text}: at most {MAX_CREDENTIAL_LIFETIME_DAYS}d (10 years)"
    );
    Ok(Some(now + lifetime))
}

/// Records a credential's creation in the audit log.
pub async fn audit_created(
    store: &Store,
    id: Uuid,
    kind: &str,
    owner: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    store
        .record_audit(
            &AuditContext::cli(),
            "credential.create",
            "credential",
            json!({"credential_id": id, "kind": kind, "owner": owner}),
            now,
        )
        .await?;
    Ok(())
}

/// Every credential (of `kind`), oldest first: a table, or a JSON array with `json`.
pub async fn list(
    store: &Store,
    kind: Option<CredentialKind>,
    json: bool,
    now: DateTime<Utc>,
) -> Result<()> {
    const PAGE: i64 = 1_000;
    let mut all = Vec::new();
    loop {
        let page = store.credentials(kind, PAGE, all.len() as i64, now).await?;
        let last = page.len() < PAGE as usize;
        all.extend(page);
        if last {
            break;
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        print!("{}", table(&all));
    }
    Ok(())
}

fn table(credentials: &[Credential]) -> String {
    let at = |time: Option<DateTime<Utc>>| {
        time.map_or_else(
            || "-".to_owned(),
            |time| time.format("%Y-%m-%d %H:%M").to_string(),
        )
    };
    let rows: Vec<[String; 7]> = credentials
        .iter()
        .map(|credential| {
            [
                credential.id.to_string(),
                credential.kind.label().to_owned(),
                credential.owner.clone(),
                at(Some(credential.created_at)),
                at(credential.last_used_at),
                at(credential.expires_at),
                match (&credential.revoked_at, &credential.revoked_reason) {
                    (Some(when), reason) => format!(
                        "revoked {} ({})",
                        at(Some(*when)),
                        reason.as_deref().unwrap_or("no reason")
                    ),
                    (None, _) => credential.status.as_str().to_owned(),
                },
            ]
        })
        .collect();
    let header = [
        "ID",
        "KIND",
        "OWNER",
        "CREATED",
        "LAST USED",
        "EXPIRES",
        "STATUS",
    ];
    let widths: Vec<usize> = (0..header.len())
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .chain([header[column].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Revokes credential `id` for good; prints it as it now stands.
pub async fn revoke(store: &Store, id: Uuid, reason: &str, now: DateTime<Utc>) -> Result<()> {
    let reason = reason.trim();
    anyhow::ensure!(
        !reason.is_empty(),
        "--reason: say why (it goes to the audit log)"
    );
    let revoked = store
        .revoke_credential(id, reason, &AuditContext::cli(), now)
        .await?
        .with_context(|| format!("no credential {id} (autoheal credentials list)"))?;
    println!("{}", serde_json::to_string(&revoked)?);
    Ok(())
}

/// Replaces credential `id`; prints the new one and its secret (shown this once).
pub async fn rotate(store: &Store, id: Uuid, grace_secs: i64, now: DateTime<Utc>) -> Result<()> {
    let grace = api::auth::rotation_grace(grace_secs)
        .map_err(|problem| anyhow::anyhow!("--grace-secs {grace_secs}: {problem}"))?;
    let (credential, secret) = store
        .rotate_credential(id, grace, &AuditContext::cli(), now)
        .await?
        .with_context(|| format!("no credential {id} (autoheal credentials list)"))?;
    println!(
        "{}",
        json!({"credential": credential, "secret": secret.secret})
    );
    Ok(())
}
