//! Cluster mode: several nodes sharing one storage (PostgreSQL), coordinated through etcd.
//!
//! Object IDs hash to a fixed number of shards, and each shard has one owner node at a time.
//! The parts, each in its file:
//! - [`placement`]: which shard an object is in, and which shards a node should take or
//!   release (pure logic);
//! - `membership`: everything done with etcd (the node's lease and key, the shard owner keys,
//!   the view of the cluster);
//! - `etcd_access`: how a node reaches etcd (TLS, a client certificate, a user), and the
//!   errors that say what to check when etcd refuses it;
//! - [`fence`]: the shards this node owns now and under which terms, checked by every
//!   delivery and every call start;
//! - `balance`: the loop that carries out placement (take, claim the term in storage, drain,
//!   release) and reacts to a lapsed lease;
//! - [`router`]: forwarding a call to its shard's owner.

pub(crate) mod balance;
mod etcd_access;
pub(crate) mod fence;
#[cfg(feature = "cluster")]
mod membership;
mod placement;
pub(crate) mod router;
pub(crate) mod sockets;

use std::collections::BTreeMap;

pub(crate) use self::etcd_access::EtcdAccess;
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
///
/// The connection to etcd is plaintext unless it is given a CA: with
/// [`etcd_ca`](Self::etcd_ca) it is TLS (`https://` endpoints), with
/// [`etcd_identity`](Self::etcd_identity) the node presents a client certificate (etcd's
/// `--client-cert-auth`), and with [`etcd_user`](Self::etcd_user) it logs in as an etcd user
/// (etcd's `auth enable`):
///
/// ```no_run
/// use durable_runtime::Cluster;
///
/// # fn main() -> std::io::Result<()> {
/// let cluster = Cluster::etcd(["https://etcd1:2379", "https://etcd2:2379"])
///     .etcd_ca(std::fs::read("etcd-ca.crt")?)
///     .etcd_identity(std::fs::read("node.crt")?, std::fs::read("node.key")?)
///     .etcd_user("durable", std::env::var("ETCD_PASSWORD").unwrap_or_default());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Cluster {
    pub(crate) endpoints: Vec<String>,
    pub(crate) name: String,
    pub(crate) node_id: Option<String>,
    pub(crate) lease_ttl: Duration,
    pub(crate) shards: u32,
    pub(crate) access: EtcdAccess,
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
            access: EtcdAccess::default(),
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

    /// Connects to etcd over TLS, trusting the server certificates that chain to `ca_pem`:
    /// one or more CA certificates, PEM (the CA that signed the certificates of etcd's
    /// `--cert-file`). The endpoints must then all be `https://`, and etcd's certificate must
    /// name the host of each (an IP SAN for an IP address, a DNS SAN for a host name).
    ///
    /// An `https://` endpoint needs it: the platform's CAs are not trusted for etcd. Needs
    /// the `tls` feature (a default one).
    ///
    /// # Errors
    ///
    /// Checked by [`RuntimeBuilder::open`](crate::RuntimeBuilder::open), which fails with
    /// [`Config`](crate::ErrorKind::Config) if `ca_pem` holds no certificate or one that
    /// cannot be a CA, if an endpoint is not `https://`, or if this build has no `tls`
    /// feature. Joining fails with [`Unauthenticated`](crate::ErrorKind::Unauthenticated),
    /// naming the endpoint, if etcd's certificate does not chain to this CA or does not name
    /// the endpoint's host, or if etcd does not speak TLS there.
    pub fn etcd_ca(mut self, ca_pem: impl Into<Vec<u8>>) -> Cluster {
        self.access.ca = Some(ca_pem.into());
        self
    }

    /// Presents this client certificate to etcd, for etcd's `--client-cert-auth` (which
    /// accepts certificates signed by its `--trusted-ca-file`): the certificate chain (PEM,
    /// the node's own certificate first) and its private key (PEM). Goes with
    /// [`etcd_ca`](Self::etcd_ca).
    ///
    /// # Errors
    ///
    /// Checked by [`RuntimeBuilder::open`](crate::RuntimeBuilder::open), which fails with
    /// [`Config`](crate::ErrorKind::Config) if there is no certificate in `cert_chain_pem`, no
    /// private key in `key_pem`, a key that does not match the certificate, or no
    /// [`etcd_ca`](Self::etcd_ca). Joining fails with
    /// [`Unauthenticated`](crate::ErrorKind::Unauthenticated), naming the endpoint, if etcd
    /// refuses the certificate.
    pub fn etcd_identity(
        mut self,
        cert_chain_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Cluster {
        self.access.identity = Some((cert_chain_pem.into(), key_pem.into()));
        self
    }

    /// Logs in to etcd as `user` with `password`, for etcd's user authentication (`etcdctl
    /// auth enable`). The user needs read and write permission on the cluster's keys: the
    /// prefix [`name`](Self::name) followed by `/` (`durable/` by default). The node logs in
    /// again by itself when etcd forgets its token (it expired, or etcd restarted). Over an
    /// `http://` endpoint the password crosses the network in clear: use
    /// [`etcd_ca`](Self::etcd_ca) too.
    ///
    /// # Errors
    ///
    /// [`RuntimeBuilder::open`](crate::RuntimeBuilder::open) fails with
    /// [`Config`](crate::ErrorKind::Config) for an empty user name, and with
    /// [`Unauthenticated`](crate::ErrorKind::Unauthenticated), naming the endpoint and the
    /// user, if etcd refuses the user or the password, or refuses the user access to the
    /// cluster's keys.
    pub fn etcd_user(mut self, user: impl Into<String>, password: impl Into<String>) -> Cluster {
        self.access.user = Some((user.into(), password.into()));
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
    /// Checks the etcd endpoints and how they are reached (TLS, certificates and keys,
    /// user), before anything is opened.
    pub(crate) fn check_etcd(&self) -> Result<()> {
        if self.endpoints.is_empty() {
            return Err(Error::config(
                "Cluster::etcd needs at least one etcd endpoint",
            ));
        }
        check_access(self)
    }

    /// Checks the settings, and the node's advertised address (`addr`, where it listens).
    fn check(&self, addr: SocketAddr) -> Result<()> {
        self.check_etcd()?;
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
        access: cluster.access.clone(),
    })?;
    Ok(joined)
}

#[cfg(feature = "cluster")]
fn check_access(cluster: &Cluster) -> Result<()> {
    etcd_access::connect_options(&cluster.endpoints, &cluster.access).map(drop)
}

#[cfg(not(feature = "cluster"))]
fn check_access(_cluster: &Cluster) -> Result<()> {
    Err(Error::config(
        "this build has no cluster mode: enable durable-runtime's `cluster` feature",
    ))
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
