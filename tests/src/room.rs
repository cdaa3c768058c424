//! `Room`: the WebSocket object of the WebSocket tests, and its router. Each socket joins
//! with a name (its attachment) and tags from the query string; text messages are commands
//! (`all:..` broadcasts, `tag:T:..` reaches tag T, `who`, `close`, `rename`, `panic`), and
//! anything else is counted in storage and echoed with its number.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::response::Response as AxumResponse;
use axum::routing::any;
use durable_runtime::http::{Request as ObjectRequest, Response};
use durable_runtime::websocket::{Message, WebSocket};
use durable_runtime::{durable_object, Context, Namespace, Result};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A room of WebSockets. See the module documentation.
#[durable_object]
pub struct Room {
    ctx: Context,
}

#[durable_object]
impl Room {
    pub fn new(ctx: Context) -> Self {
        ctx.set_websocket_auto_response("ping", "pong");
        Room { ctx }
    }

    pub async fn fetch(&mut self, request: ObjectRequest) -> Result<Response> {
        let query = request.uri().query().unwrap_or("").to_owned();
        let mut name = String::new();
        let mut tags = Vec::new();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("name", v)) => name = v.to_owned(),
                Some(("tag", v)) => tags.push(v.to_owned()),
                _ => {}
            }
        }
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        let (response, ws) = self.ctx.accept_websocket(&request, &tags)?;
        ws.serialize_attachment(&name)?;
        ws.send(format!("welcome {name}"))?;
        Ok(response)
    }

    pub async fn websocket_message(&mut self, ws: WebSocket, message: Message) -> Result<()> {
        let name: String = ws.deserialize_attachment()?.unwrap_or_default();
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(bytes) => {
                ws.send(Message::Binary(bytes.into_iter().rev().collect()))?;
                return Ok(());
            }
        };
        if let Some(rest) = text.strip_prefix("all:") {
            for peer in self.ctx.websockets(None) {
                peer.send(format!("{name}: {rest}"))?;
            }
        } else if let Some(rest) = text.strip_prefix("tag:") {
            let (tag, said) = rest.split_once(':').unwrap_or((rest, ""));
            for peer in self.ctx.websockets(Some(tag)) {
                peer.send(format!("{name} to {tag}: {said}"))?;
            }
        } else if text == "who" {
            ws.send(format!("{name} {:?}", ws.tags()))?;
        } else if text == "close" {
            ws.close(4000, "bye")?;
        } else if text == "rename" {
            ws.serialize_attachment(&format!("{name}!"))?;
        } else if text == "panic" {
            panic!("asked to");
        } else {
            // Counted in storage: order and durability show in the replies.
            let seq: u64 = self.ctx.storage().get("seq")?.unwrap_or(0) + 1;
            self.ctx.storage_mut().put("seq", &seq)?;
            ws.send(format!("{seq} {text}"))?;
        }
        Ok(())
    }

    pub async fn websocket_close(
        &mut self,
        ws: WebSocket,
        code: u16,
        reason: String,
    ) -> Result<()> {
        let name: String = ws.deserialize_attachment()?.unwrap_or_default();
        let mut closes: Vec<(String, u16, String)> =
            self.ctx.storage().get("closes")?.unwrap_or_default();
        closes.push((name.clone(), code, reason));
        self.ctx.storage_mut().put("closes", &closes)?;
        for peer in self.ctx.websockets(None) {
            peer.send(format!("{name} left"))?;
        }
        Ok(())
    }

    pub async fn closes(&self) -> Result<Vec<(String, u16, String)>> {
        Ok(self.ctx.storage().get("closes")?.unwrap_or_default())
    }

    pub async fn open_sockets(&self) -> Result<usize> {
        Ok(self.ctx.websockets(None).len())
    }

    /// The ID of the cluster node running the room (`?` outside the cluster tests).
    pub async fn node(&self) -> Result<String> {
        Ok(self
            .ctx
            .env::<crate::cluster::NodeInfo>()
            .map_or_else(|| "?".to_owned(), |info| info.id.clone()))
    }

    /// Accepting outside an upgrade is an error.
    pub async fn accept_plain(&self) -> Result<String> {
        let request = ObjectRequest::get("/").body(Default::default())?;
        match self.ctx.accept_websocket(&request, &[]) {
            Ok(_) => Ok("accepted".into()),
            Err(e) => Ok(e.to_string()),
        }
    }
}

async fn route(
    State(rooms): State<Namespace<Room>>,
    Path(room): Path<String>,
    request: Request,
) -> AxumResponse {
    durable_runtime::axum::forward(&rooms.get_by_name(&room), request).await
}

/// `/room/{room}`: every request (WebSocket upgrades included) goes to that room's object.
pub fn app(rooms: Namespace<Room>) -> axum::Router {
    axum::Router::new()
        .route("/room/{room}", any(route))
        .with_state(rooms)
}

// Clients.

/// A WebSocket client of the tests.
pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub async fn serve(rooms: Namespace<Room>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app(rooms)).await.unwrap() });
    addr
}

pub async fn join(addr: SocketAddr, room: &str, query: &str) -> Client {
    let url = format!("ws://{addr}/room/{room}?{query}");
    let (mut client, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .expect("connect in time")
    .expect("the upgrade");
    let welcome = next_text(&mut client).await;
    assert!(welcome.starts_with("welcome"), "{welcome}");
    client
}

pub async fn next(client: &mut Client) -> Ws {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), client.next())
            .await
            .expect("a message in time")
            .expect("the stream is open")
            .expect("a valid frame");
        if !matches!(message, Ws::Ping(_) | Ws::Pong(_)) {
            return message;
        }
    }
}

pub async fn next_text(client: &mut Client) -> String {
    match next(client).await {
        Ws::Text(text) => text.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

pub async fn say(client: &mut Client, text: &str) {
    client.send(Ws::text(text)).await.unwrap();
}

/// Nothing arrives for a while.
pub async fn quiet(client: &mut Client) {
    if let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_millis(200), client.next()).await
    {
        panic!("expected nothing, got {message:?}");
    }
}
