//! Parsing at the edge is total: whatever a client puts in the path, the
//! query or the raw bytes of a request, the answer is a 2xx or a JSON 4xx,
//! never a 5xx or a panic, and an invalid request changes nothing.
//!
//! The properties run a fixed number of cases from a fixed seed, so a run is
//! reproducible; each prints how many cases it ran and their outcomes.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use testkit::properties::runner;
use testkit::raw::{exchange, status_of};
use testkit::{Answer, Method, StatusCode, TestInstance, fresh_id};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

fn encode(name: &str, value: &str) -> String {
    serde_urlencoded::to_string([(name, value)]).expect("strings encode")
}

/// The amount grammar of docs/API.md, written independently of the
/// service: an optional sign, ASCII digits, within i64; `-0` is zero, any
/// other negative value is refused.
fn expected_amount(text: &str) -> Option<i64> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'+') => (false, &text[1..]),
        Some(b'-') => (true, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = digits.trim_start_matches('0');
    if significant.len() > 19 {
        return None;
    }
    let value: u64 = if significant.is_empty() {
        0
    } else {
        significant.parse().ok()?
    };
    if value > i64::MAX as u64 || (negative && value != 0) {
        return None;
    }
    Some(value as i64)
}

fn balance(answer: &Answer) -> i64 {
    answer.json()["balance"].as_i64().expect("a balance")
}

/// Tallies outcomes by status, printed at the end of a property.
#[derive(Default)]
struct Tally(BTreeMap<u16, u32>);

impl Tally {
    fn add(&mut self, status: StatusCode) {
        *self.0.entry(status.as_u16()).or_default() += 1;
    }

    fn report(&self, name: &str) {
        let total: u32 = self.0.values().sum();
        println!("{name}: {total} generated requests, by status {:?}", self.0);
    }
}

fn amount_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[+-]?[0-9]{0,22}",
        "[+-]?0*92233720368547758[0-9]{2}",
        "[ +\\-0-9.eE_x,]{0,12}",
        // Digits of other scripts, full-width digits and look-alikes.
        "[0-9٠-٩۰-۹०-९０-９¹²³⁴]{1,6}",
        any::<String>(),
        Just(String::new()),
    ]
}

#[test]
fn amounts_are_accepted_exactly_when_the_grammar_says_so() {
    let runtime = runtime();
    let (store, app) = TestInstance::instrumented();
    let api = app.client();
    let account = fresh_id();
    runtime.block_on(api.open_funded(&account, fresh_id(), 1_000, fresh_id()));
    let tally = std::cell::RefCell::new(Tally::default());
    let operations = prop_oneof![
        Just(("deposit", true)),
        Just(("deposit", false)),
        Just(("withdraw", true)),
        Just(("withdraw", false)),
    ];
    runner(4_000, 6_001)
        .run(
            &(amount_text(), operations),
            |(text, (operation, query_style))| {
                runtime.block_on(async {
                    let uri = if query_style {
                        format!(
                            "/api/account/{account}?{}&transactionId={}",
                            encode(operation, &text),
                            fresh_id()
                        )
                    } else {
                        format!(
                            "/api/account/{account}/{operation}?{}&transactionId={}",
                            encode("amount", &text),
                            fresh_id()
                        )
                    };
                    let before = balance(&api.state(&account).await);
                    let applied = store.appends_applied();
                    let answer = api.send(Method::PUT, &uri).await;
                    tally.borrow_mut().add(answer.status);
                    let after = balance(&api.state(&account).await);
                    let expected = expected_amount(&text).and_then(|amount| match operation {
                        "deposit" => before.checked_add(amount),
                        _ => (amount <= before).then(|| before - amount),
                    });
                    match expected {
                        Some(balance) => {
                            prop_assert_eq!(
                                answer.status,
                                StatusCode::NO_CONTENT,
                                "{} {}",
                                uri,
                                answer.body
                            );
                            prop_assert_eq!(after, balance);
                        }
                        None => {
                            prop_assert_eq!(
                                answer.status,
                                StatusCode::BAD_REQUEST,
                                "{} {}",
                                uri,
                                answer.body
                            );
                            answer.assert_json_error();
                            prop_assert_eq!(after, before);
                            prop_assert_eq!(store.appends_applied(), applied);
                        }
                    }
                    Ok(())
                })
            },
        )
        .unwrap();
    tally.borrow().report("amounts");
}

/// Every textual form of a UUID, and mutations of them.
fn id_text(uuid: uuid::Uuid) -> impl Strategy<Value = String> {
    let forms = vec![
        uuid.hyphenated().to_string(),
        uuid.hyphenated().to_string().to_uppercase(),
        uuid.simple().to_string(),
        uuid.simple().to_string().to_uppercase(),
        uuid.braced().to_string(),
        uuid.urn().to_string(),
    ];
    let form = proptest::sample::select(forms);
    let mutation = prop_oneof![
        Just(None),
        (any::<prop::sample::Index>(), any::<char>()).prop_map(Some),
    ];
    (form, mutation, any::<bool>(), any::<prop::sample::Index>()).prop_map(
        |(form, mutation, insert, at)| {
            let mut chars: Vec<char> = form.chars().collect();
            let Some((index, c)) = mutation else {
                return form;
            };
            let i = index.index(chars.len());
            if insert {
                chars.insert(i, c);
            } else if at.index(2) == 0 {
                chars.remove(i);
            } else {
                chars[i] = c;
            }
            chars.into_iter().collect()
        },
    )
}

fn path_segment(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~{}:".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[test]
fn ids_in_any_form_the_uuid_crate_parses_are_accepted_and_nothing_else() {
    let runtime = runtime();
    let (store, app) = TestInstance::instrumented();
    let api = app.client();
    let account = uuid::Uuid::from_u128(0x9a1f_3c4e_7b2d_4e8f_a6c1_5d3b_2e7f_9c0a);
    runtime.block_on(api.open_funded(account, fresh_id(), 5, fresh_id()));
    let snapshot = runtime.block_on(api.observe(account));
    let applied = store.appends_applied();
    let tally = std::cell::RefCell::new(Tally::default());
    let targets = prop_oneof![
        Just("state"),
        Just("events"),
        Just("deposit"),
        Just("transfer")
    ];
    runner(4_000, 6_002)
        .run(&(id_text(account), targets), |(text, target)| {
            runtime.block_on(async {
                let expected = uuid::Uuid::try_parse(&text).ok();
                let segment = path_segment(&text);
                let (method, uri) = match target {
                    "state" => (Method::GET, format!("/api/account/{segment}")),
                    "events" => (Method::GET, format!("/api/account/{segment}/events")),
                    // An id in the query: a zero deposit (no event) to the
                    // account, or a transfer to it from an unknown one.
                    "deposit" => (
                        Method::PUT,
                        format!(
                            "/api/account/{account}?deposit=0&{}",
                            encode("transactionId", &text)
                        ),
                    ),
                    _ => (
                        Method::PUT,
                        format!(
                            "/api/account/{}/transfer?{}&amount=1&transactionId={}",
                            fresh_id(),
                            encode("targetAccount", &text),
                            fresh_id()
                        ),
                    ),
                };
                let answer = api.send(method, &uri).await;
                tally.borrow_mut().add(answer.status);
                let wanted = match (expected, target) {
                    (None, _) => StatusCode::BAD_REQUEST,
                    (Some(id), "state") if id == account => StatusCode::OK,
                    (Some(_), "state") => StatusCode::NOT_FOUND,
                    (Some(_), "events") => StatusCode::OK,
                    (Some(_), "deposit") => StatusCode::NO_CONTENT,
                    // The source is unknown, whatever the target.
                    (Some(_), _) => StatusCode::NOT_FOUND,
                };
                prop_assert_eq!(answer.status, wanted, "{} {}", uri, answer.body);
                if answer.status.is_client_error() {
                    answer.assert_json_error();
                }
                if expected == Some(account) && target == "state" {
                    prop_assert_eq!(&answer.json()["accountId"], &account.to_string());
                }
                Ok(())
            })
        })
        .unwrap();
    assert_eq!(store.appends_applied(), applied, "nothing was recorded");
    assert_eq!(runtime.block_on(api.observe(account)), snapshot);
    tally.borrow().report("ids");
}

/// Requests assembled from the API's own vocabulary plus junk: real
/// routes, real parameter names, values valid and invalid, repeated,
/// unknown, two operations at once, odd separators and encodings.
fn request() -> impl Strategy<Value = (Method, String)> {
    let method = proptest::sample::select(vec![
        Method::GET,
        Method::PUT,
        Method::PUT,
        Method::PUT,
        Method::POST,
        Method::DELETE,
        Method::PATCH,
        Method::HEAD,
        Method::OPTIONS,
    ]);
    let segment = prop_oneof![
        12 => Just("{a}".to_owned()),
        4 => Just("{b}".to_owned()),
        4 => Just("{a_upper}".to_owned()),
        1 => Just(String::new()),
        1 => Just("..".to_owned()),
        1 => Just(".".to_owned()),
        1 => Just("%2e%2e".to_owned()),
        1 => Just("%2F".to_owned()),
        1 => Just("%".to_owned()),
        1 => Just("%ZZ".to_owned()),
        1 => Just("%FF%FE".to_owned()),
        1 => "[a-zA-Z0-9%._~-]{0,40}",
        1 => "[0-9a-f]{32}",
        1 => (1usize..3000).prop_map(|n| "a".repeat(n)),
    ];
    // Mostly real routes, so that parameters get parsed; some near misses.
    let suffix = proptest::sample::select(vec![
        "",
        "",
        "",
        "",
        "/deposit",
        "/deposit",
        "/withdraw",
        "/withdraw",
        "/transfer",
        "/transfer",
        "/events",
        "/events",
        "/",
        "/frobnicate",
        "/deposit/",
        "//deposit",
        "/events/extra",
    ]);
    let name = proptest::sample::select(vec![
        "deposit",
        "withdraw",
        "transfer",
        "amount",
        "transactionId",
        "targetAccount",
        "owner",
        "from",
        "limit",
        "unknown",
        "Amount",
        "transactionid",
        "",
        "deposit[]",
    ]);
    let value = prop_oneof![
        1 => Just("{a}".to_owned()),
        2 => Just("{b}".to_owned()),
        3 => Just("{tx}".to_owned()),
        3 => "[+-]?[0-9]{0,3}",
        1 => "[+-]?[0-9]{0,20}",
        1 => Just("%2B5".to_owned()),
        1 => Just("+5".to_owned()),
        1 => Just("%FF".to_owned()),
        1 => Just("%".to_owned()),
        1 => "[ -~]{0,20}".prop_map(|text| path_segment(&text)),
    ];
    let pair = (name, prop::option::of(value)).prop_map(|(name, value)| match value {
        Some(value) => format!("{name}={value}"),
        None => name.to_owned(),
    });
    let separator = proptest::sample::select(vec!["&", "&", "&", ";", "&&"]);
    let query = prop::collection::vec((pair, separator), 0..6).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(pair, separator)| format!("{pair}{separator}"))
            .collect::<String>()
    });
    // Mostly the real prefix, so that the rest of the target is exercised.
    let prefix = prop_oneof![
        12 => Just("/api/account/"),
        1 => Just("/api/accounts/"),
        1 => Just("/API/account/"),
        1 => Just("/api//account/"),
        1 => Just("//api/account/"),
        1 => Just("/"),
    ];
    (method, prefix, segment, suffix, prop::option::of(query)).prop_map(
        |(method, prefix, segment, suffix, query)| {
            let mut uri = format!("{prefix}{segment}{suffix}");
            if let Some(query) = query {
                uri.push('?');
                uri.push_str(&query);
            }
            (method, uri)
        },
    )
}

#[test]
fn assembled_requests_never_fail_the_service_and_refusals_change_nothing() {
    let runtime = runtime();
    let (store, app) = TestInstance::instrumented();
    let api = app.client();
    let (a, b) = (fresh_id(), fresh_id());
    runtime.block_on(api.open_funded(&a, fresh_id(), 1_000, fresh_id()));
    runtime.block_on(api.open_funded(&b, fresh_id(), 1_000, fresh_id()));
    let tally = std::cell::RefCell::new(Tally::default());
    runner(5_000, 6_003)
        .run(&request(), |(method, template)| {
            runtime.block_on(async {
                let uri = template
                    .replace("{a_upper}", &a.to_uppercase())
                    .replace("{a}", &a)
                    .replace("{b}", &b)
                    .replace("{tx}", &fresh_id());
                let Ok(uri) = uri.parse::<axum::http::Uri>() else {
                    // Not a URI at all: the HTTP layer refuses it before
                    // routing (the raw-bytes property covers that path).
                    return Ok(());
                };
                let before = (api.observe(&a).await, api.observe(&b).await);
                let applied = store.appends_applied();
                let answer = api.send(method.clone(), uri.to_string()).await;
                tally.borrow_mut().add(answer.status);
                if std::env::var_os("HOSTILE_DEBUG").is_some() {
                    println!("{method} {uri} -> {}", answer.status);
                }
                prop_assert!(
                    !answer.status.is_server_error(),
                    "{} {} -> {} {}",
                    method,
                    uri,
                    answer.status,
                    answer.body
                );
                prop_assert!(
                    answer.status.is_success() || answer.status.is_client_error(),
                    "{} {} -> {}",
                    method,
                    uri,
                    answer.status
                );
                if answer.status.is_client_error() {
                    if method != Method::HEAD {
                        answer.assert_json_error();
                    }
                    prop_assert_eq!(store.appends_applied(), applied, "{} {}", method, uri);
                    let after = (api.observe(&a).await, api.observe(&b).await);
                    prop_assert_eq!(after, before, "{} {}", method, uri);
                }
                if answer.status == StatusCode::METHOD_NOT_ALLOWED {
                    prop_assert!(answer.headers.contains_key("allow"));
                }
                Ok(())
            })
        })
        .unwrap();
    // Money only moves between a and b or comes from deposits: never negative.
    for account in [&a, &b] {
        let answer = runtime.block_on(async { api.state(account).await });
        if answer.status == StatusCode::OK {
            assert!(balance(&answer) >= 0);
        }
    }
    // Metrics are labelled by route template, never by what a client sent:
    // thousands of odd paths add no time series.
    let metrics = runtime.block_on(async { api.metrics().await }).body;
    assert!(!metrics.contains(&a[..8]), "a raw path in the metrics");
    tally.borrow().report("assembled requests");
}

/// Arbitrary bytes after a plausible start, on a real socket: hyper refuses
/// what is not HTTP (400/431/414, or a closed connection), the router answers
/// the rest, and the service keeps serving with nothing recorded.
#[test]
fn raw_bytes_on_a_socket_never_fail_the_service() {
    let runtime = runtime();
    let config = accounts::http::ServeConfig {
        header_read_timeout: Duration::from_millis(300),
        shutdown_grace: testkit::instance::SHUTDOWN_GRACE,
        ..Default::default()
    };
    let (store, app) = TestInstance::builder().serve_config(config).instrumented();
    let api = app.client();
    let account = fresh_id();
    runtime.block_on(api.open_funded(&account, fresh_id(), 100, fresh_id()));
    let before = runtime.block_on(api.observe(&account));
    let applied = store.appends_applied();
    let server = runtime.block_on(app.serve());
    let address = server.address;
    let tally = std::cell::RefCell::new(Tally::default());
    let start = proptest::sample::select(vec![
        "GET /",
        "PUT /api/account/",
        "POST /api/account/",
        "DELETE /",
        "GET /ping",
        "",
        "PUT /api/account/x?deposit=",
        "GET / HTTP/1.1\r\n",
    ]);
    let tail = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        "[ -~\r\n]{0,300}".prop_map(String::into_bytes),
    ];
    let end = proptest::sample::select(vec!["", "\r\n\r\n", " HTTP/1.1\r\nHost: x\r\n\r\n"]);
    runner(500, 6_004)
        .run(&(start, tail, end), |(start, tail, end)| {
            runtime.block_on(async {
                let mut bytes = start.as_bytes().to_vec();
                bytes.extend(tail);
                bytes.extend(end.as_bytes());
                let answer = exchange(address, &bytes, Duration::from_millis(1_000)).await;
                let status = status_of(&answer);
                let code = status.and_then(|s| StatusCode::from_u16(s).ok());
                tally
                    .borrow_mut()
                    .add(code.unwrap_or(StatusCode::from_u16(999).unwrap()));
                if let Some(status) = status {
                    prop_assert!(
                        status < 500,
                        "{:?} -> {}",
                        String::from_utf8_lossy(&bytes),
                        status
                    );
                }
                Ok(())
            })
        })
        .unwrap();
    runtime.block_on(async {
        let ping = exchange(
            address,
            b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(status_of(&ping), Some(200), "still serving");
        assert_eq!(api.observe(&account).await, before);
        server.stop().await;
    });
    assert_eq!(store.appends_applied(), applied, "nothing was recorded");
    tally
        .borrow()
        .report("raw bytes (999: no answer, connection closed)");
}

/// The documented edge cases, one by one, each with its exact answer.
#[tokio::test]
async fn documented_edge_cases_get_their_documented_answers() {
    let (store, app) = TestInstance::instrumented();
    let api = app.client();
    let account = fresh_id();
    api.open_funded(&account, fresh_id(), 100, fresh_id()).await;
    let upper = account.to_uppercase();
    let simple = account.replace('-', "");
    let tx = fresh_id;
    // Amounts that are not a plain decimal integer within i64.
    let amounts = [
        "",
        "+5",
        "%205",
        "5%20",
        "-5",
        "42.5",
        "1e3",
        "0x10",
        "banana",
        // Arabic-Indic and full-width digits.
        "%D9%A1%D9%A2",
        "%EF%BC%95",
        "9223372036854775808",
        "99999999999999999999999",
        "%FF",
        "%00",
    ];
    let mut bad: Vec<(Method, String)> = amounts
        .iter()
        .map(|amount| {
            let target = format!(
                "/api/account/{account}?deposit={amount}&transactionId={}",
                tx()
            );
            (Method::PUT, target)
        })
        .collect();
    bad.extend([
        (
            Method::PUT,
            format!(
                "/api/account/{account}?deposit=5&deposit=5&transactionId={}",
                tx()
            ),
        ),
        (
            Method::PUT,
            format!(
                "/api/account/{account}?deposit=5&transactionId={0}&transactionId={0}",
                tx()
            ),
        ),
        (
            Method::PUT,
            format!(
                "/api/account/{account}?deposit=5&withdraw=5&transactionId={}",
                tx()
            ),
        ),
        (
            Method::PUT,
            format!(
                "/api/account/{account}?deposit=5&transfer={account}&amount=5&transactionId={}",
                tx()
            ),
        ),
        (
            Method::PUT,
            format!("/api/account/{account}?amount=5&transactionId={}", tx()),
        ),
        (Method::PUT, format!("/api/account/{account}?deposit=5")),
        (
            Method::PUT,
            format!("/api/account/{account}?deposit=5&transactionId=banana"),
        ),
        (
            Method::PUT,
            format!(
                "/api/account/{account}/deposit?amount=5&amount=5&transactionId={}",
                tx()
            ),
        ),
        (
            Method::PUT,
            format!("/api/account/{account}/deposit?transactionId={}", tx()),
        ),
        (
            Method::PUT,
            format!(
                "/api/account/{account}/transfer?targetAccount=nope&amount=5&transactionId={}",
                tx()
            ),
        ),
        (
            Method::PUT,
            format!(
                "/api/account/{account}/withdraw?amount=101&transactionId={}",
                tx()
            ),
        ),
        (
            Method::PUT,
            format!(
                "/api/account/{account}/transfer?targetAccount={upper}&amount=5&transactionId={}",
                tx()
            ),
        ),
        (
            Method::PUT,
            format!(
                "/api/account/{account}?transfer={account}&amount=5&transactionId={}",
                tx()
            ),
        ),
        (Method::GET, format!("/api/account/{account}/events?from=0")),
        (
            Method::GET,
            format!("/api/account/{account}/events?limit=10001"),
        ),
        (
            Method::GET,
            format!("/api/account/{account}/events?from=9223372036854775808"),
        ),
        (
            Method::GET,
            format!("/api/account/{account}/events?from=1&from=2"),
        ),
        (Method::GET, "/api/account/banana".to_owned()),
        (Method::GET, "/api/account/%FF%FE".to_owned()),
        (Method::GET, format!("/api/account/{{{account}")),
        (Method::GET, format!("/api/account/urn:uuid:{simple}x")),
        (Method::GET, format!("/api/account/{}", "a".repeat(7_000))),
        (
            Method::GET,
            "/api/account/..%2F..%2Fetc%2Fpasswd".to_owned(),
        ),
        (
            Method::POST,
            format!("/api/account/{}?owner=banana", fresh_id()),
        ),
        (Method::POST, format!("/api/account/{}", fresh_id())),
        (
            Method::DELETE,
            format!("/api/account/{account}?transactionId=banana"),
        ),
        // An empty id segment still matches the route: an invalid id.
        (
            Method::PUT,
            format!("/api/account//deposit?amount=5&transactionId={}", tx()),
        ),
    ]);
    let not_found = vec![
        (Method::GET, "/api/account/".to_owned()),
        (Method::GET, "/api/account".to_owned()),
        (
            Method::PUT,
            format!(
                "/api/account/{account}/frobnicate?amount=5&transactionId={}",
                tx()
            ),
        ),
        (
            Method::PUT,
            format!(
                "/api/account/{account}/deposit/?amount=5&transactionId={}",
                tx()
            ),
        ),
        (Method::GET, format!("/api/account/{account}/../{account}")),
        (Method::GET, "/../../etc/passwd".to_owned()),
        (Method::GET, format!("/api/account/{}", fresh_id())),
        (
            Method::PUT,
            format!(
                "/api/account/{}?deposit=5&transactionId={}",
                fresh_id(),
                tx()
            ),
        ),
    ];
    let before = api.observe(&account).await;
    let applied = store.appends_applied();
    for (method, uri) in &bad {
        let answer = api.send(method.clone(), uri).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{method} {uri}: {}",
            answer.body
        );
        answer.assert_json_error();
    }
    for (method, uri) in &not_found {
        let answer = api.send(method.clone(), uri).await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{method} {uri}: {}",
            answer.body
        );
        answer.assert_json_error();
    }
    assert_eq!(store.appends_applied(), applied);
    assert_eq!(api.observe(&account).await, before);

    // The accepted forms: sign, leading zeros, -0, unknown parameters, every id form.
    let good = [
        format!("/api/account/{account}?deposit=%2B5&transactionId={}", tx()),
        format!(
            "/api/account/{account}?deposit=0005&transactionId={}&unknown=1&x",
            tx()
        ),
        format!("/api/account/{account}?deposit=-0&transactionId={}", tx()),
        format!(
            "/api/account/{upper}/deposit?amount=1&transactionId={}",
            tx()
        ),
        format!(
            "/api/account/{simple}/deposit?amount=1&transactionId={}",
            tx()
        ),
        format!(
            "/api/account/%7B{account}%7D/deposit?amount=1&transactionId={}",
            tx()
        ),
        format!(
            "/api/account/urn:uuid:{account}/deposit?amount=1&transactionId={}",
            tx()
        ),
    ];
    for uri in &good {
        let answer = api.send(Method::PUT, uri).await;
        assert_eq!(
            answer.status,
            StatusCode::NO_CONTENT,
            "{uri}: {}",
            answer.body
        );
    }
    let answer = api.state(&upper).await;
    assert_eq!(answer.json()["balance"], 100 + 5 + 5 + 4);
    assert_eq!(answer.json()["accountId"], account.as_str());
}

/// HEAD answers like GET without a body; OPTIONS and other unserved methods
/// are 405 with `Allow` and a JSON body.
#[tokio::test]
async fn head_and_options_are_sane() {
    let api = TestInstance::new().client();
    let account = fresh_id();
    api.open_funded(&account, fresh_id(), 1, fresh_id()).await;
    let head = api
        .send(Method::HEAD, format!("/api/account/{account}"))
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    let head = api.send(Method::HEAD, "/ping").await;
    assert_eq!(head.status, StatusCode::OK);
    for method in [
        Method::OPTIONS,
        Method::PATCH,
        Method::TRACE,
        Method::from_bytes(b"FROB").expect("a method name"),
    ] {
        let answer = api
            .send(method.clone(), format!("/api/account/{account}"))
            .await;
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(answer.headers["allow"], "GET,HEAD,POST,PUT,DELETE");
        answer.assert_error_code("method_not_allowed");
    }
    let answer = api.send(Method::POST, "/ping").await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer.headers["allow"], "GET,HEAD");
    answer.assert_error_code("method_not_allowed");
    let answer = api.send(Method::GET, "/no/such/route").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    answer.assert_error_code("route_not_found");
}
