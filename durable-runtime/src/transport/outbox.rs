//! The way out of a connection, shared by everyone who writes to it.
//!
//! A frame is written by whoever has it — the caller of a call on the client, the object
//! that finished a call on the server — without waiting and without handing it to another
//! task, when it is alone on the connection. When others are writing too, frames are queued
//! and the connection's writer task writes everything queued meanwhile in one go. Frames
//! never overtake each other: while the writer task holds queued bytes, every frame queues
//! behind them.
//!
//! On a TLS connection only the writer task writes (encrypting needs the stream's state, a
//! lone frame included): every frame is queued for it.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

use super::stream::WriteHalf;

/// How long closing a TLS connection may wait for the peer to take the close_notify.
#[cfg(feature = "tls")]
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// One connection's write half, its queue, and the writer task's wake-up.
pub(crate) struct Outbox {
    state: Mutex<State>,
    flush: Notify,
    /// Notified each time the writer task finished writing a batch.
    drained: Notify,
    /// Bytes handed to the writer task and not yet written (queued, or in its batch): read
    /// without the lock for every frame a server takes in.
    backlog: AtomicUsize,
}

struct State {
    /// `None` once closed: later frames are dropped. The writer task holds a clone only while
    /// it writes, so closing drops the last reference (and sends the end of the stream) at
    /// once, or right after the write in progress.
    writer: Option<Direct>,
    /// Bytes for the writer task, in order.
    queued: Vec<u8>,
    /// The writer task owns the output until `queued` is empty.
    flushing: bool,
}

/// How frames reach the socket, while the outbox is open.
#[derive(Clone)]
enum Direct {
    /// A plain TCP socket: whoever sends a lone frame writes it (`try_write`, which takes
    /// `&self`), the writer task writes the rest.
    Tcp(Arc<OwnedWriteHalf>),
    /// A TLS stream, owned by the writer task: every frame is queued for it.
    #[cfg(feature = "tls")]
    Queued,
}

/// The writer task's end of the connection.
enum Task {
    Tcp,
    #[cfg(feature = "tls")]
    Tls(tokio::io::WriteHalf<super::stream::TlsStream>),
}

impl Outbox {
    /// An outbox on `writer`, and its writer task's future (spawn it).
    pub(crate) fn new(
        writer: WriteHalf,
    ) -> (
        Arc<Outbox>,
        impl std::future::Future<Output = io::Result<()>>,
    ) {
        let (direct, task) = match writer {
            WriteHalf::Tcp(writer) => (Direct::Tcp(Arc::new(writer)), Task::Tcp),
            #[cfg(feature = "tls")]
            WriteHalf::Tls(writer) => (Direct::Queued, Task::Tls(writer)),
        };
        let outbox = Arc::new(Outbox {
            state: Mutex::new(State {
                writer: Some(direct),
                queued: Vec::new(),
                flushing: false,
            }),
            flush: Notify::new(),
            drained: Notify::new(),
            backlog: AtomicUsize::new(0),
        });
        let writes = outbox.clone();
        let write_queued = async move {
            match task {
                Task::Tcp => writes.write_queued().await,
                #[cfg(feature = "tls")]
                Task::Tls(writer) => writes.write_queued_tls(writer).await,
            }
        };
        (outbox, write_queued)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `frame`. With `alone` (no other frame of this connection is on its way), it is
    /// written at once if the socket takes it without waiting; otherwise it is queued for
    /// the writer task. `Err` if the connection is closed or its socket failed.
    pub(crate) fn send(&self, frame: &[u8], alone: bool) -> io::Result<()> {
        let mut state = self.lock();
        let Some(writer) = &state.writer else {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the connection is closed",
            ));
        };
        let written = match writer {
            Direct::Tcp(writer) if alone && !state.flushing => match writer.try_write(frame) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => {
                    state.writer = None;
                    return Err(e);
                }
            },
            _ => 0,
        };
        if let Some(rest) = frame.get(written..).filter(|rest| !rest.is_empty()) {
            state.queued.extend_from_slice(rest);
            self.backlog.fetch_add(rest.len(), Ordering::Relaxed);
            if !state.flushing {
                state.flushing = true;
                self.flush.notify_one();
            }
        }
        Ok(())
    }

    /// Bytes queued and not yet written: what a peer that does not read makes us hold.
    pub(crate) fn backlog(&self) -> usize {
        self.backlog.load(Ordering::Relaxed)
    }

    /// Waits until the backlog is at most `bytes` (or the outbox closed): a server stops
    /// reading calls from a peer that does not read its replies.
    pub(crate) async fn wait_backlog(&self, bytes: usize) {
        loop {
            let drained = self.drained.notified();
            if self.backlog() <= bytes || self.lock().writer.is_none() {
                return;
            }
            drained.await;
        }
    }

    /// Closes the output: queued and later frames are dropped, and the end of the stream is
    /// sent once the write in progress (if any) ends.
    pub(crate) fn close(&self) {
        self.lock().writer = None;
        self.flush.notify_one();
        self.drained.notify_waiters();
    }

    /// The writer task of a plain TCP connection: writes what was queued, until the outbox
    /// closes (`Ok`) or the socket fails (`Err`; the outbox is closed then too).
    async fn write_queued(self: Arc<Self>) -> io::Result<()> {
        let mut batch = Vec::new();
        loop {
            let writer = {
                let mut state = self.lock();
                let writer = match &state.writer {
                    Some(Direct::Tcp(writer)) => writer.clone(),
                    _ => return Ok(()),
                };
                if state.queued.is_empty() {
                    state.flushing = false;
                    None
                } else {
                    std::mem::swap(&mut batch, &mut state.queued);
                    Some(writer)
                }
            };
            let Some(writer) = writer else {
                self.flush.notified().await;
                continue;
            };
            let mut written = 0;
            while written < batch.len() {
                let result = match writer.writable().await {
                    Ok(()) => writer.try_write(&batch[written..]),
                    Err(e) => Err(e),
                };
                match result {
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => {
                        self.lock().writer = None;
                        return Err(e);
                    }
                }
            }
            self.backlog.fetch_sub(batch.len(), Ordering::Relaxed);
            self.drained.notify_waiters();
            batch.clear();
        }
    }

    /// The writer task of a TLS connection: owns the stream's write half, writes (encrypts
    /// and flushes) what was queued in batches, and closes the stream (TLS close_notify, then
    /// the end of the TCP stream) once the outbox closes.
    #[cfg(feature = "tls")]
    async fn write_queued_tls(
        self: Arc<Self>,
        mut writer: tokio::io::WriteHalf<super::stream::TlsStream>,
    ) -> io::Result<()> {
        use tokio::io::AsyncWriteExt;

        let mut batch = Vec::new();
        loop {
            let more = {
                let mut state = self.lock();
                if state.writer.is_none() {
                    break;
                }
                if state.queued.is_empty() {
                    state.flushing = false;
                    false
                } else {
                    std::mem::swap(&mut batch, &mut state.queued);
                    true
                }
            };
            if !more {
                self.flush.notified().await;
                continue;
            }
            let written = async {
                writer.write_all(&batch).await?;
                writer.flush().await
            };
            if let Err(e) = written.await {
                self.lock().writer = None;
                return Err(e);
            }
            self.backlog.fetch_sub(batch.len(), Ordering::Relaxed);
            self.drained.notify_waiters();
            batch.clear();
        }
        // A peer that reads nothing cannot hold the task here for long.
        match tokio::time::timeout(CLOSE_TIMEOUT, writer.shutdown()).await {
            Ok(result) => result,
            Err(_) => Ok(()),
        }
    }
}
