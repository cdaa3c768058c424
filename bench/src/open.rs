//! Open time: how long `Runtime::builder().data_dir(..).open()` takes on a directory that
//! already holds data, after the writer crashed (a child process aborts, no clean close) and
//! after a clean `shutdown()`.
//!
//! Two ways to fill the directory:
//! - `objects(n)`: `n` distinct objects, each with one counter value (its data key) and the
//!   name record the runtime writes with an object's first write: the issue's "1,000,000
//!   objects' data". Baselines: the 1 s target, and raw fjall opening the same keys
//!   bulk-loaded into a fresh database (tables only, no journal): the floor.
//! - `writes(n)`: `n` keys over 10,000 objects.

use std::path::Path;
use std::time::{Duration, Instant};

use durable_runtime::{Durability, Runtime};
use fjall::{Database, KeyspaceCreateOptions};

use crate::{line, median, Counter};

/// Open times, in seconds, and the bytes of fjall journal the directory held at each open.
pub struct OpenTimes {
    pub crashed: f64,
    pub crashed_journal: u64,
    pub clean: f64,
    pub clean_journal: u64,
}

/// The child's entry points; `true` if `argv` asked for one (it never returns then).
pub async fn child(argv: &[String]) -> bool {
    match argv.get(1).map(String::as_str) {
        Some("--fill-and-abort") => {
            fill_keys_and_abort(&argv[2], argv[3].parse().unwrap()).await;
            true
        }
        Some("--fill-objects-and-abort") => {
            fill_objects_and_abort(&argv[2], argv[3].parse().unwrap()).await;
            true
        }
        _ => false,
    }
}

/// Bytes of every fjall journal file (`*.jnl`) in the data directory.
pub fn journal_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "jnl"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Runs the filler child (`mode`), which aborts at the end; returns how long it ran.
fn run_filler(mode: &str, dir: &Path, n: u64) -> f64 {
    let exe = std::env::current_exe().unwrap();
    let start = Instant::now();
    let status = std::process::Command::new(&exe)
        .args([mode, dir.to_str().unwrap(), &n.to_string()])
        .status()
        .unwrap();
    assert!(!status.success(), "the filler should have aborted");
    start.elapsed().as_secs_f64()
}

fn timed_open(dir: &Path) -> (Runtime, f64, u64) {
    let journal = journal_bytes(dir);
    let start = Instant::now();
    let rt = Runtime::builder().data_dir(dir).open().unwrap();
    (rt, start.elapsed().as_secs_f64(), journal)
}

/// Crash, reopen, write, clean shutdown, reopen; `check` runs on each reopened runtime.
async fn crash_then_clean(dir: &Path, check: impl AsyncFn(&Runtime, bool)) -> OpenTimes {
    let (rt, crashed, crashed_journal) = timed_open(dir);
    check(&rt, false).await;
    rt.shutdown().await.unwrap();
    let (rt, clean, clean_journal) = timed_open(dir);
    check(&rt, true).await;
    rt.shutdown().await.unwrap();
    OpenTimes {
        crashed,
        crashed_journal,
        clean,
        clean_journal,
    }
}

/// `total` keys over 10,000 objects, then the two opens.
pub async fn writes(total: u64) -> OpenTimes {
    let dir = tempfile::tempdir().unwrap();
    run_filler("--fill-and-abort", dir.path(), total);
    sync_tree(dir.path());
    let times = crash_then_clean(dir.path(), async |rt: &Runtime, again: bool| {
        let stub = rt.namespace::<Counter>().get_by_name("o0");
        let expected = if again { 2 } else { 1 };
        assert_eq!(stub.increment(1).await.unwrap(), expected);
    })
    .await;
    keep(dir);
    times
}

/// `objects` distinct objects with one counter value each, filled once; then `rounds` opens
/// of a fresh copy of the crashed directory, one clean shutdown, `rounds` opens of the
/// cleanly closed directory, and `rounds` opens of raw fjall on the same keys. Returns the
/// median open times and the median raw fjall floor, in seconds.
pub async fn objects(objects: u64, rounds: usize) -> (OpenTimes, f64) {
    let dir = tempfile::tempdir().unwrap();
    let fill = run_filler("--fill-objects-and-abort", dir.path(), objects);
    sync_tree(dir.path());
    // The filler wrote 1 to every object; the first and the last are read back each time
    // (increment 0 leaves the data as it was).
    let check = async |rt: &Runtime| {
        let ns = rt.namespace::<Counter>();
        for name in ["o0".to_string(), format!("o{}", objects - 1)] {
            assert_eq!(ns.get_by_name(&name).increment(0).await.unwrap(), 1);
        }
    };
    let mut crashed = Vec::new();
    let mut crashed_journal = 0;
    for _ in 0..rounds {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        let (rt, secs, journal) = timed_open(copy.path());
        check(&rt).await;
        rt.shutdown().await.unwrap();
        crashed.push(secs);
        crashed_journal = journal;
    }
    // Recover the original once, close it cleanly, then reopen it.
    let (rt, _, _) = timed_open(dir.path());
    rt.shutdown().await.unwrap();
    let mut clean = Vec::new();
    let mut clean_journal = 0;
    for _ in 0..rounds {
        let (rt, secs, journal) = timed_open(dir.path());
        check(&rt).await;
        rt.shutdown().await.unwrap();
        clean.push(secs);
        clean_journal = journal;
    }
    let floor = raw_fjall_open(dir.path(), rounds);
    println!(
        "open, {objects} objects: fill {fill:.1} s; fjall journal files at open: {:.1} MiB \
         after the crash (a new journal file is preallocated to 64 MiB), {:.1} MiB after the \
         clean shutdown; medians of {rounds}",
        crashed_journal as f64 / 1048576.0,
        clean_journal as f64 / 1048576.0,
    );
    keep(dir);
    let times = OpenTimes {
        crashed: median(crashed),
        crashed_journal,
        clean: median(clean),
        clean_journal,
    };
    (times, floor)
}

/// Copies a directory tree (a closed or crashed data directory), then syncs the copy.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
    sync_tree(to);
}

/// fsyncs every file and directory under `dir`, so that an open timed next does not pay
/// for writing out pages a copy (or the buffered filler) left dirty: with the runtime's
/// default durability, what a crash leaves is already on disk.
fn sync_tree(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            sync_tree(&entry.path());
        } else {
            std::fs::File::open(entry.path())
                .unwrap()
                .sync_all()
                .unwrap();
        }
    }
    std::fs::File::open(dir).unwrap().sync_all().unwrap();
}

fn keep(dir: tempfile::TempDir) {
    if let Ok(keep) = std::env::var("DURABLE_BENCH_KEEP") {
        std::fs::rename(dir.path(), keep).unwrap();
    }
}

/// Copies every key of the runtime's directory into a fresh fjall database by bulk
/// ingestion (tables only, no journal), closes it, and times opening it and its keyspace
/// (median of `rounds`).
fn raw_fjall_open(runtime_dir: &Path, rounds: usize) -> f64 {
    let copy = tempfile::tempdir().unwrap();
    {
        let src = Database::builder(runtime_dir).open().unwrap();
        let src_ks = src
            .keyspace("objects", KeyspaceCreateOptions::default)
            .unwrap();
        let dst = Database::builder(copy.path()).open().unwrap();
        let dst_ks = dst
            .keyspace("objects", KeyspaceCreateOptions::default)
            .unwrap();
        let mut ingestion = dst_ks.start_ingestion().unwrap();
        for kv in src_ks.iter() {
            let (k, v) = kv.into_inner().unwrap();
            ingestion.write(k, v).unwrap();
        }
        ingestion.finish().unwrap();
        dst.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let mut times = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        let db = Database::builder(copy.path()).open().unwrap();
        let ks = db
            .keyspace("objects", KeyspaceCreateOptions::default)
            .unwrap();
        times.push(start.elapsed().as_secs_f64());
        drop((ks, db));
    }
    median(times)
}

/// Prints the `--objects` lines.
pub fn print_objects(objects: u64, times: &OpenTimes, floor: f64) {
    let clean = format!("open after a clean shutdown, {objects} objects");
    let crashed = format!("open after a crash, {objects} objects");
    line(&clean, times.clean, "target", 1.0, "s", true);
    line(
        &clean,
        times.clean,
        "raw fjall, same keys bulk-loaded (no journal)",
        floor,
        "s",
        true,
    );
    line(&crashed, times.crashed, "target", 1.0, "s", true);
}

pub fn print_writes(total: u64, times: &OpenTimes) {
    println!(
        "open after {total} writes: clean shutdown {:.3} s (journal files {:.1} MiB), after \
         kill {:.3} s (journal files {:.1} MiB)",
        times.clean,
        times.clean_journal as f64 / 1048576.0,
        times.crashed,
        times.crashed_journal as f64 / 1048576.0,
    );
}

/// Gives each of `objects` objects one counter value (its data key and its name record),
/// from 256 concurrent callers, then aborts: the crash case. Buffered durability (no fsync
/// per batch) and a short idle timeout keep the fill fast and its memory flat; neither
/// changes what is on disk after the abort (the page cache outlives the process).
async fn fill_objects_and_abort(dir: &str, objects: u64) {
    let rt = Runtime::builder()
        .data_dir(dir)
        .durability(Durability::Buffered)
        .idle_timeout(Duration::from_secs(1))
        .open()
        .unwrap();
    let ns = rt.namespace::<Counter>();
    let callers = 256u64;
    let mut tasks = Vec::new();
    for c in 0..callers {
        let ns = ns.clone();
        tasks.push(tokio::spawn(async move {
            let mut o = c;
            while o < objects {
                ns.get_by_name(&format!("o{o}")).increment(1).await.unwrap();
                o += callers;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    std::process::abort();
}

/// Writes `total` keys over 10,000 objects (batches of 100 keys per call), then aborts.
async fn fill_keys_and_abort(dir: &str, total: u64) {
    let rt = Runtime::builder().data_dir(dir).open().unwrap();
    let ns = rt.namespace::<Counter>();
    let objects = 10_000u64;
    let per_object = total / objects;
    let mut tasks = Vec::new();
    for worker in 0..64u64 {
        let ns = ns.clone();
        tasks.push(tokio::spawn(async move {
            let mut o = worker;
            while o < objects {
                let stub = ns.get_by_name(&format!("o{o}"));
                let mut i = 0;
                while i < per_object {
                    let n = (per_object - i).min(100);
                    stub.fill(i, n).await.unwrap();
                    i += n;
                }
                o += 64;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    std::process::abort();
}
