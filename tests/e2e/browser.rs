//! The chat page in a real browser: headless Chromium driven by
//! `tests/browser/chat_page.mjs` (playwright-core) against the real binary
//! in dev mode. Screenshots land in `target/browser/`.

use std::path::Path;

use crate::support::{TestServer, plugins_dir, workspace_root};

#[tokio::test]
async fn the_chat_page_works_in_a_real_browser() {
    let root = workspace_root();
    let browser_tests = root.join("tests/browser");
    assert!(
        Path::new("/usr/bin/chromium").exists()
            && browser_tests.join("node_modules/playwright-core").exists(),
        "the browser test needs Chromium and playwright-core: run `cargo xtask test`, which installs them"
    );
    // No secret: dev mode, so the page offers "Continue as demo".
    let server = TestServer::start_with(&plugins_dir(), &[("BETTER_AUTH_SECRET", "")])
        .ready()
        .await;
    let output = tokio::process::Command::new("node")
        .arg(browser_tests.join("chat_page.mjs"))
        .arg(&server.base)
        .arg(root.join("target/browser"))
        .output()
        .await
        .expect("node runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{report}");
    assert!(!report.contains("FAIL"), "{report}");
}

#[tokio::test]
async fn pages_are_served_from_the_binary() {
    let server = TestServer::start(&plugins_dir()).ready().await;
    let client = reqwest::Client::new();
    for (path, content_type, needle) in [
        ("/", "text/html", "Continue as demo"),
        ("/app.js", "text/javascript", "text/event-stream"),
        ("/app.css", "text/css", "@media"),
        ("/chatkit", "text/html", "cdn.platform.openai.com"),
        ("/chatkit.js", "text/javascript", "/api/v1/chatkit/sessions"),
    ] {
        let response = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let header = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(header.starts_with(content_type), "{path}: {header}");
        assert!(response.text().await.unwrap().contains(needle), "{path}");
    }
    // Not in dev mode: no demo token.
    let response = client
        .post(server.url("/api/v1/dev/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}
