//! The front ends that hold WebSockets for this server's objects: [`Peers`].
//!
//! A client names itself with a holder ID after the handshake (`ClientFrame::Holder`). Every
//! socket it holds for an object here is reached through that [`Peer`], whichever of its
//! connections is current: a front end that reconnects (a network blip, or this server
//! restarting) takes its sockets back, and tells a restarted server which sockets it holds
//! (`ClientFrame::Sockets`), so objects find them again with their tags and attachments.
//!
//! A peer whose last connection ended and that does not come back within [`PEER_GRACE`] is
//! gone (its process died, or it shut down): each object gets a close (1006) for each of its
//! sockets, as for a client that vanished.
//!
//! Output for a peer with no connection at the moment is dropped: the object's messages to
//! its sockets are lost for that blip, not queued without bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::frame::{self, ServerFrame, WireOutput};
use super::outbox::Outbox;
use super::server::ServedClass;
use crate::id::ObjectId;
use crate::sockets::{Outgoing, SocketEvent, SocketHolder, SocketId};
use crate::websocket::Message;

/// How long a front end may be away before its sockets count as closed.
pub(crate) const PEER_GRACE: Duration = Duration::from_secs(5);

/// The peers of one server, by holder ID.
#[derive(Default)]
pub(crate) struct Peers {
    map: Mutex<HashMap<[u8; 16], Arc<Peer>>>,
}

/// One front end: its current connection and the sockets it holds here.
pub(crate) struct Peer {
    id: [u8; 16],
    state: Mutex<PeerState>,
}

#[derive(Default)]
struct PeerState {
    outbox: Option<Arc<Outbox>>,
    /// Bumped at each attach: a grace timer of an older detach does nothing.
    generation: u64,
    sockets: HashMap<SocketId, SocketHome>,
}

/// Where a socket's object lives.
#[derive(Clone)]
pub(crate) struct SocketHome {
    pub(crate) class: Arc<dyn ServedClass>,
    pub(crate) object: ObjectId,
}

impl Peers {
    fn map(&self) -> MutexGuard<'_, HashMap<[u8; 16], Arc<Peer>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection of peer `id` is up: its output goes there from now on.
    pub(crate) fn attach(&self, id: [u8; 16], outbox: Arc<Outbox>) -> Arc<Peer> {
        let peer = self
            .map()
            .entry(id)
            .or_insert_with(|| {
                Arc::new(Peer {
                    id,
                    state: Mutex::default(),
                })
            })
            .clone();
        let mut state = peer.state();
        state.outbox = Some(outbox);
        state.generation += 1;
        drop(state);
        peer
    }

    /// The connection `outbox` of `peer` ended: if no other took its place within
    /// [`PEER_GRACE`], the peer is gone and its sockets' objects get their closes.
    pub(crate) fn detach(self: &Arc<Self>, peer: &Arc<Peer>, outbox: &Arc<Outbox>) {
        let generation = {
            let mut state = peer.state();
            match &state.outbox {
                Some(current) if Arc::ptr_eq(current, outbox) => state.outbox = None,
                // A newer connection is current already.
                _ => return,
            }
            state.generation
        };
        let (peers, peer) = (self.clone(), peer.clone());
        tokio::spawn(async move {
            tokio::time::sleep(PEER_GRACE).await;
            let sockets = {
                let mut state = peer.state();
                if state.outbox.is_some() || state.generation != generation {
                    return;
                }
                std::mem::take(&mut state.sockets)
            };
            {
                let mut map = peers.map();
                if map.get(&peer.id).is_some_and(|p| Arc::ptr_eq(p, &peer)) {
                    map.remove(&peer.id);
                }
            }
            if !sockets.is_empty() {
                tracing::info!(
                    holder = %hex::encode(peer.id),
                    sockets = sockets.len(),
                    "a front end holding WebSockets is gone; closing its sockets"
                );
            }
            for (socket, home) in sockets {
                home.class.socket_gone(&home.object, socket);
            }
        });
    }
}

impl Peer {
    fn state(&self) -> MutexGuard<'_, PeerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Socket `socket` of `home`'s object is held by this peer.
    pub(crate) fn register(&self, socket: SocketId, home: SocketHome) {
        self.state().sockets.insert(socket, home);
    }

    /// Socket `socket` is closed.
    pub(crate) fn unregister(&self, socket: SocketId) {
        self.state().sockets.remove(&socket);
    }

    /// Writes an object's output for `socket` to the peer's current connection.
    fn write(&self, socket: SocketId, output: &Outgoing) {
        let Some(outbox) = self.state().outbox.clone() else {
            return;
        };
        let mut out = Vec::new();
        if let Err(e) = frame::encode(
            &ServerFrame::Socket {
                socket: socket.0,
                output: to_wire(output),
            },
            &mut out,
        ) {
            tracing::warn!(%socket, error = %e, "a WebSocket's output could not be encoded");
            return;
        }
        // Not alone: a broadcast writes many frames in a row, which the writer batches.
        let _ = outbox.send(&out, false);
    }
}

/// One socket held by a peer: what the object's record of it delivers to.
pub(crate) struct PeerSocket {
    pub(crate) peer: Arc<Peer>,
    pub(crate) home: SocketHome,
}

impl SocketHolder for PeerSocket {
    fn deliver(&self, id: SocketId, output: Outgoing) {
        match output {
            Outgoing::Accepted { .. } => self.peer.register(id, self.home.clone()),
            Outgoing::Close { .. } => self.peer.unregister(id),
            _ => {}
        }
        self.peer.write(id, &output);
    }
}

fn to_wire(output: &Outgoing) -> WireOutput<'_> {
    match output {
        Outgoing::Accepted {
            tags,
            auto_response,
        } => WireOutput::Accepted {
            tags: tags.iter().map(String::as_str).collect(),
            auto_response: auto_response
                .as_deref()
                .map(|a| (a.request.as_str(), a.response.as_str())),
        },
        Outgoing::Send(Message::Text(text)) => WireOutput::Text(text),
        Outgoing::Send(Message::Binary(bytes)) => WireOutput::Binary(bytes),
        Outgoing::Close { code, reason } => WireOutput::Close {
            code: *code,
            reason,
        },
        Outgoing::Attachment(bytes) => WireOutput::Attachment(bytes.as_deref()),
        Outgoing::AutoResponse(auto) => WireOutput::AutoResponse(
            auto.as_deref()
                .map(|a| (a.request.as_str(), a.response.as_str())),
        ),
    }
}

/// The close an object sees for a socket whose front end is gone.
pub(crate) fn gone() -> SocketEvent {
    SocketEvent::Close {
        code: 1006,
        reason: "the front end holding the socket is gone".to_owned(),
    }
}
