//! Waits on the chat page (`examples/chat/index.html`) in a browser, shared by its tests.

use std::time::Duration;

use serde_json::json;

use super::browser::Page;

/// How long a chat page may take on a loaded machine.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Waits until the page has joined its room (`{"ready":true}` arrived).
pub async fn wait_ready(page: &Page) {
    page.wait_until("document.body.dataset.ready === 'true'", TIMEOUT)
        .await;
}

/// Waits until the last line of `#messages` is `line`.
pub async fn wait_last_line(page: &Page, line: &str) {
    let js = format!(
        "document.querySelector('#messages li:last-child')?.textContent === {}",
        json!(line)
    );
    page.wait_until(&js, TIMEOUT).await;
}
