//! The in-memory backend: a `BTreeMap` behind a lock. For tests and ephemeral runtimes.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::RwLock;

use super::backend::{Backend, Durability, Entry, ScanIter, Write};
use crate::error::{Error, Result};

/// A [`Backend`] that keeps everything in memory. Nothing survives the process; `sync` is a
/// no-op. [`Runtime::in_memory`](crate::Runtime::in_memory) uses it.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn poisoned() -> Error {
        Error::storage("the in-memory store's lock was poisoned by a panic")
    }
}

impl Backend for MemoryBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let map = self.map.read().map_err(|_| Self::poisoned())?;
        Ok(map.get(key).cloned())
    }

    fn scan(&self, start: Bound<&[u8]>, end: Bound<&[u8]>, reverse: bool) -> Result<ScanIter<'_>> {
        if super::empty_range(start, end) {
            return Ok(Box::new(std::iter::empty()));
        }
        let map = self.map.read().map_err(|_| Self::poisoned())?;
        let range = map.range::<[u8], _>((start, end));
        let entries: Vec<Entry> = if reverse {
            range.rev().map(|(k, v)| (k.clone(), v.clone())).collect()
        } else {
            range.map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        Ok(Box::new(entries.into_iter().map(Ok)))
    }

    fn apply(&self, batch: &[Write<'_>]) -> Result<()> {
        let mut map = self.map.write().map_err(|_| Self::poisoned())?;
        for write in batch {
            match write.value {
                Some(value) => {
                    map.insert(write.key.to_vec(), value.to_vec());
                }
                None => {
                    map.remove(write.key);
                }
            }
        }
        Ok(())
    }

    fn sync(&self, _durability: Durability) -> Result<()> {
        Ok(())
    }
}
