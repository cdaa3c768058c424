//! The crash torture of `torture.rs` on PostgreSQL: the same child (`torture_child`, 32
//! callers over 1,000 objects; increments, puts, deletes, transactions, rolled-back
//! transactions; every call printed before it is sent and every reply after) on a private
//! server ([`PgServer`], loopback, `fsync=on`), and the same checks (`durable_tests::torture`):
//! nothing acknowledged missing, nothing half-applied, nothing invented (also no data row
//! besides the objects' keys), every reply right.
//!
//! - `..._when_the_runtime_is_killed`: the child is killed with SIGKILL at random moments and
//!   the database read back through a new runtime after each kill.
//! - `..._when_postgres_is_killed`: the server is killed with SIGKILL under the child's load
//!   (the postmaster alone, or every server process at once as in a machine crash) and
//!   restarted after a short random pause, again and again, while the same runtime runs.
//! - `..._when_postgres_hangs`: the same with the server frozen (SIGSTOP of every process)
//!   for up to twice the backend timeout (once for longer than a call may take), then
//!   resumed (SIGCONT).
//! - `a_commit_cut_off_at_its_deadline_...`: one commit held past the backend's deadline by a
//!   row lock, deterministically: it must not land after its object reloaded.
//!
//! Through the outages: calls fail with retryable `Storage` errors only, none takes longer
//! than the backend's timeout allows, calls succeed again once the server is back without
//! restarting the runtime, and a failed call's outcome (its commit may have landed while its
//! reply was lost) is settled: the object, read right after, shows the call applied or not,
//! and stays so. A call that failed while the postmaster alone was killed must not be found
//! applied (the server answered every commit it ran).
//!
//! Seeded (the seed is printed; `DURABLE_TORTURE_SEED=N` replays its random choices, though
//! not the scheduling); `DURABLE_TORTURE_CYCLES=N` sets the number of kills of the runtime
//! (default 20) or of outages (default 8 kills, 6 freezes).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Child;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use durable_runtime::ErrorKind;
use durable_tests::postgres::PgServer;
use durable_tests::spawn_with_lines;
use durable_tests::torture::{
    cycles_from_env, kill, recover, run_child_and_kill, seed_from_env, History, Rng, State,
    Tortured, PATIENCE,
};

const CHILD: &str = env!("CARGO_BIN_EXE_torture_child");

/// The child's backend timeout ([`PostgresOptions::timeout`] and `connect_timeout`) while
/// PostgreSQL is killed under it.
///
/// [`PostgresOptions::timeout`]: durable_runtime::PostgresOptions::timeout
const TIMEOUT: Duration = Duration::from_secs(2);

/// The longest a call may take while the server is out, one outage at a time: a backend
/// operation of its object's load (after a reset), the commit round under way when its
/// writes are queued, and its own round, each ends within [`TIMEOUT`] (answered or failed);
/// plus 2 s of scheduling on a busy machine. A call that waited for the server instead of
/// timing out would take as long as the outage.
const SLOWEST_CALL: Duration = Duration::from_secs(3 * 2 + 2);

/// A fresh server with an empty database `torture`; its URL.
fn server() -> (PgServer, String) {
    let pg = PgServer::start();
    pg.create_database("torture");
    let url = pg.url("torture");
    (pg, url)
}

/// Nothing invented outside the objects checked: the data rows in the database are exactly
/// the keys the recovery read through the runtime.
fn no_other_rows(pg: &PgServer, recovered: &[State], ctx: &str) {
    let keys: usize = recovered.iter().map(State::len).sum();
    let rows: usize = pg
        .psql("torture", "SELECT count(*) FROM durable_data")
        .trim()
        .parse()
        .expect("a count");
    assert_eq!(
        rows, keys,
        "{ctx}: rows in durable_data besides the objects' keys"
    );
}

#[test]
fn no_acknowledged_write_is_lost_and_nothing_is_half_applied_when_the_runtime_is_killed() {
    let cycles = cycles_from_env(20);
    let seed = seed_from_env();
    println!("seed {seed} (DURABLE_TORTURE_SEED={seed} replays it), {cycles} cycles");
    let mut rng = Rng(seed);
    let (pg, url) = server();
    let mut history = History::default();
    let started = Instant::now();

    for cycle in 0..cycles {
        let child_seed = (rng.next_u64() >> 1).to_string();
        // Early kills (during the open: connecting, creating the tables, taking the lock)
        // from the second cycle on, as in torture.rs.
        let (lines, when) = run_child_and_kill(CHILD, &[&url, &child_seed], cycle == 0, &mut rng);
        let ctx = format!("cycle {cycle} (killed {when})");
        for line in &lines {
            history.line(line, &ctx);
        }
        let in_flight = history.outstanding();
        let recovered = recover(&url);
        no_other_rows(&pg, &recovered, &ctx);
        history.check(recovered, &ctx);
        println!(
            "cycle {cycle}: killed {when}; {} lines, {in_flight} calls in flight",
            lines.len(),
        );
    }
    let t = &history.tally;
    assert!(
        t.acked > 0 || cycles == 0,
        "the child never acknowledged anything"
    );
    println!(
        "pg torture, runtime killed: {cycles} kill -9 cycles survived in {:.1?}, {} calls \
         sent, {} acknowledged, none lost; {} keys verified ({} whole transactions); in flight \
         at a kill: {} found applied, {} not (or a no-op)",
        started.elapsed(),
        t.sent,
        t.acked,
        t.verified_keys,
        t.txn_objects,
        t.in_flight_applied,
        t.in_flight_lost
    );
}

/// The child under test and its lines, replayed into the history as they come.
struct Load {
    child: Child,
    rx: Receiver<String>,
    history: History,
    /// Objects called since the last [`mark`](Load::mark) (`None`: no mark).
    called_since_mark: Option<BTreeSet<usize>>,
    /// Whether one of them acknowledged that call.
    acked_since_mark: bool,
    /// The latest outage begun (failures are its doing, also once the server is back).
    outage: Option<Outage>,
    /// Objects with a failed call not yet settled → the outage it failed in.
    failed_in: BTreeMap<usize, Option<Outage>>,
    /// Failed calls found applied by the read after them, by the outage they failed in.
    applied_after: BTreeMap<Option<Outage>, usize>,
}

impl Load {
    /// Replays the child's lines until `deadline`, or until `stop` says so.
    fn pump(&mut self, deadline: Instant, ctx: &str, stop: impl Fn(&Load) -> bool) -> bool {
        loop {
            if stop(self) {
                return true;
            }
            match self
                .rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => self.replay(&line, ctx),
                Err(RecvTimeoutError::Timeout) => return false,
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait();
                    panic!("{ctx}: the child stopped by itself: {status:?}");
                }
            }
        }
    }

    fn replay(&mut self, line: &str, ctx: &str) {
        let applied = self.history.tally.failed_applied;
        let o = self.history.line(line, ctx);
        if line.starts_with("F ") {
            self.failed_in.entry(o).or_insert(self.outage);
        } else if line.starts_with("R ") {
            let outage = self.failed_in.remove(&o).flatten();
            if self.history.tally.failed_applied > applied {
                *self.applied_after.entry(outage).or_default() += 1;
            }
        }
        if let Some(called) = &mut self.called_since_mark {
            if line.starts_with("S ") {
                called.insert(o);
            } else if line.starts_with("A ") && called.contains(&o) {
                self.acked_since_mark = true;
            }
        }
    }

    /// Replays for `run`.
    fn run_for(&mut self, run: Duration, ctx: &str) {
        self.pump(Instant::now() + run, ctx, |_| false);
    }

    /// From now on, watch for a call sent after this moment and acknowledged.
    fn mark(&mut self) {
        self.called_since_mark = Some(BTreeSet::new());
        self.acked_since_mark = false;
    }

    /// Waits until a call sent after the [`mark`](Load::mark) is acknowledged.
    fn wait_for_fresh_ack(&mut self, ctx: &str) {
        let deadline = Instant::now() + PATIENCE;
        if !self.pump(deadline, ctx, |load| load.acked_since_mark) {
            panic!("{ctx}: no call sent after the mark succeeded within {PATIENCE:?}");
        }
        self.called_since_mark = None;
    }

    /// Kills the child with SIGKILL and replays what it printed before dying.
    fn kill(&mut self, ctx: &str) {
        kill(&mut self.child);
        while let Ok(line) = self.rx.recv() {
            self.replay(&line, ctx);
        }
    }
}

/// What happens to the server in one outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outage {
    /// SIGKILL of the postmaster: its backends exit once they notice, each finishing the
    /// statement it runs (a commit under way lands and is answered).
    KillPostmaster,
    /// SIGKILL of every server process at once, as a machine crash: a commit may reach the
    /// write-ahead log and lose its reply.
    KillAll,
    /// SIGSTOP of every server process, SIGCONT after the pause: the server hangs, as behind
    /// a partition, and then goes on where it stopped.
    Freeze,
}

/// The torture under outages of the server: the child runs with `--survive` and a
/// [`TIMEOUT`]; each outage is one of `kinds` (chosen at random), `pause` long at most (with
/// `long`, one outage chosen at random lasts that long), and the test waits after it until a
/// call sent after the server came back is acknowledged. At the end the child is killed too
/// (the server up, or in a last outage), and the database is read back through a new
/// runtime.
fn outage_torture(
    name: &str,
    kinds: &[Outage],
    default_outages: usize,
    pause: Duration,
    long: Option<Duration>,
) {
    let outages = cycles_from_env(default_outages);
    let seed = seed_from_env();
    println!("seed {seed} (DURABLE_TORTURE_SEED={seed} replays it), {outages} outages");
    let mut rng = Rng(seed);
    let (mut pg, url) = server();
    let child_seed = (rng.next_u64() >> 1).to_string();
    let timeout_ms = TIMEOUT.as_millis().to_string();
    let args = [
        url.as_str(),
        &child_seed,
        "--survive",
        "--timeout-ms",
        &timeout_ms,
    ];
    let (child, rx) = spawn_with_lines(CHILD, &args);
    let mut load = Load {
        child,
        rx,
        history: History::default(),
        called_since_mark: None,
        acked_since_mark: false,
        outage: None,
        failed_in: BTreeMap::new(),
        applied_after: BTreeMap::new(),
    };
    let started = Instant::now();
    load.mark();
    load.wait_for_fresh_ack("start");
    let (mut down_total, mut slowest_recovery) = (Duration::ZERO, Duration::ZERO);
    let max_pause = pause.as_millis() as u64;
    let long_one = rng.next_u64() % outages.max(1) as u64;
    // Begins an outage; `end` ends it (restart or thaw).
    let begin = |pg: &mut PgServer, kind: Outage| match kind {
        Outage::KillPostmaster => pg.kill9(),
        Outage::KillAll => pg.kill9_all(),
        Outage::Freeze => pg.freeze(),
    };
    let end = |pg: &mut PgServer, kind: Outage| match kind {
        Outage::KillPostmaster | Outage::KillAll => pg.restart(),
        Outage::Freeze => pg.thaw(),
    };

    for outage in 0..outages {
        let kind = kinds[(rng.next_u64() % kinds.len() as u64) as usize];
        let ctx = format!("outage {outage} ({kind:?})");
        let t = &load.history.tally;
        let (acked, failed) = (t.acked, t.failures());
        let up = Duration::from_millis(200) + rng.millis(800);
        load.run_for(up, &ctx);
        load.outage = Some(kind);
        begin(&mut pg, kind);
        let began = Instant::now();
        let pause = match long {
            Some(long) if outage as u64 == long_one => long,
            _ => rng.millis(max_pause),
        };
        load.run_for(pause, &ctx);
        end(&mut pg, kind);
        let down = began.elapsed();
        let back = Instant::now();
        load.mark();
        load.wait_for_fresh_ack(&format!("{ctx}, after the server came back"));
        let recovery = back.elapsed();
        down_total += down;
        slowest_recovery = slowest_recovery.max(recovery);
        let t = &load.history.tally;
        println!(
            "outage {outage}: {kind:?} after {up:.0?} up, server out {down:.1?} (pause \
             {pause:?}); {} calls acknowledged and {} failed since the last outage; first \
             fresh call acknowledged {recovery:.0?} after the server came back",
            t.acked - acked,
            t.failures() - failed,
        );
    }

    // The end: the runtime killed too, with the server up or in a last outage.
    let when = if rng.next_u64().is_multiple_of(2) {
        let kind = kinds[(rng.next_u64() % kinds.len() as u64) as usize];
        load.outage = Some(kind);
        begin(&mut pg, kind);
        let pause = rng.millis(max_pause);
        load.run_for(pause, "the end");
        load.kill("the end");
        end(&mut pg, kind);
        format!("{pause:?} into a last outage ({kind:?})")
    } else {
        let run = rng.millis(400);
        load.run_for(run, "the end");
        load.kill("the end");
        format!("{run:?} after the last outage")
    };
    let ctx = format!("recovery (child killed {when})");
    let in_flight = load.history.outstanding();
    let recovered = recover(&url);
    no_other_rows(&pg, &recovered, &ctx);
    load.history.check(recovered, &ctx);

    let t = &load.history.tally;
    for (kind, (n, message)) in &t.failed {
        assert_eq!(
            kind, "Storage",
            "{n} calls failed with {kind}, not a retryable storage error; the first: {message}"
        );
    }
    let slowest_allowed = SLOWEST_CALL;
    assert!(
        t.slowest <= slowest_allowed,
        "a call took {:?}, more than {slowest_allowed:?} with a backend timeout of {TIMEOUT:?}",
        t.slowest
    );
    // With the postmaster alone killed, its backends finish each commit they run and answer
    // it: a call failed there never committed, and the read after it must not find it
    // applied. (With every process killed at once, or frozen, a commit can land with its
    // reply lost: such calls may be found applied.)
    let applied = load.applied_after.get(&Some(Outage::KillPostmaster));
    assert!(
        applied.is_none(),
        "{applied:?} calls failed while the postmaster alone was killed, yet were found \
         applied: their commit was answered, and the call failed anyway"
    );
    assert!(t.acked > 0, "the child never acknowledged anything");
    assert!(
        t.failures() > 0 || outages == 0,
        "no call failed: the outages did not reach the runtime"
    );
    let applied_after: Vec<String> = load
        .applied_after
        .iter()
        .map(|(outage, n)| match outage {
            Some(outage) => format!("{n} after {outage:?}"),
            None => format!("{n} before any outage"),
        })
        .collect();
    let applied_after = applied_after.join(", ");
    let failed: Vec<String> = t
        .failed
        .iter()
        .map(|(kind, (n, _))| format!("{n} {kind}"))
        .collect();
    println!(
        "{name}: {outages} outages ({down_total:.1?} out in total) in {:.1?}, runtime killed \
         {when}; {} calls sent, {} acknowledged, none lost; failed calls: {} (dumps after a \
         failure included; first message: {:?}); failed calls found applied by the dump after \
         them: {} ({applied_after}), not applied: {}; {in_flight} calls outstanding at the end \
         ({} found applied); slowest call {:?} (backend timeout {TIMEOUT:?}); slowest \
         recovery {slowest_recovery:.0?}; {} keys verified ({} whole transactions)",
        started.elapsed(),
        t.sent,
        t.acked,
        failed.join(", "),
        t.failed.values().next().map(|(_, m)| m),
        t.failed_applied,
        t.failed_not_applied,
        t.in_flight_applied,
        t.slowest,
        t.verified_keys,
        t.txn_objects,
    );
}

#[test]
fn no_acknowledged_write_is_lost_and_nothing_is_half_applied_when_postgres_is_killed() {
    outage_torture(
        "pg torture, postgres killed",
        &[Outage::KillPostmaster, Outage::KillAll],
        8,
        Duration::from_millis(500),
        None,
    );
}

#[test]
fn calls_fail_within_the_timeout_and_nothing_is_lost_when_postgres_hangs() {
    outage_torture(
        "pg torture, postgres frozen",
        &[Outage::Freeze],
        6,
        TIMEOUT * 2,
        // Longer than a call may take: a call waiting for the server would show.
        Some(SLOWEST_CALL + Duration::from_secs(2)),
    );
}

/// A commit that outlives the backend's deadline is abandoned (its connection dropped), but
/// the server may still be running it: here it waits for a row lock that another session
/// holds. The call fails (`Storage`) and the object reloads; the reload must not read the
/// store before that commit has landed or died, or the object serves state that the commit
/// changes under it afterwards. So once the row lock is released, the stored state must
/// still be what the object read after the failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_cut_off_at_its_deadline_cannot_land_after_the_object_reloaded() {
    let (_pg, url) = server();
    let rt = durable_tests::torture::open(&url, Some(TIMEOUT)).expect("open");
    let o = rt.namespace::<Tortured>().get_by_name("stalled");
    o.put_slot(0, 1).await.expect("the first write");

    // Another session locks the row of key `p0` (the only object's): a write of it waits.
    let (mut blocker, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect the blocker");
    tokio::spawn(connection);
    let lock = blocker.transaction().await.expect("begin");
    let locked = lock
        .query(
            "SELECT key FROM durable_kv WHERE substring(key FROM 34) = convert_to('p0', 'UTF8') \
             FOR UPDATE",
            &[],
        )
        .await
        .expect("lock the row");
    assert_eq!(locked.len(), 1, "the row of p0");

    let started = Instant::now();
    let err = o
        .put_slot(0, 2)
        .await
        .expect_err("a commit held past the deadline must fail");
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
    assert!(err.is_retryable(), "{err}");
    assert!(
        started.elapsed() < SLOWEST_CALL,
        "the failed call took {:?}",
        started.elapsed()
    );
    // The object reloads (the row is still locked); what it reads settles the failed call.
    let mut tries = 0;
    let after_failure: State = loop {
        match o.dump().await {
            Ok(dump) => break dump.into_iter().collect(),
            Err(e) if e.is_retryable() && tries < 5 => tries += 1,
            Err(e) => panic!("the object cannot be read after the failure: {e}"),
        }
    };

    // The abandoned commit may now go on, if its server process still lives.
    lock.commit().await.expect("release the row");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let served: State = o.dump().await.expect("dump").into_iter().collect();
    rt.shutdown().await.expect("shutdown");
    let rt = durable_tests::torture::open(&url, None).expect("reopen");
    let stored: State = rt
        .namespace::<Tortured>()
        .get_by_name("stalled")
        .dump()
        .await
        .expect("dump")
        .into_iter()
        .collect();
    assert_eq!(
        stored, after_failure,
        "the object read {after_failure:?} after its write failed, and still served {served:?} \
         later, but the store holds {stored:?}: the abandoned commit landed after the reload"
    );
    rt.shutdown().await.expect("shutdown");
}
