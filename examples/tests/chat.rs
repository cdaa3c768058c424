//! The chat (`durable_examples::chat`) with real WebSocket clients: in this process (the
//! router and a runtime on loopback), then the `chat` binary itself (kill -9 and restart, a
//! graceful SIGTERM, two processes).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{free_addr, send, start_example, wait_listening};
use durable_examples::chat::{
    ChatMessage, CLOSE_NAME_TOO_LONG, HISTORY, MAX_MESSAGE, MAX_NAME, PAGE,
};
use durable_examples::{chat_app, metrics_app, ChatRoom, TEXT_PLAIN};
use durable_runtime::Runtime;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

const TIMEOUT: Duration = Duration::from_secs(10);

/// The chat service on a free port of 127.0.0.1.
async fn serve(rt: &Runtime) -> common::Server {
    common::Server::serve(chat_app(rt.namespace::<ChatRoom>()).merge(metrics_app(rt.clone()))).await
}

/// A WebSocket to `room`, nameless.
async fn connect(addr: SocketAddr, room: &str) -> Client {
    let url = format!("ws://{addr}/api/room/{room}/websocket");
    let (client, _) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect in time")
        .expect("the upgrade");
    client
}

/// Connects to `room` as `name`: returns the client and what came before `{"ready":true}`
/// (the roster's `joined`, then the history).
async fn join(addr: SocketAddr, room: &str, name: &str) -> (Client, Vec<Value>) {
    let mut client = connect(addr, room).await;
    say(&mut client, json!({ "name": name })).await;
    let mut before = Vec::new();
    loop {
        let value = next_json(&mut client).await;
        if value == json!({ "ready": true }) {
            break;
        }
        before.push(value);
    }
    // Then everyone, the newcomer included, hears of the arrival.
    assert_eq!(next_json(&mut client).await, json!({ "joined": name }));
    (client, before)
}

async fn next(client: &mut Client) -> Ws {
    loop {
        let message = tokio::time::timeout(TIMEOUT, client.next())
            .await
            .expect("a message in time")
            .expect("the stream is open")
            .expect("a valid frame");
        if !matches!(message, Ws::Ping(_) | Ws::Pong(_)) {
            return message;
        }
    }
}

async fn next_json(client: &mut Client) -> Value {
    match next(client).await {
        Ws::Text(text) => serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text.as_str())),
        other => panic!("expected text, got {other:?}"),
    }
}

async fn say(client: &mut Client, value: Value) {
    client.send(Ws::text(value.to_string())).await.unwrap();
}

/// Sends `{"message":text}` and returns the room's echo of it, checked.
async fn post(client: &mut Client, name: &str, text: &str) -> ChatMessage {
    say(client, json!({ "message": text })).await;
    let echo = message(next_json(client).await);
    assert_eq!((echo.name.as_str(), echo.message.as_str()), (name, text));
    echo
}

/// A chat message, with exactly the demo's three fields.
fn message(value: Value) -> ChatMessage {
    let fields: Vec<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(fields, ["message", "name", "timestamp"], "{value}");
    serde_json::from_value(value).unwrap()
}

fn error(text: &str) -> Value {
    json!({ "error": text })
}

/// Nothing arrives for a while.
async fn quiet(client: &mut Client) {
    if let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_millis(300), client.next()).await
    {
        panic!("expected nothing, got {message:?}");
    }
}

/// Reads until the server's close frame, and returns its code and reason.
async fn closed(client: &mut Client) -> (u16, String) {
    match next(client).await {
        Ws::Close(Some(frame)) => (u16::from(frame.code), frame.reason.to_string()),
        other => panic!("expected a close, got {other:?}"),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn the_page_and_the_routes() {
    let rt = Runtime::in_memory();
    let server = serve(&rt).await;
    let addr = server.addr;
    for target in ["/", "/?room=lobby&name=ann"] {
        let reply = send(addr, "GET", target).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(
            reply.content_type.as_deref(),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(reply.body(), PAGE);
    }
    assert!(PAGE.contains("/api/room/"), "the page is the chat's");

    let text = |reply: common::Reply, status: u16, body: &str| {
        assert_eq!(reply.status, status, "{reply:?}");
        assert_eq!(reply.content_type.as_deref(), Some(TEXT_PLAIN), "{reply:?}");
        assert_eq!(reply.body(), body);
    };
    // Not an upgrade: the room says so.
    text(
        send(addr, "GET", "/api/room/lobby/websocket").await,
        426,
        "Expected WebSocket upgrade",
    );
    // Room names: 32 characters (JavaScript's count) at most.
    let long = "r".repeat(33);
    text(
        send(addr, "GET", &format!("/api/room/{long}/websocket")).await,
        400,
        "Room name too long",
    );
    let emoji = "%F0%9F%98%80".repeat(17); // 17 emoji: 34 UTF-16 units
    text(
        send(addr, "GET", &format!("/api/room/{emoji}/websocket")).await,
        400,
        "Room name too long",
    );
    text(send(addr, "GET", "/nope").await, 404, "Not found");
    text(send(addr, "GET", "/api/room/lobby").await, 404, "Not found");

    // A 32-character room, with an escaped name, takes WebSockets.
    let room = format!("{}%20x", "r".repeat(30));
    let (_c, before) = join(addr, &room, "ann").await;
    assert!(before.is_empty());
    let reply = send(addr, "GET", "/metrics").await;
    assert_eq!(reply.status, 200);
    assert!(reply.body().contains("durable_calls_total "), "{reply:?}");
    server.stop().await;
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_newcomer_gets_the_last_100_messages_oldest_first_then_ready() {
    let rt = Runtime::in_memory();
    let server = serve(&rt).await;
    let (mut ann, before) = join(server.addr, "history", "ann").await;
    assert!(before.is_empty(), "a new room has no history: {before:?}");

    let mut sent = Vec::new();
    for i in 0..105 {
        sent.push(post(&mut ann, "ann", &format!("m{i}")).await);
    }
    // Timestamps: milliseconds since the epoch, strictly increasing.
    assert!(sent.windows(2).all(|w| w[0].timestamp < w[1].timestamp));
    let now = now_ms();
    assert!(
        sent[0].timestamp > now - 60_000 && sent[104].timestamp < now + 60_000,
        "{sent:?}"
    );

    let (mut bob, before) = join(server.addr, "history", "bob").await;
    assert_eq!(before[0], json!({ "joined": "ann" }), "the roster first");
    let history: Vec<ChatMessage> = before[1..].iter().cloned().map(message).collect();
    assert_eq!(history.len(), HISTORY);
    assert_eq!(history, sent[5..]);
    assert_eq!(next_json(&mut ann).await, json!({ "joined": "bob" }));

    // Everyone gets each message, the sender included.
    let hello = post(&mut bob, "bob", "hello").await;
    assert_eq!(message(next_json(&mut ann).await), hello);
    assert!(hello.timestamp > sent[104].timestamp);
    server.stop().await;
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn joined_and_quit_notices() {
    let rt = Runtime::in_memory();
    let server = serve(&rt).await;
    let addr = server.addr;
    let (mut ann, _) = join(addr, "notices", "ann").await;
    // A socket without a name is in no roster and hears nothing.
    let mut lurker = connect(addr, "notices").await;
    let (mut bob, before) = join(addr, "notices", "bob").await;
    assert_eq!(before, [json!({ "joined": "ann" })]);
    assert_eq!(next_json(&mut ann).await, json!({ "joined": "bob" }));
    let (mut cy, before) = join(addr, "notices", "cy").await;
    assert_eq!(
        before,
        [json!({ "joined": "ann" }), json!({ "joined": "bob" })]
    );
    for client in [&mut ann, &mut bob] {
        assert_eq!(next_json(client).await, json!({ "joined": "cy" }));
    }

    // A close frame, a dropped connection: the others hear `quit` either way.
    bob.close(None).await.unwrap();
    for client in [&mut ann, &mut cy] {
        assert_eq!(next_json(client).await, json!({ "quit": "bob" }));
    }
    drop(cy);
    assert_eq!(next_json(&mut ann).await, json!({ "quit": "cy" }));
    // A nameless socket leaves without a notice.
    lurker.close(None).await.unwrap();
    quiet(&mut ann).await;

    let (_dan, before) = join(addr, "notices", "dan").await;
    assert_eq!(before, [json!({ "joined": "ann" })]);
    assert_eq!(next_json(&mut ann).await, json!({ "joined": "dan" }));
    server.stop().await;
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn names_and_messages_have_limits() {
    let rt = Runtime::in_memory();
    let server = serve(&rt).await;
    let addr = server.addr;
    let (mut ann, _) = join(addr, "limits", "ann").await;

    // 33 characters, or 17 emoji (34 UTF-16 units): an error, then the socket is closed.
    for name in ["n".repeat(MAX_NAME + 1), "😀".repeat(17)] {
        let mut long = connect(addr, "limits").await;
        say(&mut long, json!({ "name": name })).await;
        assert_eq!(next_json(&mut long).await, error("Name too long."));
        assert_eq!(
            closed(&mut long).await,
            (CLOSE_NAME_TOO_LONG, "Name too long.".to_owned())
        );
    }
    quiet(&mut ann).await;
    // 32 is fine.
    let name = "n".repeat(MAX_NAME);
    let (_fine, _) = join(addr, "limits", &name).await;
    assert_eq!(next_json(&mut ann).await, json!({ "joined": name }));

    // A message of 257 characters is refused (to its sender only); 256 is fine.
    say(&mut ann, json!({ "message": "x".repeat(MAX_MESSAGE + 1) })).await;
    assert_eq!(next_json(&mut ann).await, error("Message too long."));
    say(
        &mut ann,
        json!({ "message": "é".repeat(200) + &"😀".repeat(29) }),
    )
    .await;
    assert_eq!(next_json(&mut ann).await, error("Message too long."));
    post(&mut ann, "ann", &"x".repeat(MAX_MESSAGE)).await;
    post(&mut ann, "ann", &("é".repeat(200) + &"😀".repeat(28))).await;

    let (_, before) = join(addr, "limits", "bob").await;
    let history: Vec<String> = before
        .into_iter()
        .filter(|v| v.get("message").is_some())
        .map(|v| message(v).message)
        .collect();
    assert_eq!(history.len(), 2, "only the accepted messages are kept");
    server.stop().await;
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_frames_get_an_error_and_the_room_goes_on() {
    let rt = Runtime::in_memory();
    let server = serve(&rt).await;
    let addr = server.addr;
    let (mut ann, _) = join(addr, "bad", "ann").await;

    let mut bob = connect(addr, "bad").await;
    // Before the name and after it, the same answers; the socket stays open.
    for named in [false, true] {
        bob.send(Ws::text("not json")).await.unwrap();
        assert_eq!(next_json(&mut bob).await, error("Expected JSON."));
        bob.send(Ws::text("[1, 2]")).await.unwrap();
        assert_eq!(next_json(&mut bob).await, error("Expected a JSON object."));
        bob.send(Ws::text("\"name\"")).await.unwrap();
        assert_eq!(next_json(&mut bob).await, error("Expected a JSON object."));
        bob.send(Ws::binary(br#"{"name":"bob"}"#.to_vec()))
            .await
            .unwrap();
        assert_eq!(
            next_json(&mut bob).await,
            error("Binary messages are not supported; send JSON text.")
        );
        if named {
            say(&mut bob, json!({ "text": "hi" })).await;
            assert_eq!(
                next_json(&mut bob).await,
                error("Expected {\"message\": ...}.")
            );
            say(&mut bob, json!({ "message": 5 })).await;
            assert_eq!(
                next_json(&mut bob).await,
                error("Expected {\"message\": ...}.")
            );
        } else {
            for hello in [
                json!({ "message": "hi" }),
                json!({ "name": 7 }),
                json!({ "name": "" }),
            ] {
                say(&mut bob, hello).await;
                assert_eq!(
                    next_json(&mut bob).await,
                    error("Expected {\"name\": ...} first.")
                );
            }
            say(&mut bob, json!({ "name": "bob" })).await;
            assert_eq!(next_json(&mut bob).await, json!({ "joined": "ann" }));
            assert_eq!(next_json(&mut bob).await, json!({ "ready": true }));
            assert_eq!(next_json(&mut bob).await, json!({ "joined": "bob" }));
            assert_eq!(next_json(&mut ann).await, json!({ "joined": "bob" }));
        }
    }
    // None of it reached anyone else, and the room still works for everyone.
    quiet(&mut ann).await;
    let hi = post(&mut bob, "bob", "still here").await;
    assert_eq!(message(next_json(&mut ann).await), hi);
    let hi = post(&mut ann, "ann", "me too").await;
    assert_eq!(message(next_json(&mut bob).await), hi);
    server.stop().await;
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn two_rooms_are_separate() {
    let rt = Runtime::in_memory();
    let server = serve(&rt).await;
    let addr = server.addr;
    let (mut a, _) = join(addr, "a", "ann").await;
    let (mut b, before) = join(addr, "b", "bob").await;
    assert!(before.is_empty(), "ann is in another room: {before:?}");
    quiet(&mut a).await;
    post(&mut a, "ann", "in a").await;
    post(&mut b, "bob", "in b").await;
    quiet(&mut a).await;
    quiet(&mut b).await;
    let (_, before) = join(addr, "b", "cy").await;
    assert_eq!(before[0], json!({ "joined": "bob" }));
    assert_eq!(message(before[1].clone()).message, "in b");
    assert_eq!(before.len(), 2);
    server.stop().await;
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn concurrent_senders_get_strictly_increasing_timestamps() {
    let rt = Runtime::in_memory();
    let server = serve(&rt).await;
    let addr = server.addr;
    let mut clients = Vec::new();
    for i in 0..4 {
        clients.push(join(addr, "race", &format!("u{i}")).await.0);
    }
    // Drain the later arrivals' `joined` notices.
    for (i, client) in clients.iter_mut().enumerate() {
        for j in i + 1..4 {
            assert_eq!(
                next_json(client).await,
                json!({ "joined": format!("u{j}") })
            );
        }
    }
    for client in &mut clients {
        for k in 0..25 {
            client
                .feed(Ws::text(json!({ "message": format!("{k}") }).to_string()))
                .await
                .unwrap();
        }
    }
    for client in &mut clients {
        client.flush().await.unwrap();
    }
    // Every client sees the same 100 messages, in the same order, timestamps increasing.
    let mut seen = Vec::new();
    for client in &mut clients {
        let mut got = Vec::new();
        for _ in 0..100 {
            got.push(message(next_json(client).await));
        }
        assert!(
            got.windows(2).all(|w| w[0].timestamp < w[1].timestamp),
            "{got:?}"
        );
        seen.push(got);
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]));
    // And all of them are stored: none overwrote another.
    let (_, before) = join(addr, "race", "late").await;
    let history: Vec<ChatMessage> = before
        .into_iter()
        .filter(|v| v.get("message").is_some())
        .map(message)
        .collect();
    assert_eq!(history, seen[0]);
    server.stop().await;
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_hibernating_room_keeps_its_sockets_names_and_order() {
    let rt = Runtime::builder()
        .in_memory()
        .idle_timeout(Duration::from_millis(50))
        .open()
        .unwrap();
    let server = serve(&rt).await;
    let addr = server.addr;
    let (mut ann, _) = join(addr, "sleepy", "ann").await;
    let (mut bob, _) = join(addr, "sleepy", "bob").await;
    assert_eq!(next_json(&mut ann).await, json!({ "joined": "bob" }));
    let first = post(&mut ann, "ann", "before").await;
    assert_eq!(message(next_json(&mut bob).await), first);

    let evicted = async {
        while rt.metrics().live_objects > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(TIMEOUT, evicted)
        .await
        .expect("the room hibernates");
    // The keep-alive is answered without waking the room.
    let activations = rt.metrics().activations;
    ann.send(Ws::text("ping")).await.unwrap();
    assert_eq!(next(&mut ann).await, Ws::text("pong"));
    assert_eq!(rt.metrics().activations, activations);

    // Woken by a message: the names are the attachments', the timestamps go on increasing.
    let second = post(&mut bob, "bob", "after").await;
    assert_eq!(message(next_json(&mut ann).await), second);
    assert!(second.timestamp > first.timestamp);
    assert_eq!(rt.metrics().activations, activations + 1);
    drop(bob);
    assert_eq!(next_json(&mut ann).await, json!({ "quit": "bob" }));
    server.stop().await;
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn messages_survive_a_restart_on_fjall() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::builder().data_dir(dir.path()).open().unwrap();
    let server = serve(&rt).await;
    let (mut ann, _) = join(server.addr, "kept", "ann").await;
    let mut sent = Vec::new();
    for text in ["one", "two", "three"] {
        sent.push(post(&mut ann, "ann", text).await);
    }
    let (mut other, _) = join(server.addr, "other", "ann").await;
    let elsewhere = post(&mut other, "ann", "elsewhere").await;
    drop((ann, other));
    server.stop().await;
    rt.shutdown().await.unwrap();

    let rt = Runtime::builder().data_dir(dir.path()).open().unwrap();
    let server = serve(&rt).await;
    let (mut bob, before) = join(server.addr, "kept", "bob").await;
    let history: Vec<ChatMessage> = before.into_iter().map(message).collect();
    assert_eq!(history, sent);
    let four = post(&mut bob, "bob", "four").await;
    assert!(four.timestamp > sent[2].timestamp);
    let (_, before) = join(server.addr, "other", "bob").await;
    assert_eq!(before, [serde_json::to_value(&elsewhere).unwrap()]);
    drop(bob);
    server.stop().await;
    rt.shutdown().await.unwrap();
}

/// The `chat` binary on a free port with `args` (and `--addr`).
async fn start_chat(addr: SocketAddr, args: &[&str]) -> common::Process {
    let addr_s = addr.to_string();
    let mut all = vec!["--addr", &addr_s];
    all.extend_from_slice(args);
    let process = start_example("chat", &all);
    wait_listening(addr).await;
    process
}

#[tokio::test]
async fn the_binary_keeps_messages_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let addr = free_addr();
    let chat = start_chat(addr, &["--data-dir", data]).await;
    let (mut ann, _) = join(addr, "durable", "ann").await;
    let sent = post(&mut ann, "ann", "still here after kill -9?").await;
    // The echo left after the write was durable: kill -9 now.
    drop(chat);
    drop(ann);

    let chat = start_chat(addr, &["--data-dir", data]).await;
    let (mut bob, before) = join(addr, "durable", "bob").await;
    assert_eq!(before, [serde_json::to_value(&sent).unwrap()]);
    let later = post(&mut bob, "bob", "yes").await;
    assert!(later.timestamp > sent.timestamp);

    // SIGTERM: a graceful stop, with a client still connected.
    let status = chat.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    let chat = start_chat(addr, &["--data-dir", data]).await;
    let (_, before) = join(addr, "durable", "cy").await;
    assert_eq!(before.len(), 2, "{before:?}");
    drop(chat);
}

/// On SIGTERM, the runtime's shutdown closes the sockets it holds with 1001 "going away"
/// (clients know to reconnect), rather than dropping the connections.
#[tokio::test]
async fn sigterm_closes_open_websockets_with_going_away() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let chat = start_chat(addr, &["--data-dir", dir.path().to_str().unwrap()]).await;
    let (mut ann, _) = join(addr, "bye", "ann").await;
    let status = chat.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    match tokio::time::timeout(TIMEOUT, ann.next()).await {
        Ok(Some(Ok(Ws::Close(Some(frame))))) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("expected a close frame (1001), got {other:?}"),
    }
}

#[tokio::test]
async fn the_binary_with_a_short_idle_timeout_hibernates_rooms() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let addr = free_addr();
    let _chat = start_chat(addr, &["--data-dir", data, "--idle-timeout", "0.05"]).await;
    let (mut ann, _) = join(addr, "nap", "ann").await;
    post(&mut ann, "ann", "one").await;
    // The room leaves memory: `durable_evictions_total` counts it.
    let start = Instant::now();
    loop {
        let reply = send(addr, "GET", "/metrics").await;
        let evictions = reply
            .body()
            .lines()
            .find_map(|l| l.strip_prefix("durable_evictions_total "))
            .and_then(|v| v.parse::<u64>().ok());
        if evictions.unwrap_or(0) > 0 {
            break;
        }
        assert!(start.elapsed() < TIMEOUT, "never evicted: {}", reply.body());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    post(&mut ann, "ann", "two").await;
}

/// A front end (`--connect`) holds its clients' sockets for the rooms in the object server:
/// clients on either process share a room.
#[tokio::test]
async fn a_front_end_chats_through_an_object_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (objects, server_http, front_http) = (free_addr(), free_addr(), free_addr());
    let objects_s = objects.to_string();
    let _server = start_chat(
        server_http,
        &[
            "--data-dir",
            data,
            "--listen",
            &objects_s,
            "--secret",
            "s3cret",
        ],
    )
    .await;
    let _front = start_chat(front_http, &["--connect", &objects_s, "--secret", "s3cret"]).await;

    // One client on each: the same room.
    let (mut ann, _) = join(front_http, "split", "ann").await;
    let (mut bob, before) = join(server_http, "split", "bob").await;
    assert_eq!(before, [json!({ "joined": "ann" })]);
    assert_eq!(next_json(&mut ann).await, json!({ "joined": "bob" }));
    let hi = post(&mut ann, "ann", "from the front end").await;
    assert_eq!(message(next_json(&mut bob).await), hi);
    let hey = post(&mut bob, "bob", "from the object server").await;
    assert_eq!(message(next_json(&mut ann).await), hey);
    let (_, before) = join(front_http, "split", "cy").await;
    assert_eq!(before.len(), 4, "{before:?}");
}
