//! The way out of a connection, shared by everyone who writes to it.
//!
//! A frame is written by whoever has it — the caller of a call on the client, the object
//! that finished a call on the server — without waiting and without handing it to another
//! task, when it is alone on the connection. When others are writing too, frames are queued
//! and the connection's writer task writes everything queued meanwhile in one go. Frames
//! never overtake each other: while the writer task holds queued bytes, every frame queues
//! behind them.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

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
    writer: Option<Arc<OwnedWriteHalf>>,
    /// Bytes for the writer task, in order.
    queued: Vec<u8>,
    /// The writer task owns the output until `queued` is empty.
    flushing: bool,
}

impl Outbox {
    /// An outbox on `writer`, and its writer task's future (spawn it).
    pub(crate) fn new(
        writer: OwnedWriteHalf,
    ) -> (
        Arc<Outbox>,
        impl std::future::Future<Output = io::Result<()>>,
    ) {
        let outbox = Arc::new(Outbox {
            state: Mutex::new(State {
                writer: Some(Arc::new(writer)),
                queued: Vec::new(),
                flushing: false,
            }),
            flush: Notify::new(),
            drained: Notify::new(),
            backlog: AtomicUsize::new(0),
        });
        (outbox.clone(), outbox.write_queued())
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
        let written = if alone && !state.flushing {
            match writer.try_write(frame) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => {
                    state.writer = None;
                    return Err(e);
                }
            }
        } else {
            0
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

    /// The writer task: writes what was queued, until the outbox closes (`Ok`) or the socket
    /// fails (`Err`; the outbox is closed then too).
    async fn write_queued(self: Arc<Self>) -> io::Result<()> {
        let mut batch = Vec::new();
        loop {
            let writer = {
                let mut state = self.lock();
                let Some(writer) = state.writer.clone() else {
                    return Ok(());
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
}
