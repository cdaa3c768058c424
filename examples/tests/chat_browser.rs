//! The `chat` binary in headless Chromium: two users open the same room by URL, one types a
//! message and presses Enter, the other sees it; a reload shows the history.

mod common;

use common::browser::Browser;
use common::chat_page::{wait_last_line, wait_ready};
use common::{free_addr, start_example, wait_listening};

#[tokio::test]
async fn two_browsers_chat_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let addr_s = addr.to_string();
    let _chat = start_example(
        "chat",
        &[
            "--addr",
            &addr_s,
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
    );
    wait_listening(addr).await;

    let alice = Browser::start().await;
    let bob = alice.new_page().await;
    alice
        .goto(&format!("http://{addr}/?room=lobby&name=alice"))
        .await;
    wait_ready(&alice).await;
    bob.goto(&format!("http://{addr}/?room=lobby&name=bob"))
        .await;
    wait_ready(&bob).await;
    wait_last_line(&alice, "bob joined").await;
    wait_last_line(&bob, "bob joined").await;
    assert_eq!(alice.texts("#roster li").await, ["alice", "bob"]);
    assert_eq!(bob.texts("#roster li").await, ["alice", "bob"]);

    alice.type_into("#input", "hello <b>bob</b>").await;
    alice.press_enter("#input").await;
    wait_last_line(&bob, "alice: hello <b>bob</b>").await;
    wait_last_line(&alice, "alice: hello <b>bob</b>").await;
    assert_eq!(
        alice.eval("document.getElementById('input').value").await,
        ""
    );

    bob.type_into("#input", "hi alice").await;
    bob.press_enter("#input").await;
    wait_last_line(&alice, "bob: hi alice").await;

    // A message over the limit is refused, to its sender only.
    bob.type_into("#input", &"x".repeat(300)).await;
    bob.press_enter("#input").await;
    wait_last_line(&bob, "Error: Message too long.").await;

    // Bob leaves; Alice reloads: the room's history comes back from storage.
    bob.close().await;
    wait_last_line(&alice, "bob left").await;
    assert_eq!(alice.texts("#roster li").await, ["alice"]);
    alice.client().refresh().await.unwrap();
    wait_ready(&alice).await;
    wait_last_line(&alice, "alice joined").await;
    assert_eq!(
        alice.texts("#messages li").await,
        ["alice: hello <b>bob</b>", "bob: hi alice", "alice joined"]
    );
    assert_eq!(alice.console_errors().await, Vec::<String>::new());
}
