//! The context an object is built with: its ID, its storage, and the way out to other objects.
//!
//! A [`Context`] does not hold its runtime, only a [`Directory`]: the one thing an object needs
//! from the runtime besides its own storage, the namespaces of the classes it calls (and the
//! runtime's env). This module depends on neither the runtime nor the namespaces, so the actor
//! loop, which builds contexts, can depend on it without depending on what runs the actors.
//! [`Context::namespace`] is for that reason defined in `namespace.rs`, beside `Namespace`.

use std::any::{Any, TypeId};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::http::{Request, Response, StatusCode};
use crate::id::ObjectId;
use crate::sockets::{AutoResponse, ObjectSockets, SocketOffer};
use crate::storage::{ObjectStore, Storage};
use crate::websocket::{check_tags, WebSocket};

/// What a [`Context`] reaches beyond its own object: its runtime's classes, and the env.
///
/// Implemented by the runtime. Type-erased where classes appear, because classes are built and
/// named by `namespace.rs`, which depends on this module: `Context::namespace` passes the class
/// in and downcasts what comes out.
pub(crate) trait Directory: Send + Sync {
    /// The core of the class whose type ID is `class` (an `Arc<NamespaceCore<U>>` for class
    /// `U`): the runtime's own if it knows the class, else one it opens from `open` (a
    /// `namespace::OpenClass` for `U`), registers, and keeps from now on.
    ///
    /// # Errors
    ///
    /// A `Config` error if another class of the runtime has the same name or wire name, or
    /// if the class's options are invalid.
    fn namespace_any(
        self: Arc<Self>,
        class: TypeId,
        open: &dyn Any,
    ) -> Result<Arc<dyn Any + Send + Sync>>;

    /// The runtime's env ([`RuntimeBuilder::env`](crate::RuntimeBuilder::env)), if it has one.
    fn env(&self) -> Option<&(dyn Any + Send + Sync)>;
}

/// What an object receives in `new(ctx)`: its identity, its storage, and the way to other
/// objects and to the runtime's env.
///
/// `Context` is not `Clone`, and [`storage_mut`](Context::storage_mut) needs `&mut self`: only
/// an exclusive call (`&mut self` on the object) can write, so a shared call can never get a
/// writable handle.
pub struct Context {
    id: ObjectId,
    storage: Storage,
    directory: Arc<dyn Directory>,
    sockets: Arc<ObjectSockets>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub(crate) fn new(
        id: ObjectId,
        store: Arc<ObjectStore>,
        directory: Arc<dyn Directory>,
        sockets: Arc<ObjectSockets>,
    ) -> Self {
        Context {
            id,
            storage: Storage::new(store),
            directory,
            sockets,
        }
    }

    /// The way to the runtime's classes, for [`Context::namespace`].
    pub(crate) fn directory(&self) -> &Arc<dyn Directory> {
        &self.directory
    }

    /// This object's ID (with its name, if it was reached by name).
    pub fn id(&self) -> &ObjectId {
        &self.id
    }

    /// Reads this object's storage.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Writes this object's storage. Needs `&mut self`: only exclusive calls write.
    pub fn storage_mut(&mut self) -> &mut Storage {
        &mut self.storage
    }

    /// The shared state given to [`RuntimeBuilder::env`](crate::RuntimeBuilder::env), if it
    /// is of type `E`.
    pub fn env<E: Any + Send + Sync>(&self) -> Option<&E> {
        self.directory.env()?.downcast_ref()
    }

    /// Accepts the WebSocket an upgrade request asks for, with `tags` to find it by
    /// ([`websockets`](Self::websockets)). Returns the response to return from `fetch`
    /// (`101 Switching Protocols`) and the socket, which can send at once (messages leave
    /// once the call's writes are durable, after the upgrade).
    ///
    /// The client's connection stays with the runtime that took the HTTP request; this
    /// object gets its messages and its close through `websocket_message` and
    /// `websocket_close`, and keeps the socket across hibernation.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` when the request is not an upgrade request forwarded by
    /// `durable_runtime::axum::forward` (only that holds a client's connection), its socket
    /// was accepted already, the tags break the limits ([`MAX_TAGS`] tags of 1 to
    /// [`MAX_TAG_BYTES`] bytes), or the object holds
    /// [`MAX_SOCKETS_PER_OBJECT`] sockets already.
    ///
    /// [`MAX_TAGS`]: crate::websocket::MAX_TAGS
    /// [`MAX_TAG_BYTES`]: crate::websocket::MAX_TAG_BYTES
    /// [`MAX_SOCKETS_PER_OBJECT`]: crate::websocket::MAX_SOCKETS_PER_OBJECT
    pub fn accept_websocket(
        &self,
        request: &Request,
        tags: &[&str],
    ) -> Result<(Response, WebSocket)> {
        let Some(offer) = request.extensions().get::<SocketOffer>() else {
            return Err(Error::invalid_argument(
                "not a WebSocket upgrade request forwarded by durable_runtime::axum::forward: \
                 there is no client connection to accept",
            ));
        };
        let tags = check_tags(tags)?;
        let entry = self.sockets.accept(offer, tags)?;
        let mut response = Response::new(Default::default());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        Ok((response, WebSocket::new(entry, self.sockets.clone())))
    }

    /// This object's open WebSockets; with `Some(tag)`, those accepted with that tag. In no
    /// particular order.
    pub fn websockets(&self, tag: Option<&str>) -> Vec<WebSocket> {
        self.sockets
            .list(tag)
            .into_iter()
            .map(|entry| WebSocket::new(entry, self.sockets.clone()))
            .collect()
    }

    /// Has the runtime holding each socket answer a text message equal to `request` with
    /// `response` itself, without waking this object (a ping that keeps a hibernated
    /// object asleep). Applies to this object's sockets, now and later, until cleared or the
    /// object is evicted with no socket open.
    pub fn set_websocket_auto_response(&self, request: &str, response: &str) {
        self.sockets.set_auto_response(Some(AutoResponse {
            request: request.to_owned(),
            response: response.to_owned(),
        }));
    }

    /// Ends [`set_websocket_auto_response`](Self::set_websocket_auto_response).
    pub fn clear_websocket_auto_response(&self) {
        self.sockets.set_auto_response(None);
    }
}
