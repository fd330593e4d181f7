//! The served OpenAPI document against the router and the real bodies:
//! every route is described with exactly its methods, every described route is
//! served, and the schemas fit what the service actually sends.

use std::collections::BTreeSet;

use accounts::http::{
    EVENTS_LIMIT_DEFAULT, EVENTS_LIMIT_MAX, ErrorCode, FEED_LIMIT_DEFAULT, FEED_LIMIT_MAX,
    FEED_WAIT_MS_MAX,
};
use serde_json::Value;
use testkit::{Client, InProcess, Method, StatusCode, TestInstance, fresh_id};

use accounts::http::REWIND_EVENT;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

fn api() -> Client<InProcess> {
    TestInstance::new().client()
}

async fn document() -> Value {
    let answer = api().openapi().await;
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
        .iter()
        .map(|path| template(path))
        .collect();
    assert_eq!(described, served, "described paths vs the router's routes");
}

/// The methods the router serves on `path`, from the `Allow` header of a 405
/// (TRACE is served nowhere).
async fn served_methods(path: &str) -> BTreeSet<String> {
    let answer = api().send(Method::TRACE, concrete(path)).await;
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

/// Every status of docs/API.md that an operation can answer is
/// described, with the JSON error body for every error.
#[tokio::test]
async fn every_status_of_the_contract_is_described() {
    let document = document().await;
    // Every write answers these.
    const WRITE: &[&str] = &["204", "400", "404", "409", "422"];
    let expected: &[(&str, &str, &[&str])] = &[
        ("/api/account/{accountId}", "post", &["201", "400", "409"]),
        ("/api/account/{accountId}", "get", &["200", "400", "404"]),
        ("/api/account/{accountId}", "put", WRITE),
        ("/api/account/{accountId}", "delete", WRITE),
        ("/api/account/{accountId}/deposit", "put", WRITE),
        ("/api/account/{accountId}/withdraw", "put", WRITE),
        ("/api/account/{accountId}/transfer", "put", WRITE),
        ("/api/account/{accountId}/events", "get", &["200", "400"]),
        ("/api/events", "get", &["200", "400", "403"]),
        ("/api/events/stream", "get", &["200", "400", "403"]),
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

/// `schema` with a `$ref` to a component replaced by the component.
fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("a component reference: {reference}"));
            resolve(document, self::schema(document, name))
        }
        None => schema,
    }
}

/// Checks `value` against `schema` (following `$ref`, `allOf` and
/// `oneOf`, as utoipa derives them) and returns the object keys the schema
/// describes, so the caller can require that every key of a body is
/// described by one part or another.
fn check(document: &Value, schema: &Value, value: &Value) -> Result<BTreeSet<String>, String> {
    let schema = resolve(document, schema);
    if let Some(parts) = schema["allOf"].as_array() {
        let mut described = BTreeSet::new();
        for part in parts {
            described.extend(check(document, part, value)?);
        }
        return Ok(described);
    }
    if let Some(alternatives) = schema["oneOf"].as_array() {
        let fitting: Vec<BTreeSet<String>> = alternatives
            .iter()
            .filter_map(|alternative| check(document, alternative, value).ok())
            .collect();
        return match fitting.as_slice() {
            [described] => Ok(described.clone()),
            _ => Err(format!(
                "{value} fits {} of the alternatives of {schema}, not exactly one",
                fitting.len()
            )),
        };
    }
    check_value(schema, value)?;
    let Some(properties) = schema["properties"].as_object() else {
        return Ok(BTreeSet::new());
    };
    let object = value
        .as_object()
        .ok_or(format!("{value} is not an object"))?;
    for required in schema["required"].as_array().into_iter().flatten() {
        let required = required.as_str().unwrap();
        if !object.contains_key(required) {
            return Err(format!("{value} lacks {required}"));
        }
    }
    for (key, property) in properties {
        if let Some(field) = object.get(key) {
            check(document, property, field).map_err(|error| format!("{key}: {error}"))?;
        }
    }
    Ok(properties.keys().cloned().collect())
}

/// The type, enum, format and minimum of one non-composed schema.
fn check_value(schema: &Value, value: &Value) -> Result<(), String> {
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let typed = types.iter().any(|t| match *t {
        "string" => value.is_string(),
        "integer" => value.is_i64(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        _ => false,
    });
    if !types.is_empty() && !typed {
        return Err(format!("{value} is not of type {types:?}"));
    }
    if let Some(values) = schema["enum"].as_array()
        && !values.contains(value)
    {
        return Err(format!("{value} is not one of {values:?}"));
    }
    if let (Some(minimum), Some(number)) = (schema["minimum"].as_i64(), value.as_i64())
        && number < minimum
    {
        return Err(format!("{value} is below the minimum {minimum}"));
    }
    if schema["format"] == "uuid" && !value.is_null() {
        let text = value.as_str().unwrap_or_default();
        let canonical = uuid::Uuid::parse_str(text).map(|id| id.to_string());
        if canonical.as_deref() != Ok(text) {
            return Err(format!("{value} is not a lower-case hyphenated UUID"));
        }
    }
    Ok(())
}

/// `body` fits the component `name`, and every key of it is described.
fn assert_fits(document: &Value, name: &str, body: &Value) {
    let described = check(document, schema(document, name), body)
        .unwrap_or_else(|error| panic!("{name}: {error}"));
    let keys: BTreeSet<String> = body
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect();
    assert!(
        keys.is_subset(&described),
        "{name}: {keys:?} vs {described:?}"
    );
}

#[tokio::test]
async fn bodies_fit_their_schemas() {
    let document = document().await;
    let api = api();
    let (source, target) = (fresh_id(), fresh_id());
    api.open_funded(&source, fresh_id(), 10, fresh_id()).await;
    api.open_funded(&target, fresh_id(), 0, fresh_id()).await;
    let steps = [
        api.withdraw(&source, 3, fresh_id()),
        api.transfer(&source, &target, 7, fresh_id()),
    ];
    for step in steps {
        step.await.assert_status(StatusCode::NO_CONTENT);
    }
    let closed = api.close(&source).await;
    assert_eq!(closed.status, StatusCode::NO_CONTENT);

    let mut seen = BTreeSet::new();
    for account in [&source, &target] {
        let events = api.events(account).await;
        for event in events.json().as_array().expect("an array") {
            assert_fits(&document, "Event", event);
            seen.insert(event["type"].as_str().expect("a type").to_owned());
        }
        let account_state = api.state(account).await;
        assert_fits(&document, "Account", &account_state.json());
        let past = api.state_at_version(account, 1).await;
        assert_fits(&document, "Account", &past.json());
    }
    let feed = api.whole_feed(3).await;
    assert!(feed.len() >= 6);
    for event in &feed {
        assert_fits(&document, "FeedEvent", event);
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
    // One alternative per event type, told apart by `type`.
    let event = schema(&document, "Event");
    let details = event["allOf"]
        .as_array()
        .expect("the stream's fields and the event's own")
        .iter()
        .map(|part| resolve(&document, part))
        .find_map(|part| part["oneOf"].as_array())
        .expect("the event types as alternatives");
    assert_eq!(details.len(), all.len());

    let error = api.state("banana").await;
    assert_fits(&document, "Error", &error.json());
    let bad_type = serde_json::json!({"sequenceNumber": 1, "transactionId": fresh_id(), "type": "MoneyPrinted", "recordedAt": "2026-01-01T00:00:00.000Z"});
    assert!(check(&document, schema(&document, "Event"), &bad_type).is_err());
    let negative = serde_json::json!({"accountId": fresh_id(), "ownerId": fresh_id(), "balance": -1, "open": true});
    assert!(check(&document, schema(&document, "Account"), &negative).is_err());
}

/// The error codes the document lists are exactly the service's.
#[tokio::test]
async fn the_error_schema_lists_every_error_code() {
    let document = document().await;
    let error = schema(&document, "Error");
    assert_eq!(error["required"], serde_json::json!(["code", "message"]));
    let listed: Vec<&str> = resolve(&document, &error["properties"]["code"])["enum"]
        .as_array()
        .expect("the codes")
        .iter()
        .map(|code| code.as_str().unwrap())
        .collect();
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|code| code.as_str()).collect();
    assert_eq!(listed, codes, "ErrorCode::ALL is every variant, in order");
}

/// The page limits in the document are the ones the handler enforces.
#[tokio::test]
async fn the_event_page_limits_come_from_the_constants() {
    let document = document().await;
    let parameters = document["paths"]["/api/account/{accountId}/events"]["get"]["parameters"]
        .as_array()
        .expect("parameters");
    let limit = parameters
        .iter()
        .find(|parameter| parameter["name"] == "limit")
        .expect("a limit parameter");
    assert_eq!(limit["schema"]["maximum"], EVENTS_LIMIT_MAX);
    assert_eq!(limit["schema"]["default"], EVENTS_LIMIT_DEFAULT);
    let description = limit["description"].as_str().unwrap();
    assert!(
        description.contains(&EVENTS_LIMIT_MAX.to_string()),
        "{description}"
    );
    let parameters = document["paths"]["/api/events"]["get"]["parameters"]
        .as_array()
        .expect("parameters");
    let limit = parameters
        .iter()
        .find(|parameter| parameter["name"] == "limit")
        .expect("a limit parameter");
    assert_eq!(limit["schema"]["maximum"], FEED_LIMIT_MAX);
    assert_eq!(limit["schema"]["default"], FEED_LIMIT_DEFAULT);
    let wait = parameters
        .iter()
        .find(|parameter| parameter["name"] == "waitMs")
        .expect("a waitMs parameter");
    assert_eq!(wait["schema"]["maximum"], FEED_WAIT_MS_MAX);
}

/// docs/API.md, the project's own API reference, next to this document:
/// every operation is described there as `METHOD /path`, and every error
/// code (of the document's Error schema, which is the `ErrorCode` enum) has
/// its row.
#[tokio::test]
async fn the_api_reference_describes_every_operation_and_error_code() {
    let document = document().await;
    let reference = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/API.md"))
        .expect("docs/API.md");
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in METHODS.iter().filter(|m| item.get(**m).is_some()) {
            let operation = format!("{} {path}", method.to_ascii_uppercase());
            assert!(
                reference.contains(&operation),
                "docs/API.md does not mention {operation}"
            );
        }
    }
    let error = schema(&document, "Error");
    let codes = resolve(&document, &error["properties"]["code"])["enum"]
        .as_array()
        .expect("the codes");
    assert_eq!(codes.len(), ErrorCode::ALL.len());
    for code in codes {
        let row = format!("| `{}` |", code.as_str().unwrap());
        assert!(
            reference.contains(&row),
            "docs/API.md has no row for the error code {code}"
        );
    }
}

/// A transfer moves at least 1, in both URL styles, as the handler decides;
/// the stream's limit and its 503 are described.
#[tokio::test]
async fn the_transfer_minimum_and_the_stream_limit_are_described() {
    let document = document().await;
    let amount_of = |path: &str| {
        let put = &document["paths"][path]["put"];
        put["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .find(|p| p["name"] == "amount")
            .expect("an amount")["schema"]["minimum"]
            .as_i64()
    };
    for path in [
        "/api/account/{accountId}",
        "/api/account/{accountId}/transfer",
    ] {
        assert_eq!(
            amount_of(path),
            Some(accounts::domain::TRANSFER_AMOUNT_MIN),
            "{path}"
        );
    }
    assert_eq!(amount_of("/api/account/{accountId}/deposit"), Some(0));
    let stream = &document["paths"]["/api/events/stream"]["get"];
    let description = stream["description"].as_str().unwrap();
    assert!(description.contains("--feed-streams-max"), "{description}");
    assert!(stream["responses"]["503"]["headers"]["Retry-After"].is_object());
}

/// The stream is described message by message (`itemSchema`, as OpenAPI 3.2
/// describes sequential media types), not as one string: real messages fit
/// it as an SSE parser hands them over, their data fits `FeedEvent`, and
/// the rewind message fits its own alternative.
#[tokio::test]
async fn the_stream_is_described_message_by_message_and_real_messages_fit() {
    let document = document().await;
    let media = &document["paths"]["/api/events/stream"]["get"]["responses"]["200"]["content"]["text/event-stream"];
    assert!(
        media.get("schema").is_none(),
        "no schema for the endless stream as a whole: {media}"
    );
    let item = &media["itemSchema"];
    let alternatives = item["oneOf"].as_array().expect("event or rewind");
    for alternative in alternatives {
        assert_eq!(alternative["properties"]["data"]["type"], "string");
        assert_eq!(
            alternative["properties"]["data"]["contentMediaType"],
            "application/json"
        );
    }
    let api = api();
    let account = fresh_id();
    api.open_funded(&account, fresh_id(), 5, fresh_id()).await;
    let mut stream = api.follow(Some(0), None).await;
    for message in stream.messages(2).await {
        let sent = serde_json::json!({
            "id": message.id.to_string(),
            "event": message.event,
            "data": message.data.to_string(),
        });
        check(&document, item, &sent).unwrap_or_else(|error| panic!("{sent}: {error}"));
        let content = &alternatives[0]["properties"]["data"]["contentSchema"];
        check(&document, content, &message.data).unwrap_or_else(|error| panic!("{error}"));
        assert_fits(&document, "FeedEvent", &message.data);
    }
    let rewind_data = serde_json::json!({"position": 2, "message": "gone"});
    let rewind =
        serde_json::json!({"id": "2", "event": REWIND_EVENT, "data": rewind_data.to_string()});
    check(&document, item, &rewind).unwrap_or_else(|error| panic!("{rewind}: {error}"));
    let content = &alternatives[1]["properties"]["data"]["contentSchema"];
    check(&document, content, &rewind_data).unwrap_or_else(|error| panic!("{error}"));
    let unknown = serde_json::json!({"id": "3", "event": "MoneyPrinted", "data": "{}"});
    assert!(check(&document, item, &unknown).is_err());
}
