//! Signing what a poll hands out: the command key in force (swapped whole when Ops renew
//! its certificate), and the signed payload of a leased command (`sdk/PROTOCOL.md`).

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Duration, Utc};
use host::command::{BundleRef, CommandPayload, CommandSigner, CommandType, COMMAND_FORMAT};
use host::Operation;
use serde_json::Value;

use super::store::Command;
use crate::db::StoreError;

/// The repository's DEVELOPMENT command key and its certificate by the development root:
/// what a server signs with when it is given no key of its own (it warns). Their private
/// halves are public, so nothing they sign proves anything.
const DEV_COMMAND_KEY: &str = include_str!("../../../patches/dev-key/command.key");
const DEV_COMMAND_CERT: &str = include_str!("../../../patches/dev-key/command.cert.json");
const DEV_ROOT_KEY: &str = include_str!("../../../patches/dev-key/autoheal.pub");

/// The development signer, valid at `now` (its certificate runs from 2025 for five years
/// from when it was last made). Panics if the committed files do not chain: a broken
/// checkout, not a runtime condition.
pub fn development_signer(now: DateTime<Utc>) -> CommandSigner {
    let key = host::SigningKey::from_base64(DEV_COMMAND_KEY).expect("dev command key");
    let certificate = serde_json::from_str(DEV_COMMAND_CERT).expect("dev certificate");
    let root = host::PublicKey::from_base64(DEV_ROOT_KEY).expect("dev root key");
    let roots: host::TrustedKeys = [root].into_iter().collect();
    CommandSigner::new(key, certificate, &roots, now).expect("the dev certificate chains")
}

/// The key id of the development command key, to warn when a server signs with it.
pub fn development_key_id() -> String {
    host::SigningKey::from_base64(DEV_COMMAND_KEY)
        .expect("dev command key")
        .public_key()
        .key_id()
        .to_owned()
}

/// The command signer in force. Renewing the certificate (or rotating the key) swaps it
/// whole, on SIGHUP; a poll signs with the one it read.
pub struct Signing {
    signer: RwLock<Arc<CommandSigner>>,
    /// How long a handed-out command stays acceptable to a plugin.
    ttl: Duration,
}

impl Signing {
    pub fn new(signer: Arc<CommandSigner>, ttl: Duration) -> Self {
        Self {
            signer: RwLock::new(signer),
            ttl,
        }
    }

    pub fn current(&self) -> Arc<CommandSigner> {
        self.signer.read().expect("not poisoned").clone()
    }

    pub fn replace(&self, signer: Arc<CommandSigner>) {
        *self.signer.write().expect("not poisoned") = signer;
    }

    /// Signs each leased command, as handed out at `now`.
    pub fn sign_all(
        &self,
        signer: &CommandSigner,
        commands: &mut [Command],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for command in commands {
            let payload = signed_payload(command, now, now + self.ttl)?;
            command.signed = Some(signer.sign(&payload));
            command.certificate = Some(signer.certificate().clone());
        }
        Ok(())
    }
}

/// What the server signs for a leased command: its identity and sequence, the patch of its
/// log, and the operations the plugin applies (an apply's plan, a rollback's restore list).
fn signed_payload(
    command: &Command,
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<CommandPayload, StoreError> {
    let inconsistent =
        |what: &str| StoreError::Inconsistent(format!("command {}: {what}", command.id));
    let payload = &command.command_payload.0;
    let (command_type, operations) = match command.command_type.as_str() {
        "apply_patch" => (CommandType::ApplyPatch, &payload["patch"]["operations"]),
        "rollback" => (CommandType::Rollback, &payload["restore_operations"]),
        _ => return Err(inconsistent("unknown command type")),
    };
    let operations: Vec<Operation> = serde_json::from_value(operations.clone())
        .map_err(|_| inconsistent("its operations do not parse"))?;
    let params = match command.patch_params.as_ref().map(|p| &p.0) {
        Some(Value::Object(params)) => params.clone(),
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(_) => return Err(inconsistent("its log's params are not an object")),
    };
    let (Some(name), Some(version), Some(sha256)) = (
        &command.patch_name,
        &command.patch_version,
        &command.bundle_sha256,
    ) else {
        return Err(inconsistent("its log names no patch"));
    };
    let sequence = command
        .sequence
        .and_then(|s| u64::try_from(s).ok())
        .ok_or_else(|| inconsistent("it was leased without a sequence"))?;
    let (operations, restore_operations) = match command_type {
        CommandType::ApplyPatch => (Some(operations), None),
        CommandType::Rollback => (None, Some(operations)),
    };
    Ok(CommandPayload {
        command_format: COMMAND_FORMAT,
        id: command.id,
        install_id: command.plugin_id,
        sequence,
        command_type,
        healing_log_id: command.healing_log_id,
        bundle: BundleRef {
            name: name.clone(),
            version: version.clone(),
            sha256: sha256.clone(),
        },
        params,
        operations,
        restore_operations,
        issued_at,
        expires_at,
    })
}
