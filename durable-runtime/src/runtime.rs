//! The runtime: owns the storage backend, the output gate and every class's namespace.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use crate::class::DurableObject;
use crate::cluster::balance::Objects;
use crate::cluster::sockets::Homes;
use crate::cluster::{Cluster, Running};
use crate::commit::OutputGate;
use crate::context::Directory;
use crate::error::{Error, Result};
use crate::host::{Config, Host};
use crate::id::{ClassTag, ObjectId};
pub use crate::metrics::Metrics;
use crate::namespace::{namespace_of, ClassControl, Namespace, OpenClass};
use crate::sockets::CLOSE_GRACE;
use crate::sockets::{SocketHolder, SocketId, SocketRecord};
use crate::storage::{Backend, Durability, FjallBackend, MemoryBackend, ObjectStore};
use crate::stub::RemoteClass;
use crate::transport::client::Client;
use crate::transport::server::{self, ServedClass};
use crate::transport::TransportConfig;

#[derive(Default)]
struct Registry {
    by_type: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    by_name: HashMap<&'static str, (TypeId, &'static str)>,
    /// Type names by the name the class's IDs, data and method IDs derive from
    /// ([`ClassOptions::wire_name`](crate::ClassOptions::wire_name)).
    by_wire_name: HashMap<&'static str, &'static str>,
    /// What the server calls, by the class tag at the front of every object ID.
    by_tag: HashMap<[u8; 8], Arc<dyn ServedClass>>,
    classes: Vec<Arc<dyn ClassControl>>,
}

/// The state of a runtime that holds objects: its host (shared with its classes), its env
/// and its classes.
pub(crate) struct RuntimeShared {
    pub(crate) host: Arc<Host>,
    pub(crate) env: Option<Arc<dyn Any + Send + Sync>>,
    registry: Mutex<Registry>,
}

impl RuntimeShared {
    pub(crate) fn is_closed(&self) -> bool {
        self.host.is_closed()
    }

    /// Changes (to `true`) when the runtime stops taking calls.
    pub(crate) fn watch_closing(&self) -> watch::Receiver<bool> {
        self.host.watch_closing()
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The namespace of class `T`, opened if the runtime does not know `T` yet: the same way
    /// as an object's [`Context::namespace`](crate::Context::namespace).
    pub(crate) fn namespace<T: DurableObject>(self: &Arc<Self>) -> Result<Namespace<T>> {
        namespace_of::<T>(self.clone())
    }

    /// The class the server routes calls with this tag to.
    pub(crate) fn served_class(&self, tag: &[u8; 8]) -> Option<Arc<dyn ServedClass>> {
        self.registry().by_tag.get(tag).cloned()
    }

    /// Stops taking calls: closes every mailbox and forgets the namespaces (which breaks the
    /// reference cycle runtime → namespace → runtime).
    fn stop_taking_calls(&self) {
        self.host.close();
        let classes = std::mem::take(&mut *self.registry()).classes;
        for class in classes {
            class.close_mailboxes();
        }
    }

    fn close_storage(&self) -> Result<()> {
        self.host.close_storage()
    }
}

impl Homes for RuntimeShared {
    fn adopt_held(
        &self,
        object: &ObjectId,
        socket: SocketId,
        holder: Arc<dyn SocketHolder>,
        record: SocketRecord,
    ) -> Result<()> {
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&object.as_bytes()[..8]);
        match self.served_class(&tag) {
            Some(class) => class.adopt_held(object, socket, holder, record),
            None => Err(Error::unknown_method(
                "a WebSocket of a class this node does not know",
            )),
        }
    }
}

impl Objects for RuntimeShared {
    fn drop_objects(&self, lost: &dyn Fn(u32) -> bool) -> Vec<Arc<ObjectStore>> {
        let classes = self.registry().classes.clone();
        classes
            .iter()
            .flat_map(|class| class.drop_objects(lost))
            .collect()
    }
}

impl Directory for RuntimeShared {
    fn namespace_any(
        self: Arc<Self>,
        class: TypeId,
        open: &dyn Any,
    ) -> Result<Arc<dyn Any + Send + Sync>> {
        let mut registry = self.registry();
        if let Some(core) = registry.by_type.get(&class) {
            return Ok(core.clone());
        }
        let Some(open) = open.downcast_ref::<OpenClass>() else {
            return Err(Error::internal(
                "a class to open that is not an `OpenClass`",
            ));
        };
        let (options, type_name) = (open.options, open.type_name);
        if let Some((_, other)) = registry.by_name.get(options.name) {
            return Err(Error::config(format!(
                "two classes are named `{}`: `{other}` and `{type_name}`; give one another \
                 name with #[durable_object(name = \"...\")]",
                options.name
            )));
        }
        if let Some(other) = registry.by_wire_name.get(options.wire_name()) {
            return Err(Error::config(format!(
                "`{other}` and `{type_name}` would share their IDs and stored data, both \
                 being (or renamed from) `{}`; a class renamed with `renamed_from` replaces \
                 the old one, which must go",
                options.wire_name()
            )));
        }
        let opened = (open.open)(options, self.host.clone(), self.clone())?;
        registry.by_name.insert(options.name, (class, type_name));
        registry.by_wire_name.insert(options.wire_name(), type_name);
        registry.by_type.insert(class, opened.core.clone());
        registry.by_tag.insert(opened.tag, opened.served);
        registry.classes.push(opened.control);
        Ok(opened.core)
    }

    fn env(&self) -> Option<&(dyn Any + Send + Sync)> {
        self.env.as_deref()
    }
}

/// Owns the runtime: when the last [`Runtime`] handle is dropped, the runtime closes.
struct Owner {
    kind: Kind,
    /// The address the server listens on, if it does.
    local_addr: Option<SocketAddr>,
    /// Cluster mode: the balancer and the router.
    cluster: Option<Running>,
}

/// A runtime holds objects, or sends every call to one that does.
enum Kind {
    Local(Arc<RuntimeShared>),
    Connected(Arc<Client>),
}

impl Drop for Owner {
    fn drop(&mut self) {
        if let Some(cluster) = &self.cluster {
            cluster.close();
        }
        match &self.kind {
            Kind::Local(shared) => {
                shared.stop_taking_calls();
                if let Err(e) = shared.close_storage() {
                    tracing::error!(error = %e, "closing storage failed while dropping the runtime");
                }
            }
            Kind::Connected(client) => client.close(),
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

    /// The local runtime; `None` for a connected one.
    fn shared(&self) -> Option<&Arc<RuntimeShared>> {
        match &self.owner.kind {
            Kind::Local(shared) => Some(shared),
            Kind::Connected(_) => None,
        }
    }

    /// The address this runtime's server listens on ([`RuntimeBuilder::listen`]; with port
    /// 0, the port the system picked), or `None` if it does not listen.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.owner.local_addr
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
        match &self.owner.kind {
            Kind::Local(shared) => {
                if shared.is_closed() {
                    return Err(Error::closed());
                }
                shared.namespace::<T>()
            }
            Kind::Connected(client) => {
                let options = T::class_options();
                Ok(Namespace::remote(Arc::new(RemoteClass {
                    class: ClassTag::new(options.name, options.wire_name()),
                    client: client.clone(),
                })))
            }
        }
    }

    /// How many times the commit thread has synced storage. Each sync covers every write
    /// committed before it (group commit). Always 0 on a connected runtime.
    pub fn sync_count(&self) -> u64 {
        self.shared().map_or(0, |shared| shared.host.gate.syncs())
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
        let Some(shared) = self.shared() else {
            // A connected runtime runs no objects; it may hold sockets.
            let mut metrics = Metrics::default();
            if let Kind::Connected(client) = &self.owner.kind {
                metrics.websockets_held = client.held().count() as u64;
            }
            return metrics;
        };
        let m = &shared.host.metrics;
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
            syncs: shared.host.gate.syncs(),
            websockets_held: shared.host.held.count() as u64,
            websocket_events: m.socket_events.get(),
            shards_owned: shared.host.router.as_ref().map_or(0, |r| r.shards_owned()),
            calls_forwarded: shared.host.router.as_ref().map_or(0, |r| r.forwarded()),
        }
    }

    /// Shuts down gracefully: stops taking calls, lets every object finish the calls already
    /// queued, commits and syncs their writes, and releases the data directory.
    ///
    /// A runtime that listens stops accepting connections, and answers the calls its
    /// connections already made before closing them. A connected runtime closes its
    /// connection: its calls from now on fail with [`Closed`](crate::ErrorKind::Closed).
    ///
    /// # Errors
    ///
    /// A [`Storage`](crate::ErrorKind::Storage) error if the last sync or the release of the
    /// storage fails.
    pub async fn shutdown(self) -> Result<()> {
        let shared = match &self.owner.kind {
            Kind::Local(shared) => shared.clone(),
            Kind::Connected(client) => {
                // The sockets held here close (1001), and tell their objects, first.
                client.held().close_all(CLOSE_GRACE).await;
                client.close();
                return Ok(());
            }
        };
        if let Some(cluster) = &self.owner.cluster {
            // Cluster mode: every shard is handed over first (its queued calls finish, its
            // objects' writes are durable), then the node leaves; calls meanwhile go to the
            // shards' new owners.
            cluster.leave().await;
        }
        shared.host.held.close_all(CLOSE_GRACE).await;
        shared.stop_taking_calls();
        shared.host.actors_exited().await;
        shared.close_storage()
    }
}

/// Configures a [`Runtime`]. Choose the storage with [`data_dir`](Self::data_dir),
/// [`postgres`](Self::postgres), [`in_memory`](Self::in_memory) or [`backend`](Self::backend).
#[derive(Default)]
pub struct RuntimeBuilder {
    data_dir: Option<PathBuf>,
    backend: Option<Arc<dyn Backend>>,
    in_memory: bool,
    postgres: Option<String>,
    durability: Durability,
    env: Option<Arc<dyn Any + Send + Sync>>,
    config: Config,
    classes: Vec<Registration>,
    listen: Option<String>,
    connect: Option<String>,
    transport: TransportConfig,
    cluster: Option<Cluster>,
}

type Registration = fn(&Arc<RuntimeShared>) -> Result<()>;

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("data_dir", &self.data_dir)
            .field("in_memory", &self.in_memory)
            .field("durability", &self.durability)
            .field("listen", &self.listen)
            .field("connect", &self.connect)
            .field("transport", &self.transport)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl RuntimeBuilder {
    /// Store data in a fjall database in this directory (created if missing).
    pub fn data_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(path.into());
        self
    }

    /// Store data in PostgreSQL, in the tables `durable_kv` and `durable_meta` of the
    /// connection's current schema (created on first use). Opening connects, checks the
    /// tables' version and takes the schema's advisory lock: one runtime per database and
    /// schema. See [`PostgresBackend`](crate::PostgresBackend).
    ///
    /// ```no_run
    /// use durable_runtime::Runtime;
    ///
    /// # fn main() -> durable_runtime::Result<()> {
    /// let rt = Runtime::builder()
    ///     .postgres("postgres://app:secret@127.0.0.1:5432/app")
    ///     .open()?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "postgres")]
    pub fn postgres(mut self, url: impl Into<String>) -> Self {
        self.postgres = Some(url.into());
        self
    }

    /// Run as a node of a cluster: several runtimes sharing one storage (PostgreSQL, with
    /// [`postgres`](Self::postgres)), coordinated through etcd. Each object lives on one node
    /// at a time, and a call to it from any node is forwarded there. The node also needs a
    /// [`listen`](Self::listen) address the other nodes can reach, and the cluster's
    /// [`secret`](Self::secret). See [`Cluster`].
    ///
    /// ```no_run
    /// use durable_runtime::{Cluster, Runtime};
    ///
    /// # fn main() -> durable_runtime::Result<()> {
    /// let rt = Runtime::builder()
    ///     .postgres("postgres://durable@db:5432/app")
    ///     .cluster(Cluster::etcd(["http://etcd1:2379"]).node_id("n1"))
    ///     .listen("10.0.0.1:7001")
    ///     .secret("a shared secret")
    ///     .open()?;
    /// # Ok(()) }
    /// ```
    pub fn cluster(mut self, cluster: Cluster) -> Self {
        self.cluster = Some(cluster);
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

    /// Also serve this runtime's objects to other processes, on `addr` (`"127.0.0.1:7001"`;
    /// port 0 picks a free port, see [`Runtime::local_addr`]). Calls arrive for the classes
    /// this runtime knows: register them with [`register`](Self::register) so that they are
    /// known from the start. Needs a tokio runtime at [`open`](Self::open).
    ///
    /// Other processes must prove they hold the [`secret`](Self::secret). Without one, only
    /// loopback addresses are allowed: `open` refuses any other.
    ///
    /// ```
    /// # use durable_runtime::{durable_object, Context, Result, Runtime};
    /// # #[durable_object] pub struct Counter { ctx: Context }
    /// # #[durable_object] impl Counter {
    /// #     pub fn new(ctx: Context) -> Self { Counter { ctx } }
    /// #     pub async fn increment(&mut self, amount: i64) -> Result<i64> {
    /// #         let value = self.ctx.storage().get::<i64>("value")?.unwrap_or(0) + amount;
    /// #         self.ctx.storage_mut().put("value", &value)?;
    /// #         Ok(value)
    /// #     }
    /// # }
    /// # #[tokio::main] async fn main() -> Result<()> {
    /// // The object server (here in memory, on a free port).
    /// let server = Runtime::builder()
    ///     .in_memory()
    ///     .register::<Counter>()
    ///     .listen("127.0.0.1:0")
    ///     .secret("s3cret")
    ///     .open()?;
    /// let addr = server.local_addr().expect("it listens");
    ///
    /// // A runtime with no objects: its stubs call the server.
    /// let front = Runtime::builder().connect(addr.to_string()).secret("s3cret").open()?;
    /// let a = front.namespace::<Counter>().get_by_name("A");
    /// assert_eq!(a.increment(2).await?, 2);
    /// assert_eq!(server.namespace::<Counter>().get_by_name("A").increment(1).await?, 3);
    /// # Ok(()) }
    /// ```
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = Some(addr.into());
        self
    }

    /// Hold no objects: send every call to the runtime listening at `addr`, through the same
    /// typed stubs. The connection is made by the first call, and made again by the first
    /// call after it is lost; calls in flight when it is lost fail with
    /// [`Disconnected`](crate::ErrorKind::Disconnected).
    ///
    /// ```no_run
    /// # use durable_runtime::{Runtime, Result};
    /// # fn main() -> Result<()> {
    /// let front = Runtime::builder().connect("127.0.0.1:7001").secret("a shared secret").open()?;
    /// # Ok(()) }
    /// ```
    pub fn connect(mut self, addr: impl Into<String>) -> Self {
        self.connect = Some(addr.into());
        self
    }

    /// The secret a server and its connected runtimes share. Each side proves it holds it
    /// before the first call (challenge-response with fresh nonces; the secret itself never
    /// crosses the wire). A peer with another secret, or none, is refused with
    /// [`Unauthenticated`](crate::ErrorKind::Unauthenticated).
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.transport.secret = Arc::from(secret.as_ref());
        self
    }

    /// Encrypt the connections between runtimes with TLS: a runtime that
    /// [`listen`](Self::listen)s accepts TLS connections only, presenting the certificate of
    /// `tls`; a runtime that [`connect`](Self::connect)s (or a cluster node that calls
    /// another) connects with TLS and checks the server's certificate against the CA of
    /// `tls`, for the host it dials (an IP address must be an IP SAN of the certificate, a
    /// host name a DNS SAN). Both sides need it.
    ///
    /// No client certificate is asked for: inside TLS, each side still proves it holds the
    /// [`secret`](Self::secret), which stays mandatory to listen beyond loopback. A peer
    /// without TLS, or with a certificate the CA did not sign, is refused: its calls fail with
    /// [`Unauthenticated`](crate::ErrorKind::Unauthenticated) (or
    /// [`Disconnected`](crate::ErrorKind::Disconnected) when the connection itself broke).
    /// A runtime that listens with [`Tls::client`](crate::Tls::client) (no certificate) is
    /// refused at [`open`](Self::open).
    ///
    /// ```no_run
    /// use durable_runtime::{Runtime, Tls};
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // The object server presents its certificate (it names 10.0.0.1 as an IP SAN).
    /// let server = Runtime::builder()
    ///     .data_dir("./data")
    ///     .listen("10.0.0.1:7001")
    ///     .secret("a shared secret")
    ///     .tls(Tls::from_pem_files("node.crt", "node.key", "ca.crt")?)
    ///     .open()?;
    ///
    /// // A front end trusts certificates signed by the CA.
    /// let front = Runtime::builder()
    ///     .connect("10.0.0.1:7001")
    ///     .secret("a shared secret")
    ///     .tls(Tls::client(std::fs::read("ca.crt")?)?)
    ///     .open()?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::Tls) -> Self {
        self.transport.tls = Some(tls);
        self
    }

    /// The largest frame sent or accepted on a connection, in bytes (default 16 MiB): bounds
    /// a call's encoded arguments and its reply. A larger call fails with
    /// [`InvalidArgument`](crate::ErrorKind::InvalidArgument) before it is sent; a peer
    /// announcing a larger frame is disconnected before anything is read into memory.
    pub fn max_frame_bytes(mut self, bytes: usize) -> Self {
        self.transport.max_frame_bytes = bytes;
        self
    }

    /// How many calls of one connection may be in flight at once (default 4096). On the
    /// server, a call beyond it is answered [`Overloaded`](crate::ErrorKind::Overloaded)
    /// unrun; on a connected runtime, it fails the same way without being sent.
    pub fn max_calls_in_flight(mut self, calls: usize) -> Self {
        self.transport.max_calls_in_flight = calls.max(1);
        self
    }

    /// Opens the storage and starts the runtime (and its server, with
    /// [`listen`](Self::listen)); or, with [`connect`](Self::connect), a runtime that sends
    /// every call to another one.
    ///
    /// # Errors
    ///
    /// A [`Config`](crate::ErrorKind::Config) error for settings that do not go together, a
    /// port that cannot be bound, a non-loopback `listen` without a secret, a `listen` with
    /// a [`tls`](Self::tls) that has no certificate, a `connect` address that TLS cannot
    /// check a certificate for, or a [`cluster`](Self::cluster) whose etcd settings are wrong
    /// (see [`Cluster::etcd_ca`]); a
    /// [`Storage`](crate::ErrorKind::Storage) error if the storage cannot be opened (a data
    /// directory held by another runtime, an I/O error).
    pub fn open(self) -> Result<Runtime> {
        if let Some(addr) = self.connect {
            if self.listen.is_some()
                || self.data_dir.is_some()
                || self.postgres.is_some()
                || self.backend.is_some()
                || self.in_memory
                || !self.classes.is_empty()
            {
                return Err(Error::config(
                    "a connected runtime holds no objects: .connect(addr) does not go with \
                     .listen, .data_dir, .postgres, .in_memory, .backend or .register (those belong on \
                     the runtime it connects to)",
                ));
            }
            if self.cluster.is_some() {
                return Err(Error::config(
                    "a connected runtime holds no objects and joins no cluster: .connect(addr) \
                     does not go with .cluster (connect to any node of the cluster instead)",
                ));
            }
            #[cfg(feature = "tls")]
            if self.transport.tls.is_some() {
                crate::transport::tls::server_name(&addr)?;
            }
            return Ok(Runtime {
                owner: Arc::new(Owner {
                    kind: Kind::Connected(Arc::new(Client::new(addr, self.transport))),
                    local_addr: None,
                    cluster: None,
                }),
            });
        }
        if let Some(cluster) = &self.cluster {
            cluster.check_etcd()?;
            if self.listen.is_none() {
                return Err(Error::config(
                    "a cluster node needs .listen(addr): the address the other nodes forward \
                     calls to",
                ));
            }
            if self.data_dir.is_some() || self.in_memory {
                return Err(Error::config(
                    "cluster mode needs storage every node shares: .postgres(url) (not \
                     .data_dir or .in_memory)",
                ));
            }
        }
        #[cfg(feature = "tls")]
        if let (Some(_), Some(tls)) = (&self.listen, &self.transport.tls) {
            tls.check_listen()?;
        }
        let listener = match &self.listen {
            Some(addr) => Some(server::bind(addr, &self.transport)?),
            None => None,
        };
        let local_addr = match &listener {
            Some(l) => Some(
                l.local_addr()
                    .map_err(|e| Error::config(format!("cannot listen: {e}")))?,
            ),
            None => None,
        };
        let chosen = usize::from(self.backend.is_some())
            + usize::from(self.data_dir.is_some())
            + usize::from(self.postgres.is_some())
            + usize::from(self.in_memory);
        if chosen != 1 {
            return Err(Error::config(if chosen == 0 {
                "no storage chosen: call .data_dir(path), .postgres(url), .in_memory() or \
                 .backend(..)"
            } else {
                "choose one storage: .data_dir(path), .postgres(url), .in_memory() or .backend(..)"
            }));
        }
        let backend: Arc<dyn Backend> = if let Some(backend) = self.backend {
            backend
        } else if let Some(dir) = self.data_dir {
            Arc::new(FjallBackend::open(dir)?)
        } else if let Some(url) = &self.postgres {
            // One runtime per schema, unless the nodes of a cluster share it (fenced).
            open_postgres(url, self.cluster.is_none())?
        } else {
            Arc::new(MemoryBackend::new())
        };
        let joined = match (&self.cluster, local_addr) {
            (Some(cluster), Some(addr)) => Some(cluster.join(addr, &self.transport)?),
            _ => None,
        };
        let gate = OutputGate::start(backend.clone(), self.durability)?;
        let mut host = Host::new(backend.clone(), gate, self.config);
        if let Some(joined) = &joined {
            host.ownership = Some(joined.ownership.clone());
            host.router = Some(joined.router.clone());
        }
        let shared = Arc::new(RuntimeShared {
            host: Arc::new(host),
            env: self.env,
            registry: Mutex::new(Registry::default()),
        });
        for register in self.classes {
            register(&shared)?;
        }
        if let Some(listener) = listener {
            tokio::spawn(server::accept_loop(
                listener,
                Arc::downgrade(&shared),
                self.transport,
            ));
        }
        if let Some(router) = &shared.host.router {
            let homes: std::sync::Weak<dyn Homes> = Arc::downgrade(&shared) as _;
            router.set_homes(homes);
        }
        let cluster = joined.map(|joined| {
            let objects: std::sync::Weak<dyn Objects> = Arc::downgrade(&shared) as _;
            joined.start(backend, objects)
        });
        Ok(Runtime {
            owner: Arc::new(Owner {
                kind: Kind::Local(shared),
                local_addr,
                cluster,
            }),
        })
    }
}

#[cfg(feature = "postgres")]
fn open_postgres(url: &str, exclusive: bool) -> Result<Arc<dyn Backend>> {
    let mut options = crate::storage::PostgresOptions::default();
    options.exclusive = exclusive;
    Ok(Arc::new(crate::storage::PostgresBackend::connect_with(
        url, options,
    )?))
}

#[cfg(not(feature = "postgres"))]
fn open_postgres(_url: &str, _exclusive: bool) -> Result<Arc<dyn Backend>> {
    Err(Error::config(
        "this build has no PostgreSQL backend: enable durable-runtime's `postgres` feature",
    ))
}
