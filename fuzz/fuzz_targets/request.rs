//! Arbitrary bytes as a request (method + target) through the real router:
//! the answer is never a 5xx, and a refused request changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use testkit::{Client, InProcess, Method, TestInstance};

const ACCOUNT: &str = "4b2ad7a8-24a8-4d5e-9e0f-5a8a1f8e3c11";

struct Fixture {
    runtime: tokio::runtime::Runtime,
    api: Client<InProcess>,
}

thread_local! {
    static FIXTURE: Fixture = fixture();
}

/// The kit's test instance (fixed clock, seeded entropy) with one account
/// holding 100.
fn fixture() -> Fixture {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let api = TestInstance::new().client();
    runtime.block_on(api.open_funded(ACCOUNT, ACCOUNT, 100, ACCOUNT));
    Fixture { runtime, api }
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
    // The feed's stream never ends and its long poll waits up to 30 s, by
    // design; tests/read_side.rs covers their parameters.
    if uri.starts_with("/api/events") {
        return;
    }
    FIXTURE.with(|fixture| {
        fixture.runtime.block_on(async {
            let api = &fixture.api;
            let before = api.observe(ACCOUNT).await;
            let status = api.send(method.clone(), &uri).await.status;
            assert!(!status.is_server_error(), "{method} {uri} -> {status}");
            if status.is_client_error() {
                assert_eq!(
                    api.observe(ACCOUNT).await,
                    before,
                    "{method} {uri} -> {status}"
                );
            }
        });
    });
});
