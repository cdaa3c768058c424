//! Membership: everything cluster mode does with etcd.
//!
//! A node joins a cluster by registering itself under an etcd lease, learns the other nodes
//! and the shard owners from etcd, and takes and releases shards there. Nothing else in the
//! runtime talks to etcd.
//!
//! # Keys
//!
//! Every key of a cluster starts with its name, `P` below (default `durable`), and a `/`:
//!
//! - `P/config`: the cluster's shard count, as decimal text. The first node creates it (a
//!   transaction that puts it only if it does not exist); a node configured with another count
//!   is refused, since the count decides which shard every object is in.
//! - `P/nodes/<node id>`: the node's advertised address (the one other nodes connect to), put
//!   under the node's lease. A node ID is held by one live process at a time: a node finding
//!   its key under a lease that is not its own is refused.
//! - `P/shards/<shard>` (the shard in decimal, `P/shards/17`): the ID of the shard's owner,
//!   put under the owner's lease, and only if the key does not exist. The key's
//!   `create_revision` is the shard's **term**: every new owner creates the key anew, at a
//!   revision larger than any before it, so terms only grow. Storage fences commits with it.
//!
//! Everything a node puts is bound to its lease, so when the lease ends (revoked by
//! [`Membership::leave`], or expired because the node stopped renewing it) the node and all its
//! shards vanish in one step, and other nodes may take the shards.
//!
//! # Liveness
//!
//! A node may act as a shard owner only while its lease is surely alive. The lease is renewed
//! every third of its TTL; each renewal remembers the local time its request was *sent*, and
//! the lease is taken to be alive until that time plus the TTL the answer grants, less a safety
//! margin ([`Membership::is_live`]). This is conservative: etcd starts the TTL when it
//! receives the request, which is after we sent it, so the lease cannot expire in etcd before
//! the local deadline, however slow the request or its answer was. The margin, a tenth of the
//! TTL and at most one second, covers what the measurement does not: the two clocks running at
//! slightly different rates, and the moments between a caller checking liveness and acting on
//! it. (Storage fences every commit with the shard's term anyway; liveness only stops a node
//! from starting work it would lose.)
//!
//! The deadline is an atomic that only the renewals move forward, so liveness turns false on
//! its own when renewals stop succeeding (etcd down, unreachable or paused, this process
//! paused): no task has to notice. `std::time::Instant` does not count time the machine spends
//! suspended, so a suspended machine can wake believing itself live for up to a TTL; fencing
//! covers that case.
//!
//! When the lease is found lost (a renewal answered that it no longer exists, or the deadline
//! passed without a renewal), the node revokes it (its keys vanish if they had not), grants a
//! new lease, registers its address again and bumps the lease *generation*
//! ([`Membership::generation`]): observers drop every shard they held under an older one.
//!
//! # Threads
//!
//! The membership runs on a thread of its own with a one-thread tokio runtime: joining is
//! synchronous (it is called from `RuntimeBuilder::open`, possibly inside another runtime), and
//! renewals must not wait behind a busy application runtime. The async methods hop onto that
//! runtime and can be awaited from any. Every etcd request has a deadline, so an etcd that
//! hangs (stopped, partitioned) delays nothing forever.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, KeyValue, LeaseKeepAliveStream, LeaseKeeper,
    PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchOptions, WatchResponse,
};
use tokio::sync::{oneshot, watch};

use super::balance::{Coordinator, Op};
use super::etcd_access::{connect_options, refusal, Reach};
use super::{EtcdAccess, Owner, View};
use crate::error::{Error, Result};

/// How long joining waits for etcd to answer its first request, connecting included.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The deadline of one etcd request other than a renewal (whose deadline is the renewal
/// interval, a third of the TTL).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the best-effort revoke of a dropped [`Membership`] may take.
const DROP_REVOKE_TIMEOUT: Duration = Duration::from_secs(1);

/// The largest safety margin taken off a lease's validity (see the module documentation).
const MAX_MARGIN: Duration = Duration::from_secs(1);

/// The first and the longest wait between two attempts at regaining a lost lease.
const RETRY_MIN: Duration = Duration::from_millis(100);
/// See [`RETRY_MIN`].
const RETRY_MAX: Duration = Duration::from_secs(2);

/// HTTP/2 pings on the connection to etcd, to notice a dead connection and reconnect. etcd
/// refuses pings more frequent than every 5 s (its `--grpc-keepalive-min-time`).
pub(super) const PING_INTERVAL: Duration = Duration::from_secs(10);
/// How long an HTTP/2 ping may go unanswered before the connection is dropped.
pub(super) const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest node ID or cluster name, in bytes.
const MAX_NAME_BYTES: usize = 128;

/// What a node needs to join a cluster.
#[derive(Debug, Clone)]
pub(crate) struct MembershipConfig {
    /// etcd's client URLs (`http://host:2379`).
    pub(crate) endpoints: Vec<String>,
    /// The cluster's name: the prefix of all its keys in etcd. Same rules as a node ID.
    pub(crate) name: String,
    /// This node's ID: 1 to 128 printable ASCII characters (no space), without `/`.
    pub(crate) node_id: String,
    /// The address other nodes connect to, advertised in `P/nodes/<node id>`.
    pub(crate) addr: String,
    /// The lease's time to live, rounded up to whole seconds (etcd's unit); etcd may raise it
    /// to its minimum.
    pub(crate) lease_ttl: Duration,
    /// The number of shards, which must match the cluster's.
    pub(crate) shards: u32,
    /// Proof of the cluster's secret, the same for every node holding it (a MAC made with
    /// the secret; the secret itself is never stored). A node with another one is refused.
    pub(crate) secret_check: String,
    /// TLS and credentials for etcd.
    pub(crate) access: EtcdAccess,
}

impl View {
    /// Whether the two views list the same nodes and owners (revisions aside).
    fn same_content(&self, other: &View) -> bool {
        self.nodes == other.nodes && self.owners == other.owners
    }
}

/// A node's membership of a cluster: its lease, kept alive, and the cluster's view, kept up to
/// date, by tasks on a private thread. See the module documentation.
pub(crate) struct Membership {
    /// The state the tasks share.
    shared: Arc<Shared>,
    /// The private thread's runtime.
    worker: Worker,
}

impl Membership {
    /// Joins the cluster: connects to etcd, checks (or creates) the shard count, grants a
    /// lease, registers the node's address under it, reads the view, and starts renewing the
    /// lease and watching the cluster. Synchronous, and callable from anywhere, an async
    /// context included: the work runs on the membership's own thread.
    ///
    /// # Errors
    ///
    /// [`Config`](crate::ErrorKind::Config) for an invalid node ID, name, TTL, shard count or
    /// endpoint, a shard count other than the cluster's, or a node ID held by another live
    /// process, or TLS settings that cannot be used.
    /// [`Unauthenticated`](crate::ErrorKind::Unauthenticated) when etcd refuses the node: a
    /// TLS handshake that fails, a user, a password or a permission refused (see
    /// [`refusal`]). [`Storage`](crate::ErrorKind::Storage) when etcd does not answer within
    /// 5 s or fails a request. The messages name etcd and the endpoints.
    pub(crate) fn join(config: MembershipConfig) -> Result<Arc<Membership>> {
        validate_name("cluster name", &config.name)?;
        validate_name("node ID", &config.node_id)?;
        if config.endpoints.is_empty() {
            return Err(Error::config(
                "cluster mode needs at least one etcd endpoint",
            ));
        }
        if config.addr.is_empty() {
            return Err(Error::config(
                "cluster mode needs the node's advertised address",
            ));
        }
        if config.shards == 0 {
            return Err(Error::config("a cluster has at least one shard"));
        }
        if config.lease_ttl.is_zero() {
            return Err(Error::config("the etcd lease TTL must be positive"));
        }
        let ttl_secs = i64::try_from(config.lease_ttl.as_secs())
            .unwrap_or(i64::MAX)
            .saturating_add(i64::from(config.lease_ttl.subsec_nanos() > 0));
        let worker = Worker::start()?;
        let shared = match worker.wait(join_cluster(config, ttl_secs)) {
            Ok(shared) => shared,
            Err(e) => {
                worker.stop(None);
                return Err(e);
            }
        };
        let view = (**shared.view.borrow()).clone();
        worker.handle.spawn(keep_alive(shared.clone()));
        worker.handle.spawn(watch_view(shared.clone(), view));
        Ok(Arc::new(Membership { shared, worker }))
    }

    /// Whether the lease is surely alive now: the local deadline of the last renewal has not
    /// passed (see the module documentation). Lock-free; turns false by itself when renewals
    /// stop succeeding, and for good after [`leave`](Self::leave).
    ///
    /// To learn which lease is alive, read this first and [`generation`](Self::generation)
    /// after: a true answer then holds for the generation read (or a later one).
    pub(crate) fn is_live(&self) -> bool {
        self.shared.is_live()
    }

    /// The instant until which the lease is surely alive (in the past when it is not).
    #[cfg(test)]
    pub(crate) fn valid_until(&self) -> Instant {
        self.shared.valid_until()
    }

    /// The lease generation: 1 at join, one more each time the lease was found lost and a new
    /// one was granted with the node registered again under it. Shards taken under an older
    /// generation are lost (their keys went with the old lease): drop them on any change.
    pub(crate) fn generation(&self) -> watch::Receiver<u64> {
        self.shared.generation.subscribe()
    }

    /// The latest view of the cluster, changing whenever its nodes or shard owners do (an etcd
    /// watch, with a full read after a broken watch and every TTL as a safety net).
    pub(crate) fn view(&self) -> watch::Receiver<Arc<View>> {
        self.shared.view.subscribe()
    }

    /// Takes shard `shard` if it has no owner: creates its owner key under the current lease.
    /// `Ok(Some(term))` when it did (the term is the key's `create_revision`), or when the key
    /// already was this node's under the current lease (then its term); `Ok(None)` when another
    /// node (or this node under an older lease) holds it.
    ///
    /// A caller tracking generations reads [`generation`](Self::generation) before: a
    /// generation change during the take fails it, and one after it shows as a change.
    ///
    /// # Errors
    ///
    /// [`Storage`](crate::ErrorKind::Storage) when the lease is not live, changed during the
    /// take, or etcd failed or did not answer in time (the take may then have happened: the
    /// view will show it); [`InvalidArgument`](crate::ErrorKind::InvalidArgument) for a shard
    /// out of range.
    pub(crate) async fn take(&self, shard: u32) -> Result<Option<u64>> {
        self.check_shard(shard)?;
        let shared = self.shared.clone();
        self.worker
            .run(async move { shared.take(shard).await })
            .await
    }

    /// Releases shard `shard` if this node holds it with term `term`: deletes its owner key.
    /// `Ok(true)` if deleted, `Ok(false)` if the key is not this node's of that term.
    ///
    /// # Errors
    ///
    /// As [`take`](Self::take), except that liveness is not required.
    pub(crate) async fn release(&self, shard: u32, term: u64) -> Result<bool> {
        self.check_shard(shard)?;
        let shared = self.shared.clone();
        self.worker
            .run(async move { shared.release(shard, term).await })
            .await
    }

    /// Leaves the cluster: revokes the lease (the node's key and all its shards vanish at
    /// once) and stops the tasks. Liveness is false from the start of the call. Idempotent:
    /// later calls do nothing. Dropping the membership leaves too, on a best-effort basis.
    ///
    /// # Errors
    ///
    /// [`Storage`](crate::ErrorKind::Storage) when the revoke failed; the lease then expires
    /// after its TTL.
    pub(crate) async fn leave(&self) -> Result<()> {
        let Some(lease) = self.shared.begin_leave() else {
            return Ok(());
        };
        let shared = self.shared.clone();
        let result = self
            .worker
            .run(async move { shared.revoke(lease, REQUEST_TIMEOUT).await })
            .await;
        self.worker.stop(None);
        result
    }

    /// This node's ID.
    pub(crate) fn node_id(&self) -> &str {
        &self.shared.node_id
    }

    /// The lease TTL in force (as granted by etcd).
    #[cfg(test)]
    pub(crate) fn lease_ttl(&self) -> Duration {
        self.shared.ttl
    }

    /// The cluster's shard count.
    #[cfg(test)]
    pub(crate) fn shards(&self) -> u32 {
        self.shared.shards
    }

    /// An error for a shard out of range.
    fn check_shard(&self, shard: u32) -> Result<()> {
        if shard < self.shared.shards {
            Ok(())
        } else {
            Err(Error::invalid_argument(format!(
                "shard {shard} is out of range: the cluster has {} shards",
                self.shared.shards
            )))
        }
    }

    /// Stops renewing the lease and watching, without revoking: to others, the node crashed.
    #[cfg(test)]
    fn crash(&self) {
        self.shared.begin_leave();
        self.worker.stop(None);
    }

    /// The current lease's ID.
    #[cfg(test)]
    fn lease_id(&self) -> i64 {
        self.shared.lease().id
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let last = self.shared.begin_leave().map(|lease| {
            let shared = self.shared.clone();
            let revoke: LastTask = Box::pin(async move {
                if let Err(e) = shared.revoke(lease, DROP_REVOKE_TIMEOUT).await {
                    tracing::warn!(node = %shared.node_id, "leaving the cluster on drop: {e}");
                }
            });
            revoke
        });
        self.worker.stop(last);
    }
}

/// A node ID or cluster name: 1 to [`MAX_NAME_BYTES`] printable ASCII characters (no space),
/// without `/` (it separates the parts of a key).
fn validate_name(what: &str, name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
    if valid {
        Ok(())
    } else {
        Err(Error::config(format!(
            "invalid {what} {name:?}: it must be 1 to {MAX_NAME_BYTES} printable ASCII \
             characters, without spaces or `/`"
        )))
    }
}

/// The safety margin taken off a lease's validity: a tenth of its TTL, at most [`MAX_MARGIN`].
fn margin(ttl: Duration) -> Duration {
    (ttl / 10).min(MAX_MARGIN)
}

/// A TTL in etcd's whole seconds as a duration (zero for a non-positive one).
fn secs(ttl: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl).unwrap_or(0))
}

/// The membership's private thread and its one-thread runtime, which ends when told to.
struct Worker {
    /// Spawns onto the private runtime.
    handle: tokio::runtime::Handle,
    /// Ends the thread, after running the future it is given, if any. `None` once sent.
    stop: Mutex<Option<oneshot::Sender<Option<LastTask>>>>,
}

/// The last thing the private thread does before it ends (the revoke of a dropped
/// membership).
type LastTask = Pin<Box<dyn Future<Output = ()> + Send>>;

impl Worker {
    /// Starts the thread and its runtime.
    fn start() -> Result<Worker> {
        let (handle_tx, handle_rx) = std::sync::mpsc::sync_channel(1);
        let (stop_tx, stop_rx) = oneshot::channel::<Option<LastTask>>();
        std::thread::Builder::new()
            .name("durable-membership".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(runtime.handle().clone()));
                runtime.block_on(async move {
                    if let Ok(Some(last)) = stop_rx.await {
                        last.await;
                    }
                });
                // Dropping the runtime, here on its own thread, ends the remaining tasks.
            })
            .map_err(|e| Error::storage(format!("cannot start the etcd membership thread: {e}")))?;
        let handle = handle_rx
            .recv()
            .map_err(|_| Error::storage("the etcd membership thread ended at start"))?
            .map_err(|e| {
                Error::storage(format!("cannot start the etcd membership runtime: {e}"))
            })?;
        Ok(Worker {
            handle,
            stop: Mutex::new(Some(stop_tx)),
        })
    }

    /// Runs `op` on the private runtime and blocks the calling thread (any thread, in a
    /// runtime or not) until it ends. Never `block_on`: the caller may be async itself.
    fn wait<T: Send + 'static>(
        &self,
        op: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(op.await);
        });
        rx.recv().unwrap_or_else(|_| Err(stopped()))
    }

    /// Runs `op` on the private runtime and waits for it, from any runtime.
    async fn run<T: Send + 'static>(
        &self,
        op: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        match self.handle.spawn(op).await {
            Ok(result) => result,
            Err(_) => Err(stopped()),
        }
    }

    /// Ends the thread once it has run `last`. Does not wait. Later calls do nothing.
    fn stop(&self, last: Option<LastTask>) {
        let sender = self
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(sender) = sender {
            let _ = sender.send(last);
        }
    }
}

/// The error of a call made after the membership stopped.
fn stopped() -> Error {
    Error::storage("the etcd membership has stopped (the node left the cluster)")
}

/// An etcd request that did not succeed.
enum Failure {
    /// etcd (or the connection to it) answered with an error.
    Etcd(etcd_client::Error),
    /// No answer within the deadline.
    Timeout(Duration),
}

impl Failure {
    /// Whether etcd said the lease does not exist (expired or revoked).
    fn is_lease_not_found(&self) -> bool {
        match self {
            // etcd's gRPC status text (codes.NotFound, "etcdserver: requested lease not found"),
            // and the client's own error when a keep-alive stream opens on a missing lease.
            Failure::Etcd(etcd_client::Error::LeaseKeepAliveError(_)) => true,
            Failure::Etcd(e) => e.to_string().contains("lease not found"),
            Failure::Timeout(_) => false,
        }
    }
}

/// The etcd client and the endpoints, for messages.
struct Etcd {
    client: Client,
    /// The endpoints, comma-separated.
    endpoints: String,
    /// How the client reaches etcd, for the messages of a refusal.
    reach: Reach,
    /// Whether the node is still joining: a connection that closes as it opens is then a
    /// refusal (see [`refusal`]).
    joining: AtomicBool,
}

impl Etcd {
    /// `op` within `deadline`.
    async fn call<T>(
        &self,
        deadline: Duration,
        op: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(deadline, op).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(Failure::Etcd(e)),
            Err(_) => Err(Failure::Timeout(deadline)),
        }
    }

    /// The error of `what` failing.
    fn error(&self, what: &str, failure: Failure) -> Error {
        match failure {
            Failure::Etcd(e) => {
                let joining = self.joining.load(Ordering::Relaxed);
                refusal(&e, &self.endpoints, &self.reach, joining).unwrap_or_else(|| {
                    Error::storage(format!("etcd at {}: {what}: {e}", self.endpoints))
                })
            }
            Failure::Timeout(deadline) => Error::storage(format!(
                "etcd at {}: {what}: no answer within {deadline:?}",
                self.endpoints
            )),
        }
    }

    /// `op` (doing `what`) within `deadline`, its failure as an error.
    async fn ask<T>(
        &self,
        what: &str,
        deadline: Duration,
        op: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        self.call(deadline, op)
            .await
            .map_err(|failure| self.error(what, failure))
    }

    /// Runs `txn` (doing `what`) within the request deadline.
    async fn txn(&self, what: &str, txn: Txn) -> Result<TxnResponse> {
        self.ask(what, REQUEST_TIMEOUT, self.client.clone().txn(txn))
            .await
    }
}

/// The first key-value of the first `get` among a transaction's results.
fn got(resp: &TxnResponse) -> Option<KeyValue> {
    resp.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(get) => get.kvs().first().cloned(),
        _ => None,
    })
}

/// The revision of a response's header (0 if it has none, which etcd never does).
fn revision_of(header: Option<&etcd_client::ResponseHeader>) -> i64 {
    header.map_or(0, etcd_client::ResponseHeader::revision)
}

/// The current lease and its generation.
#[derive(Debug, Clone, Copy)]
struct Lease {
    /// etcd's lease ID.
    id: i64,
    /// See [`Membership::generation`].
    generation: u64,
}

/// What the membership's tasks and methods share.
struct Shared {
    etcd: Etcd,
    /// `P/`.
    prefix: String,
    node_id: String,
    addr: String,
    shards: u32,
    /// The TTL of the first lease, as granted.
    ttl: Duration,
    /// The origin of [`valid_until`](Self::valid_until).
    base: Instant,
    /// Nanoseconds after `base` until which the lease is surely alive. Written only under the
    /// `lease` lock (so that a renewal cannot revive a lease that was left or replaced); read
    /// without it.
    valid_until: AtomicU64,
    /// The current lease. Held only briefly, never across an await.
    lease: Mutex<Lease>,
    /// Set once the node leaves (or the membership is dropped): nothing renews or regains the
    /// lease any more.
    left: AtomicBool,
    /// The lease generation, published.
    generation: watch::Sender<u64>,
    /// The view, published.
    view: watch::Sender<Arc<View>>,
}

impl Shared {
    /// `P/nodes/<node id>`.
    fn node_key(&self) -> String {
        format!("{}nodes/{}", self.prefix, self.node_id)
    }

    /// `P/shards/<shard>`.
    fn shard_key(&self, shard: u32) -> String {
        format!("{}shards/{shard}", self.prefix)
    }

    /// The lease state, locked.
    fn locked(&self) -> MutexGuard<'_, Lease> {
        self.lease.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current lease.
    fn lease(&self) -> Lease {
        *self.locked()
    }

    /// Whether the node left.
    fn left(&self) -> bool {
        self.left.load(Ordering::Acquire)
    }

    /// See [`Membership::is_live`].
    fn is_live(&self) -> bool {
        self.base.elapsed().as_nanos() < u128::from(self.valid_until.load(Ordering::Acquire))
    }

    /// See [`Membership::valid_until`].
    #[cfg(test)]
    fn valid_until(&self) -> Instant {
        self.base + Duration::from_nanos(self.valid_until.load(Ordering::Acquire))
    }

    /// Stores the deadline of a lease renewed (or granted) by a request sent at `sent` and
    /// answered with `ttl`. Call with the lease lock held.
    fn store_deadline(&self, sent: Instant, ttl: Duration) {
        let until = (sent + ttl).checked_sub(margin(ttl)).unwrap_or(sent);
        let nanos = u64::try_from(until.saturating_duration_since(self.base).as_nanos())
            .unwrap_or(u64::MAX);
        self.valid_until.store(nanos, Ordering::Release);
    }

    /// Records a renewal of lease `id`, sent at `sent` and answered with `ttl`, unless the
    /// lease was replaced or the node left meanwhile.
    fn renewed(&self, id: i64, sent: Instant, ttl: Duration) {
        let lease = self.locked();
        if lease.id == id && !self.left() {
            self.store_deadline(sent, ttl);
        }
    }

    /// Records that lease `id` is lost: not live from now on.
    fn lapsed(&self, id: i64) {
        let lease = self.locked();
        if lease.id == id {
            self.valid_until.store(0, Ordering::Release);
        }
    }

    /// Installs a new lease, granted by a request sent at `sent` with `ttl`: the next
    /// generation. The generation is published before the deadline, so that a reader seeing
    /// the node live (reading [`is_live`](Self::is_live) first) then sees the new generation.
    /// Returns false (and installs nothing) if the node left.
    fn install(&self, id: i64, sent: Instant, ttl: Duration) -> bool {
        let mut lease = self.locked();
        if self.left() {
            return false;
        }
        lease.id = id;
        lease.generation += 1;
        self.generation.send_replace(lease.generation);
        self.store_deadline(sent, ttl);
        true
    }

    /// Marks the node as leaving, not live from now on. Returns the lease to revoke, or
    /// `None` if it had already left.
    fn begin_leave(&self) -> Option<i64> {
        let lease = self.locked();
        if self.left.swap(true, Ordering::AcqRel) {
            return None;
        }
        self.valid_until.store(0, Ordering::Release);
        Some(lease.id)
    }

    /// Revokes lease `id` within `deadline`; a lease that no longer exists is fine.
    async fn revoke(&self, id: i64, deadline: Duration) -> Result<()> {
        match self
            .etcd
            .call(deadline, self.etcd.client.clone().lease_revoke(id))
            .await
        {
            Ok(_) => Ok(()),
            Err(failure) if failure.is_lease_not_found() => Ok(()),
            Err(failure) => Err(self.etcd.error(&format!("revoking lease {id:x}"), failure)),
        }
    }

    /// See [`Membership::take`].
    async fn take(&self, shard: u32) -> Result<Option<u64>> {
        if self.left() {
            return Err(stopped());
        }
        // Liveness first, then the lease: a live answer holds for the lease read after it.
        if !self.is_live() {
            return Err(Error::storage(format!(
                "etcd lease of node `{}` is not live; no shard can be taken until it is renewed",
                self.node_id
            )));
        }
        let lease = self.lease();
        let key = self.shard_key(shard);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                self.node_id.clone(),
                Some(PutOptions::new().with_lease(lease.id)),
            )])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.etcd.txn(&format!("taking shard {shard}"), txn).await?;
        let term = if resp.succeeded() {
            // The put created the key at the transaction's revision.
            revision_of(resp.header())
        } else {
            match got(&resp) {
                Some(kv) if kv.lease() == lease.id && kv.value() == self.node_id.as_bytes() => {
                    kv.create_revision()
                }
                _ => return Ok(None),
            }
        };
        if self.lease().generation != lease.generation {
            return Err(Error::storage(format!(
                "etcd lease of node `{}` was replaced while taking shard {shard}; take it again",
                self.node_id
            )));
        }
        match u64::try_from(term) {
            Ok(term) if term > 0 => Ok(Some(term)),
            _ => Err(Error::internal(format!(
                "etcd gave shard {shard} the revision {term}"
            ))),
        }
    }

    /// See [`Membership::release`].
    async fn release(&self, shard: u32, term: u64) -> Result<bool> {
        let Ok(term) = i64::try_from(term) else {
            return Ok(false);
        };
        let key = self.shard_key(shard);
        let txn = Txn::new()
            .when([
                Compare::create_revision(key.clone(), CompareOp::Equal, term),
                Compare::value(key.clone(), CompareOp::Equal, self.node_id.clone()),
            ])
            .and_then([TxnOp::delete(key, None)]);
        let resp = self
            .etcd
            .txn(&format!("releasing shard {shard}"), txn)
            .await?;
        Ok(resp.succeeded())
    }

    /// Publishes `view` if its nodes or owners differ from the published one.
    fn publish(&self, view: &View) {
        self.view.send_if_modified(|published| {
            if published.same_content(view) {
                false
            } else {
                *published = Arc::new(view.clone());
                true
            }
        });
    }
}

/// Why the node key could not be registered.
enum RegisterError {
    /// It is held under `lease`, which is not one of this node's.
    InUse { lease: i64 },
    /// etcd failed or did not answer.
    Failed(Error),
}

/// Puts `key` (a node's) with `addr` under `lease`, if the key does not exist or is held
/// under `lease` already or under one of `ours` (this node's earlier leases, possibly not yet
/// expired).
async fn register(
    etcd: &Etcd,
    key: &str,
    addr: &str,
    lease: i64,
    ours: &[i64],
) -> Result<(), RegisterError> {
    let put = || TxnOp::put(key, addr, Some(PutOptions::new().with_lease(lease)));
    // A key deleted (or replaced) between the two steps is looked at again; a few rounds at
    // most, since only this node's own leases are replaced.
    for _ in 0..3 {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([put()])
            .or_else([TxnOp::get(key, None)]);
        let resp = etcd
            .txn("registering the node", txn)
            .await
            .map_err(RegisterError::Failed)?;
        if resp.succeeded() {
            return Ok(());
        }
        let Some(kv) = got(&resp) else { continue };
        if kv.lease() == lease && kv.value() == addr.as_bytes() {
            // A registration whose answer was lost (it timed out, then landed).
            return Ok(());
        }
        if kv.lease() != lease && !ours.contains(&kv.lease()) {
            return Err(RegisterError::InUse { lease: kv.lease() });
        }
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key,
                CompareOp::Equal,
                kv.mod_revision(),
            )])
            .and_then([put()]);
        let resp = etcd
            .txn("registering the node", txn)
            .await
            .map_err(RegisterError::Failed)?;
        if resp.succeeded() {
            return Ok(());
        }
    }
    Err(RegisterError::Failed(Error::storage(format!(
        "etcd at {}: the node key {key} kept changing while registering",
        etcd.endpoints
    ))))
}

/// Waits for a previous registration of this node ID to expire: a node restarted right after
/// a crash finds its old key, under a lease that is no longer renewed. The wait lasts at most
/// that lease's granted TTL (and a second); a key still there then is renewed by another live
/// process with this ID, and the join is refused.
async fn await_previous(etcd: &Etcd, name: &str, node_id: &str, key: &str) -> Result<()> {
    let mut deadline: Option<Instant> = None;
    loop {
        let found = etcd
            .ask(
                "reading the node key",
                REQUEST_TIMEOUT,
                etcd.client.clone().get(key, None),
            )
            .await?;
        let Some(kv) = found.kvs().first() else {
            return Ok(());
        };
        let lease = kv.lease();
        let deadline = match deadline {
            Some(deadline) => deadline,
            None => {
                let granted = etcd
                    .ask(
                        "reading the lease of the node key",
                        REQUEST_TIMEOUT,
                        etcd.client.clone().lease_time_to_live(lease, None),
                    )
                    .await
                    .map_or(0, |ttl| ttl.granted_ttl().max(0));
                tracing::info!(
                    node = node_id,
                    "node ID `{node_id}` is still registered (lease {lease:x}); waiting up to \
                     {granted} s for that registration to expire"
                );
                *deadline.insert(Instant::now() + secs(granted) + Duration::from_secs(1))
            }
        };
        if Instant::now() >= deadline {
            return Err(in_use(name, node_id, key, lease));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The error of a node ID held by another live process.
fn in_use(name: &str, node_id: &str, key: &str, lease: i64) -> Error {
    Error::config(format!(
        "node ID `{node_id}` is in use in cluster `{name}`: another live process holds {key} \
         (lease {lease:x}); give each node its own ID (if that process is gone, its \
         registration expires with its lease TTL)"
    ))
}

/// Checks the cluster's shard count in `P/config`, creating it if the cluster is new. This is
/// the first request: its deadline is the connect timeout.
async fn check_config(etcd: &Etcd, name: &str, prefix: &str, shards: u32) -> Result<()> {
    let key = format!("{prefix}config");
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key.clone(), shards.to_string(), None)])
        .or_else([TxnOp::get(key.clone(), None)]);
    let resp = match etcd
        .call(CONNECT_TIMEOUT, etcd.client.clone().txn(txn))
        .await
    {
        Ok(resp) => resp,
        Err(Failure::Timeout(deadline)) => {
            return Err(Error::storage(format!(
                "etcd at {} did not answer within {deadline:?}: is it running and reachable?",
                etcd.endpoints
            )))
        }
        Err(failure) => return Err(etcd.error("reading the cluster's config", failure)),
    };
    if resp.succeeded() {
        tracing::info!("created cluster `{name}` in etcd with {shards} shards");
        return Ok(());
    }
    let Some(kv) = got(&resp) else {
        return Err(Error::storage(format!(
            "etcd at {}: {key} vanished while being read",
            etcd.endpoints
        )));
    };
    let text = String::from_utf8_lossy(kv.value());
    match text.trim().parse::<u32>() {
        Ok(theirs) if theirs == shards => Ok(()),
        Ok(theirs) => Err(Error::config(format!(
            "cluster `{name}` has {theirs} shards; this node is configured with {shards}"
        ))),
        Err(_) => Err(Error::config(format!(
            "cluster `{name}` is malformed in etcd: {key} holds {text:?}, not a shard count"
        ))),
    }
}

/// Checks the proof of the cluster's secret in `P/secret-check`, creating it if the cluster
/// has none: a node holding another secret would take shards that the other nodes cannot
/// forward calls to, so it is refused before it registers.
async fn check_secret(etcd: &Etcd, name: &str, prefix: &str, check: &str) -> Result<()> {
    let key = format!("{prefix}secret-check");
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key.clone(), check, None)])
        .or_else([TxnOp::get(key.clone(), None)]);
    let resp = etcd
        .call(CONNECT_TIMEOUT, etcd.client.clone().txn(txn))
        .await
        .map_err(|failure| etcd.error("reading the cluster's secret check", failure))?;
    if resp.succeeded() {
        return Ok(());
    }
    match got(&resp) {
        Some(kv) if kv.value() == check.as_bytes() => Ok(()),
        Some(_) => Err(Error::config(format!(
            "this node's secret is not the secret of cluster `{name}` (its nodes could not \
             call each other): give every node the same RuntimeBuilder::secret"
        ))),
        None => Err(Error::storage(format!(
            "etcd at {}: {key} vanished while being read",
            etcd.endpoints
        ))),
    }
}

/// Joins (see [`Membership::join`]), on the private runtime. Returns the shared state with
/// the first view published.
async fn join_cluster(config: MembershipConfig, ttl_secs: i64) -> Result<Arc<Shared>> {
    let endpoints = config.endpoints.join(", ");
    let options = connect_options(&config.endpoints, &config.access)?;
    let reach = Reach::of(&config.access);
    let client = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        Client::connect(&config.endpoints, Some(options)),
    )
    .await
    {
        Ok(Ok(client)) => client,
        Ok(Err(
            e @ (etcd_client::Error::InvalidArgs(_)
            | etcd_client::Error::InvalidUri(_)
            | etcd_client::Error::TransportError(_)),
        )) => {
            return Err(Error::config(format!(
                "invalid etcd endpoint in [{endpoints}]: {e}"
            )))
        }
        Ok(Err(e)) => {
            return Err(refusal(&e, &endpoints, &reach, true).unwrap_or_else(|| {
                Error::storage(format!("cannot connect to etcd at {endpoints}: {e}"))
            }))
        }
        Err(_) => {
            return Err(Error::storage(format!(
                "cannot connect to etcd at {endpoints} within {CONNECT_TIMEOUT:?}"
            )))
        }
    };
    let etcd = Etcd {
        client,
        endpoints,
        reach,
        joining: AtomicBool::new(true),
    };
    let prefix = format!("{}/", config.name);
    check_config(&etcd, &config.name, &prefix, config.shards).await?;
    check_secret(&etcd, &config.name, &prefix, &config.secret_check).await?;
    let key = format!("{prefix}nodes/{}", config.node_id);
    await_previous(&etcd, &config.name, &config.node_id, &key).await?;

    let sent = Instant::now();
    let grant = etcd
        .ask(
            "granting a lease",
            REQUEST_TIMEOUT,
            etcd.client.clone().lease_grant(ttl_secs, None),
        )
        .await?;
    let (lease, ttl) = (grant.id(), secs(grant.ttl()));
    let (generation, _) = watch::channel(1);
    let (view, _) = watch::channel(Arc::new(View::default()));
    let shared = Arc::new(Shared {
        etcd,
        prefix,
        node_id: config.node_id,
        addr: config.addr,
        shards: config.shards,
        ttl,
        base: Instant::now(),
        valid_until: AtomicU64::new(0),
        lease: Mutex::new(Lease {
            id: lease,
            generation: 1,
        }),
        left: AtomicBool::new(false),
        generation,
        view,
    });
    let key = shared.node_key();
    let joined = async {
        match register(&shared.etcd, &key, &shared.addr, lease, &[]).await {
            Ok(()) => {}
            Err(RegisterError::InUse { lease: theirs }) => {
                return Err(in_use(&config.name, &shared.node_id, &key, theirs));
            }
            Err(RegisterError::Failed(e)) => return Err(e),
        }
        let view = read_view(&shared).await?;
        shared.publish(&view);
        Ok(())
    };
    match joined.await {
        Ok(()) => {
            shared.etcd.joining.store(false, Ordering::Relaxed);
            // `base` is after `sent`: the deadline is at least `base`, which is not live yet.
            shared.renewed(lease, sent, ttl);
            tracing::info!(
                node = %shared.node_id,
                "joined cluster `{}` (lease {lease:x}, TTL {ttl:?})",
                config.name
            );
            Ok(shared)
        }
        Err(e) => {
            shared.begin_leave();
            if let Err(revoke) = shared.revoke(lease, DROP_REVOKE_TIMEOUT).await {
                tracing::debug!("after a failed join: {revoke}");
            }
            Err(e)
        }
    }
}

/// What a key of the cluster is.
enum Key<'a> {
    /// `P/nodes/<id>`.
    Node(&'a str),
    /// `P/shards/<shard>`, in range.
    Shard(u32),
    /// `P/config`, or anything else.
    Other,
}

/// Which key `key` is, for a cluster of prefix `prefix` and `shards` shards.
fn parse_key<'a>(prefix: &str, shards: u32, key: &'a [u8]) -> Key<'a> {
    let Some(rest) = key
        .strip_prefix(prefix.as_bytes())
        .and_then(|rest| std::str::from_utf8(rest).ok())
    else {
        return Key::Other;
    };
    if let Some(id) = rest.strip_prefix("nodes/") {
        return Key::Node(id);
    }
    match rest.strip_prefix("shards/").map(str::parse::<u32>) {
        Some(Ok(shard)) if shard < shards => Key::Shard(shard),
        _ => Key::Other,
    }
}

/// Applies the put of `kv` to `view`.
fn apply_put(view: &mut View, prefix: &str, shards: u32, kv: &KeyValue) {
    let value = String::from_utf8_lossy(kv.value()).into_owned();
    match parse_key(prefix, shards, kv.key()) {
        Key::Node(id) => {
            view.nodes.insert(id.to_owned(), value);
        }
        Key::Shard(shard) => {
            let term = u64::try_from(kv.create_revision()).unwrap_or(0);
            view.owners.insert(shard, Owner { node: value, term });
        }
        Key::Other => {}
    }
}

/// Applies the delete of `kv`'s key to `view`.
fn apply_delete(view: &mut View, prefix: &str, shards: u32, kv: &KeyValue) {
    match parse_key(prefix, shards, kv.key()) {
        Key::Node(id) => {
            view.nodes.remove(id);
        }
        Key::Shard(shard) => {
            view.owners.remove(&shard);
        }
        Key::Other => {}
    }
}

/// Applies a watch response's events newer than `view` to it.
fn apply_events(view: &mut View, prefix: &str, shards: u32, resp: &WatchResponse) {
    let mut revision = view.revision;
    for event in resp.events() {
        let Some(kv) = event.kv() else { continue };
        // Events a full read already saw are skipped.
        if kv.mod_revision() <= view.revision {
            continue;
        }
        match event.event_type() {
            EventType::Put => apply_put(view, prefix, shards, kv),
            EventType::Delete => apply_delete(view, prefix, shards, kv),
        }
        revision = revision.max(kv.mod_revision());
    }
    // Not the header's revision: the response that confirms the watch carries the store's
    // current revision, and the events from the watch's start revision up to it follow.
    view.revision = revision;
}

/// Reads the whole view.
async fn read_view(shared: &Shared) -> Result<View> {
    let resp = shared
        .etcd
        .ask(
            "reading the cluster",
            REQUEST_TIMEOUT,
            shared.etcd.client.clone().get(
                shared.prefix.as_str(),
                Some(GetOptions::new().with_prefix()),
            ),
        )
        .await?;
    let mut view = View {
        revision: revision_of(resp.header()),
        ..View::default()
    };
    for kv in resp.kvs() {
        apply_put(&mut view, &shared.prefix, shared.shards, kv);
    }
    Ok(view)
}

/// Reads the whole view into `current` (when newer) and publishes it. Returns false (having
/// logged why) when the read failed.
async fn reread(shared: &Shared, current: &mut View) -> bool {
    match read_view(shared).await {
        Ok(view) => {
            if view.revision >= current.revision {
                *current = view;
                shared.publish(current);
            }
            true
        }
        Err(e) => {
            tracing::warn!(node = %shared.node_id, "{e}");
            false
        }
    }
}

/// Keeps the published view up to date from `current` on: an etcd watch of the prefix from
/// the view's revision on, a full read after the watch breaks (or is compacted away), and a
/// full read every TTL as a safety net.
async fn watch_view(shared: Arc<Shared>, mut current: View) {
    let mut backoff = RETRY_MIN;
    while !shared.left() {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(current.revision + 1);
        let watching = shared
            .etcd
            .ask(
                "watching the cluster",
                REQUEST_TIMEOUT,
                shared
                    .etcd
                    .client
                    .clone()
                    .watch(shared.prefix.as_str(), Some(options)),
            )
            .await;
        let mut stream = match watching {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(node = %shared.node_id, "{e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX);
                reread(&shared, &mut current).await;
                continue;
            }
        };
        let mut safety =
            tokio::time::interval_at(tokio::time::Instant::now() + shared.ttl, shared.ttl);
        loop {
            tokio::select! {
                message = stream.message() => match message {
                    Ok(Some(resp)) if resp.canceled() || resp.compact_revision() > 0 => {
                        tracing::info!(
                            node = %shared.node_id,
                            "etcd watch canceled ({}); reading the cluster again",
                            resp.cancel_reason()
                        );
                        break;
                    }
                    Ok(Some(resp)) => {
                        apply_events(&mut current, &shared.prefix, shared.shards, &resp);
                        shared.publish(&current);
                        backoff = RETRY_MIN;
                    }
                    Ok(None) => {
                        tracing::warn!(node = %shared.node_id, "etcd watch ended; watching again");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(node = %shared.node_id, "etcd watch failed: {e}");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(RETRY_MAX);
                        break;
                    }
                },
                _ = safety.tick() => {
                    reread(&shared, &mut current).await;
                }
            }
        }
        // A canceled or broken watch may have missed events: read everything again (a failed
        // read leaves the view as it is, and the next watch starts from it).
        reread(&shared, &mut current).await;
    }
}

/// What a renewal found.
enum Renewal {
    /// The lease lives on, with this TTL from the request's sending.
    Alive(Duration),
    /// The lease does not exist any more.
    Lost,
    /// No answer, or an error other than the lease's absence.
    Failed(String),
}

/// A keep-alive stream of the current lease.
type KeepAlive = (LeaseKeeper, LeaseKeepAliveStream);

/// Renews lease `id` once, on `stream` (opened if `None`).
async fn renew(shared: &Shared, id: i64, stream: &mut Option<KeepAlive>) -> Renewal {
    let Some((keeper, responses)) = stream.as_mut() else {
        // Opening the stream renews the lease once, with the TTL it was granted.
        return match shared.etcd.client.clone().lease_keep_alive(id).await {
            Ok(opened) => {
                *stream = Some(opened);
                Renewal::Alive(shared.ttl)
            }
            Err(e) => {
                let failure = Failure::Etcd(e);
                if failure.is_lease_not_found() {
                    Renewal::Lost
                } else {
                    Renewal::Failed(shared.etcd.error("renewing the lease", failure).message())
                }
            }
        };
    };
    if let Err(e) = keeper.keep_alive().await {
        return Renewal::Failed(format!("renewing the lease: {e}"));
    }
    match responses.message().await {
        Ok(Some(resp)) if resp.ttl() > 0 => Renewal::Alive(secs(resp.ttl())),
        Ok(Some(_)) => Renewal::Lost,
        Ok(None) => Renewal::Failed("the lease's keep-alive stream ended".to_owned()),
        Err(e) => Renewal::Failed(format!("renewing the lease: {e}")),
    }
}

/// Keeps the lease alive: a renewal every third of the TTL (one request at a time), retried
/// sooner after a failure; when the lease is lost, a new one ([`regain`]).
async fn keep_alive(shared: Arc<Shared>) {
    let interval = shared.ttl / 3;
    let retry = (shared.ttl / 10).max(Duration::from_millis(50));
    let mut lease = shared.lease().id;
    let mut stream: Option<KeepAlive> = None;
    while !shared.left() {
        let sent = Instant::now();
        let renewal = match tokio::time::timeout(interval, renew(&shared, lease, &mut stream)).await
        {
            Ok(renewal) => renewal,
            Err(_) => Renewal::Failed(format!(
                "etcd at {}: renewing the lease: no answer within {interval:?}",
                shared.etcd.endpoints
            )),
        };
        let next = match renewal {
            Renewal::Alive(ttl) => {
                shared.renewed(lease, sent, ttl);
                sent + interval
            }
            Renewal::Lost => {
                tracing::warn!(node = %shared.node_id, "etcd lease {lease:x} expired");
                stream = None;
                lease = regain(&shared, lease).await;
                // Renewed at once: the new lease may be close to its deadline already, when
                // etcd was slow to register the node.
                Instant::now()
            }
            Renewal::Failed(why) => {
                // A request that may still be answered would confuse the next one's answer.
                stream = None;
                if shared.is_live() {
                    tracing::debug!(node = %shared.node_id, "{why}; retrying");
                    Instant::now() + retry
                } else {
                    tracing::warn!(
                        node = %shared.node_id,
                        "etcd lease {lease:x} lapsed (no renewal in time; last: {why})"
                    );
                    lease = regain(&shared, lease).await;
                    Instant::now()
                }
            }
        };
        tokio::time::sleep_until(next.into()).await;
    }
}

/// Replaces the lost lease `lost`: revokes it (and any other lease of this node still
/// unrevoked: its keys vanish now rather than at expiry), grants a new one, registers the node
/// under it and installs it as the next generation. Retries, with backoff, until it succeeds
/// or the node leaves. Returns the new lease (or `lost` if the node left).
async fn regain(shared: &Shared, lost: i64) -> i64 {
    shared.lapsed(lost);
    let key = shared.node_key();
    let mut stale = vec![lost];
    let mut fresh: Option<(i64, Instant, Duration)> = None;
    let mut backoff = RETRY_MIN;
    let deadline = (shared.ttl / 3).max(Duration::from_millis(500));
    loop {
        if shared.left() {
            return lost;
        }
        let mut kept = Vec::new();
        for id in stale.drain(..) {
            if let Err(e) = shared.revoke(id, deadline).await {
                tracing::debug!(node = %shared.node_id, "{e}");
                kept.push(id);
            }
        }
        stale = kept;
        if let Some((id, sent, ttl)) = fresh {
            // A lease granted long ago may have expired while registering failed.
            if Instant::now() + margin(ttl) >= sent + ttl {
                stale.push(id);
                fresh = None;
            }
        }
        if fresh.is_none() {
            let sent = Instant::now();
            match shared
                .etcd
                .ask(
                    "granting a lease",
                    deadline,
                    shared
                        .etcd
                        .client
                        .clone()
                        .lease_grant(secs_of(shared.ttl), None),
                )
                .await
            {
                Ok(grant) => fresh = Some((grant.id(), sent, secs(grant.ttl()))),
                Err(e) => tracing::warn!(node = %shared.node_id, "regaining the lease: {e}"),
            }
        }
        if let Some((id, sent, ttl)) = fresh {
            match register(&shared.etcd, &key, &shared.addr, id, &stale).await {
                Ok(()) => {
                    if !shared.install(id, sent, ttl) {
                        let _ = shared.revoke(id, deadline).await;
                        return lost;
                    }
                    let generation = shared.lease().generation;
                    tracing::info!(
                        node = %shared.node_id,
                        "new etcd lease {id:x}: generation {generation}"
                    );
                    return id;
                }
                Err(RegisterError::InUse { lease: theirs }) => tracing::error!(
                    node = %shared.node_id,
                    "cannot register again: {}",
                    in_use(
                        shared.prefix.trim_end_matches('/'),
                        &shared.node_id,
                        &key,
                        theirs
                    )
                ),
                Err(RegisterError::Failed(e)) => {
                    tracing::warn!(node = %shared.node_id, "regaining the lease: {e}");
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RETRY_MAX);
    }
}

/// A TTL in etcd's whole seconds.
fn secs_of(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX).max(1)
}

impl super::fence::Lease for Membership {
    fn is_live(&self) -> bool {
        Membership::is_live(self)
    }
}

impl Coordinator for Membership {
    fn node_id(&self) -> &str {
        Membership::node_id(self)
    }

    fn view(&self) -> watch::Receiver<Arc<View>> {
        Membership::view(self)
    }

    fn generation(&self) -> watch::Receiver<u64> {
        Membership::generation(self)
    }

    fn take(&self, shard: u32) -> Op<'_, Option<u64>> {
        Box::pin(Membership::take(self, shard))
    }

    fn release(&self, shard: u32, term: u64) -> Op<'_, bool> {
        Box::pin(Membership::release(self, shard, term))
    }

    fn leave(&self) -> Op<'_, ()> {
        Box::pin(Membership::leave(self))
    }
}

#[cfg(test)]
mod tests {
    //! Against a real etcd: Debian's `etcd` (package `etcd-server`) on the `PATH`, one private
    //! server per test on free loopback ports.

    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
    use std::process::{Child, Command, Stdio};

    use super::*;
    use crate::ErrorKind;

    /// A one-member etcd in a temporary directory, killed when dropped.
    struct TestEtcd {
        child: Child,
        port: u16,
        _dir: tempfile::TempDir,
    }

    /// A port nothing listens on right now.
    fn free_port() -> u16 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        listener.local_addr().expect("bound address").port()
    }

    /// Whether the etcd on `port` reports itself healthy (it has a leader).
    fn healthy(port: u16) -> bool {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let request = b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        let mut reply = String::new();
        stream.write_all(request).is_ok()
            && stream.read_to_string(&mut reply).is_ok()
            && reply.contains(r#""health":"true""#)
    }

    impl TestEtcd {
        /// Starts one, trying other ports if it cannot bind its own.
        fn start() -> TestEtcd {
            for _ in 0..5 {
                if let Some(etcd) = TestEtcd::try_start() {
                    return etcd;
                }
            }
            panic!("etcd did not start (see the logs above)");
        }

        /// One attempt: `None` if etcd exited at start (a port taken meanwhile).
        fn try_start() -> Option<TestEtcd> {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let (port, peer_port) = (free_port(), free_port());
            let client = format!("http://127.0.0.1:{port}");
            let peer = format!("http://127.0.0.1:{peer_port}");
            let log = std::fs::File::create(dir.path().join("log")).expect("a log file");
            let mut child = Command::new("etcd")
                .arg("--data-dir")
                .arg(dir.path().join("data"))
                .args(["--name", "m", "--initial-cluster", &format!("m={peer}")])
                .args([
                    "--listen-client-urls",
                    &client,
                    "--advertise-client-urls",
                    &client,
                ])
                .args(["--listen-peer-urls", &peer])
                .args(["--initial-advertise-peer-urls", &peer])
                // Elects itself at once, and allows leases as short as 1 s.
                .args(["--heartbeat-interval", "25", "--election-timeout", "250"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("the log file"))
                .stderr(log)
                .spawn()
                .expect("cannot run `etcd` (Debian package etcd-server)");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
                    eprintln!("etcd exited at start ({status}):\n{log}");
                    return None;
                }
                if healthy(port) {
                    return Some(TestEtcd {
                        child,
                        port,
                        _dir: dir,
                    });
                }
                assert!(Instant::now() < deadline, "etcd not healthy within 20 s");
                std::thread::sleep(Duration::from_millis(20));
            }
        }

        /// Its client URL.
        fn endpoint(&self) -> String {
            format!("http://127.0.0.1:{}", self.port)
        }

        /// Sends `signal` (`-STOP`, `-CONT`) with kill(1).
        fn signal(&self, signal: &str) {
            let status = Command::new("kill")
                .args([signal, &self.child.id().to_string()])
                .status()
                .expect("kill");
            assert!(status.success(), "kill {signal} failed");
        }

        /// SIGSTOP: etcd hangs (its clock runs on), its sockets stay open.
        fn pause(&self) {
            self.signal("-STOP");
        }

        /// SIGCONT: etcd goes on where it stopped.
        fn resume(&self) {
            self.signal("-CONT");
        }

        /// A plain client, to look at etcd directly.
        async fn client(&self) -> Client {
            Client::connect([self.endpoint()], None)
                .await
                .expect("connect")
        }
    }

    impl Drop for TestEtcd {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Node `node` of cluster `test` (8 shards) on `etcd`, with a lease of `ttl_secs`.
    fn config(etcd: &TestEtcd, node: &str, ttl_secs: u64) -> MembershipConfig {
        MembershipConfig {
            endpoints: vec![etcd.endpoint()],
            name: "test".to_owned(),
            node_id: node.to_owned(),
            addr: format!("{node}.example:7001"),
            lease_ttl: Duration::from_secs(ttl_secs),
            shards: 8,
            secret_check: "check".to_owned(),
            access: EtcdAccess::default(),
        }
    }

    /// Waits until the view satisfies `ok`, for at most `within`.
    async fn until(
        view: &mut watch::Receiver<Arc<View>>,
        within: Duration,
        what: &str,
        ok: impl FnMut(&Arc<View>) -> bool,
    ) -> Arc<View> {
        let waited = tokio::time::timeout(within, view.wait_for(ok))
            .await
            .map(|seen| seen.map(|seen| seen.clone()));
        match waited {
            Ok(Ok(view)) => view,
            Ok(Err(_)) => panic!("{what}: the view's sender is gone"),
            Err(_) => panic!("{what}: not within {within:?}; view: {:?}", view.borrow()),
        }
    }

    /// An owner, for comparisons.
    fn owner(node: &str, term: u64) -> Owner {
        Owner {
            node: node.to_owned(),
            term,
        }
    }

    /// How long a change may take to reach a view (it takes milliseconds).
    const SOON: Duration = Duration::from_secs(3);

    /// Two members see each other's addresses and a take (with its term) in their views; a held
    /// shard cannot be taken; only the holder releases it.
    #[tokio::test]
    async fn members_see_each_other_and_the_shards_they_take() {
        let etcd = TestEtcd::start();
        // Long TTLs: the periodic full read must not be what updates the views here.
        let a = Membership::join(config(&etcd, "a", 30)).unwrap();
        let b = Membership::join(config(&etcd, "b", 30)).unwrap();
        assert!(a.is_live() && b.is_live());
        assert_eq!(*a.generation().borrow(), 1);
        assert_eq!((a.node_id(), a.shards()), ("a", 8));
        assert_eq!(a.lease_ttl(), Duration::from_secs(30));
        for m in [&a, &b] {
            let view = until(&mut m.view(), SOON, "both nodes", |v| v.nodes.len() == 2).await;
            assert_eq!(view.nodes["a"], "a.example:7001");
            assert_eq!(view.nodes["b"], "b.example:7001");
            assert!(view.owners.is_empty());
        }

        let term = a.take(3).await.unwrap().expect("shard 3 is free");
        let view = until(&mut b.view(), SOON, "a owns 3", |v| {
            v.owners.contains_key(&3)
        })
        .await;
        assert_eq!(view.owners[&3], owner("a", term));
        assert_eq!(view.owners.get(&3).map(|o| o.node.as_str()), Some("a"));
        assert!(view.revision >= i64::try_from(term).unwrap());
        assert_eq!(b.take(3).await.unwrap(), None, "a holds it");
        assert_eq!(
            a.take(3).await.unwrap(),
            Some(term),
            "idempotent for its holder"
        );
        assert!(!b.release(3, term).await.unwrap(), "b does not hold it");
        assert!(a.take(8).await.unwrap_err().kind() == ErrorKind::InvalidArgument);

        assert!(a.release(3, term).await.unwrap());
        assert!(!a.release(3, term).await.unwrap(), "already released");
        until(&mut b.view(), SOON, "3 unowned", |v| v.owners.is_empty()).await;
        until(&mut a.view(), SOON, "3 unowned", |v| v.owners.is_empty()).await;
    }

    /// The state of a membership that never joined: only for running [`watch_view`] alone.
    async fn observer(etcd: &TestEtcd) -> Arc<Shared> {
        let (generation, _) = watch::channel(1);
        let (view, _) = watch::channel(Arc::new(View::default()));
        Arc::new(Shared {
            etcd: Etcd {
                client: etcd.client().await,
                endpoints: etcd.endpoint(),
                reach: Reach::default(),
                joining: AtomicBool::new(false),
            },
            prefix: "test/".to_owned(),
            node_id: "observer".to_owned(),
            addr: String::new(),
            shards: 8,
            // The periodic full read must not be what updates the view.
            ttl: Duration::from_secs(60),
            base: Instant::now(),
            valid_until: AtomicU64::new(0),
            lease: Mutex::new(Lease {
                id: 0,
                generation: 1,
            }),
            left: AtomicBool::new(false),
            generation,
            view,
        })
    }

    /// The watch picks up exactly where the full read stopped: nothing written in between is lost,
    /// and foreign or out-of-range keys are ignored.
    #[tokio::test]
    async fn the_view_follows_etcd_from_the_revision_it_was_read_at() {
        let etcd = TestEtcd::start();
        let mut client = etcd.client().await;
        client.put("test/nodes/x", "x:1", None).await.unwrap();
        let shared = observer(&etcd).await;
        let read = read_view(&shared).await.unwrap();
        assert_eq!(read.nodes.len(), 1);
        // Changes between the read and the watch are not lost: the watch starts right after
        // the read's revision.
        let put = client.put("test/shards/2", "x", None).await.unwrap();
        let term = u64::try_from(put.header().unwrap().revision()).unwrap();
        client.put("test/nodes/y", "y:1", None).await.unwrap();
        client.put("test/shards/99", "y", None).await.unwrap(); // out of range: ignored
        client.put("test/config", "8", None).await.unwrap();
        client.put("other/nodes/z", "z:1", None).await.unwrap(); // another cluster
        let mut view = shared.view.subscribe();
        let watching = tokio::spawn(watch_view(shared.clone(), read));
        let v = until(&mut view, SOON, "the missed changes", |v| {
            v.owners.contains_key(&2) && v.nodes.contains_key("y")
        })
        .await;
        assert_eq!(v.owners[&2], owner("x", term));
        assert_eq!(v.nodes.keys().collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(v.owners.len(), 1);
        // And later changes, deletes included.
        client.delete("test/nodes/x", None).await.unwrap();
        client.delete("test/shards/2", None).await.unwrap();
        let v = until(&mut view, SOON, "the deletes", |v| {
            !v.nodes.contains_key("x") && v.owners.is_empty()
        })
        .await;
        assert_eq!(v.nodes.keys().collect::<Vec<_>>(), ["y"]);
        watching.abort();
    }

    /// A shard taken again gets a larger term (the key's create revision); a release with another
    /// term does nothing.
    #[tokio::test]
    async fn terms_grow_and_release_needs_the_term() {
        let etcd = TestEtcd::start();
        let a = Membership::join(config(&etcd, "a", 30)).unwrap();
        let first = a.take(5).await.unwrap().unwrap();
        assert!(!a.release(5, first + 1).await.unwrap(), "wrong term");
        assert!(!a.release(5, first - 1).await.unwrap(), "wrong term");
        assert!(a.release(5, first).await.unwrap());
        let second = a.take(5).await.unwrap().unwrap();
        assert!(second > first, "{second} after {first}");
        // Another shard taken later has a larger term still: terms are etcd revisions.
        let other = a.take(6).await.unwrap().unwrap();
        assert!(other > second);
        // The key itself says so.
        let mut client = etcd.client().await;
        let got = client.get("test/shards/5", None).await.unwrap();
        let kv = &got.kvs()[0];
        assert_eq!(u64::try_from(kv.create_revision()).unwrap(), second);
        assert_eq!(kv.value(), b"a");
        assert_eq!(kv.lease(), a.lease_id());
    }

    /// Refusals: a node ID in use, another shard count, invalid names or endpoints (Config); an
    /// etcd that refuses or hangs (Storage, within the connect timeout).
    #[tokio::test]
    async fn joins_are_refused_for_a_taken_id_another_shard_count_or_bad_names() {
        let etcd = TestEtcd::start();
        // A short TTL: a second process with a's ID waits that long for a's key to expire
        // (it might be a's crashed predecessor) before it is refused.
        let a = Membership::join(config(&etcd, "a", 2)).unwrap();

        let waited = Instant::now();
        let err = Membership::join(config(&etcd, "a", 30))
            .err()
            .expect("a is taken");
        assert!(
            waited.elapsed() >= Duration::from_secs(2),
            "refused without waiting"
        );
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(err.to_string().contains("`a`"), "{err}");
        let mut other = config(&etcd, "b", 30);
        other.shards = 16;
        let err = Membership::join(other).err().expect("shard count mismatch");
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(
            err.to_string()
                .contains("cluster `test` has 8 shards; this node is configured with 16"),
            "{err}"
        );
        let mut other = config(&etcd, "b", 30);
        other.secret_check = "another".to_owned();
        let err = Membership::join(other).err().expect("secret mismatch");
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(err.to_string().contains("secret"), "{err}");
        // The refused joins left nothing behind, and took nothing from a.
        let mut client = etcd.client().await;
        let nodes = client
            .get("test/nodes/", Some(GetOptions::new().with_prefix()))
            .await
            .unwrap();
        assert_eq!(nodes.kvs().len(), 1);
        assert_eq!(nodes.kvs()[0].lease(), a.lease_id());
        assert!(a.is_live());

        for (name, node) in [("test", ""), ("test", "a/b"), ("test", "a b"), ("", "c")] {
            let mut bad = config(&etcd, node, 30);
            bad.name = name.to_owned();
            let err = Membership::join(bad).err().expect("invalid name");
            assert_eq!(err.kind(), ErrorKind::Config, "{name:?} {node:?}: {err}");
        }
        let long = "n".repeat(129);
        let err = Membership::join(config(&etcd, &long, 30)).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(Membership::join(config(&etcd, &"n".repeat(128), 30)).is_ok());

        let mut bad = config(&etcd, "c", 30);
        bad.endpoints = vec!["http://[::1".to_owned()];
        let err = Membership::join(bad).err().expect("bad endpoint");
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");

        // Nothing listens: refused within the connect timeout, naming etcd and the endpoint.
        let mut gone = config(&etcd, "c", 30);
        gone.endpoints = vec![format!("http://127.0.0.1:{}", free_port())];
        let started = Instant::now();
        let err = Membership::join(gone.clone())
            .err()
            .expect("nothing listens");
        assert!(started.elapsed() < CONNECT_TIMEOUT + Duration::from_secs(2));
        assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
        assert!(err.to_string().contains(&gone.endpoints[0]), "{err}");
        assert!(err.to_string().contains("etcd"), "{err}");

        // A hung etcd: refused at the connect timeout, saying so.
        etcd.pause();
        let started = Instant::now();
        let err = Membership::join(config(&etcd, "d", 30))
            .err()
            .expect("etcd hangs");
        let waited = started.elapsed();
        etcd.resume();
        assert!(waited >= CONNECT_TIMEOUT && waited < CONNECT_TIMEOUT + Duration::from_secs(2));
        assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
        assert!(
            err.to_string().contains("did not answer within 5s"),
            "{err}"
        );
    }

    /// With etcd stopped longer than the TTL, liveness turns false by itself within the TTL; once
    /// etcd runs again, a new lease under a new generation, the node registered under it, and the
    /// old lease's shards gone.
    #[tokio::test]
    async fn a_lapsed_lease_is_noticed_alone_and_replaced() {
        let etcd = TestEtcd::start();
        let a = Membership::join(config(&etcd, "a", 2)).unwrap();
        let mut generation = a.generation();
        let mut view = a.view();
        let term = a.take(1).await.unwrap().unwrap();
        until(&mut view, SOON, "a owns 1", |v| v.owners.contains_key(&1)).await;
        let old_lease = a.lease_id();

        // Renewals keep it live well past its TTL.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(a.is_live());
        assert_eq!(*generation.borrow_and_update(), 1);
        assert!(a.valid_until() <= Instant::now() + Duration::from_secs(2));

        etcd.pause();
        let paused = Instant::now();
        // Not live within the TTL, with nothing but the clock to tell.
        while a.is_live() {
            assert!(
                paused.elapsed() < Duration::from_secs(2),
                "still live {:?} after etcd stopped",
                paused.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(a.take(2).await.is_err(), "no take while not live");
        // Long enough for etcd to expire the lease once it runs again.
        tokio::time::sleep(Duration::from_millis(3000).saturating_sub(paused.elapsed())).await;
        assert!(!a.is_live());
        assert_eq!(*generation.borrow(), 1);
        etcd.resume();

        tokio::time::timeout(Duration::from_secs(10), generation.wait_for(|g| *g == 2))
            .await
            .expect("a new generation within 10 s")
            .unwrap();
        // Live (at once, unless registering took most of the new lease's TTL: then at the
        // renewal that follows).
        let regained = Instant::now();
        while !a.is_live() {
            assert!(
                regained.elapsed() < Duration::from_secs(1),
                "not live again"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_ne!(a.lease_id(), old_lease);
        // The node is registered under the new lease; the old lease's shard is gone.
        let mut client = etcd.client().await;
        let got = client.get("test/nodes/a", None).await.unwrap();
        assert_eq!(got.kvs()[0].lease(), a.lease_id());
        assert_eq!(got.kvs()[0].value(), b"a.example:7001");
        assert!(client
            .get("test/shards/1", None)
            .await
            .unwrap()
            .kvs()
            .is_empty());
        until(&mut view, SOON, "1 unowned", |v| {
            v.owners.is_empty() && v.nodes.contains_key("a")
        })
        .await;
        // And takes work again, under the new lease.
        let again = a.take(1).await.unwrap().unwrap();
        assert!(again > term);
        let got = client.get("test/shards/1", None).await.unwrap();
        assert_eq!(got.kvs()[0].lease(), a.lease_id());
    }

    /// Leaving (or dropping the membership) removes the node and its shards from the others' views
    /// at once, not after the TTL.
    #[tokio::test]
    async fn leaving_removes_the_node_and_its_shards_at_once() {
        let etcd = TestEtcd::start();
        let a = Membership::join(config(&etcd, "a", 30)).unwrap();
        let b = Membership::join(config(&etcd, "b", 30)).unwrap();
        let c = Membership::join(config(&etcd, "c", 30)).unwrap();
        a.take(4).await.unwrap().unwrap();
        c.take(5).await.unwrap().unwrap();
        let mut view = b.view();
        until(&mut view, SOON, "all there", |v| {
            v.nodes.len() == 3 && v.owners.len() == 2
        })
        .await;

        let left = Instant::now();
        a.leave().await.unwrap();
        assert!(!a.is_live());
        let v = until(&mut view, SOON, "a gone", |v| !v.nodes.contains_key("a")).await;
        assert!(
            left.elapsed() < Duration::from_secs(2),
            "{:?}",
            left.elapsed()
        );
        assert!(!v.owners.contains_key(&4));
        a.leave().await.unwrap();
        assert!(a.take(4).await.is_err(), "a left");
        assert!(b.take(4).await.unwrap().is_some());

        // Dropped without leaving: it leaves all the same, in the background.
        let dropped = Instant::now();
        drop(c);
        let v = until(&mut view, SOON, "c gone", |v| !v.nodes.contains_key("c")).await;
        assert!(dropped.elapsed() < Duration::from_secs(2));
        assert!(!v.owners.contains_key(&5));
    }

    /// A member that stops renewing without leaving vanishes, shards included, when its lease
    /// expires.
    #[tokio::test]
    async fn a_crashed_member_vanishes_when_its_lease_expires() {
        let etcd = TestEtcd::start();
        let a = Membership::join(config(&etcd, "a", 2)).unwrap();
        let b = Membership::join(config(&etcd, "b", 2)).unwrap();
        a.take(2).await.unwrap().unwrap();
        let mut view = b.view();
        until(&mut view, SOON, "a owns 2", |v| v.owners.contains_key(&2)).await;

        a.crash();
        let crashed = Instant::now();
        // Nothing was revoked: a stays until its lease runs out.
        tokio::time::sleep(Duration::from_millis(800)).await;
        let v = view.borrow().clone();
        assert!(
            v.nodes.contains_key("a") && v.owners.contains_key(&2),
            "{v:?}"
        );
        until(&mut view, Duration::from_secs(5), "a expired", |v| {
            !v.nodes.contains_key("a") && v.owners.is_empty()
        })
        .await;
        assert!(crashed.elapsed() >= Duration::from_secs(1));
        assert!(b.take(2).await.unwrap().is_some());
        assert!(b.is_live());
    }

    /// A node restarted right after a crash, with its ID, waits for its old registration to
    /// expire, and joins.
    #[tokio::test]
    async fn a_crashed_node_restarted_with_its_id_joins_once_its_old_lease_expires() {
        let etcd = TestEtcd::start();
        let a = Membership::join(config(&etcd, "a", 2)).unwrap();
        a.crash();
        let restarted = Instant::now();
        let again = Membership::join(config(&etcd, "a", 2)).expect("the restarted node joins");
        assert!(
            restarted.elapsed() >= Duration::from_millis(500),
            "joined while the old registration was live"
        );
        assert!(restarted.elapsed() < Duration::from_secs(5));
        assert!(again.is_live());
        assert!(again.take(1).await.unwrap().is_some());
    }
}
