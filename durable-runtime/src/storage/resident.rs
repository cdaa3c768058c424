//! The storage cache: [`Resident`], an active object's stored state kept in memory.
//!
//! On a backend whose reads cross a network (PostgreSQL), an object's actor loads the
//! object's whole stored state once, when it activates, on a blocking thread: its data keys,
//! its schedules and its name. From then on its reads are served from memory, as in
//! Cloudflare's storage cache: a hot object pays no round trip per `get` or `list`. The cache
//! is exact because one runtime owns the object and every write of the object passes through
//! it: a committed batch is folded in when it leaves the object's in-flight layer.
//!
//! An object whose data exceeds the backend's limit (`Backend::object_cache_bytes`) is not
//! loaded whole: the cache then keeps the keys it read or wrote (and the keys it found
//! absent), and `list` reads the backend.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::batch::Batch;
use super::keys::{self, Id};
use super::store::utf8_key;
use super::{Backend, Entry, RangeRead, ScanIter};
use crate::error::{Error, Result};

/// Entries an activation reads of each of its ranges in its first request; a longer range
/// follows with a scan. (A page of large values is held whole for a moment: 128 values of
/// 2 MiB at worst, for an object the cache then keeps only in part.)
const LOAD_PAGE: usize = 128;

/// What the cache knows of a key.
pub(super) enum Cached<'a> {
    /// The stored value (`None`: the key is not stored).
    Known(Option<&'a [u8]>),
    /// Not cached: read the backend.
    Unknown,
}

/// An active object's stored state; see the module documentation.
#[derive(Debug, Default)]
pub(super) struct Resident {
    /// User key → stored value. When `complete`, every stored key is here (and only stored
    /// ones); otherwise the keys read or written so far, `None` for a key known absent.
    data: BTreeMap<String, Option<Vec<u8>>>,
    complete: bool,
    /// The object's own system keys (its name and schedules) → value: always complete.
    system: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// The first request of an object's load: its three ranges (data, schedules, name), each
/// with the rows asked for.
pub(super) struct LoadPlan {
    data_prefix: [u8; 1 + crate::id::ID_BYTES],
    data_end: Option<Vec<u8>>,
    alarms: Vec<u8>,
    alarms_end: Option<Vec<u8>>,
    name: Vec<u8>,
    name_end: Vec<u8>,
    data_rows: usize,
    max_bytes: usize,
}

impl LoadPlan {
    pub(super) fn new(id: &Id, max_bytes: usize) -> LoadPlan {
        let data_prefix = keys::data_prefix(id);
        let alarms = keys::alarm_prefix(id);
        let name = keys::name_key(id);
        let mut name_end = name.clone();
        name_end.push(0);
        LoadPlan {
            data_end: keys::prefix_successor(&data_prefix),
            data_prefix,
            alarms_end: keys::prefix_successor(&alarms),
            alarms,
            name,
            name_end,
            // With no room for data (a limit of 0), one entry says whether any is stored.
            data_rows: if max_bytes == 0 { 1 } else { LOAD_PAGE },
            max_bytes,
        }
    }

    /// The three ranges, for one `scan_each` (one round trip on a network).
    pub(super) fn ranges(&self) -> [RangeRead<'_>; 3] {
        [
            RangeRead {
                start: &self.data_prefix,
                end: self.data_end.as_deref(),
                limit: self.data_rows,
            },
            RangeRead {
                start: &self.alarms,
                end: self.alarms_end.as_deref(),
                limit: LOAD_PAGE,
            },
            RangeRead {
                start: &self.name,
                end: Some(&self.name_end),
                limit: 1,
            },
        ]
    }
}

impl Resident {
    /// Reads the object's stored state from `backend` (blocking): its data if it is at most
    /// `max_bytes`.
    pub(super) fn load(backend: &dyn Backend, id: &Id, max_bytes: usize) -> Result<Resident> {
        let plan = LoadPlan::new(id, max_bytes);
        let pages = backend.scan_each(&plan.ranges())?;
        match Resident::from_pages(&plan, pages, Some(backend))? {
            Some(resident) => Ok(resident),
            None => Err(Error::internal(
                "an object's load stopped with a backend at hand",
            )),
        }
    }

    /// The stored state from the first request's pages; a range longer than its page is
    /// read on with `backend`'s scans, or, without one, `None` (load with a backend).
    pub(super) fn from_pages(
        plan: &LoadPlan,
        pages: Vec<Vec<Entry>>,
        backend: Option<&dyn Backend>,
    ) -> Result<Option<Resident>> {
        let mut pages = pages.into_iter();
        let (data_page, alarm_page, name_page) = match (pages.next(), pages.next(), pages.next()) {
            (Some(d), Some(a), Some(n)) => (d, a, n),
            _ => {
                return Err(Error::internal(
                    "a backend answered scan_each with too few ranges",
                ))
            }
        };
        let full = |page: &[Entry], rows: usize| page.len() >= rows && !page.is_empty();
        let data_more = plan.max_bytes > 0 && full(&data_page, plan.data_rows);
        let alarms_more = full(&alarm_page, LOAD_PAGE);
        let rest =
            |page: &[Entry], end: Option<&[u8]>, more: bool| -> Result<Option<ScanIter<'_>>> {
                match (page.last(), backend) {
                    (Some((last, _)), Some(backend)) if more => {
                        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
                        Ok(Some(backend.scan(Bound::Excluded(last), upper, false)?))
                    }
                    _ => Ok(None),
                }
            };
        if backend.is_none() && (data_more || alarms_more) {
            return Ok(None);
        }

        let mut data = BTreeMap::new();
        let mut bytes = 0;
        let mut complete = true;
        let more = rest(&data_page, plan.data_end.as_deref(), data_more)?;
        for entry in data_page
            .into_iter()
            .map(Ok)
            .chain(more.into_iter().flatten())
        {
            let (key, value) = entry?;
            bytes += key.len() + value.len();
            if bytes > plan.max_bytes {
                complete = false;
                data.clear();
                break;
            }
            let user = key.get(plan.data_prefix.len()..).unwrap_or_default();
            let user = String::from_utf8(user.to_vec())
                .map_err(|e| Error::storage(format!("stored key is not UTF-8: {e}")))?;
            data.insert(user, Some(value));
        }
        let mut system = BTreeMap::new();
        let more = rest(&alarm_page, plan.alarms_end.as_deref(), alarms_more)?;
        for entry in alarm_page
            .into_iter()
            .map(Ok)
            .chain(more.into_iter().flatten())
        {
            let (key, value) = entry?;
            system.insert(key, value);
        }
        system.extend(name_page);
        Ok(Some(Resident {
            data,
            complete,
            system,
        }))
    }

    pub(super) fn get(&self, key: &str) -> Cached<'_> {
        match self.data.get(key) {
            Some(value) => Cached::Known(value.as_deref()),
            None if self.complete => Cached::Known(None),
            None => Cached::Unknown,
        }
    }

    /// Remembers a value read from the backend (for an object not loaded whole). A value
    /// already cached is newer (a committed write folded in): it stays.
    pub(super) fn remember(&mut self, key: &str, value: Option<&[u8]>) {
        if !self.complete {
            self.data
                .entry(key.to_owned())
                .or_insert_with(|| value.map(<[u8]>::to_vec));
        }
    }

    /// A system key of the object (its name, a schedule).
    pub(super) fn system(&self, key: &[u8]) -> Option<&[u8]> {
        self.system.get(key).map(Vec::as_slice)
    }

    /// The object's system entries whose keys start with `prefix`.
    pub(super) fn system_with_prefix<'a>(
        &'a self,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        self.system
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// The stored entries in `(lower, upper)` whose keys pass `keep`, in order (descending
    /// if `reverse`), at most `max`; `None` if the object is not loaded whole (read the
    /// backend instead).
    pub(super) fn range(
        &self,
        lower: Bound<&str>,
        upper: Bound<&str>,
        reverse: bool,
        keep: impl Fn(&str) -> bool,
        max: usize,
    ) -> Option<Vec<(String, Vec<u8>)>> {
        if !self.complete {
            return None;
        }
        if super::empty_range(lower, upper) {
            return Some(Vec::new());
        }
        let range = self.data.range::<str, _>((lower, upper));
        let present = |(k, v): (&String, &Option<Vec<u8>>)| {
            v.as_ref()
                .filter(|_| keep(k))
                .map(|v| (k.clone(), v.clone()))
        };
        Some(if reverse {
            range.rev().filter_map(present).take(max).collect()
        } else {
            range.filter_map(present).take(max).collect()
        })
    }

    /// Folds in a committed batch of the object `id`.
    pub(super) fn absorb(&mut self, batch: &Batch, id: &Id) -> Result<()> {
        for (key, value) in batch.data() {
            let key = utf8_key(key)?;
            match value {
                Some(v) => {
                    self.data.insert(key.to_owned(), Some(v.to_vec()));
                }
                None if self.complete => {
                    self.data.remove(key);
                }
                None => {
                    self.data.insert(key.to_owned(), None);
                }
            }
        }
        let name = keys::name_key(id);
        let alarms = keys::alarm_prefix(id);
        for (key, value) in batch.system() {
            // The DUE index is the class's, not the object's.
            if key == name.as_slice() || key.starts_with(&alarms) {
                match value {
                    Some(v) => {
                        self.system.insert(key.to_vec(), v.to_vec());
                    }
                    None => {
                        self.system.remove(key);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryBackend;

    const ID: Id = [7; crate::id::ID_BYTES];

    fn batch(data: &[(&str, Option<&[u8]>)], system: &[(Vec<u8>, Option<&[u8]>)]) -> Batch {
        Batch::pack(
            &keys::data_prefix(&ID),
            data.iter().copied(),
            system.iter().map(|(k, v)| (k.as_slice(), *v)),
            1,
        )
    }

    fn keys_of(entries: Option<Vec<(String, Vec<u8>)>>) -> Vec<String> {
        entries.unwrap().into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn a_loaded_object_answers_every_key_and_folds_in_committed_batches() {
        let mut r = Resident::load(&MemoryBackend::new(), &ID, 1 << 20).unwrap();
        assert!(matches!(r.get("a"), Cached::Known(None)));
        let name = keys::name_key(&ID);
        let alarm = keys::alarm_key(&ID, "s");
        let due = keys::due_key(&ID, 5, "s");
        r.absorb(
            &batch(
                &[("a", Some(b"1")), ("b", Some(b"2")), ("c", Some(b"3"))],
                &[
                    (name.clone(), Some(b"n")),
                    (alarm.clone(), Some(b"t")),
                    (due.clone(), Some(b"")),
                ],
            ),
            &ID,
        )
        .unwrap();
        r.absorb(&batch(&[("b", None)], &[(alarm.clone(), None)]), &ID)
            .unwrap();
        assert!(matches!(r.get("a"), Cached::Known(Some(b"1"))));
        assert!(matches!(r.get("b"), Cached::Known(None)));
        assert_eq!(r.system(&name), Some(&b"n"[..]));
        assert_eq!(r.system(&alarm), None);
        // The DUE index is the class's: not part of the object's cache.
        assert_eq!(r.system(&due), None);
        let all = |reverse, max| {
            keys_of(r.range(Bound::Unbounded, Bound::Unbounded, reverse, |_| true, max))
        };
        assert_eq!(all(false, usize::MAX), ["a", "c"]);
        assert_eq!(all(true, 1), ["c"]);
        let only_c = r.range(
            Bound::Excluded("a"),
            Bound::Included("c"),
            false,
            |_| true,
            9,
        );
        assert_eq!(keys_of(only_c), ["c"]);
        // An inverted range is empty, not a panic.
        let inverted = r.range(
            Bound::Included("c"),
            Bound::Excluded("a"),
            false,
            |_| true,
            9,
        );
        assert_eq!(keys_of(inverted), Vec::<String>::new());
        let kept = r.range(Bound::Unbounded, Bound::Unbounded, false, |k| k != "a", 9);
        assert_eq!(keys_of(kept), ["c"]);
    }

    #[test]
    fn an_object_over_the_limit_keeps_what_it_reads_and_lists_from_the_backend() {
        let backend = MemoryBackend::new();
        let prefix = keys::data_prefix(&ID);
        let key = |k: &str| [&prefix[..], k.as_bytes()].concat();
        let (a, b) = (key("a"), key("b"));
        backend
            .apply(&[
                crate::storage::Write {
                    key: &a,
                    value: Some(b"1234"),
                },
                crate::storage::Write {
                    key: &b,
                    value: Some(b"5678"),
                },
            ])
            .unwrap();
        let whole = Resident::load(&backend, &ID, 1 << 20).unwrap();
        assert!(matches!(whole.get("b"), Cached::Known(Some(b"5678"))));
        let mut part = Resident::load(&backend, &ID, 40).unwrap();
        assert!(matches!(part.get("a"), Cached::Unknown));
        assert!(part
            .range(Bound::Unbounded, Bound::Unbounded, false, |_| true, 9)
            .is_none());
        part.remember("a", Some(b"1234"));
        part.remember("zz", None);
        assert!(matches!(part.get("a"), Cached::Known(Some(b"1234"))));
        assert!(matches!(part.get("zz"), Cached::Known(None)));
        // A committed write is newer than a value read before it.
        part.absorb(&batch(&[("a", Some(b"9"))], &[]), &ID).unwrap();
        part.remember("a", Some(b"1234"));
        assert!(matches!(part.get("a"), Cached::Known(Some(b"9"))));
        // A deletion is remembered as absent.
        part.absorb(&batch(&[("b", None)], &[]), &ID).unwrap();
        assert!(matches!(part.get("b"), Cached::Known(None)));
        // With a limit of 0 an empty object is still known whole (nothing stored).
        let empty = Resident::load(&MemoryBackend::new(), &ID, 0).unwrap();
        assert!(matches!(empty.get("a"), Cached::Known(None)));
        let none = Resident::load(&backend, &ID, 0).unwrap();
        assert!(matches!(none.get("a"), Cached::Unknown));
    }
}
