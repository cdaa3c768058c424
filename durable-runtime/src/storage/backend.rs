//! The backend trait: the byte-level store under every object's [`Storage`](crate::Storage).

use std::ops::Bound;

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

/// A key/value pair read from a backend.
pub type Entry = (Vec<u8>, Vec<u8>);

/// An ordered scan over a backend.
pub type ScanIter<'a> = Box<dyn Iterator<Item = Result<Entry>> + Send + 'a>;

/// A byte-level ordered key/value store with atomic batches and an explicit sync.
///
/// The runtime calls [`apply`](Backend::apply) and [`sync`](Backend::sync) from one commit
/// thread only; reads come from any thread. A backend must make an applied batch visible to
/// reads at once, and durable (at the asked [`Durability`]) once `sync` returns `Ok`.
///
/// Two backends ship: [`FjallBackend`](crate::FjallBackend) (the default for
/// `Runtime::builder().data_dir(..)`) and [`MemoryBackend`](crate::MemoryBackend). Tests wrap
/// them to hold or fail syncs.
pub trait Backend: Send + Sync + 'static {
    /// Reads one key.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Scans the keys in `(start, end)` in ascending order, or descending if `reverse`.
    fn scan(&self, start: Bound<&[u8]>, end: Bound<&[u8]>, reverse: bool) -> Result<ScanIter<'_>>;

    /// Applies a batch atomically: after a crash, either every write of it is there or none.
    /// Keys in one batch are distinct.
    fn apply(&self, batch: &[Write<'_>]) -> Result<()>;

    /// Makes every batch applied so far durable at the given level.
    fn sync(&self, durability: Durability) -> Result<()>;

    /// Makes everything durable and releases the store (files, locks). Later calls may fail.
    /// Also the place to shorten recovery for the next open (flush memtables).
    fn close(&self) -> Result<()> {
        self.sync(Durability::Fsync)
    }
}
