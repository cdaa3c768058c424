//! SQLite in WAL mode with `synchronous=FULL`, one transaction per write (what workerd's
//! per-object SQLite storage does for each `put`): the best a runtime without group commit
//! gets from SQLite. The callers share one connection (SQLite admits one writer at a time, and
//! a shared connection spares them the busy-wait sleeps of competing connections).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// Committed (fsync'ed) increments per second: `callers` threads over `objects` rows, each
/// write its own transaction (read the value, write it back plus one).
pub fn acks_per_s(objects: usize, callers: usize, dur: Duration) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::open(dir.path().join("kv.sqlite")).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE kv (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;",
    )
    .unwrap();
    let conn = Arc::new(Mutex::new(conn));
    let keys: Arc<Vec<String>> = Arc::new((0..objects).map(|i| format!("c{i:08}")).collect());
    let total = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + dur;
    let start = Instant::now();
    let threads: Vec<_> = (0..callers)
        .map(|c| {
            let (conn, keys, total) = (conn.clone(), keys.clone(), total.clone());
            std::thread::spawn(move || {
                let mut k = c;
                while Instant::now() < deadline {
                    let conn = conn.lock().unwrap();
                    // Autocommit: one transaction, one WAL fsync per write.
                    conn.execute(
                        "INSERT INTO kv (key, value) VALUES (?1, 1)
                         ON CONFLICT(key) DO UPDATE SET value = value + 1",
                        [&keys[k % keys.len()]],
                    )
                    .unwrap();
                    drop(conn);
                    total.fetch_add(1, Ordering::Relaxed);
                    k += callers;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    total.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}
