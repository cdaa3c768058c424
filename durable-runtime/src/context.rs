//! The context an object is built with: its ID, its storage, and the way out to other objects.

use std::any::Any;
use std::sync::Arc;

use crate::class::DurableObject;
use crate::id::ObjectId;
use crate::namespace::Namespace;
use crate::runtime::RuntimeShared;
use crate::storage::{ObjectStore, Storage};

/// What an object receives in `new(ctx)`: its identity, its storage and the runtime.
///
/// `Context` is not `Clone`, and [`storage_mut`](Context::storage_mut) needs `&mut self`: only
/// an exclusive call (`&mut self` on the object) can write, so a shared call can never get a
/// writable handle.
pub struct Context {
    id: ObjectId,
    storage: Storage,
    runtime: Arc<RuntimeShared>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub(crate) fn new(id: ObjectId, store: Arc<ObjectStore>, runtime: Arc<RuntimeShared>) -> Self {
        Context {
            id,
            storage: Storage::new(store),
            runtime,
        }
    }

    /// This object's ID (with its name, if it was reached by name).
    pub fn id(&self) -> &ObjectId {
        &self.id
    }

    /// Reads this object's storage.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Writes this object's storage. Needs `&mut self`: only exclusive calls write.
    pub fn storage_mut(&mut self) -> &mut Storage {
        &mut self.storage
    }

    /// The namespace of another class (or this one), to call other objects.
    ///
    /// # Panics
    ///
    /// As [`Runtime::namespace`](crate::Runtime::namespace): if another class of this runtime
    /// has the same class name.
    pub fn namespace<U: DurableObject>(&self) -> Namespace<U> {
        match self.runtime.namespace::<U>() {
            Ok(ns) => ns,
            Err(e) => panic!("{e}"),
        }
    }

    /// The shared state given to [`RuntimeBuilder::env`](crate::RuntimeBuilder::env), if it
    /// is of type `E`.
    pub fn env<E: Any + Send + Sync>(&self) -> Option<&E> {
        self.runtime.env.as_deref()?.downcast_ref()
    }
}
