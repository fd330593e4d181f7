//! An owner learns nothing about anyone else's accounts: for random
//! operations by one owner on another owner's accounts — every route, both
//! URL styles, amounts that refuse and that overflow, the other owner's own
//! transactionIds — no answer (body or header) carries an id, amount,
//! balance, owner or transactionId of an account the caller may not read,
//! unless the caller named it in the request.

use accounts::domain::OwnerId;
use proptest::prelude::*;
use testkit::properties::runner;
use testkit::{
    Answer, Client, InProcess, Method, StatusCode, Style, TestInstance, auth, fresh_owner,
};
use uuid::Uuid;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Bob's accounts and what only Bob may know of them.
struct Bobs {
    accounts: [Uuid; 4],
    owner: String,
    transactions: [Uuid; 5],
    /// Amounts of Bob's own operations, chosen far from anything Alice sends.
    amounts: [i64; 4],
}

/// Bob: a funded account, one near the i64 limit (so a payment overflows
/// it), one closed, one that received a transfer; every operation under a
/// transactionId Alice may try to reuse.
async fn bobs_accounts(as_bob: &Client<InProcess>, owner: OwnerId) -> Bobs {
    let accounts = [0; 4].map(|_| Uuid::new_v4());
    let transactions = [0; 5].map(|_| Uuid::new_v4());
    let amounts = [7_345_191, i64::MAX - 17, 6_543_217, 54_321];
    let [funded, full, closed, received] = accounts;
    as_bob
        .open_funded(funded, owner, amounts[0], transactions[0])
        .await;
    as_bob
        .open_funded(full, owner, amounts[1], transactions[1])
        .await;
    as_bob.open_funded(closed, owner, 0, Uuid::new_v4()).await;
    as_bob.open_funded(received, owner, 0, Uuid::new_v4()).await;
    let answers = [
        as_bob
            .transfer(funded, received, amounts[2], transactions[2])
            .await,
        as_bob.withdraw(funded, amounts[3], transactions[3]).await,
        as_bob.close_with(closed, transactions[4]).await,
    ];
    for answer in answers {
        answer.assert_status(StatusCode::NO_CONTENT);
    }
    Bobs {
        accounts,
        owner: owner.to_string(),
        transactions,
        amounts,
    }
}

/// One request of Alice's, as drawn.
#[derive(Clone, Debug)]
struct Drawn {
    kind: u8,
    account: usize,
    other: usize,
    amount: u16,
    transaction: usize,
    style: Style,
    number: u8,
}

fn drawn() -> impl Strategy<Value = Drawn> {
    (
        0u8..12,
        0usize..6,
        0usize..6,
        0u16..1_000,
        0usize..7,
        any::<bool>(),
        0u8..8,
    )
        .prop_map(
            |(kind, account, other, amount, transaction, query, number)| Drawn {
                kind,
                account,
                other,
                amount,
                transaction,
                style: if query { Style::Query } else { Style::Path },
                number,
            },
        )
}

/// The request target: Bob's accounts (0..4), Alice's own (4) or an
/// unknown id (5); Bob's transactionIds (0..5) or fresh ones.
fn target(drawn: &Drawn, bobs: &Bobs, alices: Uuid) -> (Method, String) {
    let pick = |index: usize| match index {
        0..4 => bobs.accounts[index],
        4 => alices,
        _ => Uuid::new_v4(),
    };
    let (account, other) = (pick(drawn.account), pick(drawn.other));
    let tx = bobs
        .transactions
        .get(drawn.transaction)
        .copied()
        .unwrap_or_else(Uuid::new_v4);
    let (amount, n) = (drawn.amount, drawn.number);
    let path = drawn.style == Style::Path;
    let put = |path_style: String, query_style: String| {
        (Method::PUT, if path { path_style } else { query_style })
    };
    let base = format!("/api/account/{account}");
    match drawn.kind {
        0 => (Method::GET, base),
        1 => (Method::GET, format!("{base}?version={n}")),
        2 => (
            Method::GET,
            format!("{base}?at=20{:02}-01-01T00:00:00Z", 20 + n * 10),
        ),
        3 => (
            Method::GET,
            format!("{base}/events?from={}&limit={}", n.max(1), n + 1),
        ),
        4 => put(
            format!("{base}/deposit?amount={amount}&transactionId={tx}"),
            format!("{base}?deposit={amount}&transactionId={tx}"),
        ),
        5 => put(
            format!("{base}/withdraw?amount={amount}&transactionId={tx}"),
            format!("{base}?withdraw={amount}&transactionId={tx}"),
        ),
        // Alice pays from her own account into any other: allowed, and the
        // one operation that reaches the target's rules.
        6 | 7 => put(
            format!(
                "/api/account/{alices}/transfer?targetAccount={other}&amount={amount}&transactionId={tx}"
            ),
            format!("/api/account/{alices}?transfer={other}&amount={amount}&transactionId={tx}"),
        ),
        8 => put(
            format!("{base}/transfer?targetAccount={other}&amount={amount}&transactionId={tx}"),
            format!("{base}?transfer={other}&amount={amount}&transactionId={tx}"),
        ),
        9 => (Method::DELETE, format!("{base}?transactionId={tx}")),
        10 => (Method::POST, format!("{base}?owner={}", bobs.owner)),
        _ => (Method::POST, format!("{base}?owner={{alice}}")),
    }
}

/// Everything Bob's accounts are now, as an admin reads them.
async fn secrets(admin: &Client<InProcess>, bobs: &Bobs) -> Vec<String> {
    let mut secrets: Vec<String> = bobs.accounts.iter().map(Uuid::to_string).collect();
    secrets.push(bobs.owner.clone());
    secrets.extend(bobs.transactions.iter().map(Uuid::to_string));
    secrets.extend(bobs.amounts.iter().map(i64::to_string));
    for account in bobs.accounts {
        for event in admin.event_list(account).await {
            for key in ["balance", "amountDeposited", "amountWithdrawn"] {
                if let Some(value) = event[key].as_i64().filter(|v| *v >= 1_000) {
                    secrets.push(value.to_string());
                }
            }
        }
    }
    secrets
}

/// `known`: every request target the caller sent so far.
fn assert_no_secret(answer: &Answer, known: &str, secrets: &[String]) -> Result<(), TestCaseError> {
    prop_assert!(answer.status.as_u16() < 500, "{}", answer.body);
    let headers: Vec<&str> = answer
        .headers
        .values()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let seen = format!("{} {}", answer.body, headers.join(" "));
    for secret in secrets.iter().filter(|s| !known.contains(s.as_str())) {
        prop_assert!(!seen.contains(secret.as_str()), "told {}: {}", secret, seen);
    }
    Ok(())
}

#[test]
fn an_owner_learns_nothing_of_anyone_elses_accounts() {
    let runtime = runtime();
    let app = TestInstance::builder().auth(auth::hs256()).build();
    let tokens = app.tokens();
    let (alice, bob) = (fresh_owner(), fresh_owner());
    let api = app.client();
    let (as_alice, as_bob, admin) = (
        api.with_token(tokens.owner(alice)),
        api.with_token(tokens.owner(bob)),
        api.with_token(tokens.admin()),
    );
    let bobs = runtime.block_on(bobs_accounts(&as_bob, bob));
    let alices = Uuid::new_v4();
    runtime.block_on(as_alice.open_funded(alices, alice, 500, Uuid::new_v4()));
    let tally = std::cell::RefCell::new(std::collections::BTreeMap::<u16, u32>::new());
    // What Alice ever sent she knows (her own events name the accounts she
    // paid): all her requests so far, not only this one.
    let known = std::cell::RefCell::new(String::new());
    runner(1_500, 18_001)
        .run(&drawn(), |drawn| {
            runtime.block_on(async {
                let (method, target) = target(&drawn, &bobs, alices);
                let target = target.replace("{alice}", &alice.to_string());
                let secrets = secrets(&admin, &bobs).await;
                known.borrow_mut().push_str(&target);
                let answer = as_alice.send(method, &target).await;
                *tally
                    .borrow_mut()
                    .entry(answer.status.as_u16())
                    .or_default() += 1;
                assert_no_secret(&answer, &known.borrow(), &secrets)
            })
        })
        .unwrap();
    let tally = tally.into_inner();
    // The draws reached refusals of every kind and real payments.
    for status in [200, 204, 400, 404, 409, 422] {
        assert!(
            tally.get(&status).is_some_and(|n| *n > 0),
            "no {status}: {tally:?}"
        );
    }
}
