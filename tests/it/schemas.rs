//! The plugin protocol's JSON Schemas (`sdk/schemas/`), on SQLite and PostgreSQL: served as
//! committed; a heartbeat `state` the server refuses is exactly one the schema refuses, and
//! the 422 names its path; what the server itself sends and the documented acks fit them.

use crate::support::{each_app, repo, TestApp};
use axum::http::StatusCode;
use jsonschema::{Resource, Validator};
use serde_json::{json, Value};

const NAMES: [&str; 6] = [
    "heartbeat",
    "state",
    "command",
    "signed_command",
    "certificate",
    "ack",
];

fn committed(name: &str) -> Value {
    let path = repo().join(format!("sdk/schemas/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The schema `name`, its `$ref`s to the others resolved as the server serves them.
fn validator(name: &str) -> Validator {
    let mut options = jsonschema::options().should_validate_formats(true);
    for other in NAMES {
        options = options.with_resource(
            format!("json-schema:///api/v1/schemas/{other}.json"),
            Resource::from_contents(committed(other)),
        );
    }
    options.build(&committed(name)).unwrap()
}

fn heartbeat(state: Value) -> Value {
    json!({"cms": "woocommerce", "site_url": "https://shop.example", "plugin_version": "1.3.5", "state": state})
}

#[tokio::test]
async fn each_schema_is_served_as_committed() {
    each_app(async |app| {
        for name in NAMES {
            let response = app
                .call(
                    axum::http::Method::GET,
                    &format!("/api/v1/schemas/{name}.json"),
                    None,
                    None,
                )
                .await;
            assert_eq!(response.status, StatusCode::OK, "{name}");
            assert_eq!(response.body, committed(name), "{name}");
            assert_eq!(
                response.body["$id"],
                format!("/api/v1/schemas/{name}.json"),
                "its $id is where it is served"
            );
            // Every schema is itself valid draft 2020-12.
            validator(name);
        }
        for missing in ["nope.json", "state", "state.yaml"] {
            let response = app
                .call(
                    axum::http::Method::GET,
                    &format!("/api/v1/schemas/{missing}"),
                    None,
                    None,
                )
                .await;
            response.error(StatusCode::NOT_FOUND);
        }
        app
    })
    .await;
}

/// A state and the path the server names refusing it (None: accepted).
type Case = (Value, Option<&'static str>);

fn state_cases() -> Vec<Case> {
    let long = "x".repeat(257);
    let many_tables: serde_json::Map<String, Value> =
        (0..513).map(|i| (format!("t{i}"), json!({}))).collect();
    vec![
        (json!({}), None),
        (
            json!({"config": {"memory_limit": "128M", "payment.timeout_ms": 30000, "debug": false},
                   "tables": {"wp_molam_orders": {"id": "bigint(20) unsigned", "amount": "DECIMAL(10,2)",
                                                  "status": "enum('pending','paid')", "paid_at": "timestamp(6) with time zone"}},
                   "php_extensions": ["sodium", "pdo_mysql"], "multisite": false, "locale": null}),
            None,
        ),
        // The two examples.
        (json!({"tables": {"t": {"c": 5}}}), Some("state.tables.t.c")),
        (
            json!({"config": {"memory_limit": {"a": 1}}}),
            Some("state.config.memory_limit"),
        ),
        (
            json!({"tables": {"t": {"c": "int; DROP TABLE t"}}}),
            Some("state.tables.t.c"),
        ),
        (
            json!({"tables": {"t": {"c": ""}}}),
            Some("state.tables.t.c"),
        ),
        (json!({"tables": {"t": ["id"]}}), Some("state.tables.t")),
        (
            json!({"tables": {"wp-orders": {}}}),
            Some("state.tables.wp-orders"),
        ),
        (
            json!({"tables": {"t": {"1col": "INT"}}}),
            Some("state.tables.t.1col"),
        ),
        (json!({"tables": []}), Some("state.tables")),
        (json!({"tables": many_tables}), Some("state.tables")),
        (
            json!({"config": {"Memory_Limit": "1G"}}),
            Some("state.config.Memory_Limit"),
        ),
        (json!({"config": {"a..b": 1}}), Some("state.config.a..b")),
        (
            json!({"config": {"banner": long}}),
            Some("state.config.banner"),
        ),
        (
            json!({"config": {"memory_limit": null}}),
            Some("state.config.memory_limit"),
        ),
        (json!({"config": "memory_limit=128M"}), Some("state.config")),
        (
            json!({"plugin_version": "9.9.9"}),
            Some("state.plugin_version"),
        ),
        (json!({"platform": "shopify"}), Some("state.platform")),
        (json!({"server": {"nested": true}}), Some("state.server")),
        (json!({"bad-fact": 1}), Some("state.bad-fact")),
        (json!({"list": [[1]]}), Some("state.list")),
    ]
}

#[tokio::test]
async fn the_server_refuses_exactly_the_states_the_schema_refuses() {
    let schema = validator("state");
    each_app(async |app| {
        for (state, refused_at) in state_cases() {
            assert_eq!(
                schema.is_valid(&state),
                refused_at.is_none(),
                "the schema's verdict on {state}"
            );
            let response = app
                .post(
                    "/api/v1/plugins/heartbeat",
                    &app.merchant_key,
                    &heartbeat(state.clone()),
                )
                .await;
            match refused_at {
                None => assert_eq!(
                    response.status,
                    StatusCode::OK,
                    "{state}: {}",
                    response.body
                ),
                Some(path) => {
                    let (_, field) = response.error(StatusCode::UNPROCESSABLE_ENTITY);
                    assert_eq!(field.as_deref(), Some(path), "{state}: {}", response.body);
                }
            }
        }
        // A refused state changed nothing: the install still has the last good one.
        let installs = app.get("/api/v1/plugins/list", &app.viewer).await;
        let install = installs.ok()[0].clone();
        let detail = app
            .get(
                &format!("/api/v1/plugins/{}", install["id"].as_str().unwrap()),
                &app.viewer,
            )
            .await;
        assert_eq!(
            detail.ok()["reported_state"]["config"]["memory_limit"],
            "128M",
            "{}",
            detail.body
        );
        app
    })
    .await;
}

#[tokio::test]
async fn what_the_server_sends_and_the_documented_acks_fit_the_schemas() {
    let (heartbeats, commands, acks) = (
        validator("heartbeat"),
        validator("command"),
        validator("ack"),
    );
    let (signed, certificates) = (validator("signed_command"), validator("certificate"));
    // A polled command's two envelopes, decoded, fit their payloads' schemas.
    let check_signed = |item: &Value| {
        for (field, schema) in [("signed", &signed), ("certificate", &certificates)] {
            let payload = item[field]["payload"].as_str().unwrap();
            let bytes = host::command::decode_canonical_base64(payload).expect("canonical base64");
            check(schema, &serde_json::from_slice(&bytes).unwrap());
        }
    };
    each_app(async |app| {
        let app = app_with_healing(app).await;
        let body = heartbeat(json!({"config": {"memory_limit": "128M"},
                                    "tables": {"wp_molam_orders": {"id": "BIGINT UNSIGNED"}}}));
        assert!(heartbeats.is_valid(&body), "{body}");
        let install = app.heartbeat(body).await;
        let detection = json!({
            "plugin_id": install, "detected_issue": "Fatal error: Unknown column 'merchant_fee' in field list",
            "issue_severity": "high", "patch_type": "database_patch", "sira_confidence": 92.5,
            "proposed_patch": {"type": "database_patch", "action": "add_missing_column", "table": "wp_molam_orders",
                               "column": "merchant_fee", "column_type": "DECIMAL(10,2)"}
        });
        let created = app.post("/api/v1/plugins/autoheal", &app.sira, &detection).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let poll = format!("/api/v1/plugins/autoheal/commands/{install}");
        let apply = app.get(&poll, &app.merchant_key).await.ok()[0].clone();
        check(&commands, &apply);
        check_signed(&apply);
        let ack = json!({"success": true, "result": {"plugin_version": "1.3.5"}});
        check(&acks, &ack);
        app.post(&format!("/api/v1/plugins/autoheal/commands/{}/ack", apply["id"].as_str().unwrap()), &app.merchant_key, &ack)
            .await
            .ok();
        let id = created.body["log"]["id"].as_str().unwrap();
        app.post(&format!("/api/v1/plugins/autoheal/{id}/rollback"), &app.operator, &json!({"reason": "undo"}))
            .await
            .ok();
        let rollback = app.get(&poll, &app.merchant_key).await.ok()[0].clone();
        assert_eq!(rollback["command_type"], "rollback");
        check(&commands, &rollback);
        check_signed(&rollback);
        app
    })
    .await;
    // The acks patches/README.md shows.
    let readme = std::fs::read_to_string(repo().join("patches/README.md")).unwrap();
    let documented: Vec<Value> = readme
        .lines()
        .filter(|line| line.starts_with("{\"success\""))
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(documented.len(), 4, "the README's ack examples");
    for ack in &documented {
        check(&acks, ack);
    }
    for wrong in [
        json!({"result": {}}),
        json!({"success": "yes"}),
        json!({"success": false, "result": {"applied_operations": -1}}),
        json!({"success": true, "outcome": "refused", "result": {"reason": "signature_invalid"}}),
        json!({"success": false, "outcome": "refused", "result": {}}),
        json!({"success": false, "outcome": "refused", "result": {"reason": "bored"}}),
    ] {
        assert!(!acks.is_valid(&wrong), "{wrong}");
    }
}

fn check(validator: &Validator, instance: &Value) {
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{instance}: {errors:?}");
}

async fn app_with_healing(app: TestApp) -> TestApp {
    app.rebuilt(|parts| {
        parts
            .rules(crate::support::rules(&repo().join("rules")))
            .patches(crate::support::shipped_patches())
    })
    .await
}
