//! Arbitrary bytes as a request (method + target) through the real router:
//! the answer is never a 5xx, and a refused request changes nothing.
#![no_main]

use std::sync::Arc;

use accounts::app::InstanceBuilder;
use accounts::engine::FixedClock;
use accounts::http::{AppState, router};
use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const ACCOUNT: &str = "4b2ad7a8-24a8-4d5e-9e0f-5a8a1f8e3c11";

struct Fixture {
    runtime: tokio::runtime::Runtime,
    state: AppState,
}

thread_local! {
    static FIXTURE: Fixture = fixture();
}

fn fixture() -> Fixture {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let state = InstanceBuilder::new()
        .clock(Arc::new(FixedClock::new(
            accounts::domain::Timestamp::from_unix_millis(0),
        )))
        .seed(1)
        .build()
        .state;
    let setup = [
        (
            Method::POST,
            format!("/api/account/{ACCOUNT}?owner={ACCOUNT}"),
        ),
        (
            Method::PUT,
            format!("/api/account/{ACCOUNT}?deposit=100&transactionId={ACCOUNT}"),
        ),
    ];
    for (method, uri) in setup {
        let (status, _) = runtime.block_on(call(&state, method, &uri));
        assert!(status < 300, "setup failed: {status}");
    }
    Fixture { runtime, state }
}

async fn call(state: &AppState, method: Method, uri: &str) -> (u16, Vec<u8>) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .expect("checked before");
    let response = router(state.clone())
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("in memory")
        .to_bytes();
    (status, body.to_vec())
}

async fn observe(state: &AppState) -> (Vec<u8>, Vec<u8>) {
    let account = call(state, Method::GET, &format!("/api/account/{ACCOUNT}"))
        .await
        .1;
    let events = call(
        state,
        Method::GET,
        &format!("/api/account/{ACCOUNT}/events"),
    )
    .await
    .1;
    (account, events)
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, target)) = data.split_first() else {
        return;
    };
    let method = [
        Method::GET,
        Method::PUT,
        Method::POST,
        Method::DELETE,
        Method::HEAD,
    ][usize::from(selector) % 5]
        .clone();
    let Ok(target) = std::str::from_utf8(target) else {
        return;
    };
    // Mostly aimed at the seeded account, so that parameters get parsed.
    let uri = match target.strip_prefix('@') {
        Some(rest) => format!("/api/account/{ACCOUNT}{rest}"),
        None => target.to_owned(),
    };
    if uri.parse::<axum::http::Uri>().is_err() {
        return;
    }
    FIXTURE.with(|fixture| {
        fixture.runtime.block_on(async {
            let before = observe(&fixture.state).await;
            let (status, _) = call(&fixture.state, method.clone(), &uri).await;
            assert!(status < 500, "{method} {uri} -> {status}");
            if (400..500).contains(&status) {
                assert_eq!(
                    observe(&fixture.state).await,
                    before,
                    "{method} {uri} -> {status}"
                );
            }
        });
    });
});
