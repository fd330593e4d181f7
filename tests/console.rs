//! The console's routes (docs/console.md): the page and its assets with their
//! content types and the Content-Security-Policy on every answer (errors and
//! 405s too), no token needed with authentication on, and an unknown console
//! path a JSON 404 like any unknown route. The page in a browser is
//! `just console-test` (tests/console/).

use testkit::{Answer, Method, StatusCode, TestInstance};

const ASSETS: [(&str, &str); 5] = [
    ("/console/console.js", "text/javascript; charset=utf-8"),
    ("/console/sse.js", "text/javascript; charset=utf-8"),
    ("/console/console.css", "text/css; charset=utf-8"),
    (
        "/console/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
    ),
    ("/console/uPlot.min.css", "text/css; charset=utf-8"),
];

fn assert_strict_policy(answer: &Answer, what: &str) {
    let policy = answer
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no Content-Security-Policy"));
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ] {
        assert!(
            policy.contains(directive),
            "{what}: {directive} in {policy}"
        );
    }
    assert!(!policy.contains("unsafe"), "{what}: {policy}");
    assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_their_types_and_the_policy() {
    let api = TestInstance::new().client();
    let page = api.get("/console").await;
    page.assert_status(StatusCode::OK);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_strict_policy(&page, "/console");
    for (path, _) in ASSETS {
        assert!(page.body.contains(path), "the page loads {path}");
    }
    // Nothing inline: the policy would block it.
    assert!(!page.body.contains("<script>") && !page.body.contains("style="));
    for (path, content_type) in ASSETS {
        let asset = api.get(path).await;
        asset.assert_status(StatusCode::OK);
        assert_eq!(asset.header("content-type"), Some(content_type), "{path}");
        assert!(asset.body.len() > 500, "{path} has its content");
        assert_strict_policy(&asset, path);
    }
}

#[tokio::test]
async fn the_console_needs_no_token_with_authentication_on() {
    let instance = TestInstance::with_auth();
    let api = instance.client();
    api.get("/api/events").await.assert_unauthorized();
    for path in ["/console", "/console/console.js"] {
        let answer = api.get(path).await;
        answer.assert_status(StatusCode::OK);
        assert_eq!(answer.header("www-authenticate"), None, "{path}");
        assert_strict_policy(&answer, path);
    }
}

#[tokio::test]
async fn an_unknown_console_path_is_a_json_404_with_the_policy() {
    let api = TestInstance::new().client();
    for path in ["/console/nope.js", "/console/..%2Fsrc%2Fmain.rs"] {
        let answer = api.get(path).await;
        answer.assert_error(StatusCode::NOT_FOUND, "route_not_found", "no console asset");
        assert_strict_policy(&answer, path);
    }
    // Deeper paths and the trailing slash are no route at all: the JSON
    // 404 of any unknown route, still under the console's policy.
    for path in ["/console/console.js/more", "/console/"] {
        let answer = api.get(path).await;
        answer.assert_error_code("route_not_found");
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert_strict_policy(&answer, path);
    }
}

#[tokio::test]
async fn other_methods_are_a_json_405_with_the_policy() {
    let api = TestInstance::new().client();
    for path in ["/console", "/console/console.js"] {
        let answer = api.send(Method::POST, path).await;
        answer.assert_error_code("method_not_allowed");
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_strict_policy(&answer, path);
    }
}
