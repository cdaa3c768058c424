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

pub(crate) mod fence;
mod placement;
pub(crate) mod router;

use std::collections::BTreeMap;
use std::time::Duration;

pub(crate) use self::fence::Ownership;
pub(crate) use self::router::Router;

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
