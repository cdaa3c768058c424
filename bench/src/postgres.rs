//! `--postgres [--quick]`: acknowledged increments with the objects stored in PostgreSQL,
//! against the raw PostgreSQL ceiling and our fjall backend, all on one private server
//! started for the run; where the time goes; and the cost of activating objects whose stored
//! state loads from SQL.
//!
//! The server is `durable_tests::postgres::PgServer` (a fresh cluster on a free loopback
//! port) with the server's durability defaults, `fsync = on` and `synchronous_commit = on`.
//! The one setting changed is `max_connections` (the raw ceiling opens 256 clients).
//!
//! - **raw ceiling**: N tokio-postgres clients, one connection each, each looping
//!   `UPDATE counters SET v = v + 1 WHERE id = $1` in autocommit: one transaction, and one
//!   wait for its WAL flush, per update. 64 clients on one row; 256 clients over 10,000 rows
//!   (a random row per update). Committed updates per second.
//! - **ours on PostgreSQL**: the seed's counter (`Counter::increment`) on a runtime whose
//!   backend is the [`PostgresBackend`] that `Runtime::builder().postgres(url)` opens,
//!   wrapped to time each commit round ([`TimedBackend`]). 64 callers on one object; 256
//!   callers over 10,000 objects. Every object is warmed (activated and incremented once)
//!   before the measured window. Acknowledged increments per second.
//! - **ours on fjall**: the same two workloads on a data directory (fdatasync before each
//!   release of replies), and, for the actor's own time per call, on the in-memory backend.
//! - **activation**: 10,000 objects each given a value, the runtime shut down and opened
//!   again; then the first call to each (a read of its value, which on PostgreSQL loads the
//!   object's stored state), from 256 callers and from one. Against ours on fjall, and raw
//!   reads: three reads by key per object (an activation on PostgreSQL reads the object's
//!   data, its schedules and its name) from 256 tokio-postgres tasks sharing one connection,
//!   as the backend's read session is shared, and from one.
//!
//! Rounds are interleaved; rates are medians over rounds, the tables' figures are pooled over
//! all rounds. Every run gets a fresh database (or data directory). CPU time is read from
//! `/proc` (this process's threads by group, the server's processes) around each window.
//! `--only increments|activation` runs one half.

use std::collections::HashMap;
use std::hash::Hash;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use durable_runtime::{Backend, Durability, PostgresBackend, Result, Runtime, ScanIter, Write};
use durable_tests::postgres::{connect, PgServer};
use tokio_postgres::Client;

use crate::tput::{cpu_between, task_cpu_ns, thread_cpu};
use crate::{line, median, Counter, CounterStub};

/// Connections the server admits: the raw ceiling's 256 clients, a runtime's two, the
/// bench's monitor and the superuser reserve, with room to spare.
const MAX_CONNECTIONS: u32 = 300;

/// The two workloads: (objects, or rows; callers, or clients).
const CASES: [(usize, usize); 2] = [(1, 64), (10_000, 256)];

/// The activation measurement: objects given a value, concurrent first callers, and how
/// many objects one caller activates in turn.
const ACTIVATED: usize = 10_000;
const ACTIVATING_CALLERS: usize = 256;
/// The reads an activation makes on PostgreSQL: the object's data, its schedules, its name.
const ACTIVATION_READS: usize = 3;

/// The thread group the PostgreSQL server's processes are counted under.
const SERVER: &str = "postgres server";

/// A private PostgreSQL and a connection of the bench's own, to create databases and read
/// the server's counters.
struct Pg {
    server: PgServer,
    monitor: Client,
    databases: AtomicUsize,
}

impl Pg {
    async fn start() -> Pg {
        let server = tokio::task::spawn_blocking(|| {
            let mut server = PgServer::start();
            server.psql(
                "postgres",
                &format!("ALTER SYSTEM SET max_connections = {MAX_CONNECTIONS}"),
            );
            server.restart();
            server
        })
        .await
        .expect("start PostgreSQL");
        let monitor = connect(&server.url("postgres")).await;
        Pg {
            server,
            monitor,
            databases: AtomicUsize::new(0),
        }
    }

    /// The server's version and the settings that decide what a commit costs.
    async fn describe(&self) -> String {
        let version: String = self
            .monitor
            .query_one("SELECT version()", &[])
            .await
            .expect("version")
            .get(0);
        let names = [
            "fsync",
            "synchronous_commit",
            "wal_sync_method",
            "full_page_writes",
            "commit_delay",
            "shared_buffers",
            "max_connections",
        ];
        let rows = self
            .monitor
            .query(
                "SELECT name, current_setting(name) FROM unnest($1::text[]) AS name",
                &[&names.as_slice()],
            )
            .await
            .expect("settings");
        let settings: Vec<String> = rows
            .iter()
            .map(|row| format!("{}={}", row.get::<_, String>(0), row.get::<_, String>(1)))
            .collect();
        format!("{version}; {}", settings.join(", "))
    }

    /// A new, empty database; returns its name.
    async fn fresh_database(&self, what: &str) -> String {
        let name = format!("{what}_{}", self.databases.fetch_add(1, Ordering::Relaxed));
        self.monitor
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("create database {name}: {e}"));
        name
    }

    /// Waits until no client is connected to database `db` (a closed connection's server
    /// process exits a little later, and only then are its statistics counted and its
    /// advisory locks released), then drops the database if `drop`.
    async fn wait_sessions_gone(&self, db: &str, drop: bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left: i64 = self
                .monitor
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = $1 AND backend_type = 'client backend'",
                    &[&db],
                )
                .await
                .expect("count sessions")
                .get(0);
            if left == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{left} sessions of database {db} still open after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if drop {
            self.monitor
                .batch_execute(&format!("DROP DATABASE {db}"))
                .await
                .unwrap_or_else(|e| panic!("drop database {db}: {e}"));
        }
    }

    /// The WAL's insert position, in bytes.
    async fn wal_position(&self) -> i64 {
        self.monitor
            .query_one(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint",
                &[],
            )
            .await
            .expect("WAL position")
            .get(0)
    }

    /// WAL flushes (`fsync`s of the WAL) counted so far, as far as the statistics know:
    /// a server process reports its own when it exits, or at most once a second while busy.
    async fn wal_syncs(&self) -> Option<i64> {
        let row = self
            .monitor
            .query_one("SELECT wal_sync FROM pg_stat_wal", &[])
            .await
            .ok()?;
        row.try_get(0).ok()
    }

    /// CPU time of each server process so far, in nanoseconds.
    fn server_cpu(&self) -> HashMap<i32, u64> {
        self.server
            .processes()
            .into_iter()
            .filter_map(|pid| Some((pid, task_cpu_ns(Path::new(&format!("/proc/{pid}")))?)))
            .collect()
    }
}

/// CPU seconds the server spent between two snapshots.
fn server_cpu_between(before: &HashMap<i32, u64>, after: &HashMap<i32, u64>) -> f64 {
    count_between(before, after) as f64 / 1e9
}

/// A [`PostgresBackend`] that records how long each commit round takes and how many writes
/// it carries: the statement as the commit thread sees it (the writes copied into arrays,
/// the hop to the backend's client thread, the round trip, the execution and the WAL flush).
/// One lock and one push per round, on the commit thread, against a round trip.
struct TimedBackend {
    inner: PostgresBackend,
    rounds: Mutex<Vec<(Duration, usize)>>,
}

impl TimedBackend {
    /// The commit rounds recorded so far.
    fn rounds(&self) -> usize {
        self.rounds.lock().unwrap().len()
    }

    /// The commit rounds recorded from the `from`th on.
    fn rounds_since(&self, from: usize) -> Vec<(Duration, usize)> {
        self.rounds.lock().unwrap()[from..].to_vec()
    }
}

impl Backend for TimedBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }

    fn scan(&self, start: Bound<&[u8]>, end: Bound<&[u8]>, reverse: bool) -> Result<ScanIter<'_>> {
        self.inner.scan(start, end, reverse)
    }

    fn apply(&self, batch: &[Write<'_>]) -> Result<()> {
        self.inner.apply(batch)
    }

    fn sync(&self, durability: Durability) -> Result<()> {
        self.inner.sync(durability)
    }

    fn commit(&self, batch: &[Write<'_>], durability: Durability) -> Result<()> {
        if batch.is_empty() {
            return self.inner.commit(batch, durability);
        }
        let start = Instant::now();
        let result = self.inner.commit(batch, durability);
        let took = start.elapsed();
        self.rounds.lock().unwrap().push((took, batch.len()));
        result
    }

    fn object_cache_bytes(&self) -> Option<usize> {
        self.inner.object_cache_bytes()
    }

    fn key_prefixes(&self, start: &[u8], end: Option<&[u8]>, len: usize) -> Result<Vec<Vec<u8>>> {
        self.inner.key_prefixes(start, end, len)
    }

    fn close(&self) -> Result<()> {
        self.inner.close()
    }
}

/// A measured window of some workload: what was acknowledged, and where the CPU went.
#[derive(Clone, Default)]
struct Window {
    acks: u64,
    secs: f64,
    /// CPU seconds by thread group (this process's, and the server's as [`SERVER`]).
    cpu: Vec<(String, f64)>,
    /// WAL bytes written.
    wal_bytes: i64,
    /// Ours: commit rounds with writes (time, writes), on PostgreSQL; storage syncs.
    rounds: Vec<(Duration, usize)>,
    syncs: u64,
    /// Sleeps (voluntary context switches) of this process's threads and of the server's
    /// processes.
    sleeps: [u64; 2],
    /// Raw: each update's latency, and the WAL flushes counted.
    latencies: Vec<Duration>,
    wal_syncs: Option<i64>,
}

impl Window {
    fn rate(&self) -> f64 {
        self.acks as f64 / self.secs
    }

    /// Pools windows of one kind: sums, and samples put together.
    fn pool(windows: &[Window]) -> Window {
        let mut cpu: HashMap<String, f64> = HashMap::new();
        for (group, secs) in windows.iter().flat_map(|w| &w.cpu) {
            *cpu.entry(group.clone()).or_default() += secs;
        }
        let mut cpu: Vec<_> = cpu.into_iter().collect();
        cpu.sort_by(|a, b| a.0.cmp(&b.0));
        Window {
            acks: windows.iter().map(|w| w.acks).sum(),
            secs: windows.iter().map(|w| w.secs).sum(),
            cpu,
            wal_bytes: windows.iter().map(|w| w.wal_bytes).sum(),
            rounds: windows.iter().flat_map(|w| w.rounds.clone()).collect(),
            syncs: windows.iter().map(|w| w.syncs).sum(),
            sleeps: [0, 1].map(|i| windows.iter().map(|w| w.sleeps[i]).sum()),
            latencies: windows.iter().flat_map(|w| w.latencies.clone()).collect(),
            wal_syncs: windows.iter().map(|w| w.wal_syncs).sum(),
        }
    }

    /// Sleeps per acknowledgement: this process's threads, the server's processes.
    fn sleeps_per_ack(&self) -> String {
        let per = |n: u64| n as f64 / self.acks.max(1) as f64;
        format!("{:.2} / {:.2}", per(self.sleeps[0]), per(self.sleeps[1]))
    }

    /// CPU microseconds per acknowledgement spent by `group` (`None`: all groups).
    fn cpu_us_per_ack(&self, group: Option<&str>) -> f64 {
        let secs: f64 = self
            .cpu
            .iter()
            .filter(|(g, _)| group.is_none_or(|want| g == want))
            .map(|(_, s)| s)
            .sum::<f64>()
            + 0.0; // an empty sum is -0.0
        secs * 1e6 / self.acks.max(1) as f64
    }
}

/// CPU and sleep snapshots of this process's threads and of the server's processes.
struct CpuMark {
    threads: HashMap<u32, (String, u64)>,
    server: HashMap<i32, u64>,
    thread_sleeps: HashMap<u32, u64>,
    server_sleeps: HashMap<i32, u64>,
}

impl CpuMark {
    fn now(pg: &Pg) -> CpuMark {
        CpuMark {
            threads: thread_cpu(),
            server: pg.server_cpu(),
            thread_sleeps: sleeps(threads_of_self()),
            server_sleeps: sleeps(server_processes(pg)),
        }
    }

    /// A window of `acks` acknowledgements from `start` to now, with the CPU time and the
    /// sleeps spent since this mark.
    fn window(&self, pg: &Pg, acks: u64, start: Instant) -> Window {
        let mut window = Window {
            acks,
            secs: start.elapsed().as_secs_f64(),
            ..Window::default()
        };
        self.record(pg, &mut window);
        window
    }

    /// Fills `window`'s CPU time and sleeps with what was spent since.
    fn record(&self, pg: &Pg, window: &mut Window) {
        window.cpu = cpu_between(&self.threads, &thread_cpu());
        window.cpu.push((
            SERVER.to_owned(),
            server_cpu_between(&self.server, &pg.server_cpu()),
        ));
        window.sleeps = [
            count_between(&self.thread_sleeps, &sleeps(threads_of_self())),
            count_between(&self.server_sleeps, &sleeps(server_processes(pg))),
        ];
    }
}

/// This process's threads: their IDs and `/proc` directories.
fn threads_of_self() -> Vec<(u32, PathBuf)> {
    std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse().ok()?, entry.path())))
        .collect()
}

/// The server's processes: their IDs and `/proc` directories.
fn server_processes(pg: &Pg) -> Vec<(i32, PathBuf)> {
    let pids = pg.server.processes().into_iter();
    pids.map(|pid| (pid, PathBuf::from(format!("/proc/{pid}"))))
        .collect()
}

/// How many times each task (a thread or a process) has gone to sleep waiting for something
/// (its voluntary context switches): each is a wake-up later, a hand-off between threads or
/// processes.
fn sleeps<K: Hash + Eq>(tasks: Vec<(K, PathBuf)>) -> HashMap<K, u64> {
    tasks
        .into_iter()
        .filter_map(|(task, dir)| {
            let status = std::fs::read_to_string(dir.join("status")).ok()?;
            let count = status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?
                .trim()
                .parse()
                .ok()?;
            Some((task, count))
        })
        .collect()
}

/// The growth of per-task counts between two snapshots (a task started in between counts
/// from zero; one that ended is not counted).
fn count_between<T: Hash + Eq>(before: &HashMap<T, u64>, after: &HashMap<T, u64>) -> u64 {
    after
        .iter()
        .map(|(task, n)| n.saturating_sub(before.get(task).copied().unwrap_or(0)))
        .sum()
}

/// The raw ceiling: `clients` connections each committing `UPDATE counters SET v = v + 1`
/// on a row of `rows` (chosen at random) until `dur` has passed.
async fn raw(pg: &Pg, rows: usize, clients: usize, dur: Duration) -> Window {
    let db = pg.fresh_database("raw").await;
    let url = pg.server.url(&db);
    let setup = connect(&url).await;
    setup
        .batch_execute(&format!(
            "CREATE TABLE counters (id integer PRIMARY KEY, v bigint NOT NULL); \
             INSERT INTO counters SELECT g, 0 FROM generate_series(0, {}) AS g",
            rows - 1
        ))
        .await
        .expect("create the counters");
    setup
        .batch_execute("VACUUM ANALYZE counters")
        .await
        .expect("vacuum the counters");
    drop(setup);
    pg.wait_sessions_gone(&db, false).await;
    let syncs_before = pg.wal_syncs().await;
    let mut sessions = Vec::with_capacity(clients);
    for _ in 0..clients {
        let client = connect(&url).await;
        let update = client
            .prepare("UPDATE counters SET v = v + 1 WHERE id = $1")
            .await
            .expect("prepare the update");
        sessions.push((client, update));
    }
    let cpu = CpuMark::now(pg);
    let wal_before = pg.wal_position().await;
    let start = Instant::now();
    let deadline = start + dur;
    let tasks: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(c, (client, update))| {
            tokio::spawn(async move {
                // xorshift64, a different stream per client.
                let mut x = (c as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let id = (x % rows as u64) as i32;
                    let sent = Instant::now();
                    let updated = client.execute(&update, &[&id]).await.expect("update");
                    latencies.push(sent.elapsed());
                    assert_eq!(updated, 1, "row {id} updated");
                }
                (latencies, client)
            })
        })
        .collect();
    let mut window = Window::default();
    let mut clients = Vec::new();
    for task in tasks {
        let (latencies, client) = task.await.expect("a raw client");
        window.latencies.extend(latencies);
        clients.push(client);
    }
    window.secs = start.elapsed().as_secs_f64();
    window.wal_bytes = pg.wal_position().await - wal_before;
    cpu.record(pg, &mut window);
    window.acks = window.latencies.len() as u64;
    let total: i64 = clients[0]
        .query_one("SELECT sum(v)::bigint FROM counters", &[])
        .await
        .expect("sum the counters")
        .get(0);
    assert_eq!(total as u64, window.acks, "every committed update is there");
    drop(clients);
    pg.wait_sessions_gone(&db, true).await;
    window.wal_syncs = match (syncs_before, pg.wal_syncs().await) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };
    window
}

/// Raw reads: `tasks` tasks sharing one connection (its queries pipelined), each reading
/// `reads` rows by key in sequence for each of its share of `objects` objects, as an
/// activation reads an object's stored state. A window whose acknowledgements are objects.
async fn raw_reads(pg: &Pg, objects: usize, tasks: usize, reads: usize) -> Window {
    let db = pg.fresh_database("reads").await;
    let url = pg.server.url(&db);
    let client = Arc::new(connect(&url).await);
    client
        .batch_execute(&format!(
            "CREATE TABLE counters (id integer PRIMARY KEY, v bigint NOT NULL); \
             INSERT INTO counters SELECT g, 1 FROM generate_series(0, {}) AS g; \
             ANALYZE counters",
            objects * reads - 1
        ))
        .await
        .expect("create the counters");
    let select = client
        .prepare("SELECT v FROM counters WHERE id = $1")
        .await
        .expect("prepare the read");
    let cpu = CpuMark::now(pg);
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (client, select) = (client.clone(), select.clone());
            tokio::spawn(async move {
                let mut object = t;
                while object < objects {
                    for r in 0..reads {
                        let id = (object * reads + r) as i32;
                        let row = client.query_one(&select, &[&id]).await.expect("read");
                        assert_eq!(row.get::<_, i64>(0), 1);
                    }
                    object += tasks;
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.expect("a reader");
    }
    let window = cpu.window(pg, objects as u64, start);
    drop(client);
    pg.wait_sessions_gone(&db, true).await;
    window
}

/// Where ours stores its objects.
#[derive(Clone, Copy)]
enum Store {
    Postgres,
    Fjall,
    Memory,
}

fn counters(rt: &Runtime, objects: usize) -> Arc<Vec<CounterStub>> {
    let ns = rt.namespace::<Counter>();
    Arc::new(
        (0..objects)
            .map(|i| ns.get_by_name(&format!("c{i}")))
            .collect(),
    )
}

/// `callers` tasks, caller `c` calling objects `c`, `c + callers`, ... (wrapping): each
/// object once if `deadline` is `None`, else until the deadline. `read` makes each call a
/// read of the value (which must be 1) instead of an increment. Returns the calls made.
async fn drive(
    stubs: &Arc<Vec<CounterStub>>,
    callers: usize,
    deadline: Option<Instant>,
    read: bool,
) -> u64 {
    let tasks: Vec<_> = (0..callers)
        .map(|c| {
            let stubs = stubs.clone();
            tokio::spawn(async move {
                let mut done = 0u64;
                let mut k = c;
                loop {
                    match deadline {
                        Some(deadline) if Instant::now() >= deadline => break,
                        None if k >= stubs.len() => break,
                        _ => {}
                    }
                    let stub = &stubs[k % stubs.len()];
                    if read {
                        assert_eq!(stub.value().await.expect("read"), 1);
                    } else {
                        stub.increment(1).await.expect("increment");
                    }
                    k += callers;
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut calls = 0;
    for task in tasks {
        calls += task.await.expect("a caller");
    }
    calls
}

/// Ours: `callers` callers incrementing `objects` counters (warmed first) for `dur`.
async fn ours(pg: &Pg, store: Store, objects: usize, callers: usize, dur: Duration) -> Window {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut database = None;
    let mut timed = None;
    let rt = match store {
        Store::Postgres => {
            let db = pg.fresh_database("ours").await;
            let url = pg.server.url(&db);
            let backend = tokio::task::spawn_blocking(move || TimedBackend {
                inner: PostgresBackend::connect(&url).expect("connect the backend"),
                rounds: Mutex::default(),
            })
            .await
            .expect("connect the backend");
            let backend = Arc::new(backend);
            timed = Some(backend.clone());
            database = Some(db);
            Runtime::builder().backend(backend).open()
        }
        Store::Fjall => Runtime::builder().data_dir(dir.path()).open(),
        Store::Memory => Runtime::builder().in_memory().open(),
    }
    .expect("open the runtime");
    let stubs = counters(&rt, objects);
    drive(&stubs, callers, None, false).await;

    let cpu = CpuMark::now(pg);
    let wal_before = pg.wal_position().await;
    let rounds_before = timed.as_ref().map_or(0, |t| t.rounds());
    let syncs_before = rt.sync_count();
    let start = Instant::now();
    let acks = drive(&stubs, callers, Some(start + dur), false).await;
    let mut window = cpu.window(pg, acks, start);
    window.syncs = rt.sync_count() - syncs_before;
    window.wal_bytes = pg.wal_position().await - wal_before;
    if let Some(timed) = &timed {
        window.rounds = timed.rounds_since(rounds_before);
    }
    rt.shutdown().await.expect("shut down");
    drop(timed);
    if let Some(db) = database {
        pg.wait_sessions_gone(&db, true).await;
    }
    window
}

/// Shuts `rt` down; on PostgreSQL, waits until its sessions are gone: the next runtime on the
/// database takes the schema's lock, which the old commit session held.
async fn close(rt: Runtime, pg: Option<(&Pg, &str)>) {
    rt.shutdown().await.expect("shut down");
    if let Some((pg, db)) = pg {
        pg.wait_sessions_gone(db, false).await;
    }
}

/// First calls to cold objects with stored state: windows whose acknowledgements are
/// activations.
struct Activation {
    /// [`ACTIVATING_CALLERS`] callers over [`ACTIVATED`] objects.
    concurrent: Window,
    /// One caller, object after object.
    sequential: Window,
}

/// Gives [`ACTIVATED`] objects a value (on PostgreSQL or on fjall), then opens the storage
/// again twice: first calls from many callers, then from one (over `sequential` objects).
async fn activation(pg: &Pg, on_postgres: bool, sequential: usize) -> Activation {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = match on_postgres {
        true => Some(pg.fresh_database("activation").await),
        false => None,
    };
    let open = || {
        match &db {
            Some(db) => Runtime::builder().postgres(pg.server.url(db)).open(),
            None => Runtime::builder().data_dir(dir.path()).open(),
        }
        .expect("open the runtime")
    };
    let close = |rt: Runtime| close(rt, db.as_deref().map(|db| (pg, db)));

    let rt = open();
    drive(&counters(&rt, ACTIVATED), ACTIVATING_CALLERS, None, false).await;
    close(rt).await;

    let rt = open();
    let stubs = counters(&rt, ACTIVATED);
    let cpu = CpuMark::now(pg);
    let start = Instant::now();
    drive(&stubs, ACTIVATING_CALLERS, None, true).await;
    let concurrent = cpu.window(pg, ACTIVATED as u64, start);
    assert_eq!(rt.metrics().activations, ACTIVATED as u64);
    close(rt).await;

    let rt = open();
    let stubs = counters(&rt, sequential);
    let cpu = CpuMark::now(pg);
    let start = Instant::now();
    for stub in stubs.iter() {
        assert_eq!(stub.value().await.expect("read"), 1);
    }
    let sequential = cpu.window(pg, sequential as u64, start);
    close(rt).await;
    if let Some(db) = &db {
        pg.wait_sessions_gone(db, true).await;
    }
    Activation {
        concurrent,
        sequential,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn case_name(objects: usize, callers: usize) -> String {
    format!(
        "{objects} object{}, {callers} callers",
        if objects == 1 { "" } else { "s" }
    )
}

/// The where-the-time-goes table, one column per case (pooled windows of ours on
/// PostgreSQL, of the raw ceiling and of ours in memory).
fn print_table(ours: &[Window], raw: &[Window], memory: &[Window], one_client: &Window) {
    let mut rows: Vec<(&str, Vec<String>)> = Vec::new();
    let mut row = |name: &'static str, f: &dyn Fn(usize) -> String| {
        rows.push((name, (0..CASES.len()).map(f).collect()));
    };
    row("acknowledged increments/s (all rounds)", &|i| {
        format!("{:.0}", ours[i].rate())
    });
    row("commit rounds/s", &|i| {
        format!("{:.0}", ours[i].rounds.len() as f64 / ours[i].secs)
    });
    row("calls per round", &|i| {
        format!(
            "{:.1}",
            ours[i].acks as f64 / ours[i].rounds.len().max(1) as f64
        )
    });
    row("writes (rows) per round", &|i| {
        let writes: usize = ours[i].rounds.iter().map(|(_, w)| w).sum();
        format!("{:.1}", writes as f64 / ours[i].rounds.len().max(1) as f64)
    });
    row("round time (the statement), mean / p50 / p99", &|i| {
        let mut times: Vec<Duration> = ours[i].rounds.iter().map(|(t, _)| *t).collect();
        times.sort();
        let mean = times.iter().sum::<Duration>() / times.len().max(1) as u32;
        format!(
            "{:.2} / {:.2} / {:.2} ms",
            ms(mean),
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99))
        )
    });
    row("commit thread waiting on PostgreSQL", &|i| {
        let busy: Duration = ours[i].rounds.iter().map(|(t, _)| *t).sum();
        format!("{:.0}%", busy.as_secs_f64() * 100.0 / ours[i].secs)
    });
    row("WAL bytes per round / per increment", &|i| {
        let w = &ours[i];
        format!(
            "{:.0} / {:.1}",
            w.wal_bytes as f64 / w.rounds.len().max(1) as f64,
            w.wal_bytes as f64 / w.acks.max(1) as f64
        )
    });
    row("CPU per increment: workers (callers, actors)", &|i| {
        format!("{:.1} µs", ours[i].cpu_us_per_ack(Some("workers")))
    });
    row("CPU per increment: commit thread", &|i| {
        format!("{:.1} µs", ours[i].cpu_us_per_ack(Some("commit")))
    });
    row("CPU per increment: PostgreSQL client thread", &|i| {
        format!("{:.1} µs", ours[i].cpu_us_per_ack(Some("pg client")))
    });
    row("CPU per increment: PostgreSQL server", &|i| {
        format!("{:.1} µs", ours[i].cpu_us_per_ack(Some(SERVER)))
    });
    row("CPU per increment: all (cores busy)", &|i| {
        let w = &ours[i];
        let cores = w.cpu.iter().map(|(_, s)| s).sum::<f64>() / w.secs;
        format!("{:.1} µs ({cores:.2} cores)", w.cpu_us_per_ack(None))
    });
    row("sleeps per increment: this process / server", &|i| {
        ours[i].sleeps_per_ack()
    });
    row(
        "time per call without storage (same calls, in memory)",
        &|i| {
            format!(
                "{:.2} µs ({:.0} calls/s)",
                1e6 / memory[i].rate(),
                memory[i].rate()
            )
        },
    );
    row("raw ceiling: commits/s", &|i| {
        format!("{:.0}", raw[i].rate())
    });
    row("raw ceiling: update latency p50 / p99", &|i| {
        let mut l = raw[i].latencies.clone();
        l.sort();
        format!(
            "{:.2} / {:.2} ms",
            ms(percentile(&l, 0.5)),
            ms(percentile(&l, 0.99))
        )
    });
    row(
        "raw ceiling: sleeps per commit, this process / server",
        &|i| raw[i].sleeps_per_ack(),
    );
    row("raw ceiling: WAL flushes per commit", &|i| {
        raw[i].wal_syncs.map_or("n/a".to_owned(), |s| {
            format!("{:.3}", s as f64 / raw[i].acks.max(1) as f64)
        })
    });
    row("raw ceiling: CPU per commit, server / all", &|i| {
        format!(
            "{:.1} / {:.1} µs",
            raw[i].cpu_us_per_ack(Some(SERVER)),
            raw[i].cpu_us_per_ack(None)
        )
    });
    let mut l = one_client.latencies.clone();
    l.sort();
    println!(
        "one PostgreSQL commit, alone (raw ceiling, 1 client, 1 row): {:.0} commits/s, \
         latency p50 {:.2} ms, p99 {:.2} ms",
        one_client.rate(),
        ms(percentile(&l, 0.5)),
        ms(percentile(&l, 0.99))
    );
    println!();
    let header: Vec<String> = CASES
        .iter()
        .map(|&(objects, callers)| case_name(objects, callers))
        .collect();
    println!("| ours on PostgreSQL | {} |", header.join(" | "));
    println!("| --- |{}", " --- |".repeat(CASES.len()));
    for (name, cells) in rows {
        println!("| {name} | {} |", cells.join(" | "));
    }
    println!();
}

/// The activation lines and their table: ours on PostgreSQL and on fjall, and raw reads.
fn print_activation(pg: &[Activation], fjall: &[Activation], raw: &[(Window, Window)]) {
    let concurrent = |a: &[Activation]| median(a.iter().map(|a| a.concurrent.rate()).collect());
    let sequential_us =
        |a: &[Activation]| median(a.iter().map(|a| 1e6 / a.sequential.rate()).collect());
    let name = format!("first calls to {ACTIVATED} cold objects, {ACTIVATING_CALLERS} callers");
    let raw_name = format!(
        "raw PostgreSQL: {ACTIVATION_READS} reads by key per object, {ACTIVATING_CALLERS} \
         tasks on 1 connection"
    );
    let ours = concurrent(pg);
    line(
        &name,
        ours,
        "ours on fjall",
        concurrent(fjall),
        "activations/s",
        false,
    );
    let raw_rate = median(raw.iter().map(|(c, _)| c.rate()).collect());
    line(&name, ours, &raw_name, raw_rate, "activations/s", false);
    let name = "first call to a cold object, 1 caller";
    let ours = sequential_us(pg);
    line(
        name,
        ours,
        "ours on fjall",
        sequential_us(fjall),
        "µs/activation",
        true,
    );
    let raw_us = median(raw.iter().map(|(_, s)| 1e6 / s.rate()).collect());
    line(
        name,
        ours,
        &format!("raw PostgreSQL: {ACTIVATION_READS} reads by key, 1 client"),
        raw_us,
        "µs/activation",
        true,
    );
    println!();
    let pool = |windows: Vec<Window>| Window::pool(&windows);
    let columns = [
        pool(pg.iter().map(|a| a.concurrent.clone()).collect()),
        pool(fjall.iter().map(|a| a.concurrent.clone()).collect()),
        pool(raw.iter().map(|(c, _)| c.clone()).collect()),
    ];
    let alone = [
        pool(pg.iter().map(|a| a.sequential.clone()).collect()),
        pool(fjall.iter().map(|a| a.sequential.clone()).collect()),
        pool(raw.iter().map(|(_, s)| s.clone()).collect()),
    ];
    println!(
        "| first calls to cold objects | ours on PostgreSQL | ours on fjall | raw: \
         {ACTIVATION_READS} reads by key |"
    );
    println!("| --- | --- | --- | --- |");
    let cells = |columns: &[Window], f: &dyn Fn(&Window) -> String| {
        columns.iter().map(f).collect::<Vec<_>>().join(" | ")
    };
    let callers = format!("{ACTIVATING_CALLERS} callers");
    println!(
        "| {callers}: activations/s | {} |",
        cells(&columns, &|w| format!("{:.0}", w.rate()))
    );
    for (label, group) in [
        ("workers (callers, actors, blocking loads)", Some("workers")),
        ("PostgreSQL client thread", Some("pg client")),
        ("PostgreSQL server", Some(SERVER)),
        ("all", None),
    ] {
        println!(
            "| {callers}: CPU per activation, {label} | {} |",
            cells(&columns, &|w| format!("{:.1} µs", w.cpu_us_per_ack(group)))
        );
    }
    println!(
        "| {callers}: sleeps per activation, this process / server | {} |",
        cells(&columns, &|w| w.sleeps_per_ack())
    );
    println!(
        "| 1 caller: µs per activation | {} |",
        cells(&alone, &|w| format!("{:.1}", 1e6 / w.rate()))
    );
    println!(
        "| 1 caller: CPU per activation, all | {} |",
        cells(&alone, &|w| format!("{:.1} µs", w.cpu_us_per_ack(None)))
    );
    println!(
        "| 1 caller: sleeps per activation, this process / server | {} |",
        cells(&alone, &|w| w.sleeps_per_ack())
    );
    println!();
}

/// `--postgres [--quick] [--only increments|activation]`.
pub async fn run(argv: &[String], quick: bool) {
    let only = argv
        .iter()
        .position(|a| a == "--only")
        .map(|i| argv[i + 1].as_str());
    let rounds = if quick { 1 } else { 3 };
    let dur = Duration::from_secs(if quick { 2 } else { 5 });
    let sequential = if quick { 2_000 } else { ACTIVATED };
    let pg = Pg::start().await;
    println!("PostgreSQL: {}", pg.describe().await);
    println!(
        "(the server's durability defaults: each commit returns once its WAL is flushed; \
         max_connections raised for the raw ceiling's 256 clients)"
    );
    let disk = dur.min(Duration::from_secs(2));
    let here = Path::new("/proc/thread-self");
    let cpu_before = task_cpu_ns(here).unwrap_or(0);
    let fsyncs = crate::fsync_per_write_per_s(disk);
    let cpu = task_cpu_ns(here).unwrap_or(0).saturating_sub(cpu_before);
    println!(
        "disk: one write + fdatasync per write {fsyncs:.0} /s, {:.1} µs CPU each",
        cpu as f64 / 1e3 / (fsyncs * disk.as_secs_f64())
    );
    println!(
        "load average at the start: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    if only != Some("activation") {
        increments(&pg, rounds, dur).await;
    }
    if only != Some("increments") {
        let (mut ours_pg, mut ours_fjall, mut raw) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            ours_pg.push(activation(&pg, true, sequential).await);
            ours_fjall.push(activation(&pg, false, sequential).await);
            raw.push((
                raw_reads(&pg, ACTIVATED, ACTIVATING_CALLERS, ACTIVATION_READS).await,
                raw_reads(&pg, sequential, 1, ACTIVATION_READS).await,
            ));
            eprintln!("postgres: activation round {} of {rounds} done", round + 1);
        }
        print_activation(&ours_pg, &ours_fjall, &raw);
    }
    println!(
        "load average at the end: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}

/// The increments: ours on PostgreSQL, the raw ceiling, ours on fjall and in memory.
async fn increments(pg: &Pg, rounds: usize, dur: Duration) {
    let n = CASES.len();
    let (mut raws, mut pgs, mut fjalls, mut memories) = (
        vec![Vec::new(); n],
        vec![Vec::new(); n],
        vec![Vec::new(); n],
        vec![Vec::new(); n],
    );
    let short = dur.min(Duration::from_secs(2));
    for round in 0..rounds {
        for (i, &(objects, callers)) in CASES.iter().enumerate() {
            raws[i].push(raw(pg, objects, callers, dur).await);
            pgs[i].push(ours(pg, Store::Postgres, objects, callers, dur).await);
            fjalls[i].push(ours(pg, Store::Fjall, objects, callers, dur).await);
            memories[i].push(ours(pg, Store::Memory, objects, callers, short).await);
        }
        eprintln!("postgres: increments round {} of {rounds} done", round + 1);
    }
    let one_client = raw(pg, 1, 1, short).await;

    println!();
    for (i, &(objects, callers)) in CASES.iter().enumerate() {
        let name = format!(
            "durable increments on PostgreSQL, {}",
            case_name(objects, callers)
        );
        let ours = median(pgs[i].iter().map(Window::rate).collect());
        let ceiling = median(raws[i].iter().map(Window::rate).collect());
        let rows = if objects == 1 {
            "1 row".to_owned()
        } else {
            format!("{objects} rows")
        };
        line(
            &name,
            ours,
            &format!("raw PostgreSQL ceiling ({callers} clients, 1 UPDATE txn each, {rows})"),
            ceiling,
            "acks/s",
            false,
        );
        line(
            &name,
            ours,
            "ours on fjall",
            median(fjalls[i].iter().map(Window::rate).collect()),
            "acks/s",
            false,
        );
        if objects == 1 {
            let ratio = ours / ceiling;
            println!(
                "target: ≥ 5× the raw ceiling at {callers} callers on one object: {ratio:.1}×, {}",
                if ratio >= 5.0 { "met" } else { "MISSED" }
            );
        }
    }
    println!();
    let pooled = |runs: &[Vec<Window>]| runs.iter().map(|w| Window::pool(w)).collect::<Vec<_>>();
    print_table(
        &pooled(&pgs),
        &pooled(&raws),
        &pooled(&memories),
        &one_client,
    );
    let syncs: u64 = pgs.iter().flatten().map(|w| w.syncs).sum();
    let rounds_seen: usize = pgs.iter().flatten().map(|w| w.rounds.len()).sum();
    println!(
        "(commit rounds with writes seen by the timing wrapper: {rounds_seen}; the runtime's \
         sync_count over the same windows: {syncs})"
    );
    println!();
}
