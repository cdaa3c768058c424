//! Cluster mode, with real processes: a private etcd and PostgreSQL, and three or more nodes
//! (`cluster_node` child processes). The tests call objects through runtimes connected to the
//! nodes; every node routes a call to its object's owner.
//!
//! The tests run one at a time (each starts its own etcd, PostgreSQL and nodes, and some
//! measure failover times).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use durable_runtime::{ErrorKind, ObjectStub, Runtime};
use durable_tests::cluster::{ClusterConfig, Node, TallyStub};
use durable_tests::etcd::EtcdServer;
use durable_tests::postgres::PgServer;

const SECRET: &str = "cluster test secret";

/// One test at a time: each runs a whole cluster, and some measure time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Setup {
    etcd: EtcdServer,
    pg: PgServer,
    config: ClusterConfig,
}

fn setup(lease_ttl_secs: u64) -> Setup {
    let etcd = EtcdServer::start();
    let pg = PgServer::start();
    let config = ClusterConfig {
        binary: env!("CARGO_BIN_EXE_cluster_node").into(),
        etcd: etcd.endpoint(),
        postgres: pg.url("postgres"),
        secret: SECRET.to_owned(),
        lease_ttl_secs,
        shards: 16,
        name: "test".to_owned(),
        tls: None,
    };
    Setup { etcd, pg, config }
}

async fn lock() -> tokio::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().await
}

fn tally(front: &Runtime, name: &str) -> TallyStub {
    front
        .namespace::<durable_tests::cluster::Tally>()
        .get_by_name(name)
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("tally-{i}")).collect()
}

/// Waits until every name answers through `front`, and returns the node running each.
async fn owners(front: &Runtime, names: &[String], patience: Duration) -> BTreeMap<String, String> {
    let deadline = Instant::now() + patience;
    let mut owners = BTreeMap::new();
    for name in names {
        loop {
            match tally(front, name)
                .with_timeout(Duration::from_secs(5))
                .node()
                .await
            {
                Ok(node) => {
                    owners.insert(name.clone(), node);
                    break;
                }
                Err(e) if Instant::now() < deadline && e.is_retryable() => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{name} did not answer within {patience:?}: {e}"),
            }
        }
    }
    owners
}

/// Waits until the objects of `names` are spread over exactly the nodes `expected`.
async fn spread_over(front: &Runtime, names: &[String], expected: &[&str], patience: Duration) {
    let deadline = Instant::now() + patience;
    let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
    loop {
        let owners = owners(front, names, patience).await;
        let seen: BTreeSet<String> = owners.values().cloned().collect();
        if seen == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the objects are on {seen:?}, not spread over {expected:?} within {patience:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts nodes n1, n2 and n3 and a front on each, and waits until `count` objects are
/// spread over the three.
async fn three_nodes(s: &Setup, count: usize) -> (Vec<Node>, Vec<Runtime>, Vec<String>) {
    let nodes: Vec<Node> = ["n1", "n2", "n3"]
        .iter()
        .map(|id| Node::start(&s.config, id))
        .collect();
    let fronts: Vec<Runtime> = nodes.iter().map(|n| n.front(SECRET)).collect();
    let names = names(count);
    spread_over(
        &fronts[0],
        &names,
        &["n1", "n2", "n3"],
        Duration::from_secs(30),
    )
    .await;
    (nodes, fronts, names)
}

/// What a load run saw, per object name.
#[derive(Default, Debug)]
struct Seen {
    /// Acknowledged values.
    acks: HashMap<String, Vec<i64>>,
    /// Calls that failed and may have run (disconnected, timed out, storage failed).
    ambiguous: HashMap<String, u64>,
    /// Calls that failed unrun (unavailable, overloaded), by kind.
    refused: BTreeMap<String, u64>,
    /// Every error, by kind, with one message each.
    errors: BTreeMap<String, (u64, String)>,
}

/// Increments the objects of `names` from `workers` tasks per front until `stop` is set.
fn load(
    fronts: Vec<Runtime>,
    names: Vec<String>,
    workers: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Seen> {
    tokio::spawn(async move {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut tasks = Vec::new();
        for (f, front) in fronts.iter().enumerate() {
            for w in 0..workers {
                let front = front.clone();
                let names = names.clone();
                let stop = stop.clone();
                let seen = seen.clone();
                tasks.push(tokio::spawn(async move {
                    let mut i = f * 7 + w * 3;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let name = &names[i % names.len()];
                        i += 1;
                        let result = tally(&front, name)
                            .with_timeout(Duration::from_secs(20))
                            .increment(1)
                            .await;
                        let failed = {
                            let mut seen = seen.lock().unwrap();
                            match result {
                                Ok(value) => {
                                    seen.acks.entry(name.clone()).or_default().push(value);
                                    false
                                }
                                Err(e) => {
                                    let kind = format!("{:?}", e.kind());
                                    let entry = seen
                                        .errors
                                        .entry(kind.clone())
                                        .or_insert((0, e.to_string()));
                                    entry.0 += 1;
                                    match e.kind() {
                                        // A commit whose answer was lost with the
                                        // connection to PostgreSQL may have landed too.
                                        ErrorKind::Disconnected
                                        | ErrorKind::Timeout
                                        | ErrorKind::Storage => {
                                            *seen.ambiguous.entry(name.clone()).or_default() += 1
                                        }
                                        _ => *seen.refused.entry(kind).or_default() += 1,
                                    }
                                    true
                                }
                            }
                        };
                        if failed {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }));
            }
        }
        for task in tasks {
            task.await.unwrap();
        }
        Arc::try_unwrap(seen).unwrap().into_inner().unwrap()
    })
}

/// Every acknowledged value of an object is distinct (one live instance at a time, no lost
/// or doubled write), and the stored value accounts for every acknowledged call, and for
/// no more calls than were sent.
async fn check_accounts(front: &Runtime, seen: &Seen) -> u64 {
    let mut total = 0;
    for (name, acks) in &seen.acks {
        let distinct: BTreeSet<i64> = acks.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            acks.len(),
            "{name}: an acknowledged value twice: {acks:?}"
        );
        let stored = tally(front, name)
            .with_timeout(Duration::from_secs(20))
            .get()
            .await
            .unwrap_or_else(|e| panic!("read {name}: {e}"));
        let max = *distinct.last().unwrap();
        let ambiguous = seen.ambiguous.get(name).copied().unwrap_or(0) as i64;
        assert!(
            stored >= max,
            "{name}: {stored} stored, but {max} was acknowledged (a lost write)"
        );
        assert!(
            stored <= acks.len() as i64 + ambiguous,
            "{name}: {stored} stored from {} acknowledged and {ambiguous} ambiguous calls (a doubled write)",
            acks.len()
        );
        total += acks.len() as u64;
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_node_answers_for_every_object_with_one_live_instance_per_id() {
    let _one = lock().await;
    let s = setup(3);
    let (nodes, fronts, names) = three_nodes(&s, 24).await;
    // Every node sees the same owner for every object.
    let first = owners(&fronts[0], &names, Duration::from_secs(10)).await;
    for front in &fronts[1..] {
        assert_eq!(owners(front, &names, Duration::from_secs(10)).await, first);
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let running = load(fronts.clone(), names.clone(), 8, stop.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = running.await.unwrap();
    assert!(
        seen.errors.is_empty(),
        "calls failed in a steady cluster: {:?}",
        seen.errors
    );
    let total = check_accounts(&fronts[1], &seen).await;
    assert!(total > 300, "only {total} calls were acknowledged in 3 s");
    // The shards are spread, and every node forwarded calls to the others.
    let mut owned = Vec::new();
    for node in &nodes {
        owned.push(node.metric("durable_shards_owned").await);
        assert!(
            node.metric("durable_calls_forwarded_total").await > 0,
            "{}",
            node.id
        );
    }
    assert_eq!(owned.iter().sum::<u64>(), 16, "{owned:?}");
    assert!(owned.iter().all(|&n| (5..=6).contains(&n)), "{owned:?}");
    // No call went astray: each object's stored value is exactly its acknowledged calls.
    for (name, acks) in &seen.acks {
        let stored = tally(&fronts[2], name).get().await.unwrap();
        assert_eq!(stored, acks.len() as i64, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_node_s_objects_are_served_by_the_others_within_two_lease_ttls() {
    let _one = lock().await;
    let ttl = 3;
    let s = setup(ttl);
    let (mut nodes, fronts, names) = three_nodes(&s, 24).await;
    let before = owners(&fronts[0], &names, Duration::from_secs(10)).await;
    let moved: Vec<String> = before
        .iter()
        .filter(|(_, node)| node.as_str() == "n2")
        .map(|(name, _)| name.clone())
        .collect();
    assert!(!moved.is_empty());
    // Load through the nodes that survive.
    let survivors = vec![fronts[0].clone(), fronts[2].clone()];
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let running = load(survivors.clone(), names.clone(), 6, stop.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed = Instant::now();
    nodes[1].kill9();
    // Each object of the dead node answers again, through a survivor, within 2 TTLs.
    let mut slowest = Duration::ZERO;
    for name in &moved {
        loop {
            match tally(&fronts[0], name)
                .with_timeout(Duration::from_secs(1))
                .get()
                .await
            {
                Ok(_) => break,
                Err(_) if killed.elapsed() < Duration::from_secs(ttl * 4) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("{name} was not served again within {} s: {e}", ttl * 4),
            }
        }
        slowest = slowest.max(killed.elapsed());
    }
    assert!(
        slowest <= Duration::from_secs(2 * ttl),
        "the dead node's objects took {slowest:?} to be served again (lease TTL {ttl} s)"
    );
    eprintln!("failover: every moved object served again {slowest:?} after the kill");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = running.await.unwrap();
    let after = owners(&fronts[2], &names, Duration::from_secs(10)).await;
    assert!(after.values().all(|n| n != "n2"), "{after:?}");
    let total = check_accounts(&fronts[2], &seen).await;
    assert!(total > 100, "{total}");
    eprintln!(
        "during failover: {total} acknowledged, errors {:?}, ambiguous {:?}",
        seen.errors, seen.ambiguous
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_node_s_late_commit_is_refused_by_the_fence() {
    let _one = lock().await;
    let ttl = 2;
    let s = setup(ttl);
    let (mut nodes, fronts, names) = three_nodes(&s, 24).await;
    let before = owners(&fronts[0], &names, Duration::from_secs(10)).await;
    let name = before
        .iter()
        .find(|(_, node)| node.as_str() == "n1")
        .map(|(name, _)| name.clone())
        .expect("an object on n1");
    assert_eq!(tally(&fronts[1], &name).increment(5).await.unwrap(), 5);
    // A call on n1 writes, then waits before returning: its commit comes after the pause.
    let slow = {
        let stub = tally(&fronts[0], &name).with_timeout(Duration::from_secs(60));
        tokio::spawn(async move { stub.slow_increment(100, 1500).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    nodes[0].pause();
    // n1's lease expires; another node takes the object and writes.
    tokio::time::sleep(Duration::from_secs(2 * ttl + 1)).await;
    let value = tally(&fronts[1], &name)
        .with_timeout(Duration::from_secs(20))
        .increment(10)
        .await
        .expect("another node serves the object");
    assert_eq!(value, 15, "the new owner read what was committed");
    let owner = tally(&fronts[1], &name).node().await.unwrap();
    assert_ne!(owner, "n1");
    nodes[0].resume();
    let late = slow.await.unwrap();
    let err = late.expect_err("the paused node's late commit was acknowledged");
    eprintln!("the paused node's call failed: {err}");
    assert!(
        err.to_string().contains("term") || err.kind() == ErrorKind::Unavailable,
        "{err}"
    );
    // Its write never landed.
    assert_eq!(tally(&fronts[2], &name).get().await.unwrap(), 15);
    // And n1 serves again, once it has a new lease.
    let again = tally(&fronts[0], &name)
        .with_timeout(Duration::from_secs(20))
        .increment(1)
        .await
        .expect("n1 routes calls again after its pause");
    assert_eq!(again, 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_join_and_leave_cleanly_under_load_without_a_failed_call() {
    let _one = lock().await;
    let s = setup(3);
    let mut n1 = Node::start(&s.config, "n1");
    let n2 = Node::start(&s.config, "n2");
    let names = names(24);
    let front2 = n2.front(SECRET);
    spread_over(&front2, &names, &["n1", "n2"], Duration::from_secs(30)).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let running = load(vec![front2.clone()], names.clone(), 8, stop.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    // A third node joins and takes its share.
    let n3 = Node::start(&s.config, "n3");
    let front3 = n3.front(SECRET);
    spread_over(
        &front3,
        &names,
        &["n1", "n2", "n3"],
        Duration::from_secs(30),
    )
    .await;
    // The first one leaves cleanly: its shards are handed over, queued calls finish.
    assert!(
        n1.terminate(Duration::from_secs(30)),
        "n1 did not shut down cleanly"
    );
    spread_over(&front3, &names, &["n2", "n3"], Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = running.await.unwrap();
    assert!(
        seen.errors.is_empty(),
        "calls failed while nodes joined and left: {:?}",
        seen.errors
    );
    let total = check_accounts(&front3, &seen).await;
    assert!(total > 100, "{total}");
    for (name, acks) in &seen.acks {
        assert_eq!(
            tally(&front3, name).get().await.unwrap(),
            acks.len() as i64,
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn service_resumes_after_etcd_was_down_longer_than_the_lease() {
    let _one = lock().await;
    let ttl = 2;
    let mut s = setup(ttl);
    let (_nodes, fronts, names) = three_nodes(&s, 24).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let running = load(fronts.clone(), names.clone(), 4, stop.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.etcd.stop();
    tokio::time::sleep(Duration::from_secs(2 * ttl + 1)).await;
    // Every lease lapsed: the nodes start no call.
    let err = tally(&fronts[0], &names[0])
        .with_timeout(Duration::from_secs(2))
        .increment(1)
        .await
        .expect_err("a call succeeded with etcd down past every lease");
    assert!(
        matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Timeout),
        "{err}"
    );
    s.etcd.restart();
    let resumed = Instant::now();
    owners(&fronts[1], &names, Duration::from_secs(30)).await;
    eprintln!(
        "service resumed {:?} after etcd restarted",
        resumed.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = running.await.unwrap();
    check_accounts(&fronts[2], &seen).await;
    eprintln!("errors around the etcd outage: {:?}", seen.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_dying_while_postgres_is_down_loses_nothing() {
    let _one = lock().await;
    let ttl = 2;
    let mut s = setup(ttl);
    let (mut nodes, fronts, names) = three_nodes(&s, 24).await;
    let before = owners(&fronts[0], &names, Duration::from_secs(10)).await;
    let survivors = vec![fronts[0].clone(), fronts[2].clone()];
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let running = load(survivors, names.clone(), 4, stop.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    // PostgreSQL goes down, then a node dies: its lease expires and the survivors take its
    // shards in etcd, but cannot claim them in storage until PostgreSQL is back.
    s.pg.stop();
    nodes[1].kill9();
    tokio::time::sleep(Duration::from_secs(2 * ttl + 1)).await;
    let err = tally(&fronts[0], &names[0])
        .with_timeout(Duration::from_secs(2))
        .increment(1)
        .await
        .expect_err("a call succeeded with PostgreSQL down");
    // Refused (its shard unclaimed), failed by storage, or cut off by its own deadline.
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Unavailable | ErrorKind::Storage | ErrorKind::Timeout
        ),
        "{err}"
    );
    s.pg.restart();
    let resumed = Instant::now();
    let after = owners(&fronts[2], &names, Duration::from_secs(30)).await;
    eprintln!(
        "every object served {:?} after PostgreSQL restarted",
        resumed.elapsed()
    );
    for (name, node) in &after {
        assert_ne!(node, "n2", "{name} is still on the dead node");
    }
    assert!(
        before.values().any(|n| n == "n2"),
        "n2 owned nothing: {before:?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = running.await.unwrap();
    let total = check_accounts(&fronts[2], &seen).await;
    assert!(total > 50, "{total}");
    eprintln!(
        "around the outage: {total} acknowledged, errors {:?}",
        seen.errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alarms_fire_on_the_owner_only_and_survive_failover() {
    let _one = lock().await;
    let ttl = 2;
    let s = setup(ttl);
    let (mut nodes, fronts, names) = three_nodes(&s, 24).await;
    let before = owners(&fronts[0], &names, Duration::from_secs(10)).await;
    // Every object schedules an alarm; the node of a third of them dies before it is due.
    for name in &names {
        tally(&fronts[0], name).schedule(2500).await.unwrap();
    }
    nodes[1].kill9();
    tokio::time::sleep(Duration::from_secs(2 * ttl + 4)).await;
    for name in &names {
        let fired = tally(&fronts[2], name)
            .with_timeout(Duration::from_secs(20))
            .fired()
            .await
            .unwrap();
        assert_eq!(
            fired.len(),
            1,
            "{name} (on {}): fired on {fired:?}",
            before[name]
        );
        if before[name] == "n2" {
            assert_ne!(fired[0], "n2", "{name}");
        } else {
            assert_eq!(fired[0], before[name], "{name} fired off its owner");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_without_the_secret_is_refused() {
    let _one = lock().await;
    let s = setup(3);
    let n1 = Node::start(&s.config, "n1");
    // A node with another secret cannot join.
    let refused = Node::try_start(&s.config, "intruder", "another secret")
        .err()
        .expect("a node with another secret joined the cluster");
    assert!(refused.contains("secret"), "{refused}");
    // A runtime with another secret cannot call.
    let front = Runtime::builder()
        .connect(n1.addr().to_owned())
        .secret("another secret")
        .open()
        .unwrap();
    let err = tally(&front, "x").increment(1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    // The cluster still serves.
    assert_eq!(tally(&n1.front(SECRET), "x").increment(1).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websockets_held_by_any_node_reach_their_room_wherever_it_moves() {
    use durable_tests::room::{join, next_text, say, Room};
    let _one = lock().await;
    let ttl = 2;
    let s = setup(ttl);
    let mut nodes: Vec<Node> = ["n1", "n2", "n3"]
        .iter()
        .map(|id| Node::start(&s.config, id))
        .collect();
    let front = nodes[0].front(SECRET);
    let names = names(24);
    spread_over(&front, &names, &["n1", "n2", "n3"], Duration::from_secs(30)).await;
    let rooms = front.namespace::<Room>();
    let owner = rooms.get_by_name("lobby").node().await.unwrap();
    let owner_at = nodes.iter().position(|n| n.id == owner).unwrap();
    let others: Vec<usize> = (0..3).filter(|&i| i != owner_at).collect();
    // A client on every node, each held by the node it connected to.
    let mut on_owner = join(nodes[owner_at].http(), "lobby", "name=o").await;
    let mut a = join(nodes[others[0]].http(), "lobby", "name=a").await;
    let mut b = join(nodes[others[1]].http(), "lobby", "name=b").await;
    say(&mut a, "all:hello").await;
    for client in [&mut on_owner, &mut a, &mut b] {
        assert_eq!(next_text(client).await, "a: hello");
    }
    say(&mut b, "count").await;
    assert_eq!(next_text(&mut b).await, "1 count");
    // The room's node dies; the room comes back on another node, and the sockets held by
    // the survivors follow it: a broadcast reaches both, and the stored count goes on.
    drop(on_owner);
    nodes[owner_at].kill9();
    let killed = Instant::now();
    // Said while a's node still sees the dead owner: the event waits for the room's new node
    // instead of being lost.
    tokio::time::sleep(Duration::from_millis(200)).await;
    say(&mut a, "all:early").await;
    // Asked through b's node: nothing but the placement change tells a's node where the
    // room went, and a must still hear b.
    let survivor = nodes[others[1]].front(SECRET);
    loop {
        match survivor
            .namespace::<Room>()
            .get_by_name("lobby")
            .with_timeout(Duration::from_secs(1))
            .node()
            .await
        {
            Ok(node) => {
                assert_ne!(node, owner);
                break;
            }
            Err(e) if killed.elapsed() < Duration::from_secs(4 * ttl) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the room did not come back: {e}"),
        }
    }
    say(&mut b, "all:again").await;
    for client in [&mut a, &mut b] {
        let mut heard = [next_text(client).await, next_text(client).await];
        heard.sort();
        assert_eq!(heard, ["a: early", "b: again"]);
    }
    say(&mut a, "count").await;
    assert_eq!(next_text(&mut a).await, "2 count");
    // The room knows both sockets (and not the one that died with its node... which closed).
    let open = survivor
        .namespace::<Room>()
        .get_by_name("lobby")
        .open_sockets()
        .await
        .unwrap();
    assert_eq!(open, 2, "the room's sockets after failover");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_ids_and_delete_all_objects_span_the_cluster() {
    let _one = lock().await;
    let s = setup(3);
    let (_nodes, fronts, names) = three_nodes(&s, 30).await;
    for name in &names {
        tally(&fronts[0], name).increment(1).await.unwrap();
    }
    let tallies = |front: &Runtime| front.namespace::<durable_tests::cluster::Tally>();
    let expected: BTreeSet<String> = names
        .iter()
        .map(|n| tallies(&fronts[0]).id_from_name(n).to_string())
        .collect();
    for front in &fronts {
        let listed: BTreeSet<String> = tallies(front)
            .list_ids()
            .await
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(listed, expected, "list_ids through one node");
    }
    // Deleted by their owners, whichever node is asked.
    assert_eq!(tallies(&fronts[2]).delete_all_objects().await.unwrap(), 30);
    assert!(tallies(&fronts[1]).list_ids().await.unwrap().is_empty());
    for name in &names {
        assert_eq!(tally(&fronts[1], name).get().await.unwrap(), 0, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_forward_calls_to_each_other_over_tls() {
    let _one = lock().await;
    let mut s = setup(3);
    let ca = durable_tests::certs::Ca::new("cluster CA");
    let (cert, key) = ca.node(&["127.0.0.1"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), key).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    s.config.tls = Some(dir.path().to_owned());
    // The spread is checked through n1: calls to the objects of n2 and n3 cross TLS.
    let (nodes, fronts, names) = three_nodes(&s, 24).await;
    for (i, name) in names.iter().enumerate() {
        let front = &fronts[i % 3];
        assert_eq!(tally(front, name).increment(1).await.unwrap(), 1, "{name}");
    }
    for node in &nodes {
        assert!(
            node.metric("durable_calls_forwarded_total").await > 0,
            "{}",
            node.id
        );
    }
    // A runtime without TLS is refused by a node.
    let plain = Runtime::builder()
        .connect(nodes[0].addr().to_owned())
        .secret(SECRET)
        .open()
        .unwrap();
    let err = tally(&plain, &names[0]).get().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
}
