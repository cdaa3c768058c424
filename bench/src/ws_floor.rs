//! `--ws-floor-server ADDR`: the chat protocol of `websocket.rs` served from memory by a
//! minimal tokio-tungstenite server (one room for every path, nothing stored on disk), run as
//! a child process by `durable-bench --ws --floor`. It is not a contestant: it shows the
//! most that the load generator can measure on this machine, the client's own cost
//! included.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

#[derive(Default)]
struct Room {
    next_id: u64,
    /// Sockets that have joined: their name and their outgoing queue.
    members: HashMap<u64, (String, mpsc::UnboundedSender<Utf8Bytes>)>,
    /// The last 100 messages.
    backlog: VecDeque<Utf8Bytes>,
    last_timestamp: u64,
}

impl Room {
    fn broadcast(&self, text: &Utf8Bytes, skip: Option<u64>) {
        for (id, (_, tx)) in &self.members {
            if Some(*id) != skip {
                let _ = tx.send(text.clone());
            }
        }
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The string value of `"key":"..."` in a JSON object sent by the benchmark (no escapes).
fn string_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let pattern = format!("\"{key}\":\"");
    let rest = &text[text.find(&pattern)? + pattern.len()..];
    Some(&rest[..rest.find('"')?])
}

async fn serve(stream: TcpStream, room: Arc<Mutex<Room>>) {
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Utf8Bytes>();
    // The writer: everything queued so far, then one flush.
    let writer = tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            if sink.feed(Message::Text(text)).await.is_err() {
                return;
            }
            while let Ok(text) = rx.try_recv() {
                if sink.feed(Message::Text(text)).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let mut me: Option<(u64, String)> = None;
    while let Some(Ok(msg)) = stream.next().await {
        let Message::Text(text) = msg else { continue };
        let mut room = room.lock().unwrap();
        match &me {
            None => {
                let name = string_field(&text, "name")
                    .unwrap_or("anonymous")
                    .to_owned();
                if name.chars().count() > 32 {
                    let _ = tx.send(r#"{"error":"Name too long."}"#.into());
                    break;
                }
                for m in &room.backlog {
                    let _ = tx.send(m.clone());
                }
                let _ = tx.send(r#"{"ready":true}"#.into());
                let id = room.next_id;
                room.next_id += 1;
                room.broadcast(
                    &format!("{{\"joined\":{}}}", json_string(&name)).into(),
                    None,
                );
                room.members.insert(id, (name.clone(), tx.clone()));
                me = Some((id, name));
            }
            Some((_, name)) => {
                let message = string_field(&text, "message").unwrap_or("");
                if message.chars().count() > 256 {
                    let _ = tx.send(r#"{"error":"Message too long."}"#.into());
                    continue;
                }
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as u64;
                room.last_timestamp = now.max(room.last_timestamp + 1);
                let text: Utf8Bytes = format!(
                    "{{\"name\":{},\"message\":{},\"timestamp\":{}}}",
                    json_string(name),
                    json_string(message),
                    room.last_timestamp
                )
                .into();
                if room.backlog.len() == 100 {
                    room.backlog.pop_front();
                }
                room.backlog.push_back(text.clone());
                room.broadcast(&text, None);
            }
        }
    }
    if let Some((id, name)) = me {
        let mut room = room.lock().unwrap();
        room.members.remove(&id);
        room.broadcast(
            &format!("{{\"quit\":{}}}", json_string(&name)).into(),
            Some(id),
        );
    }
    drop(tx);
    let _ = writer.await;
}

pub async fn run(addr: &str) {
    let listener = TcpListener::bind(addr).await.unwrap();
    let room = Arc::new(Mutex::new(Room::default()));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(serve(stream, room.clone()));
    }
}
