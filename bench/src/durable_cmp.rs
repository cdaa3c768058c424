//! Acknowledged durable increments: ours against the raw fjall group-commit ceiling and SQLite
//! (WAL, `synchronous=FULL`, one transaction per write), same concurrency, same disk, rounds
//! interleaved.

use std::time::Duration;

use crate::{durable_increments_per_s, fjall_ceiling, line, median, sqlite};

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
