//! Stubs: cheap, cloneable handles that send typed calls to one object.

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::id::ObjectId;
use crate::namespace::NamespaceCore;
use crate::object::{Call, DurableObject, Envelope};

/// The untyped core of every generated stub: a route to one object (its class and ID), not a
/// handle on a task, so it stays valid across eviction and restarts.
///
/// Users meet it through the typed stub `#[durable_object]` generates (`CounterStub` for
/// `Counter`), whose methods are the object's methods. Stubs are `Clone + Send + Sync`.
pub struct Stub<T: DurableObject> {
    ns: Arc<NamespaceCore<T>>,
    id: ObjectId,
}

impl<T: DurableObject> Clone for Stub<T> {
    fn clone(&self) -> Self {
        Stub {
            ns: self.ns.clone(),
            id: self.id.clone(),
        }
    }
}

impl<T: DurableObject> std::fmt::Debug for Stub<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stub")
            .field("class", &self.ns.class.name)
            .field("id", &self.id)
            .finish()
    }
}

impl<T: DurableObject> Stub<T> {
    pub(crate) fn new(ns: Arc<NamespaceCore<T>>, id: ObjectId) -> Self {
        Stub { ns, id }
    }

    /// The ID of the object this stub calls.
    pub fn id(&self) -> &ObjectId {
        &self.id
    }

    /// Sends a call and waits for its reply. Used by the generated stub methods.
    #[doc(hidden)]
    pub async fn call(&self, call: Call<T::SharedCall, T::ExclusiveCall>) -> Result<T::Output> {
        let (reply, rx) = oneshot::channel();
        self.ns.send(&self.id, Envelope { call, reply })?;
        match rx.await {
            Ok(result) => result,
            // The object dropped the call without answering: the runtime closed under it.
            Err(_) => Err(Error::closed()),
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
}
