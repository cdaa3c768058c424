//! An object's storage: a typed key/value API (serde + postcard) over a byte-level
//! [`Backend`].
//!
//! Reads go through three layers, newest first: the writes of the running call (not yet
//! committed), the object's committed batches still on their way to the backend
//! ("in flight", see `commit.rs`), and the backend. So a call always reads its own writes and
//! every earlier write of its object, durable or still flushing.

mod backend;
mod batch;
mod fjall;
pub(crate) mod keys;
mod memory;

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use self::backend::{Backend, Durability, Entry, ScanIter, Write};
pub(crate) use self::batch::Batch;
pub use self::fjall::FjallBackend;
use self::keys::{prefix_successor, Id};
pub use self::memory::MemoryBackend;
use crate::error::{Error, Result};
use crate::id::{ObjectId, ID_BYTES};

/// The longest key, in bytes of UTF-8, as in Durable Objects.
pub const MAX_KEY_BYTES: usize = 2 * 1024;
/// The largest value, in bytes once encoded with postcard.
pub const MAX_VALUE_BYTES: usize = 2 * 1024 * 1024;
/// The most keys one `get_many`, `put_many` or `delete_many` takes, as in Durable Objects.
pub const MAX_BATCH_KEYS: usize = 128;

/// The longest schedule name, in bytes.
pub const MAX_SCHEDULE_NAME_BYTES: usize = 256;

/// User key → new value (`None`: deleted).
pub(crate) type Writes = BTreeMap<String, Option<Vec<u8>>>;
/// Full backend key → new value, for the runtime's own records (alarms, names).
pub(crate) type SystemWrites = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

#[derive(Debug, Default, Clone)]
struct CallWrites {
    writes: Writes,
    system: SystemWrites,
    /// `delete_all` ran in this call: older layers are hidden.
    cleared: bool,
}

#[derive(Debug, Default)]
struct Layers {
    call: CallWrites,
    in_flight: VecDeque<(u64, Arc<Batch>)>,
}

/// The largest applied batch an object keeps in memory as a read cache (see
/// [`ObjectStore::applied`]): keys and values, in bytes.
const CACHED_BATCH_BYTES: usize = 1024;

/// The storage state of one object, shared by its [`Storage`] handle and the commit thread.
pub(crate) struct ObjectStore {
    id: Id,
    backend: Arc<dyn Backend>,
    layers: Mutex<Layers>,
    /// Epochs number the lives of the object's in-memory view. When a batch fails to reach
    /// the backend, its epoch is marked failed: every later batch and reply of that epoch was
    /// computed from the lost writes, so the commit thread drops those batches and fails
    /// those replies, and the object is reset (new epoch) before its next call.
    epoch: AtomicU64,
    /// The newest failed epoch (0: none).
    failed_epoch: AtomicU64,
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
            backend,
            layers: Mutex::new(Layers::default()),
            epoch: AtomicU64::new(1),
            failed_epoch: AtomicU64::new(0),
            applied_seq: AtomicU64::new(0),
            activity: AtomicU64::new(0),
            swept: AtomicU64::new(0),
        }
    }

    fn layers(&self) -> MutexGuard<'_, Layers> {
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
            self.epoch(),
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
        let failed = self.failed_epoch.load(Ordering::Acquire);
        self.epoch.fetch_max(failed + 1, Ordering::AcqRel);
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
    fn drop_applied(&self, layers: &mut Layers) {
        let applied = self.applied_seq.load(Ordering::Acquire);
        while let Some((seq, batch)) = layers.in_flight.front() {
            if *seq > applied {
                break;
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

    /// The current epoch: the one the running call's writes and reply belong to.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// A batch of `epoch` failed to reach the backend.
    pub(crate) fn mark_failed(&self, epoch: u64) {
        self.failed_epoch.fetch_max(epoch, Ordering::AcqRel);
    }

    /// Whether writes of `epoch` were lost.
    pub(crate) fn epoch_failed(&self, epoch: u64) -> bool {
        self.failed_epoch.load(Ordering::Acquire) >= epoch
    }

    /// Whether the current epoch failed: the object must be reset before its next call.
    pub(crate) fn has_failed(&self) -> bool {
        self.epoch_failed(self.epoch())
    }

    /// Keys visible in the in-flight layers and the backend (ignoring the running call).
    fn visible_below_call(
        &self,
        layers: &Layers,
        start: Bound<&str>,
        end: Bound<&str>,
    ) -> Result<Vec<String>> {
        let mut merged: BTreeMap<String, bool> = BTreeMap::new();
        for entry in self.scan_backend(start, end, false)? {
            let (key, _) = entry?;
            merged.insert(key, true);
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

    fn scan_backend<'a>(
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
        }
        self.backend.get(key)
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

    /// Whether the running call wrote data (not only runtime records).
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
    fn schedules(&self) -> Result<BTreeMap<String, u64>> {
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
        for entry in self.backend.scan(Bound::Included(&prefix), end, false)? {
            let (key, value) = entry?;
            let (name, ms) = decode_entry(&key, Some(&value))?;
            found.insert(name, ms);
        }
        let layers = self.layers();
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
    fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
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
        }
        // Not in memory: in-flight batches leave memory only after the backend has them.
        self.backend.get(&self.full_key(key))
    }
}

/// A user key read back from a batch (always UTF-8: it was a `&str`).
fn utf8_key(key: &[u8]) -> Result<&str> {
    std::str::from_utf8(key).map_err(|e| Error::storage(format!("stored key is not UTF-8: {e}")))
}

fn as_slice_bound(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn check_key(key: &str) -> Result<()> {
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::key_too_large(key.len(), MAX_KEY_BYTES));
    }
    Ok(())
}

fn check_batch_len(what: &str, len: usize) -> Result<()> {
    if len > MAX_BATCH_KEYS {
        return Err(Error::invalid_argument(format!(
            "{what} takes at most {MAX_BATCH_KEYS} keys, got {len}"
        )));
    }
    Ok(())
}

fn encode<V: Serialize + ?Sized>(key: &str, value: &V) -> Result<Vec<u8>> {
    let bytes = postcard::to_allocvec(value).map_err(|e| Error::codec("encode", key, e))?;
    if bytes.len() > MAX_VALUE_BYTES {
        return Err(Error::value_too_large(key, bytes.len(), MAX_VALUE_BYTES));
    }
    Ok(bytes)
}

fn decode<V: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<V> {
    postcard::from_bytes(bytes).map_err(|e| Error::codec("decode", key, e))
}

/// Options of [`Storage::list`]: which keys, in which order, how many.
///
/// Keys are ordered by their UTF-8 bytes. `start` (inclusive) and `start_after` (exclusive)
/// cannot be combined; `end` is exclusive; `prefix` narrows the range further.
///
/// ```
/// use durable_runtime::ListOptions;
/// let opts = ListOptions::default().prefix("user:").start_after("user:41").reverse(true).limit(10);
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    start: Option<String>,
    start_after: Option<String>,
    end: Option<String>,
    prefix: Option<String>,
    reverse: bool,
    limit: Option<usize>,
}

impl ListOptions {
    /// Only keys `>= start`.
    pub fn start(mut self, start: &str) -> Self {
        self.start = Some(start.to_owned());
        self
    }

    /// Only keys `> start_after`. Cannot be combined with [`start`](Self::start).
    pub fn start_after(mut self, start_after: &str) -> Self {
        self.start_after = Some(start_after.to_owned());
        self
    }

    /// Only keys `< end`.
    pub fn end(mut self, end: &str) -> Self {
        self.end = Some(end.to_owned());
        self
    }

    /// Only keys beginning with `prefix`.
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = Some(prefix.to_owned());
        self
    }

    /// Descending order (the `limit` then keeps the greatest keys).
    pub fn reverse(mut self, reverse: bool) -> Self {
        self.reverse = reverse;
        self
    }

    /// At most `limit` entries.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The byte range `[lower, upper)` these options select, or `None` if it is empty.
    fn range(&self) -> Result<Option<(Bound<String>, Bound<String>)>> {
        for key in [&self.start, &self.start_after, &self.end, &self.prefix]
            .into_iter()
            .flatten()
        {
            check_key(key)?;
        }
        let mut lower = match (&self.start, &self.start_after) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid_argument(
                    "list: `start` and `start_after` cannot be combined",
                ))
            }
            (Some(s), None) => Bound::Included(s.clone()),
            (None, Some(s)) => Bound::Excluded(s.clone()),
            (None, None) => Bound::Unbounded,
        };
        let mut upper = match &self.end {
            Some(e) => Bound::Excluded(e.clone()),
            None => Bound::Unbounded,
        };
        if let Some(prefix) = &self.prefix {
            let below = match &lower {
                Bound::Included(s) | Bound::Excluded(s) => s.as_str() < prefix.as_str(),
                Bound::Unbounded => true,
            };
            if below {
                lower = Bound::Included(prefix.clone());
            }
            // Keys are UTF-8, so the successor of a prefix is a byte string; compare in bytes.
            if let Some(succ) = prefix_successor(prefix.as_bytes()) {
                let tighter = match &upper {
                    Bound::Excluded(e) => succ.as_slice() < e.as_bytes(),
                    Bound::Included(_) | Bound::Unbounded => true,
                };
                if tighter {
                    // The successor may not be valid UTF-8; every key beginning with the
                    // prefix is still below it, so filter by prefix instead.
                    match String::from_utf8(succ) {
                        Ok(s) => upper = Bound::Excluded(s),
                        Err(_) => upper = Bound::Unbounded,
                    }
                }
            }
        }
        let empty = match (&lower, &upper) {
            (Bound::Included(l), Bound::Excluded(u)) => l >= u,
            (Bound::Excluded(l), Bound::Excluded(u)) => l >= u,
            _ => false,
        };
        Ok((!empty).then_some((lower, upper)))
    }
}

/// One object's storage, reached through [`Context::storage`](crate::Context::storage)
/// (reads) and [`Context::storage_mut`](crate::Context::storage_mut) (writes, in exclusive
/// calls only).
///
/// Values are any `Serialize + DeserializeOwned` type, stored as postcard. The writes of one
/// call commit atomically when the call returns; its reply leaves once they are durable.
pub struct Storage {
    store: Arc<ObjectStore>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").finish_non_exhaustive()
    }
}

impl Storage {
    pub(crate) fn new(store: Arc<ObjectStore>) -> Storage {
        Storage { store }
    }

    /// Reads `key`, or `None` if it is not set.
    pub fn get<V: DeserializeOwned>(&self, key: &str) -> Result<Option<V>> {
        check_key(key)?;
        match self.store.read(key)? {
            Some(bytes) => decode(key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Reads up to 128 keys; the map holds the keys that are set.
    pub fn get_many<K: AsRef<str>, V: DeserializeOwned>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<BTreeMap<String, V>> {
        let keys: Vec<K> = keys.into_iter().collect();
        check_batch_len("get_many", keys.len())?;
        let mut found = BTreeMap::new();
        for key in &keys {
            let key = key.as_ref();
            if let Some(value) = self.get(key)? {
                found.insert(key.to_owned(), value);
            }
        }
        Ok(found)
    }

    /// Lists entries in key order (see [`ListOptions`]).
    pub fn list<V: DeserializeOwned>(&self, options: ListOptions) -> Result<Vec<(String, V)>> {
        let Some((lower, upper)) = options.range()? else {
            return Ok(Vec::new());
        };
        let limit = options.limit.unwrap_or(usize::MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let in_range = |k: &str| {
            let above = match &lower {
                Bound::Included(l) => k >= l.as_str(),
                Bound::Excluded(l) => k > l.as_str(),
                Bound::Unbounded => true,
            };
            let below = match &upper {
                Bound::Excluded(u) => k < u.as_str(),
                Bound::Included(u) => k <= u.as_str(),
                Bound::Unbounded => true,
            };
            let prefixed = options.prefix.as_deref().is_none_or(|p| k.starts_with(p));
            above && below && prefixed
        };
        // The memory layers within range, merged oldest to newest.
        let (overlay, hide_backend) = {
            let layers = self.store.layers();
            let mut overlay: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
            if !layers.call.cleared {
                for (_, batch) in &layers.in_flight {
                    for (k, v) in batch.data() {
                        let k = utf8_key(k)?;
                        if in_range(k) {
                            overlay.insert(k.to_owned(), v.map(<[u8]>::to_vec));
                        }
                    }
                }
            }
            for (k, v) in layers.call.writes.iter().filter(|(k, _)| in_range(k)) {
                overlay.insert(k.clone(), v.clone());
            }
            (overlay, layers.call.cleared)
        };
        let backend: Box<dyn Iterator<Item = Result<(String, Vec<u8>)>>> = if hide_backend {
            Box::new(std::iter::empty())
        } else {
            Box::new(
                self.store
                    .scan_backend(as_str_bound(&lower), as_str_bound(&upper), options.reverse)?
                    .filter(|e| e.as_ref().map_or(true, |(k, _)| in_range(k))),
            )
        };
        let overlay: Box<dyn Iterator<Item = (String, Option<Vec<u8>>)>> = if options.reverse {
            Box::new(overlay.into_iter().rev())
        } else {
            Box::new(overlay.into_iter())
        };
        let mut out = Vec::new();
        for entry in MergeNewest::new(backend, overlay, options.reverse) {
            let (key, bytes) = entry?;
            let value = decode(&key, &bytes)?;
            out.push((key, value));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Stores `value` under `key`.
    pub fn put<V: Serialize + ?Sized>(&mut self, key: &str, value: &V) -> Result<()> {
        check_key(key)?;
        let bytes = encode(key, value)?;
        self.store
            .layers()
            .call
            .writes
            .insert(key.to_owned(), Some(bytes));
        Ok(())
    }

    /// Stores up to 128 entries; if any key or value is refused, none is stored.
    pub fn put_many<K: AsRef<str>, V: Serialize>(
        &mut self,
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Result<()> {
        let mut encoded = Vec::new();
        for (key, value) in entries {
            let key = key.as_ref();
            check_key(key)?;
            encoded.push((key.to_owned(), encode(key, &value)?));
        }
        check_batch_len("put_many", encoded.len())?;
        let mut layers = self.store.layers();
        for (key, bytes) in encoded {
            layers.call.writes.insert(key, Some(bytes));
        }
        Ok(())
    }

    /// Deletes `key`; `true` if it was set.
    pub fn delete(&mut self, key: &str) -> Result<bool> {
        check_key(key)?;
        let existed = self.store.read(key)?.is_some();
        self.store.layers().call.writes.insert(key.to_owned(), None);
        Ok(existed)
    }

    /// Deletes up to 128 keys; returns how many were set.
    pub fn delete_many<K: AsRef<str>>(
        &mut self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<usize> {
        let keys: Vec<K> = keys.into_iter().collect();
        check_batch_len("delete_many", keys.len())?;
        for key in &keys {
            check_key(key.as_ref())?;
        }
        let mut deleted = 0;
        for key in &keys {
            if self.delete(key.as_ref())? {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Deletes every key of this object.
    pub fn delete_all(&mut self) -> Result<()> {
        // Alarms and schedules are not data: they survive `delete_all`, as in Durable
        // Objects; delete them with `delete_alarm` / `delete_schedule`.
        let mut layers = self.store.layers();
        layers.call.writes.clear();
        layers.call.cleared = true;
        Ok(())
    }

    /// Runs `f` as a unit inside the call: if it returns `Err` or calls
    /// [`Transaction::rollback`], its writes are undone; otherwise they join the call's
    /// writes (which commit atomically when the call returns).
    ///
    /// ```
    /// # use durable_runtime::{durable_object, Context, Error, Result};
    /// # #[durable_object] pub struct Bank { ctx: Context }
    /// # #[durable_object] impl Bank {
    /// #   pub fn new(ctx: Context) -> Self { Bank { ctx } }
    /// pub async fn transfer(&mut self, from: String, to: String, amount: i64) -> Result<()> {
    ///     self.ctx.storage_mut().transaction(|txn| {
    ///         let a: i64 = txn.get(&from)?.unwrap_or(0);
    ///         if a < amount {
    ///             return Err(Error::app("InsufficientFunds", format!("{from} has {a}")));
    ///         }
    ///         let b: i64 = txn.get(&to)?.unwrap_or(0);
    ///         txn.put(&from, &(a - amount))?;
    ///         txn.put(&to, &(b + amount))?;
    ///         Ok(())
    ///     })
    /// }
    /// # }
    /// ```
    pub fn transaction<R>(
        &mut self,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<R>,
    ) -> Result<R> {
        let saved = self.store.layers().call.clone();
        let mut txn = Transaction {
            storage: self,
            rolled_back: false,
        };
        let result = f(&mut txn);
        if result.is_err() || txn.rolled_back {
            self.store.layers().call = saved;
        }
        result
    }
}

/// Alarms: one per object, as in Durable Objects, plus any number of named schedules.
///
/// When an alarm or schedule comes due, the runtime runs the class's
/// `pub async fn alarm(&mut self, info: AlarmInfo) -> Result<()>` handler (activating the
/// object if needed, also after a restart), at least once; a failed run is retried with
/// exponential backoff. Setting a schedule replaces its previous time; writes to schedules
/// commit with the call's other writes.
impl Storage {
    /// Sets the object's alarm to fire at `at` (millisecond precision), replacing any
    /// earlier time. A time in the past fires at once.
    ///
    /// ```
    /// # use durable_runtime::{durable_object, AlarmInfo, Context, Result};
    /// # use std::time::{Duration, SystemTime};
    /// # #[durable_object] pub struct Reminder { ctx: Context }
    /// # #[durable_object] impl Reminder {
    /// #   pub fn new(ctx: Context) -> Self { Reminder { ctx } }
    /// pub async fn remind_in(&mut self, secs: u64) -> Result<()> {
    ///     let at = SystemTime::now() + Duration::from_secs(secs);
    ///     self.ctx.storage_mut().set_alarm(at)
    /// }
    ///
    /// pub async fn alarm(&mut self, info: AlarmInfo) -> Result<()> {
    ///     let fired: u64 = self.ctx.storage().get("fired")?.unwrap_or(0);
    ///     self.ctx.storage_mut().put("fired", &(fired + 1))
    /// }
    /// # }
    /// ```
    pub fn set_alarm(&mut self, at: SystemTime) -> Result<()> {
        self.store.set_schedule("", Some(to_ms(at)))
    }

    /// When the object's alarm will fire, if one is set.
    pub fn get_alarm(&self) -> Result<Option<SystemTime>> {
        Ok(self.store.schedule("")?.map(from_ms))
    }

    /// Cancels the object's alarm (no error if none is set).
    pub fn delete_alarm(&mut self) -> Result<()> {
        self.store.set_schedule("", None)
    }

    /// Sets the named schedule `name` to fire at `at`; the `alarm` handler then sees
    /// `info.schedule == Some(name)`. Names are 1 to 256 bytes.
    pub fn set_schedule(&mut self, name: &str, at: SystemTime) -> Result<()> {
        check_schedule_name(name)?;
        self.store.set_schedule(name, Some(to_ms(at)))
    }

    /// When the named schedule will fire, if it is set.
    pub fn get_schedule(&self, name: &str) -> Result<Option<SystemTime>> {
        check_schedule_name(name)?;
        Ok(self.store.schedule(name)?.map(from_ms))
    }

    /// Cancels the named schedule (no error if it is not set).
    pub fn delete_schedule(&mut self, name: &str) -> Result<()> {
        check_schedule_name(name)?;
        self.store.set_schedule(name, None)
    }

    /// Every named schedule of this object and when it fires, by name (not the alarm).
    pub fn schedules(&self) -> Result<Vec<(String, SystemTime)>> {
        Ok(self
            .store
            .schedules()?
            .into_iter()
            .filter(|(name, _)| !name.is_empty())
            .map(|(name, ms)| (name, from_ms(ms)))
            .collect())
    }
}

fn check_schedule_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_SCHEDULE_NAME_BYTES {
        return Err(Error::invalid_argument(format!(
            "a schedule name is 1 to {MAX_SCHEDULE_NAME_BYTES} bytes, got {}",
            name.len()
        )));
    }
    Ok(())
}

/// Milliseconds since the Unix epoch (times before it count as 0).
pub(crate) fn to_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Now, in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    to_ms(SystemTime::now())
}

pub(crate) fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// The IDs (with class tag `tag`) of the objects that have stored data, each once, in order.
pub(crate) fn stored_object_ids(backend: &dyn Backend, tag: &[u8; 8]) -> Result<Vec<Id>> {
    let class = keys::class_data_prefix(tag);
    let class_end = prefix_successor(&class);
    let mut ids = Vec::new();
    let mut from = class.clone();
    loop {
        let end = class_end
            .as_deref()
            .map_or(Bound::Unbounded, Bound::Excluded);
        let Some(entry) = backend.scan(Bound::Included(&from), end, false)?.next() else {
            break;
        };
        let (key, _) = entry?;
        let Some(id) = key
            .get(1..1 + ID_BYTES)
            .and_then(|s| <Id>::try_from(s).ok())
        else {
            break;
        };
        ids.push(id);
        // Skip the rest of this object's keys.
        match prefix_successor(&keys::data_prefix(&id)) {
            Some(next) => from = next,
            None => break,
        }
    }
    Ok(ids)
}

fn as_str_bound(b: &Bound<String>) -> Bound<&str> {
    match b {
        Bound::Included(s) => Bound::Included(s.as_str()),
        Bound::Excluded(s) => Bound::Excluded(s.as_str()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// A transaction inside a call: the [`Storage`] API plus [`rollback`](Self::rollback).
pub struct Transaction<'a> {
    storage: &'a mut Storage,
    rolled_back: bool,
}

impl Transaction<'_> {
    /// Undoes this transaction's writes when it ends, even if it returns `Ok`.
    pub fn rollback(&mut self) {
        self.rolled_back = true;
    }
}

impl std::ops::Deref for Transaction<'_> {
    type Target = Storage;
    fn deref(&self) -> &Storage {
        self.storage
    }
}

impl std::ops::DerefMut for Transaction<'_> {
    fn deref_mut(&mut self) -> &mut Storage {
        self.storage
    }
}

/// Merges the backend's entries with newer memory entries (which win, `None` hiding a key),
/// both sorted in the same direction.
struct MergeNewest<B, O>
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
    fn new(backend: B, overlay: O, reverse: bool) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_with_start_after_is_an_error() {
        let err = ListOptions::default()
            .start("a")
            .start_after("b")
            .range()
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
    }
}
