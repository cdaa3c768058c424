//! The runtime: owns the storage backend, the output gate and every class's namespace.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::class::DurableObject;
use crate::commit::OutputGate;
use crate::error::{Error, Result};
use crate::namespace::{Namespace, NamespaceCore};
use crate::storage::{Backend, Durability, FjallBackend, MemoryBackend};

trait ClassControl: Send + Sync {
    fn close_mailboxes(&self);
    fn live_count(&self) -> usize;
}

impl<T: DurableObject> ClassControl for NamespaceCore<T> {
    fn close_mailboxes(&self) {
        NamespaceCore::close_mailboxes(self)
    }

    fn live_count(&self) -> usize {
        NamespaceCore::live_count(self)
    }
}

#[derive(Default)]
struct Registry {
    by_type: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    by_name: HashMap<&'static str, (TypeId, &'static str)>,
    classes: Vec<Arc<dyn ClassControl>>,
}

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

/// A monotonic counter of [`Metrics`].
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) calls: Counter,
    pub(crate) activations: Counter,
    pub(crate) evictions: Counter,
    pub(crate) overloads: Counter,
    pub(crate) alarm_runs: Counter,
    pub(crate) alarm_failures: Counter,
}

/// A snapshot of the runtime's counters, from [`Runtime::metrics`]. Counts are since the
/// runtime opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Metrics {
    /// Calls run (shared and exclusive; alarm runs not included).
    pub calls: u64,
    /// Instances built (`new` + `on_activate`): first calls, after eviction, after a reset.
    pub activations: u64,
    /// Objects evicted after their idle timeout.
    pub evictions: u64,
    /// Calls refused because an object's queue was full.
    pub overloads: u64,
    /// Alarm handler runs (retries included).
    pub alarm_runs: u64,
    /// Alarm handler runs that failed (error or panic).
    pub alarm_failures: u64,
    /// Objects live in memory now (activated, not evicted).
    pub live_objects: u64,
    /// Syncs of storage completed (each covers every write committed before it).
    pub syncs: u64,
}

/// State shared by the runtime, its namespaces, stubs and objects.
pub(crate) struct RuntimeShared {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) gate: OutputGate,
    pub(crate) env: Option<Arc<dyn Any + Send + Sync>>,
    pub(crate) config: Config,
    pub(crate) metrics: Counters,
    closing: watch::Sender<bool>,
    closed: AtomicBool,
    registry: Mutex<Registry>,
    tokio: Option<tokio::runtime::Handle>,
    live_actors: AtomicUsize,
    actors_idle: Notify,
}

impl RuntimeShared {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Changes (to `true`) when the runtime stops taking calls.
    pub(crate) fn watch_closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
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

    pub(crate) fn namespace<T: DurableObject>(self: &Arc<Self>) -> Result<Namespace<T>> {
        let mut registry = self.registry();
        if let Some(core) = registry.by_type.get(&TypeId::of::<T>()) {
            if let Ok(core) = core.clone().downcast::<NamespaceCore<T>>() {
                return Ok(Namespace::from_core(core));
            }
        }
        let options = T::class_options();
        let type_name = std::any::type_name::<T>();
        if let Some((_, other)) = registry.by_name.get(options.name) {
            return Err(Error::config(format!(
                "two classes are named `{}`: `{other}` and `{type_name}`; give one another \
                 name with #[durable_object(name = \"...\")]",
                options.name
            )));
        }
        let core = Arc::new(NamespaceCore::<T>::new(options, self.clone())?);
        registry
            .by_name
            .insert(options.name, (TypeId::of::<T>(), type_name));
        registry.by_type.insert(TypeId::of::<T>(), core.clone());
        registry.classes.push(core.clone());
        Ok(Namespace::from_core(core))
    }

    pub(crate) fn actor_started(&self) {
        self.live_actors.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn actor_exited(&self) {
        if self.live_actors.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.actors_idle.notify_waiters();
        }
    }

    /// Stops taking calls: closes every mailbox and forgets the namespaces (which breaks the
    /// reference cycle runtime → namespace → runtime).
    fn stop_taking_calls(&self) {
        self.closed.store(true, Ordering::Release);
        self.closing.send_replace(true);
        let classes = std::mem::take(&mut *self.registry()).classes;
        for class in classes {
            class.close_mailboxes();
        }
    }

    fn close_storage(&self) -> Result<()> {
        self.gate.close();
        self.backend.close()
    }
}

/// Owns the runtime: when the last [`Runtime`] handle is dropped, the runtime closes.
struct Owner {
    shared: Arc<RuntimeShared>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shared.stop_taking_calls();
        if let Err(e) = self.shared.close_storage() {
            tracing::error!(error = %e, "closing storage failed while dropping the runtime");
        }
    }
}

/// A durable-object runtime: storage, the commit path, and the live objects of every class.
///
/// Cheap to clone; all clones share one runtime. Dropping the last clone closes it (calls in
/// flight fail with [`ErrorKind::Closed`](crate::ErrorKind::Closed), queued writes are
/// committed and synced, the data directory is released); [`Runtime::shutdown`] does the same
/// gracefully, finishing the calls already queued first.
///
/// ```no_run
/// # use durable_runtime::{Runtime, Result};
/// # fn main() -> Result<()> {
/// let rt = Runtime::builder().data_dir("./data").open()?; // fjall, fsync'ed by default
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Runtime {
    owner: Arc<Owner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

impl Runtime {
    /// Starts configuring a runtime.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// A runtime whose storage lives in memory only: for tests and examples.
    pub fn in_memory() -> Runtime {
        match Runtime::builder().in_memory().open() {
            Ok(rt) => rt,
            // The in-memory backend cannot fail to open; only a thread spawn can.
            Err(e) => panic!("cannot start an in-memory runtime: {e}"),
        }
    }

    fn shared(&self) -> &Arc<RuntimeShared> {
        &self.owner.shared
    }

    /// The namespace of class `T`.
    ///
    /// # Panics
    ///
    /// If another class of this runtime has the same class name (see
    /// [`try_namespace`](Self::try_namespace) for the error instead).
    pub fn namespace<T: DurableObject>(&self) -> Namespace<T> {
        match self.try_namespace::<T>() {
            Ok(ns) => ns,
            Err(e) => panic!("{e}"),
        }
    }

    /// The namespace of class `T`, or a [`Config`](crate::ErrorKind::Config) error if another
    /// class of this runtime has the same class name.
    pub fn try_namespace<T: DurableObject>(&self) -> Result<Namespace<T>> {
        if self.shared().is_closed() {
            return Err(Error::closed());
        }
        self.shared().namespace::<T>()
    }

    /// How many times the commit thread has synced storage. Each sync covers every write
    /// committed before it (group commit).
    pub fn sync_count(&self) -> u64 {
        self.shared().gate.syncs()
    }

    /// A snapshot of the runtime's counters: calls, activations, evictions, overloads,
    /// alarm runs, live objects, syncs.
    ///
    /// ```
    /// # use durable_runtime::Runtime;
    /// let rt = Runtime::in_memory();
    /// assert_eq!(rt.metrics().calls, 0);
    /// ```
    pub fn metrics(&self) -> Metrics {
        let shared = self.shared();
        let m = &shared.metrics;
        let live = shared
            .registry()
            .classes
            .iter()
            .map(|c| c.live_count() as u64)
            .sum();
        Metrics {
            calls: m.calls.get(),
            activations: m.activations.get(),
            evictions: m.evictions.get(),
            overloads: m.overloads.get(),
            alarm_runs: m.alarm_runs.get(),
            alarm_failures: m.alarm_failures.get(),
            live_objects: live,
            syncs: shared.gate.syncs(),
        }
    }

    /// Shuts down gracefully: stops taking calls, lets every object finish the calls already
    /// queued, commits and syncs their writes, and releases the data directory.
    pub async fn shutdown(self) -> Result<()> {
        let shared = self.shared().clone();
        shared.stop_taking_calls();
        loop {
            let idle = shared.actors_idle.notified();
            if shared.live_actors.load(Ordering::Acquire) == 0 {
                break;
            }
            idle.await;
        }
        shared.close_storage()
    }
}

/// Configures a [`Runtime`]. Choose the storage with [`data_dir`](Self::data_dir),
/// [`in_memory`](Self::in_memory) or [`backend`](Self::backend).
#[derive(Default)]
pub struct RuntimeBuilder {
    data_dir: Option<PathBuf>,
    backend: Option<Arc<dyn Backend>>,
    in_memory: bool,
    durability: Durability,
    env: Option<Arc<dyn Any + Send + Sync>>,
    config: Config,
    classes: Vec<Registration>,
}

type Registration = fn(&Arc<RuntimeShared>) -> Result<()>;

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("data_dir", &self.data_dir)
            .field("in_memory", &self.in_memory)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

impl RuntimeBuilder {
    /// Store data in a fjall database in this directory (created if missing).
    pub fn data_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(path.into());
        self
    }

    /// Keep data in memory only.
    pub fn in_memory(mut self) -> Self {
        self.in_memory = true;
        self
    }

    /// Use this storage backend (for example a test wrapper).
    pub fn backend(mut self, backend: Arc<dyn Backend>) -> Self {
        self.backend = Some(backend);
        self
    }

    /// How durable a write is before its reply leaves. Default: [`Durability::Fsync`].
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Shared state every object can read with [`Context::env`](crate::Context::env), like
    /// the `env` of a Worker.
    pub fn env<E: Any + Send + Sync>(mut self, env: E) -> Self {
        self.env = Some(Arc::new(env));
        self
    }

    /// How long an object may go without calls before it is evicted from memory (its next
    /// call activates it again from storage). Default: 70 seconds.
    pub fn idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.config.idle_timeout = idle_timeout;
        self
    }

    /// Alarm retries: a failed alarm handler is retried after `first_backoff`, then twice
    /// as long each time, `retries` times, then its schedule is deleted. Default: 2 s, 6.
    pub fn alarm_retries(mut self, first_backoff: Duration, retries: u32) -> Self {
        self.config.alarm_backoff = first_backoff;
        self.config.alarm_retries = retries;
        self
    }

    /// Registers class `T` at open, so that its due alarms fire without waiting for the
    /// first `namespace::<T>()`.
    pub fn register<T: DurableObject>(mut self) -> Self {
        self.classes
            .push(|shared| shared.namespace::<T>().map(|_| ()));
        self
    }

    /// Opens the storage and starts the runtime.
    pub fn open(self) -> Result<Runtime> {
        let backend: Arc<dyn Backend> = match (self.backend, self.data_dir, self.in_memory) {
            (Some(backend), None, false) => backend,
            (None, Some(dir), false) => Arc::new(FjallBackend::open(dir)?),
            (None, None, true) => Arc::new(MemoryBackend::new()),
            (None, None, false) => {
                return Err(Error::config(
                    "no storage chosen: call .data_dir(path), .in_memory() or .backend(..)",
                ))
            }
            _ => {
                return Err(Error::config(
                    "choose one storage: .data_dir(path), .in_memory() or .backend(..)",
                ))
            }
        };
        let gate = OutputGate::start(backend.clone(), self.durability)?;
        let shared = Arc::new(RuntimeShared {
            backend,
            gate,
            env: self.env,
            config: self.config,
            metrics: Counters::default(),
            closing: watch::Sender::new(false),
            closed: AtomicBool::new(false),
            registry: Mutex::new(Registry::default()),
            tokio: tokio::runtime::Handle::try_current().ok(),
            live_actors: AtomicUsize::new(0),
            actors_idle: Notify::new(),
        });
        let runtime = Runtime {
            owner: Arc::new(Owner { shared }),
        };
        for register in self.classes {
            register(runtime.shared())?;
        }
        Ok(runtime)
    }
}
