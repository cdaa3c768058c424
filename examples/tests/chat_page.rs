//! The chat page (`examples/chat/index.html`) in headless Chromium, against a small
//! in-test room server that speaks the workers-chat-demo protocol: the join form, the
//! backlog, two users talking, the roster, errors, escaping, and reconnecting.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::{Html, Response};
use axum::routing::get;
use axum::Router;
use common::browser::{Browser, Page};
use common::chat_page::{wait_last_line, wait_ready, TIMEOUT};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

const PAGE: &str = include_str!("../chat/index.html");
/// One room: its messages, who is in it, and a channel to everyone in it.
struct Room {
    backlog: Mutex<Vec<String>>,
    present: Mutex<Vec<String>>,
    tx: broadcast::Sender<String>,
    last_timestamp: Mutex<u64>,
}

/// A stand-in for the chat example's server: rooms in memory, the demo's protocol.
#[derive(Clone)]
struct Rooms {
    rooms: Arc<Mutex<HashMap<String, Arc<Room>>>>,
    /// WebSocket sessions started so far.
    sessions: Arc<AtomicUsize>,
    /// Bumped to drop every connection (the page must reconnect).
    kick: watch::Sender<u64>,
}

impl Rooms {
    fn room(&self, name: &str) -> Arc<Room> {
        let mut rooms = self.rooms.lock().unwrap();
        let room = rooms.entry(name.to_owned()).or_insert_with(|| {
            Arc::new(Room {
                backlog: Mutex::new(Vec::new()),
                present: Mutex::new(Vec::new()),
                tx: broadcast::channel(64).0,
                last_timestamp: Mutex::new(0),
            })
        });
        room.clone()
    }

    /// Stores and broadcasts a message, with a timestamp above every earlier one.
    fn post(&self, room: &str, name: &str, message: &str) {
        let room = self.room(room);
        let timestamp = {
            let mut last = room.last_timestamp.lock().unwrap();
            *last = (*last + 1).max(now_ms());
            *last
        };
        let text = json!({ "name": name, "message": message, "timestamp": timestamp }).to_string();
        room.backlog.lock().unwrap().push(text.clone());
        let _ = room.tx.send(text);
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn socket(
    State(rooms): State<Rooms>,
    Path(room): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade.on_upgrade(move |socket| session(rooms, room, socket))
}

/// One connection: `{name}` first; then, as the demo does, who is already there
/// (`{joined}`), the backlog and `{ready}`; then the room's traffic.
async fn session(rooms: Rooms, room_name: String, mut socket: WebSocket) {
    rooms.sessions.fetch_add(1, Ordering::SeqCst);
    let mut kick = rooms.kick.subscribe();
    let name = loop {
        match socket.recv().await {
            Some(Ok(Message::Text(text))) => {
                let hello: Value = serde_json::from_str(&text).unwrap();
                break hello["name"].as_str().unwrap().to_owned();
            }
            Some(Ok(_)) => continue,
            _ => return,
        }
    };
    let room = rooms.room(&room_name);
    let mut rx = room.tx.subscribe();
    let present = room.present.lock().unwrap().clone();
    let present = present.iter().map(|n| json!({ "joined": n }).to_string());
    let backlog = room.backlog.lock().unwrap().clone();
    for text in present.chain(backlog) {
        if socket.send(Message::Text(text.into())).await.is_err() {
            return;
        }
    }
    room.present.lock().unwrap().push(name.clone());
    let _ = room.tx.send(json!({ "joined": name }).to_string());
    let _ = socket.send(text(json!({ "ready": true }))).await;
    loop {
        tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(raw))) => {
                    let data: Value = serde_json::from_str(&raw).unwrap();
                    let message = data["message"].as_str().unwrap_or_default();
                    if message.chars().count() > 256 {
                        let _ = socket.send(text(json!({ "error": "Message too long." }))).await;
                    } else {
                        rooms.post(&room_name, &name, message);
                    }
                }
                Some(Ok(_)) => {}
                _ => break,
            },
            outgoing = rx.recv() => match outgoing {
                Ok(out) => {
                    if socket.send(Message::Text(out.into())).await.is_err() {
                        break;
                    }
                }
                Err(_) => break,
            },
            _ = kick.changed() => break,
        }
    }
    let mut present = room.present.lock().unwrap();
    if let Some(i) = present.iter().position(|n| *n == name) {
        present.remove(i);
    }
    drop(present);
    let _ = room.tx.send(json!({ "quit": name }).to_string());
}

fn text(value: Value) -> Message {
    Message::Text(value.to_string().into())
}

/// Serves the page at `/` and the rooms at `/api/room/{room}/websocket` on 127.0.0.1.
async fn serve() -> (SocketAddr, Rooms) {
    let rooms = Rooms {
        rooms: Arc::default(),
        sessions: Arc::default(),
        kick: watch::channel(0).0,
    };
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/api/room/{room}/websocket", get(socket))
        .with_state(rooms.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, rooms)
}

async fn roster(page: &Page) -> Vec<String> {
    page.texts("#roster li").await
}

#[tokio::test]
async fn the_join_form_puts_room_and_name_in_the_url() {
    let (addr, _rooms) = serve().await;
    let browser = Browser::start().await;
    browser.goto(&format!("http://{addr}/")).await;

    assert_eq!(
        browser.eval("document.getElementById('join').hidden").await,
        false
    );
    assert_eq!(
        browser.eval("document.getElementById('chat').hidden").await,
        true
    );
    assert_eq!(browser.console_errors().await, Vec::<String>::new());

    browser.type_into("#room", "lobby").await;
    browser.type_into("#name", "ann").await;
    browser.click("#join button").await;
    wait_ready(&browser).await;
    assert_eq!(
        browser.eval("location.search").await,
        "?room=lobby&name=ann"
    );
    assert_eq!(
        browser.eval("document.getElementById('join').hidden").await,
        true
    );

    // A reload rejoins at once, without the form.
    browser.client().refresh().await.unwrap();
    wait_ready(&browser).await;
    assert_eq!(
        browser.eval("document.getElementById('join').hidden").await,
        true
    );
    // Her own `joined` comes after `ready`: wait for it rather than race it.
    wait_last_line(&browser, "ann joined").await;
    assert_eq!(roster(&browser).await, ["ann"]);
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
}

#[tokio::test]
async fn two_users_chat() {
    let (addr, rooms) = serve().await;
    rooms.post("r1", "carol", "<b>earlier</b>");
    rooms.post("other", "dave", "elsewhere");
    let alice = Browser::start().await;
    let bob = alice.new_page().await;

    alice
        .goto(&format!("http://{addr}/?room=r1&name=alice"))
        .await;
    wait_ready(&alice).await;
    // The backlog, as text (no element made of it), then her own arrival.
    wait_last_line(&alice, "alice joined").await;
    assert_eq!(
        alice.texts("#messages li").await,
        ["carol: <b>earlier</b>", "alice joined"]
    );
    assert_eq!(
        alice
            .eval("document.querySelectorAll('#messages b').length")
            .await,
        0
    );
    assert_eq!(roster(&alice).await, ["alice"]);

    bob.goto(&format!("http://{addr}/?room=r1&name=bob")).await;
    wait_ready(&bob).await;
    wait_last_line(&alice, "bob joined").await;
    assert_eq!(roster(&alice).await, ["alice", "bob"]);
    // Bob is told who was there before him, in the roster only.
    wait_last_line(&bob, "bob joined").await;
    assert_eq!(roster(&bob).await, ["alice", "bob"]);
    assert_eq!(
        bob.texts("#messages li").await,
        ["carol: <b>earlier</b>", "bob joined"]
    );

    alice.type_into("#input", "hi bob").await;
    alice.press_enter("#input").await;
    wait_last_line(&bob, "alice: hi bob").await;
    wait_last_line(&alice, "alice: hi bob").await;
    assert_eq!(
        alice.eval("document.getElementById('input').value").await,
        ""
    );

    bob.type_into("#input", &"x".repeat(300)).await;
    bob.press_enter("#input").await;
    wait_last_line(&bob, "Error: Message too long.").await;

    bob.close().await;
    wait_last_line(&alice, "bob left").await;
    assert_eq!(roster(&alice).await, ["alice"]);
    assert_eq!(
        alice.texts("#messages li").await,
        [
            "carol: <b>earlier</b>",
            "alice joined",
            "bob joined",
            "alice: hi bob",
            "bob left"
        ]
    );
    assert_eq!(alice.console_errors().await, Vec::<String>::new());
}

#[tokio::test]
async fn the_page_reconnects_without_repeating_the_backlog() {
    let (addr, rooms) = serve().await;
    rooms.post("r", "carol", "before");
    let browser = Browser::start().await;
    browser
        .goto(&format!("http://{addr}/?room=r&name=alice"))
        .await;
    wait_ready(&browser).await;
    assert_eq!(rooms.sessions.load(Ordering::SeqCst), 1);

    rooms.kick.send_modify(|n| *n += 1);
    browser
        .wait_until("document.body.dataset.ready === 'false'", TIMEOUT)
        .await;
    wait_ready(&browser).await;
    assert_eq!(rooms.sessions.load(Ordering::SeqCst), 2);

    browser.type_into("#input", "after").await;
    browser.press_enter("#input").await;
    wait_last_line(&browser, "alice: after").await;
    assert_eq!(
        browser.texts("#messages li").await,
        [
            "carol: before",
            "alice joined",
            "alice joined",
            "alice: after"
        ]
    );
}
