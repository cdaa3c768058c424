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
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket as AxumSocket};
use futures_util::SinkExt;
use tokio::sync::Notify;

use crate::error::ErrorKind;
use crate::sockets::{
    AutoResponse, HeldSockets, Outgoing, SocketEvent, SocketHolder, SocketId, SocketRecord,
    SocketTarget,
};
use crate::websocket::Message;

/// How many messages may wait for a client that reads slowly before its socket is closed
/// (1008, "client too slow").
pub(crate) const MAX_QUEUED_MESSAGES: usize = 1024;

/// How many bytes may wait for a client that reads slowly before its socket is closed.
pub(crate) const MAX_QUEUED_BYTES: usize = 8 * 1024 * 1024;

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
    wake: Notify,
}

impl HeldSocket {
    pub(crate) fn new(id: SocketId) -> Self {
        HeldSocket {
            id,
            state: Mutex::default(),
            wake: Notify::new(),
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

    /// The client's connection, upgraded: runs until it closes.
    pub(crate) async fn run(
        self: Arc<Self>,
        mut socket: AxumSocket,
        target: Arc<dyn SocketTarget>,
        held: Arc<HeldSockets>,
    ) {
        let _ticket = held.enter();
        let mut closing = held.watch();
        loop {
            if *closing.borrow_and_update() {
                // The runtime shuts down: the client and the object are told.
                let _ = socket.send(close_frame(1001, "going away")).await;
                let _ = target.event(self.id, close_event(1001, "going away")).await;
                return;
            }
            // What the object sent, first.
            let (output, overflow) = {
                let mut state = self.state();
                state.queued_bytes = 0;
                (std::mem::take(&mut state.queue), state.overflow)
            };
            if overflow {
                let _ = socket.send(close_frame(1008, "client too slow")).await;
                self.event(&*target, close_event(1006, "client too slow"))
                    .await;
                return;
            }
            // Written without a flush each, then flushed once.
            let mut written = false;
            for out in output {
                match out {
                    Outgoing::Send(message) => {
                        if socket.feed(to_axum(message)).await.is_err() {
                            self.event(&*target, close_event(1006, "")).await;
                            return;
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
                        return;
                    }
                    _ => {}
                }
            }
            if written && socket.flush().await.is_err() {
                self.event(&*target, close_event(1006, "")).await;
                return;
            }
            tokio::select! {
                received = socket.recv() => {
                    let event = match received {
                        Some(Ok(WsMessage::Text(text))) => {
                            let auto = self.state().auto_response.clone();
                            match auto {
                                Some(auto) if auto.request == text.as_str() => {
                                    if socket.send(WsMessage::text(auto.response.clone())).await.is_err() {
                                        close_event(1006, "")
                                    } else {
                                        continue;
                                    }
                                }
                                _ => SocketEvent::Message(Message::Text(text.to_string())),
                            }
                        }
                        Some(Ok(WsMessage::Binary(bytes))) => {
                            SocketEvent::Message(Message::Binary(bytes.to_vec()))
                        }
                        Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
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
                    match self.event(&*target, event).await {
                        Delivered::Yes if !closing => {}
                        Delivered::Yes => return,
                        Delivered::No { code, reason } => {
                            let _ = socket.send(close_frame(code, reason)).await;
                            return;
                        }
                    }
                }
                _ = self.wake.notified() => {}
                _ = closing.changed() => {}
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
                state.queued_bytes += message.len();
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
        self.wake.notify_one();
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
