//! Stubs: cheap, cloneable handles that send typed calls to one object.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::actor::Envelope;
use crate::class::{Call, DurableObject};
use crate::cycle;
use crate::error::{Error, Result};
use crate::id::ObjectId;
use crate::namespace::NamespaceCore;

/// The untyped core of every generated stub: a route to one object (its class and ID), not a
/// handle on a task, so it stays valid across eviction and restarts.
///
/// Users meet it through the typed stub `#[durable_object]` generates (`CounterStub` for
/// `Counter`), whose methods are the object's methods. Stubs are `Clone + Send + Sync`.
pub struct Stub<T: DurableObject> {
    ns: Arc<NamespaceCore<T>>,
    id: ObjectId,
    timeout: Option<Duration>,
}

impl<T: DurableObject> Clone for Stub<T> {
    fn clone(&self) -> Self {
        Stub {
            ns: self.ns.clone(),
            id: self.id.clone(),
            timeout: self.timeout,
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
        Stub {
            ns,
            id,
            timeout: None,
        }
    }

    /// This stub with every call limited to `timeout`, counted from the call until its
    /// reply (queueing, running and the durability wait). A call past it fails with a
    /// [`Timeout`](crate::ErrorKind::Timeout) error; if it had started, it still runs to the
    /// end and commits. A call still queued at its deadline is dropped unrun.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The ID of the object this stub calls.
    pub fn id(&self) -> &ObjectId {
        &self.id
    }

    /// Sends a call and waits for its reply. Used by the generated stub methods.
    #[doc(hidden)]
    pub async fn call(&self, call: Call<T::SharedCall, T::ExclusiveCall>) -> Result<T::Output> {
        let exclusive = matches!(call, Call::Exclusive(_));
        let chain = cycle::caller_chain(self.ns.class.name, &self.id, exclusive)?;
        let (reply, rx) = oneshot::channel();
        let Some(timeout) = self.timeout else {
            self.ns.send(
                &self.id,
                Envelope::Call {
                    call,
                    reply,
                    deadline: None,
                    chain,
                },
            )?;
            // A dropped reply means the runtime closed under the call.
            return rx.await.unwrap_or_else(|_| Err(Error::closed()));
        };
        let method = T::method_name(&call);
        let deadline = Instant::now() + timeout;
        self.ns.send(
            &self.id,
            Envelope::Call {
                call,
                reply,
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
}
