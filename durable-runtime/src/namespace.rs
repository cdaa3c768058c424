//! Namespaces: the objects of one class, reached by ID.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::error::{Error, Result};
use crate::id::{ClassTag, ObjectId, ID_BYTES};
use crate::object::{Actor, ClassOptions, DurableObject, Envelope};
use crate::runtime::RuntimeShared;
use crate::storage::ObjectStore;
use crate::stub::Stub;

const SHARDS: usize = 32;

/// IDs are SHA-256 digests or random bytes: their bytes are already a good hash.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }
}

type Mailboxes<T> =
    HashMap<[u8; ID_BYTES], mpsc::Sender<Envelope<T>>, BuildHasherDefault<IdHasher>>;

/// The live objects of one class: a mailbox per activated ID.
pub(crate) struct NamespaceCore<T: DurableObject> {
    pub(crate) class: ClassTag,
    pub(crate) options: ClassOptions,
    pub(crate) runtime: Arc<RuntimeShared>,
    shards: Box<[RwLock<Mailboxes<T>>]>,
}

impl<T: DurableObject> NamespaceCore<T> {
    pub(crate) fn new(options: ClassOptions, runtime: Arc<RuntimeShared>) -> Result<Self> {
        if options.max_queue == 0 {
            return Err(Error::config(format!(
                "class `{}`: max_queue must be at least 1",
                options.name
            )));
        }
        let class = ClassTag::new(options.name, options.renamed_from.unwrap_or(options.name));
        Ok(NamespaceCore {
            class,
            options,
            runtime,
            shards: (0..SHARDS)
                .map(|_| RwLock::new(Mailboxes::default()))
                .collect(),
        })
    }

    fn shard(&self, id: &ObjectId) -> &RwLock<Mailboxes<T>> {
        // Byte 9 is the first byte of the ID's hash or random body.
        &self.shards[id.as_bytes()[9] as usize % SHARDS]
    }

    /// Delivers a call to the object, activating it if it has no live actor.
    pub(crate) fn send(self: &Arc<Self>, id: &ObjectId, envelope: Envelope<T>) -> Result<()> {
        if self.runtime.is_closed() {
            return Err(Error::closed());
        }
        if id.as_bytes()[..8] != self.class.tag {
            return Err(Error::invalid_id(format!(
                "this ID belongs to another class, not `{}`",
                self.class.name
            )));
        }
        let shard = self.shard(id);
        let envelope = {
            let mailboxes = shard.read().unwrap_or_else(|p| p.into_inner());
            match mailboxes.get(id.as_bytes()) {
                Some(tx) => match tx.try_send(envelope) {
                    Ok(()) => return Ok(()),
                    Err(TrySendError::Full(_)) => return Err(Error::overloaded()),
                    Err(TrySendError::Closed(envelope)) => envelope,
                },
                None => envelope,
            }
        };
        let mut mailboxes = shard.write().unwrap_or_else(|p| p.into_inner());
        if self.runtime.is_closed() {
            return Err(Error::closed());
        }
        let envelope = match mailboxes.get(id.as_bytes()) {
            Some(tx) => match tx.try_send(envelope) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(_)) => return Err(Error::overloaded()),
                Err(TrySendError::Closed(envelope)) => envelope,
            },
            None => envelope,
        };
        let handle = self.runtime.tokio_handle()?;
        let (tx, rx) = mpsc::channel(self.options.max_queue);
        if tx.try_send(envelope).is_err() {
            return Err(Error::internal("a new mailbox refused its first call"));
        }
        let store = Arc::new(ObjectStore::new(id, self.runtime.backend.clone()));
        let actor = Actor::new(self.clone(), id.clone(), store);
        self.runtime.actor_started();
        handle.spawn(actor.run(rx));
        mailboxes.insert(*id.as_bytes(), tx);
        Ok(())
    }

    /// Drops every mailbox: actors finish the calls already queued, then exit.
    pub(crate) fn close_mailboxes(&self) {
        for shard in self.shards.iter() {
            shard.write().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }

    pub(crate) fn actor_exited(&self) {
        self.runtime.actor_exited();
    }
}

/// The objects of one class `T`: makes IDs and stubs.
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
/// # Ok(()) }
/// ```
pub struct Namespace<T: DurableObject> {
    core: Arc<NamespaceCore<T>>,
}

impl<T: DurableObject> Clone for Namespace<T> {
    fn clone(&self) -> Self {
        Namespace {
            core: self.core.clone(),
        }
    }
}

impl<T: DurableObject> std::fmt::Debug for Namespace<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("class", &self.core.class.name)
            .finish()
    }
}

impl<T: DurableObject> Namespace<T> {
    pub(crate) fn from_core(core: Arc<NamespaceCore<T>>) -> Self {
        Namespace { core }
    }

    /// The class name (from `#[durable_object(name = "..")]`, or the type's name).
    pub fn class_name(&self) -> &'static str {
        self.core.class.name
    }

    /// The ID of the object named `name` in this class: the same name always gives the same
    /// ID; two names, or two classes, never share one.
    pub fn id_from_name(&self, name: &str) -> ObjectId {
        ObjectId::from_name(&self.core.class, name)
    }

    /// A fresh random ID, never returned before.
    pub fn new_unique_id(&self) -> ObjectId {
        ObjectId::new_unique(&self.core.class)
    }

    /// Parses an ID from its 64 hex digits. Fails with an
    /// [`InvalidId`](crate::ErrorKind::InvalidId) error on malformed text or another class's
    /// ID.
    pub fn id_from_string(&self, text: &str) -> Result<ObjectId> {
        ObjectId::parse(&self.core.class, text)
    }

    /// The stub of the object with this ID. Nothing is activated until the first call.
    pub fn get(&self, id: ObjectId) -> T::Stub {
        T::Stub::from(Stub::new(self.core.clone(), id))
    }

    /// The stub of the object named `name`: `get(id_from_name(name))`.
    pub fn get_by_name(&self, name: &str) -> T::Stub {
        self.get(self.id_from_name(name))
    }
}
