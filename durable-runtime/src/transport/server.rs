//! The server: serves a runtime's objects to other processes.
//!
//! One task accepts connections; one task per connection runs the handshake, then reads
//! frames and starts each call on its object. A call's reply is encoded and written by the
//! task that finishes the call, as soon as the output gate releases it, in any order. What
//! it guarantees:
//! - a reply is written only once the object's output gate released it (the call's writes,
//!   and every earlier write of that object, are durable): the server's reply is released by
//!   the same gate as a local caller's;
//! - a slow object holds up no other call of the connection: calls run on their objects, and
//!   the connection task only starts them;
//! - at most `max_calls_in_flight` calls of one connection run at once; beyond it a call is
//!   answered [`Overloaded`](crate::ErrorKind::Overloaded) at once, unrun;
//! - at most 4096 connections are served at once (a handshake, TLS's included, must finish
//!   within 10 s);
//! - a peer that does not read its replies is not read either: past 4 MiB of replies
//!   waiting to be written, the server stops reading its calls until they drain;
//! - a frame is never buffered beyond `max_frame_bytes` (256 bytes until the peer proved
//!   the secret); a peer that sends garbage (a bad
//!   length, version or body, a request ID not above the previous one) loses its connection,
//!   and only it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};

use super::frame::{
    self, CallFrame, ClientFrame, FrameBuffer, HeldRecord, ReplyBody, ServerFrame,
    SocketEventFrame, WireEvent,
};
use super::handshake;
use super::outbox::Outbox;
use super::peers::{Peer, PeerSocket, Peers, SocketHome};
use super::stream::{self, ReadHalf};
use super::TransportConfig;
use crate::actor::{Envelope, ReplyTo};
use crate::class::{Call, DurableObject};
use crate::cluster::router::Hop;
use crate::cycle;
use crate::error::{Error, Result};
use crate::id::{ObjectId, ID_BYTES};
use crate::namespace::{NamespaceCore, Refused};
use crate::runtime::RuntimeShared;
use crate::sockets::{
    OfferSite, SocketEntry, SocketEvent, SocketHolder, SocketId, SocketRecord, OFFER_SITE,
};
use crate::stub::{LocalClass, Route, Stub};
use crate::websocket::{check_tags, Message, MAX_ATTACHMENT_BYTES};

/// How long a new connection may take to prove it holds the secret.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Replies a connection may have waiting to be written before the server stops reading its
/// calls: a peer that sends calls and never reads the replies holds at most this, plus the
/// replies of its calls in flight.
const MAX_BACKLOG: usize = 4 * 1024 * 1024;

/// Connections served at once (each holds a task and its buffers); beyond it, a new
/// connection is closed at once. Unauthenticated ones count too, for at most
/// [`HANDSHAKE_TIMEOUT`] each.
const MAX_CONNECTIONS: usize = 4096;

/// A finished request, ready to be written.
pub(crate) enum Answer {
    Output(Vec<u8>),
    Error(Error),
    Ids(Vec<[u8; ID_BYTES]>),
    Count(u64),
}

/// A class as the server sees it: calls arrive as bytes, replies leave as bytes.
pub(crate) trait ServedClass: Send + Sync {
    /// Decodes and queues a call on its object. `responder` answers it, once, when the
    /// output gate releases the reply (or at once, if the call is refused).
    fn start_call(self: Arc<Self>, call: &CallFrame<'_>, responder: Responder);

    /// Answers with the class's stored object IDs.
    fn list_ids(self: Arc<Self>, responder: Responder);

    /// Deletes every object of the class, then answers how many had data.
    fn delete_all(self: Arc<Self>, responder: Responder);

    /// Hands a WebSocket event to its object; `responder` answers once it was handled.
    fn socket_event(self: Arc<Self>, event: &SocketEventFrame<'_>, responder: Responder);

    /// Records a socket that `peer` holds (it told us after reconnecting).
    fn adopt_socket(self: Arc<Self>, record: &HeldRecord<'_>, peer: &Arc<Peer>) -> Result<()>;

    /// The socket's holder is gone: its object gets a close (1006).
    fn socket_gone(&self, object: &ObjectId, socket: SocketId);

    /// Cluster mode: records a socket held in this process by `holder` for `object`, which
    /// runs here now (it moved here from another node).
    fn adopt_held(
        &self,
        object: &ObjectId,
        socket: SocketId,
        holder: Arc<dyn SocketHolder>,
        record: SocketRecord,
    ) -> Result<()>;
}

impl<T: DurableObject> ServedClass for NamespaceCore<T> {
    fn start_call(self: Arc<Self>, frame: &CallFrame<'_>, responder: Responder) {
        let decoded = (|| {
            let id = ObjectId::from_wire(&self.class, frame.object, frame.name)?;
            let call = match responder.replies.peer.get() {
                // A request to `fetch` may offer a WebSocket: its holder is the peer.
                Some(peer) if Some(frame.method) == self.fetch_method() => {
                    let home = SocketHome {
                        class: self.clone(),
                        object: id.clone(),
                    };
                    let peer = peer.clone();
                    let site = OfferSite(Box::new(move |_| {
                        Arc::new(PeerSocket {
                            peer: peer.clone(),
                            home: home.clone(),
                        })
                    }));
                    OFFER_SITE.set(&site, || T::decode_call(frame.method, frame.args))?
                }
                _ => T::decode_call(frame.method, frame.args)?,
            };
            let chain = cycle::from_wire(&frame.chain)?;
            Ok((id, call, chain))
        })();
        let (id, call, chain) = match decoded {
            Ok(decoded) => decoded,
            Err(e) => return responder.answer(Answer::Error(e)),
        };
        // Cluster mode: a call from a connected runtime for a shard owned elsewhere is routed
        // there (a call from another node was routed already: it is refused below instead).
        if let Some(router) = LocalClass::router(&*self) {
            if !responder.is_from_node() && !matches!(router.locate(id.as_bytes()), Hop::Here) {
                let mut stub = Stub::new(Route::Local(self.clone()), id);
                if let Some(ms) = frame.timeout_ms {
                    stub = stub.with_timeout(Duration::from_millis(ms));
                }
                tokio::spawn(async move {
                    let result = stub.call_forwarded(call, chain).await;
                    responder.answer(encode_output::<T>(result));
                });
                return;
            }
        }
        // A deadline too far to represent is no deadline (a peer may send any number).
        let deadline = frame
            .timeout_ms
            .and_then(|ms| Instant::now().checked_add(Duration::from_millis(ms)));
        // A peer routed the call here on a view that shows this node's new owner key: it runs
        // once the shard's claim is done (a refusal would cost the caller a retry delay).
        if let Some(router) = LocalClass::router(&*self) {
            if router.is_claiming(id.as_bytes()) {
                let router = router.clone();
                tokio::spawn(async move {
                    router.wait_claimed(id.as_bytes(), deadline).await;
                    self.run_call(&id, call, chain, deadline, responder);
                });
                return;
            }
        }
        self.run_call(&id, call, chain, deadline, responder);
    }

    fn list_ids(self: Arc<Self>, responder: Responder) {
        tokio::spawn(async move {
            responder.answer(match NamespaceCore::stored_ids(&self).await {
                Ok(ids) => Answer::Ids(ids),
                Err(e) => Answer::Error(e),
            });
        });
    }

    fn delete_all(self: Arc<Self>, responder: Responder) {
        tokio::spawn(async move {
            // Another node asks for this node's part only; anyone else, for everything.
            let deleted = if responder.is_from_node() {
                NamespaceCore::delete_owned(&self).await
            } else {
                NamespaceCore::delete_all(&self).await
            };
            responder.answer(match deleted {
                Ok(n) => Answer::Count(n as u64),
                Err(e) => Answer::Error(e),
            });
        });
    }

    fn socket_event(self: Arc<Self>, frame: &SocketEventFrame<'_>, responder: Responder) {
        let id = match ObjectId::from_wire(&self.class, frame.object, frame.name) {
            Ok(id) => id,
            Err(e) => return responder.answer(Answer::Error(e)),
        };
        let event = match frame.event {
            WireEvent::Text(text) => SocketEvent::Message(Message::Text(text.to_owned())),
            WireEvent::Binary(bytes) => SocketEvent::Message(Message::Binary(bytes.to_vec())),
            WireEvent::Close { code, reason } => SocketEvent::Close {
                code,
                reason: reason.to_owned(),
            },
        };
        let reply = ReplyTo::Remote(Box::new(move |result: Result<()>| {
            responder.answer(match result {
                Ok(()) => Answer::Output(Vec::new()),
                Err(e) => Answer::Error(e),
            });
        }));
        let envelope = Envelope::Socket {
            socket: SocketId(frame.socket),
            event,
            reply,
        };
        if let Err(Refused {
            error,
            envelope: Envelope::Socket { reply, .. },
        }) = self.send_or_return(&id, envelope)
        {
            reply.send(Err(error));
        }
    }

    fn adopt_socket(self: Arc<Self>, record: &HeldRecord<'_>, peer: &Arc<Peer>) -> Result<()> {
        let id = ObjectId::from_wire(&self.class, record.object, record.name)?;
        let tags = check_tags(&record.tags)?;
        if record
            .attachment
            .is_some_and(|a| a.len() > MAX_ATTACHMENT_BYTES)
        {
            return Err(Error::invalid_argument(
                "a WebSocket attachment over the limit",
            ));
        }
        let socket = SocketId(record.socket);
        let home = SocketHome {
            class: self.clone(),
            object: id.clone(),
        };
        peer.register(socket, home.clone());
        let entry = Arc::new(SocketEntry {
            id: socket,
            holder: Arc::new(PeerSocket {
                peer: peer.clone(),
                home,
            }),
            tags,
            attachment: std::sync::Mutex::new(record.attachment.map(Arc::from)),
            closed: std::sync::atomic::AtomicBool::new(false),
        });
        NamespaceCore::adopt_socket(&self, &id, entry)
    }

    fn adopt_held(
        &self,
        object: &ObjectId,
        socket: SocketId,
        holder: Arc<dyn SocketHolder>,
        record: SocketRecord,
    ) -> Result<()> {
        let entry = Arc::new(SocketEntry {
            id: socket,
            holder,
            tags: record.tags,
            attachment: std::sync::Mutex::new(record.attachment),
            closed: std::sync::atomic::AtomicBool::new(false),
        });
        NamespaceCore::adopt_socket(self, object, entry)
    }

    fn socket_gone(&self, object: &ObjectId, socket: SocketId) {
        let reply = ReplyTo::Remote(Box::new(|_: Result<()>| {}));
        let envelope = Envelope::Socket {
            socket,
            event: super::peers::gone(),
            reply,
        };
        if let Err(e) = self.send(object, envelope) {
            tracing::warn!(%socket, error = %e, "could not tell an object its WebSocket is gone");
        }
    }
}

impl<T: DurableObject> NamespaceCore<T> {
    /// Delivers a call that arrived over a connection to its object here; its reply goes back
    /// on the connection.
    fn run_call(
        &self,
        id: &ObjectId,
        call: Call<T::SharedCall, T::ExclusiveCall>,
        chain: Option<Arc<cycle::Link>>,
        deadline: Option<Instant>,
        responder: Responder,
    ) {
        let reply = ReplyTo::Remote(Box::new(move |result: Result<T::Output>| {
            responder.answer(encode_output::<T>(result));
        }));
        let envelope = Envelope::Call {
            call,
            reply,
            deadline,
            chain,
        };
        if let Err(Refused {
            error,
            envelope: Envelope::Call { reply, .. },
        }) = self.send_or_return(id, envelope)
        {
            reply.send(Err(error));
        }
    }
}

/// A call's result as the answer to send.
fn encode_output<T: DurableObject>(result: Result<T::Output>) -> Answer {
    match result {
        Ok(output) => {
            let mut out = Vec::new();
            match T::encode_output(&output, &mut out) {
                Ok(()) => Answer::Output(out),
                Err(e) => Answer::Error(e),
            }
        }
        Err(e) => Answer::Error(e),
    }
}

/// Binds `addr` (synchronously, so that a taken port is an error of `open`) and refuses a
/// non-loopback address without a secret.
pub(crate) fn bind(addr: &str, config: &TransportConfig) -> Result<TcpListener> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| Error::config(format!("cannot listen on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::config(format!("cannot listen on {addr}: {e}")))?;
    if !local.ip().is_loopback() && config.secret.is_empty() {
        return Err(Error::config(format!(
            "refusing to listen on {local} without a secret: other machines could call every \
             object; set one with .secret(..), or listen on 127.0.0.1"
        )));
    }
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::config(format!("cannot listen on {addr}: {e}")))?;
    let _enter = tokio::runtime::Handle::try_current().map_err(|_| {
        Error::config("listen needs a tokio runtime: open the durable runtime inside one")
    })?;
    TcpListener::from_std(listener)
        .map_err(|e| Error::config(format!("cannot listen on {addr}: {e}")))
}

/// Accepts connections until the runtime closes.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    runtime: Weak<RuntimeShared>,
    config: TransportConfig,
) {
    let Some(mut closing) = runtime.upgrade().map(|rt| rt.watch_closing()) else {
        return;
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let peers = Arc::new(Peers::default());
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = closing.changed() => return,
        };
        match accepted {
            Ok((stream, peer)) => match slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    let (runtime, config) = (runtime.clone(), config.clone());
                    let peers = peers.clone();
                    tokio::spawn(async move {
                        serve(stream, peer, runtime, config, peers).await;
                        drop(slot);
                    });
                }
                Err(_) => {
                    tracing::warn!(%peer, "refused a connection: {MAX_CONNECTIONS} connections are open");
                    drop(stream);
                }
            },
            Err(e) => {
                // Out of file descriptors and the like: wait, rather than spin.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves one connection: the handshake, then calls until the peer leaves, breaks the
/// protocol, or the runtime closes.
async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    runtime: Weak<RuntimeShared>,
    config: TransportConfig,
    peers: Arc<Peers>,
) {
    let _ = stream.set_nodelay(true);
    // Until the peer proved the secret, frames are bounded by the handshake's size.
    let mut buffer = FrameBuffer::new(frame::HANDSHAKE_FRAME_BYTES);
    // The TLS handshake (with TLS configured), then the secret's, within one timeout.
    let handshake = async {
        let (mut reader, mut writer) = stream::accept(stream, &config).await?;
        handshake::server(&mut reader, &mut writer, &mut buffer, &config.secret).await?;
        Ok::<_, Error>((reader, writer))
    };
    let (mut reader, writer) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(halves)) => halves,
        Ok(Err(e)) => {
            tracing::warn!(%peer, error = %e, "refused a connection at the handshake");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, "a connection did not finish its handshake in time");
            return;
        }
    };
    buffer.set_max_frame_bytes(config.max_frame_bytes);
    let (outbox, write_queued) = Outbox::new(writer);
    tokio::spawn(async move {
        if let Err(e) = write_queued.await {
            tracing::debug!(%peer, error = %e, "writing to a client failed");
        }
    });
    let mut connection = Connection {
        runtime,
        classes: HashMap::new(),
        replies: Arc::new(Replies {
            outbox,
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            max_frame_bytes: config.max_frame_bytes,
            peer: OnceLock::new(),
            node: OnceLock::new(),
        }),
        last_request: None,
        max_in_flight: config.max_calls_in_flight,
        peers,
    };
    if let Err(reason) = connection.run(&mut reader, &mut buffer).await {
        tracing::warn!(%peer, %reason, "closed a connection");
    }
    if let Some(holder) = connection.replies.peer.get() {
        connection.peers.detach(holder, &connection.replies.outbox);
    }
    // Replies of calls still running are dropped: nobody reads them any more.
    connection.replies.outbox.close();
}

struct Connection {
    runtime: Weak<RuntimeShared>,
    /// Classes already looked up, by tag: the runtime's registry is locked on a miss only.
    classes: HashMap<[u8; 8], Arc<dyn ServedClass>>,
    replies: Arc<Replies>,
    last_request: Option<u64>,
    max_in_flight: usize,
    peers: Arc<Peers>,
}

/// What a connection's calls share to answer: the way out, and how many are in flight.
struct Replies {
    outbox: Arc<Outbox>,
    in_flight: AtomicUsize,
    /// Notified when the last call in flight is answered (a closing connection waits).
    idle: Notify,
    max_frame_bytes: usize,
    /// The front end this connection comes from, once it named itself: the holder of the
    /// WebSockets its requests offer.
    peer: OnceLock<Arc<Peer>>,
    /// Cluster mode: the ID of the node this connection comes from, once it named itself.
    node: OnceLock<String>,
}

/// Answers one request, once. Dropped unanswered (its call was dropped with the runtime),
/// it answers [`Closed`](crate::ErrorKind::Closed).
pub(crate) struct Responder {
    replies: Arc<Replies>,
    request: u64,
    answered: bool,
}

impl Responder {
    /// Whether the request came from another node of the cluster (which routed it here).
    pub(crate) fn is_from_node(&self) -> bool {
        self.replies.node.get().is_some()
    }

    fn answer(mut self, answer: Answer) {
        self.answered = true;
        self.replies.finish(self.request, answer);
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.answered {
            self.replies
                .finish(self.request, Answer::Error(Error::closed()));
        }
    }
}

impl Replies {
    /// A call starts: its reply will come through a [`Responder`].
    fn start(self: &Arc<Self>, request: u64) -> Responder {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Responder {
            replies: self.clone(),
            request,
            answered: false,
        }
    }

    /// A call's reply: written, and the call no longer counts as in flight.
    fn finish(&self, request: u64, answer: Answer) {
        let alone = self.in_flight.load(Ordering::Acquire) == 1;
        self.write(request, answer, alone);
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Encodes the reply frame and sends it (a lone reply is written at once).
    fn write(&self, request: u64, answer: Answer, alone: bool) {
        let mut out = Vec::with_capacity(64);
        let encoded = encode_reply(request, &answer, &mut out);
        let len = out.len().saturating_sub(frame::LENGTH_BYTES);
        if encoded.is_err() || len > self.max_frame_bytes {
            let error = encoded.err().unwrap_or_else(|| {
                Error::invalid_argument(format!(
                    "the reply is {len} bytes, over the limit of {} bytes a frame may carry \
                     (RuntimeBuilder::max_frame_bytes); the call ran, but its result cannot \
                     be sent",
                    self.max_frame_bytes
                ))
            });
            out.clear();
            // An error frame is small: it cannot fail to encode nor be too large.
            let _ = encode_reply(request, &Answer::Error(error), &mut out);
        }
        // A closed outbox: the connection is gone, and nobody waits for this reply.
        let _ = self.outbox.send(&out, alone);
    }
}

/// Appends the reply frame of `request` to `out`.
fn encode_reply(request: u64, answer: &Answer, out: &mut Vec<u8>) -> Result<()> {
    let error;
    let body = match answer {
        Answer::Output(bytes) => ReplyBody::Output(bytes),
        Answer::Error(e) => {
            error = frame::encode_error(e);
            ReplyBody::Error(&error)
        }
        Answer::Ids(ids) => ReplyBody::Ids(ids.clone()),
        Answer::Count(n) => ReplyBody::Count(*n),
    };
    frame::encode(&ServerFrame::Reply { request, body }, out)
}

impl Connection {
    /// The connection's loop. `Err` names the protocol violation or I/O error that ended it;
    /// `Ok` when the peer closed, or when the runtime is closing (calls in flight are
    /// answered first).
    async fn run(
        &mut self,
        reader: &mut ReadHalf,
        buffer: &mut FrameBuffer,
    ) -> std::result::Result<(), String> {
        let mut closing = match self.runtime.upgrade() {
            Some(rt) => rt.watch_closing(),
            None => return Ok(()),
        };
        loop {
            // Backpressure: no new calls while the peer leaves its replies unread.
            if self.replies.outbox.backlog() > MAX_BACKLOG {
                tokio::select! {
                    () = self.replies.outbox.wait_backlog(MAX_BACKLOG) => {}
                    _ = closing.changed() => {}
                }
            } else if let Some(body) = buffer.next_frame().map_err(|e| e.to_string())? {
                self.handle(body)?;
                continue;
            }
            if *closing.borrow() {
                break;
            }
            if self.replies.outbox.backlog() > MAX_BACKLOG {
                continue;
            }
            let spare = buffer.spare().map_err(|e| e.to_string())?;
            tokio::select! {
                read = reader.read_buf(spare) => match read {
                    // The peer left: its calls still run and commit, nobody waits for them.
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                },
                _ = closing.changed() => {}
            }
        }
        // Closing: no new calls; the ones in flight are answered before the connection ends.
        loop {
            let idle = self.replies.idle.notified();
            if self.replies.in_flight.load(Ordering::Acquire) == 0 {
                return Ok(());
            }
            idle.await;
        }
    }

    /// Handles one frame from the client: starts a call, or answers at once.
    fn handle(&mut self, body: &[u8]) -> std::result::Result<(), String> {
        let frame: ClientFrame<'_> = frame::decode(body).map_err(|e| e.to_string())?;
        let (id, class) = match &frame {
            ClientFrame::Call(call) => (call.request, class_tag(&call.object)),
            ClientFrame::ListIds { request, class } | ClientFrame::DeleteAll { request, class } => {
                (*request, *class)
            }
            ClientFrame::SocketEvent(event) => (event.request, class_tag(&event.object)),
            ClientFrame::Holder { id } => {
                if self.replies.peer.get().is_some() || self.last_request.is_some() {
                    return Err("a holder ID after the connection's first requests".to_owned());
                }
                let peer = self.peers.attach(*id, self.replies.outbox.clone());
                let _ = self.replies.peer.set(peer);
                return Ok(());
            }
            ClientFrame::Node { id } => {
                if self.replies.node.set((*id).to_owned()).is_err() || self.last_request.is_some() {
                    return Err(
                        "a node ID twice, or after the connection's first requests".to_owned()
                    );
                }
                return Ok(());
            }
            ClientFrame::Sockets(records) => {
                let Some(peer) = self.replies.peer.get().cloned() else {
                    return Err("WebSockets announced before a holder ID".to_owned());
                };
                for record in records {
                    let adopted = self
                        .class(class_tag(&record.object))
                        .and_then(|served| served.adopt_socket(record, &peer));
                    if let Err(e) = adopted {
                        // The socket's front end will see its events refused, and close it.
                        tracing::warn!(socket = %SocketId(record.socket), error = %e, "refused a WebSocket a front end holds");
                    }
                }
                return Ok(());
            }
            other => return Err(format!("a {other:?} after the handshake")),
        };
        if self.last_request.is_some_and(|last| id <= last) {
            return Err(format!("request ID {id} is not above the previous one"));
        }
        self.last_request = Some(id);
        let responder = self.replies.start(id);
        if self.replies.in_flight.load(Ordering::Acquire) > self.max_in_flight {
            responder.answer(Answer::Error(Error::overloaded()));
            return Ok(());
        }
        let served = match self.class(class) {
            Ok(served) => served,
            Err(e) => {
                responder.answer(Answer::Error(e));
                return Ok(());
            }
        };
        match frame {
            ClientFrame::Call(call) => served.start_call(&call, responder),
            ClientFrame::ListIds { .. } => served.list_ids(responder),
            ClientFrame::DeleteAll { .. } => served.delete_all(responder),
            ClientFrame::SocketEvent(event) => {
                if let (WireEvent::Close { .. }, Some(peer)) =
                    (&event.event, self.replies.peer.get())
                {
                    peer.unregister(SocketId(event.socket));
                }
                served.socket_event(&event, responder)
            }
            _ => unreachable!("checked above"),
        }
        Ok(())
    }

    fn class(&mut self, tag: [u8; 8]) -> Result<Arc<dyn ServedClass>> {
        if let Some(served) = self.classes.get(&tag) {
            return Ok(served.clone());
        }
        let runtime = self.runtime.upgrade().ok_or_else(Error::closed)?;
        if runtime.is_closed() {
            return Err(Error::closed());
        }
        let served = runtime.served_class(&tag).ok_or_else(|| {
            Error::unknown_method(format!(
                "this runtime serves no class with tag {}; register the class on the server \
                 with .register::<T>()",
                hex::encode(tag)
            ))
        })?;
        self.classes.insert(tag, served.clone());
        Ok(served)
    }
}

fn class_tag(object: &[u8; ID_BYTES]) -> [u8; 8] {
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&object[..8]);
    tag
}
