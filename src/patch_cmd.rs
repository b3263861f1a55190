//! `autoheal keys …` and `autoheal patch …`: signing keys and patch bundles
//! from a shell; thin wrappers over `host::tools`.

use anyhow::{Context, Result};
use host::{tools, Host, HostConfig};
use serde_json::json;
use std::path::{Path, PathBuf};

pub fn generate_keys(out: &Path, role: tools::KeyRole) -> Result<()> {
    let keys = tools::generate_keys(out, role)?;
    println!("{}", serde_json::to_string(&keys)?);
    Ok(())
}

pub fn certify(root: &Path, command: &Path, expires_in: &str, out: &Path) -> Result<()> {
    let expires_in = tools::parse_duration(expires_in)?;
    let certified = tools::certify_command_key(root, command, expires_in, chrono::Utc::now(), out)?;
    println!("{}", serde_json::to_string(&certified)?);
    Ok(())
}

/// `autoheal conformance generate --out DIR`: DIR/cases/NAME/{case,command,bundle}.json. A
/// case folder there that the kit no longer has is removed; nothing else in DIR is touched.
pub fn generate_conformance(out: &Path) -> Result<()> {
    let cases_dir = out.join("cases");
    let cases = host::conformance::cases();
    if cases_dir.is_dir() {
        for entry in std::fs::read_dir(&cases_dir)? {
            let path = entry?.path();
            let known = cases
                .iter()
                .any(|c| path.file_name() == Some(c.name.as_ref()));
            if !known && path.join("case.json").is_file() {
                std::fs::remove_dir_all(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
    }
    for case in &cases {
        let dir = cases_dir.join(case.name);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        for (file, bytes) in &case.files {
            let path = dir.join(file);
            std::fs::write(&path, bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    println!("{}", json!({"cases": cases.len(), "dir": cases_dir}));
    Ok(())
}

pub fn build(dir: &Path) -> Result<()> {
    let built = tools::build_patch(dir)?;
    println!("{}", serde_json::to_string(&built)?);
    Ok(())
}

pub fn sign(dir: &Path, key: &Path, version: &str, expires_in: &str, out: &Path) -> Result<()> {
    let expires_in = tools::parse_duration(expires_in)?;
    let manifest =
        tools::sign_patch_to_file(dir, key, version, expires_in, chrono::Utc::now(), out)?;
    println!(
        "{}",
        json!({"bundle": out, "name": manifest.name, "version": manifest.version, "module_sha256": manifest.module_sha256, "expires_at": manifest.expires_at})
    );
    Ok(())
}

pub fn verify(bundle: &Path, trusted_keys: &[PathBuf]) -> Result<()> {
    let verified = tools::verify_bundle_file(bundle, trusted_keys, chrono::Utc::now())?;
    println!(
        "{}",
        json!({"status": "verified", "signed_by": verified.signed_by(), "manifest": verified.manifest()})
    );
    Ok(())
}

pub fn run(
    bundle: &Path,
    trusted_keys: &[PathBuf],
    snapshot: &Path,
    params: Option<&Path>,
) -> Result<()> {
    let host = Host::new(HostConfig::default()).context("cannot start the sandbox")?;
    let dry_run = tools::run_bundle_file(
        &host,
        bundle,
        trusted_keys,
        snapshot,
        params,
        chrono::Utc::now(),
    )?;
    println!("{}", serde_json::to_string_pretty(&dry_run)?);
    Ok(())
}
