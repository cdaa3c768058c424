//! Serving objects over HTTP with [axum](https://docs.rs/axum) (feature `axum`): one line
//! forwards a request to an object's `fetch`.
//!
//! ```
//! use axum::extract::{Path, Request, State};
//! use axum::response::Response;
//! use axum::routing::any;
//! use durable_runtime::http::{Request as ObjectRequest, Response as ObjectResponse};
//! use durable_runtime::{durable_object, Context, Namespace, Result, Runtime};
//!
//! #[durable_object]
//! pub struct Page { ctx: Context }
//!
//! #[durable_object]
//! impl Page {
//!     pub fn new(ctx: Context) -> Self { Page { ctx } }
//!
//!     pub async fn fetch(&mut self, request: ObjectRequest) -> Result<ObjectResponse> {
//!         let hits: u64 = self.ctx.storage().get("hits")?.unwrap_or(0) + 1;
//!         self.ctx.storage_mut().put("hits", &hits)?;
//!         Ok(ObjectResponse::new(format!("{} seen {hits} times", request.uri().path()).into()))
//!     }
//! }
//!
//! async fn page(State(pages): State<Namespace<Page>>, Path(name): Path<String>, request: Request) -> Response {
//!     durable_runtime::axum::forward(&pages.get_by_name(&name), request).await
//! }
//!
//! # #[tokio::main]
//! # async fn main() {
//! let rt = Runtime::in_memory();
//! let app: axum::Router = axum::Router::new()
//!     .route("/pages/{name}", any(page))
//!     .with_state(rt.namespace::<Page>());
//! # let _ = app;
//! # }
//! ```

use std::sync::Arc;

use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};

use crate::error::{Error, ErrorKind};
use crate::held_socket::HeldSocket;
use crate::http::{Fetch, HeaderMap, Request as ObjectRequest, StatusCode};
use crate::sockets::{SocketEvent, SocketHolder, SocketId, SocketOffer};
use crate::stub::ObjectStub;
use crate::websocket::MAX_MESSAGE_BYTES;

/// The largest request body [`forward`] reads: 16 MiB (the default frame bound of a
/// connection between runtimes). A larger body is answered 413.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The read buffer of a held WebSocket, in bytes: small, since most sockets are idle most of
/// the time (it grows for a large message).
const SOCKET_READ_BUFFER: usize = 128;

/// How many bytes of frames a held WebSocket gathers before writing them: a burst is written
/// in pieces of this size, so the write buffer (which keeps its capacity) stays small.
const SOCKET_WRITE_BATCH: usize = 8 * 1024;

/// Sends `request` to the object behind `stub` (its `fetch` method) and answers with its
/// response: in this process, or across the connection to the object's runtime.
///
/// A WebSocket upgrade request is offered to the object: if its `fetch` accepts it
/// ([`Context::accept_websocket`](crate::Context::accept_websocket)) and returns the `101`
/// response, the connection is upgraded and held here, its messages going to the object's
/// `websocket_message` and its close to `websocket_close`. Messages over
/// [`MAX_MESSAGE_BYTES`] close the socket with 1009.
///
/// The body is read whole first (at most [`MAX_BODY_BYTES`]; more is answered 413). When the
/// call fails, the error is logged (with `tracing`) and the client gets a status without
/// the error's text: 503 (with `Retry-After: 1`) when retrying may succeed (overloaded,
/// disconnected, shutting down), 504 for a timeout, 500 otherwise.
///
/// Dropping the future stops waiting: a request already sent still runs and commits.
pub async fn forward<S>(stub: &S, request: axum::extract::Request) -> Response
where
    S: ObjectStub,
    S::Object: Fetch,
{
    let (mut parts, body) = request.into_parts();
    let upgrade = if is_websocket_upgrade(&parts.headers) {
        match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(upgrade) => Some(upgrade),
            Err(rejection) => return rejection.into_response(),
        }
    } else {
        None
    };
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large or unreadable\n",
            )
                .into_response()
        }
    };
    let mut request = ObjectRequest::new(body);
    *request.method_mut() = parts.method;
    *request.uri_mut() = parts.uri;
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers;
    let Some(upgrade) = upgrade else {
        return match stub.fetch(request).await {
            Ok(response) => response.map(Body::from),
            Err(err) => error_response(stub, &err),
        };
    };

    let held = Arc::new(HeldSocket::new(SocketId::next()));
    let holder: Arc<dyn SocketHolder> = held.clone();
    request
        .extensions_mut()
        .insert(SocketOffer::new(held.id, holder.clone()));
    let target = stub.stub().socket_target();
    let held_sockets = stub.stub().held_sockets();
    let registration = stub.stub().hold_socket(held.id, holder);
    let result = stub.fetch(request).await;
    // The acceptance, if any, was released before the reply.
    let accepted = held.is_accepted();
    match result {
        Ok(response) if response.status() == StatusCode::SWITCHING_PROTOCOLS && accepted => {
            let failed = target.clone();
            let id = held.id;
            upgrade
                .max_message_size(MAX_MESSAGE_BYTES)
                .max_frame_size(MAX_MESSAGE_BYTES)
                .read_buffer_size(SOCKET_READ_BUFFER)
                .write_buffer_size(SOCKET_WRITE_BATCH)
                .on_failed_upgrade(move |_| {
                    tokio::spawn(async move {
                        let _ = failed.event(id, gone()).await;
                    });
                })
                .on_upgrade(move |socket| {
                    // A task of its own: axum's upgrade task (its future holds the upgrade's
                    // state besides ours) ends at once, and an idle socket costs only this.
                    tokio::spawn(held.run(socket, target, &held_sockets, registration));
                    std::future::ready(())
                })
        }
        other => {
            if accepted {
                // Accepted, then not upgraded: the object must not wait for this socket.
                let id = held.id;
                tokio::spawn(async move {
                    let _ = target.event(id, gone()).await;
                });
            }
            match other {
                Ok(response) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
                    tracing::warn!(id = %stub.id(), "an object answered 101 without accepting the WebSocket");
                    StatusCode::INTERNAL_SERVER_ERROR.into_response()
                }
                Ok(response) => response.map(Body::from),
                Err(err) => error_response(stub, &err),
            }
        }
    }
}

/// The close an object sees for a socket that never opened, or whose client vanished.
fn gone() -> SocketEvent {
    SocketEvent::Close {
        code: 1006,
        reason: String::new(),
    }
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn error_response<S: ObjectStub>(stub: &S, err: &Error) -> Response {
    tracing::warn!(id = %stub.id(), error = %err, "forwarding a request to an object failed");
    let status = if err.kind() == ErrorKind::Timeout {
        StatusCode::GATEWAY_TIMEOUT
    } else if err.is_retryable() || err.is_overloaded() || err.kind() == ErrorKind::Closed {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    let mut response = (status, status.canonical_reason().unwrap_or("error")).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert("retry-after", crate::http::HeaderValue::from_static("1"));
    }
    response
}
