//! The fjall backend: one fjall `Database` with one keyspace holding every object's keys.
//!
//! Every object's keys start with its 32-byte ID, so one object is one contiguous key range
//! and one class (whose IDs share an 8-byte tag) is one contiguous range too.
//!
//! Durability: batches go to fjall's journal without a flush of their own
//! (`durability(None)`); the commit thread then calls [`Backend::sync`], which is one
//! `persist(SyncData)` covering every batch applied before it (group commit).
//!
//! Bounded start-up: fjall replays at open the part of its journal whose memtables were not
//! flushed. The journal is capped (`max_journaling_size`, 64 MiB, which forces memtable
//! flushes when reached) and [`Backend::close`] flushes the memtable, so a cleanly closed
//! directory replays nothing and a crashed one at most 64 MiB.
//!
//! Memtable size: 8 MiB instead of fjall's 64 MiB (set when the keyspace is created; an
//! existing database keeps its own). Objects rewrite the same few keys, so the memtable is
//! mostly old versions: each write is a skiplist search over all of them, one cache miss per
//! level, on the commit thread, where it was 2/3 of the time with 64 MiB. A flush keeps only
//! the newest version of each key, so flushing more often costs little.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::backend::{Backend, Durability, ScanIter, Write};
use crate::error::{Error, Result};

const KEYSPACE: &str = "objects";
const MAX_JOURNAL_BYTES: u64 = 64 * 1024 * 1024;
const MAX_MEMTABLE_BYTES: u64 = 8 * 1024 * 1024;

/// The options of the objects keyspace, when it is created.
fn keyspace_options() -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default()
        .manual_journal_persist(true)
        .max_memtable_size(MAX_MEMTABLE_BYTES)
}

/// A [`Backend`] on a fjall database in a directory. Opening takes the directory's lock: a
/// second open of the same directory fails until the first is closed.
pub struct FjallBackend {
    path: PathBuf,
    open: RwLock<Option<Open>>,
}

struct Open {
    db: Database,
    objects: Keyspace,
}

impl std::fmt::Debug for FjallBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallBackend")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn storage_error(path: &Path, what: &str, err: fjall::Error) -> Error {
    Error::storage(format!("{what} {}: {err}", path.display()))
}

impl FjallBackend {
    /// Opens (or creates) the database in `path`.
    ///
    /// A new database is created under a temporary name beside `path` and renamed into
    /// place once complete, so a crash while creating it never leaves a half-made
    /// directory at `path` (fjall refuses to open one).
    pub fn open(path: impl AsRef<Path>) -> Result<FjallBackend> {
        let path = path.as_ref().to_path_buf();
        if is_missing_or_empty(&path)? {
            create(&path)?;
        }
        let db = Database::builder(&path)
            .manual_journal_persist(true)
            .max_journaling_size(MAX_JOURNAL_BYTES)
            .open()
            .map_err(|e| match e {
                fjall::Error::Locked => Error::storage(format!(
                    "data directory {} is in use by another runtime (its lock is held); \
                     shut that runtime down first",
                    path.display()
                )),
                e => storage_error(&path, "cannot open data directory", e),
            })?;
        let objects = db
            .keyspace(KEYSPACE, keyspace_options)
            .map_err(|e| storage_error(&path, "cannot open keyspace in", e))?;
        Ok(FjallBackend {
            path,
            open: RwLock::new(Some(Open { db, objects })),
        })
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with<R>(&self, f: impl FnOnce(&Open) -> Result<R>) -> Result<R> {
        let guard = self
            .open
            .read()
            .map_err(|_| Error::storage("fjall backend lock poisoned"))?;
        match guard.as_ref() {
            Some(open) => f(open),
            None => Err(Error::closed()),
        }
    }

    fn err(&self, what: &str) -> impl Fn(fjall::Error) -> Error + '_ {
        let what = what.to_owned();
        move |e| storage_error(&self.path, &what, e)
    }
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::storage(format!("cannot {what} {}: {e}", path.display()))
}

fn is_missing_or_empty(path: &Path) -> Result<bool> {
    match std::fs::read_dir(path) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io_error(path, "read data directory", e)),
    }
}

/// Creates a database at `path` atomically: built in `<path>.creating` (whatever a crash
/// left there was never opened by a runtime, so it is discarded), then renamed into place.
fn create(path: &Path) -> Result<()> {
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::storage(format!("{} is not a directory path", path.display())))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| io_error(&parent, "create", e))?;
    let mut staging_name = file_name.to_os_string();
    staging_name.push(".creating");
    let staging = parent.join(staging_name);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| io_error(&staging, "remove", e))?;
    }
    {
        let db = Database::builder(&staging)
            .manual_journal_persist(true)
            .max_journaling_size(MAX_JOURNAL_BYTES)
            .open()
            .map_err(|e| storage_error(&staging, "cannot create a database in", e))?;
        db.keyspace(KEYSPACE, keyspace_options)
            .map_err(|e| storage_error(&staging, "cannot create keyspace in", e))?;
        db.persist(PersistMode::SyncAll)
            .map_err(|e| storage_error(&staging, "sync failed in", e))?;
    }
    // An empty directory at `path` (e.g. made by the user) is replaced by the rename.
    if path.exists() {
        std::fs::remove_dir(path).map_err(|e| io_error(path, "replace empty directory", e))?;
    }
    std::fs::rename(&staging, path).map_err(|e| io_error(path, "move the new database to", e))?;
    // Make the rename itself durable.
    std::fs::File::open(&parent)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| io_error(&parent, "sync", e))
}

impl Backend for FjallBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.with(|open| {
            let value = open.objects.get(key).map_err(self.err("read failed in"))?;
            Ok(value.map(|v| v.to_vec()))
        })
    }

    fn scan(&self, start: Bound<&[u8]>, end: Bound<&[u8]>, reverse: bool) -> Result<ScanIter<'_>> {
        let objects = self.with(|open| Ok(open.objects.clone()))?;
        let iter = objects.range::<&[u8], _>((start, end));
        let map = move |guard: fjall::Guard| {
            guard
                .into_inner()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(self.err("scan failed in"))
        };
        Ok(if reverse {
            Box::new(iter.rev().map(map))
        } else {
            Box::new(iter.map(map))
        })
    }

    fn apply(&self, batch: &[Write<'_>]) -> Result<()> {
        self.with(|open| {
            let mut fj = fjall::OwnedWriteBatch::with_capacity(open.db.clone(), batch.len())
                .durability(None);
            for write in batch {
                match write.value {
                    Some(value) => fj.insert(&open.objects, write.key, value),
                    None => fj.remove(&open.objects, write.key),
                }
            }
            fj.commit().map_err(self.err("write failed in"))
        })
    }

    fn sync(&self, durability: Durability) -> Result<()> {
        let mode = match durability {
            Durability::Fsync => PersistMode::SyncData,
            Durability::Buffered => PersistMode::Buffer,
        };
        self.with(|open| open.db.persist(mode).map_err(self.err("sync failed in")))
    }

    fn close(&self) -> Result<()> {
        let mut guard = self
            .open
            .write()
            .map_err(|_| Error::storage("fjall backend lock poisoned"))?;
        let Some(open) = guard.take() else {
            return Ok(());
        };
        open.db
            .persist(PersistMode::SyncAll)
            .map_err(self.err("sync failed in"))?;
        // Flush the memtable so that the next open has no journal to replay.
        open.objects
            .rotate_memtable_and_wait()
            .map_err(self.err("flush failed in"))?;
        drop(open);
        Ok(())
    }
}

impl Drop for FjallBackend {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, "closing the fjall backend failed");
        }
    }
}
