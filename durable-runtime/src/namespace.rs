//! Namespaces: the objects of one class, reached by ID.
//!
//! [`Namespace`] is the handle users hold; [`NamespaceCore`] runs the class's objects in this
//! process (one actor per live object). The core is what the other parts know only through
//! their seams: it is its actors' [`ActorHost`], its alarm scheduler's [`AlarmTarget`], and
//! its stubs' (and `Namespace`s') [`LocalClass`]; it holds the runtime's [`Host`] and, for its
//! objects' contexts, the runtime's [`Directory`], never the runtime itself.
//!
//! A runtime's registry knows class types only as [`TypeId`]s: a class is opened here, where
//! its type is known, from the [`OpenClass`] that [`Context::namespace`] and
//! `Runtime::namespace` hand the runtime through its [`Directory`].

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, RwLockWriteGuard, Weak};

use tokio::sync::{oneshot, watch};

use crate::actor::{Actor, ActorHost, AlarmOutcome, Envelope};
use crate::alarm::AlarmTarget;
use crate::class::{AlarmInfo, ClassOptions, DurableObject};
use crate::cluster::router::Attempts;
use crate::cluster::Router;
use crate::commit::OutputGate;
use crate::context::{Context, Directory};
use crate::error::{Error, Result};
use crate::host::{Counters, Host};
use crate::id::{ClassTag, ObjectId, ID_BYTES};
use crate::mailbox::{Mailbox, SendError};
use crate::sockets::{HeldSockets, ObjectSockets, SocketEntry};
use crate::storage::{stored_object_ids, Fence, ObjectStore};
use crate::stub::{LocalClass, RemoteClass, Route, Stub};
use crate::transport::server::ServedClass;

const STRIPES: usize = 32;

/// IDs are SHA-256 digests or random bytes: their bytes are already a good hash. The map
/// hashes `[u8; 32]` keys, which `Hash` feeds as a length and then the bytes: the hash is
/// eight bytes of the ID's body.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Bytes 9..32 are the hash or random body (0..8: the class tag, 8: the kind). Byte 9
        // picks the stripe, so it would be the same for every key of a stripe's map: skip it.
        match bytes.get(10..18) {
            Some(body) => {
                let mut word = [0u8; 8];
                word.copy_from_slice(body);
                self.0 = u64::from_le_bytes(word);
            }
            // The length prefix, or anything else: mixed in.
            None => {
                for &b in bytes {
                    self.0 = self.0.rotate_left(8) ^ u64::from(b);
                }
            }
        }
    }

    fn write_usize(&mut self, _len: usize) {
        // The length prefix of a 32-byte key: always the same, no information.
    }
}

type IdMap<V> = HashMap<[u8; ID_BYTES], V, BuildHasherDefault<IdHasher>>;

/// A live object: the way in, and its storage state (to tell actors apart).
struct Live<T: DurableObject> {
    mailbox: Arc<Mailbox<Envelope<T>>>,
    store: Arc<ObjectStore>,
    sockets: Arc<ObjectSockets>,
}

/// An evicted actor still finishing (its last writes on their way to storage): the next
/// actor of that ID waits until the sender is dropped.
struct Settling {
    token: u64,
    done: watch::Receiver<()>,
}

struct Stripe<T: DurableObject> {
    live: IdMap<Live<T>>,
    settling: IdMap<Settling>,
    /// The WebSockets of evicted objects (hibernating): their next actor takes them back.
    hibernating: IdMap<Arc<ObjectSockets>>,
}

/// An envelope the namespace did not take, and why.
pub(crate) struct Refused<T: DurableObject> {
    pub(crate) error: Error,
    pub(crate) envelope: Envelope<T>,
}

/// Proof that an actor left its namespace; dropping `done` lets its successor start.
pub(crate) struct Retired {
    token: u64,
    done: watch::Sender<()>,
}

/// The live objects of one class: a mailbox per activated ID.
pub(crate) struct NamespaceCore<T: DurableObject> {
    pub(crate) class: ClassTag,
    pub(crate) options: ClassOptions,
    host: Arc<Host>,
    /// For the contexts of the class's objects.
    directory: Arc<dyn Directory>,
    stripes: Box<[RwLock<Stripe<T>>]>,
    next_token: AtomicU64,
    tasks_started: AtomicBool,
    /// The method ID of the class's `fetch`, if it has one.
    fetch_method: OnceLock<Option<u64>>,
    /// The core itself, for what must own it (a new actor, the class's tasks) when it is
    /// reached by reference, as stubs reach it through [`LocalClass`].
    this: Weak<Self>,
}

impl<T: DurableObject> NamespaceCore<T> {
    pub(crate) fn new(
        options: ClassOptions,
        host: Arc<Host>,
        directory: Arc<dyn Directory>,
    ) -> Result<Arc<Self>> {
        if options.max_queue == 0 {
            return Err(Error::config(format!(
                "class `{}`: max_queue must be at least 1",
                options.name
            )));
        }
        let class = ClassTag::new(options.name, options.wire_name());
        Ok(Arc::new_cyclic(|this| NamespaceCore {
            class,
            options,
            host,
            directory,
            stripes: (0..STRIPES)
                .map(|_| {
                    RwLock::new(Stripe {
                        live: IdMap::default(),
                        settling: IdMap::default(),
                        hibernating: IdMap::default(),
                    })
                })
                .collect(),
            next_token: AtomicU64::new(1),
            tasks_started: AtomicBool::new(false),
            fetch_method: OnceLock::new(),
            this: this.clone(),
        }))
    }

    /// This core, owned. Cannot fail: a core lives in the `Arc` made by [`new`](Self::new)
    /// from the start, and `self` borrows it.
    fn owned(&self) -> Result<Arc<Self>> {
        self.this
            .upgrade()
            .ok_or_else(|| Error::internal("a namespace core outside its Arc"))
    }

    fn stripe(&self, id: &[u8; ID_BYTES]) -> &RwLock<Stripe<T>> {
        // Byte 9 is the first byte of the ID's hash or random body.
        &self.stripes[id[9] as usize % STRIPES]
    }

    fn write_stripe(&self, id: &[u8; ID_BYTES]) -> RwLockWriteGuard<'_, Stripe<T>> {
        self.stripe(id).write().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the class's alarm scheduler and idle sweeper once a tokio runtime is at hand.
    pub(crate) fn ensure_tasks(self: &Arc<Self>) {
        if self.tasks_started.load(Ordering::Acquire) {
            return;
        }
        let Ok(handle) = self.host.tokio_handle() else {
            return;
        };
        if self.tasks_started.swap(true, Ordering::AcqRel) {
            return;
        }
        handle.spawn(crate::alarm::run_scheduler(self.clone()));
        handle.spawn(run_sweeper(self.clone()));
    }

    /// Asks every live object idle since the last sweep to leave.
    fn sweep(&self) {
        for stripe in self.stripes.iter() {
            let stripe = stripe.read().unwrap_or_else(|p| p.into_inner());
            for live in stripe.live.values() {
                if let Some(seen) = live.store.idle_since_last_sweep() {
                    // A full queue is anything but idle; a closed one is leaving anyway.
                    let _ = live
                        .mailbox
                        .try_send(Envelope::Idle { seen }, self.options.max_queue);
                }
            }
        }
    }

    /// Delivers an envelope to the object, activating it if it has no live actor.
    pub(crate) fn send(&self, id: &ObjectId, envelope: Envelope<T>) -> Result<()> {
        self.send_with(id, envelope, |error, _| error)
    }

    /// As [`send`](Self::send), but a refused envelope comes back with the error, so that its
    /// reply can be answered with it (the server's replies are callbacks, not channels).
    pub(crate) fn send_or_return(
        &self,
        id: &ObjectId,
        envelope: Envelope<T>,
    ) -> Result<(), Refused<T>> {
        self.send_with(id, envelope, |error, envelope| Refused { error, envelope })
    }

    /// The one delivery path of both: `refused` makes the error from a refused envelope. A
    /// local call's `send` drops the envelope there and returns a plain error, so its happy
    /// path carries no room for the envelope in its result.
    #[inline]
    fn send_with<R>(
        &self,
        id: &ObjectId,
        envelope: Envelope<T>,
        refused: impl Fn(Error, Envelope<T>) -> R,
    ) -> Result<(), R> {
        let refuse = |error: Error, envelope| Err(refused(error, envelope));
        if self.host.is_closed() {
            return refuse(Error::closed(), envelope);
        }
        if let Err(e) = self.class.check(id) {
            return refuse(e, envelope);
        }
        let key = id.as_bytes();
        // Cluster mode: only the shards this node owns take calls, under their term.
        let fence = match &self.host.ownership {
            None => None,
            Some(ownership) => match ownership.admit(key) {
                Ok(fence) => Some(fence),
                Err(e) => return refuse(e, envelope),
            },
        };
        let envelope = {
            let stripe = self.stripe(key).read().unwrap_or_else(|p| p.into_inner());
            match self.deliver(&stripe.live, key, fence, envelope, &refused)? {
                Some(envelope) => envelope,
                None => return Ok(()),
            }
        };
        let this = match self.owned() {
            Ok(this) => this,
            Err(e) => return refuse(e, envelope),
        };
        this.ensure_tasks();
        let mut stripe = self.write_stripe(key);
        if self.host.is_closed() {
            return refuse(Error::closed(), envelope);
        }
        let Some(envelope) = self.deliver(&stripe.live, key, fence, envelope, &refused)? else {
            return Ok(());
        };
        let handle = match self.host.tokio_handle() {
            Ok(handle) => handle,
            Err(e) => return refuse(e, envelope),
        };
        // The new actor keeps this ID, name included: a name that arrived from another
        // process is checked here, once per activation rather than once per call.
        if let Err(e) = id.check_name(&self.class) {
            return refuse(e, envelope);
        }
        let mailbox = Arc::new(Mailbox::with_first(envelope));
        let settle = stripe.settling.get(key).map(|s| s.done.clone());
        let store = ObjectStore::new(id, self.host.backend.clone());
        let store = Arc::new(match fence {
            Some(fence) => store.with_fence(fence),
            None => store,
        });
        let sockets = stripe.hibernating.remove(key).unwrap_or_default();
        let actor = Box::new(Actor::new(
            this,
            id.clone(),
            store.clone(),
            sockets.clone(),
            settle,
        ));
        self.host.actor_started();
        handle.spawn(actor.run(mailbox.clone()));
        stripe.live.insert(
            *key,
            Live {
                mailbox,
                store,
                sockets,
            },
        );
        Ok(())
    }

    /// Queues the envelope for the live actor of `key`: `Ok(None)` if queued, `Ok(Some(..))`
    /// (the envelope back) if there is no live actor, refused as overloaded if its queue is
    /// full.
    ///
    /// In cluster mode, a live actor of another term (its shard was lost and taken back while
    /// it was leaving) takes nothing: the call is refused, to be routed again.
    fn deliver<R>(
        &self,
        live: &IdMap<Live<T>>,
        key: &[u8; ID_BYTES],
        fence: Option<Fence>,
        envelope: Envelope<T>,
        refused: &impl Fn(Error, Envelope<T>) -> R,
    ) -> Result<Option<Envelope<T>>, R> {
        let Some(live) = live.get(key) else {
            return Ok(Some(envelope));
        };
        if live.store.fence() != fence {
            return Err(refused(
                Error::not_here("the object's shard is changing hands on this node"),
                envelope,
            ));
        }
        match live.mailbox.try_send(envelope, self.options.max_queue) {
            Ok(()) => Ok(None),
            Err(SendError::Full(envelope)) => {
                self.host.metrics.overloads.inc();
                Err(refused(Error::overloaded(), envelope))
            }
            Err(SendError::Closed(envelope)) => Ok(Some(envelope)),
        }
    }

    /// The method ID of the class's `fetch` (requests to it may offer a WebSocket).
    pub(crate) fn fetch_method(&self) -> Option<u64> {
        *self
            .fetch_method
            .get_or_init(|| T::schema().iter().find(|m| m.name == "fetch").map(|m| m.id))
    }

    /// Records a WebSocket a front end holds for object `id` (after this server restarted),
    /// without activating the object: its next event will.
    pub(crate) fn adopt_socket(&self, id: &ObjectId, entry: Arc<SocketEntry>) -> Result<()> {
        self.class.check(id)?;
        let key = id.as_bytes();
        let mut stripe = self.write_stripe(key);
        match stripe.live.get(key) {
            Some(live) => live.sockets.adopt(entry),
            None => stripe.hibernating.entry(*key).or_default().adopt(entry),
        }
    }

    /// Closes every mailbox: actors finish the calls already queued, then exit.
    pub(crate) fn close_mailboxes(&self) {
        for stripe in self.stripes.iter() {
            let mut stripe = stripe.write().unwrap_or_else(|p| p.into_inner());
            for (_, live) in stripe.live.drain() {
                live.mailbox.close();
            }
        }
    }

    /// Cluster mode: lets go of the live objects whose shard `lost` picks (the shard was
    /// handed over, or the lease lapsed). Their mailboxes close: calls already queued meet
    /// the ownership check when they would start (a draining shard still runs them; a lost
    /// one refuses them, unrun). Their WebSocket records are let go: the nodes holding the
    /// sockets tell the object's next owner about them. Returns their stores: once only
    /// the caller holds them, the actors are gone and their last commits are done.
    pub(crate) fn drop_objects(&self, lost: &dyn Fn(u32) -> bool) -> Vec<Arc<ObjectStore>> {
        let mut dropped = Vec::new();
        for stripe in self.stripes.iter() {
            let mut stripe = stripe.write().unwrap_or_else(|p| p.into_inner());
            let leaving: Vec<[u8; ID_BYTES]> = stripe
                .live
                .iter()
                .filter(|(_, live)| live.store.fence().is_some_and(|f| lost(f.shard)))
                .map(|(key, _)| *key)
                .collect();
            for key in leaving {
                if let Some(live) = stripe.live.remove(&key) {
                    // Its sockets' holders place them with the object's next owner.
                    live.mailbox.close();
                    dropped.push(live.store);
                }
            }
            if let Some(ownership) = &self.host.ownership {
                stripe
                    .hibernating
                    .retain(|key, _| !lost(ownership.shard_of(key)));
            }
        }
        dropped
    }

    /// How many objects of this class are live (activated and not evicted).
    pub(crate) fn live_count(&self) -> usize {
        self.stripes
            .iter()
            .map(|s| s.read().unwrap_or_else(|p| p.into_inner()).live.len())
            .sum()
    }

    /// The IDs of the class's objects that have stored data, each once, in ID order.
    pub(crate) async fn stored_ids(&self) -> Result<Vec<[u8; ID_BYTES]>> {
        if self.host.is_closed() {
            return Err(Error::closed());
        }
        let tag = self.class.tag;
        self.host
            .read_backend(move |backend| stored_object_ids(backend, &tag))
            .await
    }

    /// Deletes every object's data, each as an exclusive step of its object; returns how
    /// many objects had data. In cluster mode, on every node: each deletes the objects of the
    /// shards it owns, until none is left (or the router's patience runs out).
    pub(crate) async fn delete_all(&self) -> Result<usize> {
        let Some(router) = &self.host.router else {
            return self.delete_owned().await;
        };
        let mut attempts = Attempts::new(router, None);
        let mut count = 0;
        loop {
            attempts.begin();
            count += self.delete_owned().await?;
            for peer in router.peers() {
                match peer.delete_all(self.class.tag).await {
                    Ok(n) => count += usize::try_from(n).unwrap_or(usize::MAX),
                    // A peer gone or leaving: its shards are deleted by their next owner.
                    Err(e) if e.is_retryable() => {
                        tracing::debug!(error = %e, "a node could not delete its objects");
                    }
                    Err(e) => return Err(e),
                }
            }
            let left = self.stored_ids().await?.len();
            if left == 0 {
                return Ok(count);
            }
            if !attempts.again().await {
                return Err(Error::unavailable(format!(
                    "{left} objects of `{}` were not deleted within {:?}: their shards had no \
                     reachable owner",
                    self.class.name,
                    attempts.given()
                )));
            }
        }
    }

    /// Deletes the data of every object of the class (in cluster mode: of the shards owned
    /// here); returns how many objects had data.
    pub(crate) async fn delete_owned(&self) -> Result<usize> {
        let ids = self.stored_ids().await?;
        let mut count = 0;
        for bytes in ids {
            if let Some(ownership) = &self.host.ownership {
                if !ownership.owns(&bytes) {
                    continue;
                }
            }
            let id = ObjectId::from_bytes(&self.class, bytes)?;
            let (reply, rx) = oneshot::channel();
            let erased = match self.send(&id, Envelope::Erase { reply }) {
                Ok(()) => rx.await.unwrap_or_else(|_| Err(Error::closed())),
                Err(e) => Err(e),
            };
            match erased {
                Ok(()) => count += 1,
                // The shard moved meanwhile: its new owner deletes it.
                Err(e) if e.is_not_here() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(count)
    }
}

impl<T: DurableObject> LocalClass<T> for NamespaceCore<T> {
    fn class(&self) -> &ClassTag {
        &self.class
    }

    fn send(&self, id: &ObjectId, envelope: Envelope<T>) -> Result<()> {
        NamespaceCore::send(self, id, envelope)
    }

    fn stored_ids(&self) -> futures_util::future::BoxFuture<'_, Result<Vec<[u8; ID_BYTES]>>> {
        Box::pin(NamespaceCore::stored_ids(self))
    }

    fn live_count(&self) -> usize {
        NamespaceCore::live_count(self)
    }

    fn held(&self) -> &Arc<HeldSockets> {
        &self.host.held
    }

    fn delete_all(&self) -> Pin<Box<dyn Future<Output = Result<usize>> + Send + '_>> {
        Box::pin(NamespaceCore::delete_all(self))
    }

    fn router(&self) -> Option<&Arc<Router>> {
        self.host.router.as_ref()
    }
}

impl<T: DurableObject> ActorHost<T> for NamespaceCore<T> {
    type Retired = Retired;

    fn class(&self) -> &ClassTag {
        &self.class
    }

    fn options(&self) -> &ClassOptions {
        &self.options
    }

    fn gate(&self) -> &OutputGate {
        &self.host.gate
    }

    fn counters(&self) -> &Counters {
        &self.host.metrics
    }

    fn alarm_retries(&self) -> u32 {
        self.host.config.alarm_retries
    }

    fn directory(&self) -> &Arc<dyn Directory> {
        &self.directory
    }

    /// An idle actor asks to leave: granted (its mailbox closed and removed) only if
    /// nothing is queued for it.
    fn retire(
        &self,
        id: &ObjectId,
        store: &Arc<ObjectStore>,
        mailbox: &Mailbox<Envelope<T>>,
    ) -> Option<Retired> {
        let key = id.as_bytes();
        let mut stripe = self.write_stripe(key);
        if !mailbox.close_if_empty() {
            return None;
        }
        if stripe
            .live
            .get(key)
            .is_some_and(|m| Arc::ptr_eq(&m.store, store))
        {
            if let Some(live) = stripe.live.remove(key) {
                // Hibernation: the sockets stay open; the next actor of this ID takes them.
                if !live.sockets.is_empty() {
                    stripe.hibernating.insert(*key, live.sockets);
                }
            }
        }
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (done, waiting) = watch::channel(());
        stripe.settling.insert(
            *key,
            Settling {
                token,
                done: waiting,
            },
        );
        Some(Retired { token, done })
    }

    /// A retired actor finished: its successor may start.
    fn settled(&self, id: &ObjectId, retired: Retired) {
        let key = id.as_bytes();
        let mut stripe = self.write_stripe(key);
        if stripe
            .settling
            .get(key)
            .is_some_and(|s| s.token == retired.token)
        {
            stripe.settling.remove(key);
        }
        drop(retired.done);
    }

    fn actor_exited(&self) {
        self.host.actor_exited();
    }

    fn may_start(&self, store: &ObjectStore) -> Result<()> {
        match (&self.host.ownership, store.fence()) {
            (Some(ownership), Some(fence)) => ownership.may_start(fence),
            _ => Ok(()),
        }
    }
}

impl<T: DurableObject> AlarmTarget for NamespaceCore<T> {
    fn class(&self) -> &ClassTag {
        &self.class
    }

    fn host(&self) -> &Host {
        &self.host
    }

    async fn fire_alarm(
        self: &Arc<Self>,
        id: [u8; ID_BYTES],
        info: AlarmInfo,
    ) -> Result<AlarmOutcome> {
        let id = ObjectId::from_bytes(&self.class, id)?;
        let (reply, rx) = oneshot::channel();
        self.send(&id, Envelope::Alarm { info, reply })?;
        rx.await.unwrap_or_else(|_| Err(Error::closed()))
    }
}

/// What a runtime controls of each of its classes, whatever its type.
pub(crate) trait ClassControl: Send + Sync {
    /// Closes every mailbox of the class (see [`NamespaceCore::close_mailboxes`]).
    fn close_mailboxes(&self);
    /// How many objects of the class are live.
    fn live_count(&self) -> usize;
    /// Cluster mode: lets go of the live objects of the shards `lost` picks (see
    /// [`NamespaceCore::drop_objects`]).
    fn drop_objects(&self, lost: &dyn Fn(u32) -> bool) -> Vec<Arc<ObjectStore>>;
}

impl<T: DurableObject> ClassControl for NamespaceCore<T> {
    fn close_mailboxes(&self) {
        NamespaceCore::close_mailboxes(self)
    }

    fn drop_objects(&self, lost: &dyn Fn(u32) -> bool) -> Vec<Arc<ObjectStore>> {
        NamespaceCore::drop_objects(self, lost)
    }

    fn live_count(&self) -> usize {
        NamespaceCore::live_count(self)
    }
}

/// A class for a runtime to open if it does not know it yet: what the runtime checks before
/// (the class's names) and how to build its core. Made by [`namespace_of`], where the class's
/// type is known, for the runtime's registry, which knows no class types: it reaches the
/// registry through [`Directory::namespace_any`], type-erased.
pub(crate) struct OpenClass {
    pub(crate) options: ClassOptions,
    /// The class's Rust type, for errors naming two classes that clash.
    pub(crate) type_name: &'static str,
    /// Builds the class's core, on the runtime's host; `directory` is the runtime's, for the
    /// contexts of the class's objects.
    pub(crate) open: fn(
        options: ClassOptions,
        host: Arc<Host>,
        directory: Arc<dyn Directory>,
    ) -> Result<OpenedClass>,
}

/// A class's new core, as each part of its runtime keeps it.
pub(crate) struct OpenedClass {
    /// The class tag at the front of the class's IDs.
    pub(crate) tag: [u8; 8],
    /// The core itself, to hand back to [`namespace_of`] (which knows its type).
    pub(crate) core: Arc<dyn Any + Send + Sync>,
    /// What the server calls.
    pub(crate) served: Arc<dyn ServedClass>,
    pub(crate) control: Arc<dyn ClassControl>,
}

impl<T: DurableObject> NamespaceCore<T> {
    fn open(
        options: ClassOptions,
        host: Arc<Host>,
        directory: Arc<dyn Directory>,
    ) -> Result<OpenedClass> {
        let core = NamespaceCore::<T>::new(options, host, directory)?;
        Ok(OpenedClass {
            tag: core.class.tag,
            core: core.clone(),
            served: core.clone(),
            control: core,
        })
    }
}

/// The namespace of class `U` on the runtime `directory` leads to: its own if it knows `U`,
/// else a new one it keeps from now on.
///
/// # Errors
///
/// As [`Directory::namespace_any`].
pub(crate) fn namespace_of<U: DurableObject>(
    directory: Arc<dyn Directory>,
) -> Result<Namespace<U>> {
    let open = OpenClass {
        options: U::class_options(),
        type_name: std::any::type_name::<U>(),
        open: NamespaceCore::<U>::open,
    };
    let core = directory.namespace_any(TypeId::of::<U>(), &open)?;
    match core.downcast::<NamespaceCore<U>>() {
        Ok(core) => Ok(Namespace::from_core(core)),
        // The registry keeps each core under its class's type ID.
        Err(_) => Err(Error::internal("a class's core is of another type")),
    }
}

/// Every idle timeout, asks the objects idle since the previous sweep to leave memory: an
/// object goes one to two idle timeouts after its last call. One task per class, instead of a
/// timer per object, keeps the call path free of timer work.
async fn run_sweeper<T: DurableObject>(ns: Arc<NamespaceCore<T>>) {
    let mut closing = ns.host.watch_closing();
    let period = ns.host.config.idle_timeout;
    loop {
        tokio::select! {
            () = tokio::time::sleep(period) => ns.sweep(),
            _ = closing.changed() => return,
        }
        if ns.host.is_closed() {
            return;
        }
    }
}

/// The objects of one class `T`: makes IDs and stubs. From a runtime that holds objects,
/// stubs call them in this process; from a connected runtime
/// ([`RuntimeBuilder::connect`](crate::RuntimeBuilder::connect)), they call the runtime at
/// the other end of the connection, with the same results.
///
/// ```
/// # use durable_runtime::{durable_object, Context, Runtime, Result};
/// #[durable_object]
/// pub struct Counter { ctx: Context }
///
/// #[durable_object]
/// impl Counter {
///     pub fn new(ctx: Context) -> Self { Counter { ctx } }
///     pub async fn increment(&mut self, amount: i64) -> Result<i64> {
///         let value = self.ctx.storage().get::<i64>("value")?.unwrap_or(0) + amount;
///         self.ctx.storage_mut().put("value", &value)?;
///         Ok(value)
///     }
/// }
///
/// # #[tokio::main] async fn main() -> Result<()> {
/// let rt = Runtime::in_memory();
/// let counters = rt.namespace::<Counter>();
/// let a = counters.get_by_name("A");
/// assert_eq!(a.increment(2).await?, 2);
/// let same = counters.get(counters.id_from_name("A"));
/// assert_eq!(same.increment(1).await?, 3);
/// assert_eq!(counters.list_ids().await?, vec![counters.id_from_name("A")]);
/// # Ok(()) }
/// ```
pub struct Namespace<T: DurableObject> {
    route: Route<T>,
}

impl<T: DurableObject> Clone for Namespace<T> {
    fn clone(&self) -> Self {
        Namespace {
            route: self.route.clone(),
        }
    }
}

impl<T: DurableObject> std::fmt::Debug for Namespace<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("class", &self.class_name())
            .finish()
    }
}

impl<T: DurableObject> Namespace<T> {
    pub(crate) fn from_core(core: Arc<NamespaceCore<T>>) -> Self {
        core.ensure_tasks();
        Namespace {
            route: Route::Local(core),
        }
    }

    pub(crate) fn remote(remote: Arc<RemoteClass>) -> Self {
        Namespace {
            route: Route::Remote(remote),
        }
    }

    /// The class name (from `#[durable_object(name = "..")]`, or the type's name).
    pub fn class_name(&self) -> &'static str {
        self.route.class().name
    }

    /// The ID of the object named `name` in this class: the same name always gives the same
    /// ID; two names, or two classes, never share one.
    pub fn id_from_name(&self, name: &str) -> ObjectId {
        ObjectId::from_name(self.route.class(), name)
    }

    /// A fresh random ID, never returned before.
    pub fn new_unique_id(&self) -> ObjectId {
        ObjectId::new_unique(self.route.class())
    }

    /// Parses an ID from its 64 hex digits.
    ///
    /// # Errors
    ///
    /// An [`InvalidId`](crate::ErrorKind::InvalidId) error on malformed text or another
    /// class's ID.
    pub fn id_from_string(&self, text: &str) -> Result<ObjectId> {
        ObjectId::parse(self.route.class(), text)
    }

    /// The stub of the object with this ID. Nothing is activated until the first call.
    pub fn get(&self, id: ObjectId) -> T::Stub {
        T::Stub::from(Stub::new(self.route.clone(), id))
    }

    /// The stub of the object named `name`: `get(id_from_name(name))`.
    pub fn get_by_name(&self, name: &str) -> T::Stub {
        self.get(self.id_from_name(name))
    }

    /// The IDs of this class's objects that have stored data, each once, in ID order.
    /// (Names are not included: an ID from storage carries none.) On a connected runtime,
    /// the server answers.
    ///
    /// # Errors
    ///
    /// [`Closed`](crate::ErrorKind::Closed) after shutdown, a [`Storage`](crate::ErrorKind::Storage)
    /// error if the backend fails, and on a connected runtime the connection's errors
    /// ([`Disconnected`](crate::ErrorKind::Disconnected), ...).
    ///
    /// Dropping the future stops waiting; nothing changes.
    pub async fn list_ids(&self) -> Result<Vec<ObjectId>> {
        let ids = match &self.route {
            Route::Local(core) => core.stored_ids().await?,
            Route::Remote(remote) => remote.client.list_ids(remote.class.tag).await?,
        };
        let class = self.route.class();
        ids.into_iter()
            .map(|bytes| ObjectId::from_bytes(class, bytes))
            .collect()
    }

    /// How many objects of this class are live in memory in this process (activated, not
    /// yet evicted). Always 0 on a connected runtime, which holds no objects.
    pub fn live_objects(&self) -> usize {
        match &self.route {
            Route::Local(core) => core.live_count(),
            Route::Remote(_) => 0,
        }
    }

    /// Deletes the stored data, alarms and schedules of every object of this class, each as
    /// an exclusive step of its object (so it never races a call). Returns how many objects
    /// had data. Deleting a class's data is never implicit: renaming or removing a class
    /// leaves its data in place until this is called. On a connected runtime, the server
    /// does it.
    ///
    /// # Errors
    ///
    /// As [`list_ids`](Self::list_ids); an object whose erasure fails stops the deletion
    /// there (the objects before it are deleted).
    ///
    /// Dropping the future stops the deletion after the object being erased (in this
    /// process; a server asked by a connected runtime finishes the whole class).
    pub async fn delete_all_objects(&self) -> Result<usize> {
        match &self.route {
            Route::Local(core) => core.delete_all().await,
            Route::Remote(remote) => {
                let n = remote.client.delete_all(remote.class.tag).await?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            }
        }
    }
}

// Defined here rather than in context.rs: a context reaches namespaces only through its
// `Directory`, so that context.rs (which the actor loop depends on) does not depend on this
// module (which depends on the actor loop).
impl Context {
    /// The namespace of another class (or this one), to call other objects.
    ///
    /// # Panics
    ///
    /// As [`Runtime::namespace`](crate::Runtime::namespace): if another class of this runtime
    /// has the same class name.
    pub fn namespace<U: DurableObject>(&self) -> Namespace<U> {
        match namespace_of::<U>(self.directory().clone()) {
            Ok(ns) => ns,
            Err(e) => panic!("{e}"),
        }
    }
}
