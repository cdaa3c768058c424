//! The seed's counter as a cluster (`--cluster`), as the README runs it: three nodes, each the
//! real example binary, sharing a private etcd and a private PostgreSQL on loopback.
//!
//! Increments of the same counters arrive concurrently through all three nodes: every answer
//! is a value no other answer had, and the counts end at the number of increments. Then one
//! node gets SIGTERM while the others keep incrementing: it hands its counters over and
//! leaves, and the two others serve every counter with nothing lost. Then one of those two is
//! killed (SIGKILL): its counters come back on the last node once its lease lapsed.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_addr, send, Process, Reply};
use durable_tests::etcd::EtcdServer;
use durable_tests::postgres::PgServer;

/// The counters every node increments.
const NAMES: [&str; 5] = ["A", "B", "C", "D", "E"];

/// The nodes' lease TTL, in seconds: a killed node's counters move after about this long.
const LEASE_TTL_SECS: u64 = 2;

/// How long one request may keep answering 503 (its counter between owners) before the test
/// fails.
const PATIENCE: Duration = Duration::from_secs(20);

/// The most one HTTP request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a node answers HTTP.
#[derive(Debug, Clone)]
struct Target {
    id: String,
    http: SocketAddr,
}

/// One node: the `counter` binary, its stderr in a log file (printed if the test fails).
struct Node {
    target: Target,
    log: PathBuf,
    process: Option<Process>,
}

impl Node {
    /// Starts node `id` of the cluster at `etcd`, storing in `postgres`, logging into `dir`.
    fn start(id: &str, etcd: &str, postgres: &str, dir: &Path) -> Node {
        let (http, listen) = (free_addr(), free_addr());
        let log = dir.join(format!("{id}.log"));
        let stderr = File::create(&log).expect("the node's log file");
        let mut command = Command::new(common::example_binary("counter"));
        // Nothing from the test's environment: only these flags.
        for (name, _) in std::env::vars() {
            if name.starts_with("DURABLE_") {
                command.env_remove(name);
            }
        }
        let (http_s, listen_s, ttl) = (
            http.to_string(),
            listen.to_string(),
            LEASE_TTL_SECS.to_string(),
        );
        let child = command
            .args(["--cluster", etcd, "--node-id", id, "--listen", &listen_s])
            .args(["--postgres", postgres, "--secret", "s", "--lease-ttl", &ttl])
            .args(["--addr", &http_s])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("start node {id}: {e}"));
        Node {
            target: Target {
                id: id.to_owned(),
                http,
            },
            log,
            process: Some(Process(child)),
        }
    }

    /// Waits until the node answers HTTP (it joined the cluster), or panics with its log if
    /// it exited.
    async fn wait_up(&mut self) {
        let start = Instant::now();
        while tokio::net::TcpStream::connect(self.target.http)
            .await
            .is_err()
        {
            let process = self.process.as_mut().expect("a running node");
            if let Some(status) = process.0.try_wait().expect("the node's status") {
                panic!(
                    "node {} exited at start ({status}); its log follows",
                    self.target.id
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "node {} does not answer on {}; its log follows",
                self.target.id,
                self.target.http
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the node logged so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- node {} log ---\n{}", self.target.id, self.log());
        }
    }
}

/// Sends one request to `node`, failing the test if it takes over [`REQUEST_TIMEOUT`].
async fn request(node: &Target, method: &str, target: &str) -> Reply {
    tokio::time::timeout(REQUEST_TIMEOUT, send(node.http, method, target))
        .await
        .unwrap_or_else(|_| panic!("node {}: no answer to {method} {target}", node.id))
}

/// Sends a request until it is not a 503 (for at most [`PATIENCE`]), and reads the count in
/// its 200 answer: the seed's text or the JSON route's `{"value":N}`.
async fn count_of(node: &Target, method: &str, target: &str, name: &str) -> i64 {
    let start = Instant::now();
    loop {
        let reply = request(node, method, target).await;
        match reply.status {
            200 => {
                let text = reply.body();
                let value = match text.strip_prefix(&format!("Durable Object '{name}' count: ")) {
                    Some(count) => count.parse().ok(),
                    None => serde_json::from_str::<serde_json::Value>(text)
                        .ok()
                        .and_then(|json| json["value"].as_i64()),
                };
                return value.unwrap_or_else(|| panic!("node {}: {reply:?}", node.id));
            }
            503 if start.elapsed() < PATIENCE => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ => panic!(
                "node {}: {method} {target} after {:?}: {reply:?}",
                node.id,
                start.elapsed()
            ),
        }
    }
}

/// Increments counter `name` through `node`, by the seed's route or the JSON one; returns
/// the new count.
async fn increment(node: &Target, name: &str, json: bool) -> i64 {
    if json {
        count_of(node, "POST", &format!("/{name}/increment"), name).await
    } else {
        count_of(node, "GET", &format!("/increment?name={name}"), name).await
    }
}

/// Counter `name`'s value, read through `node`.
async fn value(node: &Target, name: &str) -> i64 {
    count_of(node, "GET", &format!("/?name={name}"), name).await
}

/// Increments every counter through `node`, round after round (alternating the two routes,
/// and starting each round at another counter), `rounds` rounds and then until `stop` is set;
/// returns every answer.
async fn load(node: Target, rounds: usize, stop: Arc<AtomicBool>) -> Vec<(&'static str, i64)> {
    let mut answers = Vec::new();
    let mut round = 0;
    while round < rounds || !stop.load(Ordering::SeqCst) {
        for i in 0..NAMES.len() {
            let name = NAMES[(i + round) % NAMES.len()];
            answers.push((name, increment(&node, name, round % 2 == 1).await));
        }
        round += 1;
    }
    answers
}

/// Runs [`load`] on each of `nodes` at once; returns every answer.
async fn load_all(
    nodes: &[Target],
    rounds: usize,
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinSet<Vec<(&'static str, i64)>> {
    let mut tasks = tokio::task::JoinSet::new();
    for node in nodes {
        tasks.spawn(load(node.clone(), rounds, stop.clone()));
    }
    tasks
}

/// Checks that the answers of every counter are distinct and are exactly 1..=N (no
/// increment lost or counted twice); returns N for each counter.
fn check_answers(answers: &[(&'static str, i64)]) -> BTreeMap<&'static str, i64> {
    let mut by_name: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (name, value) in answers {
        by_name.entry(name).or_default().push(*value);
    }
    by_name
        .into_iter()
        .map(|(name, mut values)| {
            values.sort_unstable();
            let n = values.len() as i64;
            assert!(
                values.iter().copied().eq(1..=n),
                "counter {name}: the {n} increments answered {values:?}"
            );
            (name, n)
        })
        .collect()
}

/// The position of `line` in `log`, or a panic naming the node.
fn position(log: &str, line: &str, node: &str) -> usize {
    log.find(line)
        .unwrap_or_else(|| panic!("node {node} never logged {line:?}:\n{log}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_counter_nodes_share_their_counters_and_hand_them_over() {
    let test_start = Instant::now();
    let etcd = EtcdServer::start();
    let pg = PgServer::start();
    pg.create_database("counters");
    // The private server trusts loopback: the password is there to be hidden in the logs.
    let postgres = pg.url("counters").replace("postgres@", "postgres:pw@");
    let logs = tempfile::tempdir().unwrap();
    let mut nodes: Vec<Node> = ["n1", "n2", "n3"]
        .iter()
        .map(|id| Node::start(id, &etcd.endpoint(), &postgres, logs.path()))
        .collect();
    for node in &mut nodes {
        node.wait_up().await;
    }
    let targets: Vec<Target> = nodes.iter().map(|n| n.target.clone()).collect();
    // Each node names itself, its etcd and its PostgreSQL (without the password).
    for node in &nodes {
        let log = node.log();
        let line = format!(
            "cluster node `{}` of cluster `durable`: etcd {}, counters in {}",
            node.target.id,
            etcd.endpoint(),
            postgres.replace(":pw@", ":***@")
        );
        assert!(log.contains(&line), "no {line:?} in\n{log}");
        assert!(!log.contains(":pw@"), "the password is logged:\n{log}");
    }

    // 1. The same counters, concurrently through all three nodes, while the shards spread
    //    over the nodes that just joined.
    let stop = Arc::new(AtomicBool::new(true));
    let mut answers = Vec::new();
    let mut tasks = load_all(&targets, 6, &stop).await;
    while let Some(done) = tasks.join_next().await {
        answers.extend(done.unwrap());
    }
    let counts = check_answers(&answers);
    assert_eq!(counts.len(), NAMES.len());
    for (name, n) in &counts {
        assert_eq!(*n, 3 * 6, "counter {name}");
        for node in &targets {
            assert_eq!(value(node, name).await, *n, "counter {name} on {}", node.id);
        }
    }

    // 2. SIGTERM to n3 while n1 and n2 keep incrementing: n3 stops taking HTTP, hands its
    //    shards over (their queued calls finish), leaves; nothing is lost or doubled.
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = load_all(&targets[..2], 2, &stop).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let n3 = nodes[2].process.take().expect("n3 runs");
    let status = tokio::task::spawn_blocking(move || n3.terminate(Duration::from_secs(20)))
        .await
        .unwrap();
    stop.store(true, Ordering::SeqCst);
    while let Some(done) = tasks.join_next().await {
        answers.extend(done.unwrap());
    }
    let log = nodes[2].log();
    assert!(status.success(), "n3 exited with {status}:\n{log}");
    let signal = position(&log, "shutting down: no new requests", "n3");
    let handing = position(&log, "handing shards over", "n3");
    let left = position(&log, "left the cluster", "n3");
    let stopped = position(&log, "stopped; data synced in", "n3");
    assert!(
        signal < handing && handing < left && left < stopped,
        "n3 stopped in the wrong order:\n{log}"
    );
    let counts = check_answers(&answers);
    for (name, n) in &counts {
        assert!(
            *n > 3 * 6,
            "counter {name} was not incremented during the handover"
        );
        for node in &targets[..2] {
            assert_eq!(value(node, name).await, *n, "counter {name} on {}", node.id);
        }
    }

    // 3. kill -9 of n2: its counters come back on n1 once n2's lease lapsed.
    drop(nodes[1].process.take());
    let killed = Instant::now();
    for (name, n) in &counts {
        assert_eq!(value(&targets[0], name).await, *n, "counter {name} on n1");
        assert_eq!(increment(&targets[0], name, false).await, n + 1);
    }
    eprintln!(
        "every counter answered on n1 {:?} after n2 was killed (lease TTL {LEASE_TTL_SECS} s); \
         the test took {:?}",
        killed.elapsed(),
        test_start.elapsed()
    );
    // n1 is still a healthy node that shuts down cleanly.
    let n1 = nodes[0].process.take().expect("n1 runs");
    let status = tokio::task::spawn_blocking(move || n1.terminate(Duration::from_secs(20)))
        .await
        .unwrap();
    assert!(
        status.success(),
        "n1 exited with {status}:\n{}",
        nodes[0].log()
    );
}
