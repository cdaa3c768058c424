//! Fencing on this node: which shards it owns now, under which term, and whether its lease is
//! still alive.
//!
//! The table is what every delivery and every call start consults, so it is lock-free: one
//! atomic word per shard (the term this node claimed the shard under in storage, or 0) and the
//! lease's own liveness check (a clock comparison). The control loop (`balance.rs`) writes it:
//! a shard becomes owned only after its term was claimed in storage, so that every commit of
//! an object activated under it carries a term storage knows; it becomes draining while a
//! clean handover lets queued calls finish; it is cleared when the shard is released or the
//! lease lapsed.
//!
//! The table is the node's own view, and may lag: a paused node resumes believing it owns
//! shards that were taken over. That is why it is not the safety mechanism. Storage is: every
//! commit carries its objects' terms and is refused whole when one is stale
//! ([`Backend::commit_fenced`](crate::storage::Backend::commit_fenced)). The table only keeps
//! a node from *starting* work it would lose, and [`Lease::is_live`] makes a lapsed node stop
//! at once, without waiting for any task to notice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use super::placement::shard_of;
use crate::error::{Error, Result};
use crate::id::ID_BYTES;
use crate::storage::Fence;

/// Whether this node's membership lease is surely alive.
pub(crate) trait Lease: Send + Sync {
    /// `true` while the lease is surely alive (a conservative, local-clock answer).
    fn is_live(&self) -> bool;
}

/// A shard whose word has this bit set is draining: its queued calls may still start, no new
/// call is delivered.
const DRAINING: u64 = 1 << 63;
/// A shard whose word is only this bit is being taken by this node (its owner key is being
/// created or its term claimed in storage): calls from peers wait for it (see
/// [`Ownership::wait_claimed`]) instead of being refused.
const CLAIMING: u64 = 1 << 62;
/// The term in a word.
const TERM: u64 = !(DRAINING | CLAIMING);

/// How a shard stands on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// Owned under this fence: calls are delivered and run.
    Owned(Fence),
    /// Being handed over: calls already queued run, new ones go elsewhere.
    Draining(Fence),
    /// Not owned here (or not yet claimed).
    Elsewhere,
}

/// The shards this node owns; see the module documentation.
pub(crate) struct Ownership {
    node: String,
    terms: Box<[AtomicU64]>,
    lease: Arc<dyn Lease>,
    /// Bumped on every change of the table (alarm schedulers rescan, routed calls retry).
    changes: watch::Sender<u64>,
}

impl std::fmt::Debug for Ownership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ownership")
            .field("node", &self.node)
            .field("shards", &self.terms.len())
            .finish_non_exhaustive()
    }
}

impl Ownership {
    /// An empty table of `shards` shards for node `node`, whose lease is `lease`.
    pub(crate) fn new(node: impl Into<String>, shards: u32, lease: Arc<dyn Lease>) -> Ownership {
        Ownership {
            node: node.into(),
            terms: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            lease,
            changes: watch::Sender::new(0),
        }
    }

    /// This node's ID.
    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    /// The number of shards.
    pub(crate) fn shards(&self) -> u32 {
        self.terms.len() as u32
    }

    /// The shard of the object with these ID bytes.
    pub(crate) fn shard_of(&self, id: &[u8; ID_BYTES]) -> u32 {
        shard_of(id, self.shards())
    }

    /// Whether the lease is surely alive.
    pub(crate) fn is_live(&self) -> bool {
        self.lease.is_live()
    }

    /// How `shard` stands here, the lease aside.
    pub(crate) fn standing(&self, shard: u32) -> Standing {
        let word = self.terms[shard as usize].load(Ordering::Acquire);
        let term = word & TERM;
        if term == 0 {
            Standing::Elsewhere
        } else if word & DRAINING != 0 {
            Standing::Draining(Fence { shard, term })
        } else {
            Standing::Owned(Fence { shard, term })
        }
    }

    /// The fence a new call of the object `id` is delivered under: its shard must be owned
    /// here (not draining), with the lease alive.
    ///
    /// # Errors
    ///
    /// [`Unavailable`](crate::ErrorKind::Unavailable) otherwise; the call did not run.
    pub(crate) fn admit(&self, id: &[u8; ID_BYTES]) -> Result<Fence> {
        let shard = self.shard_of(id);
        match self.standing(shard) {
            Standing::Owned(fence) if self.is_live() => Ok(fence),
            Standing::Owned(_) | Standing::Draining(_) if !self.is_live() => Err(self.lapsed()),
            Standing::Draining(_) => Err(Error::not_here(format!(
                "node `{}` is handing shard {shard} over",
                self.node
            ))),
            _ => Err(Error::not_here(format!(
                "node `{}` does not own shard {shard}",
                self.node
            ))),
        }
    }

    /// Whether a call queued under `fence` may start: its shard is still owned (or draining)
    /// under that term, with the lease alive.
    ///
    /// # Errors
    ///
    /// [`Unavailable`](crate::ErrorKind::Unavailable) otherwise; the call did not run.
    pub(crate) fn may_start(&self, fence: Fence) -> Result<()> {
        if !self.is_live() {
            return Err(self.lapsed());
        }
        match self.standing(fence.shard) {
            Standing::Owned(f) | Standing::Draining(f) if f == fence => Ok(()),
            _ => Err(Error::not_here(format!(
                "node `{}` no longer owns shard {} under term {}",
                self.node, fence.shard, fence.term
            ))),
        }
    }

    /// Whether the object `id`'s shard is owned here (draining included) with the lease alive:
    /// its alarms fire here.
    pub(crate) fn owns(&self, id: &[u8; ID_BYTES]) -> bool {
        self.is_live() && self.standing(self.shard_of(id)) != Standing::Elsewhere
    }

    fn lapsed(&self) -> Error {
        Error::not_here(format!(
            "node `{}` lost its cluster lease (etcd unreachable, or the node was paused); it \
             starts no call until it has a new one",
            self.node
        ))
    }

    /// Whether this node is taking `shard` (not owned yet), with the lease alive.
    pub(crate) fn is_claiming(&self, shard: u32) -> bool {
        self.is_live() && self.terms[shard as usize].load(Ordering::Acquire) == CLAIMING
    }

    /// Marks `shard` as being taken by this node, if it holds nothing of it.
    pub(crate) fn set_claiming(&self, shard: u32) {
        let _ = self.terms[shard as usize].compare_exchange(
            0,
            CLAIMING,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Ends a take of `shard` that did not make it owned (lost the race, or storage holds a
    /// newer term); its waiters are told.
    pub(crate) fn end_claiming(&self, shard: u32) {
        if self.terms[shard as usize]
            .compare_exchange(CLAIMING, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.changed();
        }
    }

    /// Waits while this node is taking `shard`, until `until`: a call that a peer routed here
    /// on a view that already shows the new owner key then runs as soon as the claim is done,
    /// instead of being refused and retried after a delay. Returns at once otherwise.
    pub(crate) async fn wait_claimed(&self, shard: u32, until: tokio::time::Instant) {
        let mut changes = self.watch();
        while self.is_claiming(shard) {
            match tokio::time::timeout_at(until, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
    }

    /// Records `shard` as owned under `term` (claimed in storage).
    pub(crate) fn set_owned(&self, shard: u32, term: u64) {
        debug_assert!(term != 0 && term & !TERM == 0);
        self.terms[shard as usize].store(term, Ordering::Release);
        self.changed();
    }

    /// Marks `shard` as draining, if it is owned; returns its fence.
    pub(crate) fn set_draining(&self, shard: u32) -> Option<Fence> {
        let word = &self.terms[shard as usize];
        let old = word.fetch_or(DRAINING, Ordering::AcqRel);
        let term = old & TERM;
        if term == 0 {
            // Nothing owned: the word goes back as it was (claiming or empty).
            word.store(old, Ordering::Release);
            return None;
        }
        self.changed();
        Some(Fence { shard, term })
    }

    /// Forgets `shard` (a take in progress too); returns whether it was owned (or draining)
    /// here.
    pub(crate) fn clear(&self, shard: u32) -> bool {
        let old = self.terms[shard as usize].swap(0, Ordering::AcqRel);
        let was = old & TERM != 0;
        if old != 0 {
            self.changed();
        }
        was
    }

    /// The shards owned or draining here, with their fences.
    pub(crate) fn held(&self) -> Vec<Fence> {
        (0..self.shards())
            .filter_map(|shard| match self.standing(shard) {
                Standing::Owned(f) | Standing::Draining(f) => Some(f),
                Standing::Elsewhere => None,
            })
            .collect()
    }

    /// Changes on every change of the table.
    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Tells the watchers the table changed (also when the lease lapsed or came back).
    pub(crate) fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    struct TestLease(AtomicBool);

    impl Lease for TestLease {
        fn is_live(&self) -> bool {
            self.0.load(Ordering::Relaxed)
        }
    }

    fn table() -> (Ownership, Arc<TestLease>) {
        let lease = Arc::new(TestLease(AtomicBool::new(true)));
        (Ownership::new("n1", 8, lease.clone()), lease)
    }

    fn id_in(shard: u32, shards: u32) -> [u8; ID_BYTES] {
        (0u8..=255)
            .map(|b| [b; ID_BYTES])
            .find(|id| shard_of(id, shards) == shard)
            .expect("some byte pattern lands in every shard of 8")
    }

    #[test]
    fn only_owned_shards_admit_calls_and_draining_ones_let_queued_calls_start() {
        let (own, _) = table();
        let id = id_in(3, 8);
        assert!(own.admit(&id).is_err(), "nothing owned yet");
        own.set_owned(3, 42);
        let fence = own.admit(&id).expect("owned");
        assert_eq!(fence, Fence { shard: 3, term: 42 });
        assert!(own.owns(&id));
        assert_eq!(own.set_draining(3), Some(fence));
        let err = own.admit(&id).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Unavailable);
        assert!(err.to_string().contains("handing shard 3 over"), "{err}");
        own.may_start(fence)
            .expect("queued calls finish while draining");
        assert!(
            own.may_start(Fence { shard: 3, term: 41 }).is_err(),
            "another term"
        );
        assert!(own.clear(3));
        assert!(own.may_start(fence).is_err());
        assert!(!own.owns(&id));
        assert_eq!(own.set_draining(3), None, "nothing to drain");
        assert_eq!(own.standing(3), Standing::Elsewhere);
    }

    #[test]
    fn a_lapsed_lease_stops_every_call_at_once() {
        let (own, lease) = table();
        let id = id_in(5, 8);
        own.set_owned(5, 7);
        let fence = own.admit(&id).unwrap();
        lease.0.store(false, Ordering::Relaxed);
        let err = own.admit(&id).unwrap_err();
        assert!(err.to_string().contains("lost its cluster lease"), "{err}");
        assert!(own.may_start(fence).is_err());
        assert!(!own.owns(&id));
        assert!(err.is_retryable());
    }

    #[test]
    fn every_change_is_announced() {
        let (own, _) = table();
        let mut watch = own.watch();
        own.set_owned(1, 9);
        assert!(watch.has_changed().unwrap());
        watch.mark_unchanged();
        own.set_draining(1);
        assert!(watch.has_changed().unwrap());
        watch.mark_unchanged();
        own.clear(1);
        assert!(watch.has_changed().unwrap());
        assert_eq!(own.held(), vec![]);
    }

    #[tokio::test]
    async fn a_call_waits_for_a_claim_in_progress_and_no_longer() {
        let (own, lease) = table();
        let own = Arc::new(own);
        let id = id_in(2, 8);
        let soon = || tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        own.set_claiming(2);
        assert!(own.is_claiming(2));
        assert_eq!(
            own.standing(2),
            Standing::Elsewhere,
            "not owned while claiming"
        );
        assert!(own.admit(&id).is_err());
        assert_eq!(own.held(), vec![]);
        assert_eq!(own.set_draining(2), None);
        assert!(own.is_claiming(2), "a drain leaves a take alone");

        // The claim completes: the waiter goes on, and the call is admitted.
        let waiter = tokio::spawn({
            let own = own.clone();
            async move { own.wait_claimed(2, soon()).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        own.set_owned(2, 11);
        waiter.await.unwrap();
        assert_eq!(own.admit(&id).unwrap(), Fence { shard: 2, term: 11 });
        own.set_claiming(2);
        assert_eq!(
            own.standing(2),
            Standing::Owned(Fence { shard: 2, term: 11 })
        );

        // A take that fails ends the wait too; so does a lapse of the lease.
        own.set_claiming(4);
        let waiter = tokio::spawn({
            let own = own.clone();
            async move { own.wait_claimed(4, soon()).await }
        });
        tokio::task::yield_now().await;
        own.end_claiming(4);
        waiter.await.unwrap();
        assert!(!own.is_claiming(4));
        own.set_claiming(4);
        lease.0.store(false, Ordering::Relaxed);
        assert!(!own.is_claiming(4));
        own.wait_claimed(4, soon()).await;
        lease.0.store(true, Ordering::Relaxed);

        // No claim ends: the wait ends at its deadline.
        let started = std::time::Instant::now();
        own.wait_claimed(
            4,
            tokio::time::Instant::now() + std::time::Duration::from_millis(50),
        )
        .await;
        assert!(started.elapsed() >= std::time::Duration::from_millis(50));
        assert!(!own.clear(4), "a take is not an owned shard");
        assert!(!own.is_claiming(4));
    }
}
