//! The chat page's files as the server serves them: content types, the CSP, ETag
//! revalidation, and nothing outside the embedded set.
mod common;

use common::{http_client, spawn_app};

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_a_strict_policy() {
    let app = spawn_app().await;
    let http = http_client();

    let page = http.get(app.http("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let h = page.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-cache");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<script type="module" src="/assets/app.js">"#));

    for (path, kind) in [
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/vendor/marked.esm.js", "text/javascript; charset=utf-8"),
        ("/assets/style.css", "text/css; charset=utf-8"),
        ("/assets/icon.svg", "image/svg+xml"),
    ] {
        let r = http.get(app.http(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], kind, "{path}");
        let etag = r.headers()["etag"].to_str().unwrap().to_owned();
        let body = r.bytes().await.unwrap();
        assert!(!body.is_empty());
        // A browser that has the file revalidates it: 304 without a body.
        let again = http.get(app.http(path)).header("if-none-match", &etag).send().await.unwrap();
        assert_eq!(again.status(), 304, "{path}");
        assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
        assert!(again.bytes().await.unwrap().is_empty());
    }

    for missing in [
        "/assets/nope.js",
        "/assets/../Cargo.toml",
        "/assets/vendor-src/package.json",
        "/assets/tests/helpers.mjs",
        "/index.html",
    ] {
        assert_eq!(http.get(app.http(missing)).send().await.unwrap().status(), 404, "{missing}");
    }
    // The API is unchanged by the page's routes.
    assert_eq!(http.get(app.http("/api/threads")).send().await.unwrap().status(), 401);
}
