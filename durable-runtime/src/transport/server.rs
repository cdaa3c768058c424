//! The server: serves a runtime's objects to other processes.
//!
//! One task accepts connections; one task per connection runs the handshake, then reads
//! frames, starts each call on its object and writes replies as they finish, in any order.
//! What it guarantees:
//! - a reply is written only once the object's output gate released it (the call's writes,
//!   and every earlier write of that object, are durable): the server awaits the same reply
//!   a local stub awaits;
//! - a slow object holds up no other call of the connection: calls run on their objects, and
//!   the connection task only starts them and collects their replies;
//! - at most `max_calls_in_flight` calls of one connection run at once; beyond it a call is
//!   answered [`Overloaded`](crate::ErrorKind::Overloaded) at once, unrun;
//! - a frame is never buffered beyond `max_frame_bytes`; a peer that sends garbage (a bad
//!   length, version or body, a request ID not above the previous one) loses its connection,
//!   and only it.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::frame::{self, CallFrame, ClientFrame, FrameBuffer, ReplyBody, ServerFrame};
use super::handshake;
use super::TransportConfig;
use crate::actor::Envelope;
use crate::class::DurableObject;
use crate::cycle;
use crate::error::{Error, Result};
use crate::id::{ObjectId, ID_BYTES};
use crate::namespace::NamespaceCore;
use crate::runtime::RuntimeShared;

/// How long a new connection may take to prove it holds the secret.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a call's reply becomes: the encoded output, or a runtime error.
pub(crate) type ReplyFuture = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// A finished request, ready to be written.
pub(crate) enum Answer {
    Output(Vec<u8>),
    Error(Error),
    Ids(Vec<[u8; ID_BYTES]>),
    Count(u64),
}

impl From<Result<Answer>> for Answer {
    fn from(result: Result<Answer>) -> Answer {
        result.unwrap_or_else(Answer::Error)
    }
}

/// A class as the server sees it: calls arrive as bytes, replies leave as bytes.
pub(crate) trait ServedClass: Send + Sync {
    /// Decodes and queues a call on its object; the future resolves to its reply once the
    /// output gate releases it.
    fn start_call(self: Arc<Self>, call: &CallFrame<'_>) -> Result<ReplyFuture>;

    /// The class's stored object IDs.
    fn list_ids(self: Arc<Self>) -> ReplyFuture;

    /// Deletes every object of the class.
    fn delete_all(self: Arc<Self>) -> ReplyFuture;
}

impl<T: DurableObject> ServedClass for NamespaceCore<T> {
    fn start_call(self: Arc<Self>, frame: &CallFrame<'_>) -> Result<ReplyFuture> {
        let id = ObjectId::from_wire(&self.class, frame.object, frame.name)?;
        let method = frame.method;
        let call = T::decode_call(method, frame.args)?;
        let deadline = frame
            .timeout_ms
            .map(|ms| Instant::now() + Duration::from_millis(ms));
        let chain = cycle::from_wire(&frame.chain)?;
        let (reply, rx) = oneshot::channel();
        self.send(
            &id,
            Envelope::Call {
                call,
                reply,
                deadline,
                chain,
            },
        )?;
        Ok(Box::pin(async move {
            match rx.await {
                Ok(Ok(output)) => {
                    let mut out = Vec::new();
                    match T::encode_output(&output, &mut out) {
                        Ok(()) => Answer::Output(out),
                        Err(e) => Answer::Error(e),
                    }
                }
                Ok(Err(e)) => Answer::Error(e),
                Err(_) => Answer::Error(Error::closed()),
            }
        }))
    }

    fn list_ids(self: Arc<Self>) -> ReplyFuture {
        let ids = self.stored_ids();
        Box::pin(async move { ids.map(Answer::Ids).into() })
    }

    fn delete_all(self: Arc<Self>) -> ReplyFuture {
        Box::pin(async move {
            NamespaceCore::delete_all(&self)
                .await
                .map(|n| Answer::Count(n as u64))
                .into()
        })
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
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = closing.changed() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                tokio::spawn(serve(stream, peer, runtime.clone(), config.clone()));
            }
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
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let mut buffer = FrameBuffer::new(config.max_frame_bytes);
    let handshake = handshake::server(&mut reader, &mut writer, &mut buffer, &config.secret);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(%peer, error = %e, "refused a connection at the handshake");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, "a connection did not finish its handshake in time");
            return;
        }
    }
    let mut connection = Connection {
        runtime,
        classes: HashMap::new(),
        in_flight: FuturesUnordered::new(),
        out: Vec::with_capacity(16 * 1024),
        last_request: None,
        max_in_flight: config.max_calls_in_flight,
        max_frame_bytes: config.max_frame_bytes,
    };
    if let Err(reason) = connection.run(&mut reader, &mut writer, &mut buffer).await {
        tracing::warn!(%peer, %reason, "closed a connection");
    }
    let _ = writer.shutdown().await;
}

struct Connection {
    runtime: Weak<RuntimeShared>,
    /// Classes already looked up, by tag: the runtime's registry is locked on a miss only.
    classes: HashMap<[u8; 8], Arc<dyn ServedClass>>,
    in_flight: FuturesUnordered<Request>,
    /// Replies encoded and not yet written.
    out: Vec<u8>,
    last_request: Option<u64>,
    max_in_flight: usize,
    max_frame_bytes: usize,
}

/// A request in flight: its ID and its answer to come.
struct Request {
    id: u64,
    answer: ReplyFuture,
}

impl Future for Request {
    type Output = (u64, Answer);

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let id = self.id;
        self.answer.as_mut().poll(cx).map(|answer| (id, answer))
    }
}

impl Connection {
    /// The connection's loop. `Err` names the protocol violation or I/O error that ended it;
    /// `Ok` when the peer closed or the runtime is closing (calls in flight are answered first).
    async fn run(
        &mut self,
        reader: &mut tokio::net::tcp::OwnedReadHalf,
        writer: &mut tokio::net::tcp::OwnedWriteHalf,
        buffer: &mut FrameBuffer,
    ) -> std::result::Result<(), String> {
        let mut closing = match self.runtime.upgrade() {
            Some(rt) => rt.watch_closing(),
            None => return Ok(()),
        };
        let mut open = !*closing.borrow();
        loop {
            while let Some(body) = buffer.next_frame().map_err(|e| e.to_string())? {
                self.handle(body)?;
            }
            while let Some(Some((id, answer))) = self.in_flight.next().now_or_never() {
                self.answer(id, answer);
            }
            if !self.out.is_empty() {
                writer
                    .write_all(&self.out)
                    .await
                    .map_err(|e| e.to_string())?;
                self.out.clear();
                continue;
            }
            if !open && self.in_flight.is_empty() {
                return Ok(());
            }
            let spare = buffer.spare().map_err(|e| e.to_string())?;
            tokio::select! {
                read = reader.read_buf(spare), if open => match read {
                    Ok(0) => {
                        // The peer left: its calls still run and commit, nobody waits for them.
                        return Ok(());
                    }
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                },
                Some((id, answer)) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.answer(id, answer);
                }
                _ = closing.changed(), if open => open = false,
            }
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
            other => return Err(format!("a {other:?} after the handshake")),
        };
        if self.last_request.is_some_and(|last| id <= last) {
            return Err(format!("request ID {id} is not above the previous one"));
        }
        self.last_request = Some(id);
        if self.in_flight.len() >= self.max_in_flight {
            self.answer(id, Answer::Error(Error::overloaded()));
            return Ok(());
        }
        let served = match self.class(class) {
            Ok(served) => served,
            Err(e) => {
                self.answer(id, Answer::Error(e));
                return Ok(());
            }
        };
        let started = match frame {
            ClientFrame::Call(call) => served.start_call(&call),
            ClientFrame::ListIds { .. } => Ok(served.list_ids()),
            ClientFrame::DeleteAll { .. } => Ok(served.delete_all()),
            _ => unreachable!("checked above"),
        };
        match started {
            Ok(answer) => self.in_flight.push(Request { id, answer }),
            Err(e) => self.answer(id, Answer::Error(e)),
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

    fn answer(&mut self, request: u64, mut answer: Answer) {
        if let Answer::Output(bytes) = &answer {
            // The frame's header and the reply's ID fit in 32 bytes.
            if bytes.len() + 32 > self.max_frame_bytes {
                answer = Answer::Error(Error::invalid_argument(format!(
                    "the reply is {} bytes, over the limit of {} bytes a frame may carry                      (RuntimeBuilder::max_frame_bytes); it ran, but its result cannot be sent",
                    bytes.len(),
                    self.max_frame_bytes
                )));
            }
        }
        let error;
        let body = match &answer {
            Answer::Output(bytes) => ReplyBody::Output(bytes),
            Answer::Error(e) => {
                error = frame::encode_error(e);
                ReplyBody::Error(&error)
            }
            Answer::Ids(ids) => ReplyBody::Ids(ids.clone()),
            Answer::Count(n) => ReplyBody::Count(*n),
        };
        if let Err(e) = frame::encode(&ServerFrame::Reply { request, body }, &mut self.out) {
            // Only a reply over 4 GiB can fail to encode: answer with the error instead.
            let error = frame::encode_error(&e);
            let body = ReplyBody::Error(&error);
            let _ = frame::encode(&ServerFrame::Reply { request, body }, &mut self.out);
        }
    }
}

fn class_tag(object: &[u8; ID_BYTES]) -> [u8; 8] {
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&object[..8]);
    tag
}
