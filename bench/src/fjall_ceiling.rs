//! The raw fjall group-commit ceiling: what any runtime on fjall can acknowledge at best.
//!
//! `callers` writer tasks each queue a changing value for their key, then wait; a dedicated
//! thread loops: it takes everything queued, writes it as one fjall batch (no journal flush
//! of its own, every write kept: no merging of writes to one key), `persist`s it with
//! `PersistMode::SyncData`, and acknowledges those writers. That is group commit with
//! nothing else around it. (Writers inserting on the tokio workers themselves would block
//! them on fjall's journal lock, which `persist` holds through the fdatasync: a traffic
//! jam, not a ceiling.)

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use fjall::{Database, KeyspaceCreateOptions, PersistMode};
use tokio::sync::oneshot;

#[derive(Default)]
struct Pending {
    /// Key index, value, acknowledgement.
    writes: Mutex<Vec<(usize, u64, oneshot::Sender<()>)>>,
    wake: Condvar,
}

/// Acknowledged (fdatasync'ed) inserts per second: `callers` writers over `objects` keys.
pub async fn acks_per_s(objects: usize, callers: usize, dur: Duration) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::builder(dir.path())
        .manual_journal_persist(true)
        .open()
        .unwrap();
    let ks = db
        .keyspace("objects", || {
            // The runtime's memtable size (see durable-runtime/src/storage/fjall.rs).
            KeyspaceCreateOptions::default()
                .manual_journal_persist(true)
                .max_memtable_size(8 * 1024 * 1024)
        })
        .unwrap();
    let pending = Arc::new(Pending::default());
    let stop = Arc::new(AtomicBool::new(false));
    let keys: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..objects)
            .map(|i| format!("c{i:08}/value").into_bytes())
            .collect(),
    );
    let syncer = {
        let (db, ks, keys, pending, stop) = (
            db.clone(),
            ks.clone(),
            keys.clone(),
            pending.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || loop {
            let round = {
                let mut writes = pending.writes.lock().unwrap();
                while writes.is_empty() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    writes = pending
                        .wake
                        .wait_timeout(writes, Duration::from_millis(10))
                        .unwrap()
                        .0;
                }
                std::mem::take(&mut *writes)
            };
            let mut batch = db.batch().durability(None);
            for (key, value, _) in &round {
                batch.insert(&ks, &keys[*key], value.to_le_bytes());
            }
            batch.commit().unwrap();
            db.persist(PersistMode::SyncData).unwrap();
            for (_, _, ack) in round {
                let _ = ack.send(());
            }
        })
    };
    let next = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + dur;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..callers {
        let (keys, pending, next) = (keys.clone(), pending.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            let mut k = c;
            while Instant::now() < deadline {
                // A value that changes on every write.
                let value = next.fetch_add(1, Ordering::Relaxed);
                let (tx, rx) = oneshot::channel();
                pending
                    .writes
                    .lock()
                    .unwrap()
                    .push((k % keys.len(), value, tx));
                pending.wake.notify_one();
                rx.await.unwrap();
                k += callers;
                done += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    let rate = total as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    syncer.join().unwrap();
    rate
}
