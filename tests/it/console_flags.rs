//! The console's flag editor, overrides and rollout plans, posted as a browser would:
//! each form is read back through the JSON API, each refusal names the field the API would
//! name, and a viewer's forged post is refused. On every backend.

use crate::console::{Browser, Page};
use crate::support::{each_app, TestApp};
use axum::http::StatusCode;
use serde_json::{json, Value};

const FLAGS: &str = "/api/platform/flags";

/// The flag as the API shows it, read as an operator.
async fn api_flag(app: &TestApp, key: &str) -> Value {
    app.get(&format!("{FLAGS}/{key}"), &app.operator)
        .await
        .ok()
        .clone()
}

/// A flag created through the API, as an operator.
async fn api_create(app: &TestApp, flag: Value) {
    let created = app.post(FLAGS, &app.operator, &flag).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
}

/// An action's answer: back to the flag's page.
#[track_caller]
fn assert_done(page: &Page, key: &str) {
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
    assert_eq!(
        page.location(),
        Some(format!("/console/flags/{key}").as_str())
    );
}

/// The console's error page, naming `field` with a message starting with `message`.
#[track_caller]
fn assert_refused(page: &Page, field: &str, message: &str) {
    assert_eq!(
        page.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        page.html
    );
    let shown = format!("<code>{field}</code>: {message}");
    assert!(page.html.contains(&shown), "{shown:?} not in {}", page.html);
}

#[tokio::test]
async fn a_flag_of_each_type_is_created_through_the_editor() {
    each_app(|app: TestApp| async move {
        let mut browser = Browser::signed_in(&app, "operator@ops.test").await;
        browser.get("/console/flags").await.assert_ok("href=\"/console/flags/new\"");
        browser.get("/console/flags/new").await.assert_ok("Create flag");

        let created = [
            (
                "c.boolean",
                vec![("type", "boolean"), ("description", "A switch"), ("audience", "plugins"),
                     ("default_value", "false"), ("enabled", "false")],
                json!({"type": "boolean", "description": "A switch", "audience": "plugins",
                       "default_value": false, "enabled": false}),
            ),
            (
                "c.percentage",
                vec![("type", "percentage"), ("percentage", "25"), ("stickiness", "tenant_id"),
                     ("group_id", "checkout")],
                json!({"type": "percentage", "percentage": 25, "stickiness": "tenant_id",
                       "group_id": "checkout", "audience": "platform", "enabled": true}),
            ),
            (
                "c.tenants",
                vec![("type", "tenant_list"), ("enabled_tenants", "t1\nt2, t3\n\n"),
                     ("disabled_tenants", "t4")],
                json!({"type": "tenant_list", "enabled_tenants": ["t1", "t2", "t3"],
                       "disabled_tenants": ["t4"]}),
            ),
            (
                "c.users",
                vec![("type", "user_list"), ("enabled_users", "u1\r\nu2"), ("percentage", "")],
                json!({"type": "user_list", "enabled_users": ["u1", "u2"], "percentage": null}),
            ),
            (
                "c.schedule",
                vec![("type", "schedule"), ("schedule.start", "2030-01-01T09:00"),
                     ("schedule.end", "2030-01-02T09:30:15")],
                json!({"type": "schedule",
                       "schedule": {"start": "2030-01-01T09:00:00Z", "end": "2030-01-02T09:30:15Z"}}),
            ),
            (
                "c.variant",
                vec![("type", "variant"), ("default_value", "control"),
                     ("variants", r#"[{"name": "control", "weight": 50},
                                      {"name": "treatment", "weight": 50, "payload": {"color": "blue"}}]"#),
                     ("variant_stickiness", "tenant_id"), ("variant_group_id", "checkout")],
                json!({"type": "variant", "default_value": "control",
                       "variants": [{"name": "control", "weight": 50},
                                    {"name": "treatment", "weight": 50, "payload": {"color": "blue"}}],
                       "variant_stickiness": "tenant_id", "variant_group_id": "checkout"}),
            ),
        ];
        for (key, fields, expected) in created {
            let mut form = vec![("key", key)];
            form.extend(fields);
            let page = browser.post("/console/flags", &form).await;
            assert_done(&page, key);
            let flag = api_flag(&app, key).await;
            assert_eq!(flag["key"], key);
            assert_eq!(flag["source"], "store");
            for (field, value) in expected.as_object().unwrap() {
                assert_eq!(&flag[field], value, "{key}.{field} in {flag}");
            }
        }
        // Its page shows the message and the editor holding the definition.
        let page = browser.get("/console/flags/c.variant").await;
        page.assert_ok("Flag c.variant created.");
        assert!(page.html.contains("Edit the definition"));
        assert!(page.html.contains("treatment"));
        let page = browser.get("/console/flags/c.schedule").await;
        page.assert_ok("value=\"2030-01-02T09:30:15\"");
        // Created by the session's agent, in the flag's trail.
        let trail = app.get(&format!("{FLAGS}/c.boolean/audit"), &app.viewer).await;
        assert_eq!(trail.ok()[0]["action"], "flag.create");
        assert_eq!(trail.ok()[0]["actor_kind"], "ops_agent");
        // A key starting with "new" is a flag's page, not the new-flag form; a flag keyed
        // `new` is still switched (its page is the form's path).
        browser.post("/console/flags", &[("key", "new"), ("type", "boolean")]).await;
        browser.post("/console/flags", &[("key", "newer"), ("type", "boolean")]).await;
        browser.get("/console/flags/newer").await.assert_ok("Flag newer");
        let switched = browser.post("/console/flags/new/switch", &[("enabled", "false")]).await;
        assert_done(&switched, "new");
        assert_eq!(api_flag(&app, "new").await["enabled"], false);
        app
    })
    .await;
}

/// A form's fields, the field its refusal names, and how the message starts.
type Refusal<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);

#[tokio::test]
async fn a_definition_the_engine_refuses_names_the_field() {
    each_app(|app: TestApp| async move {
        let mut browser = Browser::signed_in(&app, "operator@ops.test").await;
        let refused: [Refusal; 10] = [
            (
                &[("type", "percentage")],
                "percentage",
                "a percentage flag needs a percentage (0–100)",
            ),
            (
                &[("type", "percentage"), ("percentage", "101")],
                "percentage",
                "must be within 0..=100",
            ),
            (
                &[("type", "percentage"), ("percentage", "ten")],
                "percentage",
                "must be an integer",
            ),
            (
                &[("type", "tenant_list")],
                "enabled_tenants",
                "a tenant_list flag needs",
            ),
            (
                &[("type", "user_list")],
                "enabled_users",
                "a user_list flag needs enabled_users",
            ),
            (
                &[
                    ("type", "schedule"),
                    ("schedule.start", "2030-01-02T00:00"),
                    ("schedule.end", "2030-01-01T00:00"),
                ],
                "schedule.end",
                "must be after start",
            ),
            (
                &[("type", "schedule"), ("schedule.start", "tomorrow")],
                "schedule.start",
                "must be a date and time",
            ),
            (
                &[
                    ("type", "variant"),
                    ("default_value", "a"),
                    ("variants", r#"[{"name": "a", "weight": -1}]"#),
                ],
                "variants[0].weight",
                "",
            ),
            (
                &[("type", "boolean"), ("default_value", "\"yes\"")],
                "default_value",
                "must be a boolean for a boolean flag",
            ),
            (&[("type", "bogus")], "type", ""),
        ];
        for (fields, field, message) in refused {
            let mut form = vec![("key", "refused")];
            form.extend_from_slice(fields);
            let page = browser.post("/console/flags", &form).await;
            assert_refused(&page, field, message);
        }
        let bad_key = browser
            .post("/console/flags", &[("key", "bad key"), ("type", "boolean")])
            .await;
        assert_refused(&bad_key, "key", "must be 1–200 letters");
        app.get(&format!("{FLAGS}/refused"), &app.operator)
            .await
            .error(StatusCode::NOT_FOUND);
        app
    })
    .await;
}

#[tokio::test]
async fn the_editor_changes_a_flag_as_a_merge_patch_does() {
    each_app(|app: TestApp| async move {
        api_create(
            &app,
            json!({"key": "payouts", "type": "percentage", "percentage": 10,
                                "stickiness": "tenant_id", "description": "Instant payouts"}),
        )
        .await;
        let mut browser = Browser::signed_in(&app, "operator@ops.test").await;
        let page = browser.get("/console/flags/payouts").await;
        page.assert_ok("Instant payouts");
        assert!(
            page.html
                .contains("name=\"stickiness\" value=\"tenant_id\""),
            "the editor holds the stickiness"
        );

        // A blank field is removed; `enabled` stays; `archived` is the checkbox.
        let saved = browser
            .post(
                "/console/flags/payouts/edit",
                &[
                    ("type", "percentage"),
                    ("percentage", "40"),
                    ("audience", "plugins"),
                    ("description", ""),
                    ("stickiness", ""),
                    ("enabled_users", "vip"),
                    ("archived", "true"),
                ],
            )
            .await;
        assert_done(&saved, "payouts");
        let flag = api_flag(&app, "payouts").await;
        assert_eq!(
            (flag["percentage"].clone(), flag["audience"].clone()),
            (json!(40), json!("plugins"))
        );
        assert_eq!(
            (flag["description"].clone(), flag["stickiness"].clone()),
            (json!(""), Value::Null)
        );
        assert_eq!(flag["enabled_users"], json!(["vip"]));
        assert_eq!(
            (flag["enabled"].clone(), flag["archived"].clone()),
            (json!(true), json!(true))
        );
        browser
            .get("/console/flags/payouts")
            .await
            .assert_ok("Flag payouts saved.");
        let trail = app
            .get(&format!("{FLAGS}/payouts/audit"), &app.viewer)
            .await;
        assert_eq!(trail.ok()[0]["action"], "flag.update");
        assert_eq!(trail.ok()[0]["before"]["percentage"], 10);
        assert_eq!(trail.ok()[0]["after"]["percentage"], 40);

        // A change the engine refuses changes nothing.
        let refused = browser
            .post("/console/flags/payouts/edit", &[("type", "variant")])
            .await;
        assert_refused(
            &refused,
            "default_value",
            "a variant flag needs a default_value (a string)",
        );
        let refused = browser
            .post(
                "/console/flags/payouts/edit",
                &[
                    ("type", "percentage"),
                    ("percentage", "40"),
                    ("variants", r#"[{"name": "a", "weight": 1}]"#),
                ],
            )
            .await;
        assert_refused(
            &refused,
            "variants",
            "only variant flags have variants, not percentage",
        );
        let refused = browser
            .post(
                "/console/flags/payouts/edit",
                &[("type", "percentage"), ("variants", "[{")],
            )
            .await;
        assert_refused(&refused, "variants", "must be a JSON array");
        assert_eq!(api_flag(&app, "payouts").await["type"], "percentage");
        app
    })
    .await;
}

#[tokio::test]
async fn an_override_is_set_and_deleted_with_the_apis_checks() {
    each_app(|app: TestApp| async move {
        api_create(
            &app,
            json!({"key": "payouts", "type": "percentage", "percentage": 0}),
        )
        .await;
        let mut browser = Browser::signed_in(&app, "operator@ops.test").await;
        browser
            .get("/console/flags/payouts")
            .await
            .assert_ok("Set override");
        let overrides = "/console/flags/payouts/overrides";
        for (fields, field, message) in [
            (
                [
                    ("scope", "user"),
                    ("target", "vip"),
                    ("value", "yes"),
                    ("reason", "r"),
                ],
                "value",
                "must be a boolean for a percentage flag",
            ),
            (
                [
                    ("scope", "team"),
                    ("target", "vip"),
                    ("value", "true"),
                    ("reason", "r"),
                ],
                "scope",
                "must be tenant or user",
            ),
            (
                [
                    ("scope", "user"),
                    ("target", " "),
                    ("value", "true"),
                    ("reason", "r"),
                ],
                "target",
                "must name a tenant or a user",
            ),
            (
                [
                    ("scope", "user"),
                    ("target", "vip"),
                    ("value", "true"),
                    ("reason", " "),
                ],
                "reason",
                "must say why",
            ),
        ] {
            assert_refused(&browser.post(overrides, &fields).await, field, message);
        }
        let set = browser
            .post(
                overrides,
                &[
                    ("scope", "user"),
                    ("target", "vip"),
                    ("value", "true"),
                    ("reason", "pilot customer"),
                ],
            )
            .await;
        assert_done(&set, "payouts");
        let listed = app
            .get(&format!("{FLAGS}/payouts/overrides"), &app.viewer)
            .await;
        let listed = listed.ok().as_array().unwrap().clone();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (
                listed[0]["scope"].clone(),
                listed[0]["target"].clone(),
                listed[0]["value"].clone()
            ),
            (json!("user"), json!("vip"), json!(true))
        );
        assert_eq!(listed[0]["reason"], "pilot customer");
        let evaluated = app
            .post(
                &format!("{FLAGS}/evaluate"),
                &app.viewer,
                &json!({"key": "payouts", "context": {"user_id": "vip"}}),
            )
            .await;
        assert_eq!(evaluated.ok()["value"], true);
        let page = browser.get("/console/flags/payouts").await;
        page.assert_ok("pilot customer");
        assert!(page.html.contains("Remove the override for user vip"));

        let removed = browser
            .post(
                "/console/flags/payouts/overrides/delete",
                &[("scope", "user"), ("target", "vip")],
            )
            .await;
        assert_done(&removed, "payouts");
        let listed = app
            .get(&format!("{FLAGS}/payouts/overrides"), &app.viewer)
            .await;
        assert!(listed.ok().as_array().unwrap().is_empty());
        let again = browser
            .post(
                "/console/flags/payouts/overrides/delete",
                &[("scope", "user"), ("target", "vip")],
            )
            .await;
        assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.html);
        let trail = app
            .get(&format!("{FLAGS}/payouts/audit"), &app.viewer)
            .await;
        let actions: Vec<&str> = trail
            .ok()
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert_eq!(
            actions,
            ["flag.override.delete", "flag.override.set", "flag.create"]
        );
        app
    })
    .await;
}

#[tokio::test]
async fn a_rollout_plan_is_started_and_cancelled() {
    each_app(|app: TestApp| async move {
        api_create(&app, json!({"key": "payouts", "type": "percentage", "percentage": 0, "stickiness": "tenant_id"})).await;
        api_create(&app, json!({"key": "plain", "type": "boolean"})).await;
        let mut browser = Browser::signed_in(&app, "operator@ops.test").await;
        browser.get("/console/flags/payouts").await.assert_ok("Start plan");
        let rollouts = "/console/flags/payouts/rollouts";
        for (steps, threshold, min_outcomes, field, message) in [
            ("", "5", "", "steps", "1 to 20 steps"),
            ("50 1h\n10 1h", "5", "", "steps[1].percentage", "must be above the previous step"),
            ("ten 1h", "5", "", "steps[0].percentage", "must be an integer within 0..=100"),
            ("101 1h", "5", "", "steps[0].percentage", "must be within 0..=100"),
            ("10 1y", "5", "", "steps[0].hold_minutes", "must be minutes"),
            ("10 31d", "5", "", "steps[0].hold_minutes", "must be minutes"),
            ("10 1h 2h", "5", "", "steps[0]", "write a step as PERCENT HOLD"),
            ("10 1h", "500", "", "error_rate_threshold", "must be a percentage within 0..=100"),
            ("10 1h", "", "", "error_rate_threshold", "is required"),
            ("10 1h", "5", "0", "min_outcomes", "must be between 1 and 1000000"),
        ] {
            let page = browser
                .post(rollouts, &[("steps", steps), ("error_rate_threshold", threshold), ("min_outcomes", min_outcomes)])
                .await;
            assert_refused(&page, field, message);
        }
        let plain = browser
            .post("/console/flags/plain/rollouts", &[("steps", "10 1h"), ("error_rate_threshold", "5")])
            .await;
        assert_refused(&plain, "steps", "flag plain has no percentage to roll out");

        let started = browser
            .post(rollouts, &[("steps", "10 1h\n50% 90\n\n100"), ("error_rate_threshold", "2.5"), ("min_outcomes", "")])
            .await;
        assert_done(&started, "payouts");
        let plans = app.get(&format!("{FLAGS}/payouts/rollouts"), &app.viewer).await;
        let plan = plans.ok()[0].clone();
        assert_eq!(plan["status"], "active");
        assert_eq!(plan["steps"], json!([{"percentage": 10, "hold_minutes": 60},
                                         {"percentage": 50, "hold_minutes": 90},
                                         {"percentage": 100, "hold_minutes": 0}]));
        assert_eq!(plan["error_rate_threshold"].as_f64(), Some(2.5));
        assert_eq!(plan["min_outcomes"], 20);
        assert_eq!(api_flag(&app, "payouts").await["percentage"], 10);
        let page = browser.get("/console/flags/payouts").await;
        page.assert_ok("10 %, hold 1h (now)");
        assert!(page.html.contains("50 %, hold 90m"));
        assert!(page.html.contains("above 2.5 %, over at least 20 outcomes"));
        assert!(page.html.contains("this step holds until"));
        assert!(!page.html.contains("Start plan"), "one active plan at a time");
        let second = browser.post(rollouts, &[("steps", "20 1h"), ("error_rate_threshold", "5")]).await;
        assert_eq!(second.status, StatusCode::CONFLICT, "{}", second.html);

        let id = plan["id"].as_str().unwrap();
        let cancel = format!("/console/flags/payouts/rollouts/{id}/cancel");
        assert_refused(&browser.post(&cancel, &[("reason", "")]).await, "reason", "must say why");
        let bad_id = browser.post("/console/flags/payouts/rollouts/nope/cancel", &[("reason", "enough")]).await;
        assert_refused(&bad_id, "id", "must be a UUID");
        let cancelled = browser.post(&cancel, &[("reason", "enough for today")]).await;
        assert_done(&cancelled, "payouts");
        let plans = app.get(&format!("{FLAGS}/payouts/rollouts"), &app.viewer).await;
        assert_eq!(plans.ok()[0]["status"], "cancelled");
        assert_eq!(plans.ok()[0]["status_reason"], "enough for today");
        assert_eq!(api_flag(&app, "payouts").await["percentage"], 10, "the flag stays where it got");
        let again = browser.post(&cancel, &[("reason", "again")]).await;
        assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.html);
        let page = browser.get("/console/flags/payouts").await;
        page.assert_ok("enough for today");
        assert!(page.html.contains("Start plan"));
        app
    })
    .await;
}

#[tokio::test]
async fn a_viewer_sees_no_editor_and_its_posts_are_refused() {
    each_app(|app: TestApp| async move {
        api_create(&app, json!({"key": "payouts", "type": "percentage", "percentage": 0})).await;
        let overridden = app
            .post(&format!("{FLAGS}/payouts/overrides"), &app.operator,
                  &json!({"scope": "tenant", "target": "t1", "value": true, "reason": "pilot"}))
            .await;
        assert_eq!(overridden.status, StatusCode::CREATED, "{}", overridden.body);
        let plan = app
            .post(&format!("{FLAGS}/payouts/rollouts"), &app.operator,
                  &json!({"steps": [{"percentage": 10, "hold_minutes": 60}], "error_rate_threshold": 5.0}))
            .await;
        let id = plan.ok()["id"].as_str().unwrap().to_owned();

        let mut viewer = Browser::signed_in(&app, "viewer@ops.test").await;
        let list = viewer.get("/console/flags").await;
        list.assert_ok("payouts");
        assert!(!list.html.contains("New flag"));
        let page = viewer.get("/console/flags/payouts").await;
        page.assert_ok("pilot");
        for action in ["Edit the definition", "Set override", "Remove the override", "Start plan", "Cancel plan"] {
            assert!(!page.html.contains(action), "no {action:?} for a viewer");
        }
        let form = viewer.get("/console/flags/new").await;
        assert_eq!(form.status, StatusCode::FORBIDDEN, "{}", form.html);
        let cancel = format!("/console/flags/payouts/rollouts/{id}/cancel");
        let forged: [(&str, Vec<(&str, &str)>); 6] = [
            ("/console/flags", vec![("key", "forged"), ("type", "boolean")]),
            ("/console/flags/payouts/edit", vec![("type", "boolean")]),
            ("/console/flags/payouts/overrides", vec![("scope", "user"), ("target", "me"), ("value", "true"), ("reason", "forged")]),
            ("/console/flags/payouts/overrides/delete", vec![("scope", "tenant"), ("target", "t1")]),
            ("/console/flags/payouts/rollouts", vec![("steps", "50 1h"), ("error_rate_threshold", "5")]),
            (cancel.as_str(), vec![("reason", "forged")]),
        ];
        for (path, fields) in forged {
            let refused = viewer.post(path, &fields).await;
            assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}: {}", refused.html);
            assert!(refused.html.contains("lacks permission flags:write"), "{}", refused.html);
        }
        app.get(&format!("{FLAGS}/forged"), &app.operator).await.error(StatusCode::NOT_FOUND);
        let flag = api_flag(&app, "payouts").await;
        assert_eq!((flag["type"].clone(), flag["percentage"].clone()), (json!("percentage"), json!(10)));
        let overrides = app.get(&format!("{FLAGS}/payouts/overrides"), &app.viewer).await;
        assert_eq!(overrides.ok().as_array().unwrap().len(), 1);
        let plans = app.get(&format!("{FLAGS}/payouts/rollouts"), &app.viewer).await;
        assert_eq!(plans.ok()[0]["status"], "active");
        app
    })
    .await;
}
