//! `--tput`: acknowledged increments per second, with the CPU each thread group spent per
//! acknowledgement, on fjall with fsync, on fjall without fsync, in memory, and the raw
//! fjall group-commit ceiling. For finding where the CPU goes (run under `perf record`
//! with `--only`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use durable_runtime::{Durability, Runtime};

use crate::{fjall_ceiling, median, Counter};

/// The storage under [`increments`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// fjall, replies after `fdatasync` (the default).
    Fsync,
    /// fjall, replies once the journal is handed to the OS (no fsync).
    Buffered,
    /// The in-memory backend: no fjall at all.
    Memory,
}

/// CPU time a task (a thread, or a single-threaded process) has run, in nanoseconds, from
/// its `/proc` directory: `schedstat`'s run time (exact), else `stat`'s user and system
/// clock ticks (10 ms each).
pub(crate) fn task_cpu_ns(dir: &std::path::Path) -> Option<u64> {
    if let Ok(schedstat) = std::fs::read_to_string(dir.join("schedstat")) {
        if let Some(ns) = schedstat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
        {
            return Some(ns);
        }
    }
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: state is field 3; utime and stime are fields 14 and 15.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 10_000_000)
}

/// CPU time of this process's live threads, in nanoseconds, by thread, with each thread's
/// group.
pub(crate) fn thread_cpu() -> HashMap<u32, (String, u64)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(tid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        let Some(ns) = task_cpu_ns(&entry.path()) else {
            continue;
        };
        let group = if comm.starts_with("tokio-rt") {
            "workers"
        } else if comm.starts_with("durable-commit") {
            "commit"
        } else if comm.starts_with("fjall") {
            "fjall"
        } else if comm.starts_with("durable-postgre") {
            // The PostgreSQL backend's client thread (`durable-postgres`, cut to 15 bytes).
            "pg client"
        } else {
            "other"
        };
        out.insert(tid, (group.to_owned(), ns));
    }
    out
}

/// CPU seconds spent by each thread group between two snapshots.
pub(crate) fn cpu_between(
    before: &HashMap<u32, (String, u64)>,
    after: &HashMap<u32, (String, u64)>,
) -> Vec<(String, f64)> {
    let mut groups: HashMap<String, u64> = HashMap::new();
    for (tid, (group, ns)) in after {
        let old = before.get(tid).map_or(0, |(_, t)| *t);
        *groups.entry(group.clone()).or_default() += ns.saturating_sub(old);
    }
    let mut out: Vec<(String, f64)> = groups
        .into_iter()
        .map(|(g, ns)| (g, ns as f64 / 1e9))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// One measured run.
pub struct Run {
    /// Acknowledged increments per second.
    pub rate: f64,
    /// Acknowledged increments.
    pub acks: u64,
    /// CPU seconds by thread group during the run.
    pub cpu: Vec<(String, f64)>,
    /// Storage syncs (commit rounds with a sync) during the run, if known.
    pub syncs: Option<u64>,
}

impl Run {
    fn describe(&self, secs: f64) -> String {
        let total: f64 = self.cpu.iter().map(|(_, c)| c).sum();
        let per_ack = |c: f64| c * 1e6 / self.acks.max(1) as f64;
        let groups: Vec<String> = self
            .cpu
            .iter()
            .map(|(g, c)| format!("{g} {:.1}", per_ack(*c)))
            .collect();
        let syncs = self.syncs.map_or(String::new(), |s| {
            format!(
                ", {:.0} syncs/s, {:.1} acks/sync",
                s as f64 / secs,
                self.acks as f64 / s.max(1) as f64
            )
        });
        format!(
            "{:.0} acks/s; CPU {:.2} cores, {:.1} us/ack ({}){syncs}",
            self.rate,
            total / secs,
            per_ack(total),
            groups.join(", ")
        )
    }
}

/// Acknowledged increments on `store`, `callers` callers over `objects` objects.
pub async fn increments(store: Store, objects: usize, callers: usize, dur: Duration) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let rt = match store {
        Store::Fsync => Runtime::builder().data_dir(dir.path()).open(),
        Store::Buffered => Runtime::builder()
            .data_dir(dir.path())
            .durability(Durability::Buffered)
            .open(),
        Store::Memory => Runtime::builder().in_memory().open(),
    }
    .unwrap();
    let ns = rt.namespace::<Counter>();
    let stubs: Arc<Vec<_>> = Arc::new(
        (0..objects)
            .map(|i| ns.get_by_name(&format!("c{i}")))
            .collect(),
    );
    let syncs_before = rt.sync_count();
    let cpu_before = thread_cpu();
    let deadline = Instant::now() + dur;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..callers {
        let stubs = stubs.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            let mut k = c;
            while Instant::now() < deadline {
                stubs[k % stubs.len()].increment(1).await.unwrap();
                k += callers;
                done += 1;
            }
            done
        }));
    }
    let mut acks = 0;
    for t in tasks {
        acks += t.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_between(&cpu_before, &thread_cpu());
    let syncs = rt.sync_count() - syncs_before;
    rt.shutdown().await.unwrap();
    Run {
        rate: acks as f64 / elapsed,
        acks,
        cpu,
        syncs: Some(syncs),
    }
}

async fn ceiling(objects: usize, callers: usize, dur: Duration) -> Run {
    let cpu_before = thread_cpu();
    let rate = fjall_ceiling::acks_per_s(objects, callers, dur).await;
    let cpu = cpu_between(&cpu_before, &thread_cpu());
    Run {
        rate,
        acks: (rate * dur.as_secs_f64()) as u64,
        cpu,
        syncs: None,
    }
}

/// `--tput [--objects N] [--callers N] [--secs S] [--rounds R]
/// [--only fsync|ceiling|buffered|memory]`: rounds interleaved (default: 10,000 objects, 256
/// callers, 3 s, 3 rounds, all four kinds).
pub async fn run(argv: &[String]) {
    let arg = |name: &str| {
        argv.iter()
            .position(|a| a == name)
            .map(|i| argv[i + 1].clone())
    };
    let objects: usize = arg("--objects").map_or(10_000, |v| v.parse().unwrap());
    let callers: usize = arg("--callers").map_or(256, |v| v.parse().unwrap());
    let secs: f64 = arg("--secs").map_or(3.0, |v| v.parse().unwrap());
    let rounds: usize = arg("--rounds").map_or(3, |v| v.parse().unwrap());
    let only = arg("--only");
    let dur = Duration::from_secs_f64(secs);
    let kinds = ["fsync", "ceiling", "buffered", "memory"];
    let mut results = vec![Vec::new(); kinds.len()];
    for _ in 0..rounds {
        for (i, kind) in kinds.iter().enumerate() {
            if only
                .as_deref()
                .is_some_and(|o| !o.split(',').any(|o| o == *kind))
            {
                continue;
            }
            let run = match *kind {
                "fsync" => increments(Store::Fsync, objects, callers, dur).await,
                "buffered" => increments(Store::Buffered, objects, callers, dur).await,
                "memory" => increments(Store::Memory, objects, callers, dur).await,
                _ => ceiling(objects, callers, dur).await,
            };
            println!("{kind}: {}", run.describe(secs));
            results[i].push(run.rate);
        }
    }
    for (i, kind) in kinds.iter().enumerate() {
        if !results[i].is_empty() {
            println!(
                "{objects} objects, {callers} callers, {kind}: median {:.0} acks/s over {} rounds",
                median(results[i].clone()),
                results[i].len()
            );
        }
    }
}
