//! Signed commands at the HTTP boundary, on SQLite and PostgreSQL: every command a poll hands
//! out verifies as a plugin verifies it (the reference verifier, the trusted root only),
//! sequences rise across hand-outs and redeliveries, a look with `?lease=false` takes
//! nothing, a plugin's refusal is recorded as such (not as a patch failure), and a server
//! whose certificate has expired hands out nothing.

use crate::support::{each_store, repo, TestApp};
use api::healing::HealingConfig;
use axum::http::StatusCode;
use chrono::Duration;
use host::command::{CommandType, PluginJournal, RefusalReason};
use serde_json::{json, Value};
use uuid::Uuid;

fn heartbeat() -> Value {
    json!({
        "cms": "woocommerce", "site_url": "https://shop.example", "plugin_version": "1.3.5",
        "state": {"config": {"memory_limit": "128M"},
                  "tables": {"wp_molam_orders": {"id": "BIGINT UNSIGNED", "amount": "DECIMAL(10,2)"}}}
    })
}

fn detection(plugin_id: Uuid, table: &str) -> Value {
    json!({
        "plugin_id": plugin_id, "detected_issue": "Fatal error: Unknown column 'merchant_fee' in field list",
        "issue_severity": "high", "patch_type": "database_patch", "sira_confidence": 92.5,
        "proposed_patch": {"type": "database_patch", "action": "add_missing_column",
                           "table": table, "column": "merchant_fee", "column_type": "DECIMAL(10,2)"}
    })
}

fn dev_root() -> host::TrustedKeys {
    host::tools::load_trusted_keys(&[repo().join("patches/dev-key/autoheal.pub")]).unwrap()
}

struct Plugin<'a> {
    app: &'a TestApp,
    journal: PluginJournal,
    roots: host::TrustedKeys,
}

impl<'a> Plugin<'a> {
    async fn new(app: &'a TestApp) -> Self {
        let install_id = app.heartbeat(heartbeat()).await;
        Self {
            app,
            journal: PluginJournal {
                install_id,
                ..PluginJournal::default()
            },
            roots: dev_root(),
        }
    }

    fn poll_path(&self) -> String {
        format!(
            "/api/v1/plugins/autoheal/commands/{}",
            self.journal.install_id
        )
    }

    async fn poll(&self) -> Vec<Value> {
        let response = self
            .app
            .get(&self.poll_path(), &self.app.merchant_key)
            .await;
        response.ok().as_array().unwrap().clone()
    }

    async fn bundle(&self, signed: &host::command::CommandPayload) -> Vec<u8> {
        let path = format!(
            "/api/v1/plugins/autoheal/bundles/{}/{}",
            signed.bundle.name, signed.bundle.version
        );
        let response = self
            .app
            .call(
                axum::http::Method::GET,
                &path,
                Some(&self.app.merchant_key),
                None,
            )
            .await;
        assert_eq!(response.status, StatusCode::OK);
        // Served unchanged (tests/it/healing.rs checks the bytes): the file's bytes are the
        // ones whose hash is signed.
        let on_disk = repo().join(format!(
            "patches/bundles/{}-{}.bundle.json",
            signed.bundle.name, signed.bundle.version
        ));
        std::fs::read(on_disk).unwrap()
    }

    /// Verifies one polled command as a plugin does, and on success records it in the
    /// journal (sequence, bundle version, id).
    async fn verify(
        &mut self,
        item: &Value,
    ) -> Result<host::command::VerifiedCommand, host::command::Refusal> {
        let bytes = serde_json::to_vec(item).unwrap();
        let unverified: host::command::Envelope =
            serde_json::from_value(item["signed"].clone()).expect("a signed envelope");
        let payload: host::command::CommandPayload = serde_json::from_slice(
            &host::command::decode_canonical_base64(&unverified.payload).unwrap(),
        )
        .unwrap();
        let bundle = self.bundle(&payload).await;
        let verified = host::command::verify_command(
            &bytes,
            &bundle,
            &self.roots,
            &self.journal,
            self.app.clock.now(),
        )?;
        self.journal.last_sequence = verified.command.sequence;
        self.journal.command_ids.push(verified.command.id);
        let manifest = verified.bundle.manifest();
        self.journal
            .bundle_versions
            .insert(manifest.name.clone(), manifest.version.clone());
        Ok(verified)
    }

    async fn ack(&self, id: &Value, body: &Value) -> crate::support::TestResponse {
        let path = format!(
            "/api/v1/plugins/autoheal/commands/{}/ack",
            id.as_str().unwrap()
        );
        self.app.post(&path, &self.app.merchant_key, body).await
    }
}

async fn each_plugin(test: impl AsyncFn(&TestApp)) {
    let test = &test;
    each_store(move |store| async move {
        let app = TestApp::healing(store, HealingConfig::default()).await;
        test(&app).await;
        app.store
    })
    .await;
}

async fn detect(app: &TestApp, body: &Value) -> Value {
    let response = app.post("/api/v1/plugins/autoheal", &app.sira, body).await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    response.body["log"].clone()
}

async fn log_status(app: &TestApp, id: &Value) -> Value {
    let path = format!("/api/v1/plugins/autoheal/{}", id.as_str().unwrap());
    app.get(&path, &app.viewer).await.ok()["status"].clone()
}

#[tokio::test]
async fn every_command_handed_out_verifies_against_the_root_and_sequences_only_rise() {
    each_plugin(async |app| {
        let mut plugin = Plugin::new(app).await;
        let first = detect(app, &detection(plugin.journal.install_id, "wp_molam_orders")).await;

        // A look takes nothing and carries nothing a plugin could act on.
        let looked = app.get(&format!("{}?lease=false", plugin.poll_path()), &app.merchant_key).await;
        let looked = looked.ok().as_array().unwrap().clone();
        assert_eq!(looked.len(), 1);
        for field in ["signed", "certificate"] {
            assert!(looked[0].get(field).is_none(), "{field} in a look");
        }
        assert_eq!(looked[0]["sequence"], Value::Null);
        assert_eq!(looked[0]["deliveries"], 0, "not leased");

        let commands = plugin.poll().await;
        assert_eq!(commands.len(), 1, "the look left it where it was");
        let command = &commands[0];
        assert_eq!(command["sequence"], 1);
        let verified = plugin.verify(command).await.expect("the plugin accepts it");
        assert_eq!(verified.command.id.to_string(), command["id"].as_str().unwrap());
        assert_eq!(verified.command.command_type, CommandType::ApplyPatch);
        assert_eq!(verified.command.install_id, plugin.journal.install_id);
        assert_eq!(
            serde_json::to_value(&verified.command.operations).unwrap(),
            first["operations"],
            "what is signed is the dry run's plan"
        );
        assert_eq!(verified.command.params["table"], "wp_molam_orders");
        assert!(verified.command.expires_at > app.clock.now());

        // The same bytes again are a replay.
        let replay = plugin.verify(command).await;
        assert_eq!(replay.err().map(|r| r.reason), None, "its id is in the journal: a redelivery");
        let mut fresh = Plugin { journal: PluginJournal { install_id: plugin.journal.install_id, last_sequence: 1, ..Default::default() }, roots: dev_root(), app };
        assert_eq!(fresh.verify(command).await.err().map(|r| r.reason), Some(RefusalReason::Replayed));

        // Lost before the ack: after the lease the same command comes back, re-signed with
        // a higher sequence.
        assert!(plugin.poll().await.is_empty(), "leased");
        app.clock.advance(HealingConfig::default().command_lease + Duration::seconds(1));
        let again = plugin.poll().await;
        assert_eq!(again[0]["id"], command["id"]);
        assert_eq!(again[0]["sequence"], 2);
        assert_ne!(again[0]["signed"], command["signed"]);
        plugin.verify(&again[0]).await.expect("a redelivery verifies");

        // Tampered in transit: any change to what is signed is refused.
        let mut tampered = again[0].clone();
        let envelope: host::command::Envelope = serde_json::from_value(tampered["signed"].clone()).unwrap();
        let mut payload: Value = serde_json::from_slice(&host::command::decode_canonical_base64(&envelope.payload).unwrap()).unwrap();
        payload["operations"][0]["column_type"] = json!("TEXT");
        let forged = host::command::Envelope { payload: base64_of(&host::command::canonical_json(&payload)), ..envelope };
        tampered["signed"] = serde_json::to_value(forged).unwrap();
        tampered["sequence"] = json!(9);
        let mut later = Plugin { journal: PluginJournal { install_id: plugin.journal.install_id, ..Default::default() }, roots: dev_root(), app };
        assert_eq!(later.verify(&tampered).await.err().map(|r| r.reason), Some(RefusalReason::SignatureInvalid));

        // Applied; then Ops roll back: the rollback's sequence is above the apply's.
        plugin.ack(&command["id"], &json!({"success": true, "outcome": "applied"})).await.ok();
        let path = format!("/api/v1/plugins/autoheal/{}/rollback", first["id"].as_str().unwrap());
        app.post(&path, &app.operator, &json!({"reason": "undo"})).await.ok();
        let rollback = plugin.poll().await;
        assert_eq!(rollback[0]["command_type"], "rollback");
        assert_eq!(rollback[0]["sequence"], 3);
        let verified = plugin.verify(&rollback[0]).await.expect("the rollback verifies");
        assert_eq!(verified.command.command_type, CommandType::Rollback);
        let restore = verified.command.restore_operations.unwrap();
        assert!(matches!(&restore[..], [host::Operation::DropColumn { column, .. }] if column == "merchant_fee"));
    })
    .await;
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn a_refused_apply_ends_refused_with_a_warning_and_is_no_patch_failure() {
    each_plugin(async |app| {
        let plugin = Plugin::new(app).await;
        let log = detect(app, &detection(plugin.journal.install_id, "wp_molam_orders")).await;
        let command = plugin.poll().await[0].clone();

        // What a refusal must say.
        for (body, field) in [
            (json!({"success": true, "outcome": "refused", "result": {"reason": "signature_invalid"}}), "outcome"),
            (json!({"success": false, "outcome": "applied"}), "outcome"),
            (json!({"success": false, "outcome": "refused"}), "result.reason"),
            (json!({"success": false, "outcome": "refused", "result": {"reason": "felt_like_it"}}), "result.reason"),
            (json!({"success": false, "outcome": "skipped"}), "outcome"),
        ] {
            let response = plugin.ack(&command["id"], &body).await;
            let (_, named) = response.error(StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(named.as_deref(), Some(field), "{body}");
        }
        assert_eq!(log_status(app, &log["id"]).await, "approved", "nothing recorded");

        let refusal = json!({"success": false, "outcome": "refused",
                             "result": {"reason": "signature_invalid", "error": "the command's signature does not verify"}});
        let acked = plugin.ack(&command["id"], &refusal).await;
        assert_eq!(acked.ok()["command"]["status"], "refused");
        assert_eq!(plugin.ack(&command["id"], &refusal).await.ok()["repeated"], true);
        let contradicting = plugin.ack(&command["id"], &json!({"success": true})).await;
        contradicting.error(StatusCode::CONFLICT);

        let path = format!("/api/v1/plugins/autoheal/{}", log["id"].as_str().unwrap());
        let detail = app.get(&path, &app.viewer).await.ok().clone();
        assert_eq!(detail["status"], "refused");
        assert_eq!(detail["failure_kind"], Value::Null, "not a patch failure");
        assert_eq!(detail["failure_reason"], "refused (signature_invalid): the command's signature does not verify");

        let stats = app.get("/api/v1/plugins/autoheal/stats", &app.viewer).await.ok().clone();
        assert_eq!(stats["refused"], 1);
        assert_eq!(stats["failed"], 0);

        let alerts = app.get("/api/platform/alerts?status=open", &app.viewer).await.ok().clone();
        let alert = alerts.as_array().unwrap().iter().find(|a| a["name"] == "AutoHealCommandRefused")
            .unwrap_or_else(|| panic!("no refusal alert in {alerts}"));
        assert_eq!(alert["severity"], "warning");
        assert_eq!(alert["labels"]["reason"], "signature_invalid");
        assert_eq!(alert["labels"]["command_id"], command["id"]);
    })
    .await;
}

#[tokio::test]
async fn a_refused_rollback_leaves_the_patch_in_effect_and_alerts_critically() {
    each_plugin(async |app| {
        let plugin = Plugin::new(app).await;
        let log = detect(app, &detection(plugin.journal.install_id, "wp_molam_orders")).await;
        let apply = plugin.poll().await[0].clone();
        plugin.ack(&apply["id"], &json!({"success": true})).await.ok();
        let path = format!("/api/v1/plugins/autoheal/{}/rollback", log["id"].as_str().unwrap());
        app.post(&path, &app.operator, &json!({"reason": "undo"})).await.ok();
        let rollback = plugin.poll().await[0].clone();
        let refusal = json!({"success": false, "outcome": "refused", "result": {"reason": "certificate_expired"}});
        assert_eq!(plugin.ack(&rollback["id"], &refusal).await.ok()["command"]["status"], "refused");
        let detail = app.get(&format!("/api/v1/plugins/autoheal/{}", log["id"].as_str().unwrap()), &app.viewer).await.ok().clone();
        assert_eq!(detail["status"], "rollback_failed");
        assert_eq!(detail["rollback_failure_reason"], "refused (certificate_expired): the command did not verify");
        let alerts = app.get("/api/platform/alerts?status=open", &app.viewer).await.ok().clone();
        let alert = alerts.as_array().unwrap().iter().find(|a| a["name"] == "AutoHealRollbackFailed").expect("the rollback alert");
        assert_eq!(alert["severity"], "critical");
        // Ops may ask again; the new rollback is signed with the next sequence.
        app.post(&path, &app.operator, &json!({"reason": "again"})).await.ok();
        assert_eq!(plugin.poll().await[0]["sequence"], 3);
    })
    .await;
}

#[tokio::test]
async fn with_an_expired_certificate_nothing_is_handed_out_until_a_rotated_key_signs_it() {
    each_store(async |store| {
        let root = host::SigningKey::from_seed(&[41; 32]);
        let command_key = host::SigningKey::from_seed(&[42; 32]);
        let now = crate::support::start_time();
        let certificate = host::command::certify(
            &root,
            &command_key.public_key(),
            now,
            now + Duration::hours(1),
        );
        let roots: host::TrustedKeys = [root.public_key()].into_iter().collect();
        let signer =
            host::command::CommandSigner::new(command_key, certificate, &roots, now).unwrap();
        let app = TestApp::healing(store, HealingConfig::default()).await;
        let app = app.rebuilt(|parts| parts.command_signer(signer)).await;
        let mut plugin = Plugin::new(&app).await;
        // Root rotation: the plugin trusts the development root and the new one.
        plugin.roots = dev_root();
        plugin.roots.add(root.public_key());
        detect(
            &app,
            &detection(plugin.journal.install_id, "wp_molam_orders"),
        )
        .await;
        let gauge = format!(
            "autoheal_command_certificate_expiry_timestamp_seconds {}",
            (now + Duration::hours(1)).timestamp()
        );
        assert!(app.metrics().await.contains(&gauge), "{gauge}");
        app.clock.advance(Duration::hours(1));
        let refused = app.get(&plugin.poll_path(), &app.merchant_key).await;
        let (code, _) = refused.error(StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(code, "unavailable");
        // Rotated (as SIGHUP does after `keys certify`): a new command key, certified by the
        // root. The command was kept, and is handed out now, signed by the new key.
        let rotated_key = host::SigningKey::from_seed(&[43; 32]);
        let renewed = host::command::certify(
            &root,
            &rotated_key.public_key(),
            app.clock.now(),
            app.clock.now() + Duration::days(30),
        );
        let signer =
            host::command::CommandSigner::new(rotated_key, renewed, &roots, app.clock.now())
                .unwrap();
        app.state.signing.replace(std::sync::Arc::new(signer));
        let commands = plugin.poll().await;
        assert_eq!(commands.len(), 1);
        assert_eq!(
            commands[0]["signed"]["signatures"][0]["keyid"],
            host::SigningKey::from_seed(&[43; 32]).public_key().key_id()
        );
        plugin
            .verify(&commands[0])
            .await
            .expect("verifies under the rotated root and key");
        // A plugin that trusts only the development root refuses it.
        let mut old = Plugin {
            journal: PluginJournal {
                install_id: plugin.journal.install_id,
                ..Default::default()
            },
            roots: dev_root(),
            app: &app,
        };
        assert_eq!(
            old.verify(&commands[0]).await.err().map(|r| r.reason),
            Some(RefusalReason::CertificateUnknownKey)
        );
        app.store
    })
    .await;
}
