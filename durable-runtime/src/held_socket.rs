//! The WebSockets this runtime holds for objects: [`HeldSocket`], one per client
//! connection upgraded by `axum::forward`.
//!
//! The holder runs one task per socket. It reads the client's frames and hands each to the
//! object as an event ([`SocketTarget`]), waiting until the object has handled it before
//! reading the next (so events reach the object in order, and a client that sends faster
//! than its object handles is slowed by TCP, not buffered here). It writes what the object
//! sends, which the object's output gate delivers through [`SocketHolder::deliver`] once it
//! is durable.
//!
//! An idle socket costs its task, its connection's buffers and this record: no queue is
//! allocated until there is something to write.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket as AxumSocket};
use futures_util::task::AtomicWaker;
use futures_util::{SinkExt, StreamExt};

use crate::error::ErrorKind;
use crate::sockets::{
    AutoResponse, Closing, HeldSockets, HeldTicket, Outgoing, SocketEvent, SocketHolder, SocketId,
    SocketRecord, SocketTarget,
};
use crate::stub::SocketRegistration;
use crate::websocket::Message;

/// How many messages may wait for a client that reads slowly before its socket is closed
/// (1008, "client too slow"). A busy room sends in bursts (a join is announced to every
/// member): the bound is for a client that stopped reading, not one a burst got ahead of.
pub(crate) const MAX_QUEUED_MESSAGES: usize = 65_536;

/// How many bytes may wait for a client that reads slowly before its socket is closed
/// (each message counted with its bookkeeping).
pub(crate) const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;

/// What a queued message costs beyond its payload.
const QUEUED_OVERHEAD: usize = 64;

/// How long a socket keeps trying to hand an event to an object that is overloaded or out
/// of reach (restarting) before it closes the socket (1011, or 1001 on shutdown).
const EVENT_PATIENCE: Duration = Duration::from_secs(30);

/// How long to wait for the client's answer to a close the object made.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct State {
    queue: VecDeque<Outgoing>,
    queued_bytes: usize,
    accepted: bool,
    /// Too much output waited: the socket closes.
    overflow: bool,
    auto_response: Option<Arc<AutoResponse>>,
    /// The tags and attachment, kept for a restarted object server (across a connection).
    tags: Option<Arc<[String]>>,
    attachment: Option<Arc<[u8]>>,
}

/// One socket held for an object. See the module documentation.
pub(crate) struct HeldSocket {
    pub(crate) id: SocketId,
    state: Mutex<State>,
    /// The socket's task, woken when output arrives.
    wake: AtomicWaker,
}

impl HeldSocket {
    pub(crate) fn new(id: SocketId) -> Self {
        HeldSocket {
            id,
            state: Mutex::default(),
            wake: AtomicWaker::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the object accepted the socket (its acceptance was released by the output
    /// gate, which releases it before the reply of the `fetch` that accepted it).
    pub(crate) fn is_accepted(&self) -> bool {
        self.state().accepted
    }

    /// The client's connection, upgraded: the task that serves it until it closes.
    pub(crate) fn run(
        self: Arc<Self>,
        socket: AxumSocket,
        target: Arc<dyn SocketTarget>,
        held: &Arc<HeldSockets>,
        registration: Option<SocketRegistration>,
    ) -> SocketTask {
        SocketTask {
            closing: held.closing(),
            _ticket: held.enter(),
            held: self,
            socket: Some(socket),
            target,
            step: None,
            _registration: registration,
        }
    }

    fn has_output(&self) -> bool {
        let state = self.state();
        state.overflow || !state.queue.is_empty()
    }

    /// Shutdown: closes the client's connection with 1001 and tells the object.
    async fn go_away(
        &self,
        mut socket: AxumSocket,
        target: &dyn SocketTarget,
    ) -> Option<AxumSocket> {
        let _ = socket.send(close_frame(1001, "going away")).await;
        let _ = target.event(self.id, close_event(1001, "going away")).await;
        None
    }

    /// Writes what the object sent. The socket back, or `None` when it is done.
    async fn write_output(
        &self,
        mut socket: AxumSocket,
        target: &dyn SocketTarget,
    ) -> Option<AxumSocket> {
        let (output, overflow) = {
            let mut state = self.state();
            state.queued_bytes = 0;
            (std::mem::take(&mut state.queue), state.overflow)
        };
        if overflow {
            let _ = socket.send(close_frame(1008, "client too slow")).await;
            self.event(target, close_event(1006, "client too slow"))
                .await;
            return None;
        }
        // Written without a flush each, then flushed once.
        let mut written = false;
        for out in output {
            match out {
                Outgoing::Send(message) => {
                    if socket.feed(to_axum(message)).await.is_err() {
                        self.event(target, close_event(1006, "")).await;
                        return None;
                    }
                    written = true;
                }
                Outgoing::Close { code, reason } => {
                    // The object closed it and forgot it: no event goes back.
                    let _ = socket.send(close_frame(code, &reason)).await;
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                        while let Some(Ok(_)) = socket.recv().await {}
                    })
                    .await;
                    return None;
                }
                _ => {}
            }
        }
        if written && socket.flush().await.is_err() {
            self.event(target, close_event(1006, "")).await;
            return None;
        }
        Some(socket)
    }

    /// Handles what the client sent (or that it is gone). The socket back, or `None` when
    /// it is done.
    async fn received(
        &self,
        received: Option<Result<WsMessage, axum::Error>>,
        mut socket: AxumSocket,
        target: &dyn SocketTarget,
    ) -> Option<AxumSocket> {
        let event = match received {
            Some(Ok(WsMessage::Text(text))) => {
                let auto = self.state().auto_response.clone();
                match auto {
                    Some(auto) if auto.request == text.as_str() => {
                        if socket
                            .send(WsMessage::text(auto.response.clone()))
                            .await
                            .is_ok()
                        {
                            return Some(socket);
                        }
                        close_event(1006, "")
                    }
                    _ => SocketEvent::Message(Message::Text(text.to_string())),
                }
            }
            Some(Ok(WsMessage::Binary(bytes))) => {
                SocketEvent::Message(Message::Binary(bytes.to_vec()))
            }
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => return Some(socket),
            Some(Ok(WsMessage::Close(frame))) => match frame {
                Some(frame) => close_event(frame.code, frame.reason.as_str()),
                None => close_event(1005, ""),
            },
            Some(Err(err)) => {
                if is_too_big(&err) {
                    let _ = socket.send(close_frame(1009, "message too big")).await;
                    close_event(1009, "message too big")
                } else {
                    close_event(1006, "")
                }
            }
            None => close_event(1006, ""),
        };
        let closing = matches!(event, SocketEvent::Close { .. });
        match self.event(target, event).await {
            Delivered::Yes if !closing => Some(socket),
            Delivered::Yes => None,
            Delivered::No { code, reason } => {
                let _ = socket.send(close_frame(code, reason)).await;
                None
            }
        }
    }

    /// Hands an event to the object, waiting out overload and lost connections for a while.
    async fn event(&self, target: &dyn SocketTarget, event: SocketEvent) -> Delivered {
        let give_up = Instant::now() + EVENT_PATIENCE;
        let mut pause = Duration::from_millis(10);
        loop {
            let err = match target.event(self.id, event.clone()).await {
                Ok(()) => return Delivered::Yes,
                Err(err) => err,
            };
            let waitable = err.is_overloaded()
                || err.kind() == ErrorKind::Disconnected
                || err.kind() == ErrorKind::Storage;
            if err.kind() == ErrorKind::Closed {
                return Delivered::No {
                    code: 1001,
                    reason: "going away",
                };
            }
            if !waitable {
                // The handler failed (a panic, a broken peer): the event is lost; the
                // socket goes on.
                tracing::warn!(socket = %self.id, error = %err, "a WebSocket event failed");
                return Delivered::Yes;
            }
            if Instant::now() + pause > give_up {
                tracing::warn!(socket = %self.id, error = %err, "a WebSocket's object stayed out of reach; closing it");
                return Delivered::No {
                    code: 1011,
                    reason: "object unavailable",
                };
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
}

/// A step of a socket's task, owning the socket while it runs; it gives it back, or `None`
/// when the socket is done.
type Step = Pin<Box<dyn Future<Output = Option<AxumSocket>> + Send>>;

pin_project_lite::pin_project! {
    /// The task of one held socket. Written by hand rather than as an `async fn`: an idle
    /// socket's task is this struct and nothing more (the socket, a few handles, and the
    /// shutdown wait), while each step (writing, handling a frame) runs boxed, with the
    /// socket moved into it.
    pub(crate) struct SocketTask {
        held: Arc<HeldSocket>,
        socket: Option<AxumSocket>,
        target: Arc<dyn SocketTarget>,
        step: Option<Step>,
        _ticket: HeldTicket,
        _registration: Option<SocketRegistration>,
        #[pin]
        closing: Closing,
    }
}

impl Future for SocketTask {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        loop {
            if let Some(step) = this.step.as_mut() {
                match step.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(None) => return Poll::Ready(()),
                    Poll::Ready(Some(socket)) => {
                        *this.step = None;
                        *this.socket = Some(socket);
                    }
                }
            }
            let Some(mut socket) = this.socket.take() else {
                return Poll::Ready(());
            };
            let (held, target) = (this.held.clone(), this.target.clone());
            if this.closing.as_mut().poll(cx).is_ready() {
                // The runtime shuts down: the client and the object are told.
                *this.step = Some(Box::pin(
                    async move { held.go_away(socket, &*target).await },
                ));
                continue;
            }
            this.held.wake.register(cx.waker());
            if this.held.has_output() {
                *this.step = Some(Box::pin(async move {
                    held.write_output(socket, &*target).await
                }));
                continue;
            }
            match socket.poll_next_unpin(cx) {
                Poll::Ready(received) => {
                    *this.step = Some(Box::pin(async move {
                        held.received(received, socket, &*target).await
                    }));
                }
                Poll::Pending => {
                    *this.socket = Some(socket);
                    return Poll::Pending;
                }
            }
        }
    }
}

enum Delivered {
    Yes,
    /// Close the client's connection with this code.
    No {
        code: u16,
        reason: &'static str,
    },
}

impl SocketHolder for HeldSocket {
    fn deliver(&self, _id: SocketId, output: Outgoing) {
        let mut state = self.state();
        match output {
            Outgoing::Accepted {
                tags,
                auto_response,
            } => {
                state.accepted = true;
                state.auto_response = auto_response;
                state.tags = Some(tags);
                return;
            }
            Outgoing::AutoResponse(auto) => {
                state.auto_response = auto;
                return;
            }
            Outgoing::Attachment(attachment) => {
                state.attachment = attachment;
                return;
            }
            Outgoing::Send(ref message) => {
                state.queued_bytes += message.len() + QUEUED_OVERHEAD;
                if state.queue.len() >= MAX_QUEUED_MESSAGES || state.queued_bytes > MAX_QUEUED_BYTES
                {
                    state.overflow = true;
                    state.queue = VecDeque::new();
                } else if !state.overflow {
                    state.queue.push_back(output);
                }
            }
            Outgoing::Close { .. } => state.queue.push_back(output),
        }
        drop(state);
        self.wake.wake();
    }

    fn record(&self) -> Option<SocketRecord> {
        let state = self.state();
        Some(SocketRecord {
            tags: state.tags.clone()?,
            attachment: state.attachment.clone(),
        })
    }
}

fn close_event(code: u16, reason: &str) -> SocketEvent {
    SocketEvent::Close {
        code,
        reason: reason.to_owned(),
    }
}

fn close_frame(code: u16, reason: &str) -> WsMessage {
    WsMessage::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

fn to_axum(message: Message) -> WsMessage {
    match message {
        Message::Text(text) => WsMessage::text(text),
        Message::Binary(bytes) => WsMessage::binary(bytes),
    }
}

/// A message or frame over the size limit.
fn is_too_big(err: &axum::Error) -> bool {
    // axum wraps tungstenite's error; its text names the capacity problem.
    let text = err.to_string();
    text.contains("Space limit exceeded") || text.contains("too long") || text.contains("Capacity")
}
