//! Group commit and the output gate.
//!
//! When an exclusive call returns, its writes become a [`Batch`] that the object hands to the
//! [`OutputGate`] ([`OutputGate::submit`]) and keeps in memory ("in flight") so that its next
//! calls read them. The object then starts its next call at once: work does not wait for
//! the disk. Its reply goes to the gate too ([`OutputGate::hold`]), which holds it until
//! every write the reply depends on is durable, and only then releases it.
//!
//! One commit thread serves the whole runtime. Each round it takes everything queued, applies
//! all batches to the backend as one atomic batch (later writes to a key replacing earlier
//! ones), syncs once, and only then releases the replies held for them. One `fsync` thus
//! covers the writes of every call of every object that arrived while the previous `fsync`
//! ran (group commit), and no reply is released before its writes, and every earlier write
//! of its object, are durable (the output gate).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::error::{Error, Result};
use crate::storage::{Backend, Batch, Durability, Fence, ObjectStore, Write};

/// A reply the gate holds; releasing it calls it with `Ok` once its writes are durable, or
/// with the storage error that made them fail.
pub(crate) type HeldReply = Box<dyn FnOnce(Result<()>) + Send>;

enum Item {
    Batch {
        seq: u64,
        store: Arc<ObjectStore>,
        batch: Arc<Batch>,
    },
    HeldReply {
        store: Arc<ObjectStore>,
        incarnation: u64,
        /// The batch the reply is held for.
        seq: u64,
        reply: HeldReply,
    },
}

struct Queue {
    items: Vec<Item>,
    /// The sequence number of the last batch submitted.
    last_seq: u64,
    closing: bool,
}

/// The commit thread's state, shared with the gate's callers: the queue they fill and it
/// drains, and what it publishes (the durable sequence number, syncs, schedule changes).
struct CommitState {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Every batch with a sequence number up to this one is durable.
    durable_seq: AtomicU64,
    syncs: AtomicU64,
    /// Bumped after a round that set or cleared schedules: the alarm schedulers look again.
    schedules: tokio::sync::watch::Sender<u64>,
    backend: Arc<dyn Backend>,
    durability: Durability,
}

impl CommitState {
    fn new(backend: Arc<dyn Backend>, durability: Durability) -> CommitState {
        CommitState {
            queue: Mutex::new(Queue {
                items: Vec::new(),
                last_seq: 0,
                closing: false,
            }),
            wake: Condvar::new(),
            durable_seq: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            schedules: tokio::sync::watch::Sender::new(0),
            backend,
            durability,
        }
    }
}

/// The output gate and its commit thread. See the module documentation.
pub(crate) struct OutputGate {
    state: Arc<CommitState>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl OutputGate {
    pub(crate) fn start(backend: Arc<dyn Backend>, durability: Durability) -> Result<OutputGate> {
        let state = Arc::new(CommitState::new(backend, durability));
        let thread_state = state.clone();
        let thread = std::thread::Builder::new()
            .name("durable-commit".into())
            .spawn(move || commit_loop(&thread_state))
            .map_err(|e| Error::storage(format!("cannot start the commit thread: {e}")))?;
        Ok(OutputGate {
            state,
            thread: Mutex::new(Some(thread)),
        })
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        lock(&self.state.queue)
    }

    /// Queues a committed call's writes; returns their sequence number. The batch is in
    /// flight in `store` when this returns.
    pub(crate) fn submit(&self, store: &Arc<ObjectStore>, batch: Batch) -> Result<u64> {
        let batch = Arc::new(batch);
        let mut queue = self.queue();
        if queue.closing {
            return Err(Error::closed());
        }
        queue.last_seq += 1;
        let seq = queue.last_seq;
        self.enqueue(
            queue,
            Item::Batch {
                seq,
                store: store.clone(),
                batch: batch.clone(),
            },
        );
        // Outside the queue's lock, which every object's calls and the commit thread take.
        // The commit thread may already have applied the batch: only this object's actor
        // reads its layers, and it is here; an applied batch leaves the layer later.
        store.push_in_flight(seq, batch);
        Ok(seq)
    }

    /// Holds `reply` until every batch up to `seq` is durable, then releases it: at once if
    /// it already is. The reply was computed by `store`'s object in `incarnation`; if a write
    /// of that incarnation was lost, the reply fails instead, whatever later syncs do.
    pub(crate) fn hold(
        &self,
        store: &Arc<ObjectStore>,
        incarnation: u64,
        seq: u64,
        reply: impl FnOnce(Result<()>) + Send + 'static,
    ) {
        // `durable_seq` advances only after the round that marked any failure of these
        // batches, so reading it first makes the failure check below see that mark.
        if seq <= self.durable_seq() {
            reply(check_incarnation(store, incarnation));
            return;
        }
        let queue = self.queue();
        if queue.closing {
            drop(queue);
            reply(Err(Error::closed()));
            return;
        }
        self.enqueue(
            queue,
            Item::HeldReply {
                store: store.clone(),
                incarnation,
                seq,
                reply: Box::new(reply),
            },
        );
    }

    /// Queues an item for the commit thread, waking it if the queue was empty.
    fn enqueue(&self, mut queue: MutexGuard<'_, Queue>, item: Item) {
        let was_idle = queue.items.is_empty();
        queue.items.push(item);
        drop(queue);
        if was_idle {
            self.state.wake.notify_one();
        }
    }

    /// Every batch up to this sequence number is durable.
    pub(crate) fn durable_seq(&self) -> u64 {
        self.state.durable_seq.load(Ordering::Acquire)
    }

    /// Changes after every commit round that set or cleared a schedule.
    pub(crate) fn watch_schedules(&self) -> tokio::sync::watch::Receiver<u64> {
        self.state.schedules.subscribe()
    }

    /// How many syncs the commit thread has completed.
    pub(crate) fn syncs(&self) -> u64 {
        self.state.syncs.load(Ordering::Relaxed)
    }

    /// Commits and syncs everything queued, releases the held replies, and stops the thread.
    pub(crate) fn close(&self) {
        self.queue().closing = true;
        self.state.wake.notify_one();
        let thread = lock(&self.thread).take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                tracing::error!("the commit thread panicked");
            }
        }
    }
}

impl Drop for OutputGate {
    fn drop(&mut self) {
        self.close();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The commit thread's buffers, kept from round to round so that a round allocates nothing
/// of its own in the steady state.
#[derive(Default)]
struct Round {
    /// The items taken from the queue (which gets this vector's old buffer in exchange).
    items: Vec<Item>,
    batches: Vec<(u64, Arc<ObjectStore>, Arc<Batch>)>,
    held: Vec<(Arc<ObjectStore>, u64, u64, HeldReply)>,
    /// The round's writes for the backend, and numbered for sorting (empty between rounds).
    /// A buffer of this size allocated every round made glibc consolidate its fast bins each
    /// time (the frees of the objects' batches land there): 3% of the commit thread.
    writes: Scratch,
}

#[derive(Default)]
struct Scratch {
    numbered: Vec<(Write<'static>, usize)>,
    writes: Vec<Write<'static>>,
    /// The distinct fences of the round's objects (cluster mode; else empty).
    fences: Vec<Fence>,
}

fn commit_loop(state: &CommitState) {
    let mut round = Round::default();
    loop {
        let last_seq = {
            let mut queue = lock(&state.queue);
            while queue.items.is_empty() && !queue.closing {
                queue = state.wake.wait(queue).unwrap_or_else(|p| p.into_inner());
            }
            if queue.items.is_empty() {
                return;
            }
            std::mem::swap(&mut queue.items, &mut round.items);
            queue.last_seq
        };
        commit_round(state, &mut round, last_seq);
    }
}

/// An empty vector with the buffer of `v`, for a type of the same layout with a longer
/// lifetime: collecting in place reuses the buffer (the standard library does for a filter
/// over `into_iter`; were it not to, this allocates nothing and the next round allocates).
fn recycle<T, U>(v: Vec<T>) -> Vec<U> {
    v.into_iter().filter_map(|_| None).collect()
}

fn check_incarnation(store: &ObjectStore, incarnation: u64) -> Result<()> {
    if store.incarnation_failed(incarnation) {
        Err(Error::storage(
            "an earlier write of this object failed to commit; its result is unknown and the \
             object was reset",
        ))
    } else {
        Ok(())
    }
}

fn commit_round(state: &CommitState, round: &mut Round, last_seq: u64) {
    let Round {
        items,
        batches,
        held,
        writes,
    } = round;
    for item in items.drain(..) {
        match item {
            // A batch computed from lost writes must not reach storage.
            Item::Batch { store, batch, .. } if store.incarnation_failed(batch.incarnation) => {}
            Item::Batch { seq, store, batch } => batches.push((seq, store, batch)),
            Item::HeldReply {
                store,
                incarnation,
                seq,
                reply,
            } => held.push((store, incarnation, seq, reply)),
        }
    }
    // A reply held just after the previous round took its batch may already be covered
    // by that round's sync: then this round has nothing to make durable, and no fsync.
    let durable = state.durable_seq.load(Ordering::Acquire);
    let result = if batches.is_empty() && held.iter().all(|(_, _, seq, _)| *seq <= durable) {
        Ok(())
    } else {
        apply_and_sync(state, batches, writes)
    };
    match &result {
        Ok(()) => {
            for (seq, store, batch) in batches.iter() {
                store.applied(*seq, batch.bytes());
            }
            // Every batch numbered up to `last_seq` was queued before this round's items
            // were taken, so it was committed (or dropped as lost) by now.
            state.durable_seq.fetch_max(last_seq, Ordering::AcqRel);
            if batches
                .iter()
                .any(|(_, _, batch)| batch.touches_schedules())
            {
                state.schedules.send_modify(|n| *n += 1);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, batches = batches.len(), "commit failed; resetting the objects whose writes were lost");
            for (_, store, batch) in batches.iter() {
                store.mark_failed(batch.incarnation);
            }
        }
    }
    for (store, incarnation, seq, reply) in held.drain(..) {
        // A reply held for writes an earlier round made durable is released as `hold` would
        // have released it had it come a moment later: this round's failure is not theirs.
        let durable_before = if seq <= durable {
            Ok(())
        } else {
            result.clone()
        };
        reply(durable_before.and_then(|()| check_incarnation(&store, incarnation)));
    }
    batches.clear();
}

fn apply_and_sync(
    state: &CommitState,
    batches: &[(u64, Arc<ObjectStore>, Arc<Batch>)],
    scratch: &mut Scratch,
) -> Result<()> {
    if !batches.is_empty() {
        // One atomic batch of distinct keys: later writes of a key replace earlier ones.
        // The batches hold their full keys, so this copies no key or value. (Only batches
        // of one object can share keys; sorting also hands the backend its keys in order.)
        let mut numbered: Vec<(Write<'_>, usize)> = std::mem::take(&mut scratch.numbered);
        numbered.reserve(batches.iter().map(|(_, _, b)| b.len()).sum());
        for (_, _, batch) in batches.iter() {
            for write in batch.writes() {
                numbered.push((write, numbered.len()));
            }
        }
        // By key, then in submission order (an unstable sort allocates nothing).
        numbered.sort_unstable_by(|(a, i), (b, j)| a.key.cmp(b.key).then(i.cmp(j)));
        let mut writes: Vec<Write<'_>> = std::mem::take(&mut scratch.writes);
        for (i, (write, _)) in numbered.iter().enumerate() {
            if numbered
                .get(i + 1)
                .is_none_or(|(next, _)| next.key != write.key)
            {
                writes.push(*write);
            }
        }
        // Every shard term the round's objects commit under is checked with the writes.
        let fences = &mut scratch.fences;
        fences.clear();
        fences.extend(batches.iter().filter_map(|(_, store, _)| store.fence()));
        fences.sort_unstable();
        fences.dedup();
        let committed = state
            .backend
            .commit_fenced(&writes, state.durability, fences);
        numbered.clear();
        writes.clear();
        scratch.numbered = recycle(numbered);
        scratch.writes = recycle(writes);
        committed?;
    } else {
        state.backend.commit(&[], state.durability)?;
    }
    state.syncs.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{ClassTag, ObjectId};
    use crate::storage::MemoryBackend;

    fn batch(store: &ObjectStore, writes: &[(&str, Option<&[u8]>)]) -> Arc<Batch> {
        let prefix = store.full_key("");
        Arc::new(Batch::pack(
            &prefix,
            writes.iter().copied(),
            std::iter::empty(),
            store.incarnation(),
        ))
    }

    /// A round carries its objects' fences to the backend: a backend that cannot fence
    /// (memory) refuses the round, and its objects' writes are marked lost.
    #[test]
    fn a_round_of_fenced_objects_is_committed_fenced() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let state = CommitState::new(backend.clone(), Durability::Fsync);
        let class = ClassTag::new("C", "C");
        let plain = Arc::new(ObjectStore::new(
            &ObjectId::from_name(&class, "plain"),
            backend.clone(),
        ));
        let fenced = Arc::new(
            ObjectStore::new(&ObjectId::from_name(&class, "fenced"), backend.clone())
                .with_fence(Fence { shard: 3, term: 7 }),
        );
        let mut round = Round::default();
        round.items.push(Item::Batch {
            seq: 1,
            store: plain.clone(),
            batch: batch(&plain, &[("k", Some(b"1"))]),
        });
        commit_round(&state, &mut round, 1);
        assert_eq!(state.durable_seq.load(Ordering::Acquire), 1);
        round.items.push(Item::Batch {
            seq: 2,
            store: fenced.clone(),
            batch: batch(&fenced, &[("k", Some(b"2"))]),
        });
        commit_round(&state, &mut round, 2);
        assert_eq!(state.durable_seq.load(Ordering::Acquire), 1);
        assert!(fenced.has_failed());
        assert_eq!(backend.get(&fenced.full_key("k")).unwrap(), None);
    }

    /// Batches of one object in one round: each key gets the write of the last batch.
    #[test]
    fn a_round_keeps_the_last_write_of_each_key() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let state = CommitState::new(backend.clone(), Durability::Fsync);
        let class = ClassTag::new("C", "C");
        let (a, b) = (
            Arc::new(ObjectStore::new(
                &ObjectId::from_name(&class, "a"),
                backend.clone(),
            )),
            Arc::new(ObjectStore::new(
                &ObjectId::from_name(&class, "b"),
                backend.clone(),
            )),
        );
        let batches = [
            (&a, batch(&a, &[("k", Some(b"1")), ("x", Some(b"x1"))])),
            (&b, batch(&b, &[("k", Some(b"b"))])),
            (&a, batch(&a, &[("k", Some(b"2")), ("y", Some(b"y2"))])),
            (&a, batch(&a, &[("k", Some(b"3")), ("x", None)])),
        ];
        let mut round = Round::default();
        for (seq, (store, batch)) in batches.iter().enumerate() {
            round.items.push(Item::Batch {
                seq: seq as u64 + 1,
                store: (*store).clone(),
                batch: batch.clone(),
            });
        }
        commit_round(&state, &mut round, batches.len() as u64);
        let get = |store: &ObjectStore, key: &str| backend.get(&store.full_key(key)).unwrap();
        assert_eq!(get(&a, "k"), Some(b"3".to_vec()));
        assert_eq!(get(&a, "x"), None);
        assert_eq!(get(&a, "y"), Some(b"y2".to_vec()));
        assert_eq!(get(&b, "k"), Some(b"b".to_vec()));
        assert_eq!(state.durable_seq.load(Ordering::Acquire), 4);
        assert_eq!(state.syncs.load(Ordering::Relaxed), 1);
    }
}
