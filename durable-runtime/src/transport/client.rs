//! The client: a connected runtime's one connection to the runtime that holds its objects.
//!
//! - The connection is made lazily, by the first call, and again by the first call after a
//!   loss. Failed attempts back off (50 ms, doubling to 2 s); calls made while the client
//!   waits to retry fail at once with the last attempt's error, instead of piling up.
//! - Calls share the connection: each gets a request ID (strictly increasing) and waits for
//!   the reply carrying it, so replies arrive in any order. A lone caller writes its frame
//!   itself, without blocking (no hand-off to another task on the way out); concurrent
//!   callers queue theirs for a writer task, which writes everything queued meanwhile in one
//!   go.
//! - A call whose connection is lost before its reply fails with
//!   [`Disconnected`](crate::ErrorKind::Disconnected) (retryable: it may or may not have run).
//!   A server that breaks the protocol (garbage, a reply to a request never made) is
//!   disconnected the same way.
//! - Dropping a call's future stops waiting for it; the call still runs on the server, and
//!   its late reply is discarded.
//! - WebSockets held here for objects at the server: the client names itself with a holder
//!   ID on every connection and lists the sockets it holds, so that a server that restarted
//!   knows them again; the server's output for them arrives on the connection
//!   (`ServerFrame::Socket`). While it holds sockets, a lost connection is dialed again at
//!   once (with the usual backoff), not at the next call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};

use super::frame::{
    self, CallFrame, ChainLink, ClientFrame, FrameBuffer, HeldRecord, ReplyBody, ServerFrame,
    SocketEventFrame, WireEvent, WireOutput,
};
use super::handshake;
use super::outbox::Outbox;
use super::stream::{self, ReadHalf};
use super::TransportConfig;
use crate::error::{Error, Result};
use crate::id::{ObjectId, ID_BYTES};
use crate::sockets::{
    AutoResponse, HeldSockets, Outgoing, SocketEvent, SocketHolder, SocketId, SocketRecord,
};
use crate::websocket::Message;

/// How long one attempt to connect (and run the handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// What a call lost with its connection must be told.
const MAY_HAVE_RUN: &str = "the call may or may not have run";
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A reply, decoded from its frame.
#[derive(Debug)]
pub(crate) enum Reply {
    Output(Vec<u8>),
    Ids(Vec<[u8; ID_BYTES]>),
    Count(u64),
}

/// How a call through [`Client::try_call`] failed.
#[derive(Debug)]
pub(crate) struct CallFailure {
    pub(crate) error: Error,
    /// Whether the call's frame left this process (then it may have run).
    pub(crate) sent: bool,
}

impl CallFailure {
    /// Whether the request surely did not run: refused unrun by a node that does not own
    /// the object's shard, or never sent to a peer that could not be reached. A cluster tries
    /// such requests again elsewhere.
    pub(crate) fn did_not_run(&self) -> bool {
        self.error.is_not_here()
            || (!self.sent && self.error.kind() == crate::ErrorKind::Disconnected)
    }
}

/// A call as the stub hands it over.
pub(crate) struct OutgoingCall<'a> {
    pub(crate) object: &'a ObjectId,
    pub(crate) method: u64,
    pub(crate) args: &'a [u8],
    pub(crate) chain: Vec<ChainLink<'a>>,
    /// When the caller stops waiting, and the error it then gets.
    pub(crate) deadline: Option<(Instant, Error)>,
}

/// A connected runtime's link to its server.
pub(crate) struct Client {
    addr: String,
    config: TransportConfig,
    /// The live connection, if any: the fast path of every call.
    current: Mutex<Option<Arc<Connection>>>,
    /// Held while connecting, so that one caller dials and the others wait for it.
    dialing: tokio::sync::Mutex<Backoff>,
    closed: AtomicBool,
    /// This client's name as a holder of WebSockets (random, per client).
    holder: [u8; 16],
    /// The WebSockets held here for objects at the server.
    sockets: Arc<ClientSockets>,
    /// The same, counted for shutdown.
    held: Arc<HeldSockets>,
    /// Cluster mode: this client is the node with this ID, forwarding calls it routed.
    node: Option<String>,
}

/// The WebSockets a client holds, by socket ID.
#[derive(Default)]
struct ClientSockets {
    map: Mutex<HashMap<SocketId, ClientHeld>>,
    /// Notified when the connection is lost while sockets are held.
    lost: Notify,
    /// Whether the task that reconnects for them runs.
    keeper: AtomicBool,
}

struct ClientHeld {
    object: ObjectId,
    holder: Arc<dyn SocketHolder>,
}

impl ClientSockets {
    fn map(&self) -> MutexGuard<'_, HashMap<SocketId, ClientHeld>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Keeps a socket registered with its client; dropping it (the socket closed, or was never
/// upgraded) unregisters it.
pub(crate) struct HoldGuard {
    sockets: Arc<ClientSockets>,
    id: SocketId,
}

impl Drop for HoldGuard {
    fn drop(&mut self) {
        self.sockets.map().remove(&self.id);
    }
}

#[derive(Default)]
struct Backoff {
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<Error>,
}

type Waiter = oneshot::Sender<Result<Reply>>;

/// One connection: the way out, and the calls waiting for replies. Dropping it closes the
/// output: the server sees the end of the stream, and closes its side.
struct Connection {
    pending: Arc<Pending>,
    outbox: Arc<Outbox>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.outbox.close();
    }
}

/// The calls waiting on one connection, by request ID.
struct Pending {
    state: Mutex<PendingState>,
    /// `state.lost.is_some()`, readable without the lock (every call checks it).
    is_lost: AtomicBool,
}

struct PendingState {
    waiters: HashMap<u64, Waiter>,
    next_request: u64,
    /// Set once, when the connection is lost: no call is admitted after it.
    lost: Option<Error>,
}

impl Pending {
    fn lock(&self) -> MutexGuard<'_, PendingState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection is gone (`reason`): every waiting call fails as disconnected (it may
    /// have run), and so does every call that tries this connection from now on (it was
    /// never sent).
    fn fail_all(&self, reason: String) {
        let waiters = {
            let mut state = self.lock();
            if state.lost.is_none() {
                state.lost = Some(Error::disconnected(reason.clone()));
                self.is_lost.store(true, Ordering::Release);
            }
            std::mem::take(&mut state.waiters)
        };
        let in_flight = Error::disconnected(format!("{reason}; {MAY_HAVE_RUN}"));
        for (_, waiter) in waiters {
            let _ = waiter.send(Err(in_flight.clone()));
        }
    }

    fn is_lost(&self) -> bool {
        self.is_lost.load(Ordering::Acquire)
    }
}

/// Removes a call's waiter when the call stops waiting (reply, timeout, or drop).
struct WaitGuard {
    pending: Arc<Pending>,
    request: u64,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        self.pending.lock().waiters.remove(&self.request);
    }
}

impl Client {
    pub(crate) fn new(addr: String, config: TransportConfig) -> Client {
        Client {
            addr,
            config,
            current: Mutex::new(None),
            dialing: tokio::sync::Mutex::new(Backoff::default()),
            closed: AtomicBool::new(false),
            holder: SocketId::next().0,
            sockets: Arc::default(),
            held: Arc::default(),
            node: None,
        }
    }

    /// A client of another node of the cluster, for the node `node`: its connections name
    /// the node, so that the peer refuses (rather than forwards again) calls for shards it
    /// does not own.
    pub(crate) fn for_node(addr: String, config: TransportConfig, node: &str) -> Client {
        Client {
            node: Some(node.to_owned()),
            ..Client::new(addr, config)
        }
    }

    /// The WebSockets held here, for shutdown.
    pub(crate) fn held(&self) -> &Arc<HeldSockets> {
        &self.held
    }

    /// Routes the server's output for socket `id` (of `object`) to `holder` until the guard
    /// is dropped; while any socket is held, a lost connection is dialed again at once.
    pub(crate) fn hold_socket(
        self: &Arc<Self>,
        id: SocketId,
        object: &ObjectId,
        holder: Arc<dyn SocketHolder>,
    ) -> HoldGuard {
        self.sockets.map().insert(
            id,
            ClientHeld {
                object: object.clone(),
                holder,
            },
        );
        if !self.sockets.keeper.swap(true, Ordering::AcqRel) {
            tokio::spawn(keep_connected(Arc::downgrade(self), self.sockets.clone()));
        }
        HoldGuard {
            sockets: self.sockets.clone(),
            id,
        }
    }

    /// Tells the server, on the live connection, about a socket held here that it does not
    /// know yet (cluster mode: its object just moved there). Without a live connection there
    /// is nothing to do: the next connection announces every socket registered here.
    pub(crate) fn announce(&self, id: SocketId, object: &ObjectId, record: &SocketRecord) {
        let Some(connection) = self.live() else {
            return;
        };
        let mut out = Vec::new();
        let frame = ClientFrame::Sockets(vec![HeldRecord {
            object: *object.as_bytes(),
            name: object.name(),
            socket: id.0,
            tags: record.tags.iter().map(String::as_str).collect(),
            attachment: record.attachment.as_deref(),
        }]);
        if frame::encode(&frame, &mut out).is_ok() {
            // Under the pending lock, as requests are: frames leave in order.
            let state = connection.pending.lock();
            if state.lost.is_none() {
                let _ = connection.outbox.send(&out, state.waiters.is_empty());
            }
        }
    }

    /// Hands an event of a WebSocket held here to its object at the server; resolves once
    /// the object handled it.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))] // used by `axum::forward`
    pub(crate) async fn socket_event(
        &self,
        object: &ObjectId,
        socket: SocketId,
        event: SocketEvent,
    ) -> Result<()> {
        self.try_socket_event(object, socket, event)
            .await
            .map_err(|failure| failure.error)
    }

    /// [`socket_event`](Self::socket_event), telling on failure whether the event was sent.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))] // used by `axum::forward`
    pub(crate) async fn try_socket_event(
        &self,
        object: &ObjectId,
        socket: SocketId,
        event: SocketEvent,
    ) -> Result<(), CallFailure> {
        let reply = self.send_request(None, |request, out| {
            let event = match &event {
                SocketEvent::Message(Message::Text(text)) => WireEvent::Text(text),
                SocketEvent::Message(Message::Binary(bytes)) => WireEvent::Binary(bytes),
                SocketEvent::Close { code, reason } => WireEvent::Close {
                    code: *code,
                    reason,
                },
            };
            frame::encode(
                &ClientFrame::SocketEvent(SocketEventFrame {
                    request,
                    object: *object.as_bytes(),
                    name: object.name(),
                    socket: socket.0,
                    event,
                }),
                out,
            )
        });
        match reply.await? {
            Reply::Output(_) => Ok(()),
            other => Err(CallFailure {
                error: unexpected(&other),
                sent: true,
            }),
        }
    }

    /// The address calls go to.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// Stops: calls from now on fail with `Closed`; the connection closes once its last
    /// call is answered or dropped.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    /// Sends a call and waits for its reply: the encoded return value.
    pub(crate) async fn call(&self, call: OutgoingCall<'_>) -> Result<Vec<u8>> {
        self.try_call(call).await.map_err(|failure| failure.error)
    }

    /// As [`call`](Self::call), and on failure whether the call left this process: a call
    /// that was never sent (no connection, the connection already lost, a bound) did not run,
    /// and may be sent elsewhere (cluster routing).
    pub(crate) async fn try_call(&self, call: OutgoingCall<'_>) -> Result<Vec<u8>, CallFailure> {
        let at = call.deadline.as_ref().map(|(at, _)| *at);
        let reply = self.send_request(call.deadline, |request, out| {
            let timeout_ms = at.map(|d| {
                let left = d.saturating_duration_since(Instant::now());
                u64::try_from(left.as_millis()).unwrap_or(u64::MAX)
            });
            frame::encode(
                &ClientFrame::Call(CallFrame {
                    request,
                    object: *call.object.as_bytes(),
                    name: call.object.name(),
                    method: call.method,
                    timeout_ms,
                    chain: call.chain,
                    args: call.args,
                }),
                out,
            )
        });
        match reply.await {
            Ok(Reply::Output(bytes)) => Ok(bytes),
            Ok(other) => Err(CallFailure {
                error: unexpected(&other),
                sent: true,
            }),
            Err(failure) => Err(failure),
        }
    }

    /// `Namespace::list_ids` of the class with this tag.
    pub(crate) async fn list_ids(&self, class: [u8; 8]) -> Result<Vec<[u8; ID_BYTES]>> {
        match self
            .request(None, |request, out| {
                frame::encode(&ClientFrame::ListIds { request, class }, out)
            })
            .await?
        {
            Reply::Ids(ids) => Ok(ids),
            other => Err(unexpected(&other)),
        }
    }

    /// `Namespace::delete_all_objects` of the class with this tag.
    pub(crate) async fn delete_all(&self, class: [u8; 8]) -> Result<u64> {
        match self
            .request(None, |request, out| {
                frame::encode(&ClientFrame::DeleteAll { request, class }, out)
            })
            .await?
        {
            Reply::Count(n) => Ok(n),
            other => Err(unexpected(&other)),
        }
    }

    /// Sends the frame `encode` writes for a fresh request ID, and waits for its reply
    /// until `deadline` (the caller turns the elapsed deadline into its own error).
    async fn request(
        &self,
        deadline: Option<(Instant, Error)>,
        encode: impl FnOnce(u64, &mut Vec<u8>) -> Result<()>,
    ) -> Result<Reply> {
        self.send_request(deadline, encode)
            .await
            .map_err(|failure| failure.error)
    }

    /// [`request`](Self::request), telling on failure whether the frame was sent.
    async fn send_request(
        &self,
        deadline: Option<(Instant, Error)>,
        encode: impl FnOnce(u64, &mut Vec<u8>) -> Result<()>,
    ) -> Result<Reply, CallFailure> {
        let unsent = |error: Error| CallFailure { error, sent: false };
        // The deadline covers connecting too (a dial may take up to CONNECT_TIMEOUT).
        let connection = match &deadline {
            None => self.connection().await.map_err(unsent)?,
            Some((at, timed_out)) => {
                match Box::pin(tokio::time::timeout_at((*at).into(), self.connection())).await {
                    Ok(connection) => connection.map_err(unsent)?,
                    Err(_) => return Err(unsent(timed_out.clone())),
                }
            }
        };
        let (waiter, reply) = oneshot::channel();
        let request = {
            let mut state = connection.pending.lock();
            if let Some(err) = &state.lost {
                return Err(unsent(err.clone()));
            }
            let request = state.next_request;
            let mut out = Vec::with_capacity(128);
            encode(request, &mut out).map_err(unsent)?;
            let len = out.len() - frame::LENGTH_BYTES;
            if len > self.config.max_frame_bytes {
                return Err(unsent(Error::invalid_argument(format!(
                    "the call is {len} bytes once encoded, over the limit of {} bytes a frame \
                     may carry (RuntimeBuilder::max_frame_bytes); it was not sent",
                    self.config.max_frame_bytes
                ))));
            }
            if state.waiters.len() >= self.config.max_calls_in_flight {
                return Err(unsent(Error::overloaded()));
            }
            state.next_request += 1;
            // Sent under the lock: frames leave in request order, which the server checks. A
            // lone call writes its frame itself; concurrent calls' frames go out together.
            if let Err(e) = connection.outbox.send(&out, state.waiters.is_empty()) {
                let err = Error::disconnected(format!("writing to the server failed: {e}"));
                connection.pending.is_lost.store(true, Ordering::Release);
                // Part of the frame may have left: count it as sent.
                return Err(CallFailure {
                    error: state.lost.get_or_insert(err).clone(),
                    sent: true,
                });
            }
            state.waiters.insert(request, waiter);
            request
        };
        // The waiting call holds the waiters, not the connection: a connection the client
        // let go of closes (its writer ends) even while calls wait on it.
        let _guard = WaitGuard {
            pending: connection.pending.clone(),
            request,
        };
        drop(connection);
        let sent = |error: Error| CallFailure { error, sent: true };
        let reply = match deadline {
            None => reply.await,
            // Boxed: the timer is large (as in the local stub).
            Some((at, timed_out)) => {
                match Box::pin(tokio::time::timeout_at(at.into(), reply)).await {
                    Ok(reply) => reply,
                    Err(_) => return Err(sent(timed_out)),
                }
            }
        };
        reply
            .unwrap_or_else(|_| {
                Err(Error::disconnected(format!(
                    "the connection was lost; {MAY_HAVE_RUN}"
                )))
            })
            .map_err(sent)
    }

    /// The live connection, dialing one if there is none.
    async fn connection(&self) -> Result<Arc<Connection>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::closed());
        }
        if let Some(c) = self.live() {
            return Ok(c);
        }
        let mut backoff = self.dialing.lock().await;
        if let Some(c) = self.live() {
            return Ok(c);
        }
        if let (Some(at), Some(err)) = (backoff.retry_at, &backoff.last_error) {
            if Instant::now() < at {
                return Err(err.clone());
            }
        }
        // Boxed: dialing (a TLS handshake's state included) is large and rare, and would
        // otherwise be part of every call's future.
        match tokio::time::timeout(CONNECT_TIMEOUT, Box::pin(self.dial())).await {
            Ok(Ok(connection)) => {
                *backoff = Backoff::default();
                let connection = Arc::new(connection);
                *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(connection.clone());
                Ok(connection)
            }
            failed => {
                let err = match failed {
                    Ok(Err(e)) => e,
                    _ => Error::disconnected(format!(
                        "connecting to {} took over {} s",
                        self.addr,
                        CONNECT_TIMEOUT.as_secs()
                    )),
                };
                let wait = FIRST_BACKOFF
                    .saturating_mul(1 << backoff.failures.min(10))
                    .min(MAX_BACKOFF);
                backoff.failures += 1;
                backoff.retry_at = Some(Instant::now() + wait);
                backoff.last_error = Some(err.clone());
                Err(err)
            }
        }
    }

    fn live(&self) -> Option<Arc<Connection>> {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        current.as_ref().filter(|c| !c.pending.is_lost()).cloned()
    }

    /// Connects, proves the secret, and starts the connection's reader and writer tasks.
    async fn dial(&self) -> Result<Connection> {
        let stream = TcpStream::connect(&self.addr)
            .await
            .map_err(|e| Error::disconnected(format!("cannot connect to {}: {e}", self.addr)))?;
        let _ = stream.set_nodelay(true);
        let (mut reader, mut writer) = stream::connect(stream, &self.addr, &self.config).await?;
        // Until the peer proved the secret, frames are bounded by the handshake's size.
        let mut buffer = FrameBuffer::new(frame::HANDSHAKE_FRAME_BYTES);
        handshake::client(&mut reader, &mut writer, &mut buffer, &self.config.secret)
            .await
            .map_err(|e| match e.kind() {
                crate::ErrorKind::Unauthenticated => Error::unauthenticated(format!(
                    "the handshake with {} failed: {}",
                    self.addr,
                    e.message().trim_start_matches("unauthenticated: ")
                )),
                _ => e,
            })?;
        buffer.set_max_frame_bytes(self.config.max_frame_bytes);
        let pending = Arc::new(Pending {
            state: Mutex::new(PendingState {
                waiters: HashMap::new(),
                next_request: 1,
                lost: None,
            }),
            is_lost: AtomicBool::new(false),
        });
        let (outbox, write_queued) = Outbox::new(writer);
        // First the holder's name and the sockets it holds: before any request.
        let mut hello = Vec::new();
        frame::encode(&ClientFrame::Holder { id: self.holder }, &mut hello)?;
        if let Some(node) = &self.node {
            frame::encode(&ClientFrame::Node { id: node }, &mut hello)?;
        }
        announce(&self.sockets, self.config.max_frame_bytes, &mut hello)?;
        outbox
            .send(&hello, true)
            .map_err(|e| Error::disconnected(format!("writing to {} failed: {e}", self.addr)))?;
        let failed = pending.clone();
        tokio::spawn(async move {
            if let Err(e) = write_queued.await {
                failed.fail_all(format!("writing to the server failed: {e}"));
            }
        });
        tokio::spawn(read_loop(
            reader,
            buffer,
            pending.clone(),
            self.addr.clone(),
            self.sockets.clone(),
        ));
        Ok(Connection { pending, outbox })
    }
}

fn unexpected(reply: &Reply) -> Error {
    Error::internal(format!("the server answered with {reply:?}"))
}

/// Encodes `Sockets` frames listing every accepted socket held here, each frame well under
/// the frame bound.
fn announce(sockets: &ClientSockets, max_frame_bytes: usize, out: &mut Vec<u8>) -> Result<()> {
    let held: Vec<(SocketId, ObjectId, SocketRecord)> = sockets
        .map()
        .iter()
        .filter_map(|(id, held)| Some((*id, held.object.clone(), held.holder.record()?)))
        .collect();
    let budget = max_frame_bytes / 2;
    let mut batch: Vec<HeldRecord<'_>> = Vec::new();
    let mut size = 0;
    for (id, object, SocketRecord { tags, attachment }) in &held {
        let record = HeldRecord {
            object: *object.as_bytes(),
            name: object.name(),
            socket: id.0,
            tags: tags.iter().map(String::as_str).collect(),
            attachment: attachment.as_deref(),
        };
        let record_size = 64
            + object.name().map_or(0, str::len)
            + tags.iter().map(|t| t.len() + 2).sum::<usize>()
            + attachment.as_ref().map_or(0, |a| a.len() + 2);
        if size + record_size > budget && !batch.is_empty() {
            frame::encode(&ClientFrame::Sockets(std::mem::take(&mut batch)), out)?;
            size = 0;
        }
        size += record_size;
        batch.push(record);
    }
    if !batch.is_empty() {
        frame::encode(&ClientFrame::Sockets(batch), out)?;
    }
    Ok(())
}

/// While a client holds sockets, dials again as soon as its connection is lost (the
/// server's output for them has no other way in).
async fn keep_connected(client: std::sync::Weak<Client>, sockets: Arc<ClientSockets>) {
    loop {
        sockets.lost.notified().await;
        let mut pause = FIRST_BACKOFF;
        loop {
            let Some(client) = client.upgrade() else {
                return;
            };
            if client.closed.load(Ordering::Acquire) || sockets.map().is_empty() {
                break;
            }
            if client.connection().await.is_ok() {
                break;
            }
            drop(client);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_BACKOFF);
        }
    }
}

/// Routes replies to their callers until the connection ends.
async fn read_loop(
    mut reader: ReadHalf,
    mut buffer: FrameBuffer,
    pending: Arc<Pending>,
    addr: String,
    sockets: Arc<ClientSockets>,
) {
    let err = loop {
        match read_replies(&mut buffer, &pending, &sockets) {
            Ok(()) => {}
            Err(reason) => {
                tracing::warn!(server = %addr, %reason, "dropped the connection to a server that broke the protocol");
                break format!("the server at {addr} broke the protocol: {reason}");
            }
        }
        let spare = match buffer.spare() {
            Ok(spare) => spare,
            Err(e) => break format!("the server at {addr} broke the protocol: {e}"),
        };
        match reader.read_buf(spare).await {
            Ok(0) => break format!("the server at {addr} closed the connection"),
            Ok(_) => {}
            Err(e) => break format!("the connection to {addr} failed: {e}"),
        }
    };
    pending.fail_all(err);
    if !sockets.map().is_empty() {
        sockets.lost.notify_one();
    }
}

/// Hands every complete reply in `buffer` to its caller.
fn read_replies(
    buffer: &mut FrameBuffer,
    pending: &Pending,
    sockets: &ClientSockets,
) -> std::result::Result<(), String> {
    while let Some(body) = buffer.next_frame().map_err(|e| e.to_string())? {
        let (request, body) = match frame::decode::<ServerFrame<'_>>(body) {
            Ok(ServerFrame::Reply { request, body }) => (request, body),
            Ok(ServerFrame::Socket { socket, output }) => {
                let id = SocketId(socket);
                let holder = sockets.map().get(&id).map(|held| held.holder.clone());
                // None: the socket closed here meanwhile; its object learns it from the close.
                if let Some(holder) = holder {
                    holder.deliver(id, from_wire(output));
                }
                continue;
            }
            Ok(other) => return Err(format!("a {other:?} after the handshake")),
            Err(e) => return Err(e.to_string()),
        };
        let reply = match body {
            ReplyBody::Output(bytes) => Ok(Reply::Output(bytes.to_vec())),
            ReplyBody::Error(bytes) => Err(frame::decode_error(bytes)),
            ReplyBody::Ids(ids) => Ok(Reply::Ids(ids)),
            ReplyBody::Count(n) => Ok(Reply::Count(n)),
        };
        let waiter = {
            let mut state = pending.lock();
            if request >= state.next_request {
                return Err(format!(
                    "a reply to request {request}, which was never made"
                ));
            }
            // None: the caller stopped waiting (timeout or drop); its late reply is dropped.
            state.waiters.remove(&request)
        };
        if let Some(waiter) = waiter {
            let _ = waiter.send(reply);
        }
    }
    Ok(())
}

/// An object's output for a socket, from its frame.
fn from_wire(output: WireOutput<'_>) -> Outgoing {
    let auto = |pair: Option<(&str, &str)>| {
        pair.map(|(request, response)| {
            Arc::new(AutoResponse {
                request: request.to_owned(),
                response: response.to_owned(),
            })
        })
    };
    match output {
        WireOutput::Accepted {
            tags,
            auto_response,
        } => Outgoing::Accepted {
            tags: tags.into_iter().map(str::to_owned).collect(),
            auto_response: auto(auto_response),
        },
        WireOutput::Text(text) => Outgoing::Send(Message::Text(text.to_owned())),
        WireOutput::Binary(bytes) => Outgoing::Send(Message::Binary(bytes.to_vec())),
        WireOutput::Close { code, reason } => Outgoing::Close {
            code,
            reason: reason.to_owned(),
        },
        WireOutput::Attachment(bytes) => Outgoing::Attachment(bytes.map(Arc::from)),
        WireOutput::AutoResponse(pair) => Outgoing::AutoResponse(auto(pair)),
    }
}
