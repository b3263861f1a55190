//! Signed commands (issue 18): what signing costs the server per command handed out, and
//! what verifying costs a plugin, on the conformance kit's accepted apply. Peers in the same
//! run: a bare ed25519 signature over the same payload bytes (the floor signing can reach),
//! and the reference verifier's own parts (the DSSE envelopes alone, without the bundle).
//! The PHP SDK's figure for the same case comes from `benches/php_verify.sh`.
//!
//! `cargo bench -p benches --bench command_signing`

use criterion::{black_box, Criterion};
use host::command::{self, PluginJournal};

fn case_dir(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../sdk/conformance/cases")
        .join(name)
}

fn main() {
    let dir = case_dir("accept_apply");
    let case: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("case.json")).unwrap()).unwrap();
    let item = std::fs::read(dir.join("command.json")).unwrap();
    let bundle = std::fs::read(dir.join("bundle.json")).unwrap();
    let roots: host::TrustedKeys = case["trusted_roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| host::PublicKey::from_base64(r.as_str().unwrap()).unwrap())
        .collect();
    let journal = PluginJournal {
        install_id: case["install_id"].as_str().unwrap().parse().unwrap(),
        last_sequence: case["journal"]["last_sequence"].as_u64().unwrap(),
        ..PluginJournal::default()
    };
    let now = chrono::DateTime::parse_from_rfc3339(case["now"].as_str().unwrap())
        .unwrap()
        .to_utc();
    let verified = command::verify_command(&item, &bundle, &roots, &journal, now).unwrap();

    // The kit's keys are fixed seeds (host::conformance): the command key is seed 2, root 1.
    let root = host::SigningKey::from_seed(&[1; 32]);
    let command_key = host::SigningKey::from_seed(&[2; 32]);
    let certificate = command::certify(
        &root,
        &command_key.public_key(),
        now - chrono::Duration::days(1),
        now + chrono::Duration::days(1),
    );
    let signer = command::CommandSigner::new(
        host::SigningKey::from_seed(&[2; 32]),
        certificate,
        &roots,
        now,
    )
    .unwrap();
    let payload = verified.command.clone();
    let bytes = payload.canonical_bytes();

    let mut c = Criterion::default().configure_from_args();
    c.bench_function(
        "server: sign one command (canonical JSON + DSSE + ed25519)",
        |b| b.iter(|| black_box(signer.sign(black_box(&payload)))),
    );
    c.bench_function("peer: bare ed25519 signature over the same bytes", |b| {
        b.iter(|| black_box(command_key.sign(black_box(&bytes))))
    });
    c.bench_function(
        "plugin (Rust reference): verify command, certificate and bundle",
        |b| {
            b.iter(|| {
                black_box(command::verify_command(
                    black_box(&item),
                    black_box(&bundle),
                    &roots,
                    &journal,
                    now,
                ))
            })
        },
    );
    c.final_summary();
}
