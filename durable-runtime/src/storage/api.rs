//! The typed storage API of an object: [`Storage`].
//!
//! Keys are strings of at most [`MAX_KEY_BYTES`]; values are any `Serialize +
//! DeserializeOwned` type, encoded with postcard, of at most [`MAX_VALUE_BYTES`] once
//! encoded; the `_many` calls take at most [`MAX_BATCH_KEYS`] keys. Keys and values are
//! checked before anything is written: a `put_many` or `delete_many` with one refused key or
//! value (too long, not encodable, too many) writes nothing. Writes go to the object's write
//! buffer (see `store.rs`) and commit atomically when the call returns.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::store::{utf8_key, MergeNewest, ObjectStore};
use super::{ListOptions, MAX_BATCH_KEYS, MAX_KEY_BYTES, MAX_VALUE_BYTES};
use crate::error::{Error, Result};

/// One object's storage, reached through [`Context::storage`](crate::Context::storage)
/// (reads) and [`Context::storage_mut`](crate::Context::storage_mut) (writes, in exclusive
/// calls only).
///
/// Values are any `Serialize + DeserializeOwned` type, stored as postcard. The writes of one
/// call commit atomically when the call returns; its reply is released once they are durable.
pub struct Storage {
    pub(super) store: Arc<ObjectStore>,
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
        // The memory layers within range, merged oldest to newest; and the stored entries
        // from the storage cache, if the object's stored state is in memory.
        let (overlay, cached, needed) = {
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
            // Each memory entry hides at most one stored entry: this many are enough.
            let needed = limit.saturating_add(overlay.len());
            // After `delete_all`, nothing stored is visible.
            let cached = if layers.call.cleared {
                Some(Vec::new())
            } else {
                self.store.cached_range(
                    &layers,
                    as_str_bound(&lower),
                    as_str_bound(&upper),
                    options.reverse,
                    in_range,
                    needed,
                )
            };
            (overlay, cached, needed)
        };
        let stored: Vec<(String, Vec<u8>)> = match cached {
            Some(entries) => entries,
            None => self.store.scan_backend_collect(
                as_str_bound(&lower),
                as_str_bound(&upper),
                options.reverse,
                in_range,
                needed,
            )?,
        };
        let backend = stored.into_iter().map(Ok);
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
}

pub(super) fn check_key(key: &str) -> Result<()> {
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

fn as_str_bound(b: &Bound<String>) -> Bound<&str> {
    match b {
        Bound::Included(s) => Bound::Included(s.as_str()),
        Bound::Excluded(s) => Bound::Excluded(s.as_str()),
        Bound::Unbounded => Bound::Unbounded,
    }
}
