//! `cargo run --release -p durable-bench -- [--quick]` (`--load`: 1,000,000 calls, 10,000
//! objects, 256 callers; elapsed time and peak RSS; `--open-only [--objects N | --writes N]`:
//! open time only, see `open.rs`; `--durable-only`: the durable increments against the raw
//! fjall ceiling and SQLite only; `--tput`: see `tput.rs`; `--remote`: remote calls over
//! loopback against a raw TCP protocol and tonic gRPC, see `remote.rs`; `--http` and `--ws`:
//! ours against workerd, see `http.rs` and `websocket.rs`; `--postgres`: objects stored in
//! PostgreSQL against the raw PostgreSQL ceiling and our fjall backend, on a private server,
//! see `postgres.rs`; `--cluster`: the HTTP counter as a cluster of three processes against
//! one, forwarded calls against calls to the owner, and failover time, see `cluster.rs`)
//!
//! Every figure is measured next to a baseline in the same run and printed as
//! `NAME: ours X UNIT, BASELINE Y UNIT, ratio R` (ratio > 1: we are better).

use std::sync::Arc;
use std::time::{Duration, Instant};

use durable_runtime::{durable_object, Context, Result, Runtime};
use tokio::sync::{mpsc, oneshot};

mod actors;
mod cluster;
mod durable_cmp;
mod fjall_ceiling;
mod http;
mod open;
mod postgres;
mod remote;
mod sqlite;
mod tput;
mod websocket;
mod ws_floor;

/// A counter kept in a field: measures the call path alone.
#[durable_object]
pub struct Pinger {
    calls: u64,
}

#[durable_object]
impl Pinger {
    pub fn new(_ctx: Context) -> Self {
        Pinger { calls: 0 }
    }

    pub async fn ping(&self, x: u64) -> u64 {
        x + self.calls
    }

    pub async fn bump(&mut self, x: u64) -> u64 {
        self.calls += 1;
        x + self.calls
    }
}

/// The seed's counter: a durable increment per call.
#[durable_object]
pub struct Counter {
    ctx: Context,
}

#[durable_object]
impl Counter {
    pub fn new(ctx: Context) -> Self {
        Counter { ctx }
    }

    pub async fn increment(&mut self, amount: i64) -> Result<i64> {
        let value = self.ctx.storage().get::<i64>("value")?.unwrap_or(0) + amount;
        self.ctx.storage_mut().put("value", &value)?;
        Ok(value)
    }

    pub async fn value(&self) -> Result<i64> {
        Ok(self.ctx.storage().get::<i64>("value")?.unwrap_or(0))
    }

    pub async fn fill(&mut self, start: u64, count: u64) -> Result<()> {
        for i in start..start + count {
            self.ctx.storage_mut().put(&format!("k{i:08}"), &i)?;
        }
        Ok(())
    }
}

/// The smallest object: its context only.
#[durable_object]
pub struct Idle {
    ctx: Context,
}

#[durable_object]
impl Idle {
    pub fn new(ctx: Context) -> Self {
        Idle { ctx }
    }

    pub async fn touch(&self) -> Result<bool> {
        Ok(self.ctx.id().name().is_some())
    }
}

/// Resident memory of this process, in bytes.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Bytes of resident memory per active idle object (activated, then left alone), beyond
/// the user's struct (here: a `Context`).
async fn memory_per_active_object(objects: usize) -> f64 {
    let rt = Runtime::in_memory();
    let ns = rt.namespace::<Idle>();
    // Warm up allocator pools and the runtime before measuring.
    for i in 0..1000 {
        ns.get_by_name(&format!("warm{i}")).touch().await.unwrap();
    }
    let before = rss_bytes();
    let mut tasks = Vec::new();
    for w in 0..64usize {
        let ns = ns.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < objects {
                ns.get_by_name(&format!("o{i}")).touch().await.unwrap();
                i += 64;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let after = rss_bytes();
    assert_eq!(ns.live_objects(), objects + 1000);
    (after.saturating_sub(before)) as f64 / objects as f64
}

/// Objects whose data the open-time measurement reopens (the target: under 1 s), and in
/// `--quick` runs (filling 1,000,000 objects takes over a minute).
const OPEN_OBJECTS: u64 = 1_000_000;
const OPEN_OBJECTS_QUICK: u64 = 200_000;

struct Args {
    quick: bool,
    rounds: usize,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    xs[xs.len() / 2]
}

fn line(
    name: &str,
    ours: f64,
    baseline_name: &str,
    baseline: f64,
    unit: &str,
    lower_is_better: bool,
) {
    let ratio = if lower_is_better {
        baseline / ours
    } else {
        ours / baseline
    };
    println!(
        "{name}: ours {ours:.3} {unit}, {baseline_name} {baseline:.3} {unit}, ratio {ratio:.2}"
    );
}

/// One caller, sequential round trips through a bounded mpsc + oneshot: the floor of any
/// actor call in tokio.
async fn raw_round_trip_ns(n: u64) -> f64 {
    let (tx, mut rx) = mpsc::channel::<(u64, oneshot::Sender<u64>)>(4096);
    tokio::spawn(async move {
        while let Some((x, reply)) = rx.recv().await {
            let _ = reply.send(x + 1);
        }
    });
    let start = Instant::now();
    for i in 0..n {
        let (otx, orx) = oneshot::channel();
        tx.send((i, otx)).await.unwrap();
        std::hint::black_box(orx.await.unwrap());
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

async fn call_ns(n: u64, exclusive: bool) -> f64 {
    let rt = Runtime::in_memory();
    let stub = rt.namespace::<Pinger>().get_by_name("p");
    stub.ping(0).await.unwrap();
    let start = Instant::now();
    for i in 0..n {
        let v = if exclusive {
            stub.bump(i).await
        } else {
            stub.ping(i).await
        };
        std::hint::black_box(v.unwrap());
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

/// Acknowledged (fsync'ed) increments per second with `callers` concurrent callers spread
/// over `objects` objects.
async fn durable_increments_per_s(objects: usize, callers: usize, dur: Duration) -> f64 {
    tput::increments(tput::Store::Fsync, objects, callers, dur)
        .await
        .rate
}

/// One fdatasync'ed write per call, as the seed's counter does on workerd: the naive baseline.
fn fsync_per_write_per_s(dur: Duration) -> f64 {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut f = std::fs::File::create(dir.path().join("log")).unwrap();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < dur {
        f.write_all(&n.to_le_bytes()).unwrap();
        f.sync_data().unwrap();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if open::child(&argv).await {
        return;
    }
    let quick = argv.iter().any(|a| a == "--quick");
    if argv.iter().any(|a| a == "--calls-only") {
        // `--n N` and `--only raw|shared|exclusive` let a profiler (callgrind) count the
        // instructions of one kind of call: run two N and subtract.
        let n = match argv.iter().position(|a| a == "--n") {
            Some(i) => argv[i + 1].parse().expect("--n N"),
            None => 1_000_000,
        };
        let only = argv
            .iter()
            .position(|a| a == "--only")
            .map(|i| argv[i + 1].as_str());
        let run = |kind: &str| only.is_none_or(|o| o == kind);
        let raw = if run("raw") {
            tokio::spawn(raw_round_trip_ns(n)).await.unwrap()
        } else {
            f64::NAN
        };
        let shared = if run("shared") {
            tokio::spawn(call_ns(n, false)).await.unwrap()
        } else {
            f64::NAN
        };
        let exclusive = if run("exclusive") {
            tokio::spawn(call_ns(n, true)).await.unwrap()
        } else {
            f64::NAN
        };
        line(
            "local shared call, 1 caller",
            shared,
            "tokio mpsc+oneshot",
            raw,
            "ns/call",
            true,
        );
        line(
            "local exclusive call, 1 caller",
            exclusive,
            "tokio mpsc+oneshot",
            raw,
            "ns/call",
            true,
        );
        return;
    }
    if argv.iter().any(|a| a == "--memory-only") {
        let objects = if quick { 100_000 } else { 1_000_000 };
        let per_object = tokio::spawn(memory_per_active_object(objects))
            .await
            .unwrap();
        println!("memory per active idle object: {per_object:.0} bytes RSS over {objects} objects (the user's struct: {} bytes)", std::mem::size_of::<Idle>());
        return;
    }
    if argv.iter().any(|a| a == "--open-only") {
        if let Some(i) = argv.iter().position(|a| a == "--writes") {
            let total = argv[i + 1].parse().expect("--writes N");
            open::print_writes(total, &open::writes(total).await);
            return;
        }
        let objects = match argv.iter().position(|a| a == "--objects") {
            Some(i) => argv[i + 1].parse().expect("--objects N"),
            None if quick => OPEN_OBJECTS_QUICK,
            None => OPEN_OBJECTS,
        };
        let (times, floor) = open::objects(objects, if quick { 1 } else { 3 }).await;
        open::print_objects(objects, &times, floor);
        return;
    }
    if argv.iter().any(|a| a == "--http") {
        http::run(&argv, quick).await;
        return;
    }
    if argv.get(1).is_some_and(|a| a == "--ws-floor-server") {
        ws_floor::run(&argv[2]).await;
        return;
    }
    if argv.iter().any(|a| a == "--ws") {
        websocket::run(&argv, quick).await;
        return;
    }
    if argv.iter().any(|a| a == "--durable-only") {
        let dur = Duration::from_secs(if quick { 2 } else { 5 });
        println!(
            "disk: one write + fdatasync per write {:.0} /s",
            fsync_per_write_per_s(dur)
        );
        durable_cmp::run(if quick { 1 } else { 3 }, dur).await;
        return;
    }
    if argv.iter().any(|a| a == "--remote") {
        remote::print(&remote::run(&remote::Config::new(quick)).await);
        return;
    }
    if argv.iter().any(|a| a == "--cluster") {
        cluster::run(&argv, quick).await;
        return;
    }
    if argv.iter().any(|a| a == "--postgres") {
        postgres::run(&argv, quick).await;
        return;
    }
    if argv.iter().any(|a| a == "--tput") {
        tput::run(&argv).await;
        return;
    }
    if argv.iter().any(|a| a == "--load") {
        let calls = match argv.iter().position(|a| a == "--calls") {
            Some(i) => argv[i + 1].parse().expect("--calls N"),
            None => 1_000_000,
        };
        load(calls, 10_000, 256).await;
        return;
    }
    let args = Args {
        quick,
        rounds: if quick { 1 } else { 5 },
    };
    let n = if args.quick { 200_000 } else { 1_000_000 };
    let dur = Duration::from_secs(if args.quick { 2 } else { 5 });

    // Local calls against tokio, kameo and ractor; then durable increments against the raw
    // fjall group-commit ceiling and SQLite (bench/src/actors.rs, bench/src/durable_cmp.rs).
    let call_dur = Duration::from_secs(if args.quick { 1 } else { 2 });
    actors::run(args.rounds, n, call_dur).await;
    println!(
        "disk: one write + fdatasync per write {:.0} /s",
        fsync_per_write_per_s(dur)
    );
    durable_cmp::run(args.rounds.min(3), dur).await;

    let objects = if args.quick { 100_000 } else { 1_000_000 };
    let per_object = tokio::spawn(memory_per_active_object(objects))
        .await
        .unwrap();
    let user = std::mem::size_of::<Idle>();
    println!(
        "memory per active idle object: {per_object:.0} bytes RSS over {objects} objects \
         (the user's struct: {user} bytes)"
    );

    let objects = if args.quick {
        OPEN_OBJECTS_QUICK
    } else {
        OPEN_OBJECTS
    };
    let (times, floor) = open::objects(objects, args.rounds.min(3)).await;
    open::print_objects(objects, &times, floor);
}

/// Peak resident memory of this process (`VmHWM`), in bytes.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// `--load`: `calls` acknowledged (fsync'ed) increments spread over `objects` objects from
/// `callers` concurrent callers; prints the elapsed time and the peak RSS (`VmHWM`), and the
/// peak after the first half, so that growth between the halves is visible.
async fn load(calls: u64, objects: usize, callers: usize) {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::builder().data_dir(dir.path()).open().unwrap();
    let ns = rt.namespace::<Counter>();
    let stubs: Arc<Vec<_>> = Arc::new(
        (0..objects)
            .map(|i| ns.get_by_name(&format!("c{i}")))
            .collect(),
    );
    let start = Instant::now();
    let mut half_peak = 0;
    for half in 0..2u64 {
        let mut tasks = Vec::new();
        for c in 0..callers as u64 {
            let stubs = stubs.clone();
            tasks.push(tokio::spawn(async move {
                let mut k = c + half * calls / 2;
                let end = (half + 1) * calls / 2;
                while k < end {
                    stubs[(k as usize) % stubs.len()]
                        .increment(1)
                        .await
                        .unwrap();
                    k += callers as u64;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        if half == 0 {
            half_peak = peak_rss_bytes();
        }
    }
    let elapsed = start.elapsed();
    let peak = peak_rss_bytes();
    rt.shutdown().await.unwrap();
    println!(
        "load: {calls} calls over {objects} objects from {callers} callers in {:.2} s \
         ({:.0} calls/s); peak RSS {:.1} MiB (after the first half: {:.1} MiB)",
        elapsed.as_secs_f64(),
        calls as f64 / elapsed.as_secs_f64(),
        peak as f64 / 1048576.0,
        half_peak as f64 / 1048576.0,
    );
}
