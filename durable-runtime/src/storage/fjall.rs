//! The fjall backend: one fjall `Database` with one keyspace holding every object's keys.
//!
//! Every object's keys start with its 32-byte ID, so one object is one contiguous key range
//! and one class (whose IDs share an 8-byte tag) is one contiguous range too.
//!
//! Durability: batches go to fjall's journal without a flush of their own
//! (`durability(None)`); the commit thread then calls [`Backend::sync`], which is one
//! `persist(SyncData)` covering every batch applied before it (group commit).
//!
//! Start-up: fjall 3.1 reads at open every journal file it finds (`Database::recover` in
//! fjall's `db.rs` for the active journal, `recover_sealed_memtables` in `recovery.rs` for
//! sealed ones). It decodes and checksums every batch, and only then skips those whose
//! sequence number is already in tables, so replay costs about 1 µs per entry even when
//! everything was flushed. It seals (rotates) the active journal only when a flush finds it
//! past 64,000,000 bytes (a constant in `worker_tick`, fjall's `worker_pool.rs`), even
//! after a clean close, and has no call to seal it on demand. `max_journaling_size` (64 MiB
//! here, fjall's minimum) caps only the sealed journals: past it, fjall flushes the
//! memtables those journals still hold so it can delete them.
//!
//! So [`Backend::close`] flushes every memtable into tables, closes the database, and then,
//! holding fjall's directory lock, deletes the sealed journals and truncates the active one
//! to zero bytes (see `retire_journals`): a cleanly closed directory has nothing to
//! replay. After a crash, open reads what the journals hold: the active journal, up to
//! about 64 MB plus what arrived before the next flush, and a sealed journal whose memtable
//! was not flushed yet; no fjall setting lowers that 64 MB. Of those entries it re-inserts
//! the ones that were still in memtables, which costs about 4× skipping a flushed one.
//!
//! Memtables: 8 MiB (`MEMTABLE_BYTES`) instead of fjall's 64 MiB, for two reasons. Objects
//! rewrite the same few keys, so a memtable is mostly old versions: each write is a
//! skiplist search over all of them, one cache miss per level, on the commit thread (2/3 of
//! its time with 64 MiB); a flush keeps only the newest version of each key, so flushing
//! more often costs little. And a crash open re-inserts less.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use fjall::{AbstractTree, Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::backend::{Backend, Durability, ScanIter, Write};
use crate::error::{Error, Result};

const KEYSPACE: &str = "objects";
const MAX_JOURNAL_BYTES: u64 = 64 * 1024 * 1024;
/// fjall's memtable size (its default: 64 MiB); see the module documentation. After a crash,
/// open re-inserts every entry the memtables held (about 6 µs each on a loaded 2-core
/// machine, against 1.6 µs to skip a flushed one). fjall stores it with the keyspace when it
/// is created: a directory created before keeps the size it was created with.
const MEMTABLE_BYTES: u64 = 8 * 1024 * 1024;
/// How long [`Backend::close`] waits for fjall to flush its memtables.
const FLUSH_PATIENCE: Duration = Duration::from_secs(30);

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

fn keyspace_options() -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default()
        .manual_journal_persist(true)
        .max_memtable_size(MEMTABLE_BYTES)
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
        let flushed =
            flush_memtables(&open.objects, FLUSH_PATIENCE).map_err(self.err("flush failed in"))?;
        // Dropping the database stops fjall's workers and closes its journal.
        drop(open);
        if flushed {
            retire_journals(&self.path)?;
        } else {
            tracing::warn!(
                path = %self.path.display(),
                "fjall's memtables were not flushed within {FLUSH_PATIENCE:?} at close; \
                 the next open replays the journal"
            );
        }
        Ok(())
    }
}

/// Flushes every memtable of `objects` into tables: `Ok(true)` once none holds an entry,
/// `Ok(false)` if some still do after `patience` (a flush failed or is slow).
///
/// Polls instead of `rotate_memtable_and_wait`, which returns without waiting when a worker
/// rotated the memtable first, and waits forever if a worker died.
fn flush_memtables(objects: &Keyspace, patience: Duration) -> fjall::Result<bool> {
    let deadline = Instant::now() + patience;
    loop {
        // `None`: the active memtable and every sealed one are empty.
        if objects.tree.get_highest_memtable_seqno().is_none() {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        // Seals the active memtable (if it holds anything) and queues its flush.
        objects.rotate_memtable()?;
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Empties fjall's journals once the database in `path` is closed and everything in them
/// is in tables: removes the sealed journals and truncates the active one (the highest
/// number) to zero bytes.
///
/// fjall reads its whole active journal at open even when every entry in it was flushed
/// (see the module documentation); an empty one costs nothing. The active journal is
/// truncated, never removed: with no journal file at all, fjall would create a fresh one
/// and skip the step of recovery that restores the sequence number counter from the
/// tables, so new writes would get sequence numbers below the stored ones and be shadowed.
///
/// Runs under fjall's directory lock, so that no other process opens the database while
/// its journals change; if the lock is taken (another process opened the directory in the
/// meantime, or a handle of ours is still alive), it leaves the journals as they are.
fn retire_journals(path: &Path) -> Result<()> {
    let lock_path = path.join("lock");
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&lock_path)
        .map_err(|e| io_error(&lock_path, "open", e))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            tracing::warn!(
                path = %path.display(),
                "the data directory's lock is still held at close (a scan still open, or \
                 another process opened it); its journal is kept"
            );
            return Ok(());
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io_error(&lock_path, "lock", e)),
    }
    let mut journals = journal_files(path)?;
    let Some((_, active)) = journals.pop() else {
        return Ok(());
    };
    for (_, sealed) in &journals {
        std::fs::remove_file(sealed).map_err(|e| io_error(sealed, "remove", e))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(&active)
        .and_then(|file| {
            file.set_len(0)?;
            file.sync_all()
        })
        .map_err(|e| io_error(&active, "truncate", e))?;
    if !journals.is_empty() {
        std::fs::File::open(path)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| io_error(path, "sync", e))?;
    }
    drop(lock);
    Ok(())
}

/// fjall's journal files in `path` (`<number>.jnl`), by number.
fn journal_files(path: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut journals = Vec::new();
    let entries = std::fs::read_dir(path).map_err(|e| io_error(path, "read", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error(path, "read", e))?;
        let name = entry.file_name();
        let number = name
            .to_str()
            .and_then(|n| n.strip_suffix(".jnl"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(number) = number {
            journals.push((number, entry.path()));
        }
    }
    journals.sort();
    Ok(journals)
}

impl Drop for FjallBackend {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, "closing the fjall backend failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: u32 = 1000;

    fn put_all(backend: &FjallBackend, value: &[u8]) {
        for i in 0..KEYS {
            let key = i.to_be_bytes();
            backend
                .apply(&[Write {
                    key: &key,
                    value: Some(value),
                }])
                .unwrap();
        }
        backend.sync(Durability::Fsync).unwrap();
    }

    fn assert_all(backend: &FjallBackend, value: &[u8], when: &str) {
        for i in 0..KEYS {
            let got = backend.get(&i.to_be_bytes()).unwrap();
            assert_eq!(got.as_deref(), Some(value), "key {i} {when}");
        }
    }

    /// Journal files and their total size.
    fn journals(path: &Path) -> (usize, u64) {
        let files = journal_files(path).unwrap();
        let bytes = files
            .iter()
            .map(|(_, p)| std::fs::metadata(p).unwrap().len())
            .sum();
        (files.len(), bytes)
    }

    /// After a close the journal is empty, and the sequence numbers fjall hands out after
    /// the reopen are still above the stored ones: an overwrite wins even once compaction
    /// merges it with the value it replaced (with the journal file removed instead of
    /// emptied, fjall would restart its sequence numbers at 0 and the old value would win).
    #[test]
    fn close_empties_the_journal_and_later_writes_still_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let backend = FjallBackend::open(&path).unwrap();
        // Two rounds: the stored values' sequence numbers exceed the count of the later
        // overwrites, so numbers restarted at 0 would lose to them.
        put_all(&backend, b"older");
        put_all(&backend, b"old");
        backend.close().unwrap();
        assert_eq!(journals(&path), (1, 0), "one empty journal after the close");

        let backend = FjallBackend::open(&path).unwrap();
        assert_all(&backend, b"old", "after the reopen");
        put_all(&backend, b"new");
        backend
            .with(|open| {
                open.objects.rotate_memtable_and_wait().unwrap();
                open.objects.major_compact().unwrap();
                Ok(())
            })
            .unwrap();
        assert_all(
            &backend,
            b"new",
            "after the overwrite and a major compaction",
        );
        backend.close().unwrap();
        assert_eq!(journals(&path), (1, 0), "one empty journal after the close");

        let backend = FjallBackend::open(&path).unwrap();
        assert_all(&backend, b"new", "after the second reopen");
    }
}
