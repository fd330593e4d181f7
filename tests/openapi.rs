//! The served OpenAPI document against the router and the real bodies:
//! every route is described with exactly its methods, every described route is
//! served, and the schemas fit what the service actually sends.

mod hostile_support;

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use hostile_support::{Answer, call, default_app, fresh_id, open_with};
use serde_json::Value;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

async fn document() -> Value {
    let (_, state) = default_app();
    let answer = call(&state, Method::GET, "/openapi.json").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["content-type"], "application/json");
    answer.json()
}

/// `/api/account/{accountId}` and `/api/account/{account_id}` name the same
/// route: parameter names differ between the document and axum.
fn template(path: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in path.chars() {
        match c {
            '{' => {
                inside = true;
                out.push_str("{}");
            }
            '}' => inside = false,
            _ if inside => {}
            _ => out.push(c),
        }
    }
    out
}

fn concrete(path: &str) -> String {
    template(path).replace("{}", "4b2ad7a8-24a8-4d5e-9e0f-5a8a1f8e3c11")
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_describes_every_route_of_the_router() {
    let document = document().await;
    assert_eq!(document["openapi"], "3.1.0");
    let described: BTreeSet<String> = document["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(|path| template(path))
        .collect();
    let served: BTreeSet<String> = accounts::http::route_paths()
        .into_iter()
        .map(template)
        .collect();
    assert_eq!(described, served, "described paths vs the router's routes");
}

/// The methods the router serves on `path`, from the `Allow` header of a 405
/// (TRACE is served nowhere).
async fn served_methods(path: &str) -> BTreeSet<String> {
    let (_, state) = default_app();
    let answer = call(&state, Method::TRACE, &concrete(path)).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
    answer.assert_json_error();
    let allow = answer.headers["allow"].to_str().expect("ASCII");
    allow
        .split(',')
        .map(|m| m.trim().to_ascii_lowercase())
        // axum answers HEAD wherever it answers GET, without a description.
        .filter(|m| m != "head")
        .collect()
}

#[tokio::test]
async fn every_described_operation_is_served_with_exactly_its_methods() {
    let document = document().await;
    for (path, item) in document["paths"].as_object().expect("paths") {
        let described: BTreeSet<String> = METHODS
            .iter()
            .filter(|m| item.get(**m).is_some())
            .map(|m| m.to_string())
            .collect();
        assert!(!described.is_empty(), "{path} has no operation");
        assert_eq!(served_methods(path).await, described, "methods of {path}");
    }
}

#[tokio::test]
async fn the_query_style_put_is_one_operation_selected_by_its_parameters() {
    let document = document().await;
    let put = &document["paths"]["/api/account/{accountId}"]["put"];
    let parameters: BTreeSet<&str> = put["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .map(|p| p["name"].as_str().expect("a name"))
        .collect();
    let expected = [
        "accountId",
        "deposit",
        "withdraw",
        "transfer",
        "amount",
        "transactionId",
    ];
    assert_eq!(parameters, expected.into_iter().collect());
    for name in ["deposit", "withdraw", "transfer", "amount"] {
        let parameter = put["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap();
        assert_eq!(parameter["required"], false, "{name} is optional");
    }
}

/// Every status of ../shared/API.md that an operation can answer is
/// described, with the JSON error body for every error.
#[tokio::test]
async fn every_status_of_the_contract_is_described() {
    let document = document().await;
    let expected: &[(&str, &str, &[&str])] = &[
        ("/api/account/{accountId}", "post", &["201", "400", "409"]),
        ("/api/account/{accountId}", "get", &["200", "400", "404"]),
        (
            "/api/account/{accountId}",
            "put",
            &["204", "400", "404", "409", "422"],
        ),
        (
            "/api/account/{accountId}",
            "delete",
            &["204", "400", "404", "409", "422"],
        ),
        (
            "/api/account/{accountId}/deposit",
            "put",
            &["204", "400", "404", "409", "422"],
        ),
        (
            "/api/account/{accountId}/withdraw",
            "put",
            &["204", "400", "404", "409", "422"],
        ),
        (
            "/api/account/{accountId}/transfer",
            "put",
            &["204", "400", "404", "409", "422"],
        ),
        ("/api/account/{accountId}/events", "get", &["200", "400"]),
        ("/ready", "get", &["200", "503"]),
    ];
    for (path, method, statuses) in expected {
        let responses = &document["paths"][path][method]["responses"];
        let mut all: Vec<&str> = statuses.to_vec();
        all.extend(["408", "413", "414", "503"]);
        for status in all {
            let response = &responses[status];
            assert!(response.is_object(), "{method} {path} lacks {status}");
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/Error",
                    "{method} {path} {status}"
                );
            }
        }
        assert!(
            responses["503"]["headers"]["Retry-After"].is_object(),
            "{method} {path}: 503 has Retry-After"
        );
    }
    let open = &document["paths"]["/api/account/{accountId}"]["post"];
    assert!(open["responses"]["201"]["headers"]["Location"].is_object());
}

fn schema<'a>(document: &'a Value, name: &str) -> &'a Value {
    let schema = &document["components"]["schemas"][name];
    assert!(schema.is_object(), "no schema {name}");
    schema
}

/// The keys of `body` are the properties of the schema, and its required
/// properties are all there; ids are UUIDs, integers integers.
fn assert_fits(document: &Value, name: &str, body: &Value) {
    let schema = schema(document, name);
    let properties = schema["properties"].as_object().expect("properties");
    let object = body.as_object().expect("an object");
    let keys: BTreeSet<&String> = object.keys().collect();
    let described: BTreeSet<&String> = properties.keys().collect();
    assert!(
        keys.is_subset(&described),
        "{name}: {keys:?} vs {described:?}"
    );
    for required in schema["required"].as_array().expect("required") {
        let required = required.as_str().unwrap();
        assert!(
            object.contains_key(required),
            "{name} lacks {required}: {body}"
        );
    }
    for (key, value) in object {
        let property = &properties[key];
        let types: Vec<&str> = match &property["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let fits = types.iter().any(|t| match *t {
            "string" => value.is_string(),
            "integer" => value.is_i64(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            _ => false,
        }) || property["enum"]
            .as_array()
            .is_some_and(|values| values.contains(value));
        assert!(fits, "{name}.{key} = {value} does not fit {property}");
        if property["format"] == "uuid" {
            let text = value.as_str().unwrap();
            assert_eq!(uuid::Uuid::parse_str(text).unwrap().to_string(), text);
        }
    }
}

#[tokio::test]
async fn bodies_fit_their_schemas() {
    let document = document().await;
    let (_, state) = default_app();
    let (source, target) = (fresh_id(), fresh_id());
    open_with(&state, &source, 10).await;
    open_with(&state, &target, 0).await;
    let steps = [
        format!(
            "/api/account/{source}/withdraw?amount=3&transactionId={}",
            fresh_id()
        ),
        format!(
            "/api/account/{source}/transfer?targetAccount={target}&amount=7&transactionId={}",
            fresh_id()
        ),
    ];
    for uri in steps {
        assert_eq!(
            call(&state, Method::PUT, &uri).await.status,
            StatusCode::NO_CONTENT
        );
    }
    let closed = call(&state, Method::DELETE, &format!("/api/account/{source}")).await;
    assert_eq!(closed.status, StatusCode::NO_CONTENT);

    let mut seen = BTreeSet::new();
    for account in [&source, &target] {
        let events = call(
            &state,
            Method::GET,
            &format!("/api/account/{account}/events"),
        )
        .await;
        for event in events.json().as_array().expect("an array") {
            let kind = event["type"].as_str().expect("a type").to_owned();
            assert_fits(&document, &kind, event);
            seen.insert(kind);
        }
        let account_state = call(&state, Method::GET, &format!("/api/account/{account}")).await;
        assert_fits(&document, "Account", &account_state.json());
    }
    let all: BTreeSet<String> = [
        "AccountOpened",
        "MoneyDeposited",
        "MoneyWithdrawn",
        "AccountClosed",
    ]
    .map(String::from)
    .into();
    assert_eq!(seen, all, "every event type was checked");
    let one_of = schema(&document, "Event")["oneOf"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(one_of, all.len());

    let error: Answer = call(&state, Method::GET, "/api/account/banana").await;
    assert_fits(&document, "Error", &error.json());
}
