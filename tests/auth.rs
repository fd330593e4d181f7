//! Authentication and owner scoping (docs/API.md, "Authentication"), each
//! rule on a real socket with authentication on: the 401 right after route
//! and method, open only as yourself (403), someone else's account answered
//! exactly as an unknown one, transfers into anyone's open account, admins
//! everywhere, tokens judged by the instance's clock. The rules that touch
//! stored state run again on every store (`every_rule_on_*`).

use std::collections::BTreeSet;
use std::time::Duration;

use accounts::auth::{AuthConfig, LEEWAY_SECONDS, TokenSpec, VerifyingKey};
use accounts::domain::{OwnerId, Timestamp};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use testkit::auth::{self, SECRET};
use testkit::instance::{START, TestBuilder};
use testkit::{
    Answer, Backend, Client, Method, Served, Socket, StatusCode, Style, TestInstance, TestStore,
    Tokens, fresh_owner, fresh_uuid as fresh, raw,
};
use uuid::Uuid;

/// An instance with authentication on, served on a loopback port, and the
/// tokens it accepts.
struct Server {
    instance: TestInstance,
    served: Served,
    api: Client<Socket>,
    tokens: Tokens,
}

impl Server {
    /// HS256 with the kit's secret, over the memory store.
    async fn hs256() -> Server {
        Server::start(TestInstance::builder().auth(auth::hs256())).await
    }

    async fn start(builder: TestBuilder) -> Server {
        let instance = builder.build();
        let served = instance.serve().await;
        Server {
            api: served.client(),
            tokens: instance.tokens(),
            instance,
            served,
        }
    }

    fn owner_token(&self, owner: OwnerId) -> String {
        self.tokens.owner(owner)
    }

    fn mint(&self, spec: &TokenSpec) -> String {
        self.tokens.mint(spec)
    }

    /// The served API with `token` as the bearer, or without a token.
    fn api(&self, token: Option<&str>) -> Client<Socket> {
        match token {
            Some(token) => self.api.with_token(token),
            None => self.api.clone(),
        }
    }

    /// The served API as `owner`.
    fn owner(&self, owner: OwnerId) -> Client<Socket> {
        self.api(Some(&self.owner_token(owner)))
    }

    fn admin(&self) -> Client<Socket> {
        self.api(Some(&self.tokens.admin()))
    }

    /// A request with at most one `Authorization: Bearer <token>` header.
    async fn send(&self, method: &str, target: &str, token: Option<&str>) -> Answer {
        let method: Method = method.parse().expect("a method");
        self.api(token).send(method, target).await
    }

    /// One request with these headers, sent byte for byte.
    async fn send_raw(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &[u8])],
    ) -> Option<Answer> {
        raw::request_with_headers(self.served.address, method, target, headers).await
    }

    async fn stop(self) {
        self.served.stop().await;
    }
}

fn start() -> Timestamp {
    START
}

/// Every `/api/…` operation: (method, target with `{id}` for the account).
const API_OPERATIONS: [(&str, &str); 13] = [
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
    ("GET", "/api/account/{id}?version=1"),
    ("GET", "/api/account/{id}?at=2026-11-26T10:00:00Z"),
    ("GET", "/api/events?after=0&limit=5"),
    ("GET", "/api/events/stream?after=0"),
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
        .iter()
        .filter(|path| path.starts_with("/api/"))
        .map(|path| template(path))
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
    unknown.assert_error_code("route_not_found");
    let unknown_operation = format!("/api/account/{account}/frobnicate?amount=1");
    server
        .send("PUT", &unknown_operation, None)
        .await
        .assert_error_code("route_not_found");
    let wrong_method = server
        .send("PATCH", &format!("/api/account/{account}"), None)
        .await;
    wrong_method.assert_error_code("method_not_allowed");
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
        ("GET", format!("/api/account/{}?version=0", fresh())),
        ("GET", "/api/events?limit=0".to_owned()),
        ("GET", "/api/events/stream?after=x".to_owned()),
    ];
    for (method, target) in &malformed {
        server
            .send(method, target, None)
            .await
            .assert_unauthorized();
        server
            .send(method, target, Some(&token))
            .await
            .assert_error_code("bad_parameter");
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
    assert_eq!(api_operations, 10);
    let open = &document["paths"]["/api/account/{accountId}"]["post"];
    assert!(open["responses"]["403"].is_object());
}

/// Opening is only for oneself; admins open for anyone.
async fn an_owner_opens_accounts_only_for_themselves(server: &Server) {
    let (alice, bob) = (fresh_owner(), fresh_owner());
    let (as_alice, as_bob, as_admin) = (server.owner(alice), server.owner(bob), server.admin());
    let account = fresh();

    let body = as_alice
        .open(account, bob)
        .await
        .assert_error_code("forbidden");
    assert!(body.message.contains("own subject"), "{body:?}");
    as_admin
        .state(account)
        .await
        .assert_error_code("account_not_found");

    for _ in 0..2 {
        let opened = as_alice.open(account, alice).await;
        assert_eq!(opened.status, 201, "{opened:?}");
    }
    // Another owner's token: 403 for another owner, whether or not the id
    // exists; as themselves, the id is taken (409, as without tokens).
    as_bob
        .open(account, alice)
        .await
        .assert_error_code("forbidden");
    as_bob
        .open(account, bob)
        .await
        .assert_error_code("account_exists");
    // The owner in any UUID form is the same owner.
    let upper = alice.to_string().to_uppercase();
    assert_eq!(as_alice.open(fresh(), upper).await.status, 201);

    let for_bob = fresh();
    let opened = as_admin.open(for_bob, bob).await;
    assert_eq!(opened.status, 201, "{opened:?}");
    let state = as_bob.state(for_bob).await;
    assert_eq!(state.status, 200);
    assert_eq!(state.json()["ownerId"], bob.to_string());
}

#[tokio::test]
async fn an_owner_opens_accounts_only_for_themselves_on_memory() {
    an_owner_opens_accounts_only_for_themselves(&Server::hs256().await).await;
}

/// A fresh account of `owner`, opened by them with `amount` deposited.
async fn open_funded(server: &Server, owner: OwnerId, amount: i64) -> Uuid {
    let account = fresh();
    let as_owner = server.owner(owner);
    as_owner.open_funded(account, owner, amount, fresh()).await;
    account
}

/// Someone else's account, open or closed, answers every request exactly as
/// an account that does not exist: same status, same headers that matter,
/// same body (up to the id it names), and nothing changes.
async fn someone_elses_account_answers_as_an_unknown_one(server: &Server) {
    let (alice, bob) = (fresh_owner(), fresh_owner());
    let (as_alice, as_bob) = (server.owner(alice), server.owner(bob));
    let open = open_funded(server, alice, 100).await;
    let closed = open_funded(server, alice, 0).await;
    assert_eq!(as_alice.close(closed).await.status, 204);
    let bobs = open_funded(server, bob, 0).await;
    let before = [as_alice.observe(open).await, as_alice.observe(closed).await];
    for hidden in [open, closed] {
        for (method, path) in requests_of_every_kind(bobs) {
            let method: Method = method.parse().expect("a method");
            let unknown = fresh();
            let as_unknown = as_bob.send(method.clone(), target(&path, unknown)).await;
            let as_hidden = as_bob.send(method, target(&path, hidden)).await;
            assert_answered_alike(&as_hidden, &with_id(&as_unknown, unknown, hidden));
        }
    }
    let after = [as_alice.observe(open).await, as_alice.observe(closed).await];
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
        ("GET", "/api/account/{id}?version=1".to_owned()),
        ("GET", "/api/account/{id}?version=2".to_owned()),
        (
            "GET",
            "/api/account/{id}?at=2100-01-01T00:00:00Z".to_owned(),
        ),
        (
            "GET",
            "/api/account/{id}?at=2000-01-01T00:00:00Z".to_owned(),
        ),
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

/// This answer as it would name `to` instead of `from` (same length).
fn with_id(answer: &Answer, from: Uuid, to: Uuid) -> Answer {
    Answer {
        body: answer.body.replace(&from.to_string(), &to.to_string()),
        ..answer.clone()
    }
}

/// The same status, content type, paging header and body.
fn assert_answered_alike(reply: &Answer, expected: &Answer) {
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
    let (as_alice, as_bob) = (server.owner(alice), server.owner(bob));
    let source = open_funded(server, alice, 100).await;
    let target = open_funded(server, bob, 0).await;
    let paid = as_alice.transfer(source, target, 30, fresh()).await;
    assert_eq!(paid.status, 204, "{paid:?}");
    let received = as_bob.event_list(target).await;
    let last = received.last().unwrap();
    assert_eq!(last["transferFrom"], source.to_string());
    assert_eq!(last["amountDeposited"], 30);
    // Bob cannot pay himself from Alice's account, not even back.
    as_bob
        .transfer(source, target, 1, fresh())
        .await
        .assert_error_code("account_not_found");
    // An unknown target is refused as without tokens; so is a closed one.
    let unknown = as_alice.transfer(source, fresh(), 1, fresh()).await;
    let body = unknown.assert_error_code("account_not_found");
    assert!(body.message.contains("target"), "{body:?}");
    assert_eq!(as_bob.withdraw(target, 30, fresh()).await.status, 204);
    assert_eq!(as_bob.close(target).await.status, 204);
    as_alice
        .transfer(source, target, 1, fresh())
        .await
        .assert_error_code("account_closed");
    assert_eq!(as_alice.balance(source).await, 70);
}

#[tokio::test]
async fn a_transfer_may_pay_into_anyones_open_account_on_memory() {
    a_transfer_may_pay_into_anyones_open_account(&Server::hs256().await).await;
}

/// An owner does everything on their own accounts; an admin on every one.
async fn owners_use_their_own_accounts_and_admins_every_account(server: &Server) {
    let (alice, bob) = (fresh_owner(), fresh_owner());
    let (as_alice, as_admin) = (server.owner(alice), server.admin());
    let alice_by_query = as_alice.with_style(Style::Query);
    let account = open_funded(server, alice, 0).await;
    let bobs = open_funded(server, bob, 50).await;
    // In this order, each with a fresh transactionId, in both URL styles.
    let answers = [
        alice_by_query.deposit(account, 40, fresh()).await,
        as_alice.withdraw(account, 15, fresh()).await,
        alice_by_query.withdraw(account, 5, fresh()).await,
        as_admin.deposit(bobs, 10, fresh()).await,
        as_admin.transfer(bobs, account, 60, fresh()).await,
        alice_by_query.transfer(account, bobs, 80, fresh()).await,
        as_admin.close(account).await,
    ];
    for answer in answers {
        answer.assert_status(StatusCode::NO_CONTENT);
    }
    let (state, events) = read(&as_alice, account).await;
    assert_eq!((state["open"].clone(), events.len()), (false.into(), 7));
    let (state, events) = read(&as_admin, bobs).await;
    assert_eq!((state["balance"].clone(), events.len()), (80.into(), 5));
}

/// An account's state and events, as `api` reads them (both 200).
async fn read(api: &Client<Socket>, account: Uuid) -> (serde_json::Value, Vec<serde_json::Value>) {
    let state = api.state(account).await;
    state.assert_status(StatusCode::OK);
    (state.json(), api.event_list(account).await)
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
    let (as_alice, as_bob) = (server.owner(alice), server.owner(bob));
    let account = open_funded(server, alice, 0).await;
    let transaction = fresh();
    assert_eq!(as_alice.deposit(account, 10, transaction).await.status, 204);
    for replay in [
        as_bob.deposit(account, 10, transaction).await,
        as_bob.withdraw(account, 1, transaction).await,
    ] {
        replay.assert_error_code("account_not_found");
    }
    assert_eq!(as_alice.deposit(account, 10, transaction).await.status, 204);
    as_alice
        .withdraw(account, 1, transaction)
        .await
        .assert_error_code("transaction_reused");
    assert_eq!(as_alice.balance(account).await, 10);
}

#[tokio::test]
async fn authorization_comes_before_idempotency_on_memory() {
    authorization_comes_before_idempotency(&Server::hs256().await).await;
}

/// A request refused for its token records nothing, and its transactionId
/// stays free.
async fn a_refused_token_changes_nothing(server: &Server) {
    let alice = fresh_owner();
    let as_alice = server.owner(alice);
    let account = open_funded(server, alice, 0).await;
    let transaction = fresh();
    let expired = server.mint(&TokenSpec {
        ttl: Duration::from_secs(1),
        issued_at: Timestamp::from_unix_millis(start().unix_millis() - 3_600_000),
        ..TokenSpec::owner(alice, start())
    });
    for token in [None, Some("garbage"), Some(expired.as_str())] {
        server
            .api(token)
            .deposit(account, 10, transaction)
            .await
            .assert_unauthorized();
    }
    // The id is still free: a different operation under it is accepted.
    let withdraw_all = as_alice.with_style(Style::Query);
    let answer = withdraw_all.withdraw(account, 0, transaction).await;
    assert_eq!(answer.status, 204);
    let (state, events) = read(&as_alice, account).await;
    assert_eq!(state["balance"], 0);
    assert_eq!(events.len(), 1);
}

#[tokio::test]
async fn a_refused_token_changes_nothing_on_memory() {
    a_refused_token_changes_nothing(&Server::hs256().await).await;
}

/// A transactionId recorded on an account the caller may not read (a
/// transfer's target) is still a reuse, but the answer says only that it is
/// taken: not the account, its operation, amounts or counterparties. The
/// caller's own record is described in full.
async fn a_reuse_on_someone_elses_account_says_only_that_the_id_is_taken(server: &Server) {
    let (alice, bob) = (fresh_owner(), fresh_owner());
    let (as_alice, as_bob) = (server.owner(alice), server.owner(bob));
    let alices = open_funded(server, alice, 50).await;
    let (bobs_savings, bobs) = (
        open_funded(server, bob, 500).await,
        open_funded(server, bob, 0).await,
    );
    let bobs_transaction = fresh();
    let paid = as_bob
        .transfer(bobs_savings, bobs, 123, bobs_transaction)
        .await;
    assert_eq!(paid.status, 204, "{paid:?}");
    let reused = as_alice.transfer(alices, bobs, 1, bobs_transaction).await;
    let body = reused.assert_error_code("transaction_reused");
    assert_eq!(
        body.message,
        format!("transactionId {bobs_transaction} is already taken")
    );
    for secret in [bobs_savings.to_string(), bobs.to_string(), "123".to_owned()] {
        assert!(
            !reused.body.contains(&secret),
            "{secret} in {}",
            reused.body
        );
    }
    // Bob's own view of the same record names it all.
    let own = as_bob
        .transfer(bobs_savings, bobs, 7, bobs_transaction)
        .await;
    let body = own.assert_error_code("transaction_reused");
    assert!(body.message.contains("amount=123"), "{body:?}");
    assert_eq!(as_alice.balance(alices).await, 50);
    assert_eq!(as_bob.balance(bobs).await, 123);
}

#[tokio::test]
async fn a_reuse_on_someone_elses_account_says_only_that_the_id_is_taken_on_memory() {
    a_reuse_on_someone_elses_account_says_only_that_the_id_is_taken(&Server::hs256().await).await;
}

/// A transfer that would overflow its target names the target, and says
/// nothing of its balance.
async fn a_target_overflow_names_the_target_and_not_its_balance(server: &Server) {
    let (alice, bob) = (fresh_owner(), fresh_owner());
    let as_alice = server.owner(alice);
    let alices = open_funded(server, alice, 10).await;
    let bobs = open_funded(server, bob, i64::MAX - 3).await;
    let refused = as_alice.transfer(alices, bobs, 5, fresh()).await;
    let body = refused.assert_error_code("balance_overflow");
    assert!(
        body.message.contains(&format!("target account {bobs}")),
        "{body:?}"
    );
    assert!(!body.message.contains(&alices.to_string()), "{body:?}");
    assert!(
        !refused.body.contains(&(i64::MAX - 3).to_string()),
        "{body:?}"
    );
    assert_eq!(as_alice.balance(alices).await, 10);
}

#[tokio::test]
async fn a_target_overflow_names_the_target_and_not_its_balance_on_memory() {
    a_target_overflow_names_the_target_and_not_its_balance(&Server::hs256().await).await;
}

/// The store-wide feed and its stream are for admins: an owner's token is
/// 403 on both, over HTTP, and an admin's reads them.
#[tokio::test]
async fn an_owners_token_is_forbidden_the_feed_and_its_stream() {
    let server = Server::hs256().await;
    let alice = fresh_owner();
    open_funded(&server, alice, 5).await;
    let as_alice = server.owner(alice);
    for answer in [
        as_alice.feed(Some(0), Some(5), None).await,
        as_alice.feed_stream(Some(0), None).await,
        as_alice.feed_stream(None, Some(1)).await,
    ] {
        let body = answer.assert_error_code("forbidden");
        assert!(body.message.contains("admin"), "{body:?}");
    }
    let as_admin = server.admin();
    assert_eq!(as_admin.feed(Some(0), Some(5), None).await.status, 200);
    server.stop().await;
}

async fn every_rule(server: &Server) {
    an_owner_opens_accounts_only_for_themselves(server).await;
    someone_elses_account_answers_as_an_unknown_one(server).await;
    a_transfer_may_pay_into_anyones_open_account(server).await;
    owners_use_their_own_accounts_and_admins_every_account(server).await;
    authorization_comes_before_idempotency(server).await;
    a_refused_token_changes_nothing(server).await;
    a_reuse_on_someone_elses_account_says_only_that_the_id_is_taken(server).await;
    a_target_overflow_names_the_target_and_not_its_balance(server).await;
}

async fn every_rule_on(backend: Backend) {
    let test = TestStore::open(backend).await;
    let builder = TestInstance::builder().store(test.store.clone());
    let server = Server::start(builder.auth(auth::hs256())).await;
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
    let as_alice = server.owner(alice);
    let account = open_funded(&server, alice, 0).await;
    let leeway_ms = LEEWAY_SECONDS as i64 * 1000;
    let at = |offset_ms: i64| Timestamp::from_unix_millis(start().unix_millis() + offset_ms);

    // Valid an hour from the start, plus the leeway.
    server.instance.clock.set(at(3_600_000 + leeway_ms));
    assert_eq!(as_alice.state(account).await.status, 200);
    server.instance.clock.set(at(3_600_000 + leeway_ms + 1000));
    let body = as_alice.state(account).await.assert_unauthorized();
    assert!(body.message.contains("expired"), "{body:?}");

    // Issued two minutes ahead: not valid yet, until a minute before.
    server.instance.clock.set(start());
    let early = server.api(Some(&server.mint(&TokenSpec::owner(alice, at(120_000)))));
    let body = early.state(account).await.assert_unauthorized();
    assert!(body.message.contains("not valid yet"), "{body:?}");
    server.instance.clock.set(at(120_000 - leeway_ms));
    assert_eq!(early.state(account).await.status, 200);
}

#[tokio::test]
async fn issuer_and_audience_are_enforced_on_the_socket() {
    let config = AuthConfig {
        issuer: Some("https://login.example".to_owned()),
        audience: Some("accounts".to_owned()),
        ..AuthConfig::hs256(SECRET)
    };
    let server = Server::start(TestInstance::builder().auth(config)).await;
    let alice = fresh_owner();
    let account = open_funded(&server, alice, 0).await;
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
        let answer = server.api(Some(&token)).state(account).await;
        let body = answer.assert_unauthorized();
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
    let server = Server::start(TestInstance::builder().auth(config)).await;
    let alice = fresh_owner();
    let claims = serde_json::json!({
        "sub": alice.to_string(),
        "exp": start().unix_millis() / 1000 + 600,
    });
    let private = EncodingKey::from_rsa_pem(&fixture("rsa-private.pem")).unwrap();
    let rs256 = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &private).unwrap();
    let account = fresh();
    assert_eq!(
        server.api(Some(&rs256)).open(account, alice).await.status,
        201
    );
    // The public key as an HMAC secret (algorithm confusion), and HS256 with
    // any secret: the configured algorithm decides, never the token's header.
    let public = EncodingKey::from_secret(&fixture("rsa-public.pem"));
    let confused = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &public).unwrap();
    let hs256 = server_free_hs256(&claims);
    for token in [confused, hs256] {
        let answer = server.api(Some(&token)).open(account, alice).await;
        let body = answer.assert_unauthorized();
        assert!(body.message.contains("algorithm"), "{body:?}");
    }
}

fn server_free_hs256(claims: &serde_json::Value) -> String {
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
}
