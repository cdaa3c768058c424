//! Cluster mode: several nodes sharing one storage (PostgreSQL), coordinated through etcd.
//!
//! Object IDs hash to a fixed number of shards, and each shard has one owner node at a time.
//! The parts, each in its file:
//! - [`placement`]: which shard an object is in, and which shards a node should take or
//!   release (pure logic);
//! - `membership`: everything done with etcd (the node's lease and key, the shard owner keys,
//!   the view of the cluster);
//! - [`fence`]: the shards this node owns now and under which terms, checked by every
//!   delivery and every call start;
//! - `balance`: the loop that carries out placement (take, claim the term in storage, drain,
//!   release) and reacts to a lapsed lease;
//! - [`router`]: forwarding a call to its shard's owner.

pub(crate) mod balance;
pub(crate) mod fence;
#[cfg(feature = "cluster")]
mod membership;
mod placement;
pub(crate) mod router;
pub(crate) mod sockets;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use self::balance::{Balancer, Coordinator, LeaveHandle, Objects};
use self::fence::Lease;
pub(crate) use self::fence::Ownership;
pub(crate) use self::router::Router;
use crate::error::{Error, Result};
use crate::storage::Backend;
use crate::transport::TransportConfig;

/// The default lease TTL.
const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

/// The default number of shards of a new cluster.
const DEFAULT_SHARDS: u32 = 128;

/// How a runtime joins a cluster: the etcd endpoints, and this node's settings. Give it to
/// [`RuntimeBuilder::cluster`](crate::RuntimeBuilder::cluster), with PostgreSQL storage shared
/// by every node and a [`listen`](crate::RuntimeBuilder::listen) address the other nodes can
/// reach.
///
/// ```no_run
/// use std::time::Duration;
/// use durable_runtime::{Cluster, Runtime};
///
/// # fn main() -> durable_runtime::Result<()> {
/// let rt = Runtime::builder()
///     .postgres("postgres://durable@db:5432/app")
///     .cluster(
///         Cluster::etcd(["http://etcd1:2379", "http://etcd2:2379"])
///             .node_id("n1")
///             .lease_ttl(Duration::from_secs(10)),
///     )
///     .listen("10.0.0.1:7001")
///     .secret("a shared secret")
///     .open()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Cluster {
    pub(crate) endpoints: Vec<String>,
    pub(crate) name: String,
    pub(crate) node_id: Option<String>,
    pub(crate) lease_ttl: Duration,
    pub(crate) shards: u32,
}

impl Cluster {
    /// A cluster coordinated by the etcd cluster at these endpoints (`"http://host:2379"`).
    pub fn etcd<I, S>(endpoints: I) -> Cluster
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cluster {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            name: "durable".to_owned(),
            node_id: None,
            lease_ttl: DEFAULT_LEASE_TTL,
            shards: DEFAULT_SHARDS,
        }
    }

    /// The cluster's name: the prefix of its keys in etcd (default `"durable"`). Clusters of
    /// other names share an etcd without meeting.
    pub fn name(mut self, name: impl Into<String>) -> Cluster {
        self.name = name.into();
        self
    }

    /// This node's ID, unique in the cluster while the node lives (default: random). A node
    /// restarted with the same ID is the same member again.
    pub fn node_id(mut self, node_id: impl Into<String>) -> Cluster {
        self.node_id = Some(node_id.into());
        self
    }

    /// The TTL of this node's lease in etcd (default 10 s): a node that stops renewing it
    /// (dead, paused, cut off from etcd) loses its shards this long after its last renewal,
    /// and stops starting calls a little before. Failover of a dead node's objects takes
    /// about this long.
    pub fn lease_ttl(mut self, ttl: Duration) -> Cluster {
        self.lease_ttl = ttl;
        self
    }

    /// The number of shards (default 128): fixed when the cluster is first created; a node
    /// configured with another number is refused.
    pub fn shards(mut self, shards: u32) -> Cluster {
        self.shards = shards;
        self
    }
}

/// One node's view of the cluster, as last read from etcd.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct View {
    /// The etcd revision the view is at.
    pub(crate) revision: i64,
    /// The live members: node ID → the address its server listens on.
    pub(crate) nodes: BTreeMap<String, String>,
    /// The owned shards: shard → owner.
    pub(crate) owners: BTreeMap<u32, Owner>,
}

/// A shard's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    /// The owner node's ID.
    pub(crate) node: String,
    /// The shard's fencing term: the owner key's create revision.
    pub(crate) term: u64,
}

/// A node that joined its cluster, before the runtime's objects exist.
pub(crate) struct Joined {
    membership: Arc<dyn Coordinator>,
    pub(crate) ownership: Arc<Ownership>,
    pub(crate) router: Arc<Router>,
    lease_ttl: Duration,
}

/// A node's cluster parts while the runtime runs.
pub(crate) struct Running {
    leave: LeaveHandle,
    router: Arc<Router>,
}

impl Running {
    /// Hands every shard over (their queued calls finish first), and leaves the cluster.
    pub(crate) async fn leave(&self) {
        self.leave.leave().await;
    }

    /// Closes the connections to the other nodes.
    pub(crate) fn close(&self) {
        self.router.close();
    }
}

impl Cluster {
    /// Checks the settings, and the node's advertised address (`addr`, where it listens).
    fn check(&self, addr: SocketAddr) -> Result<()> {
        if self.endpoints.is_empty() {
            return Err(Error::config(
                "Cluster::etcd needs at least one etcd endpoint",
            ));
        }
        if self.shards == 0 {
            return Err(Error::config("a cluster has at least one shard"));
        }
        if self.lease_ttl < Duration::from_secs(1) {
            return Err(Error::config(format!(
                "the lease TTL is {:?}; etcd counts leases in whole seconds, the least is 1 s",
                self.lease_ttl
            )));
        }
        if addr.ip().is_unspecified() {
            return Err(Error::config(format!(
                "a cluster node listens on {addr}, which other nodes cannot dial: listen on \
                 the address they reach it at"
            )));
        }
        Ok(())
    }

    /// This node's ID: the one set, or a random one.
    fn node(&self) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            let mut bytes = [0u8; 8];
            // A failing OS random source leaves zeros; the etcd key check still refuses a
            // node ID in use.
            let _ = getrandom::fill(&mut bytes);
            format!("node-{}", hex::encode(bytes))
        })
    }

    /// Joins the cluster as the node listening at `addr`: registers with etcd, and makes
    /// the node's table and router.
    pub(crate) fn join(&self, addr: SocketAddr, transport: &TransportConfig) -> Result<Joined> {
        self.check(addr)?;
        let node = self.node();
        let membership = join_etcd(self, &node, addr, &transport.secret)?;
        let ownership = Arc::new(Ownership::new(
            node,
            self.shards,
            membership.clone() as Arc<dyn Lease>,
        ));
        let router = Arc::new(Router::new(
            ownership.clone(),
            membership.view(),
            transport.clone(),
            self.lease_ttl * 2,
        ));
        Ok(Joined {
            membership,
            ownership,
            router,
            lease_ttl: self.lease_ttl,
        })
    }
}

impl Joined {
    /// Starts taking shards, for the runtime's `objects`, with its `backend`.
    pub(crate) fn start(self, backend: Arc<dyn Backend>, objects: Weak<dyn Objects>) -> Running {
        tokio::spawn(router::follow_sockets(Arc::downgrade(&self.router)));
        let leave = Balancer {
            coordinator: self.membership.clone(),
            ownership: self.ownership,
            backend,
            objects,
            drain_timeout: self.lease_ttl,
            tick: (self.lease_ttl / 10).min(Duration::from_millis(250)),
            claim_warned: Default::default(),
        }
        .start();
        Running {
            leave,
            router: self.router,
        }
    }
}

/// The proof of the cluster's secret kept in etcd: a MAC of the cluster's name made with the
/// secret (the same on every node holding it; the secret itself is not stored).
#[cfg(feature = "cluster")]
fn secret_check(name: &str, secret: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"durable cluster secret check\0");
    mac.update(name.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(feature = "cluster")]
fn join_etcd(
    cluster: &Cluster,
    node: &str,
    addr: SocketAddr,
    secret: &[u8],
) -> Result<Arc<dyn Coordinator>> {
    let joined = membership::Membership::join(membership::MembershipConfig {
        endpoints: cluster.endpoints.clone(),
        name: cluster.name.clone(),
        node_id: node.to_owned(),
        addr: addr.to_string(),
        lease_ttl: cluster.lease_ttl,
        shards: cluster.shards,
        secret_check: secret_check(&cluster.name, secret),
    })?;
    Ok(joined)
}

#[cfg(not(feature = "cluster"))]
fn join_etcd(
    _cluster: &Cluster,
    _node: &str,
    _addr: SocketAddr,
    _secret: &[u8],
) -> Result<Arc<dyn Coordinator>> {
    Err(Error::config(
        "this build has no cluster mode: enable durable-runtime's `cluster` feature",
    ))
}
