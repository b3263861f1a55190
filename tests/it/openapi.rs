//! `GET /api/openapi.json`: an OpenAPI 3.1 document, served without a credential, whose
//! component schemas are valid JSON Schema 2020-12, and which documents exactly the routes
//! the app serves — every path the router holds, and on each path exactly the methods it
//! answers.

use crate::support::{repo, TestApp, TestStore};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;
use std::collections::BTreeSet;
use tower::ServiceExt;

async fn document(app: &TestApp) -> Value {
    let response = app.call(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(response.headers["content-type"], "application/json");
    response.body
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

#[tokio::test]
async fn the_document_is_openapi_3_1_with_valid_schemas() {
    let app = TestApp::new(TestStore::sqlite().await).await;
    let document = document(&app).await;
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        document["openapi"]
    );
    // The OpenAPI Initiative's schema of 3.1 documents (`openapi-3.1.schema.json`, its
    // 2022-10-07 release, as openapi-spec-validator ships it).
    let oas: Value = serde_json::from_str(include_str!("openapi-3.1.schema.json")).unwrap();
    let validator = jsonschema::draft202012::new(&oas).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&document)
        .map(|error| format!("{}: {error}", error.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "not an OpenAPI 3.1 document: {errors:#?}"
    );

    // Every component schema is a JSON Schema 2020-12 (3.1's dialect), its `$ref`s resolved
    // within the document.
    let schemas = document["components"]["schemas"].as_object().unwrap();
    assert!(schemas.contains_key("ErrorEnvelope"), "the error envelope");
    for name in schemas.keys() {
        let mut root = document.clone();
        root["$ref"] = Value::String(format!("#/components/schemas/{name}"));
        jsonschema::draft202012::new(&root).unwrap_or_else(|error| panic!("{name}: {error}"));
    }

    // Every operation names its credential (or none), and every 4xx it documents is the
    // error envelope.
    let security: BTreeSet<&str> = document["components"]["securitySchemes"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        security,
        BTreeSet::from(["merchant_key", "ops_token", "sira_token"])
    );
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            for requirement in operation["security"].as_array().into_iter().flatten() {
                for scheme in requirement.as_object().unwrap().keys() {
                    assert!(
                        security.contains(scheme.as_str()),
                        "{method} {path}: {scheme}"
                    );
                }
            }
            for (status, response) in operation["responses"].as_object().unwrap() {
                if status.starts_with('4') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorEnvelope",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
}

/// The paths the router holds, as its `Debug` shows them (axum's own listing; a route
/// merged or added without `routes!` shows there and not in the document), but for the
/// console's: HTML pages for a browser, outside the API and its document.
fn served_paths(app: &TestApp) -> BTreeSet<String> {
    let debug = format!("{:?}", app.router);
    // The fallback router (which holds `/`) follows the path router.
    let (debug, _) = debug
        .split_once("fallback_router")
        .expect("axum's Debug of a Router names its fallback router");
    let paths: BTreeSet<String> = debug
        .split("RouteId(")
        .skip(1)
        .filter_map(|entry| {
            let (_, rest) = entry.split_once("): \"")?;
            let (path, _) = rest.split_once('"')?;
            Some(path.to_owned())
        })
        .filter(|path| !path.contains("__private__") && !path.starts_with("/console"))
        .collect();
    assert!(
        paths.contains("/healthz") && paths.contains("/api/openapi.json"),
        "axum's Debug no longer lists routes as expected: {paths:?}"
    );
    paths
}

#[tokio::test]
async fn every_route_served_is_documented_with_its_methods() {
    let app = TestApp::new(TestStore::sqlite().await).await;
    let document = document(&app).await;
    let paths = document["paths"].as_object().unwrap();
    let documented: BTreeSet<String> = paths.keys().cloned().collect();
    let served = served_paths(&app);
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "served but not documented (register it with `routes!` and `#[utoipa::path]`): \
         {undocumented:?}; documented but not served: {unserved:?}"
    );

    // On each path, a method the document lists is routed (whatever it then answers without
    // a credential), and any other is 405.
    for (path, item) in paths {
        let uri = path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "0190a0b0-0000-7000-8000-000000000000"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in METHODS {
            let request = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&uri)
                .body(Body::empty())
                .unwrap();
            let status = app.router.clone().oneshot(request).await.unwrap().status();
            if item.get(method).is_some() {
                assert_ne!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is documented but not routed"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is routed but not documented"
                );
            }
        }
    }
}

/// Every value the document lists for a query parameter is one the server takes (found by
/// schemathesis: the closed sets were documented by their Rust names, `Pending` for
/// `pending`).
#[tokio::test]
async fn every_documented_enum_value_of_a_query_parameter_is_accepted() {
    let app = TestApp::new(TestStore::sqlite().await).await;
    let document = document(&app).await;
    let mut checked = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        let Some(operation) = item.get("get") else {
            continue;
        };
        // A stream's answer never ends; the platform log's stream takes the query's own
        // parameters, which are checked there.
        if operation["responses"]["200"]["content"]
            .get("text/event-stream")
            .is_some()
        {
            continue;
        }
        let uri = path.replace("{id}", "0190a0b0-0000-7000-8000-000000000000");
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            if parameter["in"] != "query" {
                continue;
            }
            let name = parameter["name"].as_str().unwrap();
            for value in parameter["schema"]["enum"].as_array().into_iter().flatten() {
                let value = value.as_str().unwrap();
                let response = app.get(&format!("{uri}?{name}={value}"), &app.admin).await;
                assert_ne!(
                    response.status,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "{path}?{name}={value}: {}",
                    response.body
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 10, "only {checked} documented values");
}

/// Deleting a flag defined only in a file is a 409, and documented as one (found by
/// schemathesis: the document listed 200, 404 and the common errors).
#[tokio::test]
async fn deleting_a_file_flag_answers_a_documented_409() {
    let app = TestApp::with_rules(TestStore::sqlite().await, &repo().join("rules")).await;
    let document = document(&app).await;
    let response = app
        .call(
            Method::DELETE,
            "/api/platform/flags/autoheal.auto_apply",
            Some(&app.admin),
            None,
        )
        .await;
    let (code, _) = response.error(StatusCode::CONFLICT);
    assert_eq!(code, "conflict");
    let documented = &document["paths"]["/api/platform/flags/{key}"]["delete"]["responses"];
    assert_eq!(
        documented["409"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorEnvelope",
        "{documented}"
    );
}

/// Revoking or rotating a revoked credential is a 409, and documented as one (found by
/// schemathesis, which revoked the credential it was given and tried again).
#[tokio::test]
async fn acting_on_a_revoked_credential_answers_a_documented_409() {
    let app = TestApp::new(TestStore::sqlite().await).await;
    let document = document(&app).await;
    let listed = app
        .get("/api/v1/credentials?kind=merchant", &app.admin)
        .await;
    let id = listed.ok()[0]["id"].as_str().unwrap().to_owned();
    let revoke = format!("/api/v1/credentials/{id}/revoke");
    let reason = serde_json::json!({"reason": "leaked"});
    app.post(&revoke, &app.admin, &reason).await.ok();
    for (path, body) in [
        (revoke.clone(), reason.clone()),
        (
            format!("/api/v1/credentials/{id}/rotate"),
            serde_json::json!({}),
        ),
    ] {
        let (code, _) = app
            .post(&path, &app.admin, &body)
            .await
            .error(StatusCode::CONFLICT);
        assert_eq!(code, "conflict", "{path}");
    }
    for action in ["revoke", "rotate"] {
        let documented =
            &document["paths"][format!("/api/v1/credentials/{{id}}/{action}")]["post"]["responses"];
        assert_eq!(
            documented["409"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorEnvelope",
            "{action}: {documented}"
        );
    }
}
