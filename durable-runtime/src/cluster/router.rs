//! Routing: where a call to an object goes in a cluster.
//!
//! A call entering any node is run there if the node owns the object's shard, and is
//! otherwise forwarded to the owner over the remote-call transport (one connection per peer,
//! made on first use, with the cluster's secret). The owner is looked up in the node's latest
//! view of etcd; a view can be stale (a node just died, a shard is changing hands), so a call
//! refused by a node that does not own the shard ([`Error::is_not_here`]), or that could not
//! be sent to a dead peer, waits for the next change of the view or of this node's own table,
//! and tries again — until the call's deadline, or the router's patience when the call has
//! none. Then it fails with [`Unavailable`](crate::ErrorKind::Unavailable). A call that was
//! sent and lost (a peer died while running it) is not retried: it may have run, and fails
//! with [`Disconnected`](crate::ErrorKind::Disconnected) as any remote call does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::fence::{Ownership, Standing};
use super::sockets::{FollowGuard, Following, Homes, Place};
use super::View;
use crate::id::{ObjectId, ID_BYTES};
use crate::sockets::{SocketHolder, SocketId};
use crate::transport::client::Client;
use crate::transport::TransportConfig;

/// Where a call goes now.
pub(crate) enum Hop {
    /// This node owns the shard: run it here.
    Here,
    /// Another node owns it: forward it there.
    Peer(Arc<Client>),
    /// No reachable owner yet (why, for the error if it stays so).
    Wait(String),
}

impl Hop {
    /// Where the call goes, to tell one attempt's target from the last one's.
    pub(crate) fn target(&self) -> &str {
        match self {
            Hop::Here => "",
            Hop::Peer(client) => client.addr(),
            Hop::Wait(_) => "(none)",
        }
    }
}

/// How long to wait before trying a peer that could not be reached again, when nothing
/// changes meanwhile: from the first value, doubling up to the last.
const FIRST_RETRY: Duration = Duration::from_millis(20);
const LAST_RETRY: Duration = Duration::from_millis(500);

/// How long a call routed here waits for this node's claim of its shard before it is
/// refused (and its caller looks again): a claim takes one PostgreSQL transaction, unless
/// storage is failing.
const CLAIM_WAIT: Duration = Duration::from_secs(1);

/// Finds the node that runs an object; see the module documentation.
pub(crate) struct Router {
    ownership: Arc<Ownership>,
    view: watch::Receiver<Arc<View>>,
    transport: TransportConfig,
    /// A client per peer address, made on first use.
    peers: Mutex<HashMap<String, Arc<Client>>>,
    patience: Duration,
    /// The WebSockets held here, following their objects (see `sockets.rs`).
    following: Arc<Following>,
    /// How many sockets are followed: calls skip the map when there are none.
    followed: Arc<AtomicUsize>,
    /// The runtime, to adopt sockets whose object runs here.
    homes: OnceLock<Weak<dyn Homes>>,
    /// Calls and events sent on to another node.
    forwarded: AtomicU64,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("node", &self.ownership.node())
            .field("patience", &self.patience)
            .finish_non_exhaustive()
    }
}

/// The attempts of one routed operation (a call, a WebSocket event, a cluster-wide delete):
/// where to try, and, after a failed try, the wait for the placement to change or for the
/// next retry delay, until the operation's deadline (or the router's patience).
pub(crate) struct Attempts<'a> {
    router: &'a Router,
    started: Instant,
    until: Instant,
    /// Failed tries at the current target: the retry delay doubles with each.
    attempt: u32,
    /// The current target ([`Hop::target`]).
    target: String,
    /// Taken before each try, so that a change during it is not missed.
    changes: Option<Changes>,
}

impl<'a> Attempts<'a> {
    /// The attempts of an operation that gives up at `deadline`, or after the router's
    /// patience without one.
    pub(crate) fn new(router: &'a Router, deadline: Option<Instant>) -> Attempts<'a> {
        let started = Instant::now();
        Attempts {
            router,
            started,
            until: deadline.unwrap_or(started + router.patience),
            attempt: 0,
            target: String::new(),
            changes: None,
        }
    }

    /// A try begins: changes from now on end the wait after it.
    pub(crate) fn begin(&mut self) {
        self.changes = Some(self.router.changes());
    }

    /// A try begins, at the place the object `id` is at now. A new place (the view moved on)
    /// is tried after the first retry delay, not after the delay the last one grew to.
    pub(crate) fn locate(&mut self, id: &[u8; ID_BYTES]) -> Hop {
        self.begin();
        let hop = self.router.locate(id);
        if hop.target() != self.target {
            self.target = hop.target().to_owned();
            self.attempt = 0;
        }
        hop
    }

    /// A try failed: waits for a change since it began, or for the retry delay; `false` once
    /// the operation's time is up (it gives up).
    pub(crate) async fn again(&mut self) -> bool {
        let changes = self.changes.take().unwrap_or_else(|| self.router.changes());
        let go_on = self.router.settle(changes, self.attempt, self.until).await;
        self.attempt += 1;
        go_on
    }

    /// How long the operation was given.
    pub(crate) fn given(&self) -> Duration {
        self.until.saturating_duration_since(self.started)
    }
}

/// A snapshot of what a retry waits to change.
pub(crate) struct Changes {
    ownership: watch::Receiver<u64>,
    view: watch::Receiver<Arc<View>>,
}

impl Router {
    /// A router for this node: its own table, its view of the cluster, the transport settings
    /// for peers, and how long a call without a timeout may wait for an owner.
    pub(crate) fn new(
        ownership: Arc<Ownership>,
        view: watch::Receiver<Arc<View>>,
        transport: TransportConfig,
        patience: Duration,
    ) -> Router {
        Router {
            ownership,
            view,
            transport,
            peers: Mutex::default(),
            patience,
            following: Arc::default(),
            followed: Arc::default(),
            homes: OnceLock::new(),
            forwarded: AtomicU64::new(0),
        }
    }

    /// How many calls and events this node sent on to another node.
    pub(crate) fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }

    /// How many shards this node owns now.
    pub(crate) fn shards_owned(&self) -> u64 {
        self.ownership.held().len() as u64
    }

    /// The runtime whose namespaces adopt sockets held here for objects that run here.
    pub(crate) fn set_homes(&self, homes: Weak<dyn Homes>) {
        let _ = self.homes.set(homes);
    }

    /// Follows WebSocket `id` of `object`, held here by `holder`, until the guard is dropped:
    /// wherever the object runs, it knows the socket.
    pub(crate) fn hold_socket(
        &self,
        id: SocketId,
        object: &ObjectId,
        holder: Arc<dyn SocketHolder>,
    ) -> SocketGuard {
        self.followed.fetch_add(1, Ordering::AcqRel);
        SocketGuard {
            _guard: self.following.hold(id, object, holder),
            followed: self.followed.clone(),
        }
    }

    /// Before a call or event for `object` runs here: the sockets held here for it are known
    /// to its namespace.
    pub(crate) fn place_here(&self, object: &ObjectId) {
        if self.followed.load(Ordering::Acquire) == 0 {
            return;
        }
        let homes = self.homes.get().and_then(Weak::upgrade);
        self.following.place(object, Place::Here, homes.as_deref());
    }

    /// Before a call or event for `object` goes to the peer of `client` (counted as
    /// forwarded): the sockets held here for it are registered and announced there.
    pub(crate) fn place_at_peer(&self, object: &ObjectId, client: &Arc<Client>) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        if self.followed.load(Ordering::Acquire) == 0 {
            return;
        }
        self.following
            .place(object, Place::Peer(client.addr(), client), None);
    }

    /// Whether this node is taking the shard of the object with these ID bytes: a call that
    /// reached it waits for [`Router::wait_claimed`] rather than being refused.
    pub(crate) fn is_claiming(&self, id: &[u8; ID_BYTES]) -> bool {
        self.ownership.is_claiming(self.ownership.shard_of(id))
    }

    /// Waits until this node's take of the object's shard is done or failed, at most until
    /// `deadline` or [`CLAIM_WAIT`] from now.
    pub(crate) async fn wait_claimed(&self, id: &[u8; ID_BYTES], deadline: Option<Instant>) {
        let cap = Instant::now() + CLAIM_WAIT;
        let until = deadline.map_or(cap, |deadline| deadline.min(cap));
        self.ownership
            .wait_claimed(self.ownership.shard_of(id), until.into())
            .await;
    }

    /// Where a call to the object with these ID bytes goes now.
    pub(crate) fn locate(&self, id: &[u8; ID_BYTES]) -> Hop {
        let shard = self.ownership.shard_of(id);
        let live = self.ownership.is_live();
        if live && matches!(self.ownership.standing(shard), Standing::Owned(_)) {
            return Hop::Here;
        }
        let peer = {
            let view = self.view.borrow();
            match view.owners.get(&shard) {
                None => return Hop::Wait(format!("shard {shard} has no owner")),
                Some(owner) if owner.node == self.ownership.node() => {
                    return Hop::Wait(if live {
                        format!("shard {shard} is being claimed or handed over by this node")
                    } else {
                        format!(
                            "this node (`{}`) lost its cluster lease, and the view of who owns \
                             shard {shard} is stale",
                            owner.node
                        )
                    });
                }
                Some(owner) => match view.nodes.get(&owner.node) {
                    Some(addr) => addr.clone(),
                    None => {
                        return Hop::Wait(format!(
                            "shard {shard}'s owner `{}` is not a live member",
                            owner.node
                        ))
                    }
                },
            }
        };
        Hop::Peer(self.peer(&peer))
    }

    /// The clients of every other live node of the view.
    pub(crate) fn peers(&self) -> Vec<Arc<Client>> {
        let addrs: Vec<String> = {
            let view = self.view.borrow();
            view.nodes
                .iter()
                .filter(|(node, _)| node.as_str() != self.ownership.node())
                .map(|(_, addr)| addr.clone())
                .collect()
        };
        addrs.iter().map(|addr| self.peer(addr)).collect()
    }

    /// The client of the peer at `addr`, made on first use.
    fn peer(&self, addr: &str) -> Arc<Client> {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers
            .entry(addr.to_owned())
            .or_insert_with(|| {
                Arc::new(Client::for_node(
                    addr.to_owned(),
                    self.transport.clone(),
                    self.ownership.node(),
                ))
            })
            .clone()
    }

    /// What a retry waits for, taken before looking: a change after this is not missed.
    fn changes(&self) -> Changes {
        let mut changes = Changes {
            ownership: self.ownership.watch(),
            view: self.view.clone(),
        };
        changes.ownership.mark_unchanged();
        changes.view.mark_unchanged();
        changes
    }

    /// Waits for a change of the view or of this node's table since `changes` was taken, or
    /// for the `attempt`-th retry delay, whichever comes first; `false` if `until` comes
    /// first (the caller gives up).
    async fn settle(&self, mut changes: Changes, attempt: u32, until: Instant) -> bool {
        let now = Instant::now();
        if now >= until {
            return false;
        }
        let delay = FIRST_RETRY
            .saturating_mul(1 << attempt.min(10))
            .min(LAST_RETRY);
        let wake = (now + delay).min(until);
        tokio::select! {
            Ok(()) = changes.ownership.changed() => {}
            Ok(()) = changes.view.changed() => {}
            () = tokio::time::sleep_until(wake.into()) => {}
        }
        Instant::now() < until
    }

    /// Re-places every followed socket where its object is now (after a placement change).
    fn place_all(&self) {
        if self.followed.load(Ordering::Acquire) == 0 {
            return;
        }
        for object in self.following.objects() {
            match self.locate(object.as_bytes()) {
                Hop::Here => self.place_here(&object),
                Hop::Peer(client) => {
                    self.following
                        .place(&object, Place::Peer(client.addr(), &client), None)
                }
                Hop::Wait(_) => {}
            }
        }
    }

    /// Closes the connections to peers.
    pub(crate) fn close(&self) {
        let peers = std::mem::take(&mut *self.peers.lock().unwrap_or_else(|p| p.into_inner()));
        for client in peers.values() {
            client.close();
        }
    }
}

/// Keeps a WebSocket followed (see [`Router::hold_socket`]).
pub(crate) struct SocketGuard {
    _guard: FollowGuard,
    followed: Arc<AtomicUsize>,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.followed.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The router's task: on every change of the placement, the WebSockets held here follow
/// their objects (an object that moved reaches its sockets even before they speak).
pub(crate) async fn follow_sockets(router: Weak<Router>) {
    let Some(Changes {
        mut ownership,
        mut view,
    }) = router.upgrade().map(|r| r.changes())
    else {
        return;
    };
    loop {
        tokio::select! {
            changed = ownership.changed() => if changed.is_err() { return },
            changed = view.changed() => if changed.is_err() { return },
        }
        let Some(router) = router.upgrade() else {
            return;
        };
        router.place_all();
    }
}
