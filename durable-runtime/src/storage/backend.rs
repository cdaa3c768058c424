//! The backend trait: the byte-level store under every object's [`Storage`](crate::Storage).

use std::future::Future;
use std::ops::Bound;
use std::pin::Pin;

use crate::error::Result;

/// How far a write must have gone before its reply is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `fdatasync` the journal: an acknowledged write survives power loss. The default.
    #[default]
    Fsync,
    /// Hand the journal to the operating system: an acknowledged write survives a crash of the
    /// process, not of the machine. Much faster on disks with slow flushes.
    Buffered,
}

/// One write of an atomic batch: `Some(value)` stores, `None` deletes.
#[derive(Debug, Clone, Copy)]
pub struct Write<'a> {
    /// The full key (object prefix and user key).
    pub key: &'a [u8],
    /// The value to store, or `None` to delete the key.
    pub value: Option<&'a [u8]>,
}

/// One range of [`Backend::scan_each`]: the first `limit` entries of `[start, end)`, in
/// ascending order (`end` `None`: to the end).
#[derive(Debug, Clone, Copy)]
pub struct RangeRead<'a> {
    /// The first key of the range (included).
    pub start: &'a [u8],
    /// The key after the range (excluded), or `None` for no end.
    pub end: Option<&'a [u8]>,
    /// At most this many entries.
    pub limit: usize,
}

/// A shard's fencing term, carried by a commit in cluster mode: the commit lands only if the
/// backend still records this term for the shard (see [`Backend::commit_fenced`]). A node
/// that took a shard over recorded a newer term first ([`Backend::claim_shard`]), so a
/// commit of the old owner, paused or partitioned, is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fence {
    /// The shard the committing objects belong to.
    pub shard: u32,
    /// The term under which the committing node owns it (larger is newer).
    pub term: u64,
}

/// What [`Backend::scan_each_async`] returns: each range's entries.
pub type ScanEachFuture = Pin<Box<dyn Future<Output = Result<Vec<Vec<Entry>>>> + Send>>;

/// A key/value pair read from a backend.
pub type Entry = (Vec<u8>, Vec<u8>);

/// An ordered scan over a backend.
pub type ScanIter<'a> = Box<dyn Iterator<Item = Result<Entry>> + Send + 'a>;

/// A byte-level ordered key/value store with atomic batches and an explicit sync.
///
/// The runtime writes through [`commit`](Backend::commit) (by default
/// [`apply`](Backend::apply) then [`sync`](Backend::sync)) from one commit thread only; reads
/// come from any thread. A backend must make a committed batch visible to reads, and durable
/// (at the asked [`Durability`]), once `commit` returns `Ok`. The runtime reads an object's
/// keys from the backend only after the batches that wrote them were committed.
///
/// Three backends ship: [`FjallBackend`](crate::FjallBackend) (the default for
/// `Runtime::builder().data_dir(..)`), [`MemoryBackend`](crate::MemoryBackend) and, with the
/// `postgres` feature, `PostgresBackend`. Tests wrap them to hold or fail syncs.
pub trait Backend: Send + Sync + 'static {
    /// Reads one key.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Scans the keys in `(start, end)` in ascending order, or descending if `reverse`.
    fn scan(&self, start: Bound<&[u8]>, end: Bound<&[u8]>, reverse: bool) -> Result<ScanIter<'_>>;

    /// Applies a batch atomically: after a crash, either every write of it is there or none.
    /// Keys in one batch are distinct and never empty.
    fn apply(&self, batch: &[Write<'_>]) -> Result<()>;

    /// Makes every batch applied so far durable at the given level.
    fn sync(&self, durability: Durability) -> Result<()>;

    /// Applies a batch atomically and makes it, and every batch before it, durable: one commit
    /// round of the runtime. `batch` may be empty (then only the sync is asked for). The
    /// default is [`apply`](Backend::apply) then [`sync`](Backend::sync); a backend with
    /// transactions does both in one.
    ///
    /// # Errors
    ///
    /// Whatever `apply` or `sync` return. On an error the batch may or may not have been
    /// stored; the runtime fails every reply that waited for it and reloads the objects it
    /// touched from the backend.
    fn commit(&self, batch: &[Write<'_>], durability: Durability) -> Result<()> {
        if !batch.is_empty() {
            self.apply(batch)?;
        }
        self.sync(durability)
    }

    /// [`commit`](Backend::commit), if and only if the backend records exactly these terms
    /// for these shards, checked in the same transaction as the writes (fencing at the
    /// resource). With no fences, a plain commit.
    ///
    /// # Errors
    ///
    /// [`Storage`](crate::ErrorKind::Storage) naming the shard when a term is stale (nothing
    /// of the batch is stored); [`Config`](crate::ErrorKind::Config) from a backend that
    /// cannot fence (the default, for local stores: cluster mode needs shared storage);
    /// whatever `commit` returns.
    fn commit_fenced(
        &self,
        batch: &[Write<'_>],
        durability: Durability,
        fences: &[Fence],
    ) -> Result<()> {
        if fences.is_empty() {
            return self.commit(batch, durability);
        }
        Err(crate::error::Error::config(
            "this storage backend cannot fence commits: cluster mode needs storage every node \
             shares (PostgreSQL)",
        ))
    }

    /// Records `fence.term` as the shard's term, if it is at least the one recorded: from
    /// then on only commits with this term land for the shard. Waits for commits under the
    /// older term that are under way. Claiming the recorded term again succeeds (a claim
    /// whose answer was lost may be retried).
    ///
    /// # Errors
    ///
    /// [`Storage`](crate::ErrorKind::Storage) if the backend records a newer term (another
    /// node claimed the shard since); [`Config`](crate::ErrorKind::Config) from a backend that
    /// cannot fence (the default).
    fn claim_shard(&self, fence: Fence) -> Result<()> {
        let _ = fence;
        Err(crate::error::Error::config(
            "this storage backend cannot fence commits: cluster mode needs storage every node \
             shares (PostgreSQL)",
        ))
    }

    /// `Some(bytes)` when a read may wait on a network (a database server): the runtime then
    /// keeps each active object's stored state in memory (the storage cache), loaded at
    /// activation off the async threads if its data is at most `bytes`, or else filled by
    /// the reads it makes, and makes its other reads (the alarm index, object listings) on
    /// blocking threads. `None` (the default) for local stores, read in place.
    fn object_cache_bytes(&self) -> Option<usize> {
        None
    }

    /// Reads several ranges at once: for each [`RangeRead`], the first `limit` entries of
    /// `[start, end)` in ascending order. The default
    /// scans them one after the other; a backend on a network sends them together (an
    /// object's activation reads its data, its schedules and its name this way).
    ///
    /// # Errors
    ///
    /// A failed read.
    fn scan_each(&self, ranges: &[RangeRead<'_>]) -> Result<Vec<Vec<Entry>>> {
        ranges
            .iter()
            .map(|range| {
                let upper = range.end.map_or(Bound::Unbounded, Bound::Excluded);
                self.scan(Bound::Included(range.start), upper, false)?
                    .take(range.limit)
                    .collect()
            })
            .collect()
    }

    /// [`scan_each`](Backend::scan_each) as a future, for a backend whose reads cross a
    /// network: the runtime awaits it on its async threads where it would otherwise block a
    /// thread on `scan_each` (an object's activation). `None`, the default: the runtime
    /// calls `scan_each` on a blocking thread.
    ///
    /// Dropping the future abandons the read.
    fn scan_each_async(&self, ranges: &[RangeRead<'_>]) -> Option<ScanEachFuture> {
        let _ = ranges;
        None
    }

    /// The distinct first `len` bytes of the keys in `[start, end)` (`end` `None`: to the
    /// end), in ascending order: the objects of a class, for example. The default seeks from
    /// prefix to prefix with [`scan`](Backend::scan).
    ///
    /// # Errors
    ///
    /// A failed read.
    fn key_prefixes(&self, start: &[u8], end: Option<&[u8]>, len: usize) -> Result<Vec<Vec<u8>>> {
        let mut found = Vec::new();
        let mut from = start.to_vec();
        loop {
            let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
            let Some(entry) = self.scan(Bound::Included(&from), upper, false)?.next() else {
                break;
            };
            let (key, _) = entry?;
            let Some(prefix) = key.get(..len) else {
                // A key shorter than a prefix: skip it.
                from = key;
                from.push(0);
                continue;
            };
            found.push(prefix.to_vec());
            match super::keys::prefix_successor(prefix) {
                Some(next) => from = next,
                None => break,
            }
        }
        Ok(found)
    }

    /// Makes everything durable and releases the store (files, locks). Later calls may fail.
    /// Also the place to shorten recovery for the next open (flush memtables).
    fn close(&self) -> Result<()> {
        self.sync(Durability::Fsync)
    }
}
