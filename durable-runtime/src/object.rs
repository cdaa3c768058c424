//! The object trait the macro implements, and the actor loop that runs one object.
//!
//! Guarantees of the loop, per object:
//! - exclusive calls (`&mut self`) run one at a time and never overlap any other call;
//! - shared calls (`&self`) run concurrently with each other, in one task;
//! - when an exclusive call returns, its writes are submitted to the output gate as one
//!   batch and the next call starts at once; its reply leaves when the batch is durable;
//! - a panic discards the call's writes and drops the object; the next call activates a
//!   fresh instance from storage. The caller gets an [`ErrorKind::Panicked`] error.
//!
//! [`ErrorKind::Panicked`]: crate::ErrorKind::Panicked

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::id::ObjectId;
use crate::namespace::NamespaceCore;
use crate::storage::ObjectStore;
use crate::stub::Stub;
use crate::wire::MethodSchema;

/// The options of a class, declared by `#[durable_object(..)]` on its struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassOptions {
    /// The class's stable name (default: the type's bare name). IDs and stored data are
    /// bound to it; two classes of one runtime cannot share it.
    pub name: &'static str,
    /// A former name whose data and IDs this class inherits.
    pub renamed_from: Option<&'static str>,
    /// How many calls may wait in one object's queue before new ones fail as overloaded.
    pub max_queue: usize,
}

impl ClassOptions {
    /// The default queue bound of an object.
    pub const DEFAULT_MAX_QUEUE: usize = 4096;

    /// Default options for a class named `name`.
    pub const fn named(name: &'static str) -> ClassOptions {
        ClassOptions {
            name,
            renamed_from: None,
            max_queue: Self::DEFAULT_MAX_QUEUE,
        }
    }
}

/// A call on its way to an object: shared (`&self`) or exclusive (`&mut self`).
#[doc(hidden)]
pub enum Call<S, E> {
    Shared(S),
    Exclusive(E),
}

/// A durable object class. Implemented by `#[durable_object]` on the class's `impl` block;
/// not meant to be implemented by hand.
///
/// The associated types are the generated call and reply enums and the typed stub.
pub trait DurableObject: Send + Sync + Sized + 'static {
    /// The calls taking `&self`.
    #[doc(hidden)]
    type SharedCall: Send + 'static;
    /// The calls taking `&mut self`.
    #[doc(hidden)]
    type ExclusiveCall: Send + 'static;
    /// The return values of every method.
    #[doc(hidden)]
    type Output: Send + 'static;
    /// The typed stub, e.g. `CounterStub` for `Counter`.
    type Stub: From<Stub<Self>> + Clone + Send + Sync + 'static;

    /// The class's options (from `#[durable_object(..)]` on the struct, or defaults).
    fn class_options() -> ClassOptions;

    /// Builds an instance: the class's `new(ctx)`.
    #[doc(hidden)]
    fn activate(ctx: Context) -> Self;

    /// The wire name of a call's method, for errors and traces.
    #[doc(hidden)]
    fn method_name(call: &Call<Self::SharedCall, Self::ExclusiveCall>) -> &'static str;

    /// Runs a shared call.
    #[doc(hidden)]
    fn dispatch_shared(
        &self,
        call: Self::SharedCall,
    ) -> impl Future<Output = Self::Output> + Send + '_;

    /// Runs an exclusive call.
    #[doc(hidden)]
    fn dispatch_exclusive(
        &mut self,
        call: Self::ExclusiveCall,
    ) -> impl Future<Output = Self::Output> + Send + '_;

    /// Runs the class's `alarm` handler; `None` when the class has none.
    #[doc(hidden)]
    fn dispatch_alarm(
        &mut self,
        info: AlarmInfo,
    ) -> impl Future<Output = Option<Result<()>>> + Send + '_ {
        let _ = info;
        async { None }
    }

    /// Runs the class's `on_activate` hook, before any call of a fresh instance.
    #[doc(hidden)]
    fn dispatch_activate(&mut self) -> impl Future<Output = Result<()>> + Send + '_ {
        async { Ok(()) }
    }

    /// Runs the class's `on_evict` hook, before an idle instance is dropped.
    #[doc(hidden)]
    fn dispatch_evict(&mut self) -> impl Future<Output = ()> + Send + '_ {
        async {}
    }

    /// The class's calls as they cross the wire: names, wire names, argument and return types.
    fn schema() -> &'static [MethodSchema] {
        &[]
    }
}

/// What an object's `alarm` handler is told about the run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AlarmInfo {
    /// How many times this alarm already failed (0 on the first run).
    pub retry_count: u32,
    /// `true` when this run retries a failed one.
    pub is_retry: bool,
    /// The named schedule that fired, or `None` for the object's alarm.
    pub schedule: Option<String>,
}

/// A call and the channel its reply goes back on.
pub(crate) struct Envelope<T: DurableObject> {
    pub(crate) call: Call<T::SharedCall, T::ExclusiveCall>,
    pub(crate) reply: oneshot::Sender<Result<T::Output>>,
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}

/// One object's actor: owns the instance, runs its calls, hands writes and replies to the
/// output gate.
pub(crate) struct Actor<T: DurableObject> {
    ns: Arc<NamespaceCore<T>>,
    id: ObjectId,
    store: Arc<ObjectStore>,
    instance: Option<T>,
    /// The sequence number of this object's last submitted batch: every reply waits for it.
    last_seq: u64,
}

impl<T: DurableObject> Actor<T> {
    pub(crate) fn new(ns: Arc<NamespaceCore<T>>, id: ObjectId, store: Arc<ObjectStore>) -> Self {
        Actor {
            ns,
            id,
            store,
            instance: None,
            last_seq: 0,
        }
    }

    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Envelope<T>>) {
        let mut next: Option<Envelope<T>> = None;
        loop {
            let envelope = match next.take() {
                Some(e) => e,
                None => match rx.recv().await {
                    Some(e) => e,
                    None => break,
                },
            };
            let Envelope { call, reply } = envelope;
            let method = T::method_name(&call);
            if let Err(e) = self.ensure_active(method) {
                let _ = reply.send(Err(e));
                continue;
            }
            match call {
                Call::Exclusive(call) => self.run_exclusive(call, method, reply).await,
                Call::Shared(call) => {
                    next = self.run_shared(call, method, reply, &mut rx).await;
                }
            }
        }
        self.ns.actor_exited();
    }

    fn panicked(&self, method: &str, payload: &(dyn std::any::Any + Send)) -> Error {
        let message = panic_message(payload);
        tracing::error!(class = self.ns.class.name, id = %self.id, method, %message, "durable object panicked; resetting it");
        Error::panicked(self.ns.class.name, &self.id.to_string(), method, message)
    }

    /// Activates the instance if needed (first call, after a panic, after a failed commit).
    fn ensure_active(&mut self, method: &str) -> Result<()> {
        if self.store.has_failed() {
            self.instance = None;
            self.store.reset();
        }
        if self.instance.is_some() {
            return Ok(());
        }
        let ctx = Context::new(self.id.clone(), self.store.clone(), self.ns.runtime.clone());
        match std::panic::catch_unwind(AssertUnwindSafe(|| T::activate(ctx))) {
            Ok(instance) => {
                self.instance = Some(instance);
                // Writes made by `new` commit like a call's.
                self.commit().map(|_| ())
            }
            Err(payload) => {
                self.store.discard_call_writes();
                Err(self.panicked(&format!("new (activating for {method})"), &*payload))
            }
        }
    }

    /// Submits the running call's writes; returns the sequence number replies must wait for.
    fn commit(&mut self) -> Result<u64> {
        match self.store.take_call_writes() {
            Ok(Some(batch)) => {
                self.last_seq = self.ns.runtime.gate.submit(&self.store, batch)?;
            }
            Ok(None) => {}
            Err(e) => {
                // Could not read the keys `delete_all` removes: the call's writes are lost,
                // and the instance may hold state that assumed them.
                self.store.discard_call_writes();
                self.instance = None;
                return Err(e);
            }
        }
        Ok(self.last_seq)
    }

    fn reply(&self, reply: oneshot::Sender<Result<T::Output>>, result: Result<T::Output>) {
        if result.is_err() {
            // An error acknowledges nothing: it need not wait for the disk.
            let _ = reply.send(result);
            return;
        }
        let epoch = self.store.epoch();
        self.ns
            .runtime
            .gate
            .release(&self.store, epoch, self.last_seq, move |durable| {
                let _ = reply.send(durable.and(result));
            });
    }

    async fn run_exclusive(
        &mut self,
        call: T::ExclusiveCall,
        method: &'static str,
        reply: oneshot::Sender<Result<T::Output>>,
    ) {
        let Some(instance) = self.instance.as_mut() else {
            let _ = reply.send(Err(Error::internal("exclusive call on an inactive object")));
            return;
        };
        let outcome = AssertUnwindSafe(instance.dispatch_exclusive(call))
            .catch_unwind()
            .await;
        match outcome {
            Ok(output) => match self.commit() {
                Ok(_) => self.reply(reply, Ok(output)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Err(payload) => {
                self.store.discard_call_writes();
                self.instance = None;
                let err = self.panicked(method, &*payload);
                let _ = reply.send(Err(err));
            }
        }
    }

    /// Runs a shared call and every shared call that arrives while shared calls are running.
    /// Returns the first exclusive call that arrived, which must wait for them.
    async fn run_shared(
        &mut self,
        call: T::SharedCall,
        method: &'static str,
        reply: oneshot::Sender<Result<T::Output>>,
        rx: &mut mpsc::Receiver<Envelope<T>>,
    ) -> Option<Envelope<T>> {
        let Some(instance) = self.instance.as_ref() else {
            let _ = reply.send(Err(Error::internal("shared call on an inactive object")));
            return None;
        };
        let start = |call: T::SharedCall, method: &'static str, reply| {
            AssertUnwindSafe(instance.dispatch_shared(call))
                .catch_unwind()
                .map(move |outcome| (outcome, method, reply))
        };
        // Shared calls running at once are bounded like the queue, so slow shared calls
        // cannot admit unbounded work: past the bound, calls wait in the (bounded) queue.
        let max_running = self.ns.options.max_queue;
        let mut running = FuturesUnordered::new();
        running.push(start(call, method, reply));
        let mut waiting: Option<Envelope<T>> = None;
        let mut panicked = Vec::new();
        let mut finished = Vec::new();
        let mut open = true;
        while !running.is_empty() {
            tokio::select! {
                biased;
                Some(done) = running.next() => finished.push(done),
                received = rx.recv(), if waiting.is_none() && open && running.len() < max_running => match received {
                    Some(Envelope { call, reply }) => {
                        let method = T::method_name(&call);
                        match call {
                            Call::Shared(call) => running.push(start(call, method, reply)),
                            call @ Call::Exclusive(_) => waiting = Some(Envelope { call, reply }),
                        }
                    }
                    None => open = false,
                },
            }
            for (outcome, method, reply) in finished.drain(..) {
                match outcome {
                    Ok(output) => self.reply(reply, Ok(output)),
                    Err(payload) => panicked.push((method, reply, payload)),
                }
            }
        }
        drop(running);
        if !panicked.is_empty() {
            self.instance = None;
            for (method, reply, payload) in panicked {
                let err = self.panicked(method, &*payload);
                let _ = reply.send(Err(err));
            }
        }
        waiting
    }
}
