//! The raw fjall group-commit ceiling: what any runtime on fjall can acknowledge at best.
//!
//! `callers` writer tasks each insert a changing value (no journal flush of their own), then
//! wait; a dedicated thread loops on `persist(PersistMode::SyncData)` and acknowledges every
//! writer whose insert preceded that persist (a writer queues its acknowledgement only after
//! its insert returned, and the thread takes the queue before persisting).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use fjall::{Database, KeyspaceCreateOptions, PersistMode};
use tokio::sync::oneshot;

#[derive(Default)]
struct Pending {
    acks: Mutex<Vec<oneshot::Sender<()>>>,
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
            KeyspaceCreateOptions::default().manual_journal_persist(true)
        })
        .unwrap();
    let pending = Arc::new(Pending::default());
    let stop = Arc::new(AtomicBool::new(false));
    let syncer = {
        let (db, pending, stop) = (db.clone(), pending.clone(), stop.clone());
        std::thread::spawn(move || loop {
            let batch = {
                let mut acks = pending.acks.lock().unwrap();
                while acks.is_empty() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    acks = pending
                        .wake
                        .wait_timeout(acks, Duration::from_millis(10))
                        .unwrap()
                        .0;
                }
                std::mem::take(&mut *acks)
            };
            db.persist(PersistMode::SyncData).unwrap();
            for ack in batch {
                let _ = ack.send(());
            }
        })
    };
    let keys: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..objects)
            .map(|i| format!("c{i:08}/value").into_bytes())
            .collect(),
    );
    let next = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + dur;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..callers {
        let (ks, keys, pending, next) = (ks.clone(), keys.clone(), pending.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            let mut k = c;
            while Instant::now() < deadline {
                // A value that changes on every write.
                let value = next.fetch_add(1, Ordering::Relaxed);
                ks.insert(&keys[k % keys.len()], value.to_le_bytes())
                    .unwrap();
                let (tx, rx) = oneshot::channel();
                pending.acks.lock().unwrap().push(tx);
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
