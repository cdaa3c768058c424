//! WebSockets held for objects, with hibernation (Cloudflare's Hibernation API, snake_cased).
//!
//! An object accepts a WebSocket in its `fetch`, from an upgrade request that
//! `durable_runtime::axum::forward` (feature `axum`) sent it, with
//! [`Context::accept_websocket`](crate::Context::accept_websocket). The client's connection
//! stays with the runtime that took the HTTP request; the object gets the socket's events as
//! calls of its handlers, exclusive and in order per socket:
//!
//! - `pub async fn websocket_message(&mut self, ws: WebSocket, message: Message) -> Result<()>`
//! - `pub async fn websocket_close(&mut self, ws: WebSocket, code: u16, reason: String) -> Result<()>`
//!
//! Neither is a call of the stub. An object whose sockets are idle is evicted like any idle
//! object (it *hibernates*); the sockets stay open, and the next message activates it again
//! with every socket's tags and attachment as they were.
//!
//! What an object sends leaves once the writes of the step that sent it are durable, as a
//! reply does: a client never sees a message that a crash could take back.
//!
//! ```
//! use durable_runtime::http::{Request, Response};
//! use durable_runtime::websocket::{Message, WebSocket};
//! use durable_runtime::{durable_object, Context, Result};
//!
//! #[durable_object]
//! pub struct Echo { ctx: Context }
//!
//! #[durable_object]
//! impl Echo {
//!     pub fn new(ctx: Context) -> Self { Echo { ctx } }
//!
//!     pub async fn fetch(&mut self, request: Request) -> Result<Response> {
//!         let (response, ws) = self.ctx.accept_websocket(&request, &["echo"])?;
//!         ws.serialize_attachment(&"a visitor")?;
//!         Ok(response)
//!     }
//!
//!     pub async fn websocket_message(&mut self, ws: WebSocket, message: Message) -> Result<()> {
//!         let who: String = ws.deserialize_attachment()?.unwrap_or_default();
//!         for peer in self.ctx.websockets(Some("echo")) {
//!             peer.send(format!("{who} said {message:?}"))?;
//!         }
//!         Ok(())
//!     }
//!
//!     pub async fn websocket_close(&mut self, ws: WebSocket, code: u16, reason: String) -> Result<()> {
//!         let _ = (ws, code, reason);
//!         Ok(())
//!     }
//! }
//! ```

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sockets::{ObjectSockets, Outgoing, SocketEntry};

/// The most WebSockets one object holds open at once (Cloudflare's limit is 32,768).
pub const MAX_SOCKETS_PER_OBJECT: usize = 32_768;

/// The largest message, received or sent: 1 MiB. A client sending more is closed with code
/// 1009 (message too big); an object sending more gets an error.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// The most tags one socket has.
pub const MAX_TAGS: usize = 10;

/// The longest tag, in bytes.
pub const MAX_TAG_BYTES: usize = 256;

/// The largest attachment, once serialized (postcard), in bytes.
pub const MAX_ATTACHMENT_BYTES: usize = 2048;

/// The longest close reason, in bytes (the protocol's limit).
pub const MAX_CLOSE_REASON_BYTES: usize = 123;

/// A WebSocket message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Message {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl Message {
    /// The payload's length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Message::Text(text) => text.len(),
            Message::Binary(bytes) => bytes.len(),
        }
    }

    /// `true` for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The text of a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(text) => Some(text),
            Message::Binary(_) => None,
        }
    }
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        Message::Text(text)
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Self {
        Message::Text(text.to_owned())
    }
}

impl From<Vec<u8>> for Message {
    fn from(bytes: Vec<u8>) -> Self {
        Message::Binary(bytes)
    }
}

/// One of an object's WebSockets: from [`Context::websockets`](crate::Context::websockets),
/// [`Context::accept_websocket`](crate::Context::accept_websocket), or the argument of a
/// handler. Cheap to clone; it stays usable while the object is active (a socket closed
/// since then fails to send).
#[derive(Clone)]
pub struct WebSocket {
    entry: Arc<SocketEntry>,
    sockets: Arc<ObjectSockets>,
}

impl std::fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("id", &self.entry.id.to_string())
            .field("tags", &self.entry.tags)
            .finish()
    }
}

impl PartialEq for WebSocket {
    fn eq(&self, other: &Self) -> bool {
        self.entry.id == other.entry.id
    }
}

impl Eq for WebSocket {}

impl WebSocket {
    pub(crate) fn new(entry: Arc<SocketEntry>, sockets: Arc<ObjectSockets>) -> Self {
        WebSocket { entry, sockets }
    }

    /// Sends a message. It leaves once the writes of the running call are durable.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if the socket is closed, or the message is larger than
    /// [`MAX_MESSAGE_BYTES`].
    pub fn send(&self, message: impl Into<Message>) -> Result<()> {
        let message = message.into();
        if message.len() > MAX_MESSAGE_BYTES {
            return Err(Error::invalid_argument(format!(
                "a WebSocket message of {} bytes; the limit is {MAX_MESSAGE_BYTES}",
                message.len()
            )));
        }
        self.sockets.push(&self.entry, Outgoing::Send(message))
    }

    /// Closes the socket with `code` (1000, or 3000–4999) and `reason`. The object's
    /// `websocket_close` is not called for a close the object made itself.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for another code, a reason longer than [`MAX_CLOSE_REASON_BYTES`],
    /// or a socket closed already.
    pub fn close(&self, code: u16, reason: &str) -> Result<()> {
        if code != 1000 && !(3000..=4999).contains(&code) {
            return Err(Error::invalid_argument(format!(
                "WebSocket close code {code}: an object closes with 1000 or a code in 3000..=4999"
            )));
        }
        if reason.len() > MAX_CLOSE_REASON_BYTES {
            return Err(Error::invalid_argument(format!(
                "a close reason of {} bytes; the limit is {MAX_CLOSE_REASON_BYTES}",
                reason.len()
            )));
        }
        self.sockets.push(
            &self.entry,
            Outgoing::Close {
                code,
                reason: reason.to_owned(),
            },
        )
    }

    /// The tags the socket was accepted with.
    pub fn tags(&self) -> &[String] {
        &self.entry.tags
    }

    /// `true` once the socket is closed (by its client or by the object).
    pub fn is_closed(&self) -> bool {
        self.entry.closed.load(Ordering::Acquire)
    }

    /// Keeps `value` with the socket (postcard-encoded, at most [`MAX_ATTACHMENT_BYTES`]),
    /// across hibernation: an object activated again reads it back with
    /// [`deserialize_attachment`](Self::deserialize_attachment).
    ///
    /// # Errors
    ///
    /// `ValueTooLarge` beyond the limit, `Codec` if `value` does not encode,
    /// `InvalidArgument` if the socket is closed.
    pub fn serialize_attachment<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        let bytes = postcard::to_stdvec(value)
            .map_err(|e| Error::codec("encode", "the WebSocket attachment", e))?;
        if bytes.len() > MAX_ATTACHMENT_BYTES {
            return Err(Error::value_too_large(
                "the WebSocket attachment",
                bytes.len(),
                MAX_ATTACHMENT_BYTES,
            ));
        }
        let bytes: Arc<[u8]> = bytes.into();
        self.sockets
            .push(&self.entry, Outgoing::Attachment(Some(bytes.clone())))?;
        *self
            .entry
            .attachment
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(bytes);
        Ok(())
    }

    /// The value kept with [`serialize_attachment`](Self::serialize_attachment), or `None`.
    ///
    /// # Errors
    ///
    /// `Codec` if it does not decode as a `T`.
    pub fn deserialize_attachment<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        match self.entry.attachment() {
            None => Ok(None),
            Some(bytes) => postcard::from_bytes(&bytes)
                .map(Some)
                .map_err(|e| Error::codec("decode", "the WebSocket attachment", e)),
        }
    }
}

/// Checks an accept's tags: at most [`MAX_TAGS`], each 1..=[`MAX_TAG_BYTES`] bytes.
pub(crate) fn check_tags(tags: &[&str]) -> Result<Arc<[String]>> {
    if tags.len() > MAX_TAGS {
        return Err(Error::invalid_argument(format!(
            "{} WebSocket tags; the limit is {MAX_TAGS}",
            tags.len()
        )));
    }
    for tag in tags {
        if tag.is_empty() || tag.len() > MAX_TAG_BYTES {
            return Err(Error::invalid_argument(format!(
                "a WebSocket tag of {} bytes; tags are 1 to {MAX_TAG_BYTES} bytes",
                tag.len()
            )));
        }
    }
    Ok(tags.iter().map(|t| (*t).to_owned()).collect())
}
