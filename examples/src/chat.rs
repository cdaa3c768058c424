//! The chat of Cloudflare's workers-chat-demo, on `durable`: one [`ChatRoom`] object per room,
//! its WebSockets held with hibernation, its messages in the object's storage.
//!
//! [`chat_app`] serves:
//!
//! | request                              | answer                                            |
//! |--------------------------------------|---------------------------------------------------|
//! | `GET /`, `GET /?room=R&name=N`       | the chat page ([`PAGE`]; with both, it joins R as N) |
//! | `GET /api/room/R/websocket` (upgrade) | the room's WebSocket, from the [`ChatRoom`] named R |
//! | the same without an upgrade          | 426 `Expected WebSocket upgrade`                  |
//! | a room name over 32 characters       | 400 `Room name too long`                          |
//! | anything else                        | 404 `Not found`                                   |
//!
//! The protocol, over the WebSocket (each message one JSON object, as text):
//!
//! 1. The client sends `{"name":N}` first (at most [`MAX_NAME`] characters: a longer one is
//!    answered `{"error":"Name too long."}` and the socket is closed with
//!    [`CLOSE_NAME_TOO_LONG`]).
//! 2. The room answers `{"joined":P}` for each person already there, the room's last
//!    [`HISTORY`] messages oldest first (`{"name":..,"message":..,"timestamp":..}`), then
//!    `{"ready":true}`; then it tells everyone, the newcomer included, `{"joined":N}`.
//! 3. The client sends `{"message":M}` (at most [`MAX_MESSAGE`] characters, or
//!    `{"error":"Message too long."}`); the room stores it and sends everyone
//!    `{"name":N,"message":M,"timestamp":T}`, T in milliseconds since the epoch and
//!    strictly increasing per room (`max(now, last + 1)`), so it also orders the messages.
//! 4. When a socket closes, the others get `{"quit":N}`.
//!
//! A frame that is binary, not JSON, or not an object is answered `{"error":..}`; the socket
//! stays open and the room goes on. Lengths are counted as JavaScript's `length` does (UTF-16
//! code units), as in the demo and the page's `maxlength`.
//!
//! The text `ping` is answered `pong` by the runtime holding the socket, without waking the
//! room (a keep-alive for clients behind proxies that drop quiet connections).

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use durable_runtime::http::{Request as ObjectRequest, Response as ObjectResponse};
use durable_runtime::websocket::{Message, WebSocket};
use durable_runtime::{durable_object, Context, ListOptions, Namespace, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::TEXT_PLAIN;

/// The chat page: `examples/chat/index.html`.
pub const PAGE: &str = include_str!("../chat/index.html");

/// The longest room name, in UTF-16 code units.
pub const MAX_ROOM_NAME: usize = 32;

/// The longest user name, in UTF-16 code units.
pub const MAX_NAME: usize = 32;

/// The longest message, in UTF-16 code units.
pub const MAX_MESSAGE: usize = 256;

/// How many of its last messages a room sends a newcomer.
pub const HISTORY: usize = 100;

/// The close code for a name that is too long. The demo closes with 1009 (message too big);
/// an object closes with 1000 or a code of 3000–4999, so this is 1009's private-use twin.
pub const CLOSE_NAME_TOO_LONG: u16 = 4009;

/// The storage key prefix of the messages: `message:` and the timestamp in 20 digits, so
/// that keys sort by time.
const MESSAGE_PREFIX: &str = "message:";

/// A chat message, as stored and as sent (`{"name":..,"message":..,"timestamp":..}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who sent it.
    pub name: String,
    /// What they said.
    pub message: String,
    /// When the room took it: milliseconds since the epoch, strictly increasing per room.
    pub timestamp: u64,
}

/// What a room keeps with each socket (its attachment): the name, once the client sent it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Session {
    name: Option<String>,
}

/// One chat room. Each client is a WebSocket, held by the runtime while the room hibernates;
/// the messages are in storage under keys that sort by time.
#[durable_object]
pub struct ChatRoom {
    ctx: Context,
    /// The timestamp of the newest message (0 for none), read from storage at activation.
    last_timestamp: u64,
}

#[durable_object]
impl ChatRoom {
    /// Activates the room (its messages stay in storage; its sockets with the runtime).
    pub fn new(ctx: Context) -> Self {
        ctx.set_websocket_auto_response("ping", "pong");
        ChatRoom {
            ctx,
            last_timestamp: 0,
        }
    }

    /// Reads the newest message's timestamp, so that timestamps keep increasing across
    /// hibernation and restarts.
    pub async fn on_activate(&mut self) -> Result<()> {
        let newest: Vec<(String, ChatMessage)> = self.ctx.storage().list(
            ListOptions::default()
                .prefix(MESSAGE_PREFIX)
                .reverse(true)
                .limit(1),
        )?;
        self.last_timestamp = newest.first().map_or(0, |(_, m)| m.timestamp);
        Ok(())
    }

    /// Accepts a WebSocket upgrade (426 for anything else). The client is nameless until
    /// its first message.
    pub async fn fetch(&mut self, request: ObjectRequest) -> Result<ObjectResponse> {
        let upgrade = request
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        if !upgrade {
            let mut response = ObjectResponse::new("Expected WebSocket upgrade".into());
            *response.status_mut() = StatusCode::UPGRADE_REQUIRED;
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN));
            return Ok(response);
        }
        let (response, ws) = self.ctx.accept_websocket(&request, &[])?;
        ws.serialize_attachment(&Session::default())?;
        Ok(response)
    }

    /// A client's frame: its name first, then messages.
    pub async fn websocket_message(&mut self, ws: WebSocket, message: Message) -> Result<()> {
        let Message::Text(text) = message else {
            return send_error(&ws, "Binary messages are not supported; send JSON text.");
        };
        let Ok(data) = serde_json::from_str::<Value>(&text) else {
            return send_error(&ws, "Expected JSON.");
        };
        let Value::Object(data) = data else {
            return send_error(&ws, "Expected a JSON object.");
        };
        let session: Session = ws.deserialize_attachment()?.unwrap_or_default();
        match session.name {
            None => self.join(&ws, &data),
            Some(name) => self.post(&ws, name, &data),
        }
    }

    /// A client left: the others are told, if it had a name.
    pub async fn websocket_close(
        &mut self,
        ws: WebSocket,
        _code: u16,
        _reason: String,
    ) -> Result<()> {
        let session: Session = ws.deserialize_attachment()?.unwrap_or_default();
        if let Some(name) = session.name {
            let quit = json!({ "quit": name }).to_string();
            for (peer, _) in self.named_sockets() {
                if peer != ws {
                    send(&peer, &quit)?;
                }
            }
        }
        Ok(())
    }
}

impl ChatRoom {
    /// `{"name":N}`: the roster, the history and `ready` for the newcomer, then `joined` for
    /// everyone.
    fn join(&mut self, ws: &WebSocket, data: &Map<String, Value>) -> Result<()> {
        let name = match data.get("name") {
            Some(Value::String(name)) if !name.is_empty() => name.clone(),
            _ => return send_error(ws, "Expected {\"name\": ...} first."),
        };
        if js_length(&name) > MAX_NAME {
            send_error(ws, "Name too long.")?;
            if !ws.is_closed() {
                ws.close(CLOSE_NAME_TOO_LONG, "Name too long.")?;
            }
            return Ok(());
        }
        let mut present: Vec<String> = self
            .named_sockets()
            .into_iter()
            .filter(|(peer, _)| peer != ws)
            .map(|(_, name)| name)
            .collect();
        present.sort();
        for other in present {
            send(ws, &json!({ "joined": other }).to_string())?;
        }
        let mut history: Vec<(String, ChatMessage)> = self.ctx.storage().list(
            ListOptions::default()
                .prefix(MESSAGE_PREFIX)
                .reverse(true)
                .limit(HISTORY),
        )?;
        history.reverse();
        for (_, message) in history {
            send(ws, &to_json(&message))?;
        }
        ws.serialize_attachment(&Session {
            name: Some(name.clone()),
        })?;
        send(ws, &json!({ "ready": true }).to_string())?;
        let joined = json!({ "joined": name }).to_string();
        for (peer, _) in self.named_sockets() {
            send(&peer, &joined)?;
        }
        Ok(())
    }

    /// `{"message":M}` from `name`: stored, then sent to everyone.
    fn post(&mut self, ws: &WebSocket, name: String, data: &Map<String, Value>) -> Result<()> {
        let Some(Value::String(message)) = data.get("message") else {
            return send_error(ws, "Expected {\"message\": ...}.");
        };
        if js_length(message) > MAX_MESSAGE {
            return send_error(ws, "Message too long.");
        }
        let timestamp = now_ms().max(self.last_timestamp + 1);
        let message = ChatMessage {
            name,
            message: message.clone(),
            timestamp,
        };
        self.ctx
            .storage_mut()
            .put(&format!("{MESSAGE_PREFIX}{timestamp:020}"), &message)?;
        self.last_timestamp = timestamp;
        let text = to_json(&message);
        for (peer, _) in self.named_sockets() {
            send(&peer, &text)?;
        }
        Ok(())
    }

    /// The open sockets that have sent their name, with it.
    fn named_sockets(&self) -> Vec<(WebSocket, String)> {
        self.ctx
            .websockets(None)
            .into_iter()
            .filter_map(|ws| {
                let session: Session = ws.deserialize_attachment().ok()??;
                Some((ws.clone(), session.name?))
            })
            .collect()
    }
}

/// Sends `text`; a socket closed meanwhile (its client left) is skipped.
fn send(ws: &WebSocket, text: &str) -> Result<()> {
    match ws.send(text) {
        Err(_) if ws.is_closed() => Ok(()),
        sent => sent,
    }
}

fn send_error(ws: &WebSocket, error: &str) -> Result<()> {
    send(ws, &json!({ "error": error }).to_string())
}

fn to_json(message: &ChatMessage) -> String {
    serde_json::to_string(message).expect("a message encodes as JSON")
}

/// A string's length as JavaScript counts it: UTF-16 code units.
fn js_length(text: &str) -> usize {
    text.encode_utf16().count()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The chat service: the page at `/`, each room's WebSocket at `/api/room/{room}/websocket`.
/// Add [`metrics_app`](crate::metrics_app) for `/metrics`.
pub fn chat_app(rooms: Namespace<ChatRoom>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/api/room/{room}/websocket", any(websocket))
        .fallback(|| async { text(StatusCode::NOT_FOUND, "Not found") })
        .with_state(rooms)
}

/// `/api/room/{room}/websocket`: to the room's object, which takes the upgrade.
async fn websocket(
    State(rooms): State<Namespace<ChatRoom>>,
    Path(room): Path<String>,
    request: Request,
) -> Response {
    if js_length(&room) > MAX_ROOM_NAME {
        return text(StatusCode::BAD_REQUEST, "Room name too long");
    }
    durable_runtime::axum::forward(&rooms.get_by_name(&room), request).await
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN))],
        body,
    )
        .into_response()
}
