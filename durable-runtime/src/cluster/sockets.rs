//! WebSockets held by this node, following their objects around the cluster.
//!
//! A client's WebSocket is held by the node that accepted its HTTP connection, for as long as
//! the client stays connected; the socket's object lives on whichever node owns its shard, and
//! moves (a node joins, leaves or dies). The object knows its sockets by their records (tags,
//! attachment, and who holds them), kept in the memory of the node that runs it. So when the
//! object is elsewhere, each socket held here must be known there:
//!
//! - at the peer that runs the object, the socket is registered with this node's client of
//!   that peer (so the object's output for it comes back here) and announced on the
//!   connection (a `Sockets` frame with its tags and attachment, which the peer adopts);
//! - on this node, it is adopted by the object's namespace, with this node's holder.
//!
//! [`Following::place`] moves a socket's registration to where its object is now, before
//! any call or event for that object goes there (routing calls it), and a task of the router
//! does it for every held socket when the placement changes, so that an object that moved
//! reaches all its sockets even before any of them speaks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::error::Result;
use crate::id::{ObjectId, ID_BYTES};
use crate::sockets::{SocketHolder, SocketId, SocketRecord};
use crate::transport::client::{Client, HoldGuard};

/// Where an object's held sockets are known.
pub(crate) enum Place<'a> {
    /// The object runs on this node.
    Here,
    /// The object runs on the peer at this address, reached with this client.
    Peer(&'a str, &'a Arc<Client>),
}

/// Adopts a socket held here into the object's namespace on this node (the runtime, by the
/// class tag at the front of the object's ID).
pub(crate) trait Homes: Send + Sync {
    fn adopt_held(
        &self,
        object: &ObjectId,
        socket: SocketId,
        holder: Arc<dyn SocketHolder>,
        record: SocketRecord,
    ) -> Result<()>;
}

/// Where one held socket is registered now.
enum At {
    /// Nowhere yet (an upgrade whose `fetch` was not routed yet).
    Nowhere,
    /// Adopted by (or accepted by) the object's namespace on this node.
    Here,
    /// Registered with the client of the peer at this address.
    Peer { addr: String, _guard: HoldGuard },
}

struct Held {
    object: ObjectId,
    holder: Arc<dyn SocketHolder>,
    at: At,
}

#[derive(Default)]
struct Map {
    sockets: HashMap<SocketId, Held>,
    by_object: HashMap<[u8; ID_BYTES], Vec<SocketId>>,
}

/// The WebSockets held on this node for objects of the cluster; see the module
/// documentation.
#[derive(Default)]
pub(crate) struct Following {
    map: Mutex<Map>,
}

/// Keeps a socket followed; dropping it (the socket closed) forgets it.
pub(crate) struct FollowGuard {
    following: Weak<Following>,
    id: SocketId,
}

impl Drop for FollowGuard {
    fn drop(&mut self) {
        if let Some(following) = self.following.upgrade() {
            following.forget(self.id);
        }
    }
}

impl Following {
    fn map(&self) -> MutexGuard<'_, Map> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follows socket `id` of `object`, held here by `holder`, until the guard is dropped.
    pub(crate) fn hold(
        self: &Arc<Self>,
        id: SocketId,
        object: &ObjectId,
        holder: Arc<dyn SocketHolder>,
    ) -> FollowGuard {
        let mut map = self.map();
        map.sockets.insert(
            id,
            Held {
                object: object.clone(),
                holder,
                at: At::Nowhere,
            },
        );
        map.by_object
            .entry(*object.as_bytes())
            .or_default()
            .push(id);
        FollowGuard {
            following: Arc::downgrade(self),
            id,
        }
    }

    fn forget(&self, id: SocketId) {
        let mut map = self.map();
        let Some(held) = map.sockets.remove(&id) else {
            return;
        };
        let key = *held.object.as_bytes();
        if let Some(ids) = map.by_object.get_mut(&key) {
            ids.retain(|s| *s != id);
            if ids.is_empty() {
                map.by_object.remove(&key);
            }
        }
    }

    /// The objects with sockets held here.
    pub(crate) fn objects(&self) -> Vec<ObjectId> {
        let map = self.map();
        map.by_object
            .values()
            .filter_map(|ids| ids.first())
            .filter_map(|id| map.sockets.get(id).map(|held| held.object.clone()))
            .collect()
    }

    /// Makes every socket held here for `object` known where the object is now (`place`).
    /// Sockets not yet accepted are only registered (their acceptance comes back as output).
    pub(crate) fn place(&self, object: &ObjectId, place: Place<'_>, homes: Option<&dyn Homes>) {
        let mut map = self.map();
        let Some(ids) = map.by_object.get(object.as_bytes()).cloned() else {
            return;
        };
        for id in ids {
            let Some(held) = map.sockets.get_mut(&id) else {
                continue;
            };
            match (&place, &held.at) {
                (Place::Here, At::Here) => continue,
                (Place::Peer(addr, _), At::Peer { addr: at, .. }) if at == addr => continue,
                _ => {}
            }
            let record = held.holder.record();
            match place {
                Place::Here => {
                    if let (Some(record), Some(homes)) = (record, homes) {
                        if let Err(e) = homes.adopt_held(object, id, held.holder.clone(), record) {
                            tracing::warn!(socket = %id, error = %e, "cannot hand a held WebSocket to its object here");
                            continue;
                        }
                    }
                    held.at = At::Here;
                }
                Place::Peer(addr, client) => {
                    let guard = client.hold_socket(id, object, held.holder.clone());
                    if let Some(record) = record {
                        client.announce(id, object, &record);
                    }
                    held.at = At::Peer {
                        addr: addr.to_owned(),
                        _guard: guard,
                    };
                }
            }
        }
    }
}
