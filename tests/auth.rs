//! Authentication and owner scoping (docs/API.md, "Authentication"), each
//! rule on a real socket with authentication on: the 401 right after route
//! and method, open only as yourself (403), someone else's account answered
//! exactly as an unknown one, transfers into anyone's open account, admins
//! everywhere, tokens judged by the instance's clock. The rules that touch
//! stored state run again on every store (`every_rule_on_*`).

mod auth_support;
mod store_support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use accounts::auth::{AuthConfig, LEEWAY_SECONDS, TokenSpec, VerifyingKey};
use accounts::domain::{OwnerId, Timestamp};
use accounts::store::MemoryStore;
use auth_support::{Reply, SECRET, Server, fresh, fresh_owner, start};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use store_support::{Backend, TestStore};
use uuid::Uuid;

/// Every `/api/…` operation: (method, target with `{id}` for the account).
const API_OPERATIONS: [(&str, &str); 9] = [
    ("POST", "/api/account/{id}?owner={id}"),
    ("GET", "/api/account/{id}"),
    ("PUT", "/api/account/{id}?deposit=1&transactionId={id}"),
    ("DELETE", "/api/account/{id}"),
    (
        "PUT",
        "/api/account/{id}/deposit?amount=1&transactionId={id}",
    ),
    (
        "PUT",
        "/api/account/{id}/withdraw?amount=1&transactionId={id}",
    ),
    (
        "PUT",
        "/api/account/{id}/transfer?targetAccount={id}&amount=1&transactionId={id}",
    ),
    ("GET", "/api/account/{id}/events"),
    ("GET", "/api/account/{id}/events?from=1&limit=5"),
];

/// The route template of a target: its path with ids as `{}`.
fn template(path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    path.split('/')
        .map(|part| {
            if part.starts_with('{') || Uuid::parse_str(part).is_ok() {
                "{}"
            } else {
                part
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn target(template: &str, id: Uuid) -> String {
    template.replace("{id}", &id.to_string())
}

#[tokio::test]
async fn every_api_route_needs_a_token_and_answers_401_with_the_challenge() {
    let server = Server::hs256().await;
    let tested: BTreeSet<String> = API_OPERATIONS
        .iter()
        .map(|(_, path)| template(path))
        .collect();
    let api_routes: BTreeSet<String> = accounts::http::route_paths()
        .into_iter()
        .filter(|path| path.starts_with("/api/"))
        .map(template)
        .collect();
    assert_eq!(tested, api_routes, "a route without its token test");

    let valid = server.owner_token(fresh_owner());
    let another_secret = accounts::auth::mint(
        &accounts::auth::Secret::new("another secret of at least thirty-two bytes"),
        &TokenSpec::owner(fresh_owner(), start()),
    )
    .unwrap();
    let bearer_garbage = "Bearer not.a.token".to_owned();
    let basic = "Basic YWxhZGRpbjpvcGVuc2VzYW1l".to_owned();
    let wrong_signature = format!("Bearer {another_secret}");
    let bearer_valid = format!("Bearer {valid}");
    let refusals: [Vec<&[u8]>; 6] = [
        vec![],
        vec![bearer_garbage.as_bytes()],
        vec![basic.as_bytes()],
        vec![wrong_signature.as_bytes()],
        vec![bearer_valid.as_bytes(), b"Bearer x"],
        vec![bearer_valid.as_bytes(), bearer_valid.as_bytes()],
    ];
    for (method, path) in API_OPERATIONS {
        let target = target(path, fresh());
        for values in &refusals {
            let headers: Vec<(&str, &[u8])> = values
                .iter()
                .map(|value| ("Authorization", *value))
                .collect();
            let reply = server
                .send_raw(method, &target, &headers)
                .await
                .expect("an answer");
            let body = reply.assert_unauthorized();
            assert!(!body.message.contains(&valid), "{body:?}");
            assert!(!reply.body.contains(&another_secret));
        }
        // The scheme's letter case does not matter (RFC 9110).
        let lower = format!("bearer {valid}");
        let reply = server
            .send_raw(method, &target, &[("Authorization", lower.as_bytes())])
            .await
            .expect("an answer");
        assert_ne!(reply.status, 401, "{method} {target}: {reply:?}");
    }
    let metrics = server.send("GET", "/metrics", None).await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("status=\"401\""), "401s are counted");
    assert!(!metrics.body.contains(&valid) && !metrics.body.contains("Bearer"));
}

#[tokio::test]
async fn route_and_method_are_answered_before_the_token() {
    let server = Server::hs256().await;
    let account = fresh();
    let unknown = server.send("GET", "/api/nothing-here", None).await;
    unknown.assert_error(404, "route_not_found");
    let unknown_operation = format!("/api/account/{account}/frobnicate?amount=1");
    server
        .send("PUT", &unknown_operation, None)
        .await
        .assert_error(404, "route_not_found");
    let wrong_method = server
        .send("PATCH", &format!("/api/account/{account}"), None)
        .await;
    wrong_method.assert_error(405, "method_not_allowed");
    assert!(wrong_method.header("allow").is_some());
    assert_eq!(wrong_method.header("www-authenticate"), None);
}

#[tokio::test]
async fn the_token_is_checked_before_the_parameters() {
    let server = Server::hs256().await;
    let token = server.owner_token(fresh_owner());
    let malformed = [
        ("GET", "/api/account/banana".to_owned()),
        ("POST", format!("/api/account/{}?owner=nobody", fresh())),
        (
            "PUT",
            format!("/api/account/{}/deposit?amount=1e3", fresh()),
        ),
        (
            "PUT",
            format!("/api/account/{}?deposit=1&withdraw=1", fresh()),
        ),
        ("GET", format!("/api/account/{}/events?limit=0", fresh())),
    ];
    for (method, target) in &malformed {
        server
            .send(method, target, None)
            .await
            .assert_unauthorized();
        server
            .send(method, target, Some(&token))
            .await
            .assert_error(400, "bad_parameter");
    }
}

#[tokio::test]
async fn health_metrics_and_the_document_need_no_token() {
    let server = Server::hs256().await;
    for path in ["/ping", "/ready", "/metrics", "/openapi.json"] {
        let reply = server.send("GET", path, None).await;
        assert_eq!(reply.status, 200, "{path}: {reply:?}");
    }
    // The instance's own document says its /api/ operations need the scheme.
    let document = server.send("GET", "/openapi.json", None).await.json();
    let scheme = &document["components"]["securitySchemes"]["bearerAuth"];
    assert_eq!(scheme["scheme"], "bearer");
    let mut api_operations = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if path.starts_with("/api/") {
                api_operations += 1;
                let security = &operation["security"];
                assert_eq!(
                    security,
                    &serde_json::json!([{"bearerAuth": []}]),
                    "{method} {path}"
                );
                let unauthorized = &operation["responses"]["401"];
                assert!(
                    unauthorized["headers"]["WWW-Authenticate"].is_object(),
                    "{method} {path}"
                );
            } else {
                assert!(operation.get("security").is_none(), "{method} {path}");
            }
        }
    }
    assert_eq!(api_operations, 8);
    let open = &document["paths"]["/api/account/{accountId}"]["post"];
    assert!(open["responses"]["403"].is_object());
}

/// Opening is only for oneself; admins open for anyone.
async fn an_owner_opens_accounts_only_for_themselves(server: &Server) {
    let (alice, bob) = (fresh_owner(), fresh_owner());
    let (alice_token, bob_token) = (server.owner_token(alice), server.owner_token(bob));
    let admin = server.admin_token();
    let account = fresh();
    let open_as = |owner: OwnerId| format!("/api/account/{account}?owner={owner}");

    let refused = server.send("POST", &open_as(bob), Some(&alice_token)).await;
    let body = refused.assert_error(403, "forbidden");
    assert!(body.message.contains("own subject"), "{body:?}");
    server
        .send("GET", &format!("/api/account/{account}"), Some(&admin))
        .await
        .assert_error(404, "account_not_found");

    for _ in 0..2 {
        let opened = server
            .send("POST", &open_as(alice), Some(&alice_token))
            .await;
        assert_eq!(opened.status, 201, "{opened:?}");
    }
    // Another owner's token: 403 for another owner, whether or not the id
    // exists; as themselves, the id is taken (409, as without tokens).
    server
        .send("POST", &open_as(alice), Some(&bob_token))
        .await
        .assert_error(403, "forbidden");
    server
        .send("POST", &open_as(bob), Some(&bob_token))
        .await
        .assert_error(409, "account_exists");
    // The owner in any UUID form is the same owner.
    let upper = format!(
        "/api/account/{}?owner={}",
        fresh(),
        alice.to_string().to_uppercase()
    );
    assert_eq!(
        server.send("POST", &upper, Some(&alice_token)).await.status,
        201
    );

    let for_bob = fresh();
    let opened = server
        .send(
            "POST",
            &format!("/api/account/{for_bob}?owner={bob}"),
            Some(&admin),
        )
        .await;
    assert_eq!(opened.status, 201, "{opened:?}");
    let state = server
        .send("GET", &format!("/api/account/{for_bob}"), Some(&bob_token))
        .await;
    assert_eq!(state.status, 200);
    assert_eq!(state.json()["ownerId"], bob.to_string());
}

#[tokio::test]
async fn an_owner_opens_accounts_only_for_themselves_on_memory() {
    an_owner_opens_accounts_only_for_themselves(&Server::hs256().await).await;
}

async fn open_funded(server: &Server, owner: OwnerId, amount: i64) -> Uuid {
    let token = server.owner_token(owner);
    let account = fresh();
    let opened = server
        .send(
            "POST",
            &format!("/api/account/{account}?owner={owner}"),
            Some(&token),
        )
        .await;
    assert_eq!(opened.status, 201, "{opened:?}");
    if amount > 0 {
        let deposit = format!(
            "/api/account/{account}/deposit?amount={amount}&transactionId={}",
            fresh()
        );
        assert_eq!(server.send("PUT", &deposit, Some(&token)).await.status, 204);
    }
    account
}

/// What the owner (or an admin) sees of an account: state and stream.
async fn observe(server: &Server, account: Uuid, token: &str) -> (String, String) {
    let state = server
        .send("GET", &format!("/api/account/{account}"), Some(token))
        .await;
    let events = server
        .send(
            "GET",
            &format!("/api/account/{account}/events"),
            Some(token),
        )
        .await;
    (state.body, events.body)
}

/// Someone else's account, open or closed, answers every request exactly as
/// an account that does not exist: same status, same headers that matter,
/// same body (up to the id it names), and nothing changes.
async fn someone_elses_account_answers_as_an_unknown_one(server: &Server) {
    let (alice, bob) = (fresh_owner(), fresh_owner());
    let alice_token = server.owner_token(alice);
    let bob_token = server.owner_token(bob);
    let open = open_funded(server, alice, 100).await;
    let closed = open_funded(server, alice, 0).await;
    let close = format!("/api/account/{closed}");
    assert_eq!(
        server
            .send("DELETE", &close, Some(&alice_token))
            .await
            .status,
        204
    );
    let bobs = open_funded(server, bob, 0).await;
    let before = [
        observe(server, open, &alice_token).await,
        observe(server, closed, &alice_token).await,
    ];
    for hidden in [open, closed] {
        for (method, path) in requests_of_every_kind(bobs) {
            let unknown = fresh();
            let as_unknown = server
                .send(method, &target(&path, unknown), Some(&bob_token))
                .await;
            let as_hidden = server
                .send(method, &target(&path, hidden), Some(&bob_token))
                .await;
            assert_answered_alike(&as_hidden, &as_unknown.with_id(unknown, hidden));
        }
    }
    let after = [
        observe(server, open, &alice_token).await,
        observe(server, closed, &alice_token).await,
    ];
    assert_eq!(before, after, "refusals change nothing");
    let state: serde_json::Value = serde_json::from_str(&after[0].0).unwrap();
    assert_eq!(state["balance"], 100);
}

/// Every operation on the account `{id}` (a transfer's target: `target`),
/// one transactionId for all, and one malformed request: rule 2 comes
/// before rule 3 for an unknown account and someone else's alike.
fn requests_of_every_kind(target: Uuid) -> Vec<(&'static str, String)> {
    let tx = fresh();
    vec![
        ("GET", "/api/account/{id}".to_owned()),
        ("GET", "/api/account/{id}/events".to_owned()),
        ("GET", "/api/account/{id}/events?from=2&limit=1".to_owned()),
        (
            "PUT",
            format!("/api/account/{{id}}/deposit?amount=5&transactionId={tx}"),
        ),
        (
            "PUT",
            format!("/api/account/{{id}}/withdraw?amount=5&transactionId={tx}"),
        ),
        (
            "PUT",
            format!("/api/account/{{id}}?deposit=5&transactionId={tx}"),
        ),
        (
            "PUT",
            format!("/api/account/{{id}}?withdraw=0&transactionId={tx}"),
        ),
        (
            "PUT",
            format!("/api/account/{{id}}?transfer={target}&amount=5&transactionId={tx}"),
        ),
        (
            "PUT",
            format!(
                "/api/account/{{id}}/transfer?targetAccount={target}&amount=5&transactionId={tx}"
            ),
        ),
        ("DELETE", "/api/account/{id}".to_owned()),
        ("DELETE", format!("/api/account/{{id}}?transactionId={tx}")),
        (
            "PUT",
            "/api/account/{id}/deposit?amount=-5&transactionId=x".to_owned(),
        ),
    ]
}

/// The same status, content type, paging header and body.
fn assert_answered_alike(reply: &Reply, expected: &Reply) {
    assert_eq!(reply.status, expected.status, "{reply:?} vs {expected:?}");
    for header in ["content-type", "link"] {
        assert_eq!(reply.header(header), expected.header(header), "{header}");
    }
    assert_eq!(reply.body, expected.body);
}

#[tokio::test]
async fn someone_elses_account_answers_as_an_unknown_one_on_memory() {
    someone_elses_account_answers_as_an_unknown_one(&Server::hs256().await).await;
}

/// The source must be the caller's; the target may be anyone's open account.
async fn a_transfer_may_pay_into_anyones_open_account(server: &Server) {
    let (alice, bob) = (fresh_owner(), fresh_owner());
    let (alice_token, bob_token) = (server.owner_token(alice), server.owner_token(bob));
    let source = open_funded(server, alice, 100).await;
    let target = open_funded(server, bob, 0).await;
    let transfer = |from: Uuid, to: Uuid, amount: i64| {
        format!(
            "/api/account/{from}/transfer?targetAccount={to}&amount={amount}&transactionId={}",
            fresh()
        )
    };
    let paid = server
        .send("PUT", &transfer(source, target, 30), Some(&alice_token))
        .await;
    assert_eq!(paid.status, 204, "{paid:?}");
    let received = server
        .send(
            "GET",
            &format!("/api/account/{target}/events"),
            Some(&bob_token),
        )
        .await
        .json();
    let last = received.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["transferFrom"], source.to_string());
    assert_eq!(last["amountDeposited"], 30);
    // Bob cannot pay himself from Alice's account, not even back.
    server
        .send("PUT", &transfer(source, target, 1), Some(&bob_token))
        .await
        .assert_error(404, "account_not_found");
    // An unknown target is refused as without tokens; so is a closed one.
    let unknown = server
        .send("PUT", &transfer(source, fresh(), 1), Some(&alice_token))
        .await;
    let body = unknown.assert_error(404, "account_not_found");
    assert!(body.message.contains("target"), "{body:?}");
    let withdraw = format!(
        "/api/account/{target}/withdraw?amount=30&transactionId={}",
        fresh()
    );
    assert_eq!(
        server.send("PUT", &withdraw, Some(&bob_token)).await.status,
        204
    );
    let close = format!("/api/account/{target}");
    assert_eq!(
        server.send("DELETE", &close, Some(&bob_token)).await.status,
        204
    );
    server
        .send("PUT", &transfer(source, target, 1), Some(&alice_token))
        .await
        .assert_error(400, "account_closed");
    let state = server
        .send("GET", &format!("/api/account/{source}"), Some(&alice_token))
        .await
        .json();
    assert_eq!(state["balance"], 70);
}

#[tokio::test]
async fn a_transfer_may_pay_into_anyones_open_account_on_memory() {
    a_transfer_may_pay_into_anyones_open_account(&Server::hs256().await).await;
}

/// An owner does everything on their own accounts; an admin on every one.
async fn owners_use_their_own_accounts_and_admins_every_account(server: &Server) {
    let (alice, bob) = (fresh_owner(), fresh_owner());
    let (alice_token, admin) = (server.owner_token(alice), server.admin_token());
    let account = open_funded(server, alice, 0).await;
    let bobs = open_funded(server, bob, 50).await;
    // Each PUT gets a fresh transactionId.
    let steps = [
        (
            &alice_token,
            "PUT",
            format!("/api/account/{account}?deposit=40"),
        ),
        (
            &alice_token,
            "PUT",
            format!("/api/account/{account}/withdraw?amount=15"),
        ),
        (
            &alice_token,
            "PUT",
            format!("/api/account/{account}?withdraw=5"),
        ),
        (
            &admin,
            "PUT",
            format!("/api/account/{bobs}/deposit?amount=10"),
        ),
        (
            &admin,
            "PUT",
            format!("/api/account/{bobs}/transfer?targetAccount={account}&amount=60"),
        ),
        (
            &alice_token,
            "PUT",
            format!("/api/account/{account}?transfer={bobs}&amount=80"),
        ),
        (&admin, "DELETE", format!("/api/account/{account}")),
    ];
    for (token, method, path) in steps {
        let target = match method {
            "PUT" => format!("{path}&transactionId={}", fresh()),
            _ => path,
        };
        let reply = server.send(method, &target, Some(token)).await;
        assert_eq!(reply.status, 204, "{method} {target}: {reply:?}");
    }
    let (state, events) = read(server, account, &alice_token).await;
    assert_eq!((state["open"].clone(), events.len()), (false.into(), 7));
    let (state, events) = read(server, bobs, &admin).await;
    assert_eq!((state["balance"].clone(), events.len()), (80.into(), 5));
}

/// An account's state and events, as `token` reads them (both 200).
async fn read(
    server: &Server,
    account: Uuid,
    token: &str,
) -> (serde_json::Value, Vec<serde_json::Value>) {
    let state = server
        .send("GET", &format!("/api/account/{account}"), Some(token))
        .await;
    assert_eq!(state.status, 200, "{state:?}");
    let events = server
        .send(
            "GET",
            &format!("/api/account/{account}/events"),
            Some(token),
        )
        .await;
    assert_eq!(events.status, 200, "{events:?}");
    let events = events.json().as_array().expect("an array").clone();
    (state.json(), events)
}

#[tokio::test]
async fn owners_use_their_own_accounts_and_admins_every_account_on_memory() {
    owners_use_their_own_accounts_and_admins_every_account(&Server::hs256().await).await;
}

/// Rule 3 (who may touch the account) before rule 4 (idempotency): another
/// owner replaying a request gets 404, never the 204 or 422 that would say
/// the transactionId was used there.
async fn authorization_comes_before_idempotency(server: &Server) {
    let (alice, bob) = (fresh_owner(), fresh_owner());
    let (alice_token, bob_token) = (server.owner_token(alice), server.owner_token(bob));
    let account = open_funded(server, alice, 0).await;
    let transaction = fresh();
    let deposit = format!("/api/account/{account}/deposit?amount=10&transactionId={transaction}");
    let other = format!("/api/account/{account}/withdraw?amount=1&transactionId={transaction}");
    assert_eq!(
        server
            .send("PUT", &deposit, Some(&alice_token))
            .await
            .status,
        204
    );
    for target in [&deposit, &other] {
        server
            .send("PUT", target, Some(&bob_token))
            .await
            .assert_error(404, "account_not_found");
    }
    assert_eq!(
        server
            .send("PUT", &deposit, Some(&alice_token))
            .await
            .status,
        204
    );
    server
        .send("PUT", &other, Some(&alice_token))
        .await
        .assert_error(422, "transaction_reused");
    let state = server
        .send(
            "GET",
            &format!("/api/account/{account}"),
            Some(&alice_token),
        )
        .await
        .json();
    assert_eq!(state["balance"], 10);
}

#[tokio::test]
async fn authorization_comes_before_idempotency_on_memory() {
    authorization_comes_before_idempotency(&Server::hs256().await).await;
}

/// A request refused for its token records nothing, and its transactionId
/// stays free.
async fn a_refused_token_changes_nothing(server: &Server) {
    let alice = fresh_owner();
    let alice_token = server.owner_token(alice);
    let account = open_funded(server, alice, 0).await;
    let transaction = fresh();
    let deposit = format!("/api/account/{account}/deposit?amount=10&transactionId={transaction}");
    let expired = server.mint(&TokenSpec {
        ttl: Duration::from_secs(1),
        issued_at: Timestamp::from_unix_millis(start().unix_millis() - 3_600_000),
        ..TokenSpec::owner(alice, start())
    });
    for token in [None, Some("garbage"), Some(expired.as_str())] {
        server
            .send("PUT", &deposit, token)
            .await
            .assert_unauthorized();
    }
    let withdraw_all = format!("/api/account/{account}?withdraw=0&transactionId={transaction}");
    // The id is still free: a different operation under it is accepted.
    assert_eq!(
        server
            .send("PUT", &withdraw_all, Some(&alice_token))
            .await
            .status,
        204
    );
    let (state, events) = observe(server, account, &alice_token).await;
    assert!(state.contains("\"balance\":0"), "{state}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&events)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_refused_token_changes_nothing_on_memory() {
    a_refused_token_changes_nothing(&Server::hs256().await).await;
}

async fn every_rule(server: &Server) {
    an_owner_opens_accounts_only_for_themselves(server).await;
    someone_elses_account_answers_as_an_unknown_one(server).await;
    a_transfer_may_pay_into_anyones_open_account(server).await;
    owners_use_their_own_accounts_and_admins_every_account(server).await;
    authorization_comes_before_idempotency(server).await;
    a_refused_token_changes_nothing(server).await;
}

async fn every_rule_on(backend: Backend) {
    let test = TestStore::open(backend).await;
    let server = Server::start(test.store.clone(), AuthConfig::hs256(SECRET)).await;
    every_rule(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_on_sqlite() {
    every_rule_on(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs ACCOUNTS_TEST_POSTGRES_URL"]
async fn every_rule_on_postgres() {
    every_rule_on(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs ACCOUNTS_TEST_MYSQL_URL"]
async fn every_rule_on_mysql() {
    every_rule_on(Backend::Mysql).await;
}

#[tokio::test]
async fn tokens_expire_and_start_by_the_instances_clock() {
    let server = Server::hs256().await;
    let alice = fresh_owner();
    let token = server.owner_token(alice);
    let account = open_funded(&server, alice, 0).await;
    let state = format!("/api/account/{account}");
    let leeway_ms = LEEWAY_SECONDS as i64 * 1000;
    let at = |offset_ms: i64| Timestamp::from_unix_millis(start().unix_millis() + offset_ms);

    // Valid an hour from the start, plus the leeway.
    server.clock.set(at(3_600_000 + leeway_ms));
    assert_eq!(server.send("GET", &state, Some(&token)).await.status, 200);
    server.clock.set(at(3_600_000 + leeway_ms + 1000));
    let body = server
        .send("GET", &state, Some(&token))
        .await
        .assert_unauthorized();
    assert!(body.message.contains("expired"), "{body:?}");

    // Issued two minutes ahead: not valid yet, until a minute before.
    server.clock.set(start());
    let early = server.mint(&TokenSpec::owner(alice, at(120_000)));
    let body = server
        .send("GET", &state, Some(&early))
        .await
        .assert_unauthorized();
    assert!(body.message.contains("not valid yet"), "{body:?}");
    server.clock.set(at(120_000 - leeway_ms));
    assert_eq!(server.send("GET", &state, Some(&early)).await.status, 200);
}

#[tokio::test]
async fn issuer_and_audience_are_enforced_on_the_socket() {
    let config = AuthConfig {
        issuer: Some("https://login.example".to_owned()),
        audience: Some("accounts".to_owned()),
        ..AuthConfig::hs256(SECRET)
    };
    let server = Server::start(Arc::new(MemoryStore::new()), config).await;
    let alice = fresh_owner();
    let account = open_funded(&server, alice, 0).await;
    let state = format!("/api/account/{account}");
    let foreign = [
        (Some("https://evil.example"), Some("accounts"), "issuer"),
        (Some("https://login.example"), Some("billing"), "audience"),
    ];
    for (issuer, audience, word) in foreign {
        let token = accounts::auth::mint(
            &accounts::auth::Secret::new(SECRET),
            &TokenSpec {
                issuer: issuer.map(str::to_owned),
                audience: audience.map(str::to_owned),
                ..TokenSpec::owner(alice, start())
            },
        )
        .unwrap();
        let body = server
            .send("GET", &state, Some(&token))
            .await
            .assert_unauthorized();
        assert!(body.message.contains(word), "{body:?}");
    }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/fixtures/auth/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[tokio::test]
async fn a_public_key_instance_accepts_only_tokens_signed_by_its_private_half() {
    let config = AuthConfig {
        key: VerifyingKey::PublicKeyPem(fixture("rsa-public.pem")),
        algorithm: None,
        issuer: None,
        audience: None,
    };
    let server = Server::start(Arc::new(MemoryStore::new()), config).await;
    let alice = fresh_owner();
    let claims = serde_json::json!({
        "sub": alice.to_string(),
        "exp": start().unix_millis() / 1000 + 600,
    });
    let private = EncodingKey::from_rsa_pem(&fixture("rsa-private.pem")).unwrap();
    let rs256 = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &private).unwrap();
    let account = fresh();
    let open = format!("/api/account/{account}?owner={alice}");
    assert_eq!(server.send("POST", &open, Some(&rs256)).await.status, 201);
    // The public key as an HMAC secret (algorithm confusion), and HS256 with
    // any secret: the configured algorithm decides, never the token's header.
    let public = EncodingKey::from_secret(&fixture("rsa-public.pem"));
    let confused = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &public).unwrap();
    let hs256 = server_free_hs256(&claims);
    for token in [confused, hs256] {
        let body = server
            .send("POST", &open, Some(&token))
            .await
            .assert_unauthorized();
        assert!(body.message.contains("algorithm"), "{body:?}");
    }
}

fn server_free_hs256(claims: &serde_json::Value) -> String {
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
}
