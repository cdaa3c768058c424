//! Acknowledged durable increments: ours against the raw fjall group-commit ceiling and SQLite
//! (WAL, `synchronous=FULL`, one transaction per write), same concurrency, same disk, rounds
//! interleaved.

use std::time::{Duration, Instant};

use durable_runtime::Runtime;

use crate::{durable_increments_per_s, fjall_ceiling, line, median, sqlite, Counter};

/// Storage syncs per acknowledged increment on one object with `callers` callers: 1.0 at
/// one caller would mean one fsync per call; more means syncs that carried no new write.
async fn syncs_per_ack(callers: usize, dur: Duration) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::builder().data_dir(dir.path()).open().unwrap();
    let stub = rt.namespace::<Counter>().get_by_name("c0");
    stub.increment(1).await.unwrap();
    let before = rt.sync_count();
    let deadline = Instant::now() + dur;
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let stub = stub.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                stub.increment(1).await.unwrap();
                done += 1;
            }
            done
        }));
    }
    let mut acks = 0;
    for t in tasks {
        acks += t.await.unwrap();
    }
    let syncs = rt.sync_count() - before;
    rt.shutdown().await.unwrap();
    syncs as f64 / acks as f64
}

/// (objects, callers): one hot object at rising concurrency, then many objects.
const CASES: [(usize, usize); 5] = [(1, 1), (1, 16), (1, 64), (1, 256), (10_000, 256)];

pub async fn run(rounds: usize, dur: Duration) {
    let mut ours = vec![Vec::new(); CASES.len()];
    let mut ceiling = vec![Vec::new(); CASES.len()];
    let mut lite = vec![Vec::new(); CASES.len()];
    for _ in 0..rounds {
        for (i, &(objects, callers)) in CASES.iter().enumerate() {
            ours[i].push(durable_increments_per_s(objects, callers, dur).await);
            ceiling[i].push(fjall_ceiling::acks_per_s(objects, callers, dur).await);
            lite[i].push(
                tokio::task::spawn_blocking(move || sqlite::acks_per_s(objects, callers, dur))
                    .await
                    .unwrap(),
            );
        }
    }
    let dur = dur.min(Duration::from_secs(2));
    println!(
        "storage syncs per acknowledged increment, 1 object: 1 caller {:.2}, 64 callers {:.3}",
        syncs_per_ack(1, dur).await,
        syncs_per_ack(64, dur).await,
    );
    for (i, &(objects, callers)) in CASES.iter().enumerate() {
        let name = format!(
            "durable increments, {objects} object{}, {callers} caller{}",
            if objects == 1 { "" } else { "s" },
            if callers == 1 { "" } else { "s" },
        );
        let ours = median(ours[i].clone());
        line(
            &name,
            ours,
            "raw fjall group-commit ceiling",
            median(ceiling[i].clone()),
            "acks/s",
            false,
        );
        line(
            &name,
            ours,
            "SQLite WAL synchronous=FULL, 1 txn/write",
            median(lite[i].clone()),
            "acks/s",
            false,
        );
    }
}
