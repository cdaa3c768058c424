//! Moving everything a runtime stored from one [`Backend`] to another: [`copy`], then
//! [`verify`] that the two hold the same keys and values.
//!
//! Both walk the backends' whole ordered key space (every object's data, alarms, the due
//! index, names), so nothing about the key layout needs migrating: the destination is a
//! byte-for-byte copy. Both stream: they hold at most one chunk of entries (`copy`) or one
//! entry per side (`verify`), whatever the size of the store.
//!
//! Nothing may write to either backend meanwhile: stop the runtime first. (Both stores that
//! ship with locks enforce it: [`FjallBackend::open`](crate::FjallBackend::open) fails while
//! a runtime holds the directory's lock, `PostgresBackend::connect` while one holds the
//! schema's advisory lock.) `cargo run --example migrate` wraps the two calls in a command.

use std::fmt;
use std::ops::Bound;

use crate::error::{Error, Result};
use crate::id::ID_BYTES;
use crate::storage::keys;
use crate::storage::{Backend, Durability, Entry, Write};

/// The most keys [`copy`] writes in one [`Backend::apply`].
const CHUNK_KEYS: usize = 1000;
/// The most bytes (keys and values) [`copy`] writes in one [`Backend::apply`], unless a
/// single entry is larger.
const CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// What [`copy`] copied or [`verify`] compared.
///
/// Its `Display` reads "12 objects, 345 keys, 6789 bytes".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Distinct objects with at least one data key (an object with only an alarm or a name
    /// is not counted).
    pub objects: u64,
    /// Keys of every kind: data, alarms, the due index, names.
    pub keys: u64,
    /// Bytes of those keys and their values, as the backend stores them.
    pub bytes: u64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} objects, {} keys, {} bytes",
            self.objects, self.keys, self.bytes
        )
    }
}

/// A [`Report`] being counted over an ordered scan: an object's data keys are contiguous, so
/// remembering the last object seen is enough to count distinct ones.
#[derive(Default)]
struct Tally {
    report: Report,
    last_object: Option<[u8; ID_BYTES]>,
}

impl Tally {
    fn add(&mut self, key: &[u8], value: &[u8]) {
        self.report.keys += 1;
        self.report.bytes += (key.len() + value.len()) as u64;
        if let Some((id, _)) = data_key(key) {
            if self.last_object != Some(*id) {
                self.last_object = Some(*id);
                self.report.objects += 1;
            }
        }
    }
}

/// Copies every key of `from` into `to`, which must be empty, and syncs `to`
/// ([`Durability::Fsync`]). Returns what was copied.
///
/// It writes in chunks (at most 1,000 keys or 8 MiB per [`Backend::apply`]), so memory
/// stays bounded; a failure part way leaves `to` holding a prefix of `from`: empty it (or
/// start from a new directory or database) before running the copy again. Nothing may write
/// to `from` meanwhile: stop the runtime first. Check the result with [`verify`].
///
/// ```
/// use std::sync::Arc;
/// use durable_runtime::{durable_object, migrate, Context, MemoryBackend, Result, Runtime};
///
/// #[durable_object]
/// pub struct Counter { ctx: Context }
///
/// #[durable_object]
/// impl Counter {
///     pub fn new(ctx: Context) -> Self { Counter { ctx } }
///
///     pub async fn increment(&mut self) -> Result<i64> {
///         let value = self.ctx.storage().get::<i64>("value")?.unwrap_or(0) + 1;
///         self.ctx.storage_mut().put("value", &value)?;
///         Ok(value)
///     }
/// }
///
/// # #[tokio::main] async fn main() -> Result<()> {
/// let old = Arc::new(MemoryBackend::new());
/// let rt = Runtime::builder().backend(old.clone()).open()?;
/// rt.namespace::<Counter>().get_by_name("A").increment().await?;
/// rt.shutdown().await?; // nothing may write during the copy
///
/// let new = Arc::new(MemoryBackend::new());
/// let copied = migrate::copy(&*old, &*new)?;
/// assert_eq!(migrate::verify(&*old, &*new)?, copied);
/// assert_eq!(copied.objects, 1);
///
/// let rt = Runtime::builder().backend(new).open()?;
/// assert_eq!(rt.namespace::<Counter>().get_by_name("A").increment().await?, 2);
/// # rt.shutdown().await }
/// ```
///
/// # Errors
///
/// - [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) when `to` already
///   holds a key, before anything is written. The caller passed the wrong destination (a
///   rule of this function's arguments, not a misconfigured runtime, hence not `Config`);
///   the message names the first key found and what to do.
/// - Whatever `from`'s scan or `to`'s `apply` and `sync` return (usually
///   [`ErrorKind::Storage`](crate::ErrorKind::Storage)).
pub fn copy(from: &dyn Backend, to: &dyn Backend) -> Result<Report> {
    if let Some(entry) = to.scan(Bound::Unbounded, Bound::Unbounded, false)?.next() {
        let (key, _) = entry?;
        return Err(Error::invalid_argument(format!(
            "the destination is not empty (it holds {}, maybe more): copy writes only into \
             an empty backend; use a new data directory or database, or empty this one first",
            describe(&key)
        )));
    }
    let mut tally = Tally::default();
    let mut chunk: Vec<Entry> = Vec::with_capacity(CHUNK_KEYS);
    let mut chunk_bytes = 0;
    for entry in from.scan(Bound::Unbounded, Bound::Unbounded, false)? {
        let (key, value) = entry?;
        let size = key.len() + value.len();
        if chunk.len() == CHUNK_KEYS || (!chunk.is_empty() && chunk_bytes + size > CHUNK_BYTES) {
            apply_chunk(to, &chunk)?;
            chunk.clear();
            chunk_bytes = 0;
        }
        tally.add(&key, &value);
        chunk_bytes += size;
        chunk.push((key, value));
    }
    if !chunk.is_empty() {
        apply_chunk(to, &chunk)?;
    }
    to.sync(Durability::Fsync)?;
    Ok(tally.report)
}

fn apply_chunk(to: &dyn Backend, chunk: &[Entry]) -> Result<()> {
    let batch: Vec<Write<'_>> = chunk
        .iter()
        .map(|(key, value)| Write {
            key,
            value: Some(value),
        })
        .collect();
    to.apply(&batch)
}

/// Checks that `a` and `b` hold exactly the same keys with the same values, walking both in
/// key order side by side (one entry of each in memory at a time). Returns what was
/// compared; `verify(from, to)` after a successful [`copy`] returns the copy's report.
///
/// # Errors
///
/// - [`ErrorKind::Storage`](crate::ErrorKind::Storage) at the first difference, as for any
///   stored data that is not what it should be. The message names the key (for a data key,
///   the object ID in hex and the user key; otherwise its kind and the raw key in hex) and
///   how it differs: missing from one side (the "first" is `a`, the "second" `b`), or
///   different values.
/// - Whatever either backend's scan returns.
pub fn verify(a: &dyn Backend, b: &dyn Backend) -> Result<Report> {
    let mut left = a.scan(Bound::Unbounded, Bound::Unbounded, false)?;
    let mut right = b.scan(Bound::Unbounded, Bound::Unbounded, false)?;
    let mut tally = Tally::default();
    loop {
        let (l, r) = (left.next().transpose()?, right.next().transpose()?);
        let (l, r) = match (l, r) {
            (None, None) => return Ok(tally.report),
            (Some((key, _)), None) => return Err(missing(&key, "second")),
            (None, Some((key, _))) => return Err(missing(&key, "first")),
            (Some(l), Some(r)) => (l, r),
        };
        if l.0 < r.0 {
            return Err(missing(&l.0, "second"));
        }
        if r.0 < l.0 {
            return Err(missing(&r.0, "first"));
        }
        if l.1 != r.1 {
            return Err(different(&l.0, &l.1, &r.1));
        }
        tally.add(&l.0, &l.1);
    }
}

fn missing(key: &[u8], side: &str) -> Error {
    let other = if side == "first" { "second" } else { "first" };
    Error::storage(format!(
        "the backends differ at {}: it is in the {other} backend, missing from the {side}",
        describe(key)
    ))
}

fn different(key: &[u8], a: &[u8], b: &[u8]) -> Error {
    let at = a.iter().zip(b).position(|(x, y)| x != y);
    let how = match at {
        Some(i) => format!("first different at byte {i}"),
        None => "one a prefix of the other".to_owned(),
    };
    Error::storage(format!(
        "the backends differ at {}: different values ({} bytes in the first backend, {} in \
         the second, {how})",
        describe(key),
        a.len(),
        b.len()
    ))
}

/// `DATA ‖ id ‖ user key`: the object ID and the user key.
fn data_key(key: &[u8]) -> Option<(&[u8; ID_BYTES], &[u8])> {
    let rest = key.strip_prefix(&[keys::DATA])?;
    let id = rest.get(..ID_BYTES)?.try_into().ok()?;
    Some((id, &rest[ID_BYTES..]))
}

/// A key for a message: a data key as its object and user key, another as its kind and hex.
fn describe(key: &[u8]) -> String {
    if let Some((id, user)) = data_key(key) {
        let id = hex::encode(id);
        return match std::str::from_utf8(user) {
            Ok(user) => format!("object {id}, key {user:?}"),
            Err(_) => format!("object {id}, key 0x{} (not UTF-8)", hex::encode(user)),
        };
    }
    let kind = match key.first() {
        Some(&keys::ALARM) => "alarm key",
        Some(&keys::DUE) => "due-index key",
        Some(&keys::NAME) => "name key",
        _ => "key",
    };
    format!("{kind} 0x{}", hex::encode(key))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::storage::{MemoryBackend, ScanIter};

    /// A memory backend that records the size of every batch applied to it.
    #[derive(Default)]
    struct Recording {
        inner: MemoryBackend,
        batches: Mutex<Vec<(usize, usize)>>,
    }

    impl Backend for Recording {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
            self.inner.get(key)
        }

        fn scan(
            &self,
            start: Bound<&[u8]>,
            end: Bound<&[u8]>,
            reverse: bool,
        ) -> Result<ScanIter<'_>> {
            self.inner.scan(start, end, reverse)
        }

        fn apply(&self, batch: &[Write<'_>]) -> Result<()> {
            let bytes = batch
                .iter()
                .map(|w| w.key.len() + w.value.map_or(0, <[u8]>::len))
                .sum();
            self.batches.lock().unwrap().push((batch.len(), bytes));
            self.inner.apply(batch)
        }

        fn sync(&self, durability: Durability) -> Result<()> {
            self.inner.sync(durability)
        }
    }

    fn data(id: u8, user: &str) -> Vec<u8> {
        let mut key = vec![keys::DATA];
        key.extend_from_slice(&[id; ID_BYTES]);
        key.extend_from_slice(user.as_bytes());
        key
    }

    fn put(backend: &dyn Backend, key: &[u8], value: &[u8]) {
        backend
            .apply(&[Write {
                key,
                value: Some(value),
            }])
            .unwrap();
    }

    /// 2,500 small keys and then 20 values of 1 MiB: batches of 1,000 keys, then of 8 MiB at
    /// most (7 values of 1 MiB and their keys; the first also takes the last 500 small keys),
    /// and every key arrives.
    #[test]
    fn copy_writes_in_bounded_chunks() {
        let from = MemoryBackend::new();
        for i in 0..2500 {
            put(&from, &data(1, &format!("small {i:05}")), b"v");
        }
        let big = vec![7u8; 1024 * 1024];
        for i in 0..20 {
            put(&from, &data(2, &format!("big {i:02}")), &big);
        }
        let to = Recording::default();
        let report = copy(&from, &to).unwrap();
        assert_eq!(report.objects, 2);
        assert_eq!(report.keys, 2520);
        let batches = to.batches.lock().unwrap().clone();
        assert!(
            batches
                .iter()
                .all(|&(keys, bytes)| keys <= CHUNK_KEYS && bytes <= CHUNK_BYTES),
            "{batches:?}"
        );
        let keys: Vec<usize> = batches.iter().map(|b| b.0).collect();
        assert_eq!(keys, [1000, 1000, 500 + 7, 7, 6]);
        assert_eq!(verify(&from, &to).unwrap(), report);
    }

    #[test]
    fn report_counts_objects_keys_and_bytes() {
        let from = MemoryBackend::new();
        put(&from, &data(1, "a"), b"12");
        put(&from, &data(1, "b"), b"3");
        put(&from, &data(3, "é"), b"");
        let mut name = vec![keys::NAME];
        name.extend_from_slice(&[2; ID_BYTES]);
        put(&from, &name, b"only a name");
        let to = MemoryBackend::new();
        let report = copy(&from, &to).unwrap();
        let key_bytes = 3 * (1 + ID_BYTES) + 1 + 1 + "é".len() + name.len();
        let expected = Report {
            objects: 2,
            keys: 4,
            bytes: (key_bytes + 3 + "only a name".len()) as u64,
        };
        assert_eq!(report, expected);
        assert_eq!(
            report.to_string(),
            format!("2 objects, 4 keys, {} bytes", expected.bytes)
        );
        let empty = copy(&MemoryBackend::new(), &MemoryBackend::new()).unwrap();
        assert_eq!(empty, Report::default());
        assert_eq!(empty.to_string(), "0 objects, 0 keys, 0 bytes");
    }

    #[test]
    fn describe_names_data_keys_by_object_and_others_in_hex() {
        let id = hex::encode([5u8; ID_BYTES]);
        assert_eq!(
            describe(&data(5, "clé")),
            format!("object {id}, key \"clé\"")
        );
        let mut bad = data(5, "");
        bad.push(0xff);
        assert_eq!(describe(&bad), format!("object {id}, key 0xff (not UTF-8)"));
        assert_eq!(describe(&[keys::ALARM, 0xab]), "alarm key 0x02ab");
        assert_eq!(describe(&[keys::DUE, 1]), "due-index key 0x0301");
        assert_eq!(describe(&[keys::NAME]), "name key 0x04");
        assert_eq!(
            describe(&[keys::DATA, 1]),
            "key 0x0101",
            "too short for an ID"
        );
        assert_eq!(describe(&[0x09]), "key 0x09");
    }
}
