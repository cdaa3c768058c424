//! The read layers and write buffer of one object: [`ObjectStore`].
//!
//! A running call's writes collect here (the write buffer) until the call returns and they
//! are taken as one [`Batch`]. That batch then stays here ("in flight") until the commit
//! thread has applied it to the backend. Reads look newest first: the running call's
//! writes, the in-flight batches (newest first), then the backend. Guarantees:
//! - a call reads its own writes, and every earlier write of its object, durable or not;
//! - a batch leaves memory only after the backend has it, so no read falls in a gap;
//! - `delete_all` hides every older layer until the call's writes are taken, when it
//!   becomes deletes of every key visible then;
//! - writes of an incarnation whose batch failed are never read again: the object is reset
//!   to the backend (a new incarnation) before its next call.
//!
//! On a backend whose reads cross a network, a fourth layer sits above the backend: the
//! object's stored state, loaded at activation ([`Resident`], the storage cache). Applied
//! batches are folded into it as they leave the in-flight layer.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::keys::{self, prefix_successor, Id};
use super::resident::{Cached, LoadPlan, Resident};
use super::{Backend, Batch, Fence};
use crate::error::{Error, Result};
use crate::id::{ObjectId, ID_BYTES};

/// The storage state of one object, shared by its [`Storage`](super::Storage) handle and the
/// commit thread.
pub(crate) struct ObjectStore {
    id: Id,
    backend: Arc<dyn Backend>,
    /// The backend's reads cross a network: keep the object's stored state in memory
    /// ([`Resident`], loaded whole up to this many data bytes) and make the remaining backend
    /// reads where blocking is allowed.
    cache_bytes: Option<usize>,
    /// In cluster mode, the shard and term the object's commits carry (see `Fence`).
    fence: Option<Fence>,
    layers: Mutex<Layers>,
    /// Incarnations number the lives of the object's in-memory view. When a batch fails to
    /// reach the backend, its incarnation is marked failed: every later batch and reply of
    /// that incarnation was computed from the lost writes, so the commit thread drops those
    /// batches and fails those replies, and the object is reset (new incarnation) before its
    /// next call.
    incarnation: AtomicU64,
    /// The newest failed incarnation (0: none).
    failed_incarnation: AtomicU64,
    /// Every batch of this object up to this sequence number is in the backend (set by the
    /// commit thread; the in-flight layer drops them lazily, see [`ObjectStore::applied`]).
    applied_seq: AtomicU64,
    /// Envelopes the object's actor has taken, for the idle sweeper.
    activity: AtomicU64,
    /// `activity` when the sweeper last looked.
    swept: AtomicU64,
}

impl ObjectStore {
    pub(crate) fn new(id: &ObjectId, backend: Arc<dyn Backend>) -> ObjectStore {
        ObjectStore {
            id: *id.as_bytes(),
            cache_bytes: backend.object_cache_bytes(),
            fence: None,
            backend,
            layers: Mutex::new(Layers::default()),
            incarnation: AtomicU64::new(1),
            failed_incarnation: AtomicU64::new(0),
            applied_seq: AtomicU64::new(0),
            activity: AtomicU64::new(0),
            swept: AtomicU64::new(0),
        }
    }

    pub(super) fn layers(&self) -> MutexGuard<'_, Layers> {
        // A panic never happens while the lock is held (no user code runs under it), but if
        // one did the data is still consistent: take it back.
        self.layers.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn full_key(&self, key: &str) -> Vec<u8> {
        let mut full = Vec::with_capacity(1 + self.id.len() + key.len());
        full.push(keys::DATA);
        full.extend_from_slice(&self.id);
        full.extend_from_slice(key.as_bytes());
        full
    }

    /// Takes the running call's writes as a batch to commit, turning `delete_all` into
    /// deletes of every key visible now. `None` when the call wrote nothing. With `name`,
    /// the object's name is recorded too if the call wrote data (an object's name is stored
    /// with its first data); `*name` is then set to `None`.
    pub(crate) fn take_call_writes(&self, name: &mut Option<&str>) -> Result<Option<Batch>> {
        let call = {
            let mut layers = self.layers();
            self.drop_applied(&mut layers);
            let data = layers.call.cleared || !layers.call.writes.is_empty();
            if !data && layers.call.system.is_empty() {
                return Ok(None);
            }
            if data {
                if let Some(name) = name.take() {
                    layers
                        .call
                        .system
                        .insert(keys::name_key(&self.id), Some(name.as_bytes().to_vec()));
                }
            }
            let mut call = std::mem::take(&mut layers.call);
            if call.cleared {
                let visible =
                    self.visible_below_call(&layers, Bound::Unbounded, Bound::Unbounded)?;
                for key in visible {
                    call.writes.entry(key).or_insert(None);
                }
            }
            call
        };
        Ok(Some(Batch::pack(
            &keys::data_prefix(&self.id),
            call.writes.iter().map(|(k, v)| (k.as_str(), v.as_deref())),
            call.system
                .iter()
                .map(|(k, v)| (k.as_slice(), v.as_deref())),
            self.incarnation(),
        )))
    }

    /// Forgets the running call's writes (the call panicked or failed).
    pub(crate) fn discard_call_writes(&self) {
        self.layers().call = CallWrites::default();
    }

    /// Forgets everything held in memory (after a failed commit): the backend is the truth.
    pub(crate) fn reset(&self) {
        let mut layers = self.layers();
        *layers = Layers::default();
        let failed = self.failed_incarnation.load(Ordering::Acquire);
        self.incarnation.fetch_max(failed + 1, Ordering::AcqRel);
    }

    /// The object's commits carry `fence`: they land only while its shard's term is current.
    #[allow(dead_code)] // Set by cluster mode (next), tested through the commit path now.
    pub(crate) fn with_fence(mut self, fence: Fence) -> ObjectStore {
        self.fence = Some(fence);
        self
    }

    /// The fence the object's commits carry, if any.
    pub(crate) fn fence(&self) -> Option<Fence> {
        self.fence
    }

    /// Whether the object's stored state must be loaded ([`load`](Self::load)) before its
    /// next step: on a backend whose reads cross a network, at activation and after a reset.
    pub(crate) fn needs_load(&self) -> bool {
        self.cache_bytes.is_some() && self.layers().resident.is_none()
    }

    /// Loads the object's stored state into memory (the storage cache), without blocking an
    /// async thread: the backend's async first request if it has one (then a blocking thread
    /// only for an object larger than its first pages), else all of it on a blocking thread.
    pub(crate) async fn load(self: &Arc<Self>) -> Result<()> {
        let Some(max_bytes) = self.cache_bytes else {
            return Ok(());
        };
        if !self.needs_load() {
            return Ok(());
        }
        let plan = LoadPlan::new(&self.id, max_bytes);
        if let Some(first) = self.backend.scan_each_async(&plan.ranges()) {
            if let Some(resident) = Resident::from_pages(&plan, first.await?, None)? {
                self.install(resident);
                return Ok(());
            }
        }
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let resident = Resident::load(&*store.backend, &store.id, max_bytes)?;
            store.install(resident);
            Ok(())
        })
        .await
        .map_err(|e| Error::internal(format!("loading an object's storage failed to run: {e}")))?
    }

    fn install(&self, resident: Resident) {
        let mut layers = self.layers();
        // Nothing was submitted since the reset that emptied the cache: the actor loads
        // before its next step.
        if layers.resident.is_none() {
            layers.resident = Some(resident);
        }
    }

    /// Runs a backend read in place, or, on a backend whose reads cross a network, where it
    /// may block without stalling other tasks.
    fn blocking<R>(&self, read: impl FnOnce() -> R) -> R {
        if self.cache_bytes.is_some() {
            super::block_outside_async(read)
        } else {
            read()
        }
    }

    pub(crate) fn push_in_flight(&self, seq: u64, batch: Arc<Batch>) {
        self.layers().in_flight.push_back((seq, batch));
    }

    /// The commit thread applied every batch of this object up to `seq`, the last of them
    /// holding `bytes`: reads can go to the backend.
    ///
    /// Applied batches leave the in-flight layer when the object next reads or commits
    /// (`read`, [`take_call_writes`](Self::take_call_writes)), on its own thread: the commit
    /// thread only publishes `seq`, without taking the object's lock or freeing its memory.
    /// A batch larger than [`CACHED_BATCH_BYTES`] leaves at once, so that an object that
    /// goes quiet holds at most the small batches it submitted last.
    pub(crate) fn applied(&self, seq: u64, bytes: usize) {
        self.applied_seq.fetch_max(seq, Ordering::Release);
        if bytes > CACHED_BATCH_BYTES {
            self.drop_applied(&mut self.layers());
        }
    }

    /// Drops the applied batches from the in-flight layer, but the newest one if it is small
    /// ([`CACHED_BATCH_BYTES`]): that one stays as a read cache. An object mostly reads back
    /// what it wrote last, and a backend read costs far more than a lookup in a small batch
    /// (for fjall, a memtable search over every version of every object's keys). A kept
    /// batch holds the backend's values: only this object writes its keys, and batches leave
    /// the layer oldest first, so a kept batch is never older than one that left.
    ///
    /// With the storage cache ([`Resident`]), every applied batch leaves, folded into it.
    fn drop_applied(&self, layers: &mut Layers) {
        let applied = self.applied_seq.load(Ordering::Acquire);
        while let Some((seq, batch)) = layers.in_flight.front() {
            if *seq > applied {
                break;
            }
            if let Some(resident) = layers.resident.as_mut() {
                if let Err(e) = resident.absorb(batch, &self.id) {
                    // Unreachable (keys come from `&str`); forget the cache rather than
                    // serve it incomplete.
                    tracing::error!(error = %e, "dropping an object's storage cache");
                    layers.resident = None;
                }
                layers.in_flight.pop_front();
                continue;
            }
            let newer_applied = layers.in_flight.get(1).is_some_and(|(s, _)| *s <= applied);
            if !newer_applied && batch.bytes() <= CACHED_BATCH_BYTES {
                break;
            }
            layers.in_flight.pop_front();
        }
    }

    /// The actor took an envelope.
    pub(crate) fn touch(&self) {
        // Only the object's actor writes it: no read-modify-write needed.
        let seen = self.activity.load(Ordering::Relaxed);
        self.activity.store(seen.wrapping_add(1), Ordering::Relaxed);
    }

    pub(crate) fn activity(&self) -> u64 {
        self.activity.load(Ordering::Relaxed)
    }

    /// For the sweeper: `Some(activity)` if nothing happened since its last look.
    pub(crate) fn idle_since_last_sweep(&self) -> Option<u64> {
        let now = self.activity();
        (self.swept.swap(now, Ordering::Relaxed) == now).then_some(now)
    }

    /// The current incarnation: the one the running call's writes and reply belong to.
    pub(crate) fn incarnation(&self) -> u64 {
        self.incarnation.load(Ordering::Acquire)
    }

    /// A batch of `incarnation` failed to reach the backend.
    pub(crate) fn mark_failed(&self, incarnation: u64) {
        self.failed_incarnation
            .fetch_max(incarnation, Ordering::AcqRel);
    }

    /// Whether writes of `incarnation` were lost.
    pub(crate) fn incarnation_failed(&self, incarnation: u64) -> bool {
        self.failed_incarnation.load(Ordering::Acquire) >= incarnation
    }

    /// Whether the current incarnation failed: the object must be reset before its next call.
    pub(crate) fn has_failed(&self) -> bool {
        self.incarnation_failed(self.incarnation())
    }

    /// Keys visible in the in-flight layers and the backend (ignoring the running call).
    fn visible_below_call(
        &self,
        layers: &Layers,
        start: Bound<&str>,
        end: Bound<&str>,
    ) -> Result<Vec<String>> {
        let mut merged: BTreeMap<String, bool> = BTreeMap::new();
        let cached = layers
            .resident
            .as_ref()
            .and_then(|r| r.range(start, end, false, |_| true, usize::MAX));
        match cached {
            Some(entries) => merged.extend(entries.into_iter().map(|(k, _)| (k, true))),
            None => self.blocking(|| -> Result<()> {
                for entry in self.scan_backend(start, end, false)? {
                    let (key, _) = entry?;
                    merged.insert(key, true);
                }
                Ok(())
            })?,
        }
        for (_, batch) in &layers.in_flight {
            for (key, value) in batch.data() {
                merged.insert(utf8_key(key)?.to_owned(), value.is_some());
            }
        }
        Ok(merged
            .into_iter()
            .filter_map(|(k, present)| present.then_some(k))
            .collect())
    }

    pub(super) fn scan_backend<'a>(
        &'a self,
        start: Bound<&str>,
        end: Bound<&str>,
        reverse: bool,
    ) -> Result<impl Iterator<Item = Result<(String, Vec<u8>)>> + 'a> {
        let lower = match start {
            Bound::Included(k) => Bound::Included(self.full_key(k)),
            Bound::Excluded(k) => Bound::Excluded(self.full_key(k)),
            Bound::Unbounded => Bound::Included(keys::data_prefix(&self.id).to_vec()),
        };
        let upper = match end {
            Bound::Included(k) => Bound::Included(self.full_key(k)),
            Bound::Excluded(k) => Bound::Excluded(self.full_key(k)),
            Bound::Unbounded => match prefix_successor(&keys::data_prefix(&self.id)) {
                Some(s) => Bound::Excluded(s),
                None => Bound::Unbounded,
            },
        };
        let iter = self
            .backend
            .scan(as_slice_bound(&lower), as_slice_bound(&upper), reverse)?;
        let prefix_len = 1 + self.id.len();
        Ok(iter.map(move |entry| {
            let (key, value) = entry?;
            let user = key.get(prefix_len..).unwrap_or_default();
            let user = String::from_utf8(user.to_vec())
                .map_err(|e| Error::storage(format!("stored key is not UTF-8: {e}")))?;
            Ok((user, value))
        }))
    }

    /// The newest bytes of a system key: running call, then in flight, then backend.
    fn read_system(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        {
            let layers = self.layers();
            if let Some(value) = layers.call.system.get(key) {
                return Ok(value.clone());
            }
            for (_, batch) in layers.in_flight.iter().rev() {
                if let Some(value) = batch.get_system(key) {
                    return Ok(value.map(<[u8]>::to_vec));
                }
            }
            if let Some(resident) = &layers.resident {
                return Ok(resident.system(key).map(<[u8]>::to_vec));
            }
        }
        self.blocking(|| self.backend.get(key))
    }

    fn write_system(&self, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.layers().call.system.insert(key, value);
    }

    /// The name this object was first reached by, if any was recorded.
    pub(crate) fn stored_name(&self) -> Result<Option<String>> {
        match self.read_system(&keys::name_key(&self.id))? {
            Some(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|e| Error::storage(format!("stored object name is not UTF-8: {e}"))),
            None => Ok(None),
        }
    }

    pub(crate) fn schedule(&self, name: &str) -> Result<Option<u64>> {
        match self.read_system(&keys::alarm_key(&self.id, name))? {
            Some(bytes) => {
                let array: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
                    Error::storage(format!("stored alarm of schedule {name:?} is malformed"))
                })?;
                Ok(Some(u64::from_be_bytes(array)))
            }
            None => Ok(None),
        }
    }

    pub(crate) fn set_schedule(&self, name: &str, due_ms: Option<u64>) -> Result<()> {
        if let Some(old) = self.schedule(name)? {
            self.write_system(keys::due_key(&self.id, old, name), None);
        }
        let alarm = keys::alarm_key(&self.id, name);
        match due_ms {
            Some(ms) => {
                self.write_system(alarm, Some(ms.to_be_bytes().to_vec()));
                self.write_system(keys::due_key(&self.id, ms, name), Some(Vec::new()));
            }
            None => self.write_system(alarm, None),
        }
        Ok(())
    }

    /// Deletes everything of this object in the running call: data, schedules, name.
    pub(crate) fn erase_all(&self) -> Result<()> {
        for name in self.schedules()?.into_keys() {
            self.set_schedule(&name, None)?;
        }
        self.write_system(keys::name_key(&self.id), None);
        let mut layers = self.layers();
        layers.call.writes.clear();
        layers.call.cleared = true;
        Ok(())
    }

    /// Every schedule of this object, by name.
    pub(super) fn schedules(&self) -> Result<BTreeMap<String, u64>> {
        let prefix = keys::alarm_prefix(&self.id);
        let mut found: BTreeMap<String, Option<u64>> = BTreeMap::new();
        let upper = prefix_successor(&prefix);
        let end = upper.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let decode_entry = |key: &[u8], value: Option<&[u8]>| -> Result<(String, Option<u64>)> {
            let name = String::from_utf8(key[prefix.len()..].to_vec())
                .map_err(|e| Error::storage(format!("stored schedule name is not UTF-8: {e}")))?;
            let ms = match value {
                Some(v) => Some(u64::from_be_bytes(v.try_into().map_err(|_| {
                    Error::storage(format!("stored alarm of schedule {name:?} is malformed"))
                })?)),
                None => None,
            };
            Ok((name, ms))
        };
        let layers = self.layers();
        match &layers.resident {
            Some(resident) => {
                for (key, value) in resident.system_with_prefix(&prefix) {
                    let (name, ms) = decode_entry(key, Some(value))?;
                    found.insert(name, ms);
                }
            }
            None => {
                for entry in self.backend.scan(Bound::Included(&prefix), end, false)? {
                    let (key, value) = entry?;
                    let (name, ms) = decode_entry(&key, Some(&value))?;
                    found.insert(name, ms);
                }
            }
        }
        for (_, batch) in &layers.in_flight {
            for (key, value) in batch.system_with_prefix(&prefix) {
                let (name, ms) = decode_entry(key, value)?;
                found.insert(name, ms);
            }
        }
        for (key, value) in layers.call.system.range(prefix.clone()..) {
            if !key.starts_with(&prefix) {
                break;
            }
            let (name, ms) = decode_entry(key, value.as_deref())?;
            found.insert(name, ms);
        }
        Ok(found
            .into_iter()
            .filter_map(|(name, ms)| ms.map(|ms| (name, ms)))
            .collect())
    }

    /// The newest bytes of `key`: running call, then in flight, then backend.
    pub(super) fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        {
            let mut layers = self.layers();
            self.drop_applied(&mut layers);
            if let Some(value) = layers.call.writes.get(key) {
                return Ok(value.clone());
            }
            if layers.call.cleared {
                return Ok(None);
            }
            for (_, batch) in layers.in_flight.iter().rev() {
                if let Some(value) = batch.get(key) {
                    return Ok(value.map(<[u8]>::to_vec));
                }
            }
            if let Some(resident) = &layers.resident {
                if let Cached::Known(value) = resident.get(key) {
                    return Ok(value.map(<[u8]>::to_vec));
                }
            }
        }
        // Not in memory: in-flight batches leave memory only after the backend has them.
        let value = self.blocking(|| self.backend.get(&self.full_key(key)))?;
        if let Some(resident) = self.layers().resident.as_mut() {
            resident.remember(key, value.as_deref());
        }
        Ok(value)
    }

    /// The stored entries in a range from the storage cache, at most `max`; `None` when the
    /// object's stored state is not all in memory (read the backend).
    pub(super) fn cached_range(
        &self,
        layers: &Layers,
        lower: Bound<&str>,
        upper: Bound<&str>,
        reverse: bool,
        keep: impl Fn(&str) -> bool,
        max: usize,
    ) -> Option<Vec<(String, Vec<u8>)>> {
        layers
            .resident
            .as_ref()
            .and_then(|r| r.range(lower, upper, reverse, keep, max))
    }

    /// [`scan_backend`](Self::scan_backend)'s entries, collected where blocking is allowed.
    pub(super) fn scan_backend_collect(
        &self,
        start: Bound<&str>,
        end: Bound<&str>,
        reverse: bool,
        mut keep: impl FnMut(&str) -> bool,
        max: usize,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        self.blocking(|| {
            let mut out = Vec::new();
            for entry in self.scan_backend(start, end, reverse)? {
                let (key, value) = entry?;
                if keep(&key) {
                    out.push((key, value));
                    if out.len() >= max {
                        break;
                    }
                }
            }
            Ok(out)
        })
    }
}

/// The IDs (with class tag `tag`) of the objects that have stored data, each once, in order.
pub(crate) fn stored_object_ids(backend: &dyn Backend, tag: &[u8; 8]) -> Result<Vec<Id>> {
    let class = keys::class_data_prefix(tag);
    let class_end = prefix_successor(&class);
    let prefixes = backend.key_prefixes(&class, class_end.as_deref(), 1 + ID_BYTES)?;
    Ok(prefixes
        .iter()
        .filter_map(|p| p.get(1..).and_then(|id| <Id>::try_from(id).ok()))
        .collect())
}

/// The largest applied batch an object keeps in memory as a read cache (see
/// [`ObjectStore::applied`]): keys and values, in bytes.
const CACHED_BATCH_BYTES: usize = 1024;

/// User key → new value (`None`: deleted).
pub(crate) type Writes = BTreeMap<String, Option<Vec<u8>>>;
/// Full backend key → new value, for the runtime's own records (alarms, names).
pub(crate) type SystemWrites = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

#[derive(Debug, Default, Clone)]
pub(super) struct CallWrites {
    pub(super) writes: Writes,
    system: SystemWrites,
    /// `delete_all` ran in this call: older layers are hidden.
    pub(super) cleared: bool,
}

#[derive(Debug, Default)]
pub(super) struct Layers {
    pub(super) call: CallWrites,
    pub(super) in_flight: VecDeque<(u64, Arc<Batch>)>,
    /// The storage cache, on a backend whose reads cross a network (else `None`).
    resident: Option<Resident>,
}

/// A user key read back from a batch (always UTF-8: it was a `&str`).
pub(super) fn utf8_key(key: &[u8]) -> Result<&str> {
    std::str::from_utf8(key).map_err(|e| Error::storage(format!("stored key is not UTF-8: {e}")))
}

fn as_slice_bound(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Merges the backend's entries with newer memory entries (which win, `None` hiding a key),
/// both sorted in the same direction.
pub(super) struct MergeNewest<B, O>
where
    B: Iterator<Item = Result<(String, Vec<u8>)>>,
    O: Iterator<Item = (String, Option<Vec<u8>>)>,
{
    backend: std::iter::Peekable<B>,
    overlay: std::iter::Peekable<O>,
    reverse: bool,
}

impl<B, O> MergeNewest<B, O>
where
    B: Iterator<Item = Result<(String, Vec<u8>)>>,
    O: Iterator<Item = (String, Option<Vec<u8>>)>,
{
    pub(super) fn new(backend: B, overlay: O, reverse: bool) -> Self {
        MergeNewest {
            backend: backend.peekable(),
            overlay: overlay.peekable(),
            reverse,
        }
    }
}

impl<B, O> Iterator for MergeNewest<B, O>
where
    B: Iterator<Item = Result<(String, Vec<u8>)>>,
    O: Iterator<Item = (String, Option<Vec<u8>>)>,
{
    type Item = Result<(String, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let take_overlay = match (self.backend.peek(), self.overlay.peek()) {
                (None, None) => return None,
                (Some(Err(_)), _) => return self.backend.next(),
                (Some(Ok(_)), None) => return self.backend.next(),
                (None, Some(_)) => true,
                (Some(Ok((bk, _))), Some((ok, _))) => {
                    let order = ok.as_bytes().cmp(bk.as_bytes());
                    if order == std::cmp::Ordering::Equal {
                        // The memory entry replaces the backend's.
                        self.backend.next();
                        true
                    } else {
                        (order == std::cmp::Ordering::Less) != self.reverse
                    }
                }
            };
            if take_overlay {
                if let Some((key, Some(value))) = self.overlay.next() {
                    return Some(Ok((key, value)));
                }
                // A deletion: skip it.
            } else {
                return self.backend.next();
            }
        }
    }
}
