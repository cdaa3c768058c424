//! The output gate (DESIGN.md, semantics 4 and 5), tested through a backend that can hold,
//! slow down or fail its syncs and applies.
//!
//! Every test here fails if a reply can leave before the writes it depends on are durable:
//! the backend knows exactly which writes a completed sync covers, and the tests check each
//! reply against that.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durable_runtime::{durable_object, Context, Durability, ErrorKind, Result, Runtime};
use durable_tests::held_sync::{decode_i64, HeldSync, ReleaseOnDrop};
use durable_tests::Counter;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// How long a reply that is gated must stay away. Safe: while the hold is on, the gate
/// cannot open, whatever the machine's speed.
const NOT_YET: Duration = Duration::from_millis(200);
/// Turns a hang into a failure.
const GENEROUS: Duration = Duration::from_secs(20);

/// A runtime on `backend` whose objects report into `log`.
fn runtime_on(backend: &Arc<HeldSync>, log: &Arc<Log>) -> Runtime {
    Runtime::builder()
        .backend(backend.clone())
        .env(log.clone())
        .open()
        .expect("open a runtime on the test backend")
}

/// Polls `cond` until it holds; panics after [`GENEROUS`].
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let result = timeout(GENEROUS, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    assert!(result.is_ok(), "timed out waiting until {what}");
}

/// Asserts that the task has not finished within [`NOT_YET`].
async fn assert_pending<T: std::fmt::Debug>(what: &str, task: &mut JoinHandle<T>) {
    match timeout(NOT_YET, task).await {
        Err(_elapsed) => {}
        Ok(reply) => panic!("{what}: the reply left before its write was durable: {reply:?}"),
    }
}

async fn finish<T>(what: &str, task: JoinHandle<T>) -> T {
    match timeout(GENEROUS, task).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("{what}: the task failed: {e}"),
        Err(_) => panic!("{what}: no reply within {GENEROUS:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// A probe object: reports into the runtime's env what its calls saw, before their replies
// are gated.
// ---------------------------------------------------------------------------------------

/// What the probe's calls saw, in order: (method, value).
#[derive(Default)]
struct Log {
    events: Mutex<Vec<(&'static str, i64)>>,
    second_started: AtomicBool,
}

impl Log {
    fn events(&self) -> Vec<(&'static str, i64)> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn count(&self, method: &str) -> usize {
        self.events().iter().filter(|(m, _)| *m == method).count()
    }
}

#[durable_object]
pub struct GateProbe {
    ctx: Context,
}

#[durable_object]
impl GateProbe {
    pub fn new(ctx: Context) -> Self {
        GateProbe { ctx }
    }

    fn log(&self, method: &'static str, value: i64) {
        if let Some(log) = self.ctx.env::<Arc<Log>>() {
            log.events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((method, value));
        }
    }

    /// Adds one to `value`; logs and returns the new value.
    pub async fn increment(&mut self) -> Result<i64> {
        let value = self.ctx.storage().get::<i64>("value")?.unwrap_or(0) + 1;
        self.ctx.storage_mut().put("value", &value)?;
        self.log("increment", value);
        Ok(value)
    }

    /// Reads `value`; logs and returns it.
    pub async fn observe(&self) -> Result<i64> {
        let value = self.ctx.storage().get::<i64>("value")?.unwrap_or(0);
        self.log("observe", value);
        Ok(value)
    }

    /// Writes `value = n`; if `n == 2`, says (through the env) that it started.
    pub async fn write(&mut self, n: i64) -> Result<i64> {
        if n == 2 {
            if let Some(log) = self.ctx.env::<Arc<Log>>() {
                log.second_started.store(true, Ordering::SeqCst);
            }
        }
        self.ctx.storage_mut().put("value", &n)?;
        Ok(n)
    }
}
fn spawn_call<T, F>(f: F) -> JoinHandle<Result<T>>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T>> + Send + 'static,
{
    tokio::spawn(f)
}

// ---------------------------------------------------------------------------------------
// The gate holds replies, not work
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_waits_until_write_is_durable() {
    let backend = HeldSync::new();
    let log = Arc::new(Log::default());
    let rt = runtime_on(&backend, &log);
    let _release = ReleaseOnDrop(backend.clone());
    let stub = rt.namespace::<Counter>().get_by_name("A");

    backend.hold_syncs();
    let s = stub.clone();
    let mut reply = spawn_call(async move { s.increment(1).await });
    wait_until("the write reaches the held sync", || {
        backend.syncs_waiting() == 1
    })
    .await;
    assert_eq!(
        backend.applies(),
        1,
        "the write was applied (not yet synced)"
    );
    assert_pending("increment while its sync is held", &mut reply).await;
    assert_eq!(backend.completed_syncs(), 0);

    backend.release_syncs();
    let value = finish("increment", reply).await.expect("increment");
    assert_eq!(value, 1);
    assert!(backend.synced_max_value() >= 1);
    assert_eq!(rt.sync_count(), backend.completed_syncs());
    assert_eq!(
        backend.buffered_syncs(),
        0,
        "the default durability is fsync"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_durability_reaches_the_backend() {
    let backend = HeldSync::new();
    let rt = Runtime::builder()
        .backend(backend.clone())
        .durability(Durability::Buffered)
        .open()
        .expect("open");
    let stub = rt.namespace::<Counter>().get_by_name("A");
    assert_eq!(stub.increment(1).await.expect("increment"), 1);
    assert!(backend.completed_syncs() >= 1);
    assert_eq!(backend.buffered_syncs(), backend.completed_syncs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_after_unsynced_write_also_waits() {
    let backend = HeldSync::new();
    let log = Arc::new(Log::default());
    let rt = runtime_on(&backend, &log);
    let _release = ReleaseOnDrop(backend.clone());
    let stub = rt.namespace::<Counter>().get_by_name("A");

    backend.hold_syncs();
    let s = stub.clone();
    let mut write = spawn_call(async move { s.increment(1).await });
    // The increment ran and its write is flushing: now a shared read, from another task.
    wait_until("the write reaches the held sync", || {
        backend.syncs_waiting() == 1
    })
    .await;
    let s = stub.clone();
    let mut read = spawn_call(async move { s.get_counter_value().await });
    assert_pending("read of a write that is not durable", &mut read).await;
    assert_pending("the write itself", &mut write).await;
    assert_eq!(backend.completed_syncs(), 0);

    backend.release_syncs();
    assert_eq!(finish("increment", write).await.expect("increment"), 1);
    // The read saw the flushing write (a read sees its object's earlier writes)...
    assert_eq!(finish("read", read).await.expect("read"), 1);
    // ...and left only after it was durable.
    assert!(backend.synced_max_value() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reply_follows_a_sync_of_its_writes() {
    const CALLERS: i64 = 32;
    const CALLS: i64 = 100;
    // A sync that takes 2 ms, like an fsync: calls arriving meanwhile share the next one.
    let backend = HeldSync::with_sync_delay(Duration::from_millis(2));
    let log = Arc::new(Log::default());
    let rt = runtime_on(&backend, &log);
    let _release = ReleaseOnDrop(backend.clone());
    let stub = rt.namespace::<Counter>().get_by_name("A");

    let mut callers = Vec::new();
    for _ in 0..CALLERS {
        let stub = stub.clone();
        let backend = backend.clone();
        callers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..CALLS {
                let v = stub.increment(1).await.expect("increment");
                // The reply arrived: a completed sync must have covered the write of `v`.
                let synced = backend.synced_max_value();
                assert!(
                    synced >= v,
                    "reply {v} arrived before its write was synced (synced up to {synced})"
                );
                seen.push(v);
            }
            seen
        }));
    }
    let mut values = Vec::new();
    for caller in callers {
        values.extend(finish("caller", caller).await);
    }
    values.sort_unstable();
    let total = CALLERS * CALLS;
    assert_eq!(
        values,
        (1..=total).collect::<Vec<_>>(),
        "each increment once"
    );
    assert_eq!(
        stub.get_counter_value().await.expect("read"),
        total,
        "final value"
    );

    let syncs = rt.sync_count();
    let applies = backend.applies();
    let value_writes = backend.value_writes();
    println!(
        "{total} increments: {syncs} syncs, {applies} applied batches, {value_writes} writes of `value`"
    );
    assert_eq!(syncs, backend.completed_syncs());
    assert_eq!(
        backend.buffered_syncs(),
        0,
        "the default durability is fsync"
    );
    // Group commit: one sync covers many calls. A count, not a timing: with a 2 ms sync and
    // 32 callers waiting, a round nearly always carries many writes; 1 sync per 4 writes is a
    // wide margin.
    assert!(
        syncs * 4 < total as u64,
        "group commit did not happen: {syncs} syncs for {total} writes"
    );
    assert!(applies <= syncs, "each round applies once, then syncs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_call_starts_while_previous_write_flushes() {
    let backend = HeldSync::new();
    let log = Arc::new(Log::default());
    let rt = runtime_on(&backend, &log);
    let _release = ReleaseOnDrop(backend.clone());
    let probe = rt.namespace::<GateProbe>().get_by_name("P");

    backend.hold_syncs();
    let p = probe.clone();
    let mut first = spawn_call(async move { p.write(1).await });
    wait_until("the first write reaches the held sync", || {
        backend.syncs_waiting() == 1
    })
    .await;
    let p = probe.clone();
    let mut second = spawn_call(async move { p.write(2).await });
    // The second exclusive call on the same object runs while the first's write flushes.
    wait_until("the second call starts while the hold is on", || {
        log.second_started.load(Ordering::SeqCst)
    })
    .await;
    assert_eq!(backend.syncs_waiting(), 1, "the hold is still on");
    assert_eq!(backend.completed_syncs(), 0, "nothing was synced yet");
    assert_pending("first write", &mut first).await;
    assert_pending("second write", &mut second).await;

    backend.release_syncs();
    assert_eq!(finish("first", first).await.expect("first"), 1);
    assert_eq!(finish("second", second).await.expect("second"), 2);
    assert_eq!(probe.observe().await.expect("observe"), 2);
}

// ---------------------------------------------------------------------------------------
// Failed syncs and applies
// ---------------------------------------------------------------------------------------

/// The last value applied under a key ending in `value`, decoded.
fn applied_value(backend: &HeldSync) -> Option<i64> {
    let state = backend.state();
    let (_, value) = state
        .applied
        .iter()
        .rev()
        .find(|(k, _)| k.ends_with(b"value"))?;
    value.as_deref().and_then(decode_i64)
}

/// How many times the simple fault tests inject their fault. The runtime's reply for a call
/// may be queued in the same commit round as its write or in the next one (a race between
/// the actor and the commit thread); a bug that shows only in the second case must still
/// fail these tests, so they try many times.
const FAULT_ATTEMPTS: i64 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sync_fails_the_call_and_a_later_call_sees_consistent_state() {
    let backend = HeldSync::new();
    let log = Arc::new(Log::default());
    let rt = runtime_on(&backend, &log);
    let _release = ReleaseOnDrop(backend.clone());
    let stub = rt.namespace::<Counter>().get_by_name("A");

    let mut value = stub.increment(1).await.expect("first increment");
    let mut kept = 0;
    for attempt in 0..FAULT_ATTEMPTS {
        backend.fail_next_sync();
        let outcome = timeout(GENEROUS, stub.increment(1)).await.expect("a reply");
        // A write whose sync failed must not be acknowledged, not even by a later sync that
        // succeeds: on Linux a failed fsync may drop the dirty pages and the next fsync
        // report success ("fsyncgate"), so only the failed sync speaks for that write.
        let err = match outcome {
            Err(err) => err,
            Ok(v) => {
                panic!("attempt {attempt}: the call whose sync failed was acknowledged with {v}")
            }
        };
        assert_eq!(err.kind(), ErrorKind::Storage, "{err}");

        // The fault is gone: the next call succeeds.
        let after = timeout(GENEROUS, stub.increment(1))
            .await
            .expect("a reply")
            .expect("increment after the fault");
        // Observed: the failed call's batch was applied before its sync failed, so it stays
        // in the backend and the next sync covers it; its caller got an error, which means
        // "outcome unknown", as in Durable Objects. Either outcome is consistent; a state
        // that disagrees with the store is not.
        assert!(
            after == value + 1 || after == value + 2,
            "attempt {attempt}: value {after} after {value} and a failed increment"
        );
        if after == value + 2 {
            kept += 1;
        }
        assert_eq!(stub.get_counter_value().await.expect("read"), after);
        assert_eq!(applied_value(&backend), Some(after), "the store agrees");
        value = after;
    }
    println!("after a failed sync, the failed write was kept {kept}/{FAULT_ATTEMPTS} times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_apply_fails_the_call_and_loses_only_its_write() {
    let backend = HeldSync::new();
    let log = Arc::new(Log::default());
    let rt = runtime_on(&backend, &log);
    let _release = ReleaseOnDrop(backend.clone());
    let stub = rt.namespace::<Counter>().get_by_name("A");

    let mut value = stub.increment(1).await.expect("first increment");
    for attempt in 0..FAULT_ATTEMPTS {
        backend.fail_next_apply();
        let outcome = timeout(GENEROUS, stub.increment(1000))
            .await
            .expect("a reply");
        match outcome {
            Err(err) => assert_eq!(err.kind(), ErrorKind::Storage, "{err}"),
            Ok(v) => panic!(
                "attempt {attempt}: the call whose write never reached the store was \
                 acknowledged with {v} (the store holds {:?})",
                applied_value(&backend)
            ),
        }

        // Nothing of the failed call reached the store: the object goes on from `value`.
        let after = timeout(GENEROUS, stub.increment(1))
            .await
            .expect("a reply")
            .expect("increment after the fault");
        assert_eq!(after, value + 1, "attempt {attempt}");
        assert_eq!(stub.get_counter_value().await.expect("read"), after);
        assert_eq!(applied_value(&backend), Some(after), "the store agrees");
        value = after;
    }
}

/// The outcome of one probe call: method, value on success.
type Outcome = (&'static str, Result<i64>);

/// Every acknowledged value must be reflected in the final, durable state: the probe only
/// increments, so no acknowledged value may exceed it.
fn assert_acks_survive(outcomes: &[Outcome], final_value: i64) {
    for (what, outcome) in outcomes {
        println!("{what}: {outcome:?}");
    }
    println!("final durable value: {final_value}");
    for (what, outcome) in outcomes {
        if let Ok(v) = outcome {
            assert!(
                *v <= final_value,
                "{what} was acknowledged with value {v}, but the durable state is \
                 {final_value}: an acknowledged write was lost"
            );
        }
    }
}

/// A reply that saw a write still flushing must not be acknowledged if that write then
/// fails, even when the reply is released by a later, successful round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_depending_on_a_failed_write_is_not_acknowledged() {
    let backend = HeldSync::new();
    let log = Arc::new(Log::default());
    let rt = runtime_on(&backend, &log);
    let _release = ReleaseOnDrop(backend.clone());
    let probe = rt.namespace::<GateProbe>().get_by_name("E");

    // Round 1: value = 1, held in its sync.
    backend.hold_syncs();
    let p = probe.clone();
    let a = spawn_call(async move { p.increment().await });
    wait_until("round 1 is in its sync", || backend.syncs_waiting() == 1).await;
    // value = 2 queued for round 2; a read after it proves it was submitted.
    let p = probe.clone();
    let b = spawn_call(async move { p.increment().await });
    let p = probe.clone();
    wait_until("b ran", || log.count("increment") == 2).await;
    let o1 = spawn_call(async move { p.observe().await });
    wait_until("o1 ran", || log.count("observe") == 1).await;

    // Round 2 takes value = 2 and is held in its apply.
    backend.hold_applies();
    backend.release_syncs();
    // (a's reply is in round 1 or, if the commit thread took a's batch before a's reply was
    // queued, in round 2: collect it at the end.)
    wait_until("round 2 is in its apply", || backend.applies_waiting() == 1).await;
    // A read now sees value = 2 in flight; its reply waits for a later round.
    let p = probe.clone();
    let o2 = spawn_call(async move { p.observe().await });
    wait_until("o2 ran", || log.count("observe") == 2).await;
    assert_eq!(log.events().last(), Some(&("observe", 2)), "o2 saw 2");

    // Round 2's apply fails; the next round (o2's reply only) syncs fine.
    backend.fail_next_apply();
    backend.release_applies();
    let outcomes = vec![
        ("a: increment -> 1", finish("a", a).await),
        ("b: increment -> 2 (its apply failed)", finish("b", b).await),
        ("o1: observe (saw 2)", finish("o1", o1).await),
        ("o2: observe (saw 2)", finish("o2", o2).await),
    ];
    assert!(outcomes[1].1.is_err(), "b's write failed: b must fail");
    let final_value = probe.observe().await.expect("observe after the fault");
    assert_eq!(
        applied_value(&backend),
        Some(final_value),
        "the store agrees"
    );
    assert_acks_survive(&outcomes, final_value);
}

/// After a failed commit, an object's later writes that were still queued must not be
/// overwritten by calls that read the store without them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_write_survives_a_failed_commit_before_it() {
    let backend = HeldSync::new();
    let log = Arc::new(Log::default());
    let rt = runtime_on(&backend, &log);
    let _release = ReleaseOnDrop(backend.clone());
    let probe = rt.namespace::<GateProbe>().get_by_name("R");

    // Round 1: value = 1, held in its sync; value = 2 queued behind it.
    backend.hold_syncs();
    let p = probe.clone();
    let a = spawn_call(async move { p.increment().await });
    wait_until("round 1 is in its sync", || backend.syncs_waiting() == 1).await;
    let p = probe.clone();
    let b = spawn_call(async move { p.increment().await });
    wait_until("b ran", || log.count("increment") == 2).await;
    let p = probe.clone();
    let o1 = spawn_call(async move { p.observe().await });
    wait_until("o1 ran", || log.count("observe") == 1).await;

    // Round 2 (value = 2) is held in its apply; meanwhile c computes value = 3 from it.
    backend.hold_applies();
    backend.release_syncs();
    // (a's reply is in round 1 or, if the commit thread took a's batch before a's reply was
    // queued, in round 2: collect it at the end.)
    wait_until("round 2 is in its apply", || backend.applies_waiting() == 1).await;
    let p = probe.clone();
    let c = spawn_call(async move { p.increment().await });
    wait_until("c ran", || log.count("increment") == 3).await;
    let p = probe.clone();
    let o2 = spawn_call(async move { p.observe().await });
    wait_until("o2 ran", || log.count("observe") == 2).await;

    // Round 2 fails; round 3 (c's value = 3) is held in its apply, unless the runtime
    // dropped c's write because it was computed from b's failed one (then c is answered).
    backend.fail_next_apply();
    backend.permit_one_apply();
    wait_until("b's round failed and round 3 is in its apply", || {
        b.is_finished() && (backend.applies_waiting() == 1 || c.is_finished())
    })
    .await;
    // d runs while c's write is still on its way to the store.
    let p = probe.clone();
    let d = spawn_call(async move { p.increment().await });
    wait_until("d ran", || log.count("increment") == 4).await;
    let p = probe.clone();
    let o3 = spawn_call(async move { p.observe().await });
    wait_until("o3 ran", || log.count("observe") == 3).await;

    backend.release_applies();
    let outcomes = vec![
        ("a: increment", finish("a", a).await),
        ("b: increment (its apply failed)", finish("b", b).await),
        ("o1: observe", finish("o1", o1).await),
        (
            "c: increment (after b, before b failed)",
            finish("c", c).await,
        ),
        ("o2: observe", finish("o2", o2).await),
        ("d: increment (after b failed)", finish("d", d).await),
        ("o3: observe", finish("o3", o3).await),
    ];
    println!("what the calls saw: {:?}", log.events());
    assert!(outcomes[1].1.is_err(), "b's write failed: b must fail");
    let final_value = probe.observe().await.expect("observe after the fault");
    assert_eq!(
        applied_value(&backend),
        Some(final_value),
        "the store agrees"
    );
    // Acknowledged increments of one object, in call order, must grow.
    let acked: Vec<i64> = [&outcomes[0], &outcomes[3], &outcomes[5]]
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().copied())
        .collect();
    assert_acks_survive(&outcomes, final_value);
    assert!(
        acked.windows(2).all(|w| w[0] < w[1]),
        "acknowledged increments went backwards: {acked:?}"
    );
}

/// A reply held for writes that an earlier round made durable is released as a success,
/// even when the round that releases it fails for other objects' writes: that failure is
/// not its writes'. (Failing it would tell the caller its call may not have happened when
/// its writes are stored: a retry would apply them twice.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_whose_writes_are_durable_survives_a_later_rounds_failure() {
    let backend = HeldSync::new();
    let log = Arc::new(Log::default());
    let rt = runtime_on(&backend, &log);
    let _release = ReleaseOnDrop(backend.clone());
    let ns = rt.namespace::<GateProbe>();
    let (probe, other) = (ns.get_by_name("D"), ns.get_by_name("F"));

    // Round 1: value = 1, held in its sync.
    backend.hold_syncs();
    let p = probe.clone();
    let a = spawn_call(async move { p.increment().await });
    wait_until("round 1 is in its sync", || backend.syncs_waiting() == 1).await;
    // A read of it: its reply is held for round 1's writes, queued behind round 1.
    let p = probe.clone();
    let mut o = spawn_call(async move { p.observe().await });
    wait_until("o ran", || log.count("observe") == 1).await;
    assert_pending("o", &mut o).await;
    // Another object's write, queued for round 2.
    let q = other.clone();
    let b = spawn_call(async move { q.increment().await });
    wait_until("b ran", || log.count("increment") == 2).await;

    // Round 1 syncs; round 2 (b's write, and o's reply) fails in its apply.
    backend.fail_next_apply();
    backend.release_syncs();
    let b = finish("b", b).await;
    assert_eq!(
        b.as_ref().map_err(|e| e.kind()),
        Err(ErrorKind::Storage),
        "b's write failed: {b:?}"
    );
    assert_eq!(finish("a", a).await.expect("a's write is durable"), 1);
    assert_eq!(
        finish("o", o)
            .await
            .expect("o read a durable write and wrote nothing: its reply must not fail"),
        1
    );
    assert_eq!(applied_value(&backend), Some(1), "the store agrees");
}
