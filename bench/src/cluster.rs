//! `--cluster [--quick]`: the seed's HTTP counter as a cluster, each node a process of the
//! release build of `examples/counter` (`--cluster`), on a private etcd and a private
//! PostgreSQL started for the run (`durable_tests::etcd::EtcdServer`,
//! `durable_tests::postgres::PgServer`, on free loopback ports, removed at exit). Every
//! configuration gets a database and a cluster name (its etcd prefix) of its own.
//!
//! 1. **Three nodes against one**: 256 HTTP/1.1 keep-alive connections (one request in flight
//!    each), spread over the nodes' HTTP ports, each incrementing a random name out of 10,000
//!    (`GET /increment?name=cK`); every name is incremented once before each window (warm).
//!    Acknowledged (200) increments per second, and the CPU time per increment of the nodes
//!    (by thread group), PostgreSQL, etcd and the load generator, from `/proc`. The same load
//!    on one counter process on PostgreSQL without cluster mode shows what cluster mode itself
//!    costs. The three configurations run for the whole part (an idle one costs nothing
//!    measurable: the idle windows show it); each round runs them in another order. After the
//!    first warm-up of each, the bench runs `ANALYZE` on its database, as autovacuum would
//!    within the database's first minute (`--no-analyze`: not; see BENCHMARKS.md for why it
//!    matters).
//! 2. **A call entering a non-owner node against the owner**, on the three-node cluster: the
//!    owner of each name is found by measuring: the name is incremented once through node 1,
//!    and the node whose `durable_calls_total` (`GET /metrics`) rose by exactly one ran it.
//!    Then one caller, each name through its owner and through another node in turn (order
//!    alternating), an increment and a read of the value (`GET /?name=`, no write): latency
//!    p50 / p99; and 64 connections (spread over the nodes), each incrementing random names
//!    owned by the node it is connected to, or by another node: increments per second.
//! 3. **Failover**: a fresh three-node cluster per round (lease TTL 10 s, the default, and
//!    3 s); names owned by node 3 found as above; node 3's lease renewed by the bench (a
//!    keep-alive of its ID, as the node does) and node 3 killed with SIGKILL at once: the worst
//!    case, the whole TTL ahead. Then, for each of those names, a loop through a surviving node
//!    (the two alternate) sends an increment, and after any answer but 200 waits 20 ms and
//!    sends again. Kill → first 200, per name; an etcd watch on the cluster's keys times the
//!    lease's expiry (node 3's key deleted) and the last of its shards taken by a survivor.
//!
//! The counter binary: `--counter-bin PATH`, or else the bench runs `cargo build --release -p
//! durable-examples --example counter` into its own target directory (the one its executable
//! is in) and uses `<target>/release/examples/counter`. `--only scaling|failover` runs parts
//! 1 and 2, or part 3. `--pg-statements` (a diagnosis, not for figures) loads
//! `pg_stat_statements` and prints where PostgreSQL's time went in parts 1 and 2, the tables'
//! scan counts and the commit statements' plans.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use durable_tests::etcd::EtcdServer;
use durable_tests::postgres::PgServer;
use etcd_client::{EventType, GetOptions, WatchOptions};

use crate::http::{die_with_parent, free_port, log_file, Conn};
use crate::median;
use crate::tput::task_cpu_ns;

/// Part 1: names, and HTTP connections.
const NAMES: usize = 10_000;
const CONNECTIONS: usize = 256;
/// Part 2: concurrent callers.
const FORWARD_CALLERS: usize = 64;
/// Part 3: the lease TTLs, in seconds (10: the default).
const TTLS: [u64; 2] = [10, 3];
/// Part 3: how long a name's loop waits after an answer other than 200.
const RETRY: Duration = Duration::from_millis(20);

/// How long a node may take to answer HTTP, or a cluster to balance its shards.
const PATIENCE: Duration = Duration::from_secs(60);

struct Config {
    rounds: usize,
    window: Duration,
    /// Names whose owner part 2 finds, and calls through each (sequential latency).
    owned_names: usize,
    failover_rounds: usize,
    /// Names of the killed node followed through a failover.
    moved_names: usize,
}

impl Config {
    fn new(quick: bool) -> Config {
        if quick {
            Config {
                rounds: 1,
                window: Duration::from_secs(2),
                owned_names: 300,
                failover_rounds: 1,
                moved_names: 15,
            }
        } else {
            Config {
                rounds: 3,
                window: Duration::from_secs(5),
                owned_names: 900,
                failover_rounds: 3,
                moved_names: 30,
            }
        }
    }
}

/// The private servers, the counter binary, and where the nodes log.
struct Infra {
    pg: PgServer,
    /// The bench's own session: WAL positions, statistics.
    monitor: tokio_postgres::Client,
    /// `--pg-statements`: print what PostgreSQL spent its time on.
    statements: bool,
    /// Part 1 runs `ANALYZE` on each database after its first warm-up (not with
    /// `--no-analyze`).
    analyze: bool,
    etcd: EtcdServer,
    etcd_endpoint: String,
    etcd_client: etcd_client::Client,
    counter: PathBuf,
    logs: tempfile::TempDir,
    secret: String,
}

/// One node: a `counter` process, killed (SIGKILL) when dropped.
struct Node {
    id: String,
    http: SocketAddr,
    child: Option<Child>,
    log: PathBuf,
}

impl Node {
    /// Starts a `counter` on database `url` with `args` besides its HTTP address, logging at
    /// `warn` into the logs' directory.
    fn spawn(infra: &Infra, cluster: &str, id: &str, url: &str, args: &[&str]) -> Node {
        let http = free_port();
        let log_name = format!("{cluster}-{id}.log");
        let mut command = Command::new(&infra.counter);
        for (var, _) in std::env::vars() {
            if var.starts_with("DURABLE_") {
                command.env_remove(var);
            }
        }
        let child = die_with_parent(&mut command)
            .args(["--addr", &http.to_string(), "--postgres", url])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(infra.logs.path(), &log_name))
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", infra.counter.display()));
        Node {
            id: id.to_owned(),
            http,
            child: Some(child),
            log: infra.logs.path().join(log_name),
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, at once; the process is reaped when the node is dropped.
    fn kill9(&mut self) {
        if let Some(child) = &self.child {
            // SAFETY: a plain kill(2) of our own child, not yet reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A cluster of counter nodes: `n1`, `n2`, ... in its own database and etcd prefix.
struct Cluster {
    name: String,
    nodes: Vec<Node>,
}

impl Cluster {
    /// Starts `nodes` nodes (lease TTL `ttl`, or the default), waits until each answers HTTP
    /// and the shards are spread evenly over them in etcd.
    async fn start(infra: &mut Infra, name: &str, nodes: usize, ttl: Option<u64>) -> Cluster {
        infra.pg.create_database(name);
        let url = infra.pg.url(name);
        let mut cluster = Cluster {
            name: name.to_owned(),
            nodes: Vec::new(),
        };
        for i in 1..=nodes {
            let id = format!("n{i}");
            let listen = free_port().to_string();
            let mut args = vec!["--cluster", &infra.etcd_endpoint, "--cluster-name", name];
            args.extend([
                "--node-id",
                &id,
                "--listen",
                &listen,
                "--secret",
                &infra.secret,
            ]);
            let ttl = ttl.map(|t| t.to_string());
            if let Some(ttl) = &ttl {
                args.extend(["--lease-ttl", ttl]);
            }
            cluster
                .nodes
                .push(Node::spawn(infra, name, &id, &url, &args));
        }
        cluster.wait_up().await;
        let ids: Vec<String> = cluster.nodes.iter().map(|n| n.id.clone()).collect();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (live, owners, shards) = placement(&mut infra.etcd_client, name).await;
            if balanced(&ids, &live, &owners, shards) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "cluster {name} not balanced after {PATIENCE:?}: live {live:?}, owners {owners:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cluster
    }

    /// One counter process on PostgreSQL, not a cluster node (no etcd, no fencing).
    async fn standalone(infra: &mut Infra, name: &str) -> Cluster {
        infra.pg.create_database(name);
        let url = infra.pg.url(name);
        let mut cluster = Cluster {
            name: name.to_owned(),
            nodes: vec![Node::spawn(infra, name, "p1", &url, &[])],
        };
        cluster.wait_up().await;
        cluster
    }

    /// Waits until every node answers HTTP, or panics with its log.
    async fn wait_up(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        for node in &mut self.nodes {
            while tokio::net::TcpStream::connect(node.http).await.is_err() {
                let child = node.child.as_mut().expect("a running node");
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "node {} of {} exited at start ({status}):\n{}",
                        node.id,
                        self.name,
                        node.log_tail()
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "node {} of {} does not answer on {}:\n{}",
                    node.id,
                    self.name,
                    node.http,
                    node.log_tail()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    fn https(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.http).collect()
    }

    fn pids(&self) -> Vec<u32> {
        self.nodes.iter().filter_map(Node::pid).collect()
    }

    /// What the nodes logged (they log at `warn`): the last lines of each non-empty log.
    fn logged(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let tail = node.log_tail();
            if !tail.is_empty() {
                out += &format!("{} {}:\n{tail}\n", self.name, node.id);
            }
        }
        out
    }
}

/// From etcd: the live nodes of cluster `name`, the owner of each owned shard, and the shard
/// count (0 before the first node created the cluster).
async fn placement(
    etcd: &mut etcd_client::Client,
    name: &str,
) -> (Vec<String>, BTreeMap<u32, String>, u32) {
    let prefix = |p: &str| (format!("{name}/{p}"), Some(GetOptions::new().with_prefix()));
    let (key, options) = prefix("nodes/");
    let nodes = etcd.get(key.clone(), options).await.expect("etcd: nodes");
    let live = nodes
        .kvs()
        .iter()
        .filter_map(|kv| Some(kv.key_str().ok()?.strip_prefix(&key)?.to_owned()))
        .collect();
    let (key, options) = prefix("shards/");
    let shards = etcd.get(key.clone(), options).await.expect("etcd: shards");
    let owners = shards
        .kvs()
        .iter()
        .filter_map(|kv| {
            let shard = kv.key_str().ok()?.strip_prefix(&key)?.parse().ok()?;
            Some((shard, kv.value_str().ok()?.to_owned()))
        })
        .collect();
    let config = etcd
        .get(format!("{name}/config"), None)
        .await
        .expect("etcd: config");
    let count = config
        .kvs()
        .first()
        .and_then(|kv| kv.value_str().ok()?.trim().parse().ok())
        .unwrap_or(0);
    (live, owners, count)
}

/// Every shard owned by one of `ids`, all of them live, each holding its fair share.
fn balanced(ids: &[String], live: &[String], owners: &BTreeMap<u32, String>, shards: u32) -> bool {
    let live: HashSet<&String> = live.iter().collect();
    if shards == 0 || owners.len() != shards as usize || ids.iter().any(|id| !live.contains(id)) {
        return false;
    }
    let n = ids.len() as u32;
    ids.iter().all(|id| {
        let held = owners.values().filter(|owner| *owner == id).count() as u32;
        held == shards / n || held == shards / n + 1
    })
}

/// The `counter` example to run: `--counter-bin PATH`, or built now in release mode into the
/// bench's own target directory.
fn counter_binary(argv: &[String]) -> PathBuf {
    if let Some(i) = argv.iter().position(|a| a == "--counter-bin") {
        return PathBuf::from(&argv[i + 1]);
    }
    let exe = std::env::current_exe().expect("the bench's own path");
    let profile = exe.parent().expect("the bench's directory");
    let target = profile.parent().expect("the target directory");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    eprintln!(
        "cluster: cargo build --release -p durable-examples --example counter \
         (target directory {})",
        target.display()
    );
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "durable-examples",
            "--example",
            "counter",
        ])
        .env("CARGO_TARGET_DIR", target)
        .current_dir(workspace)
        .status()
        .expect("run cargo");
    assert!(status.success(), "building the counter example failed");
    target.join("release").join("examples").join("counter")
}

/// Whose CPU time it is.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
enum Part {
    /// The nodes' tokio threads: HTTP, the objects' actors, the transport between nodes.
    NodeWorkers,
    /// The nodes' main threads: the HTTP accept loop.
    NodeMain,
    NodeCommit,
    NodePgClient,
    NodeMembership,
    NodeOther,
    Postgres,
    Etcd,
    /// This process: the load generator.
    Client,
}

impl Part {
    const ALL: [Part; 9] = [
        Part::NodeWorkers,
        Part::NodeMain,
        Part::NodeCommit,
        Part::NodePgClient,
        Part::NodeMembership,
        Part::NodeOther,
        Part::Postgres,
        Part::Etcd,
        Part::Client,
    ];

    fn label(self) -> &'static str {
        match self {
            Part::NodeWorkers => "nodes: tokio workers (HTTP, actors, forwarding)",
            Part::NodeMain => "nodes: main threads (HTTP accept loop)",
            Part::NodeCommit => "nodes: commit threads",
            Part::NodePgClient => "nodes: PostgreSQL client threads",
            Part::NodeMembership => "nodes: membership (etcd) threads",
            Part::NodeOther => "nodes: other threads",
            Part::Postgres => "PostgreSQL server",
            Part::Etcd => "etcd",
            Part::Client => "load generator (this process)",
        }
    }

    fn of_node_thread(comm: &str) -> Part {
        if comm.starts_with("tokio-r") {
            Part::NodeWorkers
        } else if comm == "counter" {
            Part::NodeMain
        } else if comm.starts_with("durable-commit") {
            Part::NodeCommit
        } else if comm.starts_with("durable-postgre") {
            Part::NodePgClient
        } else if comm.starts_with("durable-member") {
            Part::NodeMembership
        } else {
            Part::NodeOther
        }
    }
}

/// CPU time so far of every thread of the processes that matter, by (process, thread).
struct CpuMark {
    threads: HashMap<(u32, u32), (Part, u64)>,
    /// The whole machine's busy time so far, in clock ticks (`/proc/stat`): all, interrupts,
    /// stolen.
    machine: [u64; 3],
}

/// Every thread of process `pid`: its ID, name and CPU time so far.
fn threads_of(pid: u32) -> Vec<(u32, String, u64)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| {
            let tid = entry.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            let ns = task_cpu_ns(&entry.path())?;
            Some((tid, comm.trim().to_owned(), ns))
        })
        .collect()
}

/// The machine's busy time so far (every CPU, every process), in clock ticks: all of it, the
/// part spent serving interrupts (irq, softirq: loopback networking among others), and the
/// part stolen by the hypervisor.
fn machine_ticks() -> [u64; 3] {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let at = |i: usize| fields.get(i).copied().unwrap_or(0);
    [machine_busy_ticks(&fields), at(5) + at(6), at(7)]
}

/// Of `/proc/stat`'s `cpu` line: user nice system idle iowait irq softirq steal; busy is
/// everything but idle and iowait.
fn machine_busy_ticks(fields: &[u64]) -> u64 {
    fields
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
        .map(|(_, v)| v)
        .sum()
}

/// Clock ticks per second of `/proc/stat`.
fn ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

impl CpuMark {
    fn now(infra: &Infra, nodes: &[u32]) -> CpuMark {
        let mut threads = HashMap::new();
        let mut add = |pid: u32, part: &dyn Fn(&str) -> Part| {
            for (tid, comm, ns) in threads_of(pid) {
                threads.insert((pid, tid), (part(&comm), ns));
            }
        };
        for &pid in nodes {
            add(pid, &Part::of_node_thread);
        }
        for pid in infra.pg.processes() {
            add(pid as u32, &|_| Part::Postgres);
        }
        if let Some(pid) = infra.etcd.pid() {
            add(pid, &|_| Part::Etcd);
        }
        add(std::process::id(), &|_| Part::Client);
        CpuMark {
            threads,
            machine: machine_ticks(),
        }
    }

    /// CPU seconds by part since `self` (a thread that started since counts from zero, one
    /// that ended is not counted), and the machine's busy seconds.
    fn since(&self, infra: &Infra, nodes: &[u32]) -> (BTreeMap<Part, f64>, [f64; 3]) {
        let now = CpuMark::now(infra, nodes);
        let mut out = BTreeMap::new();
        for (key, (part, ns)) in &now.threads {
            let before = self.threads.get(key).map_or(0, |(_, ns)| *ns);
            *out.entry(*part).or_insert(0.0) += ns.saturating_sub(before) as f64 / 1e9;
        }
        let machine = [0, 1, 2]
            .map(|i| now.machine[i].saturating_sub(self.machine[i]) as f64 / ticks_per_s());
        (out, machine)
    }
}

/// The counters of a node's `GET /metrics`.
async fn metrics(conn: &mut Conn) -> HashMap<String, u64> {
    let status = conn.get("/metrics").await.expect("GET /metrics");
    assert_eq!(status, 200, "GET /metrics");
    String::from_utf8_lossy(conn.body())
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            Some((name.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// One counter of every node's `/metrics`.
async fn node_counts(conns: &mut [Conn], name: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for conn in conns {
        out.push(metrics(conn).await.get(name).copied().unwrap_or(0));
    }
    out
}

async fn open_all(addrs: &[SocketAddr]) -> Vec<Conn> {
    let mut conns = Vec::new();
    for &addr in addrs {
        conns.push(Conn::open(addr).await.expect("connect to a node"));
    }
    conns
}

/// A measured window: acknowledged calls, their latencies, where the CPU went, and the
/// nodes' counters.
#[derive(Clone, Default)]
struct Window {
    acks: u64,
    secs: f64,
    /// Answers other than 200, and broken connections.
    errors: u64,
    lat_us: Vec<u32>,
    cpu: BTreeMap<Part, f64>,
    /// The whole machine's busy seconds: all, serving interrupts, stolen.
    machine_s: [f64; 3],
    /// `durable_calls_total` and `durable_syncs_total` growth, per node.
    calls: Vec<u64>,
    syncs: Vec<u64>,
    /// WAL bytes PostgreSQL wrote.
    wal_bytes: i64,
}

impl Window {
    fn rate(&self) -> f64 {
        self.acks as f64 / self.secs
    }

    fn pool(windows: &[Window]) -> Window {
        let mut out = Window::default();
        for w in windows {
            out.acks += w.acks;
            out.secs += w.secs;
            out.errors += w.errors;
            out.lat_us.extend(&w.lat_us);
            for (part, s) in &w.cpu {
                *out.cpu.entry(*part).or_insert(0.0) += s;
            }
            for i in 0..3 {
                out.machine_s[i] += w.machine_s[i];
            }
            out.wal_bytes += w.wal_bytes;
            out.calls.resize(w.calls.len(), 0);
            out.syncs.resize(w.syncs.len(), 0);
            for (i, c) in w.calls.iter().enumerate() {
                out.calls[i] += c;
            }
            for (i, s) in w.syncs.iter().enumerate() {
                out.syncs[i] += s;
            }
        }
        out.lat_us.sort_unstable();
        out
    }

    fn cpu_s(&self, part: Option<Part>) -> f64 {
        self.cpu
            .iter()
            .filter(|(p, _)| part.is_none_or(|want| **p == want))
            .map(|(_, s)| s)
            .sum::<f64>()
            + 0.0
    }

    fn cpu_us_per_ack(&self, part: Option<Part>) -> f64 {
        self.cpu_s(part) * 1e6 / self.acks.max(1) as f64
    }

    /// CPU µs per acknowledgement of the servers: nodes, PostgreSQL, etcd (not the client).
    fn server_cpu_us_per_ack(&self) -> f64 {
        (self.cpu_s(None) - self.cpu_s(Some(Part::Client))) * 1e6 / self.acks.max(1) as f64
    }

    fn pct_ms(&self, p: f64) -> f64 {
        let mut lat = self.lat_us.clone();
        lat.sort_unstable();
        percentile_us(&lat, p) / 1e3
    }
}

fn percentile_us(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64
}

/// xorshift64: a cheap, different random stream per connection.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Each connection (to a node, with the paths it picks from at random) sends requests back
/// to back for `dur`; a window of the 200s, with the CPU and the nodes' counters.
async fn measure(
    infra: &Infra,
    cluster: &Cluster,
    plan: Vec<(SocketAddr, Arc<Vec<String>>)>,
    dur: Duration,
) -> Window {
    let mut monitor = open_all(&cluster.https()).await;
    let calls_before = node_counts(&mut monitor, "durable_calls_total").await;
    let syncs_before = node_counts(&mut monitor, "durable_syncs_total").await;
    let mut conns = Vec::new();
    for (addr, paths) in plan {
        conns.push((Conn::open(addr).await.expect("connect"), addr, paths));
    }
    let pids = cluster.pids();
    let wal_before = wal_position(infra).await;
    let cpu = CpuMark::now(infra, &pids);
    let start = Instant::now();
    let deadline = start + dur;
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(c, (mut conn, addr, paths))| {
            tokio::spawn(async move {
                let mut x = (c as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let (mut lat, mut errors) = (Vec::new(), 0u64);
                while Instant::now() < deadline {
                    let path = &paths[(next(&mut x) % paths.len() as u64) as usize];
                    let sent = Instant::now();
                    match conn.get(path).await {
                        Ok(200) => lat.push(sent.elapsed().as_micros() as u32),
                        Ok(_) => errors += 1,
                        Err(_) => {
                            errors += 1;
                            conn = Conn::open(addr).await.expect("reconnect");
                        }
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut window = Window::default();
    for task in tasks {
        let (lat, errors) = task.await.expect("a connection");
        window.lat_us.extend(lat);
        window.errors += errors;
    }
    window.secs = start.elapsed().as_secs_f64();
    (window.cpu, window.machine_s) = cpu.since(infra, &pids);
    window.wal_bytes = wal_position(infra).await - wal_before;
    window.acks = window.lat_us.len() as u64;
    let calls = node_counts(&mut monitor, "durable_calls_total").await;
    let syncs = node_counts(&mut monitor, "durable_syncs_total").await;
    window.calls = calls
        .iter()
        .zip(&calls_before)
        .map(|(a, b)| a - b)
        .collect();
    window.syncs = syncs
        .iter()
        .zip(&syncs_before)
        .map(|(a, b)| a - b)
        .collect();
    window
}

/// The CPU the processes spend in `dur` with no load at all (acknowledgements: none).
async fn idle(infra: &Infra, cluster: &Cluster, dur: Duration) -> Window {
    let pids = cluster.pids();
    let wal_before = wal_position(infra).await;
    let cpu = CpuMark::now(infra, &pids);
    let start = Instant::now();
    tokio::time::sleep(dur).await;
    let mut window = Window {
        secs: start.elapsed().as_secs_f64(),
        ..Window::default()
    };
    (window.cpu, window.machine_s) = cpu.since(infra, &pids);
    window.wal_bytes = wal_position(infra).await - wal_before;
    window
}

/// PostgreSQL's WAL insert position, in bytes.
async fn wal_position(infra: &Infra) -> i64 {
    infra
        .monitor
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint",
            &[],
        )
        .await
        .expect("WAL position")
        .get(0)
}

/// Increments each path once, from [`CONNECTIONS`] connections spread over the nodes (an
/// answer other than 200 is retried, for at most [`PATIENCE`]).
async fn warm(cluster: &Cluster, paths: &Arc<Vec<String>>) {
    let addrs = cluster.https();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let (addr, paths) = (addrs[c % addrs.len()], paths.clone());
            tokio::spawn(async move {
                let mut conn = Conn::open(addr).await.expect("connect");
                let mut k = c;
                let deadline = Instant::now() + PATIENCE;
                while k < paths.len() {
                    match conn.get(&paths[k]).await {
                        Ok(200) => k += CONNECTIONS,
                        other => {
                            assert!(Instant::now() < deadline, "warming {}: {other:?}", paths[k]);
                            if other.is_err() {
                                conn = Conn::open(addr).await.expect("reconnect");
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a warming connection");
    }
}

/// The owner (node index) of each name, found by incrementing it once through node 1 and
/// seeing which node's `durable_calls_total` rose by exactly one; names for which it is not
/// clear-cut (never seen here) are left out. Stops after `want` names pass `keep`.
async fn owners(
    cluster: &Cluster,
    names: impl Iterator<Item = String>,
    want: usize,
    keep: impl Fn(usize) -> bool,
) -> Vec<(String, usize)> {
    let mut monitor = open_all(&cluster.https()).await;
    let mut entry = Conn::open(cluster.nodes[0].http).await.expect("connect");
    let mut before = node_counts(&mut monitor, "durable_calls_total").await;
    let mut out = Vec::new();
    let mut unclear = 0;
    for name in names {
        if out.len() == want {
            break;
        }
        let path = format!("/increment?name={name}");
        assert_eq!(entry.get(&path).await.expect("increment"), 200, "{path}");
        let after = node_counts(&mut monitor, "durable_calls_total").await;
        let grew: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        before = after;
        match grew.iter().filter(|&&g| g > 0).count() {
            1 if grew.iter().sum::<u64>() == 1 => {
                let owner = grew.iter().position(|&g| g == 1).expect("one node");
                if keep(owner) {
                    out.push((path, owner));
                }
            }
            _ => unclear += 1,
        }
    }
    if unclear > 0 {
        eprintln!("cluster: {unclear} names with no clear owner left out");
    }
    assert_eq!(
        out.len(),
        want,
        "not enough names found on the wanted nodes"
    );
    out
}

/// Part 1's configurations: one counter process on PostgreSQL without cluster mode, a
/// one-node cluster, a three-node cluster.
const CONFIGS: [(&str, &str, usize); 3] = [
    ("1 process, no cluster", "scale_plain", 0),
    ("1 node", "scale_1", 1),
    ("3 nodes", "scale_3", 3),
];

/// Part 1's result: per configuration, loaded windows and idle ones.
struct Scaling {
    loaded: [Vec<Window>; 3],
    idle: [Vec<Window>; 3],
}

/// Sequential latencies (µs, sorted) per round, through the owner and through another node.
#[derive(Default)]
struct Sequential {
    owner: Vec<Vec<u32>>,
    forwarded: Vec<Vec<u32>>,
}

/// Part 2's result.
#[derive(Default)]
struct Forwarding {
    /// One caller: increments, and reads of the value (`GET /?name=`, no write).
    increments: Sequential,
    reads: Sequential,
    /// [`FORWARD_CALLERS`] connections: names of their own node, of another node.
    owner: Vec<Window>,
    forwarded: Vec<Window>,
}

/// Part 3's result, one failover.
struct Failover {
    /// Kill → node 3's key deleted in etcd (its lease expired).
    lease_gone: Option<Duration>,
    /// Kill → the last of node 3's shards owned by a survivor.
    all_taken: Option<Duration>,
    /// Kill → first 200, per name (`None`: none before giving up).
    first_ok: Vec<Option<Duration>>,
    /// Answers other than 200 (and broken connections) seen by the loops.
    errors: u64,
    shards: usize,
    /// The TTL etcd granted the victim's lease when the bench renewed it, just before the
    /// kill (whole seconds).
    lease_left: i64,
}

async fn scaling(infra: &mut Infra, config: &Config) -> (Scaling, Forwarding) {
    let paths: Arc<Vec<String>> = Arc::new(
        (0..NAMES)
            .map(|k| format!("/increment?name=c{k}"))
            .collect(),
    );
    let mut clusters = Vec::new();
    for (_, name, nodes) in CONFIGS {
        clusters.push(match nodes {
            0 => Cluster::standalone(infra, name).await,
            n => Cluster::start(infra, name, n, None).await,
        });
    }
    let mut scaling = Scaling {
        loaded: Default::default(),
        idle: Default::default(),
    };
    let idle_for = config.window.min(Duration::from_secs(2));
    for round in 0..config.rounds {
        // Each round in another order.
        let mut order: Vec<usize> = (0..CONFIGS.len()).collect();
        order.rotate_left(round % CONFIGS.len());
        for c in order {
            let cluster = &clusters[c];
            scaling.idle[c].push(idle(infra, cluster, idle_for).await);
            warm(cluster, &paths).await;
            if round == 0 && infra.analyze {
                // As autovacuum does in a fresh database's first minute: the statistics that
                // let the nodes' prepared statements be planned again for the table's size.
                infra.pg.psql(&cluster.name, "ANALYZE");
            }
            let addrs = cluster.https();
            let plan = (0..CONNECTIONS)
                .map(|i| (addrs[i % addrs.len()], paths.clone()))
                .collect();
            scaling.loaded[c].push(measure(infra, cluster, plan, config.window).await);
        }
        eprintln!(
            "cluster: scaling round {} of {} done",
            round + 1,
            config.rounds
        );
    }
    if infra.statements {
        print_statements(infra, "part 1 (all three configurations)").await;
        for (_, db, _) in CONFIGS {
            print_tables(infra, db).await;
        }
    }
    let three = clusters.pop().expect("the three-node cluster");
    let logged: String = clusters.iter().map(Cluster::logged).collect();
    drop(clusters);

    // Part 2, on the three-node cluster (every name already warm).
    let owned = owners(
        &three,
        (0..NAMES).map(|k| format!("c{k}")),
        config.owned_names,
        |_| true,
    )
    .await;
    let mut forwarding = Forwarding::default();
    let mut conns = open_all(&three.https()).await;
    let n = three.nodes.len();
    for round in 0..config.rounds {
        for read in [false, true] {
            let (mut mine, mut other) = (Vec::new(), Vec::new());
            for (k, (path, owner)) in owned.iter().enumerate() {
                let path = if read {
                    path.replace("/increment?", "/?")
                } else {
                    path.clone()
                };
                let elsewhere = (owner + 1 + k % (n - 1)) % n;
                let order = if (k + round) % 2 == 0 {
                    [*owner, elsewhere]
                } else {
                    [elsewhere, *owner]
                };
                for node in order {
                    let sent = Instant::now();
                    let status = conns[node].get(&path).await.expect("a request");
                    let took = sent.elapsed().as_micros() as u32;
                    assert_eq!(status, 200, "{path} through node {}", node + 1);
                    if node == *owner {
                        mine.push(took);
                    } else {
                        other.push(took);
                    }
                }
            }
            mine.sort_unstable();
            other.sort_unstable();
            let runs = if read {
                &mut forwarding.reads
            } else {
                &mut forwarding.increments
            };
            runs.owner.push(mine);
            runs.forwarded.push(other);
        }
    }
    let mut by_owner: Vec<Vec<String>> = vec![Vec::new(); n];
    for (path, owner) in &owned {
        by_owner[*owner].push(path.clone());
    }
    let by_owner: Vec<Arc<Vec<String>>> = by_owner.into_iter().map(Arc::new).collect();
    let addrs = three.https();
    for round in 0..config.rounds {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for forwarded in order {
            let plan = (0..FORWARD_CALLERS)
                .map(|i| {
                    let node = i % n;
                    let target = if forwarded {
                        (node + 1 + (i / n) % (n - 1)) % n
                    } else {
                        node
                    };
                    (addrs[node], by_owner[target].clone())
                })
                .collect();
            let window = measure(infra, &three, plan, config.window).await;
            if forwarded {
                forwarding.forwarded.push(window);
            } else {
                forwarding.owner.push(window);
            }
        }
        eprintln!(
            "cluster: forwarding round {} of {} done",
            round + 1,
            config.rounds
        );
    }
    if infra.statements {
        print_statements(infra, "part 2").await;
    }
    let logged = logged + &three.logged();
    if !logged.is_empty() {
        eprintln!("cluster: the nodes logged:\n{logged}");
    }
    (scaling, forwarding)
}

/// `--pg-statements`: database `db`'s tables as the statistics see them (scans, rows), and
/// the plans PostgreSQL picks for the commit statements (the runtime's text, as of this
/// bench) when it plans them once for any arguments (a prepared statement's generic plan).
async fn print_tables(infra: &Infra, db: &str) {
    let client = durable_tests::postgres::connect(&infra.pg.url(db)).await;
    let rows = client
        .query(
            "SELECT relname::text, seq_scan, seq_tup_read, coalesce(idx_scan, 0), n_live_tup, \
                    n_dead_tup, coalesce(autoanalyze_count, 0), coalesce(autovacuum_count, 0) \
             FROM pg_stat_user_tables ORDER BY relname",
            &[],
        )
        .await
        .expect("pg_stat_user_tables");
    println!("database {db}:");
    println!(
        "| table | seq scans | rows read by seq scans | index scans | live rows | dead rows \
         | autoanalyzes | autovacuums |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for row in rows {
        let name: String = row.get(0);
        let n = |i: usize| row.get::<_, i64>(i);
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} |",
            n(1),
            n(2),
            n(3),
            n(4),
            n(5),
            n(6),
            n(7)
        );
    }
    let kv = "\"public\".durable_kv";
    let shards = "\"public\".durable_shards";
    let statements = [
        (
            "commit",
            format!(
                "PREPARE c(bytea[], bytea[], bytea[]) AS \
                 WITH deleted AS (DELETE FROM {kv} WHERE key = ANY($1::bytea[])) \
                 INSERT INTO {kv} (key, value) SELECT * FROM unnest($2::bytea[], $3::bytea[]) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
            ),
            "EXECUTE c('{}', '{}', '{}')",
        ),
        (
            "commit, fenced",
            format!(
                "PREPARE f(bytea[], bytea[], bytea[], int[], bigint[]) AS \
                 WITH held AS (SELECT shard, term FROM {shards} \
                               WHERE shard = ANY($4::int[]) FOR SHARE), \
                 stale AS (SELECT f.shard FROM unnest($4::int[], $5::bigint[]) AS f(shard, term) \
                           WHERE NOT EXISTS (SELECT 1 FROM held h \
                                             WHERE h.shard = f.shard AND h.term = f.term)), \
                 deleted AS (DELETE FROM {kv} WHERE key = ANY($1::bytea[]) \
                             AND NOT EXISTS (SELECT 1 FROM stale)), \
                 inserted AS (INSERT INTO {kv} (key, value) \
                              SELECT k, v FROM unnest($2::bytea[], $3::bytea[]) AS u(k, v) \
                              WHERE NOT EXISTS (SELECT 1 FROM stale) \
                              ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value) \
                 SELECT shard FROM stale"
            ),
            "EXECUTE f('{}', '{}', '{}', '{}', '{}')",
        ),
    ];
    for (what, prepare, execute) in statements {
        let fenced_table = client
            .query_opt(
                "SELECT 1 FROM pg_class WHERE relname = 'durable_shards'",
                &[],
            )
            .await
            .expect("pg_class");
        if what.ends_with("fenced") && fenced_table.is_none() {
            continue;
        }
        client
            .batch_execute(&format!(
                "SET plan_cache_mode = force_generic_plan; {prepare}"
            ))
            .await
            .expect("prepare");
        let plan = client
            .query(&format!("EXPLAIN {execute}"), &[])
            .await
            .expect("explain");
        println!("generic plan of the {what} statement:");
        println!("```");
        for row in plan {
            println!("{}", row.get::<_, String>(0));
        }
        println!("```");
    }
    println!();
}

/// `--pg-statements`: the statements PostgreSQL spent the most time in since the last call
/// (`pg_stat_statements`), then resets them.
async fn print_statements(infra: &Infra, what: &str) {
    let rows = infra
        .monitor
        .query(
            "SELECT calls, total_exec_time, rows, wal_bytes::bigint, \
                    regexp_replace(left(query, 160), '\\s+', ' ', 'g') \
             FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 8",
            &[],
        )
        .await
        .expect("pg_stat_statements");
    println!("PostgreSQL statements, {what} (pg_stat_statements, by total execution time):");
    println!("| calls | total ms | mean µs | rows per call | WAL bytes per call | statement |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for row in rows {
        let calls: i64 = row.get(0);
        let total: f64 = row.get(1);
        let n: i64 = row.get(2);
        let wal: i64 = row.get(3);
        let query: String = row.get(4);
        let per = |x: f64| x / calls.max(1) as f64;
        println!(
            "| {calls} | {total:.0} | {:.1} | {:.1} | {:.0} | `{query}` |",
            per(total * 1e3),
            per(n as f64),
            per(wal as f64)
        );
    }
    println!();
    infra
        .monitor
        .batch_execute("SELECT pg_stat_statements_reset()")
        .await
        .expect("reset pg_stat_statements");
}

/// Records, from the watch's start, when node `victim`'s key goes and when each of `shards`
/// gets another owner, until all did or `until`.
async fn watch_failover(
    mut stream: etcd_client::WatchStream,
    cluster: String,
    victim: String,
    shards: HashSet<u32>,
    until: Instant,
) -> (Option<Instant>, HashMap<u32, Instant>) {
    let node_key = format!("{cluster}/nodes/{victim}");
    let shard_prefix = format!("{cluster}/shards/");
    let (mut gone, mut taken) = (None, HashMap::new());
    while gone.is_none() || taken.len() < shards.len() {
        let Ok(Ok(Some(message))) = tokio::time::timeout_at(until.into(), stream.message()).await
        else {
            break;
        };
        let now = Instant::now();
        for event in message.events() {
            let Some(kv) = event.kv() else { continue };
            let Ok(key) = kv.key_str() else { continue };
            match event.event_type() {
                EventType::Delete if key == node_key => gone = gone.or(Some(now)),
                EventType::Put => {
                    let Some(shard) = key
                        .strip_prefix(&shard_prefix)
                        .and_then(|s| s.parse::<u32>().ok())
                    else {
                        continue;
                    };
                    if shards.contains(&shard) && kv.value_str().is_ok_and(|v| v != victim) {
                        taken.entry(shard).or_insert(now);
                    }
                }
                _ => {}
            }
        }
    }
    (gone, taken)
}

async fn failover(infra: &mut Infra, config: &Config, ttl: u64, round: usize) -> Failover {
    let name = format!("failover{ttl}s_{round}");
    let mut cluster = Cluster::start(infra, &name, 3, Some(ttl)).await;
    let victim = 2;
    let moved = owners(
        &cluster,
        (0..).map(|k| format!("f{k}")),
        config.moved_names,
        |owner| owner == victim,
    )
    .await;
    let victim_id = cluster.nodes[victim].id.clone();
    let (_, owners_now, _) = placement(&mut infra.etcd_client, &name).await;
    let shards: HashSet<u32> = owners_now
        .iter()
        .filter(|(_, owner)| **owner == victim_id)
        .map(|(shard, _)| *shard)
        .collect();
    let revision = infra
        .etcd_client
        .get(format!("{name}/config"), None)
        .await
        .expect("etcd: revision")
        .header()
        .expect("a header")
        .revision();
    let stream = infra
        .etcd_client
        .watch(
            format!("{name}/"),
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(revision + 1),
            ),
        )
        .await
        .expect("etcd: watch");
    let give_up = Duration::from_secs(3 * ttl + 20);
    let watcher = tokio::spawn(watch_failover(
        stream,
        name.clone(),
        victim_id,
        shards.clone(),
        Instant::now() + give_up,
    ));
    let survivors: Vec<SocketAddr> = cluster
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, n)| n.http)
        .collect();
    // One keep-alive connection per name, open before the kill.
    let mut conns = Vec::new();
    for k in 0..moved.len() {
        let addr = survivors[k % survivors.len()];
        conns.push((Conn::open(addr).await.expect("connect"), addr));
    }
    // The victim's lease, and what etcd says is left of it just before the kill.
    let node_key = format!("{name}/nodes/{}", cluster.nodes[victim].id);
    let lease = infra
        .etcd_client
        .get(node_key, None)
        .await
        .expect("etcd: the node's key")
        .kvs()
        .first()
        .map(|kv| kv.lease())
        .expect("the victim is registered");
    // The worst case: the node dies just after renewing its lease, with the whole TTL ahead.
    // The bench renews the lease itself (a keep-alive of its ID, as the node does), then
    // kills the node at once.
    // (Opening the keep-alive stream renews once and reads that answer; the second renewal,
    // a moment later, tells the TTL granted.)
    let (mut keeper, mut renewed) = infra
        .etcd_client
        .lease_keep_alive(lease)
        .await
        .expect("etcd: renew the victim's lease");
    keeper
        .keep_alive()
        .await
        .expect("etcd: renew the victim's lease");
    let left = tokio::time::timeout(Duration::from_secs(5), renewed.message())
        .await
        .expect("etcd: no answer to the renewal")
        .expect("etcd: the renewal's answer")
        .map_or(0, |answer| answer.ttl());
    let killed = Instant::now();
    cluster.nodes[victim].kill9();
    let loops: Vec<_> = moved
        .iter()
        .zip(conns)
        .map(|((path, _), (mut conn, addr))| {
            let path = path.clone();
            tokio::spawn(async move {
                let mut errors = 0u64;
                while killed.elapsed() < give_up {
                    match tokio::time::timeout(give_up, conn.get(&path)).await {
                        Ok(Ok(200)) => return (Some(killed.elapsed()), errors),
                        Ok(Ok(_)) => errors += 1,
                        Ok(Err(_)) | Err(_) => {
                            errors += 1;
                            if let Ok(c) = Conn::open(addr).await {
                                conn = c;
                            }
                        }
                    }
                    tokio::time::sleep(RETRY).await;
                }
                (None, errors)
            })
        })
        .collect();
    let mut result = Failover {
        lease_gone: None,
        all_taken: None,
        first_ok: Vec::new(),
        errors: 0,
        shards: shards.len(),
        lease_left: left,
    };
    for task in loops {
        let (first, errors) = task.await.expect("a name's loop");
        result.first_ok.push(first);
        result.errors += errors;
    }
    let (gone, taken) = watcher.await.expect("the watch");
    result.lease_gone = gone.map(|t| t.saturating_duration_since(killed));
    if taken.len() == shards.len() {
        result.all_taken = taken
            .values()
            .max()
            .map(|t| t.saturating_duration_since(killed));
    }
    let logged = cluster.logged();
    if !logged.is_empty() {
        eprintln!("cluster: the nodes logged:\n{logged}");
    }
    result
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// `--cluster [--quick] [--counter-bin PATH] [--only scaling|failover] [--pg-statements]`.
pub async fn run(argv: &[String], quick: bool) {
    let config = Config::new(quick);
    let only = argv
        .iter()
        .position(|a| a == "--only")
        .map(|i| argv[i + 1].clone());
    let counter = counter_binary(argv);
    println!("counter: {}", counter.display());
    println!("load average at the start: {}", load_average());
    let started = Instant::now();
    let pg = PgServer::start();
    let etcd = EtcdServer::start();
    let etcd_client = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .expect("connect to etcd");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let statements = argv.iter().any(|a| a == "--pg-statements");
    let mut pg = pg;
    if statements {
        pg.psql(
            "postgres",
            "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'",
        );
        pg.restart();
        pg.psql("postgres", "CREATE EXTENSION pg_stat_statements");
    }
    let monitor = durable_tests::postgres::connect(&pg.url("postgres")).await;
    let mut infra = Infra {
        pg,
        monitor,
        statements,
        analyze: !argv.iter().any(|a| a == "--no-analyze"),
        etcd_endpoint: etcd.endpoint(),
        etcd,
        etcd_client,
        counter,
        logs: tempfile::tempdir().expect("a temporary directory"),
        secret: format!("bench-{}-{nanos:x}", std::process::id()),
    };
    let version = infra.pg.psql("postgres", "SHOW server_version");
    println!(
        "PostgreSQL {} (durability defaults), etcd: a one-member cluster; \
         machine: {} CPUs",
        version.trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let part = |p: &str| only.as_deref().is_none_or(|o| o == p);
    let scaled = if part("scaling") {
        Some(scaling(&mut infra, &config).await)
    } else {
        None
    };
    let mut failovers: Vec<(u64, Vec<Failover>)> = Vec::new();
    if part("failover") {
        for ttl in TTLS {
            let mut rounds = Vec::new();
            for round in 0..config.failover_rounds {
                rounds.push(failover(&mut infra, &config, ttl, round).await);
                eprintln!(
                    "cluster: failover (lease TTL {ttl} s) round {} of {} done",
                    round + 1,
                    config.failover_rounds
                );
            }
            failovers.push((ttl, rounds));
        }
    }
    println!(
        "load average at the end: {} ({:.0} s in all)",
        load_average(),
        started.elapsed().as_secs_f64()
    );
    println!();
    report(&config, scaled.as_ref(), &failovers);
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn fmt_opt(d: Option<Duration>) -> String {
    d.map_or("—".to_owned(), |d| format!("{:.2} s", secs(d)))
}

/// Kill → first answer per name: (median, slowest, names that never answered).
fn first_answers(f: &Failover) -> (Option<Duration>, Option<Duration>, usize) {
    let mut oks: Vec<Duration> = f.first_ok.iter().flatten().copied().collect();
    oks.sort();
    let never = f.first_ok.len() - oks.len();
    (oks.get(oks.len() / 2).copied(), oks.last().copied(), never)
}

/// The markdown tables (and the comparison lines, `ours X, baseline Y, ratio R`).
fn report(
    config: &Config,
    scaled: Option<&(Scaling, Forwarding)>,
    failovers: &[(u64, Vec<Failover>)],
) {
    let mut rows: Vec<[String; 5]> = Vec::new();
    if let Some((scaling, forwarding)) = scaled {
        let rate = |w: &[Window]| median(w.iter().map(Window::rate).collect());
        let cpu = |w: &[Window]| median(w.iter().map(Window::server_cpu_us_per_ack).collect());
        let [plain, one, three] = &scaling.loaded;
        rows.push([
            format!("HTTP increments, {NAMES} names, {CONNECTIONS} connections"),
            format!("3 nodes: {:.0}/s", rate(three)),
            format!("1 node: {:.0}/s", rate(one)),
            format!("{:.2}", rate(three) / rate(one)),
            String::new(),
        ]);
        rows.push([
            "CPU per increment: nodes + PostgreSQL + etcd".to_owned(),
            format!("3 nodes: {:.1} µs", cpu(three)),
            format!("1 node: {:.1} µs", cpu(one)),
            format!("{:.2}", cpu(one) / cpu(three)),
            String::new(),
        ]);
        rows.push([
            format!("HTTP increments, {NAMES} names, {CONNECTIONS} connections"),
            format!("1 node: {:.0}/s", rate(one)),
            format!("1 process, no cluster: {:.0}/s", rate(plain)),
            format!("{:.2}", rate(one) / rate(plain)),
            String::new(),
        ]);
        rows.push([
            "CPU per increment: node(s) + PostgreSQL + etcd".to_owned(),
            format!("1 node: {:.1} µs", cpu(one)),
            format!("1 process, no cluster: {:.1} µs", cpu(plain)),
            format!("{:.2}", cpu(plain) / cpu(one)),
            String::new(),
        ]);
        let pct = |runs: &[Vec<u32>], p: f64| {
            median(runs.iter().map(|r| percentile_us(r, p) / 1e3).collect())
        };
        for (what, seq) in [
            ("increment", &forwarding.increments),
            ("read (`GET /?name=`)", &forwarding.reads),
        ] {
            for (label, p) in [("p50", 0.5), ("p99", 0.99)] {
                let (fwd, own) = (pct(&seq.forwarded, p), pct(&seq.owner, p));
                rows.push([
                    format!("1 caller, {what} latency {label}"),
                    format!("through a non-owner: {fwd:.3} ms"),
                    format!("through the owner: {own:.3} ms"),
                    format!("{:.2}", own / fwd),
                    String::new(),
                ]);
            }
        }
        let (fwd, own) = (rate(&forwarding.forwarded), rate(&forwarding.owner));
        rows.push([
            format!("{FORWARD_CALLERS} connections, increments"),
            format!("through non-owners: {fwd:.0}/s"),
            format!("through the owners: {own:.0}/s"),
            format!("{:.2}", fwd / own),
            String::new(),
        ]);
    }
    for (ttl, rounds) in failovers {
        let secs_of = |pick: fn(&Failover) -> Option<Duration>| -> Vec<f64> {
            rounds.iter().filter_map(pick).map(secs).collect()
        };
        let med = secs_of(|f| first_answers(f).0);
        let slowest = secs_of(|f| first_answers(f).1);
        let never: usize = rounds.iter().map(|f| first_answers(f).2).sum();
        let worst = slowest.iter().copied().fold(0.0, f64::max);
        let target = *ttl as f64 + 1.0;
        let met = never == 0 && !slowest.is_empty() && worst <= target;
        let or_nan = |v: Vec<f64>| if v.is_empty() { f64::NAN } else { median(v) };
        rows.push([
            format!("failover, lease TTL {ttl} s: kill -9 → first answer per moved name"),
            format!(
                "median {:.2} s, slowest {:.2} s (worst of {} rounds: {worst:.2} s)",
                or_nan(med),
                or_nan(slowest),
                rounds.len()
            ),
            format!("target: ≤ TTL + 1 s = {target:.0} s"),
            format!("{:.2}", target / worst),
            if met { "**met**" } else { "**missed**" }.to_owned(),
        ]);
    }
    for row in &rows {
        println!(
            "{}: ours {}, baseline {}, ratio {}",
            row[0], row[1], row[2], row[3]
        );
    }
    if let Some((scaling, forwarding)) = scaled {
        let rounds = |w: &[Window]| {
            w.iter()
                .map(|w| format!("{:.0}", w.rate()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (c, (label, _, _)) in CONFIGS.iter().enumerate() {
            println!(
                "rounds, {CONNECTIONS} connections, {label}: {} increments/s",
                rounds(&scaling.loaded[c])
            );
        }
        println!(
            "rounds, {FORWARD_CALLERS} connections, via owners: {} increments/s; via \
             non-owners: {} increments/s",
            rounds(&forwarding.owner),
            rounds(&forwarding.forwarded)
        );
    }
    println!();
    println!("| comparison | ours | baseline | ratio | target |");
    println!("| --- | --- | --- | --- | --- |");
    for row in &rows {
        println!("| {} |", row.join(" | "));
    }
    println!();
    if let Some((scaling, forwarding)) = scaled {
        print_where(config, scaling, forwarding);
    }
    if !failovers.is_empty() {
        print_failovers(failovers);
    }
}

/// Where the time goes: parts 1 and 2, windows pooled over the rounds.
fn print_where(config: &Config, scaling: &Scaling, forwarding: &Forwarding) {
    let mut columns: Vec<(String, Window, Option<Window>)> = CONFIGS
        .iter()
        .enumerate()
        .map(|(c, (label, _, _))| {
            (
                format!("{CONNECTIONS} conns: {label}"),
                Window::pool(&scaling.loaded[c]),
                Some(Window::pool(&scaling.idle[c])),
            )
        })
        .collect();
    columns.push((
        format!("{FORWARD_CALLERS} conns: 3 nodes, via owners"),
        Window::pool(&forwarding.owner),
        None,
    ));
    columns.push((
        format!("{FORWARD_CALLERS} conns: 3 nodes, via non-owners"),
        Window::pool(&forwarding.forwarded),
        None,
    ));
    println!(
        "(windows of {:.0} s, {} rounds, pooled; {CONNECTIONS} connections: random names of \
         {NAMES}; {FORWARD_CALLERS} connections: random names of {})",
        config.window.as_secs_f64(),
        config.rounds,
        config.owned_names
    );
    println!();
    let names: Vec<&str> = columns.iter().map(|(n, _, _)| n.as_str()).collect();
    println!("| | {} |", names.join(" | "));
    println!("| --- |{}", " --- |".repeat(columns.len()));
    let row = |label: &str, f: &dyn Fn(&Window) -> String| {
        let cells: Vec<String> = columns.iter().map(|(_, w, _)| f(w)).collect();
        println!("| {label} | {} |", cells.join(" | "));
    };
    row("acknowledged increments/s", &|w| format!("{:.0}", w.rate()));
    row("latency p50 / p99", &|w| {
        format!("{:.2} / {:.2} ms", w.pct_ms(0.5), w.pct_ms(0.99))
    });
    row("answers other than 200", &|w| w.errors.to_string());
    row("calls run per node", &|w| {
        let total: u64 = w.calls.iter().sum();
        w.calls
            .iter()
            .map(|c| format!("{:.0}%", *c as f64 * 100.0 / total.max(1) as f64))
            .collect::<Vec<_>>()
            .join(" / ")
    });
    row("commits/s (all nodes) / increments per commit", &|w| {
        let syncs: u64 = w.syncs.iter().sum();
        format!(
            "{:.0} / {:.1}",
            syncs as f64 / w.secs,
            w.acks as f64 / syncs.max(1) as f64
        )
    });
    row("PostgreSQL WAL bytes per increment / per commit", &|w| {
        let syncs: u64 = w.syncs.iter().sum();
        format!(
            "{:.0} / {:.0}",
            w.wal_bytes as f64 / w.acks.max(1) as f64,
            w.wal_bytes as f64 / syncs.max(1) as f64
        )
    });
    for part in Part::ALL {
        row(&format!("CPU per increment: {}", part.label()), &|w| {
            format!("{:.1} µs", w.cpu_us_per_ack(Some(part)))
        });
    }
    row("CPU per increment: nodes + PostgreSQL + etcd", &|w| {
        format!("{:.1} µs", w.server_cpu_us_per_ack())
    });
    row("CPU per increment: all of the above", &|w| {
        format!("{:.1} µs", w.cpu_us_per_ack(None))
    });
    row("PostgreSQL CPU per commit", &|w| {
        let syncs: u64 = w.syncs.iter().sum();
        format!(
            "{:.0} µs",
            w.cpu_s(Some(Part::Postgres)) * 1e6 / syncs.max(1) as f64
        )
    });
    row(
        "cores busy (of 2): ours / the whole machine (of which interrupts, stolen)",
        &|w| {
            format!(
                "{:.2} / {:.2} ({:.2}, {:.2})",
                w.cpu_s(None) / w.secs,
                w.machine_s[0] / w.secs,
                w.machine_s[1] / w.secs,
                w.machine_s[2] / w.secs
            )
        },
    );
    let idle_cells: Vec<String> = columns
        .iter()
        .map(|(_, _, idle)| {
            idle.as_ref().map_or("".to_owned(), |w| {
                let cores = |p: Option<Part>| w.cpu_s(p) / w.secs;
                let nodes = cores(None)
                    - cores(Some(Part::Postgres))
                    - cores(Some(Part::Etcd))
                    - cores(Some(Part::Client));
                let nodes = nodes.max(0.0);
                format!(
                    "{nodes:.3} / {:.3} / {:.3}",
                    cores(Some(Part::Postgres)),
                    cores(Some(Part::Etcd))
                )
            })
        })
        .collect();
    println!(
        "| idle (no load): cores busy, nodes / PostgreSQL / etcd | {} |",
        idle_cells.join(" | ")
    );
    println!();
    let pooled = |runs: &[Vec<u32>]| {
        let mut all: Vec<u32> = runs.iter().flatten().copied().collect();
        all.sort_unstable();
        all
    };
    println!(
        "| 1 caller, {} names × {} rounds, pooled | p50 | p90 | p99 |",
        config.owned_names, config.rounds
    );
    println!("| --- | --- | --- | --- |");
    for (what, seq) in [
        ("increment", &forwarding.increments),
        ("read", &forwarding.reads),
    ] {
        for (via, runs) in [("the owner", &seq.owner), ("a non-owner", &seq.forwarded)] {
            let all = pooled(runs);
            println!(
                "| {what} through {via} | {:.3} ms | {:.3} ms | {:.3} ms |",
                percentile_us(&all, 0.5) / 1e3,
                percentile_us(&all, 0.9) / 1e3,
                percentile_us(&all, 0.99) / 1e3,
            );
        }
    }
    println!();
}

fn print_failovers(failovers: &[(u64, Vec<Failover>)]) {
    println!(
        "| lease TTL | round | names | node 3's shards | lease renewed just before the kill, \
         TTL | kill → lease expired | kill → last shard taken | kill → first answer: \
         median / slowest | last shard taken → first answer: median / slowest (names later \
         than 0.1 s) | answers other than 200 |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (ttl, rounds) in failovers {
        for (i, f) in rounds.iter().enumerate() {
            let (med, slowest, never) = first_answers(f);
            let after = f.all_taken.map_or("—".to_owned(), |taken| {
                let mut after: Vec<f64> = f
                    .first_ok
                    .iter()
                    .flatten()
                    .map(|ok| secs(*ok) - secs(taken))
                    .collect();
                after.sort_by(f64::total_cmp);
                let late = after.iter().filter(|a| **a > 0.1).count();
                format!(
                    "{:+.3} / {:+.3} s ({late})",
                    after.get(after.len() / 2).copied().unwrap_or(f64::NAN),
                    after.last().copied().unwrap_or(f64::NAN)
                )
            });
            println!(
                "| {ttl} s | {} | {}{} | {} | {} s | {} | {} | {} / {} | {after} | {} |",
                i + 1,
                f.first_ok.len(),
                if never > 0 {
                    format!(" ({never} never answered)")
                } else {
                    String::new()
                },
                f.shards,
                f.lease_left,
                fmt_opt(f.lease_gone),
                fmt_opt(f.all_taken),
                fmt_opt(med),
                fmt_opt(slowest),
                f.errors
            );
        }
    }
    println!();
}
