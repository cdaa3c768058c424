//! [`FaultyBackend`]: a [`Backend`] wrapper that fails chosen operations, and keeps what was
//! durably synced apart from what was only applied.
//!
//! Faults are armed per operation ([`Fault`]): the next `n` calls fail
//! ([`FaultyBackend::fail_next`]), every call fails until cleared
//! ([`FaultyBackend::fail_always`]), or only reads of keys containing given bytes fail
//! ([`FaultyBackend::fail_reads_of`], e.g. one object's ID). A failed `apply` changes nothing;
//! a failed `sync` leaves what was applied since the last good sync applied but not durable.
//! [`FaultyBackend::durable_get`] reads the state as of the last good sync, so a test can
//! check that a reply never leaves before its writes are durable.
//!
//! [`FaultyBackend::inject`] writes raw bytes under any key, past the runtime (for decoders
//! fed garbage, `fuzz_decoders.rs`).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use durable_runtime::{
    Backend, Durability, Error, MemoryBackend, ObjectId, Result, ScanIter, Write,
};

/// An operation of the [`Backend`] trait that can be made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// `apply` fails, writing nothing.
    Apply,
    /// `sync` fails; what was applied stays applied but not durable.
    Sync,
    /// `get` fails.
    Get,
    /// `scan` fails when called.
    Scan,
    /// `scan` succeeds but its iterator yields an error after its first entry.
    ScanItem,
}

#[derive(Default)]
struct Armed {
    /// How many of the next calls fail.
    next: BTreeMap<Fault, u64>,
    /// Faults that fail every call.
    always: Vec<Fault>,
    /// Reads (get and scan) of keys containing any of these byte strings fail.
    poisoned: Vec<Vec<u8>>,
    /// Writes applied since the last good sync, oldest first.
    unsynced: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// The state as of the last good sync.
    durable: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// A fault-injecting [`Backend`] over another one (by default a [`MemoryBackend`]).
pub struct FaultyBackend {
    inner: Arc<dyn Backend>,
    armed: Mutex<Armed>,
    injected: AtomicU64,
    applies: AtomicU64,
    syncs: AtomicU64,
}

impl FaultyBackend {
    /// Over a fresh [`MemoryBackend`].
    pub fn memory() -> Arc<FaultyBackend> {
        Self::over(Arc::new(MemoryBackend::new()))
    }

    /// Over `inner`.
    pub fn over(inner: Arc<dyn Backend>) -> Arc<FaultyBackend> {
        Arc::new(FaultyBackend {
            inner,
            armed: Mutex::new(Armed::default()),
            injected: AtomicU64::new(0),
            applies: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
        })
    }

    fn armed(&self) -> MutexGuard<'_, Armed> {
        self.armed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next `n` calls of `fault`'s operation fail.
    pub fn fail_next(&self, fault: Fault, n: u64) {
        *self.armed().next.entry(fault).or_default() += n;
    }

    /// Every call of `fault`'s operation fails (`on`), or no longer does.
    pub fn fail_always(&self, fault: Fault, on: bool) {
        let mut armed = self.armed();
        armed.always.retain(|f| *f != fault);
        if on {
            armed.always.push(fault);
        }
    }

    /// Reads of keys containing `needle` fail (e.g. `object_id.as_bytes()`).
    pub fn fail_reads_of(&self, needle: &[u8]) {
        self.armed().poisoned.push(needle.to_vec());
    }

    /// Clears every armed fault.
    pub fn clear(&self) {
        let mut armed = self.armed();
        armed.next.clear();
        armed.always.clear();
        armed.poisoned.clear();
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    /// Successful applies and syncs so far.
    pub fn applies(&self) -> u64 {
        self.applies.load(Ordering::SeqCst)
    }

    /// Successful syncs so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }

    /// The value of `key` as of the last successful sync.
    pub fn durable_get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.armed().durable.get(key).cloned()
    }

    /// Writes raw bytes under a full backend key, past the runtime (and durably).
    pub fn inject(&self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        self.inner.apply(&[Write { key, value }])?;
        self.inner.sync(Durability::Fsync)
    }

    fn trip(&self, armed: &mut Armed, fault: Fault) -> bool {
        let hit = armed.always.contains(&fault)
            || match armed.next.get_mut(&fault) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            };
        if hit {
            self.injected.fetch_add(1, Ordering::SeqCst);
        }
        hit
    }

    fn poisoned(&self, armed: &Armed, key: &[u8]) -> bool {
        let hit = armed
            .poisoned
            .iter()
            .any(|n| key.windows(n.len().max(1)).any(|w| w == n.as_slice()));
        if hit {
            self.injected.fetch_add(1, Ordering::SeqCst);
        }
        hit
    }
}

fn injected(what: &str) -> Error {
    Error::storage(format!("injected {what} failure"))
}

/// The full backend key of `user_key` in `id`'s data (`DATA ‖ id ‖ key`, see
/// `durable-runtime/src/storage/keys.rs`).
pub fn data_key(id: &ObjectId, user_key: &[u8]) -> Vec<u8> {
    let mut key = vec![0x01];
    key.extend_from_slice(id.as_bytes());
    key.extend_from_slice(user_key);
    key
}

fn bound_bytes<'a>(b: &Bound<&'a [u8]>) -> Option<&'a [u8]> {
    match b {
        Bound::Included(k) | Bound::Excluded(k) => Some(k),
        Bound::Unbounded => None,
    }
}

impl Backend for FaultyBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        {
            let mut armed = self.armed();
            if self.trip(&mut armed, Fault::Get) || self.poisoned(&armed, key) {
                return Err(injected("get"));
            }
        }
        self.inner.get(key)
    }

    fn scan(&self, start: Bound<&[u8]>, end: Bound<&[u8]>, reverse: bool) -> Result<ScanIter<'_>> {
        let item_fault = {
            let mut armed = self.armed();
            let poisoned = [bound_bytes(&start), bound_bytes(&end)]
                .into_iter()
                .flatten()
                .any(|k| self.poisoned(&armed, k));
            if poisoned || self.trip(&mut armed, Fault::Scan) {
                return Err(injected("scan"));
            }
            self.trip(&mut armed, Fault::ScanItem)
        };
        let iter = self.inner.scan(start, end, reverse)?;
        if !item_fault {
            return Ok(iter);
        }
        let mut first = true;
        Ok(Box::new(iter.map(move |entry| {
            if std::mem::take(&mut first) {
                entry
            } else {
                Err(injected("scan item"))
            }
        })))
    }

    fn apply(&self, batch: &[Write<'_>]) -> Result<()> {
        let mut armed = self.armed();
        if self.trip(&mut armed, Fault::Apply) {
            return Err(injected("apply"));
        }
        self.inner.apply(batch)?;
        armed.unsynced.extend(
            batch
                .iter()
                .map(|w| (w.key.to_vec(), w.value.map(<[u8]>::to_vec))),
        );
        self.applies.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn sync(&self, durability: Durability) -> Result<()> {
        let mut armed = self.armed();
        if self.trip(&mut armed, Fault::Sync) {
            return Err(injected("sync"));
        }
        self.inner.sync(durability)?;
        for (key, value) in std::mem::take(&mut armed.unsynced) {
            match value {
                Some(v) => armed.durable.insert(key, v),
                None => armed.durable.remove(&key),
            };
        }
        self.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn close(&self) -> Result<()> {
        self.inner.close()
    }
}
