//! The headless-Chromium harness itself: two independent sessions drive a tiny page served
//! here, and a wrong expectation fails with the page's text.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use axum::response::Html;
use axum::routing::get;
use axum::Router;
use common::browser::Browser;
use tokio::net::TcpListener;

const TIMEOUT: Duration = Duration::from_secs(30);

/// An input, a button that appends the input's text to a list, and Enter doing the same.
const PAGE: &str = r#"<!doctype html>
<html>
<head><meta charset="utf-8"><title>harness</title><link rel="icon" href="data:,"></head>
<body>
  <input id="input" autocomplete="off">
  <button id="add">Add</button>
  <ul id="items"></ul>
  <script>
    const input = document.getElementById("input");
    function add() {
      const li = document.createElement("li");
      li.textContent = input.value;
      document.getElementById("items").append(li);
      input.value = "";
    }
    document.getElementById("add").addEventListener("click", add);
    input.addEventListener("keydown", (e) => { if (e.key === "Enter") add(); });
    document.body.dataset.ready = "true";
  </script>
</body>
</html>
"#;

/// Serves [`PAGE`] at `/` on a free port of 127.0.0.1, until the test ends.
async fn serve_page() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/", get(|| async { Html(PAGE) }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn two_sessions_drive_a_page() {
    let addr = serve_page().await;
    let url = format!("http://{addr}/");
    let alice = Browser::start().await;
    let bob = alice.new_page().await;

    for page in [&*alice, &bob] {
        page.goto(&url).await;
        page.wait_until("document.body.dataset.ready === 'true'", TIMEOUT)
            .await;
    }
    assert_eq!(alice.eval("document.title").await, "harness");

    alice.type_into("#input", "hello <b>world</b>").await;
    alice.click("#add").await;
    bob.type_into("#input", "from bob").await;
    bob.press_enter("#input").await;
    alice.type_into("#input", "again").await;
    alice.press_enter("#input").await;

    alice
        .wait_until(
            "document.querySelectorAll('#items li').length === 2",
            TIMEOUT,
        )
        .await;
    assert_eq!(
        alice.texts("#items li").await,
        ["hello <b>world</b>", "again"]
    );
    // The sessions share nothing: bob's list has only his own item.
    assert_eq!(bob.texts("#items li").await, ["from bob"]);
    assert_eq!(bob.eval("document.getElementById('input').value").await, "");

    // Statements go in a function; promises are awaited.
    let sum = alice
        .eval("(async () => { const xs = [1, 2, 3]; return xs.reduce((a, b) => a + b); })()")
        .await;
    assert_eq!(sum, 6);

    assert_eq!(alice.console_errors().await, Vec::<String>::new());
    alice.eval("console.error('boom')").await;
    let errors = alice.console_errors().await;
    assert!(
        errors.iter().any(|e| e.contains("boom")),
        "console errors: {errors:?}"
    );
}

#[tokio::test]
#[should_panic(expected = "Add\nnot this\n---")]
async fn a_wrong_expectation_fails_with_the_page_text() {
    let addr = serve_page().await;
    let browser = Browser::start().await;
    browser.goto(&format!("http://{addr}/")).await;
    browser.type_into("#input", "not this").await;
    browser.press_enter("#input").await;
    browser
        .wait_until(
            "document.getElementById('items').textContent === 'something else'",
            Duration::from_millis(500),
        )
        .await;
}

#[tokio::test]
#[should_panic(expected = "install Debian's packages `chromium` and `chromium-driver`")]
async fn a_missing_chromedriver_names_the_packages() {
    Browser::start_with(
        Path::new("/nonexistent/chromedriver"),
        Path::new("/usr/bin/chromium"),
    )
    .await;
}
