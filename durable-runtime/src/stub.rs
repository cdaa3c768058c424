//! Stubs: cheap, cloneable handles that send typed calls to one object.
//!
//! A stub holds a [`Route`] to its object's class, not a runtime: a [`LocalClass`] in this
//! process, which takes envelopes for the class's actors, or a [`RemoteClass`] across a
//! connection. This module depends on the actor loop only for its [`Envelope`], and not on
//! what runs the actors (the namespaces, the runtime).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::actor::{Envelope, ReplyTo};
use crate::class::{Call, DurableObject};
use crate::cluster::router::{Attempts, Hop, SocketGuard};
use crate::cluster::Router;
use crate::cycle;
use crate::error::{Error, Result};
use crate::http::{Fetch, Request, Response};
use crate::id::{ClassTag, ObjectId, ID_BYTES};
use crate::sockets::{HeldSockets, SocketEvent, SocketHolder, SocketId, SocketTarget};
use crate::transport::client::{Client, HoldGuard, OutgoingCall};

/// Where a stub's calls go: to the object's actor in this process, or across a connection
/// to the runtime that holds it.
pub(crate) enum Route<T: DurableObject> {
    Local(Arc<dyn LocalClass<T>>),
    Remote(Arc<RemoteClass>),
}

/// A class whose objects live in this process, as its stubs and namespace handles reach it:
/// the counterpart of [`RemoteClass`]. Implemented by the class's namespace core.
pub(crate) trait LocalClass<T: DurableObject>: Send + Sync {
    /// The class: IDs are checked against it, traces name it.
    fn class(&self) -> &ClassTag;

    /// Queues the envelope for the object's actor, activating the object if it has none.
    ///
    /// # Errors
    ///
    /// `Closed` after shutdown, `InvalidId` for another class's ID (or a name that does not
    /// match it), `Overloaded` if the object's queue is full, `Config` without a tokio
    /// runtime to start an actor on.
    fn send(&self, id: &ObjectId, envelope: Envelope<T>) -> Result<()>;

    /// The IDs of the class's objects that have stored data, each once, in ID order.
    fn stored_ids(&self) -> futures_util::future::BoxFuture<'_, Result<Vec<[u8; ID_BYTES]>>>;

    /// How many objects of the class are live (activated and not evicted).
    fn live_count(&self) -> usize;

    /// The WebSockets held for the runtime's objects, in this process.
    fn held(&self) -> &Arc<HeldSockets>;

    /// Deletes every object's data, each as an exclusive step of its object; resolves to
    /// how many objects had data. Boxed: it is rare, and keeps the trait object-safe.
    fn delete_all(&self) -> Pin<Box<dyn Future<Output = Result<usize>> + Send + '_>>;

    /// Cluster mode: where calls go when the object's shard is owned by another node.
    fn router(&self) -> Option<&Arc<Router>>;
}

impl<T: DurableObject> Clone for Route<T> {
    fn clone(&self) -> Self {
        match self {
            Route::Local(ns) => Route::Local(ns.clone()),
            Route::Remote(remote) => Route::Remote(remote.clone()),
        }
    }
}

impl<T: DurableObject> Route<T> {
    pub(crate) fn class(&self) -> &ClassTag {
        match self {
            Route::Local(ns) => ns.class(),
            Route::Remote(remote) => &remote.class,
        }
    }
}

/// A class whose objects live in the runtime at the other end of a connection.
pub(crate) struct RemoteClass {
    pub(crate) class: ClassTag,
    pub(crate) client: Arc<Client>,
}

/// The untyped core of every generated stub: a route to one object (its class and ID), not a
/// handle on a task, so it stays valid across eviction and restarts, and works the same
/// whether the object lives in this process or in the runtime a connected runtime calls.
///
/// Users meet it through the typed stub `#[durable_object]` generates (`CounterStub` for
/// `Counter`), whose methods are the object's methods. Stubs are `Clone + Send + Sync`.
pub struct Stub<T: DurableObject> {
    route: Route<T>,
    id: ObjectId,
    timeout: Option<Duration>,
}

impl<T: DurableObject> Clone for Stub<T> {
    fn clone(&self) -> Self {
        Stub {
            route: self.route.clone(),
            id: self.id.clone(),
            timeout: self.timeout,
        }
    }
}

impl<T: DurableObject> std::fmt::Debug for Stub<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = f.debug_struct("Stub");
        s.field("class", &self.route.class().name)
            .field("id", &self.id);
        if let Route::Remote(remote) = &self.route {
            s.field("server", &remote.client.addr());
        }
        s.finish()
    }
}

impl<T: DurableObject> Stub<T> {
    pub(crate) fn new(route: Route<T>, id: ObjectId) -> Self {
        Stub {
            route,
            id,
            timeout: None,
        }
    }

    /// This stub with every call limited to `timeout`, counted from the call until its
    /// reply (queueing, running and the durability wait; across a connection, the time on
    /// the wire too). A call past it fails with a [`Timeout`](crate::ErrorKind::Timeout)
    /// error; if it had started, it still runs to the end and commits. A call still queued
    /// at its deadline is dropped unrun.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The ID of the object this stub calls.
    pub fn id(&self) -> &ObjectId {
        &self.id
    }

    /// Sends a call and waits for its reply. Used by the generated stub methods.
    ///
    /// Dropping the future stops waiting: a call already sent still runs and commits.
    #[doc(hidden)]
    pub async fn call(&self, call: Call<T::SharedCall, T::ExclusiveCall>) -> Result<T::Output> {
        let ns = match &self.route {
            Route::Local(ns) => ns,
            // Boxed: a remote call's state (encoded arguments, the connection's wait) is much
            // larger than a local one's, and every caller embeds this future in its own.
            Route::Remote(remote) => return Box::pin(self.call_remote(remote, call)).await,
        };
        if let Some(router) = ns.router() {
            // Cluster mode. Boxed, as a remote call.
            let exclusive = matches!(call, Call::Exclusive(_));
            let chain = cycle::caller_chain(|| ns.class().name, &self.id, exclusive)?;
            return Box::pin(self.call_routed(ns, router, call, chain)).await;
        }
        let exclusive = matches!(call, Call::Exclusive(_));
        let chain = cycle::caller_chain(|| ns.class().name, &self.id, exclusive)?;
        let (reply, rx) = oneshot::channel();
        let Some(timeout) = self.timeout else {
            ns.send(
                &self.id,
                Envelope::Call {
                    call,
                    reply: ReplyTo::Local(reply),
                    deadline: None,
                    chain,
                },
            )?;
            // A dropped reply means the runtime closed under the call.
            return rx.await.unwrap_or_else(|_| Err(Error::closed()));
        };
        let method = T::method_name(&call);
        let deadline = Instant::now() + timeout;
        ns.send(
            &self.id,
            Envelope::Call {
                call,
                reply: ReplyTo::Local(reply),
                deadline: Some(deadline),
                chain,
            },
        )?;
        // Boxed: the timer is large, and would make every call's future (which callers
        // embed in theirs) as large as it.
        match Box::pin(tokio::time::timeout_at(deadline.into(), rx)).await {
            Ok(reply) => reply.unwrap_or_else(|_| Err(Error::closed())),
            Err(_) => Err(Error::timeout(method, timeout)),
        }
    }

    /// A call in cluster mode: run here if this node owns the object's shard, else forwarded
    /// to the owner; refused or unsendable attempts (the call did not run) are tried again as
    /// the placement changes, until the call's deadline or the router's patience (see
    /// `cluster/router.rs`).
    async fn call_routed(
        &self,
        ns: &Arc<dyn LocalClass<T>>,
        router: &Router,
        call: Call<T::SharedCall, T::ExclusiveCall>,
        chain: Option<Arc<cycle::Link>>,
    ) -> Result<T::Output> {
        let deadline = self.timeout.map(|timeout| Instant::now() + timeout);
        let mut attempts = Attempts::new(router, deadline);
        let name = T::method_name(&call);
        // Encoded once, for the attempts that forward it (or run it here after a refusal
        // consumed the typed call).
        let mut args = Vec::new();
        let method = T::encode_call(&call, &mut args)?;
        let mut typed = Some(call);
        loop {
            let refused = match attempts.locate(self.id.as_bytes()) {
                Hop::Here => {
                    router.place_here(&self.id);
                    let call = match typed.take() {
                        Some(call) => call,
                        None => T::decode_call(method, &args)?,
                    };
                    match self
                        .call_here(ns, call, deadline, chain.clone(), name)
                        .await
                    {
                        Err(e) if e.is_not_here() => e,
                        other => return other,
                    }
                }
                Hop::Peer(client) => {
                    router.place_at_peer(&self.id, &client);
                    let outgoing = OutgoingCall {
                        object: &self.id,
                        method,
                        args: &args,
                        chain: cycle::to_wire(&chain),
                        deadline: deadline
                            .zip(self.timeout)
                            .map(|(at, timeout)| (at, Error::timeout(name, timeout))),
                    };
                    match client.try_call(outgoing).await {
                        Ok(output) => return T::decode_output(method, &output),
                        // Refused unrun by a node that does not own the shard, or never sent
                        // to a peer that cannot be reached: look again.
                        Err(failure) if failure.did_not_run() => failure.error,
                        Err(failure) => return Err(failure.error),
                    }
                }
                Hop::Wait(why) => Error::unavailable(why),
            };
            if !attempts.again().await {
                return Err(Error::unavailable(format!(
                    "no node of the cluster ran `{name}` on {} within {:?}; last: {}",
                    self.id,
                    attempts.given(),
                    refused.message()
                )));
            }
        }
    }

    /// A call that arrived from a connected runtime (not another node) for an object of a
    /// shard this node does not own: routed like a call made here, with the caller's chain.
    pub(crate) async fn call_forwarded(
        &self,
        call: Call<T::SharedCall, T::ExclusiveCall>,
        chain: Option<Arc<cycle::Link>>,
    ) -> Result<T::Output> {
        match &self.route {
            Route::Local(ns) => match ns.router() {
                Some(router) => self.call_routed(ns, router, call, chain).await,
                None => Err(Error::internal("a forwarded call outside cluster mode")),
            },
            Route::Remote(_) => Err(Error::internal("a forwarded call on a connected runtime")),
        }
    }

    /// One attempt of a routed call on this node.
    async fn call_here(
        &self,
        ns: &Arc<dyn LocalClass<T>>,
        call: Call<T::SharedCall, T::ExclusiveCall>,
        deadline: Option<Instant>,
        chain: Option<Arc<cycle::Link>>,
        name: &'static str,
    ) -> Result<T::Output> {
        let (reply, rx) = oneshot::channel();
        ns.send(
            &self.id,
            Envelope::Call {
                call,
                reply: ReplyTo::Local(reply),
                deadline,
                chain,
            },
        )?;
        match deadline.zip(self.timeout) {
            None => rx.await.unwrap_or_else(|_| Err(Error::closed())),
            Some((at, timeout)) => match tokio::time::timeout_at(at.into(), rx).await {
                Ok(reply) => reply.unwrap_or_else(|_| Err(Error::closed())),
                Err(_) => Err(Error::timeout(name, timeout)),
            },
        }
    }

    /// A call across the connection: encoded by the class's generated code, answered by the
    /// server once its output gate released the reply.
    async fn call_remote(
        &self,
        remote: &RemoteClass,
        call: Call<T::SharedCall, T::ExclusiveCall>,
    ) -> Result<T::Output> {
        remote.class.check(&self.id)?;
        let exclusive = matches!(call, Call::Exclusive(_));
        let chain = cycle::caller_chain(|| remote.class.name, &self.id, exclusive)?;
        let mut args = Vec::new();
        let method = T::encode_call(&call, &mut args)?;
        let deadline = self.timeout.map(|timeout| {
            (
                Instant::now() + timeout,
                Error::timeout(T::method_name(&call), timeout),
            )
        });
        drop(call);
        let output = remote
            .client
            .call(OutgoingCall {
                object: &self.id,
                method,
                args: &args,
                chain: cycle::to_wire(&chain),
                deadline,
            })
            .await?;
        T::decode_output(method, &output)
    }
}

impl<T: DurableObject> Stub<T> {
    /// Has output for socket `id` of this object reach `holder`: across a connection, the
    /// client routes the server's socket frames to it until the returned guard is dropped;
    /// in a cluster, the socket follows its object from node to node. In this process the
    /// object reaches the holder directly.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))] // used by `axum::forward`
    pub(crate) fn hold_socket(
        &self,
        id: SocketId,
        holder: Arc<dyn SocketHolder>,
    ) -> Option<SocketRegistration> {
        match &self.route {
            Route::Local(ns) => ns.router().map(|router| SocketRegistration::Cluster {
                _guard: router.hold_socket(id, &self.id, holder),
            }),
            Route::Remote(remote) => Some(SocketRegistration::Client {
                _guard: remote.client.hold_socket(id, &self.id, holder),
            }),
        }
    }

    /// The count of WebSockets held for this object's runtime (told to close at shutdown).
    #[cfg_attr(not(feature = "axum"), allow(dead_code))] // used by `axum::forward`
    pub(crate) fn held_sockets(&self) -> Arc<HeldSockets> {
        match &self.route {
            Route::Local(ns) => ns.held().clone(),
            Route::Remote(remote) => remote.client.held().clone(),
        }
    }

    /// Where the events of a WebSocket this object accepted go.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))] // used by `axum::forward`
    pub(crate) fn socket_target(&self) -> Arc<dyn SocketTarget> {
        Arc::new(ObjectTarget { stub: self.clone() })
    }
}

/// Keeps a held WebSocket registered where its object's output comes from (see
/// [`Stub::hold_socket`]); dropped when the socket closes.
#[cfg_attr(not(feature = "axum"), allow(dead_code))] // used by `axum::forward`
pub(crate) enum SocketRegistration {
    /// With the client of the runtime that holds the object.
    Client { _guard: HoldGuard },
    /// With the cluster's router, which keeps it where the object runs.
    Cluster { _guard: SocketGuard },
}

/// A WebSocket's object, reached through a stub: its events travel as the object's calls do.
#[cfg_attr(not(feature = "axum"), allow(dead_code))] // used by `axum::forward`
struct ObjectTarget<T: DurableObject> {
    stub: Stub<T>,
}

impl<T: DurableObject> SocketTarget for ObjectTarget<T> {
    fn event(
        &self,
        socket: SocketId,
        event: SocketEvent,
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + '_>> {
        Box::pin(async move {
            match &self.stub.route {
                Route::Local(ns) if ns.router().is_some() => {
                    self.stub.socket_event_routed(ns, socket, event).await
                }
                Route::Local(ns) => {
                    let (reply, rx) = oneshot::channel();
                    ns.send(
                        &self.stub.id,
                        Envelope::Socket {
                            socket,
                            event,
                            reply: ReplyTo::Local(reply),
                        },
                    )?;
                    rx.await.unwrap_or_else(|_| Err(Error::closed()))
                }
                Route::Remote(remote) => {
                    remote.class.check(&self.stub.id)?;
                    remote
                        .client
                        .socket_event(&self.stub.id, socket, event)
                        .await
                }
            }
        })
    }
}

impl<T: DurableObject> Stub<T> {
    /// A WebSocket event in cluster mode: handed to the object where it runs, as routed calls
    /// are (the socket is placed there first), retried while it is refused unrun.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))] // used by `axum::forward`
    async fn socket_event_routed(
        &self,
        ns: &Arc<dyn LocalClass<T>>,
        socket: SocketId,
        event: SocketEvent,
    ) -> Result<()> {
        let Some(router) = ns.router() else {
            return Err(Error::internal(
                "a routed socket event outside cluster mode",
            ));
        };
        let mut attempts = Attempts::new(router, None);
        loop {
            let refused = match attempts.locate(self.id.as_bytes()) {
                Hop::Here => {
                    router.place_here(&self.id);
                    let (reply, rx) = oneshot::channel();
                    let sent = ns.send(
                        &self.id,
                        Envelope::Socket {
                            socket,
                            event: event.clone(),
                            reply: ReplyTo::Local(reply),
                        },
                    );
                    let result = match sent {
                        Ok(()) => rx.await.unwrap_or_else(|_| Err(Error::closed())),
                        Err(e) => Err(e),
                    };
                    match result {
                        Err(e) if e.is_not_here() => e,
                        other => return other,
                    }
                }
                Hop::Peer(client) => {
                    router.place_at_peer(&self.id, &client);
                    match client
                        .try_socket_event(&self.id, socket, event.clone())
                        .await
                    {
                        Ok(()) => return Ok(()),
                        // Refused unrun, or never sent to a peer that cannot be reached: look
                        // again, as calls do.
                        Err(failure) if failure.did_not_run() => failure.error,
                        Err(failure) => return Err(failure.error),
                    }
                }
                Hop::Wait(why) => Error::unavailable(why),
            };
            if !attempts.again().await {
                return Err(Error::unavailable(format!(
                    "no node of the cluster took a WebSocket event for {} within {:?}; last: {}",
                    self.id,
                    attempts.given(),
                    refused.message()
                )));
            }
        }
    }
}

/// What every generated stub offers besides the object's own methods. A trait, so that these
/// helpers never collide with the names of user methods (an object may have a method `id`;
/// then call `ObjectStub::id(&stub)`).
pub trait ObjectStub: Clone + Send + Sync + 'static {
    /// The object class this stub calls.
    type Object: DurableObject;

    /// The untyped stub inside.
    fn stub(&self) -> &Stub<Self::Object>;

    /// The ID of the object this stub calls.
    fn id(&self) -> &ObjectId {
        self.stub().id()
    }

    /// A copy of this stub whose calls time out after `timeout` (see
    /// [`Stub::with_timeout`]).
    fn with_timeout(&self, timeout: Duration) -> Self
    where
        Self: From<Stub<Self::Object>>,
    {
        Self::from(self.stub().clone().with_timeout(timeout))
    }

    /// Sends an HTTP request to the object's `fetch` method and waits for its response: in
    /// this process, or across the connection to the object's runtime. A compile error for a
    /// class without `fetch`.
    ///
    /// An object may answer an upgrade request by accepting a WebSocket; only a request
    /// forwarded by `durable_runtime::axum::forward` (which holds the client's
    /// connection) can be upgraded.
    ///
    /// Dropping the future stops waiting: a request already sent still runs and commits.
    ///
    /// # Errors
    ///
    /// The errors of any call ([`Stub::call`]'s: `Overloaded`, `Timeout`, `Disconnected`,
    /// ...), and those `fetch` returns.
    fn fetch(&self, request: Request) -> impl Future<Output = Result<Response>> + Send
    where
        Self::Object: Fetch,
    {
        let call = <Self::Object as Fetch>::fetch_call(request);
        let stub = self.stub();
        async move { <Self::Object as Fetch>::fetch_output(stub.call(call).await?) }
    }
}
