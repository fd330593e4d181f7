//! Every row and rule of docs/API.md, in-process through the real router,
//! in both URL styles. Named after the rule they check.

use testkit::{
    ApiRequest, Client, Fault, InProcess, InstrumentedStore, Method, StatusCode, Style,
    TestInstance, id,
};

const OWNER: u128 = 0x0e;

/// A fresh instance's in-process client (path style unless a test says
/// otherwise).
fn api() -> Client<InProcess> {
    TestInstance::new().client()
}

/// The path of an account, for requests written out by hand.
fn account_url(account: u128) -> String {
    ApiRequest::state(id(account)).target
}

async fn api_with_accounts(accounts: &[u128]) -> Client<InProcess> {
    let api = api();
    for account in accounts {
        api.open_ok(id(*account), id(OWNER)).await;
    }
    api
}

// --- open -------------------------------------------------------------------

#[tokio::test]
async fn open_answers_201_with_location_and_no_body() {
    let app = api();
    let answer = app.open(id(1), id(OWNER)).await;
    assert_eq!(answer.status, StatusCode::CREATED);
    assert_eq!(
        answer.header("location"),
        Some(format!("/api/account/{}", id(1)).as_str())
    );
    assert_eq!(answer.body, "");
}

#[tokio::test]
async fn open_again_by_the_same_owner_answers_201_and_records_nothing() {
    let app = api_with_accounts(&[1]).await;
    let answer = app.open(id(1), id(OWNER)).await;
    assert_eq!(answer.status, StatusCode::CREATED);
    assert_eq!(app.event_list(id(1)).await.len(), 1);
}

#[tokio::test]
async fn open_of_an_existing_id_by_another_owner_or_closed_is_409() {
    let app = api_with_accounts(&[1, 2]).await;
    let answer = app.open(id(1), id(0xff)).await;
    answer.assert_error(StatusCode::CONFLICT, "account_exists", "already exists");
    assert_eq!(app.close(id(2)).await.status, StatusCode::NO_CONTENT);
    let answer = app.open(id(2), id(OWNER)).await;
    answer.assert_error(StatusCode::CONFLICT, "account_exists", "already exists");
}

#[tokio::test]
async fn open_needs_a_valid_owner() {
    let app = api();
    app.post(account_url(1))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_parameter", "owner");
    let answer = app.post(format!("{}?owner=banana", account_url(1))).await;
    answer.assert_error(StatusCode::BAD_REQUEST, "bad_parameter", "\"banana\"");
    assert_eq!(app.state(id(1)).await.status, StatusCode::NOT_FOUND);
}

// --- state ------------------------------------------------------------------

#[tokio::test]
async fn state_is_exact_json_with_lower_case_ids() {
    let app = api();
    let upper = "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE";
    let owner = "{11111111-2222-4333-8444-555555555555}";
    let answer = app
        .post(format!("/api/account/{upper}?owner={owner}"))
        .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    let answer = app
        .get("/api/account/aaaaaaaabbbb4ccc8dddeeeeeeeeeeee")
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(
        answer.body,
        r#"{"accountId":"aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee","ownerId":"11111111-2222-4333-8444-555555555555","balance":0,"open":true}"#
    );
}

#[tokio::test]
async fn state_of_an_unknown_account_is_404() {
    let app = api();
    app.state(id(9))
        .await
        .assert_error(StatusCode::NOT_FOUND, "account_not_found", &id(9));
}

#[tokio::test]
async fn state_of_a_closed_account_says_not_open() {
    let app = api_with_accounts(&[1]).await;
    assert_eq!(app.close(id(1)).await.status, StatusCode::NO_CONTENT);
    let state = app.state(id(1)).await.json();
    assert_eq!(state["open"], false);
    assert_eq!(state["balance"], 0);
}

#[tokio::test]
async fn ids_are_accepted_in_every_uuid_form() {
    let app = api_with_accounts(&[1]).await;
    let forms = [
        "00000000000000000000000000000001".to_owned(),
        "{00000000-0000-0000-0000-000000000001}".to_owned(),
        "urn:uuid:00000000-0000-0000-0000-000000000001".to_owned(),
    ];
    for (n, form) in forms.iter().enumerate() {
        let url = format!(
            "/api/account/{form}/deposit?amount=1&transactionId={}",
            id(100 + n as u128)
        );
        assert_eq!(app.put(&url).await.status, StatusCode::NO_CONTENT, "{form}");
    }
    assert_eq!(app.balance(id(1)).await, 3);
}

#[tokio::test]
async fn a_malformed_account_id_is_400() {
    let app = api();
    app.get("/api/account/not-a-uuid").await.assert_error(
        StatusCode::BAD_REQUEST,
        "bad_parameter",
        "not-a-uuid",
    );
    let answer = app
        .put("/api/account/xyz/deposit?amount=1&transactionId=x")
        .await;
    answer.assert_error(StatusCode::BAD_REQUEST, "bad_parameter", "xyz");
}

// --- deposit, withdraw, transfer -------------------------------------------

#[tokio::test]
async fn deposit_and_withdraw_work_in_both_styles() {
    for style in Style::BOTH {
        let app = api_with_accounts(&[1]).await.with_style(style);
        assert_eq!(
            app.deposit(id(1), "100", id(10)).await.status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            app.withdraw(id(1), "30", id(11)).await.status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(app.balance(id(1)).await, 70, "{style:?}");
    }
}

#[tokio::test]
async fn transfer_moves_money_in_both_styles() {
    for style in Style::BOTH {
        let app = api_with_accounts(&[1, 2]).await.with_style(style);
        app.deposit(id(1), "100", id(10)).await;
        let answer = app.transfer(id(1), id(2), "40", id(11)).await;
        assert_eq!(
            answer.status,
            StatusCode::NO_CONTENT,
            "{style:?}: {}",
            answer.body
        );
        assert_eq!(
            (app.balance(id(1)).await, app.balance(id(2)).await),
            (60, 40)
        );
    }
}

#[tokio::test]
async fn withdrawal_beyond_the_balance_is_400_and_records_nothing() {
    for style in Style::BOTH {
        let app = api_with_accounts(&[1]).await.with_style(style);
        app.deposit(id(1), "5", id(10)).await;
        let answer = app.withdraw(id(1), "6", id(11)).await;
        answer.assert_error(
            StatusCode::BAD_REQUEST,
            "insufficient_balance",
            "insufficient balance",
        );
        // The refused transactionId stays unused.
        assert_eq!(
            app.deposit(id(1), "1", id(11)).await.status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(app.balance(id(1)).await, 6);
    }
}

#[tokio::test]
async fn transfer_refusals() {
    for style in Style::BOTH {
        let app = api_with_accounts(&[1, 2, 3]).await.with_style(style);
        app.deposit(id(1), "10", id(10)).await;
        let answer = app.transfer(id(1), id(9), "1", id(11)).await;
        answer.assert_error(
            StatusCode::NOT_FOUND,
            "account_not_found",
            &format!("target account {}", id(9)),
        );
        let answer = app.transfer(id(9), id(1), "1", id(12)).await;
        answer.assert_error(StatusCode::NOT_FOUND, "account_not_found", &id(9));
        let answer = app.transfer(id(1), id(1), "1", id(13)).await;
        answer.assert_error(StatusCode::BAD_REQUEST, "transfer_to_self", "itself");
        let answer = app.transfer(id(1), id(2), "11", id(14)).await;
        answer.assert_error(
            StatusCode::BAD_REQUEST,
            "insufficient_balance",
            "insufficient",
        );
        assert_eq!(app.close(id(3)).await.status, StatusCode::NO_CONTENT);
        let answer = app.transfer(id(1), id(3), "1", id(15)).await;
        answer.assert_error(StatusCode::BAD_REQUEST, "account_closed", "closed");
        assert_eq!(app.balance(id(1)).await, 10);
        assert_eq!(app.event_list(id(2)).await.len(), 1);
    }
}

#[tokio::test]
async fn operations_on_an_unknown_account_are_404() {
    for style in Style::BOTH {
        let app = api().with_style(style);
        app.deposit(id(9), "1", id(10)).await.assert_error(
            StatusCode::NOT_FOUND,
            "account_not_found",
            &id(9),
        );
        app.withdraw(id(9), "1", id(10)).await.assert_error(
            StatusCode::NOT_FOUND,
            "account_not_found",
            &id(9),
        );
        app.close(id(9))
            .await
            .assert_error(StatusCode::NOT_FOUND, "account_not_found", &id(9));
    }
}

#[tokio::test]
async fn operations_on_a_closed_account_are_400_not_409() {
    for style in Style::BOTH {
        let app = api_with_accounts(&[1]).await.with_style(style);
        app.close(id(1)).await;
        app.deposit(id(1), "5", id(10)).await.assert_error(
            StatusCode::BAD_REQUEST,
            "account_closed",
            "closed",
        );
        app.withdraw(id(1), "5", id(11)).await.assert_error(
            StatusCode::BAD_REQUEST,
            "account_closed",
            "closed",
        );
    }
}

#[tokio::test]
async fn balances_never_overflow() {
    let app = api_with_accounts(&[1, 2]).await;
    let max = i64::MAX.to_string();
    assert_eq!(
        app.deposit(id(1), &max, id(10)).await.status,
        StatusCode::NO_CONTENT
    );
    let answer = app
        .with_style(Style::Query)
        .deposit(id(1), "1", id(11))
        .await;
    answer.assert_error(StatusCode::BAD_REQUEST, "balance_overflow", "overflow");
    app.deposit(id(2), "1", id(12)).await;
    let answer = app.transfer(id(2), id(1), "1", id(13)).await;
    answer.assert_error(StatusCode::BAD_REQUEST, "balance_overflow", "overflow");
    assert_eq!(app.balance(id(1)).await, i64::MAX);
    assert_eq!(app.balance(id(2)).await, 1);
}

// --- amounts ----------------------------------------------------------------

#[tokio::test]
async fn amounts_accept_sign_and_leading_zeros() {
    let app = api_with_accounts(&[1]).await;
    for (n, amount) in ["%2B5", "05", "-0", "0000000000000000000000005"]
        .iter()
        .enumerate()
    {
        let answer = app.deposit(id(1), amount, id(10 + n as u128)).await;
        assert_eq!(
            answer.status,
            StatusCode::NO_CONTENT,
            "{amount}: {}",
            answer.body
        );
    }
    assert_eq!(app.balance(id(1)).await, 15);
}

#[tokio::test]
async fn malformed_amounts_are_400_naming_parameter_and_value() {
    let bad = [
        "42.5",
        "1e3",
        "banana",
        "",
        "%201",
        "1%20",
        "+5",
        "%D9%A3",
        "%EF%BC%91",
        "9223372036854775808",
        "-1",
        "-9223372036854775808",
        "0x10",
    ];
    for style in Style::BOTH {
        let app = api_with_accounts(&[1]).await.with_style(style);
        app.deposit(id(1), "7", id(9)).await;
        for (n, amount) in bad.iter().enumerate() {
            let name = match style {
                Style::Query => "withdraw",
                Style::Path => "amount",
            };
            let answer = app.withdraw(id(1), amount, id(10 + n as u128)).await;
            answer.assert_error(StatusCode::BAD_REQUEST, "bad_parameter", name);
        }
        assert_eq!(app.balance(id(1)).await, 7);
    }
}

#[tokio::test]
async fn a_zero_amount_changes_nothing_and_leaves_the_transaction_id_unused() {
    for style in Style::BOTH {
        let app = api_with_accounts(&[1, 2]).await.with_style(style);
        assert_eq!(
            app.deposit(id(1), "0", id(10)).await.status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            app.withdraw(id(1), "0", id(11)).await.status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            app.event_list(id(1)).await.len(),
            1,
            "no event for a zero amount"
        );
        assert_eq!(
            app.deposit(id(1), "3", id(10)).await.status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(app.balance(id(1)).await, 3);
    }
}

/// A transfer moves at least 1: a zero one is a bad parameter, decided
/// before any account is looked at, so it answers alike whether the source
/// and the target exist, are open or closed — no probe of ids.
#[tokio::test]
async fn a_zero_transfer_is_400_whatever_the_accounts() {
    for style in Style::BOTH {
        let app = api_with_accounts(&[1, 2, 3]).await.with_style(style);
        app.close(id(3)).await;
        let mut bodies = std::collections::BTreeSet::new();
        for (from, to) in [(1, 2), (1, 3), (1, 9), (9, 1), (9, 8), (1, 1), (3, 1)] {
            for zero in ["0", "-0", "000"] {
                let answer = app.transfer(id(from), id(to), zero, id(12)).await;
                answer.assert_error(StatusCode::BAD_REQUEST, "bad_parameter", "at least");
                bodies.insert(answer.body);
            }
        }
        assert_eq!(bodies.len(), 3, "one answer per amount text: {bodies:?}");
        assert_eq!(app.event_list(id(1)).await.len(), 1, "nothing recorded");
        // The transactionId stays unused.
        assert_eq!(
            app.transfer(id(1), id(2), "0", id(12)).await.status,
            StatusCode::BAD_REQUEST
        );
        app.deposit(id(1), "5", id(12))
            .await
            .assert_status(StatusCode::NO_CONTENT);
        app.transfer(id(1), id(2), "1", id(13))
            .await
            .assert_status(StatusCode::NO_CONTENT);
        assert_eq!(app.balance(id(2)).await, 1);
    }
}

// --- parameters -------------------------------------------------------------

#[tokio::test]
async fn missing_parameters_are_400() {
    let app = api_with_accounts(&[1]).await;
    let base = account_url(1);
    app.put(format!("{base}/deposit?transactionId={}", id(5)))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_parameter", "amount");
    app.put(format!("{base}/deposit?amount=5"))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_parameter", "transactionId");
    app.put(format!("{base}?deposit=5")).await.assert_error(
        StatusCode::BAD_REQUEST,
        "bad_parameter",
        "transactionId",
    );
    let answer = app
        .put(format!("{base}?transfer={}&transactionId={}", id(2), id(5)))
        .await;
    answer.assert_error(StatusCode::BAD_REQUEST, "bad_parameter", "amount");
    let answer = app
        .put(format!("{base}/transfer?amount=1&transactionId={}", id(5)))
        .await;
    answer.assert_error(StatusCode::BAD_REQUEST, "bad_parameter", "targetAccount");
    let answer = app
        .put(format!("{base}/deposit?amount=1&transactionId=nope"))
        .await;
    answer.assert_error(StatusCode::BAD_REQUEST, "bad_parameter", "\"nope\"");
}

#[tokio::test]
async fn a_repeated_parameter_is_400() {
    let app = api_with_accounts(&[1]).await;
    let base = account_url(1);
    let answer = app
        .put(format!(
            "{base}/deposit?amount=1&amount=1&transactionId={}",
            id(5)
        ))
        .await;
    answer.assert_error(StatusCode::BAD_REQUEST, "bad_parameter", "amount");
    let answer = app
        .put(format!(
            "{base}?deposit=1&transactionId={}&transactionId={}",
            id(5),
            id(5)
        ))
        .await;
    answer.assert_error(StatusCode::BAD_REQUEST, "bad_parameter", "transactionId");
    assert_eq!(app.balance(id(1)).await, 0);
}

#[tokio::test]
async fn unused_parameters_are_ignored() {
    let app = api_with_accounts(&[1]).await;
    let url = format!(
        "{}/deposit?amount=4&transactionId={}&colour=blue&deposit=99",
        account_url(1),
        id(5)
    );
    assert_eq!(app.put(&url).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.balance(id(1)).await, 4);
}

#[tokio::test]
async fn query_style_put_needs_exactly_one_operation() {
    let app = api_with_accounts(&[1]).await;
    let base = account_url(1);
    app.put(format!("{base}?transactionId={}", id(5)))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_parameter", "one operation");
    let answer = app
        .put(format!(
            "{base}?deposit=1&withdraw=1&transactionId={}",
            id(5)
        ))
        .await;
    answer.assert_error(
        StatusCode::BAD_REQUEST,
        "bad_parameter",
        "only one operation",
    );
    assert_eq!(app.balance(id(1)).await, 0);
}

// --- idempotency ------------------------------------------------------------

#[tokio::test]
async fn an_identical_replay_answers_204_and_records_nothing() {
    for style in Style::BOTH {
        let app = api_with_accounts(&[1, 2]).await.with_style(style);
        for _ in 0..3 {
            assert_eq!(
                app.deposit(id(1), "10", id(10)).await.status,
                StatusCode::NO_CONTENT
            );
            assert_eq!(
                app.transfer(id(1), id(2), "4", id(11)).await.status,
                StatusCode::NO_CONTENT
            );
            assert_eq!(
                app.withdraw(id(1), "1", id(12)).await.status,
                StatusCode::NO_CONTENT
            );
        }
        assert_eq!((app.balance(id(1)).await, app.balance(id(2)).await), (5, 4));
        assert_eq!(app.event_list(id(1)).await.len(), 4);
    }
}

#[tokio::test]
async fn identical_means_the_normalised_operation_across_styles() {
    let app = api_with_accounts(&[1]).await;
    let tx = id(10);
    let answer = app
        .put(format!("{}?deposit=5&transactionId={tx}", account_url(1)))
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    let upper = id(1).to_uppercase();
    let simple_tx = tx.replace('-', "");
    let answer = app
        .put(format!(
            "/api/account/{upper}/deposit?amount=005&transactionId={simple_tx}"
        ))
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert_eq!(app.balance(id(1)).await, 5);
    assert_eq!(app.event_list(id(1)).await.len(), 2);
}

#[tokio::test]
async fn a_reused_transaction_id_with_another_operation_is_422() {
    for style in Style::BOTH {
        let app = api_with_accounts(&[1, 2]).await.with_style(style);
        app.deposit(id(1), "10", id(10)).await;
        app.deposit(id(1), "10", id(10)).await;
        app.deposit(id(1), "11", id(10)).await.assert_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "transaction_reused",
            &id(10),
        );
        app.withdraw(id(1), "10", id(10)).await.assert_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "transaction_reused",
            &id(10),
        );
        let answer = app.transfer(id(1), id(2), "10", id(10)).await;
        answer.assert_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "transaction_reused",
            &id(10),
        );
        assert_eq!(app.balance(id(1)).await, 10);
    }
}

#[tokio::test]
async fn a_transfer_records_its_transaction_id_on_both_accounts() {
    let app = api_with_accounts(&[1, 2]).await;
    app.deposit(id(1), "10", id(10)).await;
    assert_eq!(
        app.transfer(id(1), id(2), "4", id(11)).await.status,
        StatusCode::NO_CONTENT
    );
    let answer = app.deposit(id(2), "4", id(11)).await;
    answer.assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "transaction_reused",
        &id(11),
    );
    // The opposite transfer under the same id is another operation.
    let answer = app.transfer(id(2), id(1), "4", id(11)).await;
    answer.assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "transaction_reused",
        &id(11),
    );
    let events = app.event_list(id(2)).await;
    assert_eq!(events[1]["transactionId"], id(11));
    assert_eq!(events[1]["transferFrom"], id(1));
}

// --- order of checks --------------------------------------------------------

#[tokio::test]
async fn an_identical_replay_answers_204_even_after_the_account_was_closed() {
    for style in Style::BOTH {
        let app = api_with_accounts(&[1]).await.with_style(style);
        app.deposit(id(1), "5", id(10)).await;
        app.withdraw(id(1), "5", id(11)).await;
        assert_eq!(app.close(id(1)).await.status, StatusCode::NO_CONTENT);
        assert_eq!(
            app.deposit(id(1), "5", id(10)).await.status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            app.withdraw(id(1), "5", id(11)).await.status,
            StatusCode::NO_CONTENT
        );
        app.deposit(id(1), "5", id(12)).await.assert_error(
            StatusCode::BAD_REQUEST,
            "account_closed",
            "closed",
        );
    }
}

#[tokio::test]
async fn a_zero_amount_on_a_closed_account_is_400() {
    let app = api_with_accounts(&[1]).await;
    app.close(id(1)).await;
    app.with_style(Style::Query)
        .deposit(id(1), "0", id(10))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "account_closed", "closed");
}

#[tokio::test]
async fn bad_parameters_come_before_unknown_accounts() {
    let app = api();
    app.deposit(id(9), "-5", id(10)).await.assert_error(
        StatusCode::BAD_REQUEST,
        "bad_parameter",
        "negative",
    );
}

#[tokio::test]
async fn unknown_accounts_come_before_reused_transaction_ids() {
    let app = api_with_accounts(&[1]).await;
    app.deposit(id(1), "5", id(10)).await;
    let answer = app.transfer(id(1), id(9), "5", id(10)).await;
    answer.assert_error(StatusCode::NOT_FOUND, "account_not_found", &id(9));
}

#[tokio::test]
async fn reused_transaction_ids_come_before_business_rules() {
    let app = api_with_accounts(&[1]).await;
    app.deposit(id(1), "5", id(10)).await;
    let answer = app.withdraw(id(1), "500", id(10)).await;
    answer.assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "transaction_reused",
        &id(10),
    );
}

// --- close ------------------------------------------------------------------

#[tokio::test]
async fn close_rules() {
    let app = api_with_accounts(&[1]).await;
    app.deposit(id(1), "5", id(10)).await;
    app.close(id(1)).await.assert_error(
        StatusCode::BAD_REQUEST,
        "close_with_balance",
        "non-zero balance",
    );
    app.withdraw(id(1), "5", id(11)).await;
    let close = format!("{}?transactionId={}", account_url(1), id(12));
    assert_eq!(app.delete(&close).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.delete(&close).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.close(id(1)).await.status, StatusCode::NO_CONTENT);
    let reused = format!("{}?transactionId={}", account_url(1), id(10));
    app.delete(&reused).await.assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "transaction_reused",
        &id(10),
    );
    let events = app.event_list(id(1)).await;
    assert_eq!(events.len(), 4);
    assert_eq!(events[3]["type"], "AccountClosed");
    assert_eq!(events[3]["transactionId"], id(12));
}

#[tokio::test]
async fn a_close_without_transaction_id_gets_a_generated_one() {
    let app = api_with_accounts(&[1]).await;
    assert_eq!(app.close(id(1)).await.status, StatusCode::NO_CONTENT);
    let events = app.event_list(id(1)).await;
    let generated = events[1]["transactionId"].as_str().unwrap();
    assert_ne!(generated, events[0]["transactionId"].as_str().unwrap());
    assert!(uuid::Uuid::parse_str(generated).is_ok());
}

// --- event stream -----------------------------------------------------------

#[tokio::test]
async fn event_stream_has_exact_keys_in_order() {
    let app = api_with_accounts(&[1, 2]).await;
    app.deposit(id(1), "5", id(10)).await;
    app.transfer(id(1), id(2), "2", id(11)).await;
    let answer = app.events(id(1)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let stamp = "2026-11-26T10:00:00.000Z";
    let expected = format!(
        concat!(
            r#"[{{"sequenceNumber":1,"transactionId":"{open}","type":"AccountOpened","ownerId":"{owner}","recordedAt":"{t}"}},"#,
            r#"{{"sequenceNumber":2,"transactionId":"{tx1}","type":"MoneyDeposited","amountDeposited":5,"balance":5,"recordedAt":"{t}"}},"#,
            r#"{{"sequenceNumber":3,"transactionId":"{tx2}","type":"MoneyWithdrawn","amountWithdrawn":2,"balance":3,"transferTo":"{to}","recordedAt":"{t}"}}]"#
        ),
        open = app.event_list(id(1)).await[0]["transactionId"]
            .as_str()
            .unwrap(),
        owner = id(OWNER),
        tx1 = id(10),
        tx2 = id(11),
        to = id(2),
        t = stamp,
    );
    assert_eq!(answer.body, expected);
}

#[tokio::test]
async fn event_stream_pages_with_a_link_header() {
    let app = api_with_accounts(&[1]).await;
    for n in 0..4 {
        app.deposit(id(1), "1", id(10 + n)).await;
    }
    let base = format!("{}/events", account_url(1));
    let page = app.get(format!("{base}?from=2&limit=2")).await;
    let sequence = page.sequence_numbers();
    assert_eq!(sequence, [2, 3]);
    let next = format!(
        "</api/account/{}/events?from=4&limit=2>; rel=\"next\"",
        id(1)
    );
    assert_eq!(page.header("link"), Some(next.as_str()));
    let last = app.get(format!("{base}?from=4&limit=2")).await;
    assert_eq!(last.json().as_array().unwrap().len(), 2);
    assert_eq!(last.header("link"), None);
    assert_eq!(app.get(format!("{base}?from=99")).await.body, "[]");
}

#[tokio::test]
async fn event_stream_of_an_unknown_account_is_empty() {
    let app = api();
    let answer = app.events(id(9)).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "[]")
    );
}

#[tokio::test]
async fn event_stream_parameters_must_be_in_range() {
    let app = api_with_accounts(&[1]).await;
    let base = format!("{}/events", account_url(1));
    for query in [
        "from=0",
        "from=-1",
        "from=x",
        "limit=0",
        "limit=10001",
        "limit=1.5",
        "from=1&from=2",
    ] {
        let answer = app.get(format!("{base}?{query}")).await;
        let name = query.split('=').next().unwrap();
        answer.assert_error(StatusCode::BAD_REQUEST, "bad_parameter", name);
    }
    assert_eq!(
        app.get(format!("{base}?limit=10000")).await.status,
        StatusCode::OK
    );
}

// --- routes, methods, operations endpoints ---------------------------------

#[tokio::test]
async fn unknown_routes_are_404_json() {
    let app = api_with_accounts(&[1]).await;
    for uri in [
        "/nope",
        "/api/account",
        &format!("{}/frobnicate", account_url(1)),
        &format!("{}/events/x", account_url(1)),
    ] {
        for method in [Method::GET, Method::PUT] {
            app.send(method, uri).await.assert_error(
                StatusCode::NOT_FOUND,
                "route_not_found",
                "no route",
            );
        }
    }
}

#[tokio::test]
async fn wrong_methods_are_405_json_with_allow() {
    let app = api();
    let cases = [
        (Method::PATCH, account_url(1), "DELETE"),
        (Method::GET, format!("{}/deposit", account_url(1)), "PUT"),
        (Method::POST, format!("{}/events", account_url(1)), "GET"),
        (Method::DELETE, "/ping".to_owned(), "GET"),
    ];
    for (method, uri, allowed) in cases {
        let answer = app.send(method, &uri).await;
        answer.assert_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "not allowed",
        );
        let allow = answer.header("allow").expect("an Allow header");
        assert!(allow.contains(allowed), "{uri}: Allow {allow}");
    }
}

#[tokio::test]
async fn ping_ready_and_metrics() {
    let app = api();
    let ping = app.get("/ping").await;
    assert_eq!((ping.status, ping.body.as_str()), (StatusCode::OK, "pong"));
    assert!(
        ping.header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(app.get("/ready").await.status, StatusCode::OK);
    app.open_ok(id(1), id(OWNER)).await;
    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    assert!(metrics.body.contains(r#"accounts_http_requests_total{method="POST",route="/api/account/{account_id}",status="201"} 1"#), "{}", metrics.body);
    assert!(metrics.body.contains("accounts_events_appended_total 1"));
    assert!(
        metrics
            .body
            .contains("accounts_http_request_duration_seconds_bucket")
    );
}

#[tokio::test]
async fn ready_turns_503_when_draining() {
    let instance = TestInstance::new();
    instance.state.begin_drain();
    let app = instance.client();
    let answer = app.get("/ready").await;
    answer.assert_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "draining");
    assert_eq!(
        app.get("/ping").await.status,
        StatusCode::OK,
        "serving goes on while draining"
    );
}

#[tokio::test]
async fn request_ids_are_generated_or_propagated() {
    let app = api();
    let generated = app.get("/ping").await;
    let generated = generated.header("x-request-id").expect("a generated id");
    assert!(uuid::Uuid::parse_str(generated).is_ok());
    let answer = app.ping().header("x-request-id", "abc-123").await;
    assert_eq!(answer.header("x-request-id"), Some("abc-123"));
}

// --- an unreachable store ---------------------------------------------------

#[tokio::test]
async fn an_unreachable_store_is_503_with_retry_after() {
    let store = InstrumentedStore::new();
    store.fail_reads(Some(Fault::Unavailable));
    store.fail_appends(Some(Fault::Unavailable));
    let app = TestInstance::over(store).client();
    for answer in [
        app.deposit(id(1), "1", id(10)).await,
        app.state(id(1)).await,
        app.events(id(1)).await,
        app.get("/ready").await,
    ] {
        answer.assert_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "");
        assert_eq!(answer.header("retry-after"), Some("1"));
    }
}
