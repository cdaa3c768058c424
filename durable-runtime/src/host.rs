//! The host: what a runtime that holds objects gives the classes it holds. Its storage, its
//! output gate, its settings and counters, and its lifecycle (whether it is closing, how many
//! actors are still running).
//!
//! The runtime owns it and every class's namespace core shares it; nothing else holds it.
//! What runs or reaches objects sees a narrower seam instead, defined by the module that
//! needs it (as a tokio task knows its scheduler only through `Schedule`), and implemented by
//! the namespace core or the runtime:
//! - an actor sees its namespace as an `ActorHost` (actor.rs);
//! - an object's `Context` sees its runtime as a `Directory` (context.rs);
//! - a stub sees a class of this process as a `LocalClass` (stub.rs);
//! - the alarm scheduler sees its class as an `AlarmTarget` (alarm.rs).
//!
//! This module depends on none of them, nor on the runtime or the namespaces: so the import
//! graph of alarm, context, namespace, actor, runtime and stub has no cycle.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::cluster::{Ownership, Router};
use crate::commit::OutputGate;
use crate::error::{Error, Result};
use crate::sockets::HeldSockets;
use crate::storage::Backend;

/// Settings fixed when the runtime opens.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) idle_timeout: Duration,
    pub(crate) alarm_backoff: Duration,
    pub(crate) alarm_retries: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            idle_timeout: Duration::from_secs(70),
            alarm_backoff: Duration::from_secs(2),
            alarm_retries: 6,
        }
    }
}

/// A monotonic counter of [`Metrics`](crate::Metrics).
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The runtime's counters, bumped by actors and namespaces, read by
/// [`Runtime::metrics`](crate::Runtime::metrics).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) calls: Counter,
    pub(crate) activations: Counter,
    pub(crate) evictions: Counter,
    pub(crate) overloads: Counter,
    pub(crate) alarm_runs: Counter,
    pub(crate) alarm_failures: Counter,
    pub(crate) socket_events: Counter,
}

/// What the classes of a runtime that holds objects share. See the module documentation.
pub(crate) struct Host {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) gate: OutputGate,
    pub(crate) config: Config,
    pub(crate) metrics: Counters,
    closing: watch::Sender<bool>,
    closed: AtomicBool,
    tokio: Option<tokio::runtime::Handle>,
    live_actors: AtomicUsize,
    actors_idle: Notify,
    /// The WebSockets held here for this runtime's objects.
    pub(crate) held: Arc<HeldSockets>,
    /// Cluster mode: the shards this node owns, and under which terms.
    pub(crate) ownership: Option<Arc<Ownership>>,
    /// Cluster mode: where calls to the objects of other nodes' shards go.
    pub(crate) router: Option<Arc<Router>>,
}

impl Host {
    /// A host for a runtime opening now: the tokio runtime at hand, if any, runs the actors
    /// of calls made from outside one.
    pub(crate) fn new(backend: Arc<dyn Backend>, gate: OutputGate, config: Config) -> Self {
        Host {
            backend,
            gate,
            config,
            metrics: Counters::default(),
            closing: watch::Sender::new(false),
            closed: AtomicBool::new(false),
            tokio: tokio::runtime::Handle::try_current().ok(),
            live_actors: AtomicUsize::new(0),
            actors_idle: Notify::new(),
            held: Arc::default(),
            ownership: None,
            router: None,
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Changes (to `true`) when the runtime stops taking calls.
    pub(crate) fn watch_closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    pub(crate) fn tokio_handle(&self) -> Result<tokio::runtime::Handle> {
        tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| self.tokio.clone())
            .ok_or_else(|| {
                Error::config(
                    "calls need a tokio runtime: call from async code running on tokio, \
                     or open the durable runtime inside one",
                )
            })
    }

    pub(crate) fn actor_started(&self) {
        self.live_actors.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn actor_exited(&self) {
        if self.live_actors.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.actors_idle.notify_waiters();
        }
    }

    /// Stops taking calls: from now on [`is_closed`](Self::is_closed), and every
    /// [`watch_closing`](Self::watch_closing) sees the change.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.closing.send_replace(true);
    }

    /// Resolves once no actor is running.
    pub(crate) async fn actors_exited(&self) {
        loop {
            let idle = self.actors_idle.notified();
            if self.live_actors.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Runs a read of the backend: in place, or on a blocking thread when the backend's reads
    /// cross a network (so that no async worker waits on it).
    pub(crate) async fn read_backend<R: Send + 'static>(
        &self,
        read: impl FnOnce(&dyn Backend) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        if self.backend.object_cache_bytes().is_none() {
            return read(&*self.backend);
        }
        let backend = self.backend.clone();
        tokio::task::spawn_blocking(move || read(&*backend))
            .await
            .map_err(|e| Error::internal(format!("a storage read failed to run: {e}")))?
    }

    /// Commits and syncs the queued writes, then releases the storage.
    pub(crate) fn close_storage(&self) -> Result<()> {
        self.gate.close();
        self.backend.close()
    }
}
