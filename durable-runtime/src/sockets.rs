//! The WebSockets of one object, as the object sees them: [`ObjectSockets`].
//!
//! A socket is held by the runtime that accepted the client's HTTP connection (its *holder*:
//! this process, or a front end connected to it); the object keeps only its record here: its
//! ID, its tags, its attachment and the way to its holder. The record outlives the object's
//! actor, which is what hibernation is: an object whose sockets are idle is evicted like any
//! idle object, its namespace keeps its [`ObjectSockets`], and the next event (a message, a
//! close) activates the object again with every socket as it was.
//!
//! What an object sends (messages, closes) waits in [`ObjectSockets::take_output`] until the
//! step that sent it has committed: the actor has the output gate hold it with the step's
//! writes, so a client never sees a message that a crash could take back (as replies).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::error::{Error, Result};
use crate::websocket::{Message, MAX_SOCKETS_PER_OBJECT};

/// A socket's identity: unique across processes (a random per-process prefix and a
/// counter), so that records of sockets held by several front ends never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SocketId(pub(crate) [u8; 16]);

impl SocketId {
    /// A fresh ID.
    pub(crate) fn next() -> SocketId {
        static PREFIX: OnceLock<[u8; 8]> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let prefix = PREFIX.get_or_init(|| {
            let mut bytes = [0u8; 8];
            if getrandom::fill(&mut bytes).is_err() {
                // No random source: the clock still tells processes apart.
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                bytes = (nanos ^ u64::from(std::process::id())).to_le_bytes();
            }
            bytes
        });
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(prefix);
        id[8..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        SocketId(id)
    }
}

impl std::fmt::Display for SocketId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// What an object sends a socket's holder.
#[derive(Debug, Clone)]
pub(crate) enum Outgoing {
    /// The object accepted the socket (in the `fetch` that got its upgrade request).
    Accepted {
        tags: Arc<[String]>,
        auto_response: Option<Arc<AutoResponse>>,
    },
    /// A message for the client.
    Send(Message),
    /// Close the connection with this code and reason.
    Close { code: u16, reason: String },
    /// The socket's attachment changed (a front end keeps it, to tell a restarted object
    /// server).
    Attachment(Option<Arc<[u8]>>),
    /// The object's automatic response changed.
    AutoResponse(Option<Arc<AutoResponse>>),
}

/// A text message answered by the holder itself, without waking the object.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct AutoResponse {
    pub(crate) request: String,
    pub(crate) response: String,
}

/// What happens on a socket, for its object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SocketEvent {
    Message(Message),
    Close { code: u16, reason: String },
}

/// Where a socket's output goes: the runtime holding the client's connection.
pub(crate) trait SocketHolder: Send + Sync + 'static {
    /// Takes output for socket `id`, in order. Never blocks: the holder queues it (and closes
    /// a socket whose client reads too slowly).
    fn deliver(&self, id: SocketId, output: Outgoing);

    /// The socket's tags and attachment, once accepted: what a front end tells a restarted
    /// object server. `None` for holders that need not keep them.
    fn record(&self) -> Option<SocketRecord> {
        None
    }
}

/// What a front end keeps of a socket for its object: its tags and its attachment.
#[derive(Clone)]
pub(crate) struct SocketRecord {
    pub(crate) tags: Arc<[String]>,
    pub(crate) attachment: Option<Arc<[u8]>>,
}

/// Where a held socket's events go: the object that accepted it, in this process or across
/// a connection.
#[cfg_attr(not(feature = "axum"), allow(dead_code))] // used by `axum::forward`
pub(crate) trait SocketTarget: Send + Sync + 'static {
    /// Hands `event` to the object and resolves once the object has handled it (its writes
    /// submitted; what it sent still waits for them to be durable).
    fn event(
        &self,
        socket: SocketId,
        event: SocketEvent,
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + '_>>;
}

/// An upgrade request's socket, as offered to the object's `fetch`: set as an extension of
/// the request by the holder (or, across a connection, by the server for its peer).
#[derive(Clone)]
pub(crate) struct SocketOffer {
    pub(crate) id: SocketId,
    pub(crate) holder: Arc<dyn SocketHolder>,
    /// Set by the first accept: a socket is accepted once.
    pub(crate) taken: Arc<AtomicBool>,
}

impl SocketOffer {
    pub(crate) fn new(id: SocketId, holder: Arc<dyn SocketHolder>) -> Self {
        SocketOffer {
            id,
            holder,
            taken: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// Makes the holder of a socket offered by a request decoded now: set by a server while it
/// decodes a request to `fetch` from a front end (the front end holds the socket).
pub(crate) struct OfferSite(pub(crate) Box<dyn Fn(SocketId) -> Arc<dyn SocketHolder>>);

scoped_tls::scoped_thread_local!(pub(crate) static OFFER_SITE: OfferSite);

/// The record of one accepted socket.
pub(crate) struct SocketEntry {
    pub(crate) id: SocketId,
    pub(crate) holder: Arc<dyn SocketHolder>,
    pub(crate) tags: Arc<[String]>,
    pub(crate) attachment: Mutex<Option<Arc<[u8]>>>,
    /// Closed by the object or by its client: sends fail from then on.
    pub(crate) closed: AtomicBool,
}

impl SocketEntry {
    pub(crate) fn attachment(&self) -> Option<Arc<[u8]>> {
        self.attachment
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[derive(Default)]
struct State {
    open: HashMap<SocketId, Arc<SocketEntry>>,
    auto_response: Option<Arc<AutoResponse>>,
    /// Output of the running step, for the output gate.
    output: Vec<(Arc<dyn SocketHolder>, SocketId, Outgoing)>,
    /// Sockets accepted by the running step: forgotten again if its writes are discarded.
    accepted: Vec<SocketId>,
}

/// The sockets of one object. See the module documentation.
#[derive(Default)]
pub(crate) struct ObjectSockets {
    state: Mutex<State>,
    /// `!state.output.is_empty()`, readable without the lock: every call's reply asks
    /// whether it has output to release, and almost none has.
    pending: AtomicBool,
}

impl ObjectSockets {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `true` when the object has no open socket: nothing to keep while it hibernates.
    pub(crate) fn is_empty(&self) -> bool {
        self.state().open.is_empty()
    }

    /// How many sockets are open.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state().open.len()
    }

    /// Records an accepted socket.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` when the object already has [`MAX_SOCKETS_PER_OBJECT`] sockets or
    /// the offer was accepted before.
    pub(crate) fn accept(
        &self,
        offer: &SocketOffer,
        tags: Arc<[String]>,
    ) -> Result<Arc<SocketEntry>> {
        let mut state = self.state();
        if state.open.len() >= MAX_SOCKETS_PER_OBJECT {
            return Err(Error::invalid_argument(format!(
                "the object has {MAX_SOCKETS_PER_OBJECT} WebSockets open, the most one object may hold"
            )));
        }
        if offer.taken.swap(true, Ordering::AcqRel) {
            return Err(Error::invalid_argument(
                "this request's WebSocket was accepted already",
            ));
        }
        let entry = Arc::new(SocketEntry {
            id: offer.id,
            holder: offer.holder.clone(),
            tags: tags.clone(),
            attachment: Mutex::new(None),
            closed: AtomicBool::new(false),
        });
        state.open.insert(offer.id, entry.clone());
        state.accepted.push(offer.id);
        let auto_response = state.auto_response.clone();
        state.output.push((
            offer.holder.clone(),
            offer.id,
            Outgoing::Accepted {
                tags,
                auto_response,
            },
        ));
        self.pending.store(true, Ordering::Release);
        Ok(entry)
    }

    /// Records a socket that a front end holds already (it tells a restarted object server
    /// of its sockets).
    pub(crate) fn adopt(&self, entry: Arc<SocketEntry>) -> Result<()> {
        let mut state = self.state();
        if state.open.contains_key(&entry.id) {
            return Ok(());
        }
        if state.open.len() >= MAX_SOCKETS_PER_OBJECT {
            return Err(Error::invalid_argument(format!(
                "the object has {MAX_SOCKETS_PER_OBJECT} WebSockets open, the most one object may hold"
            )));
        }
        state.open.insert(entry.id, entry);
        Ok(())
    }

    /// The open socket `id`, if any.
    pub(crate) fn get(&self, id: SocketId) -> Option<Arc<SocketEntry>> {
        self.state().open.get(&id).cloned()
    }

    /// The open sockets, those with `tag` if given.
    pub(crate) fn list(&self, tag: Option<&str>) -> Vec<Arc<SocketEntry>> {
        let state = self.state();
        state
            .open
            .values()
            .filter(|e| tag.is_none_or(|tag| e.tags.iter().any(|t| t == tag)))
            .cloned()
            .collect()
    }

    /// Forgets a socket its client closed (before the object's `websocket_close` runs).
    pub(crate) fn remove(&self, id: SocketId) -> Option<Arc<SocketEntry>> {
        let entry = self.state().open.remove(&id)?;
        entry.closed.store(true, Ordering::Release);
        Some(entry)
    }

    /// Queues output for an open socket, to leave once the running step is durable.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if the socket is closed.
    pub(crate) fn push(&self, entry: &SocketEntry, output: Outgoing) -> Result<()> {
        let mut state = self.state();
        if entry.closed.load(Ordering::Acquire) {
            return Err(Error::invalid_argument(format!(
                "WebSocket {} is closed",
                entry.id
            )));
        }
        if let Outgoing::Close { .. } = output {
            entry.closed.store(true, Ordering::Release);
            state.open.remove(&entry.id);
        }
        state.output.push((entry.holder.clone(), entry.id, output));
        self.pending.store(true, Ordering::Release);
        Ok(())
    }

    /// Sets (or clears) the automatic response, telling every socket's holder.
    pub(crate) fn set_auto_response(&self, auto: Option<AutoResponse>) {
        let mut state = self.state();
        let auto = auto.map(Arc::new);
        if state.auto_response == auto {
            return;
        }
        state.auto_response = auto.clone();
        let entries: Vec<_> = state.open.values().cloned().collect();
        for entry in entries {
            state.output.push((
                entry.holder.clone(),
                entry.id,
                Outgoing::AutoResponse(auto.clone()),
            ));
            self.pending.store(true, Ordering::Release);
        }
    }

    /// The output of the step that just committed, with no more accepts to roll back.
    pub(crate) fn take_output(&self) -> Vec<(Arc<dyn SocketHolder>, SocketId, Outgoing)> {
        let mut state = self.state();
        state.accepted.clear();
        self.pending.store(false, Ordering::Release);
        std::mem::take(&mut state.output)
    }

    /// Whether the running step produced output.
    pub(crate) fn has_output(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// The running step's writes were discarded (it panicked): so is its output, and the
    /// sockets it accepted are forgotten (their holders see the upgrade fail).
    pub(crate) fn discard_output(&self) {
        let mut state = self.state();
        state.output.clear();
        self.pending.store(false, Ordering::Release);
        for id in std::mem::take(&mut state.accepted) {
            if let Some(entry) = state.open.remove(&id) {
                entry.closed.store(true, Ordering::Release);
            }
        }
    }
}

/// The WebSockets a runtime holds (for objects here, or across its connection): told to
/// close (1001) when the runtime shuts down, and awaited for a moment so that their close
/// frames leave before the process does.
#[derive(Default)]
pub(crate) struct HeldSockets {
    closing: AtomicBool,
    /// Notified (all waiters) when `closing` is set.
    close: Arc<tokio::sync::Notify>,
    live: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

/// One held socket, counted while it runs.
#[cfg_attr(not(feature = "axum"), allow(dead_code))] // used by `axum::forward`
pub(crate) struct HeldTicket(Arc<HeldSockets>);

impl Drop for HeldTicket {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

pin_project_lite::pin_project! {
    /// Resolves when the runtime holding the socket shuts down.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))] // used by `axum::forward`
    pub(crate) struct Closing {
        held: Arc<HeldSockets>,
        #[pin]
        notified: tokio::sync::futures::OwnedNotified,
    }
}

impl Future for Closing {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        let mut this = self.project();
        // Registered first, then the flag checked: a close in between is not missed.
        this.notified.as_mut().enable();
        if this.held.closing.load(Ordering::Acquire) {
            return std::task::Poll::Ready(());
        }
        this.notified.poll(cx)
    }
}

impl HeldSockets {
    /// A socket starts running: counted until the ticket drops.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))] // used by `axum::forward`
    pub(crate) fn enter(self: &Arc<Self>) -> HeldTicket {
        self.live.fetch_add(1, Ordering::AcqRel);
        HeldTicket(self.clone())
    }

    /// How many sockets run now.
    pub(crate) fn count(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Resolves when the runtime shuts down.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))] // used by `axum::forward`
    pub(crate) fn closing(self: &Arc<Self>) -> Closing {
        Closing {
            held: self.clone(),
            notified: self.close.clone().notified_owned(),
        }
    }

    /// Tells every socket to close, and waits until they did, for at most `within`.
    pub(crate) async fn close_all(&self, within: std::time::Duration) {
        self.closing.store(true, Ordering::Release);
        self.close.notify_waiters();
        let _ = tokio::time::timeout(within, async {
            loop {
                let idle = self.idle.notified();
                if self.live.load(Ordering::Acquire) == 0 {
                    return;
                }
                idle.await;
            }
        })
        .await;
    }
}

/// How long a shutdown waits for held sockets to send their closes.
pub(crate) const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Delivers released output to the holders, in order.
pub(crate) fn deliver(output: Vec<(Arc<dyn SocketHolder>, SocketId, Outgoing)>) {
    for (holder, id, out) in output {
        holder.deliver(id, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::websocket::{check_tags, MAX_TAGS, MAX_TAG_BYTES};

    /// A holder that records what it is given.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(SocketId, Outgoing)>>);

    impl SocketHolder for Recorder {
        fn deliver(&self, id: SocketId, output: Outgoing) {
            self.0.lock().unwrap().push((id, output));
        }
    }

    fn offer(holder: &Arc<Recorder>) -> SocketOffer {
        SocketOffer::new(SocketId::next(), holder.clone())
    }

    #[test]
    fn an_object_holds_at_most_max_sockets() {
        let holder = Arc::new(Recorder::default());
        let sockets = ObjectSockets::default();
        let tags: Arc<[String]> = Arc::from(Vec::new());
        for _ in 0..MAX_SOCKETS_PER_OBJECT {
            sockets.accept(&offer(&holder), tags.clone()).unwrap();
        }
        let err = sockets.accept(&offer(&holder), tags.clone()).err().unwrap();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
        assert!(err.to_string().contains("32768"), "{err}");
        assert_eq!(sockets.len(), MAX_SOCKETS_PER_OBJECT);
        // One closes: there is room again.
        let first = sockets.list(None).pop().unwrap();
        sockets.remove(first.id);
        sockets.accept(&offer(&holder), tags).unwrap();
    }

    #[test]
    fn an_offer_is_accepted_once() {
        let holder = Arc::new(Recorder::default());
        let sockets = ObjectSockets::default();
        let offer = offer(&holder);
        sockets.accept(&offer, Arc::from(Vec::new())).unwrap();
        let err = sockets.accept(&offer, Arc::from(Vec::new())).err().unwrap();
        assert!(err.to_string().contains("accepted already"), "{err}");
    }

    #[test]
    fn tags_are_bounded_in_number_and_length() {
        let ok = vec!["t"; MAX_TAGS];
        assert_eq!(check_tags(&ok).unwrap().len(), MAX_TAGS);
        let too_many = vec!["t"; MAX_TAGS + 1];
        assert!(check_tags(&too_many).is_err());
        let long = "x".repeat(MAX_TAG_BYTES);
        assert!(check_tags(&[long.as_str()]).is_ok());
        let too_long = "x".repeat(MAX_TAG_BYTES + 1);
        assert!(check_tags(&[too_long.as_str()]).is_err());
        assert!(check_tags(&[""]).is_err());
    }

    #[test]
    fn output_waits_for_the_step_and_a_discarded_step_forgets_its_accepts() {
        let holder = Arc::new(Recorder::default());
        let sockets = Arc::new(ObjectSockets::default());
        let entry = sockets
            .accept(&offer(&holder), Arc::from(Vec::new()))
            .unwrap();
        let ws = crate::websocket::WebSocket::new(entry, sockets.clone());
        ws.send("hello").unwrap();
        // Nothing leaves before the step's output is taken (the actor does, once durable).
        assert!(holder.0.lock().unwrap().is_empty());
        let output = sockets.take_output();
        assert_eq!(output.len(), 2); // Accepted, then the message
        deliver(output);
        assert_eq!(holder.0.lock().unwrap().len(), 2);

        // A step that panics: its accept is forgotten, its output dropped.
        let entry = sockets
            .accept(&offer(&holder), Arc::from(Vec::new()))
            .unwrap();
        let late = crate::websocket::WebSocket::new(entry, sockets.clone());
        late.send("never").unwrap();
        sockets.discard_output();
        assert!(!sockets.has_output());
        assert_eq!(sockets.len(), 1);
        assert!(late.is_closed());
        assert!(late.send("closed").is_err());
    }

    #[test]
    fn attachments_and_close_codes_are_checked() {
        let holder = Arc::new(Recorder::default());
        let sockets = Arc::new(ObjectSockets::default());
        let entry = sockets
            .accept(&offer(&holder), Arc::from(Vec::new()))
            .unwrap();
        let ws = crate::websocket::WebSocket::new(entry, sockets.clone());
        ws.serialize_attachment(&"small").unwrap();
        assert_eq!(
            ws.deserialize_attachment::<String>().unwrap().unwrap(),
            "small"
        );
        let big = vec![7u8; crate::websocket::MAX_ATTACHMENT_BYTES];
        let err = ws.serialize_attachment(&big).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::ValueTooLarge);
        assert_eq!(
            ws.deserialize_attachment::<String>().unwrap().unwrap(),
            "small"
        );
        assert!(ws.close(1006, "").is_err());
        assert!(ws.close(4000, &"r".repeat(124)).is_err());
        ws.close(4000, "bye").unwrap();
        assert!(ws.is_closed());
        assert_eq!(sockets.len(), 0);
    }
}
