//! The balancer: the task that carries out placement on this node.
//!
//! Each round it reads the latest view of the cluster and
//! 1. reconciles the node's table with it: a shard this node holds but the view shows
//!    elsewhere (or unowned, its key gone with a lapsed lease) is dropped at once; an owner
//!    key of this node that this lease generation did not take (left by a lapsed lease) is
//!    deleted, to be taken again under a new term;
//! 2. asks [`plan`] what to take and what to release;
//! 3. takes: creates the owner key (its create revision is the term), records the term in
//!    storage ([`Backend::claim_shard`], which waits for commits under older terms), and only
//!    then marks the shard owned, so that every object activated here commits under a term
//!    storage knows;
//! 4. releases, cleanly: the shard drains (no new call is delivered; the queued ones run),
//!    its objects leave once their last writes are durable, then its key is deleted and
//!    another node takes it.
//!
//! Rounds run on every change of the view, of the lease generation or of the lease's
//! liveness (checked every tick). A lapsed lease drops every shard and object at once (the
//! calls already stopped: the table's checks consult the lease directly).
//!
//! Leaving (clean shutdown) releases every shard the same way, then leaves the membership.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::sync::{mpsc, oneshot, watch};

use super::fence::{Lease, Ownership, Standing};
use super::placement::plan;
use super::View;
use crate::error::Result;
use crate::storage::{Backend, Fence, ObjectStore};

/// A boxed future of the coordinator's operations.
pub(crate) type Op<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// What the balancer needs of the coordination service (etcd: `membership.rs`), beside the
/// lease it keeps ([`Lease::is_live`]).
pub(crate) trait Coordinator: Lease + 'static {
    /// This node's ID.
    fn node_id(&self) -> &str;
    /// The latest view of the cluster.
    fn view(&self) -> watch::Receiver<Arc<View>>;
    /// The lease generation: changes when the lease was lost and a new one granted.
    fn generation(&self) -> watch::Receiver<u64>;
    /// Creates `shard`'s owner key for this node if it has none: its term, or `None`.
    fn take(&self, shard: u32) -> Op<'_, Option<u64>>;
    /// Deletes `shard`'s owner key if it is this node's under `term`.
    fn release(&self, shard: u32, term: u64) -> Op<'_, bool>;
    /// Leaves the cluster (every key of the lease goes).
    fn leave(&self) -> Op<'_, ()>;
}

/// The objects of the runtime, as the balancer lets go of them.
pub(crate) trait Objects: Send + Sync {
    /// Lets go of the live objects of the shards `lost` picks; returns their stores (see
    /// `NamespaceCore::drop_objects`).
    fn drop_objects(&self, lost: &dyn Fn(u32) -> bool) -> Vec<Arc<ObjectStore>>;
}

/// The balancer's settings and parts.
pub(crate) struct Balancer {
    pub(crate) coordinator: Arc<dyn Coordinator>,
    pub(crate) ownership: Arc<Ownership>,
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) objects: Weak<dyn Objects>,
    /// How long a drain waits for a shard's objects to finish.
    pub(crate) drain_timeout: Duration,
    /// How often the lease's liveness is checked between changes.
    pub(crate) tick: Duration,
    /// When claims last failed with a warning: a storage outage is reported every
    /// [`CLAIM_WARNING_INTERVAL`], not at every round.
    pub(crate) claim_warned: std::sync::Mutex<Option<Instant>>,
}

/// How often failing claims are reported while they keep failing.
const CLAIM_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Tells a running balancer to hand every shard over and leave. Dropping it stops the
/// balancer too: it drops its shards and leaves at once (the runtime was dropped).
pub(crate) struct LeaveHandle {
    requests: mpsc::Sender<oneshot::Sender<()>>,
}

impl LeaveHandle {
    /// Hands every shard over (queued calls finish first), then leaves the membership.
    pub(crate) async fn leave(&self) {
        let (done, finished) = oneshot::channel();
        if self.requests.send(done).await.is_ok() {
            let _ = finished.await;
        }
    }
}

impl Balancer {
    /// Starts the balancer on the current tokio runtime.
    pub(crate) fn start(self) -> LeaveHandle {
        let (requests, leaving) = mpsc::channel(1);
        tokio::spawn(self.run(leaving));
        LeaveHandle { requests }
    }

    async fn run(self, mut leaving: mpsc::Receiver<oneshot::Sender<()>>) {
        let mut view = self.coordinator.view();
        let mut generations = self.coordinator.generation();
        let mut generation = *generations.borrow_and_update();
        // The owner keys this generation created, by shard: their terms.
        let mut taken: HashMap<u32, u64> = HashMap::new();
        let mut was_live = true;
        loop {
            let live = self.coordinator.is_live();
            let now_generation = *generations.borrow_and_update();
            // Once per lapse: nothing can be activated while the lease is not live.
            if (was_live && !live) || now_generation != generation {
                self.lose_all(&mut taken);
                generation = now_generation;
            }
            if live != was_live {
                // The table's answers changed with the lease: wake the waiters.
                self.ownership.changed();
                was_live = live;
            }
            if live {
                let snapshot = view.borrow_and_update().clone();
                self.round(&snapshot, &mut taken).await;
            }
            tokio::select! {
                Ok(()) = view.changed() => {}
                Ok(()) = generations.changed() => {}
                request = leaving.recv() => {
                    match request {
                        Some(done) => {
                            self.leave(&mut taken).await;
                            let _ = done.send(());
                        }
                        None => {
                            // The runtime is gone: no drain (its storage is closing).
                            self.lose_all(&mut taken);
                            let _ = self.coordinator.leave().await;
                        }
                    }
                    return;
                }
                () = tokio::time::sleep(self.tick) => {}
            }
        }
    }

    /// One round; see the module documentation.
    async fn round(&self, view: &View, taken: &mut HashMap<u32, u64>) {
        let me = self.coordinator.node_id().to_owned();
        // 1. Reconcile the table with the view.
        let mut stale_keys = Vec::new();
        for shard in 0..self.ownership.shards() {
            let in_view = view.owners.get(&shard);
            let mine_in_view = in_view.filter(|o| o.node == me).map(|o| o.term);
            match self.ownership.standing(shard) {
                Standing::Owned(fence) | Standing::Draining(fence) => {
                    // The view may not show a take of ours yet: only a view at or past the
                    // take's revision can say it is gone.
                    if mine_in_view != Some(fence.term) && view.revision >= fence.term as i64 {
                        tracing::warn!(
                            shard,
                            term = fence.term,
                            "lost a shard (its owner key is gone or another's)"
                        );
                        self.lose(shard);
                        taken.remove(&shard);
                    }
                }
                Standing::Elsewhere => {
                    if let Some(term) = mine_in_view {
                        match taken.get(&shard) {
                            // Taken, not yet claimed (a claim failed): claim again.
                            Some(&t) if t == term => {}
                            _ => stale_keys.push((shard, term)),
                        }
                    }
                }
            }
        }
        for (shard, term) in stale_keys {
            tracing::info!(
                shard,
                term,
                "deleting an owner key left by an earlier lease"
            );
            if let Err(e) = self.coordinator.release(shard, term).await {
                tracing::warn!(shard, error = %e, "cannot delete a stale owner key");
            }
        }
        // Claims that failed earlier.
        let unclaimed: Vec<(u32, u64)> = taken
            .iter()
            .filter(|(&s, _)| self.ownership.standing(s) == Standing::Elsewhere)
            .map(|(&s, &t)| (s, t))
            .collect();
        self.claim(&unclaimed, taken).await;
        // 2. Plan, against the view with this generation's takes in it.
        let nodes: Vec<&str> = view.nodes.keys().map(String::as_str).collect();
        let owners: Vec<Option<&str>> = (0..self.ownership.shards())
            .map(|shard| {
                if taken.contains_key(&shard) {
                    Some(me.as_str())
                } else {
                    view.owners.get(&shard).map(|o| o.node.as_str())
                }
            })
            .collect();
        let assignment = plan(&me, &nodes, &owners);
        // 3. Take.
        if !assignment.take.is_empty() {
            for &shard in &assignment.take {
                self.ownership.set_claiming(shard);
            }
            let results = join_all(
                assignment
                    .take
                    .iter()
                    .map(|&shard| self.coordinator.take(shard)),
            )
            .await;
            let mut won = Vec::new();
            for (&shard, result) in assignment.take.iter().zip(results) {
                match result {
                    Ok(Some(term)) => {
                        taken.insert(shard, term);
                        won.push((shard, term));
                    }
                    Ok(None) => self.ownership.end_claiming(shard),
                    Err(e) => {
                        self.ownership.end_claiming(shard);
                        tracing::warn!(shard, error = %e, "cannot take a shard");
                    }
                }
            }
            self.claim(&won, taken).await;
        }
        // 4. Release.
        if !assignment.release.is_empty() {
            self.hand_over(&assignment.release, taken).await;
        }
    }

    /// Records the terms of shards just taken in storage, then marks them owned. A failed
    /// claim leaves the shard taken but not owned; the next round tries again, unless storage
    /// holds a newer term (then the key is stale: deleted).
    async fn claim(&self, shards: &[(u32, u64)], taken: &mut HashMap<u32, u64>) {
        if shards.is_empty() {
            return;
        }
        let claims = shards.iter().map(|&(shard, term)| {
            let backend = self.backend.clone();
            async move {
                let fence = Fence { shard, term };
                let claimed = tokio::task::spawn_blocking(move || backend.claim_shard(fence))
                    .await
                    .unwrap_or_else(|e| {
                        Err(crate::error::Error::internal(format!(
                            "a claim failed to run: {e}"
                        )))
                    });
                (fence, claimed)
            }
        });
        let mut failed = Vec::new();
        for (fence, claimed) in join_all(claims).await {
            match claimed {
                Ok(()) => {
                    if self.coordinator.is_live() {
                        self.ownership.set_owned(fence.shard, fence.term);
                        tracing::debug!(shard = fence.shard, term = fence.term, "took a shard");
                    }
                }
                Err(e) if e.to_string().contains("is recorded") => {
                    tracing::warn!(shard = fence.shard, error = %e, "a newer term is recorded; giving the shard up");
                    taken.remove(&fence.shard);
                    self.ownership.end_claiming(fence.shard);
                    let _ = self.coordinator.release(fence.shard, fence.term).await;
                }
                Err(e) => failed.push((fence.shard, e)),
            }
        }
        self.report_failed_claims(failed);
    }

    /// One warning for the claims of a round that failed, at most every
    /// [`CLAIM_WARNING_INTERVAL`] while they go on failing.
    fn report_failed_claims(&self, failed: Vec<(u32, crate::error::Error)>) {
        let mut warned = self
            .claim_warned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some((shard, error)) = failed.first() else {
            *warned = None;
            return;
        };
        if warned.is_some_and(|at| at.elapsed() < CLAIM_WARNING_INTERVAL) {
            return;
        }
        *warned = Some(Instant::now());
        tracing::warn!(
            shards = failed.len(),
            first = shard,
            error = %error,
            "cannot claim shards in storage; retrying every round (reported every {}s while it lasts)",
            CLAIM_WARNING_INTERVAL.as_secs()
        );
    }

    /// Drains `shards` and deletes their owner keys: queued calls finish and their writes
    /// are durable before another node can take them.
    async fn hand_over(&self, shards: &[u32], taken: &mut HashMap<u32, u64>) {
        let mut draining = Vec::new();
        for &shard in shards {
            match self.ownership.set_draining(shard) {
                Some(fence) => draining.push(fence),
                None => {
                    // Taken but never claimed: nothing ran under it.
                    self.ownership.end_claiming(shard);
                    if let Some(term) = taken.remove(&shard) {
                        let _ = self.coordinator.release(shard, term).await;
                    }
                }
            }
        }
        if draining.is_empty() {
            return;
        }
        let stores = match self.objects.upgrade() {
            Some(objects) => {
                objects.drop_objects(&|s| draining.iter().any(|fence| fence.shard == s))
            }
            None => Vec::new(),
        };
        wait_released(stores, self.drain_timeout).await;
        for fence in &draining {
            self.ownership.clear(fence.shard);
        }
        let releases = draining
            .iter()
            .map(|fence| self.coordinator.release(fence.shard, fence.term));
        for (fence, released) in draining.iter().zip(join_all(releases).await) {
            taken.remove(&fence.shard);
            if let Err(e) = released {
                tracing::warn!(shard = fence.shard, error = %e, "cannot release a shard; it goes with the lease");
            }
        }
    }

    /// Drops `shard` and its objects at once (lost to another node).
    fn lose(&self, shard: u32) {
        if self.ownership.clear(shard) {
            if let Some(objects) = self.objects.upgrade() {
                objects.drop_objects(&|s| s == shard);
            }
        }
    }

    /// Drops every shard and object at once (the lease lapsed).
    fn lose_all(&self, taken: &mut HashMap<u32, u64>) {
        let held = self.ownership.held();
        if !held.is_empty() {
            tracing::warn!(
                shards = held.len(),
                "the cluster lease lapsed: dropping every shard and object"
            );
        }
        // Takes in progress too.
        for shard in 0..self.ownership.shards() {
            self.ownership.clear(shard);
        }
        if let Some(objects) = self.objects.upgrade() {
            objects.drop_objects(&|_| true);
        }
        taken.clear();
    }

    /// Hands every shard over, then leaves the membership.
    async fn leave(&self, taken: &mut HashMap<u32, u64>) {
        let mut shards: Vec<u32> = self.ownership.held().iter().map(|f| f.shard).collect();
        shards.extend(taken.keys().copied());
        shards.sort_unstable();
        shards.dedup();
        self.hand_over(&shards, taken).await;
        if let Err(e) = self.coordinator.leave().await {
            tracing::warn!(error = %e, "leaving the cluster failed; the lease will expire");
        }
    }
}

/// Waits until the balancer holds the only reference to each store (its actor exited and
/// its last commit is done), or `timeout`.
async fn wait_released(stores: Vec<Arc<ObjectStore>>, timeout: Duration) {
    let until = Instant::now() + timeout;
    let mut delay = Duration::from_millis(1);
    while stores.iter().any(|s| Arc::strong_count(s) > 1) {
        if Instant::now() >= until {
            tracing::warn!(
                objects = stores.iter().filter(|s| Arc::strong_count(s) > 1).count(),
                "objects still busy at the end of a drain; handing their shards over anyway \
                 (their late commits will be refused by the fence)"
            );
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}
