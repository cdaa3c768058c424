//! Object lifecycle: idle eviction, overload, deadlines, call cycles, graceful shutdown,
//! IDs and names, class renames, metrics.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use durable_runtime::{durable_object, Context, ErrorKind, ObjectStub, Result, Runtime};
use tokio::sync::Semaphore;

const HANG: Duration = Duration::from_secs(20);

/// Polls `cond` every 10 ms until it holds; panics after [`HANG`].
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(HANG, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting until {what}");
}

// ---------------------------------------------------------------------------------------------
// Idle eviction.

#[durable_object]
pub struct Tally {
    ctx: Context,
    /// Calls this instance has served: in memory only.
    served: u64,
}

#[durable_object]
impl Tally {
    pub fn new(ctx: Context) -> Self {
        Tally { ctx, served: 0 }
    }

    /// Adds one to the stored count; returns (stored count, calls this instance served).
    pub async fn bump(&mut self) -> Result<(u64, u64)> {
        self.served += 1;
        let n = self.ctx.storage().get::<u64>("n")?.unwrap_or(0) + 1;
        self.ctx.storage_mut().put("n", &n)?;
        Ok((n, self.served))
    }

    pub async fn peek(&self) -> Result<(u64, u64)> {
        Ok((self.ctx.storage().get("n")?.unwrap_or(0), self.served))
    }

    /// The object's own name, as `ctx.id().name()` tells it.
    pub async fn my_name(&self) -> Result<Option<String>> {
        Ok(self.ctx.id().name().map(str::to_owned))
    }
}

#[tokio::test]
async fn idle_object_is_evicted_and_its_next_call_sees_stored_state_but_fresh_fields() {
    let rt = Runtime::builder()
        .in_memory()
        .idle_timeout(Duration::from_millis(100))
        .open()
        .unwrap();
    let tallies = rt.namespace::<Tally>();
    let t = tallies.get_by_name("t");
    assert_eq!(t.bump().await.unwrap(), (1, 1));
    assert_eq!(t.bump().await.unwrap(), (2, 2));
    assert_eq!(tallies.live_objects(), 1);

    wait_until("the idle object is evicted", || {
        rt.metrics().evictions == 1 && tallies.live_objects() == 0
    })
    .await;
    assert_eq!(rt.metrics().live_objects, 0);

    // Stored state is back; the in-memory field starts over: a new instance.
    assert_eq!(t.bump().await.unwrap(), (3, 1));
    assert_eq!(rt.metrics().activations, 2);
}

#[tokio::test]
async fn a_busy_object_is_not_evicted() {
    let rt = Runtime::builder()
        .in_memory()
        .idle_timeout(Duration::from_millis(150))
        .open()
        .unwrap();
    let t = rt.namespace::<Tally>().get_by_name("busy");
    // Calls every 20 ms for 1 s: never idle for a whole timeout.
    for i in 1..=50 {
        assert_eq!(t.bump().await.unwrap(), (i, i), "the instance was replaced");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rt.metrics().evictions, 0);
}

#[tokio::test]
async fn thousands_of_idle_objects_all_leave_memory() {
    let rt = Runtime::builder()
        .in_memory()
        .idle_timeout(Duration::from_millis(200))
        .open()
        .unwrap();
    let tallies = rt.namespace::<Tally>();
    let mut tasks = Vec::new();
    for i in 0..2000 {
        let t = tallies.get_by_name(&format!("o{i}"));
        tasks.push(tokio::spawn(async move { t.bump().await }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(tallies.live_objects(), 2000);
    wait_until("every object is evicted", || tallies.live_objects() == 0).await;
    assert_eq!(rt.metrics().evictions, 2000);
    // Each comes back with its data.
    assert_eq!(tallies.get_by_name("o1999").peek().await.unwrap(), (1, 0));
}

// ---------------------------------------------------------------------------------------------
// Overload and deadlines.

#[durable_object(max_queue = 10)]
pub struct Slow {
    ctx: Context,
}

#[durable_object]
impl Slow {
    pub fn new(ctx: Context) -> Self {
        Slow { ctx }
    }

    /// Signals that it started, waits for a permit, then counts itself.
    pub async fn work(&mut self) -> Result<u64> {
        let gate = self.ctx.env::<Gate>().expect("a Gate env").clone();
        gate.started.store(true, Ordering::SeqCst);
        gate.permits.acquire().await?.forget();
        let n = self.ctx.storage().get::<u64>("done")?.unwrap_or(0) + 1;
        self.ctx.storage_mut().put("done", &n)?;
        Ok(n)
    }

    pub async fn done(&self) -> Result<u64> {
        Ok(self.ctx.storage().get("done")?.unwrap_or(0))
    }
}

#[derive(Clone)]
struct Gate {
    started: Arc<AtomicBool>,
    permits: Arc<Semaphore>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            started: Arc::default(),
            permits: Arc::new(Semaphore::new(0)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_on_a_slow_object_overloads_exactly_the_overflow() {
    const CALLERS: usize = 100;
    const MAX_QUEUE: usize = 10;
    let gate = Gate::default();
    let rt = Runtime::builder()
        .in_memory()
        .env(gate.clone())
        .open()
        .unwrap();
    let slow = rt.namespace::<Slow>().get_by_name("s");
    // One call runs (blocked); then the flood: exactly MAX_QUEUE fit in the queue.
    let first = {
        let slow = slow.clone();
        tokio::spawn(async move { slow.work().await })
    };
    wait_until("the first call runs", || {
        gate.started.load(Ordering::SeqCst)
    })
    .await;
    let mut flood = Vec::new();
    for _ in 1..CALLERS {
        let slow = slow.clone();
        flood.push(tokio::spawn(async move { slow.work().await }));
    }
    // Refusals are immediate, while the object is still blocked.
    let overflow = (CALLERS - 1 - MAX_QUEUE) as u64;
    wait_until("the overflow is refused", || {
        rt.metrics().overloads >= overflow
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        rt.metrics().overloads,
        overflow,
        "exactly the overflow is refused"
    );

    // Release: the first call and exactly MAX_QUEUE queued calls succeed, in order.
    gate.permits.add_permits(CALLERS);
    assert_eq!(first.await.unwrap().unwrap(), 1);
    let (mut ok, mut overloaded) = (Vec::new(), 0);
    for call in flood {
        match tokio::time::timeout(HANG, call)
            .await
            .expect("a call hung")
            .unwrap()
        {
            Ok(n) => ok.push(n),
            Err(e) if e.is_overloaded() => overloaded += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(overloaded as u64, overflow);
    ok.sort_unstable();
    assert_eq!(ok, (2..=1 + MAX_QUEUE as u64).collect::<Vec<_>>());
    assert_eq!(slow.done().await.unwrap(), 1 + MAX_QUEUE as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_timeout_fails_and_a_queued_one_is_dropped_unrun() {
    let gate = Gate::default();
    let rt = Runtime::builder()
        .in_memory()
        .env(gate.clone())
        .open()
        .unwrap();
    let slow = rt.namespace::<Slow>().get_by_name("t");
    let blocked = {
        let slow = slow.clone();
        tokio::spawn(async move { slow.work().await })
    };
    wait_until("the first call runs", || {
        gate.started.load(Ordering::SeqCst)
    })
    .await;

    // Queued behind the blocked call: times out, and must never run.
    let hurried = slow.with_timeout(Duration::from_millis(100));
    let err = hurried.work().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains("work"), "{err}");
    assert!(!err.is_retryable());

    gate.permits.add_permits(10);
    assert_eq!(blocked.await.unwrap().unwrap(), 1);
    // Only the first call ran: the timed-out one was dropped from the queue.
    assert_eq!(slow.done().await.unwrap(), 1);
    // A stub with a generous timeout works as usual.
    let patient = slow.with_timeout(Duration::from_secs(30));
    assert_eq!(patient.work().await.unwrap(), 2);
}

// ---------------------------------------------------------------------------------------------
// Call cycles.

#[durable_object]
pub struct Ping {
    ctx: Context,
}

#[durable_object]
impl Ping {
    pub fn new(ctx: Context) -> Self {
        Ping { ctx }
    }

    /// Exclusive: asks `pong` to call back.
    pub async fn serve(&mut self, pong: String) -> Result<u64> {
        let name = self.ctx.id().name().unwrap_or_default().to_owned();
        self.ctx
            .namespace::<Pong>()
            .get_by_name(&pong)
            .call_back(name, true)
            .await
    }

    /// Shared: asks `pong` to call back (shared).
    pub async fn look(&self, pong: String) -> Result<u64> {
        let name = self.ctx.id().name().unwrap_or_default().to_owned();
        self.ctx
            .namespace::<Pong>()
            .get_by_name(&pong)
            .call_back(name, false)
            .await
    }

    pub async fn answer(&self) -> Result<u64> {
        Ok(42)
    }

    pub async fn answer_exclusively(&mut self) -> Result<u64> {
        Ok(43)
    }
}

#[durable_object]
pub struct Pong {
    ctx: Context,
}

#[durable_object]
impl Pong {
    pub fn new(ctx: Context) -> Self {
        Pong { ctx }
    }

    /// Calls back into `ping`: a shared call if `ping` is in an exclusive call, an exclusive
    /// call otherwise; either way the call closes a cycle.
    pub async fn call_back(&mut self, ping: String, ping_is_exclusive: bool) -> Result<u64> {
        let ping = self.ctx.namespace::<Ping>().get_by_name(&ping);
        if ping_is_exclusive {
            ping.answer().await
        } else {
            ping.answer_exclusively().await
        }
    }
}

#[tokio::test]
async fn a_call_cycle_through_an_exclusive_call_is_an_error_not_a_deadlock() {
    let rt = Runtime::in_memory();
    let ping = rt.namespace::<Ping>().get_by_name("a");
    let err = tokio::time::timeout(Duration::from_secs(1), ping.serve("b".into()))
        .await
        .expect("A -> B -> A deadlocked instead of failing")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cycle, "{err}");
    let text = err.to_string();
    assert!(
        text.contains(r#"Ping "a" -> Pong "b" -> Ping "a""#),
        "the error names the cycle: {text}"
    );
    // The runtime goes on: both objects still answer.
    assert_eq!(ping.answer().await.unwrap(), 42);
}

#[tokio::test]
async fn a_shared_call_back_into_a_shared_call_is_no_cycle_but_an_exclusive_one_is() {
    let rt = Runtime::in_memory();
    let ping = rt.namespace::<Ping>().get_by_name("c");
    // A (shared) -> B -> A (exclusive): the exclusive call would wait for A's shared call.
    let err = tokio::time::timeout(Duration::from_secs(1), ping.look("d".into()))
        .await
        .expect("deadlock")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cycle, "{err}");
}

// ---------------------------------------------------------------------------------------------
// Graceful shutdown.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_load_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::builder().data_dir(dir.path()).open().unwrap();
    let tallies = rt.namespace::<Tally>();
    let acked = Arc::new(std::sync::Mutex::new(vec![0u64; 8]));
    let mut tasks = Vec::new();
    for caller in 0..32usize {
        let t = tallies.get_by_name(&format!("s{}", caller % 8));
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let mut refused = 0u32;
            loop {
                match t.bump().await {
                    Ok((n, _)) => {
                        let mut a = acked.lock().unwrap();
                        a[caller % 8] = a[caller % 8].max(n);
                    }
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
                        refused += 1;
                        return refused;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    rt.shutdown().await.unwrap();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 1, "a caller kept going after shutdown");
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.iter().all(|&n| n > 0), "no load reached some object");

    // Reopen: every acknowledged increment is there.
    let rt = Runtime::builder().data_dir(dir.path()).open().unwrap();
    let tallies = rt.namespace::<Tally>();
    for (i, &n) in acked.iter().enumerate() {
        let (stored, _) = tallies.get_by_name(&format!("s{i}")).peek().await.unwrap();
        assert!(
            stored >= n,
            "object s{i}: acknowledged {n}, stored {stored}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// IDs, names, renames, deleting a class's data.

#[tokio::test]
async fn list_ids_lists_each_object_with_data_once() {
    let rt = Runtime::in_memory();
    let tallies = rt.namespace::<Tally>();
    let mut expected = BTreeSet::new();
    for i in 0..50 {
        let t = tallies.get_by_name(&format!("l{i}"));
        for _ in 0..(i % 4 + 1) {
            t.bump().await.unwrap();
        }
        expected.insert(tallies.id_from_name(&format!("l{i}")));
    }
    // Read, never written: no stored state.
    tallies.get_by_name("reader").peek().await.unwrap();
    // Another class's objects are not listed.
    rt.namespace::<Slow>()
        .get_by_name("other")
        .done()
        .await
        .unwrap();

    let ids = tallies.list_ids().await.unwrap();
    assert_eq!(ids.len(), 50, "each object once");
    assert_eq!(ids.iter().cloned().collect::<BTreeSet<_>>(), expected);
}

#[tokio::test]
async fn an_objects_name_survives_restarts_and_ids_parsed_from_strings() {
    let dir = tempfile::tempdir().unwrap();
    let hex = {
        let rt = Runtime::builder().data_dir(dir.path()).open().unwrap();
        let tallies = rt.namespace::<Tally>();
        let alice = tallies.get_by_name("alice");
        assert_eq!(alice.my_name().await.unwrap().as_deref(), Some("alice"));
        alice.bump().await.unwrap();
        let hex = ObjectStub::id(&alice).to_string();
        rt.shutdown().await.unwrap();
        hex
    };
    let rt = Runtime::builder().data_dir(dir.path()).open().unwrap();
    let tallies = rt.namespace::<Tally>();
    let id = tallies.id_from_string(&hex).unwrap();
    assert_eq!(id.name(), None, "a parsed ID carries no name");
    let alice = tallies.get(id);
    assert_eq!(alice.my_name().await.unwrap().as_deref(), Some("alice"));
    // A unique ID has no name.
    let unique = tallies.get(tallies.new_unique_id());
    assert_eq!(unique.my_name().await.unwrap(), None);
}

#[durable_object(name = "Score")]
pub struct ScoreV1 {
    ctx: Context,
}

#[durable_object]
impl ScoreV1 {
    pub fn new(ctx: Context) -> Self {
        ScoreV1 { ctx }
    }

    pub async fn set(&mut self, v: i64) -> Result<()> {
        self.ctx.storage_mut().put("v", &v)
    }
}

#[durable_object(name = "Points", renamed_from = "Score")]
pub struct ScoreV2 {
    ctx: Context,
}

#[durable_object]
impl ScoreV2 {
    pub fn new(ctx: Context) -> Self {
        ScoreV2 { ctx }
    }

    pub async fn get(&self) -> Result<Option<i64>> {
        self.ctx.storage().get("v")
    }
}

#[tokio::test]
async fn a_renamed_class_keeps_its_data_and_ids() {
    let dir = tempfile::tempdir().unwrap();
    let old_id = {
        let rt = Runtime::builder().data_dir(dir.path()).open().unwrap();
        let scores = rt.namespace::<ScoreV1>();
        scores.get_by_name("team").set(7).await.unwrap();
        let id = scores.id_from_name("team").to_string();
        rt.shutdown().await.unwrap();
        id
    };
    let rt = Runtime::builder().data_dir(dir.path()).open().unwrap();
    let points = rt.namespace::<ScoreV2>();
    assert_eq!(points.class_name(), "Points");
    assert_eq!(points.get_by_name("team").get().await.unwrap(), Some(7));
    assert_eq!(points.id_from_name("team").to_string(), old_id);
    assert_eq!(points.list_ids().await.unwrap().len(), 1);
}

#[tokio::test]
async fn deleting_a_classs_data_is_explicit_and_complete() {
    let rt = Runtime::in_memory();
    let tallies = rt.namespace::<Tally>();
    for i in 0..10 {
        tallies.get_by_name(&format!("d{i}")).bump().await.unwrap();
    }
    let other = rt.namespace::<Slow>();
    let gate_free = other.get_by_name("keep");
    gate_free.done().await.unwrap();

    assert_eq!(tallies.delete_all_objects().await.unwrap(), 10);
    assert!(tallies.list_ids().await.unwrap().is_empty());
    // Live objects see their data gone, and start over.
    assert_eq!(tallies.get_by_name("d3").bump().await.unwrap(), (1, 1));
}

// ---------------------------------------------------------------------------------------------
// Metrics.

#[tokio::test]
async fn metrics_count_calls_and_activations() {
    let rt = Runtime::in_memory();
    let tallies = rt.namespace::<Tally>();
    let before = rt.metrics();
    for i in 0..3 {
        let t = tallies.get_by_name(&format!("m{i}"));
        t.bump().await.unwrap();
        t.peek().await.unwrap();
    }
    let after = rt.metrics();
    assert_eq!(after.calls - before.calls, 6);
    assert_eq!(after.activations - before.activations, 3);
    assert_eq!(after.live_objects, 3);
    assert!(after.syncs >= 1);
}
