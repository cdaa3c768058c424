//! The actor loop that runs one object: [`Actor`], fed [`Envelope`]s by its mailbox. The
//! class it runs is known only through [`DurableObject`] (`class.rs`).
//!
//! Guarantees of the loop, per object:
//! - exclusive calls (`&mut self`) run one at a time and never overlap any other call;
//! - shared calls (`&self`) run concurrently with each other, in one task;
//! - when an exclusive call returns, its writes are submitted to the output gate as one
//!   batch and the next call starts at once; the gate holds its reply and releases it when
//!   the batch is durable;
//! - a panic discards the call's writes and drops the object; the next call activates a
//!   fresh instance from storage. The caller gets an [`ErrorKind::Panicked`] error;
//! - an object with no call for an idle timeout (as seen by its namespace's sweeper, which
//!   looks every idle timeout, so eviction comes one to two timeouts after the last call)
//!   runs its `on_evict` hook, waits until its writes are durable, leaves its namespace's
//!   map and exits: an evicted object costs no memory. A new actor for the same ID waits
//!   until the old one has finished;
//! - alarms arrive as exclusive steps that delete the fired schedule, run the `alarm`
//!   handler, and commit both atomically (a failed handler's writes, the deletion included,
//!   are discarded, so the schedule stays for the retry).
//!
//! The actor knows whoever runs it (its class's namespace, in this process) only through
//! [`ActorHost`], as a tokio task knows its scheduler only through `Schedule`: this module
//! depends neither on the namespaces nor on the runtime, and the actor loop can be read, and
//! run, apart from them. An actor is generic over its host, so the loop pays no indirection
//! for it.
//!
//! [`ErrorKind::Panicked`]: crate::ErrorKind::Panicked

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::future::Either;
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use tokio::sync::{oneshot, watch};
use tracing::{Instrument, Span};

use crate::class::{AlarmInfo, Call, ClassOptions, DurableObject};
use crate::commit::OutputGate;
use crate::context::{Context, Directory};
use crate::cycle::{self, Frame, Link};
use crate::error::{Error, Result};
use crate::host::Counters;
use crate::id::{ClassTag, ObjectId};
use crate::mailbox::Mailbox;
use crate::sockets::{self, ObjectSockets, SocketEvent, SocketId};
use crate::storage::{now_ms, ObjectStore};
use crate::websocket::WebSocket;

/// What an actor needs from whoever runs it: its class, where its writes and replies go, the
/// counters it bumps, and a say in when it leaves.
pub(crate) trait ActorHost<T: DurableObject>: Send + Sync + 'static {
    /// Proof that an actor left its host (from [`retire`](Self::retire)), handed back to
    /// [`settled`](Self::settled) once its last writes are durable.
    type Retired: Send;

    /// The class of the object the actor runs: its name goes into frames, traces and errors.
    fn class(&self) -> &ClassTag;

    /// The class's options: `max_queue` also bounds the shared calls running at once.
    fn options(&self) -> &ClassOptions;

    /// Where the actor submits its calls' writes and has their replies held until durable.
    fn gate(&self) -> &OutputGate;

    /// The runtime's counters.
    fn counters(&self) -> &Counters;

    /// How many times a failed alarm is retried before its schedule is deleted.
    fn alarm_retries(&self) -> u32;

    /// What the object's [`Context`] reaches beyond the object.
    fn directory(&self) -> &Arc<dyn Directory>;

    /// An idle actor asks to leave: granted only if nothing is queued for it (then its
    /// mailbox is closed, no envelope reaches it any more, and the host starts no other actor
    /// for its ID until [`settled`](Self::settled)).
    fn retire(
        &self,
        id: &ObjectId,
        store: &Arc<ObjectStore>,
        mailbox: &Mailbox<Envelope<T>>,
    ) -> Option<Self::Retired>;

    /// A retired actor's writes are durable: its successor may start.
    fn settled(&self, id: &ObjectId, retired: Self::Retired);

    /// The actor's task ends (evicted, or its mailbox closed).
    fn actor_exited(&self);

    /// Whether a call (or alarm, or socket event) of the object whose storage is `store` may
    /// start now. Always, but in cluster mode: there the object's shard must still be owned
    /// here under the store's fence, with the node's lease alive (a node that lost its lease
    /// or shard starts nothing; the refusal says the call did not run).
    fn may_start(&self, store: &ObjectStore) -> Result<()> {
        let _ = store;
        Ok(())
    }
}

/// Where a call's reply goes: to a caller in this process, or out of a connection (the
/// server's callback encodes it and writes it from the task that finishes the call, with no
/// hand-off to the connection's task).
pub(crate) enum ReplyTo<O> {
    Local(oneshot::Sender<Result<O>>),
    /// Called once with the reply; dropped uncalled, it answers that the runtime closed.
    Remote(Box<dyn FnOnce(Result<O>) + Send>),
}

impl<O> ReplyTo<O> {
    /// Delivers the reply; `false` if a local caller stopped waiting.
    #[inline]
    pub(crate) fn send(self, result: Result<O>) -> bool {
        match self {
            ReplyTo::Local(sender) => sender.send(result).is_ok(),
            ReplyTo::Remote(send) => {
                send(result);
                true
            }
        }
    }
}

/// What an actor receives.
pub(crate) enum Envelope<T: DurableObject> {
    /// A call from a stub.
    Call {
        call: Call<T::SharedCall, T::ExclusiveCall>,
        reply: ReplyTo<T::Output>,
        /// Past it, nobody waits for the reply: the call is dropped unrun.
        deadline: Option<Instant>,
        /// The calls waiting on this one, for cycle detection.
        chain: Option<Arc<Link>>,
    },
    /// A schedule came due.
    Alarm {
        info: AlarmInfo,
        reply: oneshot::Sender<Result<AlarmOutcome>>,
    },
    /// Delete all of the object's data, schedules and name.
    Erase { reply: oneshot::Sender<Result<()>> },
    /// Something happened on one of the object's WebSockets; the reply says it was handled
    /// (its writes submitted, not yet durable), so that the socket's next event follows it.
    Socket {
        socket: SocketId,
        event: SocketEvent,
        reply: ReplyTo<()>,
    },
    /// From the idle sweeper: no envelope arrived since the object's activity was `seen`,
    /// a whole idle timeout ago.
    Idle { seen: u64 },
}

/// How an alarm run ended, for the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AlarmOutcome {
    /// The handler ran and its writes (with the schedule's deletion) are durable.
    Ran,
    /// The schedule was no longer due (changed or deleted since the scheduler saw it).
    NotDue,
    /// The handler failed for the last allowed time: the schedule was deleted.
    GaveUp,
}

/// The rest of an envelope's handling, boxed (see `Actor::step`).
type StepFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = Step<T>> + Send + 'a>>;

/// How an envelope's handling ended.
enum Step<T: DurableObject> {
    Done,
    /// Shared calls ran until this envelope, which had to wait for them, arrived.
    Then(Envelope<T>),
    /// The object was evicted: the actor ends.
    Exit,
}

/// Futures run in a tracing span when it is enabled, and bare otherwise (entering and
/// leaving a disabled span on every poll and at drop is not free).
trait Traced: Future + Sized {
    fn traced(self, span: Span) -> Either<tracing::instrument::Instrumented<Self>, Self> {
        if span.is_disabled() {
            Either::Right(self)
        } else {
            Either::Left(self.instrument(span))
        }
    }
}

impl<F: Future> Traced for F {}

/// A call whose caller stopped waiting: past its deadline.
fn expired(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
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
pub(crate) struct Actor<T: DurableObject, H: ActorHost<T>> {
    host: Arc<H>,
    id: ObjectId,
    store: Arc<ObjectStore>,
    instance: Option<T>,
    /// The sequence number of this object's last submitted batch: every reply is held for it.
    last_seq: u64,
    /// The name of the object, to record with its first data write if storage lacks it.
    unrecorded_name: bool,
    /// Closed (dropped) by the previous actor of this ID once its writes are durable.
    settle: Option<watch::Receiver<()>>,
    /// The object's WebSockets: kept by the host across hibernation.
    sockets: Arc<ObjectSockets>,
}

impl<T: DurableObject, H: ActorHost<T>> Actor<T, H> {
    pub(crate) fn new(
        host: Arc<H>,
        id: ObjectId,
        store: Arc<ObjectStore>,
        sockets: Arc<ObjectSockets>,
        settle: Option<watch::Receiver<()>>,
    ) -> Self {
        Actor {
            host,
            id,
            store,
            instance: None,
            last_seq: 0,
            unrecorded_name: false,
            settle,
            sockets,
        }
    }

    /// The actor's task. The actor is boxed so that the task's future holds a pointer, not
    /// a copy of it (or two: futures keep their arguments and the locals made from them).
    pub(crate) async fn run(mut self: Box<Self>, mailbox: Arc<Mailbox<Envelope<T>>>) {
        if let Some(mut settle) = self.settle.take() {
            // Resolves (with an error) when the previous actor drops its sender. Boxed, like
            // every rare or large step below: the task's own future stays small, because a
            // live object spends most of its life waiting for its next envelope.
            Box::pin(async move {
                let _ = settle.changed().await;
            })
            .await;
        }
        let mut next: Option<Envelope<T>> = None;
        loop {
            let envelope = match next.take() {
                Some(e) => e,
                None => match mailbox.recv().await {
                    Some(e) => e,
                    None => break,
                },
            };
            let Some(step) = self.step(envelope, &mailbox) else {
                continue;
            };
            match step.await {
                Step::Done => {}
                Step::Then(envelope) => next = Some(envelope),
                Step::Exit => return,
            }
        }
        self.host.actor_exited();
    }

    /// Starts handling an envelope: what needs no waiting is done here, the rest is returned
    /// as a boxed future. Boxed, so that the task's own future stays small: a live object
    /// spends most of its life waiting for its next envelope, and should not carry room for
    /// the largest call it might run.
    fn step<'a>(
        &'a mut self,
        envelope: Envelope<T>,
        mailbox: &'a Mailbox<Envelope<T>>,
    ) -> Option<StepFuture<'a, T>> {
        match envelope {
            Envelope::Idle { seen } => {
                // The sweeper saw no activity for a whole idle timeout; anything since?
                (self.store.activity() == seen).then(|| -> StepFuture<'a, T> {
                    Box::pin(async move {
                        if self.try_evict(mailbox).await {
                            Step::Exit
                        } else {
                            Step::Done
                        }
                    })
                })
            }
            Envelope::Call {
                call,
                reply,
                deadline,
                chain,
            } => {
                self.store.touch();
                let method = T::method_name(&call);
                if let Err(e) = self.host.may_start(&self.store) {
                    let _ = reply.send(Err(e));
                    return None;
                }
                if expired(deadline) {
                    // The caller has given up: do not run work nobody waits for.
                    let _ = reply.send(Err(Error::timeout(method, Duration::ZERO)));
                    return None;
                }
                if self.needs_activation() {
                    return Some(Box::pin(async move {
                        if let Err(e) = self.ensure_active(method).await {
                            let _ = reply.send(Err(e));
                            return Step::Done;
                        }
                        self.run_call(call, method, reply, chain, mailbox).await
                    }));
                }
                Some(match call {
                    // Exclusive calls get a box of their own: `run_call`'s future also has
                    // room for concurrent shared calls, which an exclusive call would copy
                    // and allocate for nothing.
                    Call::Exclusive(call) => {
                        self.host.counters().calls.inc();
                        Box::pin(async move {
                            self.run_exclusive(call, method, reply, chain).await;
                            Step::Done
                        })
                    }
                    call => Box::pin(self.run_call(call, method, reply, chain, mailbox)),
                })
            }
            other => {
                self.store.touch();
                Some(Box::pin(async move {
                    self.handle_other(other).await;
                    Step::Done
                }))
            }
        }
    }

    /// Runs a call on the active instance.
    async fn run_call(
        &mut self,
        call: Call<T::SharedCall, T::ExclusiveCall>,
        method: &'static str,
        reply: ReplyTo<T::Output>,
        chain: Option<Arc<Link>>,
        mailbox: &Mailbox<Envelope<T>>,
    ) -> Step<T> {
        self.host.counters().calls.inc();
        match call {
            Call::Exclusive(call) => {
                self.run_exclusive(call, method, reply, chain).await;
                Step::Done
            }
            Call::Shared(call) => {
                match self.run_shared(call, method, reply, chain, mailbox).await {
                    Some(envelope) => Step::Then(envelope),
                    None => Step::Done,
                }
            }
        }
    }

    /// Alarms and erasure.
    async fn handle_other(&mut self, envelope: Envelope<T>) {
        if let Err(e) = self.host.may_start(&self.store) {
            match envelope {
                Envelope::Alarm { reply, .. } => drop(reply.send(Err(e))),
                Envelope::Erase { reply } => drop(reply.send(Err(e))),
                Envelope::Socket { reply, .. } => drop(reply.send(Err(e))),
                Envelope::Call { .. } | Envelope::Idle { .. } => {}
            }
            return;
        }
        match envelope {
            Envelope::Alarm { info, reply } => {
                let outcome = self.run_alarm(info).await;
                match outcome {
                    Ok(AlarmOutcome::Ran) | Ok(AlarmOutcome::GaveUp) => {
                        self.hold(move |result| {
                            let _ = reply.send(result.and(outcome));
                        });
                    }
                    other => {
                        let _ = reply.send(other);
                    }
                }
            }
            Envelope::Erase { reply } => {
                let result = self.erase().await;
                match result {
                    Ok(()) => self.hold(move |result| {
                        let _ = reply.send(result);
                    }),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Envelope::Socket {
                socket,
                event,
                reply,
            } => self.run_socket_event(socket, event, reply).await,
            // Handled by the run loop.
            Envelope::Call { .. } | Envelope::Idle { .. } => {}
        }
    }

    fn frame(&self, exclusive: bool, parent: Option<Arc<Link>>) -> Frame {
        Frame {
            class: self.host.class().name,
            id: self.id.clone(),
            exclusive,
            parent,
        }
    }

    fn panicked(&self, method: &str, payload: &(dyn std::any::Any + Send)) -> Error {
        let message = panic_message(payload);
        tracing::error!(class = self.host.class().name, id = %self.id, method, %message, "durable object panicked; resetting it");
        Error::panicked(
            self.host.class().name,
            &self.id.to_string(),
            method,
            message,
        )
    }

    /// The instance must be (re)built before the next call: first call, after a panic,
    /// after a failed commit.
    fn needs_activation(&self) -> bool {
        self.instance.is_none() || self.store.has_failed()
    }

    /// Activates the instance if needed (first call, after a panic, after a failed commit):
    /// `new(ctx)`, then the `on_activate` hook, before any call.
    async fn ensure_active(&mut self, method: &str) -> Result<()> {
        if self.store.has_failed() {
            self.instance = None;
            self.store.reset();
        }
        if self.instance.is_some() {
            return Ok(());
        }
        self.load_storage().await?;
        let stored_name = self.store.stored_name()?;
        match (self.id.name(), stored_name) {
            (Some(_), Some(_)) => self.unrecorded_name = false,
            (Some(_), None) => self.unrecorded_name = true,
            (None, Some(name)) => self.id = self.id.clone().with_name(&name),
            (None, None) => {}
        }
        let ctx = Context::new(
            self.id.clone(),
            self.store.clone(),
            self.host.directory().clone(),
            self.sockets.clone(),
        );
        let mut instance = match std::panic::catch_unwind(AssertUnwindSafe(|| T::activate(ctx))) {
            Ok(instance) => instance,
            Err(payload) => {
                self.discard_step();
                return Err(self.panicked(&format!("new (activating for {method})"), &*payload));
            }
        };
        let frame = self.frame(true, None);
        let hook = AssertUnwindSafe(cycle::scope(frame, instance.dispatch_activate()))
            .catch_unwind()
            .await;
        match hook {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.discard_step();
                return Err(e);
            }
            Err(payload) => {
                self.discard_step();
                return Err(self.panicked("on_activate", &*payload));
            }
        }
        self.host.counters().activations.inc();
        self.instance = Some(instance);
        // Writes made by `new` and `on_activate` commit like a call's.
        self.commit().map(|_| ())
    }

    /// Loads the object's stored state into its storage cache if the backend asks for it
    /// (reads that cross a network), without blocking an async thread. Boxed: rare, and the
    /// actor's future stays small.
    async fn load_storage(&self) -> Result<()> {
        if !self.store.needs_load() {
            return Ok(());
        }
        Box::pin(self.store.load()).await
    }

    /// Submits the running call's writes; returns the sequence number replies are held for.
    fn commit(&mut self) -> Result<u64> {
        let mut name = if self.unrecorded_name {
            self.id.name()
        } else {
            None
        };
        let naming = name.is_some();
        match self.store.take_call_writes(&mut name) {
            Ok(Some(batch)) => {
                if naming && name.is_none() {
                    self.unrecorded_name = false;
                }
                self.last_seq = self.host.gate().submit(&self.store, batch)?;
            }
            Ok(None) => {}
            Err(e) => {
                // Could not read the keys `delete_all` removes: the call's writes are lost,
                // and the instance may hold state that assumed them.
                self.discard_step();
                self.instance = None;
                return Err(e);
            }
        }
        self.release_output();
        Ok(self.last_seq)
    }

    /// Has the output gate hold what the step sent its WebSockets until the step's writes
    /// (and all before them) are durable; dropped if they fail.
    fn release_output(&self) {
        if !self.sockets.has_output() {
            return;
        }
        let output = self.sockets.take_output();
        self.hold(move |durable| {
            if durable.is_ok() {
                sockets::deliver(output);
            }
        });
    }

    /// The running step's writes and WebSocket output are discarded (it panicked or failed).
    fn discard_step(&self) {
        self.store.discard_call_writes();
        self.sockets.discard_output();
    }

    /// Has the output gate hold `send` until this object's writes so far are durable, then
    /// release it (run it).
    fn hold(&self, send: impl FnOnce(Result<()>) + Send + 'static) {
        let incarnation = self.store.incarnation();
        self.host
            .gate()
            .hold(&self.store, incarnation, self.last_seq, send);
    }

    /// Sends a call's reply: an error at once, a success held until its writes are durable.
    fn send_reply<O: Send + 'static>(&self, reply: ReplyTo<O>, result: Result<O>) {
        // What a shared call sent (exclusive steps released theirs at commit).
        self.release_output();
        if result.is_err() {
            // An error acknowledges nothing: it need not wait for the disk.
            let _ = reply.send(result);
            return;
        }
        self.hold(move |durable| {
            let _ = reply.send(durable.and(result));
        });
    }

    async fn run_exclusive(
        &mut self,
        call: T::ExclusiveCall,
        method: &'static str,
        reply: ReplyTo<T::Output>,
        chain: Option<Arc<Link>>,
    ) {
        let frame = self.frame(true, chain);
        let span =
            tracing::debug_span!("call", class = self.host.class().name, id = %self.id, method);
        let Some(instance) = self.instance.as_mut() else {
            let _ = reply.send(Err(Error::internal("exclusive call on an inactive object")));
            return;
        };
        let outcome = AssertUnwindSafe(cycle::scope(frame, instance.dispatch_exclusive(call)))
            .catch_unwind()
            .traced(span)
            .await;
        match outcome {
            Ok(output) => match self.commit() {
                Ok(_) => self.send_reply(reply, Ok(output)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Err(payload) => {
                self.discard_step();
                self.instance = None;
                let err = self.panicked(method, &*payload);
                let _ = reply.send(Err(err));
            }
        }
    }

    /// Runs a shared call and every shared call that arrives while shared calls are running.
    /// Returns the first other envelope that arrived, which must wait for them.
    async fn run_shared(
        &mut self,
        call: T::SharedCall,
        method: &'static str,
        reply: ReplyTo<T::Output>,
        chain: Option<Arc<Link>>,
        mailbox: &Mailbox<Envelope<T>>,
    ) -> Option<Envelope<T>> {
        let (panicked, waiting) = {
            let Some(instance) = self.instance.as_ref() else {
                let _ = reply.send(Err(Error::internal("shared call on an inactive object")));
                return None;
            };
            let (class, id) = (self.host.class().name, &self.id);
            let start = |call: T::SharedCall, method: &'static str, reply, chain| {
                let frame = Frame {
                    class,
                    id: id.clone(),
                    exclusive: false,
                    parent: chain,
                };
                let span = tracing::debug_span!("call", class, id = %id, method);
                AssertUnwindSafe(cycle::scope(frame, instance.dispatch_shared(call)))
                    .catch_unwind()
                    .traced(span)
                    .map(move |outcome| (outcome, method, reply))
            };
            let mut panicked = Vec::new();
            // Fast path: most shared calls finish without waiting (storage reads are
            // synchronous), so poll the first one before setting up concurrent execution.
            let mut first = std::pin::pin!(start(call, method, reply, chain));
            let first_poll = std::future::poll_fn(|cx| Poll::Ready(first.as_mut().poll(cx))).await;
            if let Poll::Ready((outcome, method, reply)) = first_poll {
                match outcome {
                    Ok(output) => self.send_reply(reply, Ok(output)),
                    Err(payload) => panicked.push((method, reply, payload)),
                }
                (panicked, None)
            } else {
                // The first call waits: run it, and the shared calls arriving meanwhile,
                // together. Shared calls running at once are bounded like the queue, so slow
                // shared calls cannot admit unbounded work: past the bound, calls wait in the
                // (bounded) queue.
                let max_running = self.host.options().max_queue;
                let mut first_running = true;
                let mut running = FuturesUnordered::new();
                let mut waiting: Option<Envelope<T>> = None;
                let mut finished = Vec::new();
                let mut open = true;
                while first_running || !running.is_empty() {
                    let count = running.len() + usize::from(first_running);
                    tokio::select! {
                        biased;
                        done = &mut first, if first_running => {
                            first_running = false;
                            finished.push(done);
                        }
                        Some(done) = running.next() => finished.push(done),
                        received = mailbox.recv(), if waiting.is_none() && open && count < max_running => match received {
                            Some(Envelope::Call { call, reply, deadline, chain }) => {
                                let method = T::method_name(&call);
                                match (call, self.host.may_start(&self.store)) {
                                    (_, Err(refused)) => {
                                        let _ = reply.send(Err(refused));
                                    }
                                    _ if expired(deadline) => {
                                        let _ = reply.send(Err(Error::timeout(method, Duration::ZERO)));
                                    }
                                    (Call::Shared(call), Ok(())) => {
                                        self.store.touch();
                                        self.host.counters().calls.inc();
                                        running.push(start(call, method, reply, chain));
                                    }
                                    (call @ Call::Exclusive(_), Ok(())) => {
                                        waiting = Some(Envelope::Call { call, reply, deadline, chain });
                                    }
                                }
                            }
                            Some(other) => waiting = Some(other),
                            None => open = false,
                        },
                    }
                    for (outcome, method, reply) in finished.drain(..) {
                        match outcome {
                            Ok(output) => self.send_reply(reply, Ok(output)),
                            Err(payload) => panicked.push((method, reply, payload)),
                        }
                    }
                }
                (panicked, waiting)
            }
        };
        if !panicked.is_empty() {
            self.instance = None;
            for (method, reply, payload) in panicked {
                let err = self.panicked(method, &*payload);
                let _ = reply.send(Err(err));
            }
        }
        waiting
    }

    /// The sweeper found the object idle: leave the namespace, run
    /// `on_evict`, wait until every write is durable, exit. `false` (stay) if a call arrived.
    async fn try_evict(&mut self, mailbox: &Mailbox<Envelope<T>>) -> bool {
        let Some(settling) = self.host.retire(&self.id, &self.store, mailbox) else {
            return false;
        };
        if let Some(mut instance) = self.instance.take() {
            let frame = self.frame(true, None);
            let hook = AssertUnwindSafe(cycle::scope(frame, instance.dispatch_evict()))
                .catch_unwind()
                .await;
            match hook {
                Ok(()) => {
                    if let Err(e) = self.commit() {
                        tracing::error!(class = self.host.class().name, id = %self.id, error = %e, "on_evict's writes were lost");
                    }
                }
                Err(payload) => {
                    self.discard_step();
                    let _ = self.panicked("on_evict", &*payload);
                }
            }
        }
        // The next actor of this ID reads storage: everything this one wrote must be there.
        let (done, durable) = oneshot::channel();
        self.hold(move |result| {
            let _ = done.send(result);
        });
        if let Ok(Err(e)) = durable.await {
            tracing::error!(class = self.host.class().name, id = %self.id, error = %e, "an evicted object's last writes failed");
        }
        self.host.counters().evictions.inc();
        self.host.settled(&self.id, settling);
        self.host.actor_exited();
        true
    }

    /// Runs a due schedule: deletes it and runs the `alarm` handler, committing both; on a
    /// failure, keeps it for the scheduler's retry (or deletes it after the last retry).
    async fn run_alarm(&mut self, info: AlarmInfo) -> Result<AlarmOutcome> {
        self.ensure_active("alarm").await?;
        let name = info.schedule.clone().unwrap_or_default();
        match self.store.schedule(&name)? {
            Some(due) if due <= now_ms() => {}
            _ => return Ok(AlarmOutcome::NotDue),
        }
        self.store.set_schedule(&name, None)?;
        self.host.counters().alarm_runs.inc();
        let frame = self.frame(true, None);
        let span = tracing::debug_span!("alarm", class = self.host.class().name, id = %self.id, schedule = %name, retry = info.retry_count);
        let Some(instance) = self.instance.as_mut() else {
            return Err(Error::internal("alarm on an inactive object"));
        };
        let outcome = AssertUnwindSafe(cycle::scope(frame, instance.dispatch_alarm(info.clone())))
            .catch_unwind()
            .traced(span)
            .await;
        let failure = match outcome {
            Ok(Some(Ok(()))) => None,
            Ok(None) => {
                tracing::warn!(class = self.host.class().name, id = %self.id, schedule = %name, "a schedule came due but the class has no `alarm` handler; it was deleted");
                None
            }
            Ok(Some(Err(e))) => Some(e),
            Err(payload) => {
                self.instance = None;
                Some(self.panicked("alarm", &*payload))
            }
        };
        let Some(err) = failure else {
            self.commit()?;
            return Ok(AlarmOutcome::Ran);
        };
        self.discard_step();
        self.host.counters().alarm_failures.inc();
        if info.retry_count >= self.host.alarm_retries() {
            tracing::error!(class = self.host.class().name, id = %self.id, schedule = %name, error = %err, retries = info.retry_count, "alarm failed after its last retry; giving up");
            self.store.set_schedule(&name, None)?;
            self.commit()?;
            return Ok(AlarmOutcome::GaveUp);
        }
        tracing::warn!(class = self.host.class().name, id = %self.id, schedule = %name, error = %err, retry = info.retry_count, "alarm failed; it will be retried");
        Err(err)
    }

    /// Runs a WebSocket handler for an event of one of the object's sockets. An event of a
    /// socket the object no longer has (closed by the object, or never accepted) is
    /// acknowledged and dropped.
    async fn run_socket_event(&mut self, socket: SocketId, event: SocketEvent, reply: ReplyTo<()>) {
        let method = match event {
            SocketEvent::Message(_) => "websocket_message",
            SocketEvent::Close { .. } => "websocket_close",
        };
        if let Err(e) = self.ensure_active(method).await {
            let _ = reply.send(Err(e));
            return;
        }
        let entry = match event {
            SocketEvent::Message(_) => self.sockets.get(socket),
            // Closed sockets leave the object's list before its handler runs.
            SocketEvent::Close { .. } => self.sockets.remove(socket),
        };
        let Some(entry) = entry else {
            let _ = reply.send(Ok(()));
            return;
        };
        self.host.counters().socket_events.inc();
        let ws = WebSocket::new(entry, self.sockets.clone());
        let frame = self.frame(true, None);
        let span = tracing::debug_span!("websocket", class = self.host.class().name, id = %self.id, method);
        let Some(instance) = self.instance.as_mut() else {
            let _ = reply.send(Err(Error::internal(
                "a WebSocket event on an inactive object",
            )));
            return;
        };
        let outcome = match event {
            SocketEvent::Message(message) => {
                AssertUnwindSafe(cycle::scope(
                    frame,
                    instance.dispatch_websocket_message(ws, message),
                ))
                .catch_unwind()
                .traced(span)
                .await
            }
            SocketEvent::Close { code, reason } => {
                AssertUnwindSafe(cycle::scope(
                    frame,
                    instance.dispatch_websocket_close(ws, code, reason),
                ))
                .catch_unwind()
                .traced(span)
                .await
            }
        };
        match outcome {
            Ok(None) | Ok(Some(Ok(()))) => {}
            Ok(Some(Err(e))) => {
                // As a call's error: its writes still commit; the socket stays open.
                tracing::warn!(class = self.host.class().name, id = %self.id, method, error = %e, "a WebSocket handler failed");
            }
            Err(payload) => {
                self.discard_step();
                self.instance = None;
                let err = self.panicked(method, &*payload);
                let _ = reply.send(Err(err));
                return;
            }
        }
        // Handled: the socket's next frame may come. The acknowledgement paces the socket
        // and promises the client nothing, so it need not wait for the disk; what the
        // handler sent does (released with the step's writes, in `commit`).
        let result = self.commit().map(|_| ());
        let _ = reply.send(result);
    }

    /// Deletes the object's data, schedules and recorded name, without activating it.
    async fn erase(&mut self) -> Result<()> {
        if self.store.has_failed() {
            self.store.reset();
        }
        self.load_storage().await?;
        // The instance's fields describe the data being deleted.
        self.instance = None;
        self.store.erase_all()?;
        self.commit().map(|_| ())
    }
}
